"""`recon` on the command line: exit codes 0/1/2 and one sentence on stderr, never a
traceback (outputs.md "Command line")."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from flows.cli import main
from tests.inbox_builders import clean_day

ROOT = Path(__file__).resolve().parent.parent
D1 = date(2026, 11, 20)


def recon(cwd: Path, *args: str, **env_extra) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECON_", "PREFECT_API"))}
    env.update(RECON_ORCHESTRATOR="plain", PYTHONPATH=str(ROOT), **env_extra)
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def one_sentence(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("recon: ") and lines[0].endswith(".")
    return lines[0]


@pytest.mark.parametrize("argv, needle", [
    ([], "COMMAND"),
    (["run"], "--date"),
    (["run", "--date", "2026-02-30"], "not a date"),
    (["run", "--date", "yesterday"], "not a date"),
    (["backfill", "--start", "2026-11-20"], "--end"),
    (["frobnicate"], "invalid choice"),
    (["run", "--date", "2026-11-20", "--task-runner", "mpi"], "Unknown task runner"),
    (["generate", "--out", "x", "--start", "2026-11-20", "--days", "0", "--persons", "5",
      "--seed", "1"], "at least 1"),
])
def test_usage_errors_exit_2_with_one_sentence(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in one_sentence(err)


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "backfill" in capsys.readouterr().out


def test_missing_inbox_is_exit_2(tmp_path, capsys):
    rc = main(["run", "--date", "2026-11-20", "--inbox", str(tmp_path / "nope"),
               "--out", str(tmp_path / "r"), "--warehouse", str(tmp_path / "w.duckdb"),
               "--orchestrator", "plain"])
    assert rc == 2
    assert "nope" in one_sentence(capsys.readouterr().err)


def test_end_before_start_is_exit_2(tmp_path, capsys):
    clean_day(tmp_path / "inbox", D1)
    rc = main(["backfill", "--start", "2026-11-21", "--end", "2026-11-20",
               "--inbox", str(tmp_path / "inbox"), "--warehouse", str(tmp_path / "w.duckdb"),
               "--out", str(tmp_path / "r"), "--orchestrator", "plain"])
    assert rc == 2
    assert "before the start" in one_sentence(capsys.readouterr().err)


def test_not_a_warehouse_is_exit_2(tmp_path):
    clean_day(tmp_path / "inbox", D1)
    (tmp_path / "w.duckdb").write_bytes(b"this is not a database" * 100)
    r = recon(tmp_path, "run", "--date", "2026-11-20", "--inbox", "inbox", "--out", "r",
              "--warehouse", "w.duckdb")
    assert r.returncode == 2
    assert "w.duckdb" in one_sentence(r.stderr)


def test_internal_failure_is_exit_1_with_one_sentence_and_a_log(tmp_path):
    clean_day(tmp_path / "inbox", D1)
    (tmp_path / "r").write_text("a file where the reports folder should be")
    r = recon(tmp_path, "run", "--date", "2026-11-20", "--inbox", "inbox", "--out", "r",
              "--warehouse", "w.duckdb")
    assert r.returncode == 1
    line = one_sentence(r.stderr)
    assert "Internal error in step stage_reports" in line and "recon-last-error.log" in line
    assert "Traceback" in (tmp_path / "recon-last-error.log").read_text()
    # nothing was committed: the date is still unprocessed
    st = recon(tmp_path, "status", "--warehouse", "w.duckdb", "--out", "r2")
    assert st.returncode == 0 and "No business date has been processed" in st.stdout


def test_environment_sets_the_shared_paths(tmp_path):
    clean_day(tmp_path / "in", D1)
    r = recon(tmp_path, "run", "--date", "2026-11-20", RECON_INBOX=str(tmp_path / "in"),
              RECON_OUT=str(tmp_path / "out"), RECON_WAREHOUSE=str(tmp_path / "db" / "w.duckdb"))
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert "2026-11-20 COMPLETE" in r.stdout
    s = json.loads((tmp_path / "out" / "2026-11-20" / "summary.json").read_text())
    assert s["business_date"] == "2026-11-20"
    assert (tmp_path / "db" / "w.duckdb").exists()
    for name in ("exceptions.csv", "exceptions.parquet", "settlement.csv", "settlement.parquet",
                 "positions.csv", "summary.json"):
        assert (tmp_path / "out" / "2026-11-20" / name).exists(), name


def test_csv_amounts_have_exactly_two_decimals(tmp_path):
    clean_day(tmp_path / "data" / "inbox", D1)   # the default paths, relative to the cwd
    r = recon(tmp_path, "run", "--date", "2026-11-20")
    assert r.returncode == 0, r.stderr
    import csv
    day = tmp_path / "data" / "reports" / "2026-11-20"
    for name, cols in (("settlement.csv", ("settled_amount", "refunded_amount", "net_amount")),
                       ("positions.csv", ("receivable", "payable", "net")),
                       ("exceptions.csv", ("amount",))):
        with open(day / name, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert rows, name
        for row in rows:
            for c in cols:
                v = row[c]
                assert v == "" or (v.count(".") == 1 and len(v.split(".")[1]) == 2), (name, c, v)


def test_generate_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "keep.txt").write_text("x")
    r = recon(tmp_path, "generate", "--out", "g", "--start", "2026-11-20", "--days", "1",
              "--persons", "50", "--seed", "1")
    assert r.returncode == 2
    assert "not empty" in one_sentence(r.stderr)


def test_demo_refuses_an_inbox_that_is_not_a_demo(tmp_path):
    clean_day(tmp_path / "inbox", D1)
    r = recon(tmp_path, "demo", "--inbox", "inbox")
    assert r.returncode == 2
    assert "not a demo" in one_sentence(r.stderr)
