"""Operations around the nightly run (issue 11): waiting for late provinces, finding
processed dates whose inputs changed since their run, and catching them up in order.

    wait_for_provinces   poll the inbox until every live province of D has delivered a
                         complete folder (manifest and every file it names) or the
                         deadline passes; returns the provinces still missing
    changed_dates        processed dates of the look-back window whose delivered files
                         differ from what their run read (summary.json `input_sha256`)
    nightly_run          what the 02:30 schedule does: wait -> look back -> re-run the
                         changed dates and the STALE ones after them -> the new date
    catch_up             `recon catch-up`: the same without the new date and the wait
    status_lines         the `recon status` section of dates whose inputs changed
    scorecard_lines      `recon status --provinces` (and the nightly artifact)
    with_scorecard       summary.json of a run with exported_at and the delivery scorecard

Every summary is read through contracts/summary.py (RunSummary / SummaryCore); the
transforms get parsed summaries, never dicts.

The clock and the sleep are injected (`Clock`), so tests drive a whole night with a
fake clock. How one date is reconciled is injected too (`run_one`): the plain path or
the Prefect subflow; this module imports Prefect only in `prefect_wait` and
`scorecard_artifact`, which the nightly flow calls.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import time as _time
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Callable, Protocol

from contracts import codes
from contracts import operations as ops
from contracts import summary as summary_contract
from contracts.errors import InputError
from flows import warehouse as wh
from flows.alerts import Alerter
from flows.nightly import SHANGHAI, Paths, dates_between
from transforms.archive import archive_boundary

log = logging.getLogger("recon")


# --------------------------------------------------------------------------- configuration

class Clock(Protocol):
    def now(self) -> datetime: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(SHANGHAI)

    def sleep(self, seconds: float) -> None:
        _time.sleep(seconds)


def parse_deadline(text: str) -> time:
    """'HH:MM' (Asia/Shanghai) as a time; anything else is a usage error."""
    try:
        t = time.fromisoformat(str(text).strip())
    except ValueError:
        raise InputError(f"The deadline {text!r} is not a time HH:MM (Asia/Shanghai).") from None
    return t.replace(second=0, microsecond=0, tzinfo=None)


@dataclass(frozen=True)
class OpsConfig:
    """Settings of the nightly run; defaults from contracts/operations.py."""
    lookback_days: int = ops.LOOKBACK_DAYS
    deadline: time = ops.DEADLINE
    poll_seconds: float = ops.POLL_SECONDS
    alerts: tuple[str, ...] = ()
    digest: bool = False
    spike_factor: float = ops.ERROR_SPIKE_FACTOR

    @classmethod
    def from_env(cls, env=None, **given) -> "OpsConfig":
        """RECON_LOOKBACK_DAYS, RECON_DEADLINE, RECON_POLL_SECONDS, RECON_ALERTS (apprise
        URLs separated by whitespace), RECON_ALERT_DIGEST, RECON_ERROR_SPIKE_FACTOR;
        a value given here (not None) wins over the environment."""
        env = os.environ if env is None else env
        raw = {"lookback_days": env.get("RECON_LOOKBACK_DAYS"), "deadline": env.get("RECON_DEADLINE"),
               "poll_seconds": env.get("RECON_POLL_SECONDS"), "alerts": env.get("RECON_ALERTS"),
               "digest": env.get("RECON_ALERT_DIGEST"),
               "spike_factor": env.get("RECON_ERROR_SPIKE_FACTOR")}
        raw.update({k: v for k, v in given.items() if v is not None})
        cfg = cls()
        for key, kind, env_name in (("lookback_days", int, "RECON_LOOKBACK_DAYS"),
                                    ("poll_seconds", float, "RECON_POLL_SECONDS"),
                                    ("spike_factor", float, "RECON_ERROR_SPIKE_FACTOR")):
            if raw[key] not in (None, ""):
                try:
                    cfg = replace(cfg, **{key: kind(raw[key])})
                except ValueError:
                    raise InputError(f"{env_name} {str(raw[key])[:40]!r} is not a "
                                     f"{'whole number' if kind is int else 'number'}.") from None
        if raw["deadline"] not in (None, ""):
            cfg = replace(cfg, deadline=raw["deadline"] if isinstance(raw["deadline"], time)
                          else parse_deadline(raw["deadline"]))
        alerts = raw["alerts"]
        if alerts:
            cfg = replace(cfg, alerts=tuple(alerts.split() if isinstance(alerts, str) else alerts))
        digest = raw["digest"]
        if digest is not None:
            cfg = replace(cfg, digest=digest if isinstance(digest, bool)
                          else str(digest).strip().lower() in ("1", "true", "yes", "on"))
        if cfg.lookback_days < 1 or cfg.poll_seconds <= 0 or cfg.spike_factor <= 0:
            raise InputError("The look-back days, the poll seconds and the error spike factor "
                             "must be positive.")
        return cfg


def deadline_at(d: date, deadline: time) -> datetime:
    """The moment the run for D stops waiting: `deadline` on D+1, Asia/Shanghai."""
    return datetime.combine(d + timedelta(days=1), deadline, SHANGHAI)


# --------------------------------------------------------------------------- reading the inbox

class HashCache:
    """sha256 of inbox files already hashed, keyed by what the kernel says about the file
    (device, inode, size, mtime_ns, ctime_ns: a rewrite changes ctime, which no user
    call can set back), kept beside the warehouse (`<warehouse>.sha256-cache.json`) so
    that the nightly look-back and `recon status` hash only what changed since.
    `writable=False` (recon status) reads it and writes nothing."""

    MAX_BYTES = 64 << 20

    def __init__(self, path: Path | None = None, writable: bool = False):
        self.path, self.writable = path, writable and path is not None
        self.known: dict[str, list] = {}
        self.used: dict[str, list] = {}
        if path is not None:
            try:
                if os.path.isfile(path) and os.path.getsize(path) <= self.MAX_BYTES:
                    doc = json.loads(Path(path).read_text(encoding="utf-8"))
                    self.known = {k: v for k, v in doc.items()
                                  if isinstance(k, str) and isinstance(v, list) and len(v) == 6}
            except (OSError, ValueError, AttributeError):
                self.known = {}

    @classmethod
    def of(cls, warehouse: Path, writable: bool) -> "HashCache":
        return cls(Path(f"{warehouse}.sha256-cache.json"), writable)

    @staticmethod
    def _key(st: os.stat_result) -> list:
        return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]

    def get(self, real: Path, st: os.stat_result) -> str | None:
        entry = self.known.get(str(real))
        if entry is not None and entry[:5] == self._key(st) and isinstance(entry[5], str):
            self.used[str(real)] = entry
            return entry[5]
        return None

    def put(self, real: Path, st: os.stat_result, sha: str) -> None:
        self.used[str(real)] = self._key(st) + [sha]

    def save(self) -> None:
        """Keep the entries used by this look-back only (the cache never outgrows it)."""
        if self.writable and self.used != self.known:
            try:
                wh.write_json_atomic(self.path, self.used)
            except OSError as e:  # a cache that cannot be written only costs time
                log.warning("the sha256 cache %s was not written: %s", self.path, e.strerror or e)


def _hash_inside(folder: Path, name: str, limit: int | None = None,
                 cache: HashCache | None = None) -> tuple[str, str | None]:
    """('ok', sha256) of folder/name streamed in chunks, with the checks of
    flows.inbox._read_inside (inside the folder, a regular file, size limit);
    ('absent', None) or ('refused', None) otherwise."""
    from flows.inbox import _inside
    path = folder / name
    if not os.path.lexists(path):
        return "absent", None
    if not _inside(path, folder):
        return "refused", None
    try:
        real = path.resolve(strict=True)
        st = os.stat(real)
        if not stat.S_ISREG(st.st_mode) or (limit is not None and st.st_size > limit):
            return "refused", None
        known = cache.get(real, st) if cache is not None else None
        if known is not None:
            return "ok", known
        h = hashlib.sha256()
        with open(real, "rb") as f:
            st = os.fstat(f.fileno())  # the file hashed is the one the cache key describes
            while chunk := f.read(ops.HASH_CHUNK_BYTES):
                h.update(chunk)
        if cache is not None and _unchanged(st, os.stat(real)):
            cache.put(real, st, h.hexdigest())
        return "ok", h.hexdigest()
    except OSError:
        return "refused", None


def _unchanged(a: os.stat_result, b: os.stat_result) -> bool:
    """Nothing wrote the file while it was hashed (else its hash is not cached)."""
    return HashCache._key(a) == HashCache._key(b)


def _province_folders(inbox: Path, d: date) -> dict[str, Path]:
    """Province folders of D that the run would open (flows.inbox.read_inbox_date's rules)."""
    from flows.inbox import _inside
    root = Path(inbox)
    if not root.is_dir():
        return {}
    root = root.resolve()
    day = root / d.isoformat()
    if not day.is_dir() or not _inside(day, root):
        return {}
    day = day.resolve()
    out = {}
    for pp in codes.PROVINCES:
        folder = day / pp
        if os.path.lexists(folder) and folder.is_dir() and _inside(folder, day):
            out[pp] = folder.resolve()
    return out


def _manifest(folder: Path, pp: str, d: date):
    """(status, raw bytes, parsed manifest or None) of a province folder's manifest.json."""
    from flows.inbox import MANIFEST, MAX_MANIFEST_BYTES, _read_inside
    from transforms.intake import ManifestInvalid, parse_manifest
    got = _read_inside(folder, MANIFEST, limit=MAX_MANIFEST_BYTES)
    if got.status != "ok":
        return got.status, b"" if got.status == "refused" else None, None
    try:
        return "ok", got.data, parse_manifest(got.data, pp, d)
    except ManifestInvalid:
        return "ok", got.data, None


def _named_files(manifest) -> list[str]:
    """The data files a run opens: one listing per stem with readable rows and sha256."""
    from transforms.intake import _entry
    names = []
    for ds in codes.DATASETS:
        listed = [n for n in (f"{ds}.csv", f"{ds}.parquet") if n in manifest.files]
        if len(listed) == 1 and _entry(manifest.files[listed[0]]) is not None:
            names.append(listed[0])
    return names


def current_inputs(inbox: Path, d: date, cache: HashCache | None = None) -> dict[str, str]:
    """sha256 of D's delivered files, keyed as summary.json `input_sha256` keys them
    (`<D>/<PP>/manifest.json`, `<D>/<PP>/<data file>`): exactly the files a run of D
    would read now, so a date re-run with unchanged inputs compares equal."""
    sums: dict[str, str] = {}
    for pp, folder in _province_folders(inbox, d).items():
        status, raw, manifest = _manifest(folder, pp, d)
        if raw is None:
            continue  # no manifest: the province is missing
        sums[f"{d.isoformat()}/{pp}/manifest.json"] = hashlib.sha256(raw).hexdigest()
        if manifest is None:
            continue  # refused or invalid manifest: the run opens no data file
        for name in _named_files(manifest):
            got, sha = _hash_inside(folder, name, cache=cache)
            if got == "ok":
                sums[f"{d.isoformat()}/{pp}/{name}"] = sha
    return sums


@dataclass(frozen=True)
class Readiness:
    live: list[str]
    waiting: dict[str, str] = field(default_factory=dict)  # province -> what is not there yet


def province_readiness(inbox: Path, d: date) -> Readiness:
    """Which live provinces of D have not yet delivered a complete folder: a
    manifest.json the run can read and every data file it names present."""
    from flows.inbox import DATA_FILE_NAMES, live_provinces, read_reference
    live = live_provinces(read_reference(inbox).regions, d)
    folders = _province_folders(inbox, d)
    waiting = {}
    for pp in live:
        folder = folders.get(pp)
        if folder is None:
            waiting[pp] = "no folder"
            continue
        status, _raw, manifest = _manifest(folder, pp, d)
        if status == "absent":
            waiting[pp] = "no manifest.json"
            continue
        if manifest is None:
            continue  # delivered, but unusable: the run reports it (F03); waiting will not help
        absent = [n for n in manifest.files if n in DATA_FILE_NAMES and not _present(folder, n)]
        if absent:
            waiting[pp] = f"{', '.join(sorted(absent))} not there yet"
    return Readiness(live, waiting)


def _present(folder: Path, name: str) -> bool:
    """folder/name is a regular file inside the folder (not hashed: waiting stays cheap)."""
    from flows.inbox import _inside
    path = folder / name
    return os.path.lexists(path) and _inside(path, folder) and path.is_file()


# --------------------------------------------------------------------------- waiting

def wait_for_provinces(inbox: Path, d: date, until: datetime, clock: Clock,
                       poll_seconds: float, logger: logging.Logger | None = None) -> list[str]:
    """Poll the inbox until every live province of D delivered a complete folder or
    `until` passed; returns the provinces still missing (their folder incomplete)."""
    logger = logger or log
    shown: dict[str, str] | None = None
    while True:
        r = province_readiness(inbox, d)
        if not r.waiting:
            logger.info("all %d live provinces of %s delivered complete folders", len(r.live),
                        d.isoformat())
            return []
        now = clock.now()
        if now >= until:
            logger.warning("deadline %s reached: still missing for %s: %s; reconciling with what "
                           "arrived", until.isoformat(), d.isoformat(), _listed(r.waiting))
            return sorted(r.waiting)
        if r.waiting != shown:
            logger.info("waiting for provinces of %s until %s: %s", d.isoformat(),
                        until.isoformat(), _listed(r.waiting))
            shown = r.waiting
        clock.sleep(max(0.0, min(poll_seconds, (until - now).total_seconds())))


def _listed(waiting: dict[str, str]) -> str:
    return "; ".join(f"{pp} ({why})" for pp, why in sorted(waiting.items()))


def prefect_wait(inbox: Path, d: date, until: datetime, clock: Clock, poll_seconds: float) -> list[str]:
    """wait_for_provinces as the Prefect task `wait-for-provinces` (its logs in the UI)."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE
    from prefect.logging import get_run_logger

    @task(name="wait-for-provinces", task_run_name=f"wait-for-provinces-{d.isoformat()}",
          cache_policy=NO_CACHE, persist_result=False)
    def wait_task() -> list[str]:
        return wait_for_provinces(inbox, d, until, clock, poll_seconds, get_run_logger())

    return wait_task()


# --------------------------------------------------------------------------- look-back

@dataclass(frozen=True)
class Changed:
    business_date: date
    status: str
    reasons: list[str]


def recorded_runs(paths: Paths, lookback_days: int | None = None,
                  until: date | None = None) -> list[dict]:
    """Every processed date, oldest first: business_date, status, summary (as recorded in
    the warehouse: the outputs folder may be tampered with, the warehouse is ours),
    parsed by contracts/summary.py: a summary that does not match the contract stops
    the look-back with one sentence naming its date (SummaryError, exit 2).

    With `lookback_days`, only the summaries a night reads are parsed (the others are
    None: their status is all it needs), so a night's cost does not grow with the
    history: see _summaries_from."""
    with wh.run_lock(paths.warehouse, "look-back for changed inputs"):
        con = wh.open_warehouse(paths.warehouse, read_only=True)
        try:
            rows = con.execute("SELECT business_date, status FROM runs "
                               "ORDER BY business_date").fetchall()
            since = _summaries_from(rows, lookback_days, until)
            texts = dict(con.execute("SELECT business_date, summary_json FROM runs "
                                     "WHERE business_date >= ?", [since]).fetchall())
            archived = archive_boundary(con) or date.min   # dates before it no longer re-run
        finally:
            con.close()
    return [{"business_date": d, "status": st, "archived": d < archived,
             "summary": _stored(d, texts[d]) if d in texts else None} for d, st in rows]


def _summaries_from(rows: list[tuple], lookback_days: int | None, until: date | None) -> date:
    """The first date whose summary a night reads: the look-back window (ending at
    `until` or at the last processed date, whichever is earlier) and the first STALE
    date on (a catch-up re-runs from there), each with the BASELINE_DAYS before it
    (the ERROR spike's baseline)."""
    if lookback_days is None or not rows:
        return date.min
    end = min(rows[-1][0], until or rows[-1][0])
    starts = [end - timedelta(days=lookback_days - 1)] + [d for d, st in rows if st == wh.STALE][:1]
    return min(starts) - timedelta(days=ops.BASELINE_DAYS)


def _stored(d: date, summary_json: str) -> summary_contract.RunSummary:
    what = f"The summary that the warehouse recorded for {d.isoformat()}"
    try:
        data = json.loads(summary_json)
    except ValueError:
        raise summary_contract.SummaryError(f"{what} is not JSON.") from None
    return summary_contract.parse(data, what)


def changed_dates(paths: Paths, lookback_days: int, until: date | None = None,
                  runs: list[dict] | None = None) -> list[Changed]:
    """Processed dates of the window (`lookback_days` days ending at `until`, default the
    last processed date) whose delivered files changed since their run, oldest first."""
    from transforms.operations import input_changes
    runs = recorded_runs(paths) if runs is None else runs
    if not runs:
        return []
    until = until or runs[-1]["business_date"]
    first = until - timedelta(days=lookback_days - 1)
    cache = HashCache.of(paths.warehouse, writable=True)
    out = []
    for r in runs:
        d = r["business_date"]
        if first <= d <= until and not r["archived"] and (Path(paths.inbox) / d.isoformat()).is_dir():
            # a date folder cleared from the inbox, or an archived date, cannot be re-run:
            # not a change
            reasons = input_changes(d, r["summary"].input_sha256,
                                    current_inputs(paths.inbox, d, cache))
            if reasons:
                out.append(Changed(d, r["status"], reasons))
    cache.save()
    return out


def catch_up_dates(runs: list[dict], changed: list[Changed], until: date | None = None) -> list[date]:
    """From the first changed or STALE date, every date up to `until` (default the last
    processed date): the changed dates are re-run in order and the dates after them,
    STALE by then, brought up to date."""
    if not runs:
        return []
    starts = [c.business_date for c in changed] + \
             [r["business_date"] for r in runs if r["status"] == wh.STALE]
    if not starts:
        return []
    end = until or runs[-1]["business_date"]
    return dates_between(min(starts), end) if min(starts) <= end else []


def nightly_dates(inbox: Path, runs: list[dict], changed: list[Changed], until: date) -> list[date]:
    """What a night reconciles: the catch-up, then every unprocessed date up to `until`."""
    from flows.inbox import date_folders
    starts = [d for d in catch_up_dates(runs, changed, until)[:1]]
    if runs:
        starts.append(runs[-1]["business_date"] + timedelta(days=1))
    else:
        folders = date_folders(inbox)
        starts += folders[:1]
    if not starts or min(starts) > until:
        return []
    return dates_between(min(starts), until)


# --------------------------------------------------------------------------- running dates

RunOne = Callable[[date], dict]


def run_dates(paths: Paths, todo: list[date], run_one: RunOne, alerter: Alerter,
              runs: list[dict], cfg: OpsConfig) -> list[dict]:
    """Reconcile `todo` in order, with the alerts of each date; a failure alerts and
    stops (the dates after it need its closing state)."""
    from transforms.operations import error_spike, late_provinces
    before = {r["business_date"]: r["summary"] for r in runs if r["summary"] is not None}
    history = dict(before)
    done = []
    for d in todo:
        try:
            written = run_one(d)
        except Exception as e:
            alerter.run_failed(d, e)
            raise
        done.append(written)
        s = summary_contract.parse(written)
        history[d] = s
        prev = before.get(d)
        if prev is not None:
            late = late_provinces(prev.provinces.missing, s.provinces.delivered)
            if late:
                alerter.late_delivery(d, late, prev.status_before_stale or prev.status, s.status)
        spike = error_spike(s, [v for k, v in history.items() if k < d], cfg.spike_factor,
                            ops.BASELINE_DAYS, ops.BASELINE_MIN_DAYS)
        if spike:
            alerter.error_spike(d, **spike)
        if cfg.digest:
            alerter.digest(d, s)
    return done


def nightly_run(paths: Paths, cfg: OpsConfig, run_one: RunOne, clock: Clock | None = None,
                until: date | None = None, wait: Callable | None = None,
                alerter: Alerter | None = None) -> list[dict]:
    """The 02:30 run: wait for the provinces of yesterday (until the deadline), look back
    for dates whose inputs changed, re-run them and the STALE dates after them, then
    reconcile the new date(s)."""
    clock = clock or SystemClock()
    alerter = alerter or Alerter(cfg.alerts, paths.out)
    until = until or (clock.now().astimezone(SHANGHAI).date() - timedelta(days=1))
    runs = recorded_runs(paths, cfg.lookback_days, until)
    if until not in {r["business_date"] for r in runs}:
        waiter = wait or wait_for_provinces
        try:
            missing = waiter(paths.inbox, until, deadline_at(until, cfg.deadline), clock,
                             cfg.poll_seconds)
        except Exception as e:
            alerter.run_failed(until, e)
            raise
        if missing:
            alerter.missing_at_deadline(until, missing, deadline_at(until, cfg.deadline))
        runs = recorded_runs(paths, cfg.lookback_days, until)
    changed = changed_dates(paths, cfg.lookback_days, until, runs)
    for c in changed:
        log.warning("%s: inputs changed since its run (%s); re-running it", c.business_date,
                    "; ".join(c.reasons))
    todo = nightly_dates(paths.inbox, runs, changed, until)
    return run_dates(paths, todo, run_one, alerter, runs, cfg)


def catch_up(paths: Paths, cfg: OpsConfig, run_one: RunOne, alerter: Alerter | None = None,
             ) -> tuple[list[Changed], list[dict]]:
    """`recon catch-up`: re-run, in order, the dates of the window whose inputs changed,
    then the STALE dates after them. Returns (what changed, the summaries of the runs)."""
    alerter = alerter or Alerter(cfg.alerts, paths.out)
    runs = recorded_runs(paths, cfg.lookback_days)
    changed = changed_dates(paths, cfg.lookback_days, None, runs)
    todo = catch_up_dates(runs, changed)
    return changed, run_dates(paths, todo, run_one, alerter, runs, cfg)


def status_lines(paths: Paths, runs: list[dict], lookback_days: int = ops.LOOKBACK_DAYS) -> list[str]:
    """The `recon status` section: processed dates whose inputs changed since their run,
    then, under a heading of their own, the dates whose inputs it could not compare.

    `recon status` never takes the run lock, so the recorded sha256 come from the
    published `<out>/<D>/summary.json` here (a hint for the operator; the nightly run
    and `recon catch-up` compare with the warehouse's own copy). A date whose published
    summary.json cannot be read is therefore neither an all-clear nor a change that
    catch-up would act on: catch-up re-runs it only when its inputs differ from what the
    warehouse recorded or an earlier date is re-run, and otherwise leaves that file as it is."""
    from transforms.operations import input_changes
    if not runs:
        return []
    if not Path(paths.inbox).is_dir():
        return [f"Inputs not checked for changes: there is no inbox at {paths.inbox} (--inbox)."]
    last = max(r["business_date"] for r in runs)
    first = last - timedelta(days=lookback_days - 1)
    cache = HashCache.of(paths.warehouse, writable=False)  # status writes no file
    changed, unchecked, archived, compared = [], [], [], 0
    for r in runs:
        d = r["business_date"]
        if d < first or not (Path(paths.inbox) / d.isoformat()).is_dir():
            continue   # as catch-up: a date cleared from the inbox cannot re-run
        recorded = _published_sha256(paths.out, d)
        if recorded is None:   # never an all-clear for a date whose inputs were not compared
            recorded = (f"there is no readable {Path(paths.out) / d.isoformat() / 'summary.json'} "
                        "to compare its inputs with (check --out, RECON_OUT)")
        if isinstance(recorded, str):
            unchecked.append(f"  {d.isoformat()}  {r['status']:<8}  not checked: "
                             f"{summary_contract.printable(recorded)}")
            continue
        try:
            reasons = input_changes(d, recorded, current_inputs(paths.inbox, d, cache))
        except OSError:
            continue
        compared += 1
        if reasons:   # file names are the inbox's: shown escaped, one line each
            line = f"  {d.isoformat()}  {r['status']:<8}  {summary_contract.printable('; '.join(reasons))}"
            # an archived date can no longer re-run: catch-up leaves it, but it did change
            (archived if r.get("archived") else changed).append(line)
    lines = []
    if changed:
        lines += ["Inputs changed since their run (`recon catch-up` re-runs them in order):"] + changed
    elif not unchecked and not archived:
        lines.append(f"No processed date of the last {lookback_days} days has inputs that changed "
                     "since its run.")
    elif compared:   # an all-clear for the dates compared, never for the others
        lines.append(f"No other processed date of the last {lookback_days} days has inputs that "
                     "changed since its run.")
    if archived:
        lines += ["Inputs changed since their run on archived dates, which can no longer be re-run "
                  "(`recon archive`); their reports stay those of their run:"] + archived
    if unchecked:
        lines += NOT_CHECKED_HEADING + unchecked
    return lines


# what `recon catch-up` does with a date whose published summary.json status cannot read:
# it compares with the warehouse's copy (changed_dates), re-runs from the first changed or
# STALE date (catch_up_dates), and rewrites no report of a date it does not re-run
NOT_CHECKED_HEADING = [
    "Inputs not checked: their summary.json cannot be read. `recon catch-up` leaves them as they "
    "are unless their inputs differ from the warehouse's record or an earlier date is re-run;",
    "`recon run --date D` rewrites D's summary.json (the dates after D turn STALE; "
    "`recon catch-up` then re-runs them):",
]


MAX_SUMMARY_BYTES = 64 << 20  # a summary.json lists a few hundred files; anything bigger is not one


def _published_sha256(out: Path, d: date) -> dict[str, str] | str | None:
    """`input_sha256` of `<out>/<D>/summary.json` (contracts/summary.py); None when there
    is no such file to read, the one sentence of SummaryError when it does not match."""
    from flows.inbox import _read_inside
    folder = Path(out) / d.isoformat()
    if not folder.is_dir():
        return None
    got = _read_inside(folder.resolve(), "summary.json", limit=MAX_SUMMARY_BYTES)
    if got.status != "ok":
        return None
    what = f"{folder / 'summary.json'}"
    try:
        return summary_contract.parse(json.loads(got.data), what).input_sha256
    except (ValueError, RecursionError) as e:  # SummaryError is a ValueError too
        return str(e) if isinstance(e, summary_contract.SummaryError) else \
            f"{what} is not JSON."


# --------------------------------------------------------------------------- scorecard

def scorecard(runs: list[dict], deadline: time = ops.DEADLINE,
              last: int = summary_contract.SCORECARD_DATES):
    """The delivery scorecard (contracts.summary.DeliveryScorecard, None without a date)
    over the last `last` processed dates of `runs` (recorded_runs, or the rows of the
    status snapshot whose summary is the status file's copy)."""
    from transforms.operations import delivery_scorecard
    recent = sorted(runs, key=lambda r: r["business_date"])[-last:]
    return delivery_scorecard([_core(r) for r in recent], deadline)


def _core(r: dict) -> summary_contract.SummaryCore:
    """The summary of a runs row, parsed when it is still the status file's dict."""
    s = r["summary"]
    if isinstance(s, summary_contract.SummaryCore):
        return s
    return summary_contract.parse_core(
        s, f"The summary of {r['business_date'].isoformat()} in the status file")


def with_scorecard(con, summary: dict, deliveries, deadline: time | None = None) -> dict:
    """summary.json of the run with each delivered province's manifest `exported_at` and
    the delivery scorecard of the last SCORECARD_DATES processed dates ending at D: D's
    own summary and the latest runs recorded before D, read from the warehouse (bounded:
    a day's cost does not grow with the history). A recorded summary that does not match
    the contract is named in `not_counted`, never guessed at."""
    from transforms.operations import delivery_scorecard, manifest_exported_at
    if deadline is None:  # RECON_DEADLINE alone: the other settings do not concern a run
        given = os.environ.get("RECON_DEADLINE")
        deadline = parse_deadline(given) if given else ops.DEADLINE
    exported = {x.province: at for x in deliveries
                if (at := manifest_exported_at(x.manifest_bytes)) is not None}
    s = summary_contract.parse(summary)
    s = s.model_copy(update={"provinces": s.provinces.model_copy(update={"exported_at": exported})})
    rows = con.execute("SELECT business_date, summary_json FROM runs WHERE business_date < ? "
                       "ORDER BY business_date DESC LIMIT ?",
                       [s.business_date, summary_contract.SCORECARD_DATES - 1]).fetchall()
    counted, not_counted = [s], []
    for d, text in rows:
        try:
            counted.append(_stored(d, text))
        except summary_contract.SummaryError as e:
            log.warning("delivery scorecard: %s", e)
            not_counted.append(d)
    card = delivery_scorecard(counted, deadline, not_counted)
    return summary_contract.dump(s.model_copy(update={"delivery_scorecard": card}))


def scorecard_lines(paths: Paths, runs: list[dict], deadline: time = ops.DEADLINE,
                    last: int = summary_contract.SCORECARD_DATES) -> list[str]:
    """`recon status --provinces`: the delivery scorecard of every live province over the
    last `last` processed dates, worst first (transforms.operations.delivery_scorecard)."""
    card = scorecard(runs, deadline, last)
    if card is None:
        return ["No business date has been processed yet, so there is no scorecard."]
    lines = [f"Delivery scorecard of the last {card.dates} processed date(s), "
             f"{card.first_date.isoformat()}..{card.last_date.isoformat()} "
             f"(late: exported after {card.deadline} Asia/Shanghai on D+1), worst first:",
             f"{'province':<8}  {'dates':>5}  {'on time':>7}  {'late':>4}  {'missing':>7}  "
             f"{'files rejected':>14}  {'quarantined per 10,000 rows':>27}"]
    for row in card.provinces:
        q = "-" if row.quarantined_per_10k is None else f"{row.quarantined_per_10k:.1f}"
        lines.append(f"{row.province:<8}  {row.dates:>5}  {row.on_time:>7}  "
                     f"{row.late:>4}  {row.missing:>7}  {row.files_rejected:>14}  {q:>27}")
    return lines


SCORECARD_ARTIFACT = "recon-delivery-scorecard"


def scorecard_artifact(paths: Paths, cfg: OpsConfig) -> None:
    """The scorecard as the Prefect table artifact `recon-delivery-scorecard` (nightly flow)."""
    from prefect.artifacts import create_table_artifact
    card = scorecard(recorded_runs(paths, summary_contract.SCORECARD_DATES), cfg.deadline)
    if card is not None:
        create_table_artifact(key=SCORECARD_ARTIFACT,
                              table=[r.model_dump(mode="json") for r in card.provinces],
                              description=f"Province deliveries {card.first_date}..{card.last_date}: on time / "
                                          "late / missing, files rejected, quarantined per 10,000 "
                                          "rows, worst first")
