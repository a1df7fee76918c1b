"""The only code that touches the inbox on disk (../shared/spec/inbox.md "Layout").

Untrusted input (outputs.md "Untrusted input"): nothing here follows a name
taken from a file. Province folders are looked up by the 31 known codes, data
files by the ten known names (five stems x .csv/.parquet), so a manifest
naming `../../x` can never make us open anything. Every path is resolved and
must stay inside its folder (province files inside their province folder, the
province folder inside the date folder, reference files inside reference/):
a symlink leading out is refused, and only regular files are read (a FIFO or a
device would block or never end).

Reading here is bytes only. Deciding what the bytes mean (manifest JSON,
encodings, CSV/Parquet, column rules) is transforms/intake.py, which is pure
and so can be tested without a disk and run in threads.
"""
from __future__ import annotations

import functools
import os
import stat
from datetime import date
from pathlib import Path

import polars as pl

from contracts import codes
from contracts.dates import iso_date
from contracts.errors import InputError
from contracts.inbox import (DATA_FILE_NAMES, MANIFEST, MAX_DATA_FILE_BYTES,  # noqa: F401 (re-exported)
                             MAX_MANIFEST_BYTES, RE_DATE, REFERENCE_COLUMNS, REFERENCE_SCHEMAS, FileRead,
                             InboxDate, ProvinceDelivery, Reference, oversize_detail)


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve(strict=True).is_relative_to(folder.resolve(strict=True))
    except (OSError, RuntimeError):
        return False


def _read_inside(folder: Path, name: str, limit: int | None = None) -> FileRead:
    """Read folder/name if it is a regular file whose real path stays inside folder."""
    path = folder / name
    if not os.path.lexists(path):
        return FileRead("absent")
    if not _inside(path, folder):
        return FileRead("refused", detail=f"{name} leads outside its folder")
    try:
        real = path.resolve(strict=True)
        st = os.stat(real)
        if not stat.S_ISREG(st.st_mode):
            return FileRead("refused", detail=f"{name} is not a regular file")
        if limit is not None and st.st_size > limit:
            return FileRead("oversize", detail=oversize_detail(name, limit))
        with open(real, "rb") as f:
            # Read at most limit + 1 bytes: a file that grows after stat cannot make us read more.
            data = f.read() if limit is None else f.read(limit + 1)
        if limit is not None and len(data) > limit:
            return FileRead("oversize", detail=oversize_detail(name, limit))
        return FileRead("ok", data)
    except OSError as e:
        return FileRead("refused", detail=f"{name} cannot be read ({e.strerror or e})")


def _root(inbox_dir: Path) -> Path:
    root = Path(inbox_dir)
    if not root.is_dir():
        raise InputError(f"The inbox {root} does not exist or is not a folder.")
    return root.resolve()


def date_folders(inbox_dir: Path) -> list[date]:
    """Business dates with a folder in the inbox, oldest first (genesis = the first)."""
    root = _root(inbox_dir)
    out = []
    for entry in os.scandir(root):
        d = iso_date(entry.name)
        if d is not None and entry.is_dir() and _inside(Path(entry.path), root):
            out.append(d)
    return sorted(out)


def _strict_date(text: pl.Expr) -> pl.Expr:
    """A reference date as contracts.dates.iso_date reads one (YYYY-MM-DD in ASCII digits,
    a real date, no year 0000), vectorised; null where the text is anything else. polars'
    own parse is lenient (`2024-7-1`, ` 2024-07-01`, `+2024-07-01`), so the pattern of the
    data files guards it."""
    return (pl.when(text.str.contains(RE_DATE) & (text.str.slice(0, 4) != "0000")).then(text)
            .str.to_date("%Y-%m-%d", strict=False))


def _read_reference_csv(root: Path, name: str) -> pl.DataFrame:
    """reference/<name>.csv as a typed frame; any fault is an InputError (exit 2):
    without regions we cannot know who must deliver, and the rules need institutions."""
    from transforms.intake import FileRejected, decode_csv_text, parse_csv  # pure helpers

    ref_dir = root / "reference"
    where = f"reference/{name}.csv"
    if not ref_dir.is_dir() or not _inside(ref_dir, root):
        raise InputError(f"The inbox has no reference folder, so {where} cannot be read.")
    got = _read_inside(ref_dir.resolve(), f"{name}.csv", limit=MAX_DATA_FILE_BYTES)
    if got.status != "ok":
        raise InputError(f"The reference file {where} is {got.status}"
                         + (f": {got.detail}." if got.detail else "."))
    cols = REFERENCE_COLUMNS[name]
    try:
        utf8 = decode_csv_text(got.data, "utf-8")
    except FileRejected:
        try:
            utf8 = decode_csv_text(got.data, "gb18030")
        except FileRejected as e:
            raise InputError(f"The reference file {where} cannot be decoded: {e.reason}.") from None
    try:
        parsed = parse_csv(utf8, tuple(cols))
    except FileRejected as e:
        raise InputError(f"The reference file {where} cannot be read: {e.reason}.") from None
    if parsed.bad_rows:
        n, _text, why = parsed.bad_rows[0]
        raise InputError(f"The reference file {where} has a malformed row {n}: {why}.")
    frame = parsed.frame
    typed = frame.select(
        [(_strict_date(pl.col(c)) if t == pl.Date() else pl.col(c)).alias(c)
         for c, t in cols.items()] + [pl.col("source_row")])
    for c, t in cols.items():
        if t == pl.Date():
            bad = typed.filter(pl.col(c).is_null() & frame[c].is_not_null())
            if bad.height:
                raise InputError(f"The reference file {where} row {bad['source_row'][0]} has "
                                 f"{c} that is not a date YYYY-MM-DD.")
    typed = typed.drop("source_row")
    import pandera.polars as pa
    try:
        REFERENCE_SCHEMAS[name].validate(typed, lazy=True)
    except pa.errors.SchemaErrors as e:
        fc = e.failure_cases.head(1).to_dicts()[0]
        raise InputError(f"The reference file {where} breaks its contract: {fc.get('check')} "
                         f"(column {fc.get('column')}, value {str(fc.get('failure_case'))[:40]!r}).") from None
    return typed


def read_reference(inbox_dir: Path) -> Reference:
    root = _root(inbox_dir)
    return Reference(_read_reference_csv(root, "regions"), _read_reference_csv(root, "institutions"))


def live_provinces(regions: pl.DataFrame, business_date: date) -> list[str]:
    """Provinces with at least one region whose wallet_live_from <= D (inbox.md)."""
    return sorted(regions.filter(pl.col("wallet_live_from") <= business_date)["province"].unique().to_list())


def read_inbox_date(inbox_dir: Path, business_date: date) -> InboxDate:
    """Locate D's folder, read reference/, list the province deliveries.

    Raises InputError when D has no folder or the reference cannot be read.
    Province folders are found by the known codes only; a folder that is a link
    out of the date folder counts as no folder."""
    root = _root(inbox_dir)
    d = business_date.isoformat()
    day = root / d
    if not day.is_dir():
        raise InputError(f"The inbox has no folder for business date {d}.")
    if not _inside(day, root):
        raise InputError(f"The folder of business date {d} leads outside the inbox.")
    day = day.resolve()
    reference = read_reference(root)
    live = live_provinces(reference.regions, business_date)
    deliveries: list[ProvinceDelivery] = []
    missing: dict[str, str] = {}
    for pp in codes.PROVINCES:
        folder = day / pp
        if not os.path.lexists(folder):
            if pp in live:
                missing[pp] = f"province {pp} is live on {d} but delivered no folder"
            continue
        if not folder.is_dir() or not _inside(folder, day):
            if pp in live:
                missing[pp] = f"province {pp} is live on {d} but its folder is not a folder inside the inbox"
            continue
        folder = folder.resolve()
        got = _read_inside(folder, MANIFEST, limit=MAX_MANIFEST_BYTES)
        delivery = ProvinceDelivery(pp, business_date, folder, opener=functools.partial(
            _read_inside, folder, limit=MAX_DATA_FILE_BYTES))
        if got.status == "ok":
            delivery.manifest_bytes = got.data
        elif got.status in ("refused", "oversize"):
            delivery.manifest_bytes = b""
            delivery.manifest_problem = got.detail
        elif pp in live:
            missing[pp] = f"province {pp} is live on {d} but its folder has no manifest.json"
        deliveries.append(delivery)
    return InboxDate(business_date, reference, live, deliveries,
                     missing=sorted(missing), missing_detail=missing)

