"""Orchestration of a business date: the Prefect flows and the plain path, sharing one body.

    reconcile_date (flow)    one date D: read inbox -> stage (the provinces loaded on
                             threads, or on Dask workers) -> each step of
                             transforms.reconcile.STEPS -> finalize -> report frames
                             -> stage reports -> publish, plus Prefect artifacts
    backfill (flow)          D1..D2 in order, one reconcile_date subflow per date
    nightly (flow)           what `recon serve` schedules at 02:30 Asia/Shanghai: every
                             date from the first STALE / unprocessed one up to yesterday

`run_date(paths, D, executor)` holds the whole sequence once. An *executor* decides
how a step is called: `PlainExecutor` calls the function (threads for the
per-province loads), `PrefectExecutor` wraps it in a Prefect task (glue steps
with `task=False` excepted; the province loads run on threads inside `stage` and
are listed in the artifact recon-<D>-intake). Tasks hold no logic: each is a
transform or an I/O function of flows/.

Retries: only steps that read the inbox or stage the reports retry, and only on a
transient OSError (`flows.warehouse.transient_oserror`: never disk full, permission
denied or a read-only folder), with exponential backoff. Bad data never retries: it yields findings or
an InputError.

Test hook: env RECON_TEST_KILL_AT=<point> SIGKILLs the process at that point
(`KILL_POINTS`), to prove the atomicity guarantees.
"""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import functools
import hashlib
import itertools
import json
import logging
import os
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from contracts.errors import InputError
from flows import warehouse as wh

log = logging.getLogger("recon")

SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
KILL_POINTS = ("after_stage", "after_rules", "after_reports_staged", "after_commit",
               "mid_publish", "after_swap")
DEPLOYMENT_NAME = "recon-nightly"
NIGHTLY_CRON = "30 2 * * *"
NIGHTLY_TZ = "Asia/Shanghai"
NIGHTLY_CONCURRENCY = 1  # runs of the nightly deployment at a time (Prefect's limit)


class RunFailed(Exception):
    """The run could not be completed and published nothing; str() is one sentence."""


@dataclass(frozen=True)
class Paths:
    inbox: Path
    out: Path
    warehouse: Path

    @classmethod
    def of(cls, inbox, out, warehouse) -> "Paths":
        return cls(Path(inbox), Path(out), Path(warehouse))

    @property
    def where(self) -> tuple[Path, Path, Path]:
        """What a printed command names so that it acts on these folders as pasted."""
        return (self.inbox, self.out, self.warehouse)


def kill_point(name: str) -> None:
    """SIGKILL this process when RECON_TEST_KILL_AT names this point (tests only)."""
    if os.environ.get("RECON_TEST_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


# --------------------------------------------------------------------------- steps

@dataclass(frozen=True)
class Step:
    name: str
    fn: Callable
    io_retries: int = 0  # retries on OSError only
    task: bool = True    # its own task run under Prefect; glue steps run inside the flow run


def _read_inbox(inbox: Path, d: date):
    from flows.inbox import read_inbox_date
    return read_inbox_date(inbox, d)


def _date_folders(inbox: Path) -> list[date]:
    from flows.inbox import date_folders
    return date_folders(inbox)


def _load_province(delivery, d: date):
    from transforms.intake import load_province
    return load_province(delivery, d)


def _stage(con, ctx, inbox_date, intakes) -> None:
    from transforms.intake import stage
    stage(con, ctx, inbox_date, intakes)


def _finalize(con, ctx) -> None:
    from transforms.findings import finalize
    finalize(con, ctx.d)


def _report_frames(con, ctx) -> dict:
    from transforms import clearing, reports
    return {
        "exceptions": reports.exceptions_report(con, ctx),
        "settlement": reports.settlement_report(clearing.settlement_report(con, ctx)),
        "positions": reports.positions_report(clearing.positions_report(con, ctx)),
    }


def _summary_parts(con, ctx) -> dict:
    from transforms import clearing, reports
    per_rule = reports.findings_per_rule(con, ctx)
    return {"per_rule": per_rule, "status": reports.run_status(per_rule),
            "files": reports.file_loads(con, ctx), "amounts": clearing.amounts(con, ctx),
            "invariants": clearing.invariants(con, ctx),
            "reasons": reports.partial_reasons(con, ctx),
            "by_rule_province": reports.findings_by_rule_and_province(con, ctx)}


def _stage_reports(out, run_id, con, ctx, frames, summary):
    from flows.publish import stage_reports
    return stage_reports(out, run_id, con, ctx, frames, summary)


def _swap(out, run_id, d):
    wh.swap_into_place(out, run_id, d, kill_at=kill_point)


def _check_published(out: Path, run_id: str, d: date) -> None:
    """Exit 0 only when <out>/<D> holds every report of outputs.md, of this run."""
    from flows.publish import missing_reports
    missing = missing_reports(Path(out) / d.isoformat(), run_id)
    if missing:
        raise RunFailed(f"the reports of {d.isoformat()} in {Path(out) / d.isoformat()} are "
                        f"incomplete after publishing ({', '.join(missing)}); run "
                        f"`recon run --date {d.isoformat()}` again.")


# list_date_folders, finalize, report_frames and summary_parts are no task runs of their own
# under Prefect: each one costs ~30 ms of CPU here and on the server (issue 11 item 1), and
# they are glue an operator never needs to watch (their time is in the flow run's).
READ_FOLDERS = Step("list_date_folders", _date_folders, io_retries=3, task=False)
READ_INBOX = Step("read_inbox", _read_inbox, io_retries=3)
LOAD_PROVINCE = Step("load_province", _load_province, io_retries=3)
STAGE = Step("stage", _stage)
FINALIZE = Step("finalize", _finalize, task=False)
REPORT_FRAMES = Step("report_frames", _report_frames, task=False)
SUMMARY_PARTS = Step("summary_parts", _summary_parts, task=False)
STAGE_REPORTS = Step("stage_reports", _stage_reports, io_retries=2)
PUBLISH = Step("publish", _swap)


def reconcile_steps() -> list[Step]:
    from transforms.reconcile import STEPS
    return [Step(name, fn) for name, fn in STEPS]


def _reconcile_in_one(con, ctx) -> None:
    """The steps of reconcile_steps() one after the other as plain calls (an error still
    names its step), their seconds in one INFO line of the task run's log."""
    plain = PlainExecutor()
    run_reconcile_steps(con, ctx, plain)
    try:
        from prefect.logging import get_run_logger
        logger = get_run_logger()
    except Exception:  # noqa: BLE001 - outside a task run: the module's logger
        logger = log
    logger.info("steps of %s: %s", ctx.business_date.isoformat(),
                ", ".join(f"{name} {s:.2f} s" for name, s in plain.timings.items()))


# The rule, ledger and clearing steps of a date as one task run: a pipelined backfill on
# Dask (flows/distributed.py) runs them so, because every task run costs the Prefect
# server about 26 ms of CPU on the driver's cores (docs/capacity.md); the nightly and
# single dates keep a task run per step.
RECONCILE = Step("reconcile", _reconcile_in_one)


def run_reconcile_steps(con, ctx, ex) -> None:
    """D's rules, ledger, balances and clearing, in the order of transforms.reconcile."""
    if getattr(ex, "reconcile_in_one_task", False):
        ex.call(RECONCILE, con, ctx)
        return
    for step in reconcile_steps():
        ex.call(step, con, ctx)
        wh.release_cached_blocks(con)  # the file's blocks a step read (issue 12 target 3)


# --------------------------------------------------------------------------- executors

class PlainExecutor:
    """Calls the step functions directly (no Prefect); province loads on threads."""

    def __init__(self, max_workers: int | None = None, backoff: float = 0.5):
        self.max_workers = max_workers or min(8, (os.cpu_count() or 2))
        self.backoff = backoff
        self.timings: dict[str, float] = {}  # step name -> seconds (benchmarks print them)

    def call(self, step: Step, *args):
        attempt = 0
        while True:
            try:
                t0 = time.perf_counter()
                result = step.fn(*args)
                took = time.perf_counter() - t0
                self.timings[step.name] = self.timings.get(step.name, 0.0) + took
                log.debug("step %s took %.2f s", step.name, took)
                return result
            except OSError as e:
                if attempt >= step.io_retries or not wh.transient_oserror(e):
                    _tag(e, step)  # disk full, permission, read-only: retrying cannot help
                    raise
                time.sleep(self.backoff * 2 ** attempt)
                attempt += 1
            except Exception as e:
                _tag(e, step)
                raise

    def map(self, step: Step, items: list, *args) -> list:
        if len(items) <= 1:
            return [self.call(step, it, *args) for it in items]
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(self.max_workers) as pool:
            results = list(pool.map(lambda it: self.call(step, it, *args), items))
        self.timings[f"{step.name} (wall)"] = time.perf_counter() - t0
        return results

    def stream(self, step: Step, items: list, *args) -> Iterator | list:
        """The results of map, yielded in order as they come, with at most
        PROVINCES_IN_FLIGHT items being computed ahead of the one the caller holds:
        the caller stages each province while the next ones load, and what it has
        staged is freed (issue 12). A subclass that changed how map loads (Parquet
        of StagingExecutor) keeps its own map and its list."""
        if type(self).map is not PlainExecutor.map:
            return self.map(step, items, *args)
        return self._stream(step, items, *args)

    def _stream(self, step: Step, items: list, *args) -> Iterator:
        from contracts.resources import PROVINCES_IN_FLIGHT
        ahead = max(1, min(PROVINCES_IN_FLIGHT, self.max_workers))
        waited = f"{step.name} (waited)"   # the caller idle, waiting for a load
        self.timings.setdefault(waited, 0.0)
        t0 = time.perf_counter()
        todo = iter(items)
        pool = concurrent.futures.ThreadPoolExecutor(ahead)
        pending: collections.deque = collections.deque()
        try:
            for it in itertools.islice(todo, ahead):
                pending.append(pool.submit(self.call, step, it, *args))
            while pending:
                w0 = time.perf_counter()
                result = pending.popleft().result()
                self.timings[waited] += time.perf_counter() - w0
                for it in itertools.islice(todo, 1):
                    pending.append(pool.submit(self.call, step, it, *args))
                yield result
                del result   # the caller has staged it: hold no reference while it waits
        finally:
            for f in pending:
                f.cancel()
            pool.shutdown(wait=True)
            self.timings[f"{step.name} (wall)"] = time.perf_counter() - t0

    def artifacts(self, summary: dict, by_rule_province: list[dict]) -> None:
        pass


def _quoted(args: tuple) -> list:
    """The arguments of a step's task wrapped in prefect's `quote`: Prefect hands them
    over unchanged but never walks them looking for upstream futures (the steps pass
    results, not futures; walking a DuckDB connection's frames and a day's deliveries
    cost ~0.7 s per run, issue 11 item 1)."""
    from prefect.utilities.annotations import quote
    return [quote(a) for a in args]


def _tag(e: Exception, step: Step) -> None:
    """Remember the first step an exception came out of (for the one-sentence error)."""
    if not hasattr(e, "recon_step"):
        try:
            e.recon_step = step.name
        except AttributeError:
            pass


def _retry_on_oserror(task, task_run, state) -> bool:
    """Prefect retry_condition_fn: retry transient I/O (OSError) only, never bad data,
    never an environment fault (disk full, permission denied, read-only folder)."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001 - cannot tell: do not retry
        return False
    return wh.transient_oserror(exc)


def _seen(load: Callable) -> Callable:
    """`load` returning (its result, where and when it ran and the rows it loaded)."""
    def seen(delivery, d: date, *args):
        started = time.time()
        intake = load(delivery, d, *args)
        return intake, {"province": delivery.province, "worker": threading.current_thread().name,
                        "started": started, "finished": time.time(),
                        "rows": sum(f.height for f in getattr(intake, "frames", {}).values())}
    return seen


def _runner_threads() -> int | None:
    """The threads of the current flow run's task runner (1 for `sequential`), if any."""
    from prefect.context import FlowRunContext
    ctx = FlowRunContext.get()
    n = getattr(getattr(ctx, "task_runner", None), "_max_workers", None)
    return n if isinstance(n, int) and 0 < n < 1 << 16 else None


def intake_artifact(d: date, loads: list[dict], where: str) -> None:
    """Prefect's view of a date's province loads: the table artifact recon-<D>-intake,
    one row per province with where it ran, its start and end, and its rows."""
    from prefect.artifacts import create_table_artifact

    def at(t: float) -> str:
        return datetime.fromtimestamp(t).astimezone().isoformat(timespec="milliseconds")
    create_table_artifact(
        key=f"recon-{d.isoformat()}-intake",
        table=[{**x, "started": at(x["started"]), "finished": at(x["finished"])} for x in loads]
        or [{"province": "-", "worker": "-", "started": "-", "finished": "-", "rows": 0}],
        description=f"Provinces of {d.isoformat()} loaded on the {where}")


def task_name(step: Step) -> str:
    """The name a step's task (and its runs) carries in logs and the UI: rules-transfers,
    load-province (its runs load-province-44, ...)."""
    return step.name.replace("_", "-")


class PrefectExecutor:
    """Wraps every step in a Prefect task (created once per step name)."""

    def __init__(self, backoff: float = 2.0):
        self.backoff = backoff
        self._tasks: dict[str, Any] = {}
        self._plain = PlainExecutor(backoff=backoff)   # steps that are no task run

    def _task(self, step: Step):
        t = self._tasks.get(step.name)
        if t is None:
            from prefect import task
            from prefect.cache_policies import NO_CACHE
            from prefect.tasks import exponential_backoff
            opts: dict[str, Any] = dict(name=task_name(step), task_run_name=task_name(step),
                                        cache_policy=NO_CACHE, persist_result=False)
            if step.io_retries:
                opts.update(retries=step.io_retries,
                            retry_delay_seconds=exponential_backoff(backoff_factor=self.backoff),
                            retry_condition_fn=_retry_on_oserror)
            t = self._tasks[step.name] = task(**opts)(step.fn)
        return t

    def call(self, step: Step, *args):
        if not step.task:
            return self._plain.call(step, *args)
        try:
            return self._task(step)(*_quoted(args))
        except Exception as e:
            _tag(e, step)
            raise

    def _submit(self, step: Step, i: int, item, *args):
        """One task run per item, named after it: load-province-44."""
        return (self._task(step).with_options(
            task_run_name=f"{task_name(step)}-{getattr(item, 'province', i)}")
            .submit(*_quoted((item, *args))))

    def map(self, step: Step, items: list, *args) -> list:
        futures = [self._submit(step, i, it, *args) for i, it in enumerate(items)]
        try:
            return [f.result() for f in futures]
        except Exception as e:
            _tag(e, step)
            raise

    def stream(self, step: Step, items: list, *args) -> Iterator | list:
        """map's results in order as they come, at most PROVINCES_IN_FLIGHT ahead of the
        one the caller holds, as PlainExecutor.stream: the caller stages a province while
        the next ones load, instead of waiting for all of them (issue 11 item 1), and the
        nation is never in memory at once (issue 12). The province loads of a date run on
        threads inside the `stage` task (see _province_loads). An executor that changed
        how map loads (Dask: Parquet on the workers) keeps its map and its list."""
        if type(self).map is not PrefectExecutor.map:
            return self.map(step, items, *args)
        if step is LOAD_PROVINCE:
            return self._province_loads(items, *args)
        return self._stream(step, items, *args)

    def _province_loads(self, items: list, d: date) -> Iterator:
        """D's provinces loaded as the plain path loads them (threads of this process,
        PROVINCES_IN_FLIGHT ahead, transient I/O retried), inside the `stage` task run,
        and listed in the artifact recon-<D>-intake (province, thread, start, end, rows)
        as the Dask workers' loads are. A task run per province cost about 30 ms of CPU
        here and on the server each, 31 a day: half of Prefect's overhead (issue 11)."""
        plain = PlainExecutor(max_workers=_runner_threads(), backoff=self.backoff)
        loaded: list[dict] = []
        for intake, seen in plain.stream(Step(LOAD_PROVINCE.name, _seen(LOAD_PROVINCE.fn),
                                              LOAD_PROVINCE.io_retries), items, d):
            loaded.append(seen)
            yield intake
            del intake   # the caller has staged it: hold no reference while it waits
        intake_artifact(d, loaded, "threads of the driver")

    def _stream(self, step: Step, items: list, *args) -> Iterator:
        from contracts.resources import PROVINCES_IN_FLIGHT
        todo = iter(enumerate(items))
        first = itertools.islice(todo, max(1, PROVINCES_IN_FLIGHT))
        pending: collections.deque = collections.deque(
            self._submit(step, i, it, *args) for i, it in first)
        while pending:
            try:
                result = pending.popleft().result()
            except Exception as e:
                _tag(e, step)
                raise
            pending.extend(self._submit(step, i, it, *args) for i, it in itertools.islice(todo, 1))
            yield result
            del result  # the caller has staged it: hold no reference while it waits

    def artifacts(self, summary: dict, by_rule_province: list[dict]) -> None:
        from prefect.artifacts import create_markdown_artifact, create_table_artifact
        from contracts.summary import parse
        from contracts.privacy import scrub_json
        from transforms.reports import markdown_summary
        s = parse(scrub_json(summary))   # an artifact is an output: no full resident ID
        d = s.business_date.isoformat()
        key = f"recon-{d}"
        create_markdown_artifact(key=f"{key}-summary", markdown=markdown_summary(s),
                                 description=f"Run summary of {d}")
        create_table_artifact(key=f"{key}-findings",
                              table=by_rule_province or [{"rule_code": "-", "province": "-",
                                                          "findings": 0}],
                              description=f"Findings per rule and province, {d}")


# --------------------------------------------------------------------------- helpers

@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """git describe --always --dirty of the project, else the package version."""
    root = Path(__file__).resolve().parent.parent
    try:
        r = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=root,
                           capture_output=True, text=True, timeout=5)
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        from importlib.metadata import version
        return version("gongji-recon")
    except Exception:  # noqa: BLE001
        return "unknown"


def _reference_sha256(inbox: Path) -> dict[str, str]:
    out = {}
    for name in ("regions.csv", "institutions.csv"):
        p = Path(inbox) / "reference" / name
        try:
            out[f"reference/{name}"] = hashlib.sha256(p.read_bytes()).hexdigest()
        except OSError:
            pass
    return out


def new_run_id(d: date) -> str:
    return f"{d.isoformat()}-{datetime.now(SHANGHAI):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def now() -> datetime:
    return datetime.now(SHANGHAI).replace(microsecond=0)


# --------------------------------------------------------------------------- the one body

@dataclass
class Progress:
    """How far this process's runs got, for the sentence of an interrupt (flows/cli.py):
    the date whose run started last, and the last date committed and published."""
    started: date | None = None
    committed: date | None = None
    published: date | None = None

    def interrupted(self) -> str:
        d = self.started
        if d is None:
            return "interrupted; the run left the previous reports and warehouse as they were."
        if self.published == d:
            return f"interrupted after {d.isoformat()} was reconciled and its reports published."
        if self.committed == d:
            return (f"interrupted after {d.isoformat()} was committed, before its reports were all "
                    f"in place; the next recon run puts them in place (`recon status` shows it).")
        done = (f"; {self.published.isoformat()} before it was reconciled and its reports published"
                if self.published else "")
        return (f"interrupted; the run of {d.isoformat()} left the previous reports and warehouse "
                f"as they were{done}.")


PROGRESS = Progress()


def run_date(paths: Paths, d: date, ex) -> dict:
    """Reconcile D under the run lock of the warehouse and the lock of <out> (which binds
    <out> to this warehouse) and publish its reports; returns summary.json."""
    PROGRESS.started = d
    if not os.path.lexists(paths.warehouse):
        # No warehouse yet: a run that will be refused must not create one (nor its lock)
        # and bind <out> to it, or the right warehouse could no longer publish there.
        _refuse_before_creating(paths, d)
    elif os.path.isfile(paths.warehouse) and not os.path.lexists(f"{paths.warehouse}.lock"):
        wh.refuse_a_foreign_database(paths.warehouse)   # no lock left beside a file not ours
    with wh.run_lock(paths.warehouse, f"run of {d.isoformat()}"):
        con = wh.open_warehouse(paths.warehouse)
        try:
            wh.bind_reports_folder(con, paths.out, paths.warehouse)   # before <out> is made
            with wh.out_lock(paths.out, wh.warehouse_id(con), paths.warehouse):
                for action in wh.recover(con, paths.out, paths.where):
                    log.warning("recovery: %s", action)
                wh.write_status_file(con, paths.warehouse)
                return _run_locked(con, paths, d, ex)
        finally:
            con.close()


def _refuse_before_creating(paths: Paths, d: date) -> None:
    """What _run_locked would refuse on an empty warehouse: no folder for D, or D not the
    first date of the inbox (genesis); InputError with the same sentence."""
    folders = _date_folders(paths.inbox)
    if d not in folders:
        raise InputError(f"The inbox {paths.inbox} has no folder for business date {d.isoformat()}.")
    wh.check_genesis(d, folders)
    if os.path.lexists(paths.out) and not os.path.isdir(paths.out):
        raise InputError(f"The reports folder {paths.out} is not a folder.")
    wh.refuse_a_bound_out(paths.out, paths.warehouse)
    from flows.inbox import read_reference
    read_reference(paths.inbox)   # a fault in reference/ is exit 2 (reading 7e)


def _run_locked(con, paths: Paths, d: date, ex) -> dict:
    """D's run once the locks are held: check its inbox folder and order, reconcile it in
    one warehouse transaction with its reports staged aside, then publish them."""
    from transforms.context import RunContext
    from transforms.intake import declared_rows

    started = now()
    folders = ex.call(READ_FOLDERS, paths.inbox)
    if d not in folders:
        raise InputError(f"The inbox {paths.inbox} has no folder for business date {d.isoformat()}.")
    genesis = wh.check_order(con, d, folders, paths.where)
    ctx = RunContext.for_date(d, genesis)
    inbox_date = ex.call(READ_INBOX, paths.inbox, d)
    wh.size_for_day(con, declared_rows(inbox_date.deliveries, d))   # a large day gets more memory
    run_id = new_run_id(d)
    summary, parts, newly_stale = _reconcile_and_commit(con, paths, ctx, ex, inbox_date, run_id, started)
    _publish_committed(con, paths, d, ex, run_id)
    if newly_stale:
        log.warning("marked STALE: %s", ", ".join(x.isoformat() for x in newly_stale))
    ex.artifacts(summary, parts["by_rule_province"])
    return summary


def _reconcile_and_commit(con, paths: Paths, ctx, ex, inbox_date, run_id: str, started: datetime
                          ) -> tuple[dict, dict, list]:
    """Intake, rules, ledger, clearing and the staged reports of D, in one transaction:
    committed whole, or rolled back with the staged reports dropped. Returns
    (summary.json, the summary parts, the dates this run made STALE)."""
    from transforms.context import bind_date

    d = ctx.business_date
    previous_run_id, previous_ids = wh.previous_findings(con, d)
    staged = False
    bind_date(con, ctx)
    con.execute("BEGIN TRANSACTION")
    try:
        wh.delete_date(con, d)
        sha = _reference_sha256(paths.inbox)
        with contextlib.closing(_ProvinceLoads(ex, inbox_date, d)) as loads:
            ex.call(STAGE, con, ctx, inbox_date, loads.noting_sha256(sha))
        for delivery in inbox_date.deliveries:  # the manifests are input too
            if delivery.manifest_bytes is not None:
                sha[f"{d.isoformat()}/{delivery.province}/manifest.json"] = \
                    hashlib.sha256(delivery.manifest_bytes).hexdigest()
        kill_point("after_stage")
        run_reconcile_steps(con, ctx, ex)
        ex.call(FINALIZE, con, ctx)
        kill_point("after_rules")

        frames = ex.call(REPORT_FRAMES, con, ctx)
        summary, parts = _summary(con, ex, ctx, frames, inbox_date, sha, run_id, started,
                                  ctx.genesis, previous_run_id, previous_ids)
        wh.release_cached_blocks(con)
        ex.call(STAGE_REPORTS, paths.out, run_id, con, ctx, frames, summary)
        staged = True
        wh.write_journal(paths.out, run_id, d)
        wh.check_swappable(paths.out, d)   # a publish that cannot happen must not follow a commit
        kill_point("after_reports_staged")
        digest = hashlib.sha256(json.dumps(summary["input_sha256"], sort_keys=True)
                                .encode()).hexdigest()
        newly_stale = wh.record_run(con, d, run_id, summary["status"], started,
                                    datetime.fromisoformat(summary["finished_at"]), digest, summary)
        con.execute("COMMIT")
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except Exception:  # noqa: BLE001 - the transaction may already be gone
            pass
        if staged:
            wh.finish_run(paths.out, run_id)
        raise
    PROGRESS.committed = ctx.business_date
    kill_point("after_commit")
    return summary, parts, newly_stale


def _publish_committed(con, paths: Paths, d: date, ex, run_id: str) -> None:
    """Move D's committed reports into place, check them, and bring the STALE marks and
    the status file up to date; the journal goes last, so recovery can redo any of it."""
    ex.call(PUBLISH, paths.out, run_id, d)
    kill_point("after_swap")
    _check_published(paths.out, run_id, d)
    wh.sync_stale_summaries(con, paths.out, paths.where)
    wh.write_status_file(con, paths.warehouse)  # what `recon status` reads
    wh.finish_run(paths.out, run_id)
    PROGRESS.published = d


def _summary(con, ex, ctx, frames, inbox_date, sha, run_id, started, genesis,
             previous_run_id, previous_ids) -> tuple[dict, dict]:
    """summary.json of D (and the summary parts the artifacts read), once the
    invariants hold and the report frames meet their contract: a failed invariant
    stops the run before anything is published."""
    from contracts.reports import validate_reports
    from flows.operations import with_scorecard  # (flows.operations imports this module)
    from transforms import reports

    d = ctx.business_date
    parts = ex.call(SUMMARY_PARTS, con, ctx)
    failed = [i.get("name") for i in parts["invariants"] if not i.get("passed")]
    if failed:
        raise RunFailed(f"the invariant(s) {', '.join(map(str, failed))} failed on {d.isoformat()}, "
                        "so nothing was published.")
    validate_reports(frames, d)
    current_ids = set(frames["exceptions"]["exception_id"].to_list())
    summary = reports.summary(
        ctx=ctx, run_id=run_id, status=parts["status"],
        provinces_expected=list(inbox_date.live_provinces),
        provinces_delivered=[x.province for x in inbox_date.deliveries
                             if getattr(x, "manifest_bytes", b"") is not None],
        files=parts["files"], per_rule=parts["per_rule"], amounts=parts["amounts"],
        invariants=parts["invariants"], input_sha256=sha, code_version=code_version(),
        started=started, finished=now(),
        changes_=reports.changes(previous_run_id, previous_ids, current_ids),
        genesis=genesis, reasons=parts["reasons"])
    return with_scorecard(con, summary, inbox_date.deliveries), parts


class _ProvinceLoads:
    """The loaded provinces of D in province order: a stream when the executor loads
    on this process's threads or as Prefect task runs (each province staged, then freed,
    while the next ones load: issue 12), else the executor's list (Dask workers hand over
    Parquet, not rows, and drop it when STAGE has the list)."""

    def __init__(self, ex, inbox_date, d: date):
        deliveries = sorted(inbox_date.deliveries, key=lambda x: x.province)
        self.ex = ex
        stream = getattr(ex, "stream", ex.map)
        self.loads = stream(LOAD_PROVINCE, deliveries, d)

    def noting_sha256(self, sha: dict[str, str]):
        """The intakes, noting the sha256 of every file read (summary.json) as they pass."""
        if isinstance(self.loads, list):
            for intake in self.loads:
                sha.update(getattr(intake, "sha256", {}) or {})
            return self.loads
        return self._noting(sha)

    def _noting(self, sha: dict[str, str]) -> Iterator:
        for intake in self.loads:
            sha.update(getattr(intake, "sha256", {}) or {})
            self._time_parts(intake)
            yield intake
            del intake

    def _time_parts(self, intake) -> None:
        """Add the parts of a province's load (read, decode, validate, ...) to the
        executor's step timings, summed over the provinces: the benchmarks print them."""
        timings = getattr(self.ex, "timings", None)
        for part, took in (getattr(intake, "seconds", None) or {}).items():
            if timings is not None:
                timings[f"load_province: {part}"] = timings.get(f"load_province: {part}", 0.0) + took

    def close(self) -> None:
        """Stop the loads still in flight (a failed stage must not leave them running)."""
        if not isinstance(self.loads, list):
            self.loads.close()


def dates_between(start: date, end: date) -> list[date]:
    if end < start:
        raise InputError(f"The end date {end.isoformat()} is before the start date {start.isoformat()}.")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def preflight_range(paths: Paths, start: date, end: date) -> list[date]:
    """Refuse a range before touching anything: a missing folder or an unmet order."""
    days = dates_between(start, end)
    from flows.inbox import date_folders
    folders = set(date_folders(paths.inbox))
    missing = [x for x in days if x not in folders]
    if missing:
        raise InputError(f"The inbox {paths.inbox} has no folder for business date "
                         f"{missing[0].isoformat()}.")
    if not os.path.lexists(paths.warehouse):   # a refused range creates no warehouse nor lock
        wh.check_genesis(start, sorted(folders))
        return days
    with wh.run_lock(paths.warehouse):
        con = wh.open_warehouse(paths.warehouse, read_only=True)
        try:
            wh.check_order(con, start, sorted(folders), paths.where)
        finally:
            con.close()
    return days


def pending_dates(paths: Paths, until: date) -> list[date]:
    """What the nightly schedule reconciles: from the first STALE date, else the day after
    the last processed one, else the first folder of the inbox, up to `until`."""
    from flows.inbox import date_folders
    folders = date_folders(paths.inbox)
    with wh.run_lock(paths.warehouse):
        con = wh.open_warehouse(paths.warehouse, read_only=True)
        try:
            rs = wh.runs(con)
        finally:
            con.close()
    stale = [r["business_date"] for r in rs if r["status"] == wh.STALE]
    if stale:
        start = min(stale)
    elif rs:
        start = rs[-1]["business_date"] + timedelta(days=1)
    elif folders:
        start = folders[0]
    else:
        return []
    return dates_between(start, until) if start <= until else []


def run_date_plain(inbox, out, warehouse, business_date: date, max_workers: int | None = None) -> dict:
    """The plain path (no Prefect): tests, the benchmark, RECON_ORCHESTRATOR=plain."""
    return run_date(Paths.of(inbox, out, warehouse), business_date, PlainExecutor(max_workers))


def backfill_plain(inbox, out, warehouse, start: date, end: date,
                   max_workers: int | None = None) -> list[dict]:
    paths = Paths.of(inbox, out, warehouse)
    return [run_date(paths, d, PlainExecutor(max_workers)) for d in preflight_range(paths, start, end)]


# --------------------------------------------------------------------------- Prefect flows

def task_runner(name: str | None = None):
    """Task runner by configuration (RECON_TASK_RUNNER): 'threads' (default), 'dask'
    (needs the prefect-dask package), 'sequential' (one province at a time)."""
    name = (name or os.environ.get("RECON_TASK_RUNNER") or "threads").lower()
    from prefect.task_runners import ThreadPoolTaskRunner
    if name == "threads":
        return ThreadPoolTaskRunner(max_workers=min(8, os.cpu_count() or 2))
    if name == "sequential":
        return ThreadPoolTaskRunner(max_workers=1)
    if name == "dask":  # RECON_DASK_ADDRESS's scheduler, else a LocalCluster
        from flows.distributed import dask_task_runner
        return dask_task_runner()
    raise InputError(f"Unknown task runner {name!r}; use threads, sequential or dask.")


_FLOWS: tuple = ()


def __getattr__(name: str):
    """`flows.nightly.reconcile_date`, `.backfill`, `.nightly` are the Prefect flows,
    defined on first access so that the plain path never imports Prefect."""
    if name in ("reconcile_date", "backfill", "nightly"):
        return dict(zip(("reconcile_date", "backfill", "nightly"), _flows()))[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _flows():
    """Define the Prefect flows once (see __getattr__)."""
    global _FLOWS
    if _FLOWS:
        return _FLOWS
    from prefect import flow
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect.utilities.annotations import opaque  # results handed back, never walked

    @flow(name="reconcile-date", task_runner=ThreadPoolTaskRunner(max_workers=8),
          flow_run_name="reconcile-{business_date}", log_prints=True)
    def reconcile_date(inbox: str, out: str, warehouse: str, business_date: date) -> dict:
        """Reconcile one business date and publish its reports."""
        from flows.distributed import flow_executor  # Dask: province loads on the workers
        paths = Paths.of(inbox, out, warehouse)
        with flow_executor(paths) as ex:
            return opaque(run_date(paths, business_date, ex))

    @flow(name="backfill", flow_run_name="backfill-{start}-{end}")
    def backfill(inbox: str, out: str, warehouse: str, start: date, end: date,
                 runner: str | None = None) -> list[dict]:
        """Reconcile start..end in order (re-running any date already done)."""
        paths = Paths.of(inbox, out, warehouse)
        days = preflight_range(paths, start, end)
        from flows.distributed import pipelined_backfill, runs_on_dask
        if runs_on_dask():  # later dates' intake on the workers while earlier dates run here
            return opaque(pipelined_backfill(paths, days))
        sub = reconcile_date.with_options(task_runner=task_runner(runner))
        return opaque([result(sub(inbox, out, warehouse, d)) for d in days])

    @flow(name="nightly")
    def nightly(inbox: str, out: str, warehouse: str, runner: str | None = None,
                until: date | None = None, deadline: str | None = None,
                lookback_days: int | None = None, poll_seconds: float | None = None,
                alert_digest: bool | None = None, error_spike_factor: float | None = None,
                ) -> list[dict]:
        """The 02:30 schedule (flows/operations.py): wait for yesterday's provinces until the
        deadline, re-run the dates whose inputs changed and the STALE ones after them, then
        reconcile yesterday (or `until`). Alert channels come from RECON_ALERTS."""
        from flows import operations
        cfg = operations.OpsConfig.from_env(
            deadline=deadline, lookback_days=lookback_days, poll_seconds=poll_seconds,
            digest=alert_digest, spike_factor=error_spike_factor)
        sub = reconcile_date.with_options(task_runner=task_runner(runner))
        paths = Paths.of(inbox, out, warehouse)
        done = operations.nightly_run(paths, cfg, lambda d: result(sub(inbox, out, warehouse, d)),
                                      until=until, wait=operations.prefect_wait)
        operations.scorecard_artifact(paths, cfg)
        return opaque(done)

    for f in (reconcile_date, backfill, nightly):
        f.__module__ = __name__  # the module path the served deployment imports
    _FLOWS = (reconcile_date, backfill, nightly)
    return _FLOWS


def result(returned):
    """What a flow of ours returned. The flows hand their summaries back wrapped in
    Prefect's `opaque`: Prefect walks a flow's return value looking for futures, and
    walking a date's summary cost ~0.1 s of each flow run (issue 11 item 1)."""
    from prefect.utilities.annotations import BaseAnnotation
    return returned.unwrap() if isinstance(returned, BaseAnnotation) else returned


@contextlib.contextmanager
def _ad_hoc_run():
    """An ad-hoc run from the terminal (`recon run`, `recon backfill`) emits no flow-run
    heartbeats: they drive Prefect's zombie-run automations for runs of a deployment
    (`recon serve` keeps them), the terminal has the exit status, and Prefect's heartbeat
    thread sleeps in one-second steps that every flow run waits out at its end (up to
    1 s per date, issue 11 item 1)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def run_date_prefect(paths: Paths, d: date, runner: str | None = None) -> dict:
    reconcile_date, _, _ = _flows()
    from flows.distributed import prefect_api_for_workers
    api = prefect_api_for_workers() if _is_dask(runner) else contextlib.nullcontext()
    with api, _ad_hoc_run():
        return result(reconcile_date.with_options(task_runner=task_runner(runner))(
            str(paths.inbox), str(paths.out), str(paths.warehouse), d))


def _is_dask(runner: str | None) -> bool:
    return (runner or os.environ.get("RECON_TASK_RUNNER") or "").lower() == "dask"


def backfill_prefect(paths: Paths, start: date, end: date, runner: str | None = None) -> list[dict]:
    preflight_range(paths, start, end)  # refuse before Prefect starts
    _, backfill, _ = _flows()
    if not _is_dask(runner):
        with _ad_hoc_run():
            return result(backfill(str(paths.inbox), str(paths.out), str(paths.warehouse), start,
                                   end, runner))
    from flows.distributed import prefect_api_for_workers
    with prefect_api_for_workers(), _ad_hoc_run():  # one cluster for the range, dates pipelined
        return result(backfill.with_options(task_runner=task_runner("dask"))(
            str(paths.inbox), str(paths.out), str(paths.warehouse), start, end, runner))


def nightly_deployment(paths: Paths, runner: str | None = None, settings: dict | None = None):
    """The RunnerDeployment of the nightly schedule (02:30 Asia/Shanghai), one run at a
    time (Prefect's deployment concurrency limit, beside the warehouse's file lock).
    `settings`: the nightly flow's operations parameters (deadline, lookback_days, ...);
    alert URLs are not parameters (they may hold passwords): RECON_ALERTS."""
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron
    _, _, nightly = _flows()
    return nightly.to_deployment(
        name=DEPLOYMENT_NAME,
        schedule=Cron(NIGHTLY_CRON, timezone=NIGHTLY_TZ),
        parameters={"inbox": str(Path(paths.inbox).resolve()), "out": str(Path(paths.out).resolve()),
                    "warehouse": str(Path(paths.warehouse).resolve()), "runner": runner,
                    **{k: v for k, v in (settings or {}).items() if v is not None}},
        description="Reconcile yesterday (Asia/Shanghai) at 02:30: wait for late provinces until "
                    "the deadline, re-run dates whose inputs changed, catch up STALE dates.",
        entrypoint_type=EntrypointType.MODULE_PATH,
        concurrency_limit=NIGHTLY_CONCURRENCY,
        tags=["gongji-recon"],
    )


def register_deployment(paths: Paths, runner: str | None = None, settings: dict | None = None):
    """Register (or update) the nightly deployment without serving it; returns its id."""
    return nightly_deployment(paths, runner, settings).apply()


def serve(paths: Paths, runner: str | None = None, settings: dict | None = None) -> None:
    """Register the nightly deployment and poll for its scheduled runs (blocks)."""
    from prefect import serve as prefect_serve
    prefect_serve(nightly_deployment(paths, runner, settings))
