"""The contract of summary.json (outputs.md "summary.json"): one typed schema through
which the run writes the file and every reader reads it.

    parse(dict, what) -> RunSummary  a summary as the run wrote it (or as a reader got it)
    parse_core(dict, what)           the status file's copy (SummaryCore: without HEAVY)
    load(path) -> RunSummary         summary.json of a date folder
    dump(RunSummary) -> dict         the JSON-ready dict written to summary.json
    mark_stale(summary, clear_with)  the same summary, marked STALE (outputs.md "Order")

Readers (report.html, exceptions.xlsx, `recon status`, the Prefect artifacts, the
CLI result line, the nightly look-back and alerts, the workbench's ingest) use
attributes of RunSummary, never `dict.get(key, default)`: a renamed or missing field
fails at parse time with one sentence (SummaryError, an InputError: exit 2), in the
test of each reader (tests/test_summary.py).

Versions: there is no version number. Every field is required, except the few added
later, which are Optional with None meaning "written before this field existed"
(status_before_stale, provinces.exported_at, delivery_scorecard); any other
difference is refused, never guessed.

Money is Decimal with two places, written as text ("2220.00"), never a float.
"""
from __future__ import annotations

import json
import os
import re
import shlex
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (BaseModel, ConfigDict, PlainSerializer, StrictInt, TypeAdapter,
                      ValidationError, ValidationInfo, field_validator)

from contracts.dates import iso_date
from contracts.errors import InputError

COMPLETE, PARTIAL, STALE = "COMPLETE", "PARTIAL", "STALE"
Status = Literal["COMPLETE", "PARTIAL", "STALE"]
REJECTING_RULES = ("F01", "F02", "F03")  # a province missing or a file rejected: PARTIAL
COUNTED_INVARIANT = "files"   # its value counts files; the other invariants' values are amounts


class SummaryError(InputError, ValueError):
    """A summary.json that does not match this contract; str() is one sentence (exit 2
    when it reaches the command line)."""


def _two_places(v: Decimal) -> Decimal:
    if isinstance(v, float):
        raise ValueError("a float reached the run summary; money must be Decimal")
    if isinstance(v, bool) or not isinstance(v, (Decimal, int, str)):
        raise ValueError("an amount must be a decimal number")
    try:   # a summary.json read back may hold anything: a bad amount is a ValueError
        d = Decimal(str(v).strip()).quantize(Decimal("0.01"))
    except ArithmeticError:   # not a number, or too large for two places
        raise ValueError("an amount must be a decimal number") from None
    if not d.is_finite():
        raise ValueError("an amount must be a finite decimal number")
    return d


Money = Annotated[Decimal, PlainSerializer(lambda d: f"{d:.2f}", return_type=str, when_used="json")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Provinces(_Strict):
    expected: list[str]
    delivered: list[str]
    missing: list[str]
    # manifest.json `exported_at` of each delivered province that gives a readable one
    # (what the delivery scorecard calls on time or late). None only in summaries
    # written before the run recorded it.
    exported_at: dict[str, datetime] | None = None


class FileLoad(_Strict):
    """Per data file of D: rows read / loaded / quarantined, rejection, sha256."""
    province: str
    dataset: str
    source_file: str
    sha256: str | None
    encoding: str | None
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    rejected: bool
    reject_rule: str | None
    reject_reason: str | None


class Findings(_Strict):
    total: int
    per_rule: dict[str, int]


class Amounts(_Strict):
    """The money of D (transforms/clearing.amounts), yuan."""
    settled: Money
    held: Money
    refunded: Money
    refund_held: Money
    normal_wallet_pay: Money
    transfers_in: Money
    transfers_out: Money
    opening_lots: Money
    consumed: Money
    refund_returned: Money
    refund_to_sharer: Money
    returned_to_sharers: Money
    closing_lots: Money
    cleared_settle: Money
    cleared_refund: Money
    cleared_cross_province: Money
    dissolution_returned: Money

    @field_validator("*", mode="before")
    @classmethod
    def _money(cls, v):
        return _two_places(v)


class Invariant(_Strict):
    """One invariant of rules.md §8: its value and pass/fail. The value of `files` is a
    count (the files that break it), an int; that of the money invariants (quota,
    clearing, settlements) is an amount, written like every other amount ("0.00").
    A strict int: a lax one would take Decimal("0.00") and write the amount as 0."""
    name: str
    value: StrictInt | Money
    passed: bool
    detail: str

    @field_validator("value", mode="before")
    @classmethod
    def _money(cls, v, info: ValidationInfo):
        if info.data.get("name") != COUNTED_INVARIANT:
            return _two_places(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"the value of the {COUNTED_INVARIANT} invariant is a count of files")
        return v


class Changes(_Strict):
    """Findings new and disappeared compared with the previous run of the same date."""
    previous_run_id: str | None
    new: list[str]
    disappeared: list[str]
    note: str | None = None


class PartialReason(_Strict):
    """Why a date is PARTIAL: a live province missing (F01) or a file rejected (F02/F03)."""
    rule_code: Literal["F01", "F02", "F03"]
    province: str
    file: str | None  # the rejected file; None for a missing province
    reason: str       # the finding's detail sentence

    def sentence(self) -> str:
        """One line for a terminal or a log: a file name is the delivery's own choice, so
        its control characters (CR, LF, ESC ...) are shown escaped, never obeyed."""
        if self.rule_code == "F01":
            return f"province {printable(self.province)} missing ({self.rule_code})"
        return (f"{printable(self.province)}/{printable(self.file)} rejected "
                f"({self.rule_code}: {printable(self.reason).rstrip('.')})")


def printable(text: str | None) -> str:
    """`text` with every character that is not printable (control, format, line or
    paragraph separator) written as its Python escape: one line, nothing a terminal obeys."""
    text = "" if text is None else str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


SCORECARD_DATES = 30  # the delivery scorecard covers the last 30 processed dates (issue 11)


class ScorecardRow(_Strict):
    """One live province over the scorecard's dates: its deliveries on time (exported by
    the deadline of the date), late (exported after it) or missing (still missing at the
    date's latest run), its files rejected, its rows quarantined per 10,000 rows read
    (None when it read no row)."""
    province: str
    dates: int
    on_time: int
    late: int
    missing: int
    files_rejected: int
    rows_read: int
    rows_quarantined: int
    quarantined_per_10k: float | None


class DeliveryScorecard(_Strict):
    """Province delivery scorecard (issue 11 item 5), worst province first. `not_counted`:
    processed dates of the window whose stored summary does not match this contract
    (written by an older version): they are named, never guessed."""
    first_date: date
    last_date: date
    dates: int
    deadline: str  # HH:MM Asia/Shanghai on D+1: a delivery exported after it is late
    provinces: list[ScorecardRow]
    not_counted: list[date]


class SummaryCore(_Strict):
    """summary.json without the fields that grow with the data (HEAVY): the copy that
    the warehouse's status file keeps for `recon status`."""
    business_date: date
    status: Status
    run_id: str
    genesis: bool
    provinces: Provinces
    files: list[FileLoad]
    findings: Findings
    partial_because: list[PartialReason]
    amounts: Amounts
    invariants: list[Invariant]
    all_invariants_passed: bool
    policy_version: str
    code_version: str
    started_at: datetime
    finished_at: datetime
    # Set when a re-run of an earlier date made this one STALE (absent before that).
    status_before_stale: Literal["COMPLETE", "PARTIAL"] | None = None
    stale_clear_command: str | None = None

    # ------------------------------------------------------------------ what readers show

    @property
    def missing_provinces(self) -> list[str]:
        return [r.province for r in self.partial_because if r.rule_code == "F01"]

    @property
    def rejected_files(self) -> list[PartialReason]:
        return [r for r in self.partial_because if r.rule_code != "F01"]

    def why(self) -> str:
        """One line saying why the date is not COMPLETE ('' when it is)."""
        return why(self.status, self.status_before_stale, self.stale_clear_command,
                   self.partial_because)


class RunSummary(SummaryCore):
    """summary.json as the run writes it."""
    input_sha256: dict[str, str]
    changes_since_previous_run: Changes
    # None only in summaries written before the scorecard existed.
    delivery_scorecard: DeliveryScorecard | None = None


HEAVY = ("input_sha256", "changes_since_previous_run", "delivery_scorecard")


def why(status: str, status_before_stale: str | None, clear_with: str | None,
        partial_because: list[PartialReason]) -> str:
    """Why a date is PARTIAL or STALE, one line: the reader's words for every place
    (CLI result line, `recon status`, the Prefect artifact)."""
    parts = []
    if status == STALE:
        parts.append(f"STALE (was {status_before_stale}): an earlier date was re-run; "
                     f"clear with `{clear_with}`")
    missing = [r.province for r in partial_because if r.rule_code == "F01"]
    if missing:
        parts.append("missing province(s) " + ", ".join(missing) + " (F01)")
    parts += [r.sentence() for r in partial_because if r.rule_code != "F01"]
    return "; ".join(parts)


def parse_reasons(items: list) -> list[PartialReason]:
    """The partial_because list of a summary (e.g. the light copy `recon status` reads)."""
    try:
        return TypeAdapter(list[PartialReason]).validate_python(items)
    except ValidationError as e:
        raise SummaryError(f"partial_because does not match its contract: "
                           f"{e.errors()[0]['msg']}.") from None


def parse(data: dict, what: str = "summary.json") -> RunSummary:
    """A summary dict as written by the run; SummaryError (one sentence naming `what`,
    e.g. the file or the date, and the first field that does not match) otherwise."""
    return _validate(RunSummary, data, what)


def parse_core(data: dict, what: str = "the status copy of a summary") -> SummaryCore:
    """The status file's copy of a summary (summary.json without HEAVY), as strictly."""
    return _validate(SummaryCore, data, what)


def _validate(model, data, what: str):
    if not isinstance(data, dict):
        raise SummaryError(f"{what} is not a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = (".".join(str(x) for x in first["loc"]) or "summary")[:200]  # keys are untrusted
        raise SummaryError(f"{what} does not match its contract at {where}: "
                           f"{first['msg']}.") from None


def load(path: Path) -> RunSummary:
    """summary.json of a date folder, checked against this contract."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SummaryError(f"{path} cannot be read as JSON ({type(e).__name__}).") from None
    if not isinstance(data, dict):
        raise SummaryError(f"{path} does not hold a JSON object.")
    return parse(data, f"{path}")


def dump(summary: RunSummary) -> dict:
    """The JSON-ready dict of summary.json (money as text, dates ISO)."""
    return summary.model_dump(mode="json", exclude_none=False)


def mark_stale(summary: RunSummary, clear_with: str) -> RunSummary:
    """The summary of a date made STALE by a re-run of an earlier date. Marked once: the
    command of that moment (from the first STALE date to the last processed one, in
    order) stays right however many of those dates are re-run meanwhile, and a backfill
    does not rewrite the reports of every STALE date after each of its dates."""
    if summary.status == STALE:
        if not _widens(clear_with, summary.stale_clear_command):
            return summary
        # A re-run of a date before the stored command's range made more dates STALE, or
        # a later date was run on top of the STALE ones: following the old command would
        # leave dates STALE. Only then is a marked date marked again (a backfill moves
        # the first STALE date later, never earlier, so it still rewrites nothing).
        return summary.model_copy(update={"stale_clear_command": clear_with})
    return summary.model_copy(update={"status_before_stale": summary.status, "status": STALE,
                                      "stale_clear_command": clear_with})


def _widens(command: str, stored: str | None) -> bool:
    """Does clear command `command` start before the `stored` one or end after it (or is
    there none)?"""
    new, old = clear_command_range(command), clear_command_range(stored)
    if new is None:
        return False
    return old is None or new[0] < old[0] or new[1] > old[1]


def clear_command(first_stale: date, last_processed: date,
                  where: tuple[Path, Path, Path] | None = None) -> str:
    """The command that brings STALE dates up to date (also for a single date: one form
    that every reader and operator recognises). `where`: the inbox, reports folder and
    warehouse it acts on, named in the command (absolute), so that it works as printed
    whatever the options or environment of the shell it is pasted into."""
    command = f"recon backfill --start {first_stale.isoformat()} --end {last_processed.isoformat()}"
    if where is not None:
        inbox, out, warehouse = (shlex.quote(os.path.abspath(p)) for p in where)
        command += f" --inbox {inbox} --out {out} --warehouse {warehouse}"
    return command


def clear_command_range(command: str | None) -> tuple[date, date] | None:
    """(first STALE date, last processed date) a clear_command names (None for any other text)."""
    m = re.fullmatch(r"recon backfill --start (\S+) --end (\S+)( --inbox .*)?", command or "", re.S)
    if not m:
        return None
    first, last = iso_date(m.group(1)), iso_date(m.group(2))
    return None if first is None or last is None else (first, last)

