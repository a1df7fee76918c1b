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
from hypothesis import given
from hypothesis import strategies as st

from flows.cli import main
from tests.inbox_builders import clean_day

ROOT = Path(__file__).resolve().parent.parent
D1 = date(2026, 11, 20)


def recon(cwd: Path, *args: str, **env_extra) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECON_", "PREFECT_API"))}
    env.update({"RECON_ORCHESTRATOR": "plain", "PYTHONPATH": str(ROOT), **env_extra})
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
    (["run", "--date", "20260103"], "not a date YYYY-MM-DD"),       # fromisoformat would take these
    (["run", "--date", "2026W014"], "not a date YYYY-MM-DD"),
    (["backfill", "--start", "2026-01-01", "--end", "2026-01-0３"], "not a date YYYY-MM-DD"),
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


def test_internal_failure_is_exit_1_with_one_sentence_and_a_log(tmp_path, capsys, monkeypatch):
    from transforms import reports

    def broken(con, ctx):
        raise ZeroDivisionError("a bug in the report step")
    monkeypatch.setattr(reports, "exceptions_report", broken)
    clean_day(tmp_path / "inbox", D1)
    args = ["--inbox", str(tmp_path / "inbox"), "--out", str(tmp_path / "r"),
            "--warehouse", str(tmp_path / "w.duckdb")]
    assert main(["run", "--date", "2026-11-20", "--orchestrator", "plain", *args]) == 1
    line = one_sentence(capsys.readouterr().err)
    assert "Internal error in step report_frames" in line and "recon-last-error.log" in line
    assert "Traceback" in (tmp_path / "recon-last-error.log").read_text()
    # nothing was committed: the date is still unprocessed
    assert main(["status", *args]) == 0
    assert "No business date has been processed" in capsys.readouterr().out


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


# --------------------------------------------------------------------------- for people

def _options():
    """(command, option action) for every option of every command."""
    from flows.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.option_strings and action.dest != "help":
                yield name, action


def test_every_option_has_help_with_its_format_and_default():
    seen = set()
    for command, action in _options():
        opt = action.option_strings[0]
        seen.add((command, opt))
        assert action.help, (command, opt)
        if action.type is not None and action.type.__name__ == "_date":
            assert "YYYY-MM-DD" in (action.metavar or ""), (command, opt)
        if action.required:
            assert "required" in action.help, (command, opt)
        else:
            assert "default" in action.help, (command, opt)
    assert {("backfill", "--start"), ("backfill", "--end"), ("generate", "--violation-rate"),
            ("demo", "--persons")} <= seen


def test_options_appear_only_on_the_commands_where_they_act():
    where = {}
    for command, action in _options():
        where.setdefault(action.option_strings[0], set()).add(command)
    assert where["--task-runner"] == {"run", "backfill", "demo", "serve", "catch-up"}
    assert where["--orchestrator"] == {"run", "backfill", "demo", "catch-up"}  # serve: always Prefect
    assert "status" in where["--inbox"]      # dates whose inputs changed since their run
    assert where["--deadline"] == {"serve"}  # only the nightly run waits


def test_status_refuses_runner_options(capsys):
    assert main(["status", "--task-runner", "threads"]) == 2
    assert "--task-runner" in one_sentence(capsys.readouterr().err)


def test_dask_under_the_plain_path_is_refused_not_ignored(tmp_path, capsys):
    clean_day(tmp_path / "inbox", D1)
    rc = main(["run", "--date", "2026-11-20", "--inbox", str(tmp_path / "inbox"),
               "--out", str(tmp_path / "r"), "--warehouse", str(tmp_path / "w.duckdb"),
               "--orchestrator", "plain", "--task-runner", "dask"])
    assert rc == 2
    assert "dask" in one_sentence(capsys.readouterr().err)
    assert not (tmp_path / "r").exists() and not (tmp_path / "w.duckdb").exists()


def test_unknown_task_runner_from_the_environment_is_refused(tmp_path):
    clean_day(tmp_path / "inbox", D1)
    r = recon(tmp_path, "run", "--date", "2026-11-20", "--inbox", "inbox", RECON_TASK_RUNNER="mpi")
    assert r.returncode == 2
    assert "Unknown task runner 'mpi'" in one_sentence(r.stderr)


def test_unreachable_prefect_api_is_exit_2_saying_what_to_start(tmp_path):
    clean_day(tmp_path / "inbox", D1)
    r = recon(tmp_path, "run", "--date", "2026-11-20", "--inbox", "inbox",
              RECON_ORCHESTRATOR="prefect", PREFECT_API_URL="http://127.0.0.1:9/api")
    assert r.returncode == 2, r.stderr
    line = one_sentence(r.stderr)
    assert "http://127.0.0.1:9/api" in line and "prefect server start" in line
    assert "--orchestrator plain" in line


def test_ephemeral_api_timeout_is_a_sentence_saying_what_to_start():
    from flows.cli import prefect_unreachable
    e = RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server.")
    try:
        raise ValueError("flow run failed") from e
    except ValueError as outer:
        line = prefect_unreachable(outer)
    assert line and "prefect server start" in line and "--orchestrator plain" in line
    assert prefect_unreachable(ValueError("a bad row")) is None


def test_result_line_says_why_a_date_is_partial(real_run):
    from flows.cli import result_line
    summary = real_run.summary(real_run.partial)
    line = result_line(summary, real_run.out)
    assert line.startswith(f"{real_run.partial.isoformat()} PARTIAL: ")
    why = line.split("PARTIAL because: ")[1]
    for p in summary["provinces"]["missing"]:
        assert p in why.split("(F01)")[0]
    for f in (f for f in summary["files"] if f["rejected"]):
        assert f'{f["province"]}/{f["source_file"].rsplit("/", 1)[1]} rejected ({f["reject_rule"]}' in why
    ch = summary["changes_since_previous_run"]
    assert f'{len(ch["new"])} new, {len(ch["disappeared"])} disappeared' in line


def test_result_line_of_a_complete_date_gives_no_reason(tmp_path, capsys):
    clean_day(tmp_path / "inbox", D1)
    assert main(["run", "--date", "2026-11-20", "--inbox", str(tmp_path / "inbox"),
                 "--out", str(tmp_path / "r"), "--warehouse", str(tmp_path / "w.duckdb"),
                 "--orchestrator", "plain"]) == 0
    out = capsys.readouterr().out
    assert "2026-11-20 COMPLETE: " in out and "because" not in out


def test_status_says_why_a_date_is_partial_and_how_to_clear_stale(real_run, capsys):
    assert main(["status", "--out", str(real_run.out), "--warehouse", str(real_run.warehouse),
                 "--inbox", str(real_run.inbox)]) == 0
    out = capsys.readouterr().out
    rows = out.split("\n")
    partial = next(i for i, x in enumerate(rows) if x.startswith(real_run.partial.isoformat()))
    assert "PARTIAL" in rows[partial]
    assert rows[partial + 1].strip().startswith("why: missing province(s) ")
    assert real_run.withdrawn in rows[partial + 1] and "54" in rows[partial + 1]
    assert "rejected (F03" in rows[partial + 1]
    stale = next(i for i, x in enumerate(rows) if x.startswith(real_run.stale.isoformat()))
    assert "STALE" in rows[stale]
    from contracts.summary import clear_command
    clear = clear_command(real_run.stale, real_run.stale, (real_run.inbox, real_run.out, real_run.warehouse))
    assert clear.endswith(f" --warehouse {real_run.warehouse.absolute()}")   # works as pasted
    assert f"STALE (was PARTIAL): an earlier date was re-run; clear with `{clear}`" in rows[stale + 1]
    assert f"STALE dates need a re-run: {clear}" in out


# ---------------------------------------------------------------- what an operator can believe

def _opts(paths) -> list[str]:
    return ["--inbox", str(paths.inbox), "--out", str(paths.out), "--warehouse", str(paths.warehouse)]


@pytest.mark.parametrize("args, needle", [
    (["generate", "--out", "/etc/hostname", "--start", "2026-01-01", "--days", "1", "--persons", "5",
      "--seed", "1"], "a part of it is a file where a folder is needed"),
    (["run", "--date", "2026-11-20", "--inbox", "inbox", "--out", "/proc/x", "--warehouse", "w.duckdb"],
     "does not exist"),
])
def test_a_path_that_cannot_be_used_is_a_usage_error_not_an_internal_one(tmp_path, args, needle):
    clean_day(tmp_path / "inbox", D1)
    r = recon(tmp_path, *args)
    assert r.returncode == 2, r.stderr
    assert needle in one_sentence(r.stderr)
    assert not (tmp_path / "data" / "recon-last-error.log").exists()


def test_a_refused_run_creates_no_warehouse_and_binds_no_out(tmp_path, capsys):
    clean_day(tmp_path / "inbox", D1)
    typo = ["--inbox", str(tmp_path / "inbox"), "--out", str(tmp_path / "r"),
            "--warehouse", str(tmp_path / "typo.duckdb")]
    assert main(["run", "--date", "2026-12-01", *typo]) == 2          # no such date folder
    assert "no folder for business date 2026-12-01" in one_sentence(capsys.readouterr().err)
    clean_day(tmp_path / "inbox", date(2026, 11, 21))
    assert main(["run", "--date", "2026-11-21", *typo]) == 2          # not the genesis date
    assert "2026-11-20 has not been processed yet" in one_sentence(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inbox"]    # no warehouse, lock or <out>
    assert main(["run", "--date", "2026-11-20", "--inbox", str(tmp_path / "inbox"),
                 "--out", str(tmp_path / "r"), "--warehouse", str(tmp_path / "w.duckdb")]) == 0


@pytest.mark.parametrize("command", [["catch-up"], ["archive", "--before", "2026-11-20"]])
def test_catch_up_and_archive_without_a_warehouse_create_none(tmp_path, capsys, command):
    clean_day(tmp_path / "inbox", D1)
    assert main([*command, "--inbox", str(tmp_path / "inbox"), "--out", str(tmp_path / "r"),
                 "--warehouse", str(tmp_path / "none.duckdb")]) == 2
    assert "There is no warehouse at" in one_sentence(capsys.readouterr().err)
    assert not any(p.name.startswith("none.duckdb") for p in tmp_path.iterdir())


def test_status_never_gives_an_all_clear_for_dates_it_could_not_compare(real_run, copied_run, capsys):
    from flows.cli import status_lines
    wrong_out = copied_run.out.parent / "typo"
    lines = status_lines(type(copied_run).of(copied_run.inbox, wrong_out, copied_run.warehouse))
    assert not any(x.startswith("No processed date") for x in lines)
    for d in real_run.dates:
        [line] = [x for x in lines if x.strip().startswith(d.isoformat()) and "not checked" in x]
        assert f"there is no readable {wrong_out / d.isoformat() / 'summary.json'}" in line


def test_status_looks_back_over_the_window_catch_up_uses_and_says_so(real_run, copied_run, capsys,
                                                                     monkeypatch):
    from flows.cli import status_lines
    first = real_run.dates[0]
    # a corrected delivery of the first date: a file's bytes change (and its manifest with it)
    folder = copied_run.inbox / first.isoformat()
    province = sorted(p.name for p in folder.iterdir() if (p / "manifest.json").is_file())[0]
    manifest = folder / province / "manifest.json"
    manifest.write_text(manifest.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    changed = [x for x in status_lines(copied_run) if x.strip().startswith(first.isoformat())
               and "manifest.json" in x]
    assert changed                                   # the default window of 30 days holds it
    monkeypatch.setenv("RECON_LOOKBACK_DAYS", "1")   # catch-up's window: the last date only
    lines = status_lines(copied_run)
    assert not [x for x in lines if x.strip().startswith(first.isoformat()) and "manifest.json" in x]
    assert "No processed date of the last 1 days has inputs that changed since its run." in lines
    capsys.readouterr()
    assert main(["catch-up", *_opts(copied_run)]) == 0   # the STALE last date only
    assert first.isoformat() not in capsys.readouterr().out
    assert main(["catch-up", *_opts(copied_run)]) == 0
    assert "Nothing to catch up: no processed date of the last 1 days" in capsys.readouterr().out


def test_a_file_name_in_a_manifest_cannot_add_lines_to_what_recon_prints(tmp_path, capsys):
    clean_day(tmp_path / "inbox", D1)
    manifest = tmp_path / "inbox" / D1.isoformat() / "44" / "manifest.json"
    m = json.loads(manifest.read_text(encoding="utf-8"))
    m["files"]["x.csv\r\n2026-11-20 COMPLETE: 0 findings\x1b[2J"] = {"rows": 1, "sha256": "0" * 64}
    manifest.write_text(json.dumps(m), encoding="utf-8")
    opts = ["--inbox", str(tmp_path / "inbox"), "--out", str(tmp_path / "r"),
            "--warehouse", str(tmp_path / "w.duckdb")]
    assert main(["run", "--date", D1.isoformat(), *opts]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "\r" not in out and "\x1b" not in out
    assert out.startswith("2026-11-20 PARTIAL") and "x.csv\\r\\n2026-11-20 COMPLETE" in out
    assert main(["status", *opts]) == 0
    status = capsys.readouterr().out
    assert "\r" not in status and "\x1b" not in status
    assert [x for x in status.splitlines() if "COMPLETE" in x] == \
        [x for x in status.splitlines() if "x.csv\\r\\n2026-11-20 COMPLETE" in x]


def test_one_warehouse_publishes_into_one_reports_folder(tmp_path, capsys):
    clean_day(tmp_path / "inbox", D1)
    first, second = tmp_path / "reports", tmp_path / "second"
    def run(out: Path) -> int:
        return main(["run", "--date", D1.isoformat(), "--inbox", str(tmp_path / "inbox"),
                     "--out", str(out), "--warehouse", str(tmp_path / "w.duckdb")])
    assert run(first) == 0
    capsys.readouterr()
    assert run(second) == 2      # a re-run there would leave the first folder's later dates unmarked
    assert f"publishes its reports to {first}" in one_sentence(capsys.readouterr().err)
    assert not second.exists()
    first.rename(second)         # the folder moved: the run follows it
    assert run(second) == 0
    assert run(first) == 2


@given(st.dates(min_value=date(1000, 1, 1)))
def test_every_date_written_yyyy_mm_dd_reads_back_as_itself(d):
    from contracts.dates import iso_date
    assert iso_date(d.isoformat()) == d
    assert iso_date(d.isoformat().replace("-", "")) is None        # 20260103: never a date here
    assert iso_date(d.isoformat() + "\n") is None


@pytest.mark.parametrize("text", ["2026-02-30", "2026W014", "2026-001", "２０２６-01-01", "", None, 20260101])
def test_what_is_not_a_real_yyyy_mm_dd_date_is_none(text):
    from contracts.dates import iso_date
    assert iso_date(text) is None


def test_a_failure_raised_while_handling_an_interrupt_is_told_as_the_interrupt():
    """Prefect turns SIGTERM into its TerminationSignal; DuckDB may wrap it, and a clean-up
    (closing a cursor) then fails with an error of its own: still an interrupt (exit 1)."""
    from flows.cli import failure

    class TerminationSignal(Exception):
        pass
    try:
        try:
            raise TerminationSignal("SIGTERM")
        except TerminationSignal:
            raise RuntimeError("TransactionContext Error: Current transaction is aborted")
    except RuntimeError as e:
        sentence, code = failure(e, None)
    assert code == 1 and sentence.startswith("interrupted") and "Internal error" not in sentence
