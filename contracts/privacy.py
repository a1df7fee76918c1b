"""No full resident ID number in any output (docs/spec-readings.md "Privacy").

A resident ID number (certno, GB 11643) is 17 digits and a check character
(a digit or X) that agrees with the weighted sum of the 17 digits. Wherever
such 18 characters occur in text that the program writes (exceptions.csv and
.parquet, settlement and positions, summary.json, report.html,
exceptions.xlsx, log lines, the terminal), they are masked as the auditors'
views mask a certno: the first 6 and the last 4 characters kept, the 8 between
as '*' (`110100********5536`).

- Letters glued to an ID do not protect it: `ID110100198603155536x` is masked.
- Digits do: 18 digits inside a longer run of digits are not an ID (a 20-digit
  psn_no stays intact), and neither are 18 characters whose check character
  is wrong (so that other numbers are not mangled).
- Lowercase `x` counts as X here (docs/spec-readings.md item 7d refuses it as
  a certno, but a leak is a leak).

The one rule is `scrub_text`; `scrub_series`/`scrub_expr`/`scrub_frame` apply
it to polars data (the regex engine of polars cannot look around, so the few
values that may hold an ID are found by a pattern and scrubbed with
`scrub_text`), `scrub_json` to a summary, `ScrubFilter`/`scrub_process_output`
to logs and the terminal. Only the written text is scrubbed: the warehouse and
exception_id keep the raw values, so ids do not change.
"""
from __future__ import annotations

import logging
import re
import sys
from typing import Any

import polars as pl

from contracts.certno import check_char

KEEP_HEAD, KEEP_TAIL = 6, 4         # as auditview.mask_certno
MASK = "*" * (18 - KEEP_HEAD - KEEP_TAIL)

# 17 digits not preceded by a digit, then X, or a digit not followed by a digit.
_ID_RE = re.compile(r"(?<![0-9])[0-9]{17}(?:[Xx]|[0-9](?![0-9]))")
# The same candidates without look-around, for polars: a value that matches may hold an ID.
_CANDIDATE_PL = r"(?:^|[^0-9])[0-9]{17}(?:[Xx]|[0-9](?:[^0-9]|$))"
# A sha256 the program computed (summary.json's checksums) is not text: kept whole.
_DIGEST_RE = re.compile(r"[0-9a-f]{64}")


def is_resident_id(s: str) -> bool:
    """18 characters: 17 digits and the GB 11643 check character of them (X or x)."""
    if len(s) != 18 or not s[:17].isascii() or not s[:17].isdigit():
        return False
    return s[17].upper() == check_char(s[:17])


def mask_id(s: str) -> str:
    """110100198603155536 -> 110100********5536."""
    return s[:KEEP_HEAD] + MASK + s[-KEEP_TAIL:]


def _mask_match(m: re.Match) -> str:
    s = m.group(0)
    return mask_id(s) if is_resident_id(s) else s


def scrub_text(text: str | None) -> str | None:
    """`text` with every resident ID number masked (None stays None)."""
    if text is None:
        return None
    text = str(text)
    if len(text) < 18:
        return text
    return _ID_RE.sub(_mask_match, text)


def scrub_series(s: pl.Series) -> pl.Series:
    """scrub_text over a String series, vectorised: only the distinct values that
    may hold an ID go through scrub_text."""
    if s.dtype != pl.String or s.len() == 0:
        return s
    hits = s.filter(s.str.contains(_CANDIDATE_PL).fill_null(False)).unique()
    if hits.is_empty():
        return s
    mapping = {v: scrub_text(v) for v in hits.to_list()}
    mapping = {k: v for k, v in mapping.items() if k != v}
    return s.replace(mapping) if mapping else s


def scrub_expr(e: pl.Expr) -> pl.Expr:
    """scrub_text as a polars expression over a String column."""
    return e.map_batches(scrub_series, return_dtype=pl.String)


def scrub_frame(df: pl.DataFrame) -> pl.DataFrame:
    """Every String column of `df` scrubbed; other columns as they are."""
    cols = [c for c, t in df.schema.items() if t == pl.String]
    if not cols or df.height == 0:
        return df
    return df.with_columns([scrub_series(df.get_column(c)) for c in cols])


def scrub_json(value: Any) -> Any:
    """A JSON-able value (summary.json) with every string, keys included, scrubbed.
    A whole string that is a sha256 hex digest is a checksum, kept as it is."""
    if isinstance(value, str):
        return value if _DIGEST_RE.fullmatch(value) else scrub_text(value)
    if isinstance(value, dict):
        return {scrub_json(k): scrub_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_json(v) for v in value]
    return value


class ScrubFilter(logging.Filter):
    """A log record's message (and traceback text) with every resident ID masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub_record(record)
        return True


def scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    if getattr(record, "_recon_scrubbed", False):
        return record
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string is logging's to report
        return record
    record.msg, record.args = scrub_text(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = scrub_text(record.exc_text)
    record._recon_scrubbed = True
    return record


class ScrubbingStream:
    """A text stream that masks resident IDs in what is written to it; everything
    else (isatty, fileno, encoding, flush) is the wrapped stream's."""

    def __init__(self, inner):
        self._recon_inner = inner

    def write(self, s: str) -> int:
        inner = self._recon_inner
        # A handler may outlive the stream it was given (pytest closes its capture
        # after each test): writing to a closed stream would make logging report the
        # error through the same handler, without end.
        if not getattr(inner, "closed", False):
            try:
                inner.write(scrub_text(s))
            except BrokenPipeError:
                self._recon_reader_gone()
        return len(s)

    def _recon_reader_gone(self) -> None:
        """The reader of the pipe left (`recon backfill | head -1`): what is still printed
        goes nowhere, and the work goes on (a backfill stopped halfway, called an internal
        error, would tell the operator less than its reports and `recon status` do)."""
        import os
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._recon_inner.fileno())   # the final flush too goes nowhere
            os.close(devnull)
        except (OSError, AttributeError, ValueError):
            pass

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        # Same reason as write: a console handler flushes after every record.
        inner = self._recon_inner
        if not getattr(inner, "closed", False):
            try:
                inner.flush()
            except BrokenPipeError:
                self._recon_reader_gone()

    def __getattr__(self, name: str):
        # Only called for what the wrapper lacks. An instance made without __init__
        # (copy, pickle) has no inner stream yet: asking for it must fail, not recurse.
        if name.startswith("_recon"):
            raise AttributeError(name)
        return getattr(self._recon_inner, name)

    # A stream is a process resource: a copy (Prefect copies parameters, configs and
    # handlers) is the same stream.
    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


def scrub_process_output() -> None:
    """Mask resident IDs in every log record (any logger: recon, prefect, ...) and in
    whatever this process writes to stdout and stderr. Idempotent."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "_recon_scrubs", False):
        def scrubbing_factory(*args, **kwargs):
            return scrub_record(factory(*args, **kwargs))
        scrubbing_factory._recon_scrubs = True
        logging.setLogRecordFactory(scrubbing_factory)
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, ScrubbingStream):
            setattr(sys, name, ScrubbingStream(stream))
