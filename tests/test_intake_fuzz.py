"""Untrusted input (outputs.md): any file content gives findings or an InputError,
never a crash, never a read outside the inbox, never a change to another date.

Hypothesis mutates one delivery of a clean two-date inbox (bytes flipped,
truncated, random header, quote chaos, binary, a huge field, a wrong encoding,
a manifest that is garbage or names ../ paths) and, half of the time, makes the
manifest agree with the mutated bytes so that the parser, not the checksum,
meets the damage. An audit hook records every file the intake opens.
"""
from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.errors import InputError
from contracts.inbox import DATASET_COLUMNS
from flows.inbox import read_inbox_date
from tests.inbox_builders import (COLUMNS, D, SHARER, balance_row, person_row, relationship_row,
                                  settlement_row, transfer_row, write_province, write_reference)
from transforms.context import RunContext, bind_date, create_warehouse
from transforms.intake import load_province, stage

OTHER = D + timedelta(days=1)
NAMES = [f"{ds}.csv" for ds in COLUMNS]

_opened: list[str] | None = None


def _audit(event, args):
    if _opened is not None and event == "open" and args and isinstance(args[0], (str, bytes, Path)):
        _opened.append(str(args[0] if not isinstance(args[0], bytes) else args[0].decode(errors="replace")))


sys.addaudithook(_audit)

header_names = st.lists(st.sampled_from(sorted({c for cols in COLUMNS.values() for c in cols}
                                               | {"", "x", "amount ", "AMOUNT", "\ufeffpsn_no"})),
                        max_size=14)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12)


@st.composite
def mutations(draw):
    kind = draw(st.sampled_from(["flip", "truncate", "header", "quotes", "binary", "huge",
                                 "encoding", "manifest_json", "manifest_paths", "manifest_bytes",
                                 "parquet_bytes", "empty", "crlf_mix", "comma_line"]))
    name = draw(st.sampled_from(NAMES))
    return kind, name, draw(st.randoms(use_true_random=False)), draw(st.booleans()), \
        draw(header_names), draw(json_values)


def _mutate(folder: Path, kind, name, rnd, fix_manifest, header, junk) -> None:
    path = folder / name
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_bytes())
    data = path.read_bytes()
    # Half of the damage lands after the header, so that rows (not only headers) are hit.
    start = rnd.choice([0, data.find(b"\n") + 1])
    if kind == "flip":
        b = bytearray(data)
        for _ in range(rnd.randint(1, 8)):
            if len(b) > start:
                b[rnd.randrange(start, len(b))] = rnd.choice([rnd.randrange(256), rnd.randrange(32, 127)])
        data = bytes(b)
    elif kind == "truncate":
        data = data[: rnd.randrange(len(data) + 1)]
    elif kind == "header":
        first, _, rest = data.partition(b"\n")
        data = ",".join(header).encode() + b"\r\n" + rest
    elif kind == "quotes":
        b = bytearray(data)
        for _ in range(rnd.randint(1, 6)):
            b.insert(rnd.randrange(start, len(b) + 1), ord(rnd.choice('"",')))
        data = bytes(b)
    elif kind == "binary":
        data = rnd.randbytes(rnd.randint(0, 400))
    elif kind == "huge":
        cut = rnd.randrange(start, len(data) + 1)
        data = data[:cut] + b"9" * rnd.choice([70_000, 2_500_000]) + data[cut:]
    elif kind == "encoding":
        manifest["encoding"] = rnd.choice(["gb18030", "latin-1", None, 7, "UTF-8"])
    elif kind == "empty":
        data = b""
    elif kind == "comma_line":   # a line of nothing but commas, header or row, up to 2.5 MB
        cut = rnd.choice([0, start])
        data = data[:cut] + b"," * rnd.choice([70, 70_000, 2_500_000]) + b"\r\n" + data[cut:]
    elif kind == "crlf_mix":
        data = data.replace(b"\r\n", rnd.choice([b"\r", b"\n", b"\n\n", b"\r\r\n"]))
    elif kind == "parquet_bytes":
        stem = name.rsplit(".", 1)[0]
        path.unlink()
        manifest["files"].pop(name)
        name = f"{stem}.parquet"
        path = folder / name
        from tests.inbox_builders import parquet_bytes
        data = parquet_bytes(stem, [], typed=True)
        data = data[: rnd.randrange(len(data) + 1)] if rnd.random() < 0.5 else data
        manifest["files"][name] = {"rows": 0, "sha256": ""}
    if kind == "manifest_json":
        manifest = junk if rnd.random() < 0.5 else {**manifest, rnd.choice(
            ["files", "province", "business_date", "encoding"]): junk}
    elif kind == "manifest_paths":
        manifest["files"][rnd.choice(["../../secret.csv", "../41/transfers.csv", "/etc/passwd",
                                      f"../../{OTHER.isoformat()}/44/persons.csv", "transfers.CSV"])] = \
            {"rows": 1, "sha256": hashlib.sha256(b"x").hexdigest()}
    path.write_bytes(data)
    if fix_manifest and isinstance(manifest, dict) and isinstance(manifest.get("files"), dict) \
            and name in manifest["files"]:
        manifest["files"][name] = {"rows": max(data.count(b"\n") - 1, 0),
                                   "sha256": hashlib.sha256(data).hexdigest()}
    if kind == "manifest_bytes":
        manifest_path.write_bytes(rnd.randbytes(rnd.randint(0, 200)))
    else:
        manifest_path.write_text(json.dumps(manifest), encoding="utf-8")


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutations())
def test_malformed_deliveries_never_crash(mutation):
    global _opened
    kind, name, rnd, fix_manifest, header, junk = mutation
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp)
        inbox = top / "inbox"
        write_reference(inbox, live=("44",))
        for day in (D, OTHER):
            write_province(inbox, day, "44", persons=[person_row(day=day)],
                           relationships=[relationship_row(day=day)],
                           transfers=[transfer_row("T1", day=day), transfer_row("T2", amount="1.50", day=day)],
                           settlements=[settlement_row(psn_no=SHARER, day=day)],
                           balances=[balance_row()])
        (top / "secret.csv").write_text("psn_no\n1\n")
        _mutate(inbox / D.isoformat() / "44", kind, name, rnd, fix_manifest, header, junk)
        other_before = _tree(inbox / OTHER.isoformat())

        con = duckdb.connect()
        create_warehouse(con)
        ctx = RunContext.for_date(D, genesis=True)
        bind_date(con, ctx)
        _opened = []
        try:
            inbox_date = read_inbox_date(inbox, D)
            intakes = [load_province(dl, D) for dl in inbox_date.deliveries]
            stage(con, ctx, inbox_date, intakes)
        except InputError as e:
            assert str(e).endswith(".") and "\n" not in str(e)
            return
        finally:
            opened, _opened = _opened, None

        allowed = (str((inbox / D.isoformat()).resolve()), str((inbox / "reference").resolve()))
        for p in opened:
            if p.startswith(tmp) or p.startswith(str(top.resolve())):
                assert str(Path(p).resolve()).startswith(allowed), f"opened {p}"
        assert _tree(inbox / OTHER.isoformat()) == other_before

        # rows read = rows loaded + rows quarantined, on every file, and the tables agree
        assert con.execute("SELECT count(*) FROM file_loads "
                           "WHERE rows_read <> rows_loaded + rows_quarantined").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM file_loads WHERE rejected AND rows_read <> 0").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM file_loads").fetchone()[0] == 5
        for ds in COLUMNS:
            loaded = con.execute(f"SELECT count(*) FROM {ds}").fetchone()[0]
            expect = con.execute("SELECT coalesce(sum(rows_loaded), 0) FROM file_loads WHERE dataset = ?",
                                 [ds]).fetchone()[0]
            assert loaded == expect
        # no loaded field is longer than its column's declared limit
        for ds, cols in DATASET_COLUMNS.items():
            longest = con.execute("SELECT " + ", ".join(
                f"coalesce(max(length(CAST({c.name} AS VARCHAR))), 0)" for c in cols)
                + f" FROM {ds}").fetchone()
            assert all(n <= c.max_chars for n, c in zip(longest, cols)), (ds, longest)
        q = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        f45 = con.execute("SELECT count(*) FROM d_findings WHERE rule_code IN ('F04', 'F05')").fetchone()[0]
        assert q == f45 == con.execute("SELECT coalesce(sum(rows_quarantined), 0) FROM file_loads").fetchone()[0]
        assert con.execute("SELECT count(*) FROM quarantine WHERE reasons = ''").fetchone()[0] == 0
        # a damaged file shows up as a finding unless the damage happened to be harmless
        assert con.execute("SELECT count(*) FROM d_findings WHERE province <> '44'"
                           ).fetchone()[0] == 0
