"""`recon`: the command line of outputs.md.

    recon run --date D                  reconcile one business date
    recon backfill --start D1 --end D2  reconcile D1..D2 in order
    recon status                        processed dates, their status, stale ones
    recon generate --out DIR --start D --days N --persons N --seed S
    recon demo                          generate a small inbox, reconcile it, show the reports
    recon serve                         the nightly schedule (02:30 Asia/Shanghai, yesterday)
    recon catch-up                      re-run dates whose inputs changed, then the STALE ones
    recon archive --before D            move rows no rule reads any more to per-date Parquet

Shared options (also from the environment): --inbox (RECON_INBOX, data/inbox),
--out (RECON_OUT, data/reports), --warehouse (RECON_WAREHOUSE, data/warehouse.duckdb),
--task-runner (RECON_TASK_RUNNER: threads | sequential | dask),
--orchestrator (RECON_ORCHESTRATOR: auto | prefect | plain).

Orchestrator: `prefect` runs the Prefect flows (runs, tasks and artifacts visible
in the Prefect UI); `plain` calls the very same steps without Prefect. `auto`
(the default) uses Prefect when PREFECT_API_URL points at a Prefect server, and
the plain path otherwise, because starting Prefect's ephemeral API costs 10-25 s
per command. `recon serve` always uses Prefect.

Exit codes: 0 reconciled (findings are not failures), 1 internal failure, 2 usage
error or input that cannot be processed. Errors are one sentence on stderr.
"""
from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
import threading
import traceback
from datetime import date
from pathlib import Path

from contracts.errors import InputError


class UsageError(InputError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one sentence, no usage block, exit 2
        raise UsageError(f"{message} (see `{self.prog} --help`).")


def _date(text: str) -> date:
    """A date written YYYY-MM-DD, nothing else (contracts/dates.py): an operator's typo
    such as 20260103 must not turn into a run of a date."""
    from contracts.dates import iso_date
    d = iso_date(text)
    if d is None:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a date YYYY-MM-DD")
    return d


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return n


TASK_RUNNERS = ("threads", "sequential", "dask")
ORCHESTRATORS = ("auto", "prefect", "plain")


def _paths_options(p: argparse.ArgumentParser, inbox: bool = True) -> None:
    """--inbox / --out / --warehouse (outputs.md "Shared options")."""
    env = os.environ.get
    if inbox:
        p.add_argument("--inbox", metavar="DIR", default=env("RECON_INBOX", "data/inbox"),
                       help="the inbox folder, one sub-folder per date YYYY-MM-DD "
                            "(env RECON_INBOX; default data/inbox)")
    p.add_argument("--out", metavar="DIR", default=env("RECON_OUT", "data/reports"),
                   help="the reports folder, one sub-folder per date (env RECON_OUT; "
                        "default data/reports)")
    p.add_argument("--warehouse", metavar="FILE",
                   default=env("RECON_WAREHOUSE", "data/warehouse.duckdb"),
                   help="the DuckDB warehouse file (env RECON_WAREHOUSE; "
                        "default data/warehouse.duckdb)")


def _runner_options(p: argparse.ArgumentParser, orchestrator: bool = True) -> None:
    """--task-runner (and --orchestrator): only on the commands that reconcile."""
    env = os.environ.get
    p.add_argument("--task-runner", metavar="NAME", default=env("RECON_TASK_RUNNER", "threads"),
                   help="how the province loads run: threads (in parallel), sequential (one "
                        "at a time) or dask (on Dask workers through prefect-dask, under Prefect; "
                        "a backfill then loads later dates while earlier ones reconcile) "
                        "(env RECON_TASK_RUNNER; default threads)")
    p.add_argument("--dask-address", metavar="tcp://HOST:PORT", default=env("RECON_DASK_ADDRESS"),
                   help="with --task-runner dask: the `dask scheduler` to run the province "
                        "loads on, e.g. tcp://10.0.0.5:8786; its workers must see the inbox "
                        "and the staging folder at the same paths (env RECON_DASK_ADDRESS; "
                        "default none: a cluster on this machine)")
    p.add_argument("--dask-workers", type=_positive, metavar="N", default=env("RECON_DASK_WORKERS"),
                   help="with --task-runner dask and no --dask-address: worker processes of the "
                        "cluster on this machine (env RECON_DASK_WORKERS; default: one per CPU but one, "
                        "which the driver keeps)")
    p.add_argument("--dask-staging", metavar="DIR", default=env("RECON_DASK_STAGING"),
                   help="with --task-runner dask: an existing folder, shared with the workers, "
                        "where they write the provinces' rows as Parquet for the driver to load "
                        "(env RECON_DASK_STAGING; default <out>/.intake)")
    if orchestrator:
        p.add_argument("--orchestrator", metavar="NAME", default=env("RECON_ORCHESTRATOR", "auto"),
                       help="prefect (Prefect flows, visible in the Prefect UI), plain (the same "
                            "steps without Prefect) or auto (prefect when PREFECT_API_URL is "
                            "set or the task runner is dask, else plain) (env RECON_ORCHESTRATOR; "
                            "default auto)")


def _ops_options(p: argparse.ArgumentParser, waiting: bool) -> None:
    """Operations options (flows/operations.py); unset ones come from the environment,
    then from contracts/operations.py."""
    from contracts import operations as ops
    p.add_argument("--lookback-days", type=_positive, metavar="N",
                   help="check the processed dates of the last N days for inputs that changed "
                        f"since their run (env RECON_LOOKBACK_DAYS; default {ops.LOOKBACK_DAYS})")
    p.add_argument("--alerts", action="append", metavar="URL",
                   help="an apprise URL that receives one message per event (run FAILED, "
                        "invariant broken, provinces missing at the deadline, date completed by "
                        "a late delivery, ERROR findings spike), e.g. mailto://… or json://…; "
                        "repeat for several channels (env RECON_ALERTS, URLs separated by spaces; "
                        "default none)")
    p.add_argument("--alert-digest", action="store_const", const=True, default=None,
                   help="also send one message for every reconciled date, clean ones included "
                        "(env RECON_ALERT_DIGEST=1; default off)")
    p.add_argument("--error-spike-factor", type=float, metavar="X",
                   help="alert when a date's ERROR findings exceed X times their median over the "
                        f"previous {ops.BASELINE_DAYS} processed dates (env RECON_ERROR_SPIKE_FACTOR;"
                        f" default {ops.ERROR_SPIKE_FACTOR:g})")
    if waiting:
        p.add_argument("--deadline", metavar="HH:MM",
                       help="the nightly run for D waits for every live province's complete folder "
                            "until this time of D+1, Asia/Shanghai, then runs with what arrived "
                            f"(env RECON_DEADLINE; default {ops.DEADLINE:%H:%M})")
        p.add_argument("--poll-seconds", type=float, metavar="S",
                       help="how often the inbox is looked at while waiting (env "
                            f"RECON_POLL_SECONDS; default {ops.POLL_SECONDS:g})")


def _ops_config(a):
    from flows.alerts import check_channels
    from flows.operations import OpsConfig
    cfg = OpsConfig.from_env(
        lookback_days=a.lookback_days, alerts=a.alerts, digest=a.alert_digest,
        spike_factor=a.error_spike_factor, deadline=getattr(a, "deadline", None),
        poll_seconds=getattr(a, "poll_seconds", None))
    check_channels(cfg.alerts)
    return cfg


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="recon", description="Cross-province wallet sharing reconciliation "
                "(医保个人账户跨省共济对账).")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _reconcile_commands(sub)
    _synthetic_commands(sub)
    _service_commands(sub)
    return p


def _reconcile_commands(sub) -> None:
    """run, backfill, status."""
    r = sub.add_parser("run", help="reconcile one business date")
    r.add_argument("--date", required=True, type=_date, metavar="YYYY-MM-DD",
                   help="the business date to reconcile, e.g. 2026-11-21 (required)")
    _paths_options(r)
    _runner_options(r)

    b = sub.add_parser("backfill", help="reconcile a range of dates in order")
    b.add_argument("--start", required=True, type=_date, metavar="YYYY-MM-DD",
                   help="the first business date of the range (required)")
    b.add_argument("--end", required=True, type=_date, metavar="YYYY-MM-DD",
                   help="the last business date of the range, inclusive (required)")
    _paths_options(b)
    _runner_options(b)

    x = sub.add_parser("archive", help="move the warehouse rows that no rule reads any more (of "
                       "the dates before --before) to per-date Parquet beside the warehouse, "
                       "where DuckDB still queries them")
    x.add_argument("--before", required=True, type=_date, metavar="YYYY-MM-DD",
                   help="archive the rows of the dates before this one; it must lie at least the "
                        "nightly look-back before the latest processed date (required)")
    x.add_argument("--lookback-days", type=_positive, metavar="N",
                   help="the nightly look-back to keep clear of the archive (env "
                        "RECON_LOOKBACK_DAYS; default that of `recon serve`)")
    _paths_options(x)

    s = sub.add_parser("status", help="processed dates, their status, stale dates")
    _paths_options(s)  # the inbox: dates whose inputs changed since their run (read only)
    s.add_argument("--provinces", action="store_true",
                   help="instead, the delivery scorecard of every live province over the last 30 "
                        "processed dates: on time / late / missing, files rejected, rows "
                        "quarantined per 10,000, worst first (default off)")


def _synthetic_commands(sub) -> None:
    """generate, demo."""
    g = sub.add_parser("generate", help="write a synthetic inbox")
    g.add_argument("--out", required=True, metavar="DIR",
                   help="the inbox folder to write; must be new or empty (required)")
    g.add_argument("--start", required=True, type=_date, metavar="YYYY-MM-DD",
                   help="the first business date to generate (required)")
    g.add_argument("--days", required=True, type=_positive, metavar="N",
                   help="how many consecutive dates to generate, at least 1 (required)")
    g.add_argument("--persons", required=True, type=_positive, metavar="N",
                   help="how many insured persons across the 31 provinces, at least 1 (required)")
    g.add_argument("--seed", required=True, type=int, metavar="S",
                   help="random seed, a whole number: the same seed writes the same inbox (required)")
    g.add_argument("--violation-rate", type=float, default=0.01, metavar="RATE",
                   help="share of records with a planted violation, between 0 and 1 (default 0.01)")
    g.add_argument("--perturb", type=float, default=0.0, metavar="RATE",
                   help="share of well-formed records to perturb near rule boundaries, 0..1, "
                        "default 0: none (a perturbed inbox has no planted_truth.csv)")

    d = sub.add_parser("demo", help="generate a small inbox, reconcile it, show the reports")
    d.add_argument("--start", type=_date, default=date(2026, 11, 20), metavar="YYYY-MM-DD",
                   help="the first business date of the demo inbox (default 2026-11-20)")
    d.add_argument("--days", type=_positive, default=3, metavar="N",
                   help="how many dates to generate and reconcile (default 3)")
    d.add_argument("--persons", type=_positive, default=2000, metavar="N",
                   help="how many insured persons to generate (default 2000)")
    d.add_argument("--seed", type=int, default=20261120, metavar="S",
                   help="random seed of the demo inbox (default 20261120)")
    _paths_options(d)
    _runner_options(d)


def _service_commands(sub) -> None:
    """serve, catch-up, audit."""
    v = sub.add_parser("serve", help="start the nightly schedule (02:30 Asia/Shanghai)")
    _paths_options(v)
    _runner_options(v, orchestrator=False)  # serve always runs Prefect
    _ops_options(v, waiting=True)

    c = sub.add_parser("catch-up", help="re-run, in order, the processed dates of the look-back "
                       "window whose inputs changed since their run (a missing province delivered, "
                       "a file's sha256 differs), then the STALE dates after them")
    _paths_options(c)
    _runner_options(c)
    _ops_options(c, waiting=False)

    w = sub.add_parser("audit", help="serve the auditors' workbench on 127.0.0.1 (cases across "
                       "dates, decisions, audit trail; login required); `recon audit user add` adds users")
    from workbench.cli import add_arguments as audit_arguments  # argparse only; web stack when serving
    audit_arguments(w)


def check_runner(a) -> None:
    """Refuse (exit 2) a task runner that is unknown or cannot act under the chosen path."""
    runner = a.task_runner
    if runner not in TASK_RUNNERS:
        raise UsageError(f"Unknown task runner {runner!r}; use {', '.join(TASK_RUNNERS)}.")
    orchestrator = getattr(a, "orchestrator", "prefect")
    if orchestrator not in ORCHESTRATORS:
        raise UsageError(f"Unknown orchestrator {orchestrator!r}; use {', '.join(ORCHESTRATORS)}.")
    if runner == "dask":  # under Prefect: --orchestrator prefect, or auto, which then means it
        if orchestrator == "plain":
            raise UsageError("The task runner 'dask' acts only under Prefect; use threads or "
                             "sequential with the plain path, or --orchestrator prefect.")
        import importlib.util
        if importlib.util.find_spec("prefect_dask") is None:
            raise UsageError("The task runner 'dask' needs the package prefect-dask, which is "
                             "not installed; use threads or sequential.")
        _dask_environment(a)


def _dask_environment(a) -> None:
    """Hand the Dask options to flows/distributed.py (and to the flow runs Prefect starts)
    through the environment; a scheduler that does not answer is refused now (exit 2)."""
    from flows import distributed
    if a.command == "serve" and not os.environ.get("PREFECT_API_URL"):
        raise UsageError("`recon serve --task-runner dask` needs a Prefect server the workers "
                         "can reach: start `prefect server start` and set PREFECT_API_URL.")
    if getattr(a, "dask_address", None):
        distributed.check_reachable(a.dask_address)
        os.environ[distributed.ADDRESS_ENV] = a.dask_address
    if getattr(a, "dask_workers", None):
        os.environ[distributed.WORKERS_ENV] = str(a.dask_workers)
    if getattr(a, "dask_staging", None):
        os.environ[distributed.STAGING_ENV] = a.dask_staging


def _plain_executor(a):
    from flows.nightly import PlainExecutor
    return PlainExecutor(max_workers=1 if a.task_runner == "sequential" else None)


# --------------------------------------------------------------------------- commands

def _paths(a):
    from flows.nightly import Paths
    paths = Paths.of(getattr(a, "inbox", "data/inbox"), a.out, a.warehouse)  # status reads no inbox
    _check_apart(paths, has_inbox=hasattr(a, "inbox"))
    return paths


def _within(inner: Path, outer: Path) -> bool:
    # realpath never raises (a link loop stays as it is: the run then says it is no folder)
    inner, outer = Path(os.path.realpath(inner)), Path(os.path.realpath(outer))
    return inner == outer or outer in inner.parents


def _check_apart(paths, has_inbox: bool) -> None:
    """A run replaces <out>/<D> as a whole and clears <out>'s staging: the inbox and the
    warehouse must lie outside <out>, and <out> outside the inbox (exit 2 otherwise)."""
    if has_inbox and (_within(paths.out, paths.inbox) or _within(paths.inbox, paths.out)):
        raise UsageError(f"--out {paths.out} and --inbox {paths.inbox} overlap; the reports "
                         f"folder must lie apart from the inbox, since a run replaces "
                         f"<out>/<date> as a whole.")
    if _within(paths.warehouse.parent, paths.out):
        raise UsageError(f"The warehouse {paths.warehouse} lies inside --out {paths.out}; keep it "
                         f"outside the reports folder, since a run replaces <out>/<date> as a whole.")


def _use_prefect(a) -> bool:
    if a.orchestrator == "auto":  # dask acts only under Prefect
        return bool(os.environ.get("PREFECT_API_URL")) or a.task_runner == "dask"
    return a.orchestrator == "prefect"


class RunNames(logging.Formatter):
    """'recon: <task or flow run name>: message', no traceback (the CLI's one sentence and
    recon-last-error.log say what failed)."""

    def format(self, record: logging.LogRecord) -> str:
        who = getattr(record, "task_run_name", None) or getattr(record, "flow_run_name", None)
        msg = record.getMessage()
        return f"recon: {who}: {msg}" if who else f"recon: {msg}"

    @staticmethod
    def screenful(record: logging.LogRecord) -> bool:
        """Keep a task run's warnings and errors; its INFO lines stay in the Prefect UI."""
        return not (getattr(record, "task_run_name", None) and record.levelno < logging.WARNING)


def _quiet_prefect_console() -> None:
    """Prefect logs to stderr with tracebacks; the CLI keeps stderr for its one
    sentence, so Prefect's console output goes to stdout, without tracebacks."""
    import prefect.logging.configuration  # noqa: F401  (configures Prefect's loggers)

    class NoTraceback(logging.Formatter):
        def __init__(self, inner: logging.Formatter | None):
            super().__init__()
            self.inner = inner or logging.Formatter("%(message)s")

        def format(self, record: logging.LogRecord) -> str:
            saved = record.exc_info, record.exc_text, record.stack_info
            record.exc_info = record.exc_text = record.stack_info = None
            try:
                return self.inner.format(record)
            finally:
                record.exc_info, record.exc_text, record.stack_info = saved

    # A day's run is a screenful: the tasks' own "Finished in state Completed()" stay in
    # the Prefect UI; their warnings and errors still come here, named by RunNames.
    for h in logging.getLogger().handlers:
        h.setFormatter(RunNames())
        h.addFilter(RunNames.screenful)
    loggers = [logging.getLogger()] + [logging.getLogger(n) for n in
                                       list(logging.root.manager.loggerDict)]
    for lg in loggers:
        for h in getattr(lg, "handlers", []):
            if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is sys.stderr:
                h.setStream(sys.stdout)
            if type(h).__name__ == "PrefectConsoleHandler":
                console = getattr(h, "console", None)
                if console is not None and hasattr(console, "file"):
                    console.file = sys.stdout
                h.setFormatter(NoTraceback(h.formatter))


def result_line(summary: dict, out: Path) -> str:
    """The CLI's line per reconciled date: status, why it is not COMPLETE, counts, where."""
    from contracts.summary import parse
    s = parse(summary)
    d = s.business_date.isoformat()
    ch = s.changes_since_previous_run
    since = (f"; {len(ch.new)} new, {len(ch.disappeared)} disappeared since the previous run"
             if ch.previous_run_id else "")
    why = f"; {s.status} because: {s.why()}" if s.why() else ""
    return (f"{d} {s.status}: {s.findings.total} findings, settled {s.amounts.settled:.2f}, "
            f"held {s.amounts.held:.2f}{since}{why}; reports in {Path(out) / d}")


def _print_summary(s: dict, out: Path) -> None:
    print(result_line(s, out), flush=True)


def cmd_run(a) -> int:
    check_runner(a)
    from flows import nightly
    paths = _paths(a)
    if _use_prefect(a):
        _quiet_prefect_console()
        s = nightly.run_date_prefect(paths, a.date, a.task_runner)
    else:
        s = nightly.run_date(paths, a.date, _plain_executor(a))
    _print_summary(s, paths.out)
    return 0


def cmd_backfill(a) -> int:
    check_runner(a)
    from flows import nightly
    paths = _paths(a)
    if _use_prefect(a):
        _quiet_prefect_console()
        summaries = nightly.backfill_prefect(paths, a.start, a.end, a.task_runner)
    else:
        summaries = []
        for d in nightly.preflight_range(paths, a.start, a.end):
            summaries.append(nightly.run_date(paths, d, _plain_executor(a)))
            _print_summary(summaries[-1], paths.out)
        return 0
    for s in summaries:
        _print_summary(s, paths.out)
    return 0


def status_lines(paths) -> list[str]:
    """Read-only (flows.warehouse.status_snapshot): no lock taken, no file written."""
    from flows import warehouse as wh
    snap = wh.status_snapshot(paths)
    rs, stale, lines = snap["runs"], snap["stale"], []
    if snap["run_in_progress"]:
        lines.append(f"A {snap['run_in_progress']} is in progress; "
                     "the dates below are as of the last finished run.")
    for run_id, d in snap["interrupted"]:
        lines.append(f"The publish of {d.isoformat()} (run {run_id}) was interrupted; "
                     "the next recon run completes or discards it.")
    if not rs:
        return lines + [f"No business date has been processed in {paths.warehouse} yet."]
    lines += [f"{'date':<10}  {'status':<8}  {'finished (Asia/Shanghai)':<24}  run_id"]
    for r in rs:
        lines.append(f"{r['business_date'].isoformat():<10}  {r['status']:<8}  "
                     f"{r['finished_at'].isoformat(sep=' '):<24}  {r['run_id']}")
        reason = _status_why(r, stale, paths.where)
        if reason:
            lines.append(f"{'':<10}  {reason}")
    if stale:
        from contracts.summary import clear_command
        lines.append(f"STALE dates need a re-run: {clear_command(*stale, where=paths.where)}")
    else:
        lines.append("No date is stale.")
    from flows.operations import OpsConfig, status_lines as changed_lines
    return lines + changed_lines(paths, rs, OpsConfig.from_env().lookback_days)   # catch-up's window


def _status_why(r: dict, stale, where: tuple) -> str:
    """Why a processed date is PARTIAL or STALE, from the summary its run committed."""
    from contracts.summary import STALE, SummaryError, clear_command, parse_core, why
    try:
        committed = parse_core(r["summary"], "the summary its run committed")
    except SummaryError as e:  # one sentence naming the field, never a guessed reason
        return "" if r["status"] == "COMPLETE" else f"why: not shown, {e}"
    before = committed.status if r["status"] == STALE else None
    clear = clear_command(*stale, where=where) if stale else None
    text = why(r["status"], before, clear, committed.partial_because)
    return f"why: {text}" if text else ""


def cmd_status(a) -> int:
    if getattr(a, "provinces", False):
        from flows import warehouse as wh
        from flows.operations import scorecard_lines
        paths = _paths(a)
        from flows.operations import OpsConfig
        print("\n".join(scorecard_lines(paths, wh.status_snapshot(paths)["runs"],
                                         OpsConfig.from_env().deadline)))
        return 0
    print("\n".join(status_lines(_paths(a))))
    return 0


def _generate(out: Path, start: date, days: int, persons: int, seed: int, rate: float,
              perturb: float = 0.0) -> dict:
    try:
        from synth.generate import generate
    except ImportError:
        raise RuntimeError("the synthetic generator (synth.generate) is not available") from None
    return generate(Path(out), start, days, persons, seed, violation_rate=rate, perturb=perturb)


def cmd_generate(a) -> int:
    if not 0 <= a.violation_rate <= 1:
        raise UsageError("--violation-rate must be between 0 and 1.")
    if not 0 <= a.perturb <= 1:
        raise UsageError("--perturb must be between 0 and 1.")
    out = Path(a.out)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"The folder {out} is not empty; generate into a new or empty folder.")
    info = _generate(out, a.start, a.days, a.persons, a.seed, a.violation_rate, a.perturb)
    print(f"Wrote a synthetic inbox of {a.days} day(s) from {a.start.isoformat()} to {out}"
          + (f" ({info})" if info and len(str(info)) < 300 else ""))
    return 0


DEMO_MARKER = ".recon-demo"


def cmd_demo(a) -> int:
    import shutil
    check_runner(a)
    from flows import nightly
    inbox, paths = Path(a.inbox), _paths(a)
    if inbox.exists() and any(inbox.iterdir()) and not (inbox / DEMO_MARKER).exists():
        raise InputError(f"The inbox {inbox} already holds data that is not a demo; "
                         "point --inbox (RECON_INBOX) at another folder for the demo.")
    if inbox.exists():
        shutil.rmtree(inbox)
    print(f"Generating {a.days} day(s) for {a.persons} persons into {inbox} ...", flush=True)
    _generate(inbox, a.start, a.days, a.persons, a.seed, 0.01)
    (inbox / DEMO_MARKER).write_text("generated by `recon demo`\n", encoding="utf-8")
    from flows.inbox import date_folders
    folders = date_folders(inbox)
    if not folders:
        raise RuntimeError("the generator wrote no date folder")
    start, end = folders[0], folders[-1]
    if _use_prefect(a):
        _quiet_prefect_console()
        summaries = nightly.backfill_prefect(paths, start, end, a.task_runner)
    else:
        summaries = [nightly.run_date(paths, d, _plain_executor(a))
                     for d in nightly.preflight_range(paths, start, end)]
    for s in summaries:
        _print_summary(s, paths.out)
    print(f"Reports: {paths.out.resolve()}/<date>/ (report.html for auditors, exceptions.csv, "
          f"settlement.csv, positions.csv, summary.json)")
    print(f"Warehouse: {paths.warehouse.resolve()}; `recon status` lists the processed dates.")
    return 0


def cmd_serve(a) -> int:
    from flows import nightly
    _quiet_prefect_console()
    paths = _paths(a)
    check_runner(a)  # refuse an unavailable runner now, not at 02:30
    cfg = _ops_config(a)  # refuse a bad deadline or alert URL now, not at 02:30 either
    where = os.environ.get("PREFECT_API_URL") or "Prefect's ephemeral API (set PREFECT_API_URL " \
                                                 "to use a Prefect server and its UI)"
    print(f"Serving deployment 'nightly/{nightly.DEPLOYMENT_NAME}' (cron '{nightly.NIGHTLY_CRON}', "
          f"{nightly.NIGHTLY_TZ}; waiting for late provinces until {cfg.deadline:%H:%M}; "
          f"{len(cfg.alerts)} alert channel(s)) against {where}; Ctrl-C stops.", flush=True)
    if cfg.alerts:  # URLs may hold passwords: the runs inherit them, the UI never shows them
        os.environ["RECON_ALERTS"] = " ".join(cfg.alerts)
    nightly.serve(paths, a.task_runner, settings={
        "deadline": f"{cfg.deadline:%H:%M}", "lookback_days": cfg.lookback_days,
        "poll_seconds": cfg.poll_seconds, "alert_digest": cfg.digest,
        "error_spike_factor": cfg.spike_factor})
    return 0


def cmd_catch_up(a) -> int:
    check_runner(a)
    from flows import nightly, operations
    paths = _paths(a)
    if _use_prefect(a):
        _quiet_prefect_console()
        run_one = lambda d: nightly.run_date_prefect(paths, d, a.task_runner)  # noqa: E731
    else:
        run_one = lambda d: nightly.run_date(paths, d, _plain_executor(a))  # noqa: E731
    from contracts.summary import printable
    from flows import warehouse as wh
    cfg = _ops_config(a)   # settings first: a bad one is refused whatever the folders hold
    wh.require_warehouse(paths.warehouse)
    from flows.inbox import date_folders
    date_folders(paths.inbox)   # no inbox is a usage error, not "nothing to catch up"
    changed, summaries = operations.catch_up(paths, cfg, run_one)
    for c in changed:
        print(f"{c.business_date.isoformat()}: {printable('; '.join(c.reasons))}")  # names are the inbox's
    for s in summaries:
        _print_summary(s, paths.out)
    if not summaries:
        print(f"Nothing to catch up: no processed date of the last {cfg.lookback_days} days "
              "(the look-back, not archived) has changed inputs, and none is STALE.")
    return 0


def cmd_archive(a) -> int:
    from flows.archive import archive_before, archive_root
    from flows.operations import OpsConfig
    from flows import warehouse as wh
    paths = _paths(a)
    wh.require_warehouse(paths.warehouse)   # nothing to archive: never create an empty one
    lookback = OpsConfig.from_env(lookback_days=a.lookback_days).lookback_days
    moved = archive_before(paths, a.before, lookback)
    if not any(moved.values()):
        from transforms.archive import archive_boundary
        con = wh.open_warehouse(paths.warehouse, read_only=True)
        try:
            boundary = archive_boundary(con)
        finally:
            con.close()
        rerun = ("every date re-runs as before" if boundary is None else
                 f"the dates before {boundary.isoformat()}, the boundary of an earlier archive, "
                 "still do not re-run")
        print(f"Nothing to archive: no processed date before {a.before.isoformat()} holds rows "
              f"that no rule reads any more; nothing was moved, and {rerun}.")
        return 0
    root = archive_root(paths.warehouse)
    print(f"Archived {sum(moved.values()):,} rows of the dates before {a.before.isoformat()} "
          f"into {root}: " + ", ".join(f"{t} {n:,}" for t, n in moved.items()) + ".")
    for table in (t for t, n in moved.items() if n):   # a glob of no file fails in DuckDB
        print(f"Query them with DuckDB: SELECT * FROM read_parquet('{root / table}/*.parquet');")
    print(f"{a.before.isoformat()} and later dates run as before, earlier ones no longer re-run.")
    return 0


def cmd_audit(a) -> int:
    from workbench.cli import run
    return run(a)


COMMANDS = {"run": cmd_run, "backfill": cmd_backfill, "status": cmd_status,
            "generate": cmd_generate, "demo": cmd_demo, "serve": cmd_serve, "audit": cmd_audit,
            "catch-up": cmd_catch_up, "archive": cmd_archive}


def path_sentence(e: OSError) -> str:
    """One sentence for a path that cannot be used as it is: which path, and why."""
    path = e.filename if e.filename is not None else "a path"
    shown = repr(str(path)[:200])
    if isinstance(e, NotADirectoryError):
        why = "a part of it is a file where a folder is needed"
    elif isinstance(e, IsADirectoryError):
        why = "it is a folder where a file is needed"
    elif e.errno == errno.ELOOP:
        why = "its links lead round in a loop"
    else:
        why = "it or a folder above it does not exist"
    return f"{shown} cannot be used: {why}; give another path or move what is in the way"


def _one_sentence(text: str) -> str:
    line = " ".join(str(text).split()).rstrip("!")
    line = line[:1].upper() + line[1:]
    return line if line.endswith((".", "?")) else line + "."


def _error_log(a) -> Path | None:
    try:
        base = Path(getattr(a, "warehouse", None) or "data/warehouse.duckdb").parent
        base.mkdir(parents=True, exist_ok=True)
        p = base / "recon-last-error.log"
        from contracts.privacy import scrub_text
        from flows.warehouse import write_bytes_atomic
        # a new file renamed into place: a planted link of that name is replaced, never followed
        write_bytes_atomic(p, scrub_text(traceback.format_exc()).encode("utf-8"))
        return p
    except Exception:  # noqa: BLE001
        return None


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry noise
    from contracts.privacy import scrub_process_output
    scrub_process_output()  # no full resident ID in a log line or on the terminal
    logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="recon: %(message)s")
    logging.captureWarnings(True)
    import warnings
    warnings.simplefilter("ignore")
    a = None
    on_term = _stop_on_sigterm()
    if "flows.nightly" in sys.modules:   # an earlier call in this process (tests) ran dates
        sys.modules["flows.nightly"].PROGRESS.__init__()
    try:
        a = build_parser().parse_args(argv)
        code = COMMANDS[a.command](a)
    except SystemExit as e:  # --help / --version
        code = e.code if isinstance(e.code, int) else 0
    except BaseException as e:  # noqa: BLE001 - never a traceback on the terminal
        sentence, code = failure(e, a)
        print(f"recon: {sentence}", file=sys.stderr)
        _release(e)
    finally:
        if on_term is not None:
            signal.signal(signal.SIGTERM, on_term)
    sys.stdout.flush()
    if argv is None and on_term is not None:
        _exit_on_sigterm(code)
    return code


def _exit_on_sigterm(code: int) -> None:
    """The command is done (committed, published, its result printed): a SIGTERM during
    the interpreter's shutdown ends the process at once with the command's own exit code,
    not 143, which would tell the service manager a finished run was killed."""
    sys.stderr.flush()
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(code))


def failure(e: BaseException, a) -> tuple[str, int]:
    """The one sentence and the exit code of a command that raised `e` (outputs.md: 2 a
    usage error or input that cannot be processed, 1 an internal failure)."""
    if isinstance(e, (KeyboardInterrupt, duckdb_interrupt())) or _query_interrupted(e):
        from flows.nightly import PROGRESS   # Ctrl-C, SIGTERM, or either inside a query
        return PROGRESS.interrupted(), 1
    if isinstance(e, InputError):
        return _one_sentence(e), 2
    if isinstance(e, (NotADirectoryError, IsADirectoryError, FileNotFoundError)) or (
            isinstance(e, OSError) and e.errno == errno.ELOOP):
        # a path given (or planted) where recon needs a folder or a file: a usage error
        return _one_sentence(path_sentence(e)), 2
    if not isinstance(e, Exception):
        raise e   # SystemExit and the like are not failures of recon's
    unreachable = prefect_unreachable(e)
    if unreachable:
        return unreachable, 2
    from contracts.reports import ReportContractError
    from flows import warehouse as wh
    from flows.nightly import RunFailed
    if isinstance(e, (RunFailed, ReportContractError)):
        return _one_sentence(e), 1
    if wh.environment_fault(e) is not None:  # disk full, permission, read-only: exit 1
        duck = type(e).__module__.lstrip("_").startswith("duckdb")  # DuckDB names no file: its own
        return _one_sentence(wh.fault_sentence(e, getattr(a, "warehouse", None) if duck else None)), 1
    first = (str(e).splitlines() or [""])[0][:300]
    log = _error_log(a)
    step = getattr(e, "recon_step", None)
    where = f" in step {step}" if step else ""
    return _one_sentence(f"internal error{where}, {type(e).__name__}: {first}".rstrip(": ")
                         + (f"; details in {log}" if log else "")), 1


def duckdb_interrupt() -> type:
    """DuckDB's exception for a query stopped by Ctrl-C (its own interrupt, not Python's)."""
    import duckdb
    return duckdb.InterruptException


def _query_interrupted(e: BaseException) -> bool:
    """Was `e` (or what it was raised while handling) an interrupt? DuckDB 2.0 stops a query
    that Ctrl-C or SIGTERM interrupts with a RuntimeError; Prefect turns SIGTERM into its
    TerminationSignal, which DuckDB may wrap, and a clean-up may then fail in its turn."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, KeyboardInterrupt) or type(e).__name__ == "TerminationSignal" or (
                isinstance(e, Exception) and str(e).startswith("Query interrupted")) or \
                "TerminationSignal" in str(e)[:500]:
            return True
        e = e.__cause__ or e.__context__
    return False


def _stop_on_sigterm():
    """SIGTERM (what a service manager sends) stops recon as Ctrl-C does: the same rollback
    and the same one sentence. Returns the previous handler (None off the main thread)."""
    def stop(signum, frame):
        raise KeyboardInterrupt
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, stop)


PREFECT_START_HINT = ("start `prefect server start` and set PREFECT_API_URL to its API "
                      "(e.g. http://127.0.0.1:4200/api), or use --orchestrator plain")


def prefect_unreachable(e: BaseException) -> str | None:
    """The one sentence for a Prefect API that cannot be reached (exit 2), else None."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = str(e)
        if "ephemeral Prefect API server" in text:
            return (f"Prefect's temporary API server did not start in time; {PREFECT_START_HINT}.")
        if text.startswith("Failed to reach API at") or type(e).__name__ in (
                "ConnectError", "ConnectTimeout", "PoolTimeout"):
            where = os.environ.get("PREFECT_API_URL") or "its configured address"
            return f"Prefect's API at {where} cannot be reached; {PREFECT_START_HINT}."
        e = e.__cause__ or e.__context__
    return None


def _release(e: BaseException | None) -> None:
    """Drop the locals of the frames of a failed run (a DuckDB connection among them):
    Prefect keeps the exception in the run's state, and native objects still alive at
    interpreter exit make DuckDB's bindings print leak reports on stderr."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        traceback.clear_frames(e.__traceback__)
        e = e.__cause__ or e.__context__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
