"""`--task-runner dask`: Prefect's DaskTaskRunner, the province intake that runs on its
workers, and the backfill that pipelines its dates.

    driver (recon)                           Dask workers (LocalCluster or `dask worker`s)
    read_inbox(D) -> deliveries  ─────────►  load_on_worker(delivery, D, run folder):
                                             read, decode, validate, F01-F05, and write
                                             <staging>/<run>/<D>-<PP>-xxxx/*.parquet
    stage(D): DuckDB reads the ◄─────────    returns a StagedIntake: folder name, row counts,
    Parquet whose sha256 matches;            file stats, rows, size and sha256 of each
    rules, ledger, clearing, reports         Parquet file, worker and times (never the rows)
    of D, in date order

The province loads are plain Dask tasks on the DaskTaskRunner's client, not Prefect task
runs: a Prefect task run on a worker cost about as much CPU as the intake of an average
province of a 250,000-person day (docs/capacity.md), and the workers then never talk to
the Prefect API. Prefect shows each date's loads as the table artifact recon-<D>-intake (province,
worker, start, end, rows).

On a LocalCluster the workers share the driver's cores, so the driver never waits for a
load no worker has begun: it loads those provinces itself, on its threads (all of D1 while
the cluster starts), and the workers run a few nice steps below it (DaskExecutor).

The warehouse stays single-writer: only the driver opens DuckDB; workers never need the
driver's memory. Workers read the inbox themselves (ProvinceDelivery carries its folder
and the bounded reader of flows/inbox.py), so on several hosts the inbox and the staging
folder must be one shared file system, seen at the same path.

The staging folder is not trusted (docs/run-folders.md): recon only creates folders of
its own under it with exclusive, private `mkdtemp`, reads back only names it made (real
folders and regular files, checked with lstat, never following a link) whose size and
sha256 are the ones its worker wrote (the driver trusts its workers, not the folder, so
it does not check the rows against the contract a second time), and removes
only its own run folders: each date's Parquet right after the date is staged, the run
folder at the end, and at start the run folders of dead runs (their lock is free).
"""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import contextvars
import fcntl
import hashlib
import io
import itertools
import logging
import os
import re
import socket
import stat
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import polars as pl
import pyarrow as paw
import pyarrow.parquet as pq

from contracts import codes
from contracts.errors import InputError
from flows import warehouse as wh
from flows.nightly import (LOAD_PROVINCE, READ_INBOX, STAGE, Paths, PlainExecutor,
                           PrefectExecutor, Step, _tag, run_date)

ADDRESS_ENV = "RECON_DASK_ADDRESS"
WORKERS_ENV = "RECON_DASK_WORKERS"
STAGING_ENV = "RECON_DASK_STAGING"
DEFAULT_STAGING = ".intake"      # <out>/.intake unless RECON_DASK_STAGING names a folder
RUN_FOLDER = re.compile(r"recon-intake-\d{8}T\d{6}-[0-9a-f]{8}")
PROVINCE_FOLDER = re.compile(r"(\d{4}-\d{2}-\d{2})-(\d{2})-[A-Za-z0-9_]{1,16}")
LOCK = ".lock"
PIPELINE_DEPTH = 2               # dates whose intake runs ahead of the date on the driver
CONNECT_TIMEOUT_S = 5.0
# The local workers' task runs log INFO to the Prefect API only; warnings reach the console.
# One core each: polars single-threaded (Dask already sets OMP_NUM_THREADS=1, which sizes
# pyarrow's thread pool).
WORKER_ENV = {"PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
              "DASK_LOGGING__DISTRIBUTED": "warning", "POLARS_MAX_THREADS": "1"}
# The LocalCluster's workers run `nice` steps below the driver (RECON_DASK_WORKER_NICE, 0
# for none): the driver's rules are the backfill's critical path, the workers' intake runs
# ahead in the cycles the driver leaves, and what they have not begun when its date comes
# the driver takes (DaskExecutor). 5, not 10: a worker at 10 starved behind other work on
# a busy machine (docs/capacity.md). Operators' own `dask worker`s are left as they are.
NICE_ENV = "RECON_DASK_WORKER_NICE"
LOCAL_WORKER_NICE = 5
# The LocalCluster's processes share the driver's cores: no statistical profiler in the
# workers (a stack sample every 10 ms of every task, for a dashboard recon does not start)
# and event-loop health checks every second, not every 20 ms (docs/capacity.md).
LOCAL_CLUSTER_CONFIG = {"distributed.worker.profile.enabled": False,
                        "distributed.admin.tick.interval": "1s",
                        "distributed.admin.system-monitor.interval": "2s"}


# --------------------------------------------------------------------------- the cluster

def local_workers() -> int:
    """Worker processes of the LocalCluster: RECON_DASK_WORKERS, else one per CPU this
    process may use but one, which the driver keeps (it is the bottleneck: its rules take
    longer than a day's intake, docs/capacity.md). Single-threaded processes: polars and
    pyarrow keep the GIL for parts of parsing."""
    text = os.environ.get(WORKERS_ENV)
    if text:
        try:
            n = int(text)
        except ValueError:
            n = 0
        if n < 1:
            raise InputError(f"{WORKERS_ENV}={text!r} is not a whole number of at least 1.")
        return n
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus - 1)


def local_worker_nice() -> int:
    """How many steps below the driver the LocalCluster's workers run: RECON_DASK_WORKER_NICE
    (0-19), else LOCAL_WORKER_NICE."""
    text = os.environ.get(NICE_ENV)
    if not text:
        return LOCAL_WORKER_NICE
    if not text.isdigit() or int(text) > 19:
        raise InputError(f"{NICE_ENV}={text[:20]!r} is not a whole number from 0 to 19.")
    return int(text)


def check_address(address: str) -> str:
    """tcp://HOST:PORT of a running `dask scheduler`, else InputError (exit 2)."""
    parts = urlsplit(address)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("tcp", "tls") or not parts.hostname or not port or parts.path:
        raise InputError(f"The Dask scheduler address {address[:80]!r} is not of the form "
                         "tcp://HOST:PORT (e.g. tcp://10.0.0.5:8786).")
    return address


def check_reachable(address: str) -> None:
    """Refuse (exit 2) a scheduler that does not answer, before anything is touched."""
    parts = urlsplit(check_address(address))
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as e:
        raise InputError(f"The Dask scheduler at {address} cannot be reached "
                         f"({e.strerror or e}); start `dask scheduler` there or leave out "
                         "--dask-address to use a cluster on this machine.") from None


def dask_task_runner():
    """Prefect's DaskTaskRunner: on the scheduler of RECON_DASK_ADDRESS, else on a
    LocalCluster of local_workers() processes bound to 127.0.0.1 without dashboard."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise InputError("The task runner 'dask' needs the package prefect-dask, "
                         "which is not installed.") from None
    quiet_dask_logs()
    address = os.environ.get(ADDRESS_ENV)
    if address:
        return DaskTaskRunner(address=check_address(address))
    import dask
    dask.config.set(LOCAL_CLUSTER_CONFIG)   # the scheduler here; the nannies pass it on
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs={
        "n_workers": local_workers(), "threads_per_worker": 1, "processes": True,
        "host": "127.0.0.1", "dashboard_address": None, "env": WORKER_ENV})


def quiet_dask_logs() -> None:
    """Dask's INFO lines (cluster start, workers joining) stay off the CLI's screenful, in
    this process and in the worker processes it starts."""
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    # prefect-dask announces a dashboard even when the cluster has none
    logging.getLogger("prefect.task_runner.dask").setLevel(logging.WARNING)


@contextlib.contextmanager
def prefect_api_for_workers():
    """One Prefect API for the whole run: a Prefect server (PREFECT_API_URL) as it is, else
    Prefect's temporary API started here and named in the settings. The province loads
    are plain Dask tasks and never talk to it; anything sent to the workers as a Prefect
    task would find the driver's API here instead of starting a temporary API of its own."""
    from prefect.settings import PREFECT_API_URL, temporary_settings
    if PREFECT_API_URL.value():
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer
    server = SubprocessASGIServer()  # the same one Prefect's own client would start
    server.start()
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        yield


def runs_on_dask() -> bool:
    """Whether the current Prefect flow run's task runner is Dask."""
    from prefect.context import FlowRunContext
    ctx = FlowRunContext.get()
    return ctx is not None and type(ctx.task_runner).__name__ == "DaskTaskRunner"


# --------------------------------------------------------------------------- staging folder

def staging_root(paths: Paths) -> Path:
    """RECON_DASK_STAGING (an operator's shared folder, must exist), else <out>/.intake,
    made a real folder of recon's own (a link of that name is removed, not followed)."""
    given = os.environ.get(STAGING_ENV)
    if given:  # absolute paths: workers started elsewhere have another working folder
        root = Path(os.path.abspath(given))
        if not root.is_dir():
            raise InputError(f"The Dask staging folder {root} ({STAGING_ENV}) is not a folder.")
        return root
    root = Path(os.path.abspath(paths.out)) / DEFAULT_STAGING
    if wh._lstat(root) is not None and not wh._is_real_dir(root):
        wh.remove_path(root)
    root.mkdir(parents=True, exist_ok=True)
    if not wh._is_real_dir(root):
        raise InputError(f"{root} cannot be made a folder of recon's own; remove it and run again.")
    return root


def _try_lock(path: Path) -> int | None:
    """An exclusive flock on a regular file, None when someone holds it (or it is not ours)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError("not a regular file")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except OSError:
        os.close(fd)
        return None


def remove_dead_runs(root: Path) -> list[str]:
    """Remove the run folders of runs that died (their lock is free); nothing else under
    `root` is touched."""
    removed = []
    with os.scandir(root) as it:
        entries = [e for e in it if RUN_FOLDER.fullmatch(e.name)]
    for e in entries:
        folder = Path(e.path)
        if not wh._is_real_dir(folder):
            wh.remove_path(folder)  # a planted link of our name: unlinked, target untouched
            continue
        fd = _try_lock(folder / LOCK)
        if fd is None and wh._lstat(folder / LOCK) is not None:
            continue                # a live run holds it
        try:
            wh.remove_path(folder)
            removed.append(e.name)
        finally:
            if fd is not None:
                os.close(fd)
    return removed


@contextlib.contextmanager
def run_folder(paths: Paths):
    """A fresh private folder for this run's staged Parquet, locked while we live,
    removed at the end whatever happens."""
    root = staging_root(paths)
    remove_dead_runs(root)
    stamp = f"{datetime.now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    folder = root / f"recon-intake-{stamp}"
    folder.mkdir(mode=0o755)  # exclusive: fails if anything of that name exists
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield folder
    finally:
        wh.remove_path(folder)
        os.close(fd)
        if not os.environ.get(STAGING_ENV):  # <out>/.intake is ours; an operator's folder stays
            with contextlib.suppress(OSError):
                root.rmdir()  # only when empty (no other run is staging there)


# --------------------------------------------------------------------------- worker side

STAGED_FILES = tuple(f"{ds}.parquet" for ds in codes.DATASETS) + ("quarantine.parquet",
                                                                  "findings.parquet")
# lz4 without column statistics: the staged Parquet is read once, whole, by the driver;
# zstd and statistics cost the workers CPU for nothing (docs/capacity.md).
STAGED_PARQUET = {"compression": "lz4", "statistics": False}
PROC_FD = Path("/proc/self/fd")   # Linux: DuckDB reads the very file recon opened and checked


@dataclass
class StagedFile:
    """One Parquet file as the worker wrote it: rows, bytes and sha256, which the driver
    checks before loading it (the staging folder is not trusted; the worker is)."""
    rows: int
    size: int
    sha256: str


@dataclass
class StagedIntake:
    """What a worker returns for one province of D: where its rows are, never the rows.
    `stage` inserts it with the provinces next to it (insert_staged,
    transforms.intake.stage_staged)."""
    province: str
    business_date: date
    folder: str                        # the name of the province folder in the run folder
    rows: dict[str, int]               # dataset -> rows loaded
    files: list                        # FileStat of every expected file
    sha256: dict[str, str]             # source_file -> hex of the bytes read
    written: dict[str, StagedFile] = field(default_factory=dict)  # STAGED_FILES -> as written
    run_folder: Path | None = field(default=None, repr=False)  # set by the driver
    worker: str = ""                   # where it was loaded, and when (epoch seconds)
    started: float = 0.0
    finished: float = 0.0

    @classmethod
    def insert_staged(cls, con, intakes: list["StagedIntake"], table: str, name: str,
                      columns: list[str]) -> None:
        """INSERT INTO table (columns) the rows of the staged file `name` of every one of
        `intakes`, in their order, by one statement: DuckDB reads the files straight from
        the Parquet once each is proven to be the one its worker wrote (verified_source).
        One statement a table for a date's provinces, not one per province: a statement
        has a fixed cost, and 31 provinces x 7 files cost about 0.5 s a date
        (docs/capacity.md). The workers checked the rows against the contract
        (load_province's pandera check), so they are not checked again here."""
        chosen = [s for s in intakes if s._written(name).rows]
        if not chosen:
            return   # nothing to load, as transforms.intake._insert skips an empty frame
        cols = ", ".join(columns)
        with contextlib.ExitStack() as checked:
            sources = [checked.enter_context(s.verified_source(name)) for s in chosen]
            if all(isinstance(x, str) for x in sources):
                # a list of files keeps their order, and each file's (preserve_insertion_order)
                con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM read_parquet(?)",
                            [sources])
            else:
                # off Linux: the rows of every chosen file in memory, one table at a time
                _recon_staged_rows = paw.concat_tables(sources)  # noqa: F841 - DuckDB finds it by name
                con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _recon_staged_rows")

    def _written(self, name: str) -> StagedFile:
        written = self.written.get(name)
        if written is None:
            raise InputError(f"A staged intake of province {self.province} names {name[:40]!r}, "
                             "which its worker did not write.")
        return written

    @contextlib.contextmanager
    def verified_source(self, name: str):
        """The staged file `name`, proven to be byte for byte the one the worker wrote:
        a regular file of recon's own name and folder (confined_file, never a link),
        opened without following links, of the size the worker wrote (so a planted huge
        file is never read) and the sha256 it wrote, unchanged until the rows are in
        (size, mtime and ctime compared again after the load). Yields the path of the
        opened file under /proc/self/fd (Linux: whatever the folder's names point to
        meanwhile, DuckDB reads the file that was checked), else its rows as Arrow."""
        want = self._written(name)
        path = confined_file(self.run_folder, self.folder, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise _changed(path, f"it cannot be opened ({e.strerror or e})") from None
        with os.fdopen(fd, "rb") as f:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode) or before.st_size != want.size:
                raise _changed(path, f"it has {before.st_size} bytes where the worker wrote {want.size}")
            data = None if PROC_FD.is_dir() else f.read()
            got = hashlib.sha256(data).hexdigest() if data is not None else \
                hashlib.file_digest(f, "sha256").hexdigest()
            if got != want.sha256:
                raise _changed(path, "its sha256 differs from the one the worker wrote")
            if data is None:
                yield str(PROC_FD / str(fd))
            else:
                yield pq.read_table(paw.BufferReader(data))
            after = os.fstat(fd)
            if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != \
                    (before.st_size, before.st_mtime_ns, before.st_ctime_ns):
                raise _changed(path, "it was written to while it was loaded")


def _changed(path: Path, why: str) -> InputError:
    return InputError(f"The staged file {path} is not the file recon's worker wrote ({why}); "
                      "the staging folder was changed during the run.")


def confined_file(run: Path | None, folder: str, name: str) -> Path:
    """run/folder/name when it is what recon wrote: folder and name of our own forms,
    real folders and a regular file (lstat: a planted link is never followed)."""
    if run is None or not PROVINCE_FOLDER.fullmatch(folder) or name not in STAGED_FILES:
        raise InputError(f"A staged intake names {folder[:40]!r}/{name[:40]!r}, which recon "
                         "did not write.")
    path = Path(run) / folder / name
    st = wh._lstat(path)
    if not (wh._is_real_dir(Path(run)) and wh._is_real_dir(path.parent)
            and st is not None and stat.S_ISREG(st.st_mode)):
        raise InputError(f"The staged file {path} is not the regular file recon wrote; "
                         "the staging folder was changed during the run.")
    return path


def intake_to_parquet(delivery, business_date: date, run: str) -> StagedIntake:
    """On a worker: load one province of D (transforms.intake.load_province) and write
    its loaded rows, quarantine and findings as Parquet into a fresh private folder."""
    from transforms.intake import load_province
    folder = getattr(delivery, "folder", None)
    if folder is not None and not os.path.isdir(folder):
        # Not "absent files" (F02 everywhere): a worker that does not see the inbox is a
        # fault of the cluster, said in one sentence.
        raise InputError(f"The Dask worker on {socket.gethostname()} does not see the province "
                         f"folder {folder}; every worker must see the inbox at the driver's path.")
    return write_staged(load_province(delivery, business_date), run)


def write_staged(intake, run: str) -> StagedIntake:
    """A ProvinceIntake's rows as Parquet in a fresh private folder of the run folder."""
    business_date = intake.business_date
    if not wh._is_real_dir(Path(run)):
        raise InputError(f"The Dask staging folder {run} is not a real folder on this worker; "
                         "workers must see the staging folder at the driver's path.")
    prefix = f"{business_date.isoformat()}-{intake.province}-"
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=run))  # exclusive, mode 0700
    os.chmod(folder, 0o755)  # the driver may run as another user of the shared folder
    parts = {f"{ds}.parquet": intake.frames[ds] for ds in codes.DATASETS}
    parts.update({"quarantine.parquet": intake.quarantine, "findings.parquet": intake.findings})
    written = {name: _write_file(folder / name, frame) for name, frame in parts.items()}
    return StagedIntake(intake.province, business_date, folder.name,
                        {ds: f.height for ds, f in intake.frames.items()},
                        intake.files, intake.sha256, written)


def _write_file(path: Path, frame: pl.DataFrame) -> StagedFile:
    """`frame` as Parquet in a new file (never through a link), with its size and sha256
    taken from the bytes written, not read back."""
    buf = io.BytesIO()
    frame.write_parquet(buf, **STAGED_PARQUET)
    data = buf.getbuffer()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return StagedFile(frame.height, len(data), hashlib.sha256(data).hexdigest())


INTAKE_TO_PARQUET = Step(LOAD_PROVINCE.name, intake_to_parquet, io_retries=LOAD_PROVINCE.io_retries)


def load_on_worker(delivery, business_date: date, run: str) -> StagedIntake:
    """The Dask task of one province: intake_to_parquet with the plain executor's retries
    of transient I/O, stamped with the worker's name and its start and end."""
    started = time.time()
    staged = PlainExecutor().call(INTAKE_TO_PARQUET, delivery, business_date, run)
    staged.worker, staged.started, staged.finished = worker_name(), started, time.time()
    return staged


def worker_name() -> str:
    """The Dask worker's name (`dask worker --name`, else its address), else the host."""
    try:
        from distributed import get_worker
        return str(get_worker().name)
    except (ImportError, ValueError):
        return socket.gethostname()


def drop_staged(run: Path, staged: list) -> None:
    """Remove the Parquet of a staged date (only folder names recon makes)."""
    for s in staged:
        if PROVINCE_FOLDER.fullmatch(s.folder):
            wh.remove_path(run / s.folder)


# --------------------------------------------------------------------------- driver side

class DaskExecutor(PrefectExecutor):
    """PrefectExecutor whose province loads run on the Dask workers as load_on_worker
    and can be submitted ahead (prefetch) for the dates a backfill reaches later.

    Everything that talks to the cluster (starting a LocalCluster or connecting to the
    scheduler, submitting loads) runs on one thread of its own, so the driver need not
    wait for a cluster to start. The workers of a LocalCluster run on the driver's own
    cores: there, when D's turn comes, the driver takes every province of D that no
    worker has begun (all of them while the cluster is still starting) and loads it on
    its threads, as `--task-runner threads` does, instead of waiting for it."""

    def __init__(self, paths: Paths, run: Path, reconcile_in_one_task: bool = False):
        super().__init__()
        self.paths, self.run = paths, run
        self.reconcile_in_one_task = reconcile_in_one_task   # flows.nightly.RECONCILE
        self._ahead: dict[date, tuple] = {}   # D -> (InboxDate, Future of {province: Dask future})
        self._taken: set[date] = set()         # dates the driver began: submit none of them
        self._staged: list[StagedIntake] = []  # the workers' Parquet of the date being staged
        self._client = None
        self._dask = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="recon-dask")
        self._context = contextvars.copy_context()
        self.shares_cores = not os.environ.get(ADDRESS_ENV)   # a LocalCluster
        self.nice = local_worker_nice() if self.shares_cores else 0

    def _on_dask_thread(self, fn, *args) -> concurrent.futures.Future:
        """fn(*args) on the Dask thread, in the flow run's context as it was when this
        executor was made (its task runner), not a task run's: the cluster's event loop
        keeps the context it starts in, which must not hold a task's arguments (the
        warehouse connection) until the process ends."""
        return self._dask.submit(self._context.copy().run, fn, *args)

    def _dask_client(self):
        """The task runner's client: the first call starts the LocalCluster (seconds on
        this machine; its workers then yield to the driver) or connects to
        RECON_DASK_ADDRESS's scheduler."""
        if self._client is None:
            from prefect.context import FlowRunContext
            client = FlowRunContext.get().task_runner.client
            if self.nice > 0:
                client.run(yield_to_driver, self.nice)
            self._client = client
        return self._client

    def _submit_loads(self, deliveries: list, d: date) -> dict:
        """One Dask task per province, earlier dates first (Dask runs higher priorities
        first); keys name the date, the province and this run (a shared scheduler)."""
        client = self._dask_client()
        if d in self._taken:   # the driver began D while the cluster started
            return {}
        return {x.province: client.submit(
                    load_on_worker, x, d, str(self.run), pure=False, priority=-d.toordinal(),
                    key=f"load-province-{d.isoformat()}-{x.province}-{self.run.name}")
                for x in deliveries}

    def _not_begun(self, submitted: dict) -> list[str]:
        """The provinces of `submitted` that no worker has begun (queued on the
        scheduler), cancelled there: the driver loads them."""
        keys = {f.key: province for province, f in submitted.items()}
        states = self._dask_client().run_on_scheduler(task_states, list(keys))
        taken = [p for k, p in keys.items() if states.get(k) in NOT_BEGUN]
        self._dask_client().cancel([submitted[p] for p in taken])
        return taken

    def prefetch(self, d: date) -> None:
        """Read D's inbox and submit its provinces now; a fault is left for D's own turn."""
        if d in self._ahead or d in self._taken:
            return
        try:
            inbox_date = super().call(READ_INBOX, self.paths.inbox, d)
        except Exception:  # noqa: BLE001 - D's run reads again and reports it in order
            return
        self._ahead[d] = (inbox_date, self._on_dask_thread(
            self._submit_loads, list(inbox_date.deliveries), d))

    def call(self, step: Step, *args):
        if step is READ_INBOX and args[1] in self._ahead:
            return self._ahead[args[1]][0]
        result = super().call(step, *args)
        if step is STAGE:   # the workers' Parquet of D is in the warehouse: drop it at once
            drop_staged(self.run, self._staged)
            self._staged = []
        return result

    def stream(self, step: Step, items: list, *args):
        if step is not LOAD_PROVINCE:
            return self.map(step, items, *args)
        return self._loads(items, args[0])

    def map(self, step: Step, items: list, *args) -> list:
        if step is not LOAD_PROVINCE:
            return super().map(step, items, *args)
        return list(self._loads(items, args[0]))

    def _workers_keep(self, items: list, d: date) -> dict:
        """{province: Dask future} of the provinces of D the workers load; the driver
        loads the others."""
        self._taken.add(d)
        ahead = self._ahead.pop(d, (None, None))[1]
        if ahead is not None and self.shares_cores and not ahead.done():
            ahead.add_done_callback(_cancel_submitted)  # the cluster is still starting
            return {}
        submitted = dict(ahead.result()) if ahead is not None else {}
        missing = [x for x in items if x.province not in submitted]
        if missing:   # not submitted ahead (one date): now, and wait for the cluster
            self._taken.discard(d)
            submitted.update(self._on_dask_thread(self._submit_loads, missing, d).result())
            self._taken.add(d)
        if self.shares_cores:
            for province in self._on_dask_thread(self._not_begun, submitted).result():
                del submitted[province]
        return submitted

    def _loads(self, items: list, d: date) -> Iterator:
        """D's provinces in the order asked: the workers' staged Parquet, and the loads
        the driver took, on its threads (begun at once, PROVINCES_IN_FLIGHT ahead).
        recon-<D>-intake lists where each was loaded."""
        futures: dict = {}
        local = None
        listed: list[dict] = []
        try:
            futures = self._workers_keep(items, d)
            local = _DriverLoads([x for x in items if x.province not in futures], d,
                                 self.backoff)
            for x in items:
                if x.province in local.provinces:
                    intake, seen = local.next()
                    listed.append(seen)
                else:
                    intake = futures[x.province].result()
                    intake.run_folder = self.run
                    self._staged.append(intake)
                    listed.append({"province": intake.province, "worker": intake.worker,
                                   "started": intake.started, "finished": intake.finished,
                                   "rows": sum(intake.rows.values())})
                yield intake
                del intake   # staged: hold no reference while the next one comes
        except BaseException as e:   # a fault, or the caller stopped (its stage failed)
            _cancel(list(futures.values()))
            if isinstance(e, Exception):
                _tag(e, LOAD_PROVINCE)
            raise
        finally:
            if local is not None:
                local.close()
        where = ("Dask workers" if local is None or not local.provinces else
                 "threads of the driver" if not futures else
                 "Dask workers and threads of the driver")
        from flows.nightly import intake_artifact   # recon-<D>-intake, as the threads' loads
        intake_artifact(d, listed, where)

    def cancel_ahead(self) -> None:
        """Cancel the loads submitted for dates that will not run (a date failed)."""
        for _inbox, submitted in self._ahead.values():
            with contextlib.suppress(Exception):   # a cluster that failed to start: nothing to cancel
                _cancel(list(submitted.result().values()))
        self._ahead.clear()

    def close(self) -> None:
        """Cancel what runs ahead and let the Dask thread finish (before the task runner
        stops the cluster)."""
        try:
            self.cancel_ahead()
        finally:
            self._dask.shutdown(wait=True)


# Scheduler states of a task no worker has begun (queued: the workers are saturated).
NOT_BEGUN = frozenset({"queued", "no-worker", "waiting", "released"})


def task_states(keys: list, dask_scheduler=None) -> dict:
    """On the scheduler (Client.run_on_scheduler): the state of each of `keys` it knows."""
    return {k: ts.state for k in keys if (ts := dask_scheduler.tasks.get(k)) is not None}


def _cancel_submitted(submitted: concurrent.futures.Future) -> None:
    with contextlib.suppress(Exception):
        _cancel(list(submitted.result().values()))


class _DriverLoads:
    """The provinces the driver took, loaded on its threads as the Prefect executor
    loads them (transient I/O retried), begun at once, at most PROVINCES_IN_FLIGHT
    ahead of the one the caller takes, in order; each with where and when it ran."""

    def __init__(self, items: list, d: date, backoff: float):
        from contracts.resources import PROVINCES_IN_FLIGHT
        from flows.nightly import _runner_threads, _seen
        plain = PlainExecutor(max_workers=_runner_threads(), backoff=backoff)
        step = Step(LOAD_PROVINCE.name, _seen(LOAD_PROVINCE.fn), LOAD_PROVINCE.io_retries)
        self.provinces = {x.province for x in items}
        self._todo = iter(items)
        self._load = lambda x: plain.call(step, x, d)
        ahead = max(1, min(PROVINCES_IN_FLIGHT, plain.max_workers))
        self._pool = concurrent.futures.ThreadPoolExecutor(ahead) if items else None
        self._pending = collections.deque(self._pool.submit(self._load, x)
                                          for x in itertools.islice(self._todo, ahead))

    def next(self):
        result = self._pending.popleft().result()
        self._pending.extend(self._pool.submit(self._load, x) for x in itertools.islice(self._todo, 1))
        return result

    def close(self) -> None:
        for f in self._pending:
            f.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _cancel(futures: list) -> None:
    for f in futures:
        with contextlib.suppress(Exception):
            f.cancel()


def yield_to_driver(nice: int) -> None:
    """On a local worker: every thread of its process (on Linux a thread has a priority
    of its own) runs `nice` steps below the driver it was started by, so the driver
    sharing its cores gets them first; threads started later inherit it."""
    tasks = "/proc/self/task"
    for tid in os.listdir(tasks) if os.path.isdir(tasks) else ["0"]:
        with contextlib.suppress(OSError):   # a thread that ended meanwhile
            os.setpriority(os.PRIO_PROCESS, int(tid),
                           min(19, os.getpriority(os.PRIO_PROCESS, int(tid)) + nice))


class StagingExecutor(PlainExecutor):
    """The plain executor with the provinces staged through Parquet as under Dask, but
    loaded here (threads): the benchmark measures the driver's stages with it, and tests
    check the Parquet round trip without a cluster."""

    def __init__(self, run: Path, max_workers: int | None = None):
        super().__init__(max_workers)
        self.run = run

    def map(self, step: Step, items: list, *args) -> list:
        if step is not LOAD_PROVINCE:
            return super().map(step, items, *args)
        staged = super().map(INTAKE_TO_PARQUET, items, args[0], str(self.run))
        for s in staged:
            s.run_folder = self.run
        return staged

    def call(self, step: Step, *args):
        result = super().call(step, *args)
        if step is STAGE:
            drop_staged(self.run, args[3])
        return result


@contextlib.contextmanager
def dask_executor(paths: Paths, reconcile_in_one_task: bool = False):
    with run_folder(paths) as run:
        ex = DaskExecutor(paths, run, reconcile_in_one_task)
        try:
            yield ex
        finally:
            ex.close()


def flow_executor(paths: Paths):
    """The executor of the current Prefect flow run: DaskExecutor when its task runner
    is Dask (a context manager either way)."""
    if runs_on_dask():
        return dask_executor(paths)
    return contextlib.nullcontext(PrefectExecutor())


def pipelined_backfill(paths: Paths, days: list[date]) -> list[dict]:
    """D1..Dn in date order on the driver, while the workers already load the provinces
    of the next PIPELINE_DEPTH dates (the ledger chain still goes D-1 -> D: only intake,
    which reads nothing of the warehouse, runs ahead). On a LocalCluster the driver
    takes what the workers have not begun when a date's turn comes: D1 while the
    cluster starts (3.2 s here, docs/capacity.md), later dates when the workers are
    behind (DaskExecutor). A date's rule, ledger and clearing steps are one task run,
    `reconcile` (flows.nightly.RECONCILE): the driver is the backfill's bottleneck, and
    it shares its cores with the workers (and here with the Prefect server)."""
    summaries = []
    with dask_executor(paths, reconcile_in_one_task=True) as ex:
        for i, d in enumerate(days):
            for ahead in days[i:i + 1 + PIPELINE_DEPTH]:  # D first: Dask runs in submit order
                ex.prefetch(ahead)
            summaries.append(run_date(paths, d, ex))
    return summaries
