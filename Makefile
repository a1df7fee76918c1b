# Two entry points, both self-contained on a fresh machine with python3.11 and make.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench bench-10x bench-history bench-history-quick clean

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PY) >/dev/null 2>&1 || { echo "python3.11 is required"; exit 2; }
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==25.3"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/recon demo

test: $(STAMP)
	sh scripts/ensure_chromium.sh
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/national_day.py

# one date of 25,000,000 persons (>= 50M rows), generated in chunks, then reconciled (BENCH10X_PERSONS overrides)
bench-10x: $(STAMP)
	$(BIN)/python benchmarks/bench_10x.py

# 60 days x 250,000 persons through one warehouse (HISTORY_DAYS, HISTORY_PERSONS override)
bench-history: $(STAMP)
	$(BIN)/python benchmarks/history.py

bench-history-quick: $(STAMP)
	$(BIN)/python benchmarks/history.py --quick

clean:
	rm -rf $(VENV) data/inbox data/reports data/warehouse.duckdb*
