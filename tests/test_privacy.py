"""No full resident ID number in any output (issue 9, item 5).

A resident ID number is 18 characters: 17 digits and a valid GB 11643 check
character, not part of a longer run of digits. Wherever it arrives (certno or
any other field, inside other text, glued to letters), every file of
`<out>/<D>/`, the logs and the terminal show it masked as the auditors' views
mask a certno (`110100********5536`); 20-digit psn_no values stay intact and
exception ids are computed from the raw values, so they do not change.
"""
from __future__ import annotations

import io
import json
import logging
import re
import sys
import zipfile
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.certno import CHECK_CHARS, check_char
from contracts.inbox import DATASET_COLUMNS
from contracts.privacy import (ScrubFilter, is_resident_id, scrub_frame, scrub_json,
                               scrub_process_output, scrub_series, scrub_text)
from flows import cli
from tests.inbox_builders import (BENEFICIARY, COLUMNS, D, SHARER, balance_row, person_row,
                                  relationship_row, resident_id, settlement_row, transfer_row,
                                  write_province, write_reference)
from auditview import mask_certno
from transforms.findings import exception_id

ISSUE_ID = "110100198603155536"     # the number of the issue's report
ISSUE_MASKED = "110100********5536"


# ------------------------------------------------------------------ the rule, by example

def test_issue_example_is_masked_like_a_certno_in_the_auditors_views():
    text = f"sharer_psn_no '{ISSUE_ID}' is not 20 digits"
    assert scrub_text(text) == f"sharer_psn_no '{ISSUE_MASKED}' is not 20 digits"
    assert mask_certno(ISSUE_ID) == ISSUE_MASKED    # the same style as auditview


def test_letters_glued_to_an_id_do_not_protect_it():
    assert scrub_text(f"ID{ISSUE_ID}x") == f"ID{ISSUE_MASKED}x"
    assert scrub_text(f"ab{ISSUE_ID}") == f"ab{ISSUE_MASKED}"


def test_a_20_digit_psn_no_and_longer_digit_runs_stay_intact():
    for text in (SHARER, BENEFICIARY, "1" + ISSUE_ID, ISSUE_ID + "0", f"psn {SHARER}."):
        assert scrub_text(text) == text


def test_a_wrong_check_character_is_not_an_id():
    wrong = next(c for c in CHECK_CHARS if c != ISSUE_ID[-1])
    assert scrub_text(ISSUE_ID[:17] + wrong) == ISSUE_ID[:17] + wrong


def test_check_character_x_in_either_case_is_masked():
    first17 = next(f"11010019860315{n:03d}" for n in range(1000)
                   if check_char(f"11010019860315{n:03d}") == "X")
    assert scrub_text(first17 + "X") == first17[:6] + "********" + first17[14:] + "X"
    assert scrub_text(first17 + "x7") == first17[:6] + "********" + first17[14:] + "x7"


def test_json_is_scrubbed_throughout_but_checksums_are_kept():
    digest = "0" * 14 + ISSUE_ID + "ab" * 16
    assert len(digest) == 64
    doc = {"files": [{"reject_reason": f"encoding {ISSUE_ID!r}", "sha256": digest}],
           ISSUE_ID: 3, "n": 1.5, "ok": None}
    assert scrub_json(doc) == {"files": [{"reject_reason": f"encoding {ISSUE_MASKED!r}",
                                          "sha256": digest}], ISSUE_MASKED: 3, "n": 1.5, "ok": None}


def test_frames_are_scrubbed_in_every_text_column_only():
    df = pl.DataFrame({"record_id": [ISSUE_ID, "T1", None], "psn": [SHARER, ISSUE_ID, None],
                       "n": [1, 2, 3]})
    out = scrub_frame(df)
    assert out.to_dict(as_series=False) == {"record_id": [ISSUE_MASKED, "T1", None],
                                           "psn": [SHARER, ISSUE_MASKED, None], "n": [1, 2, 3]}


# ------------------------------------------------------------------ the rule, as properties

_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
_NOT_DIGIT_END = _TEXT.filter(lambda t: not t or not t[-1].isascii() or not t[-1].isdigit())
_NOT_DIGIT_START = _TEXT.filter(lambda t: not t or not t[0].isascii() or not t[0].isdigit())


@st.composite
def valid_ids(draw) -> str:
    first17 = draw(st.text("0123456789", min_size=17, max_size=17))
    check = check_char(first17)
    return first17 + (draw(st.sampled_from("Xx")) if check == "X" else check)


@settings(max_examples=400, deadline=None)
@given(before=_NOT_DIGIT_END, rid=valid_ids(), after=_NOT_DIGIT_START)
def test_a_valid_id_anywhere_in_text_never_survives(before, rid, after):
    out = scrub_text(before + rid + after)
    assert rid not in out
    assert len(out) == len(before + rid + after)
    assert rid[:6] + "********" + rid[-4:] in out


@settings(max_examples=300, deadline=None)
@given(before=_NOT_DIGIT_END.filter(lambda t: not re.search("[0-9]", t)),
       first17=st.text("0123456789", min_size=17, max_size=17),
       bad=st.sampled_from("0123456789X"), after=_NOT_DIGIT_START.filter(lambda t: not re.search("[0-9]", t)))
def test_a_wrong_check_character_always_survives(before, first17, bad, after):
    if bad == check_char(first17):
        return
    text = before + first17 + bad + after
    assert scrub_text(text) == text


@settings(max_examples=300, deadline=None)
@given(before=st.text(st.characters(codec="ascii", exclude_characters="0123456789"), max_size=10),
       run=st.text("0123456789", min_size=19, max_size=40),
       after=st.text(st.characters(codec="ascii", exclude_characters="0123456789Xx"), max_size=10))
def test_digit_runs_longer_than_18_survive(before, run, after):
    text = before + run + after
    assert scrub_text(text) == text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.none(), _TEXT, st.builds(lambda a, r, b: a + r + b,
                                                      _NOT_DIGIT_END, valid_ids(), _NOT_DIGIT_START)),
                max_size=20))
def test_the_polars_version_agrees_with_scrub_text(values):
    got = scrub_series(pl.Series("t", values, dtype=pl.String)).to_list()
    assert got == [scrub_text(v) for v in values]


# ------------------------------------------------------------------ logs and the terminal

def test_log_lines_and_terminal_output_are_scrubbed(monkeypatch):
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    factory = logging.getLogRecordFactory()
    try:
        scrub_process_output()
        handler = logging.StreamHandler(sys.stdout)
        for name in ("recon.test", "prefect.flow_runs"):
            lg = logging.getLogger(name)
            lg.addHandler(handler)
            try:
                lg.warning("row %s of %s", 3, f"ID{ISSUE_ID}x")
                try:
                    raise ValueError(f"bad value {ISSUE_ID}")
                except ValueError:
                    lg.exception("failed")
            finally:
                lg.removeHandler(handler)
        print(f"certno {ISSUE_ID}")
        print(f"certno {ISSUE_ID}", file=sys.stderr)
    finally:
        logging.setLogRecordFactory(factory)
    text = out.getvalue() + err.getvalue()
    assert ISSUE_ID not in text
    # each line arrived, masked (other handlers that earlier tests left on Prefect's
    # loggers may print more: the count is not this test's business)
    assert text.count(f"row 3 of ID{ISSUE_MASKED}x") >= 2   # once per logger
    assert text.count(f"ValueError: bad value {ISSUE_MASKED}") >= 2
    assert out.getvalue().count(f"certno {ISSUE_MASKED}") == 1
    assert err.getvalue().count(f"certno {ISSUE_MASKED}") == 1


def test_the_log_filter_scrubs_a_record_on_its_handler():
    record = logging.LogRecord("recon", logging.WARNING, __file__, 1, "certno %s", (ISSUE_ID,), None)
    assert ScrubFilter().filter(record) and record.getMessage() == f"certno {ISSUE_MASKED}"


# ------------------------------------------------------------------ a real run, every output file

def _planted_rows() -> tuple[dict[str, list[dict]], list[str]]:
    """For every text field of every dataset, a row of Guangdong carrying an ID there
    (bare, glued to letters, inside a sentence, in turn)."""
    makers = {"persons": lambda: person_row(SHARER), "relationships": relationship_row,
              "transfers": transfer_row, "settlements": settlement_row, "balances": balance_row}
    rows: dict[str, list[dict]] = {ds: [] for ds in makers}
    planted = []
    n = 0
    for ds, cols in DATASET_COLUMNS.items():
        for i, col in enumerate(cols):
            n += 1
            rid = resident_id(n)
            planted.append(rid)
            value = (rid, f"ID{rid}x", f"see {rid}, please")[n % 3]
            row = makers[ds]()
            for key in ("event_id", "transfer_id", "setl_id"):
                if key in row:
                    row[key] = f"{key[0].upper()}{n}"
            row[col.name] = value
            rows[ds].append(row)
    return rows, planted


def _texts_of(folder: Path) -> dict[str, str]:
    """Every output file as text: CSV/JSON/HTML as written, Parquet cell by cell,
    the xlsx's XML parts unzipped."""
    texts = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        if p.suffix == ".parquet":
            df = pl.read_parquet(p)
            texts[str(p)] = "\n".join(str(v) for c in df.columns for v in df[c].to_list())
        elif p.suffix == ".xlsx":
            with zipfile.ZipFile(p) as z:
                for name in z.namelist():
                    texts[f"{p}!{name}"] = z.read(name).decode("utf-8", "replace")
        else:
            texts[str(p)] = p.read_bytes().decode("utf-8", "replace")
    return texts


def test_ids_planted_in_every_field_reach_no_output_file(tmp_path, capfd):
    inbox, out, wh = tmp_path / "inbox", tmp_path / "out", tmp_path / "wh" / "warehouse.duckdb"
    write_reference(inbox)
    rows, planted = _planted_rows()
    unknown = resident_id(999)
    planted.append(unknown)
    write_province(inbox, D, "44", **rows,
                   manifest={"files": {f"ID{unknown}.csv": {"rows": 0, "sha256": "0" * 64}}})
    write_province(inbox, D, "41", persons=[person_row(BENEFICIARY, birth="20050101", male=False,
                                                       insutype="390")])
    code = cli.main(["run", "--date", D.isoformat(), "--inbox", str(inbox), "--out", str(out),
                     "--warehouse", str(wh), "--orchestrator", "plain"])
    captured = capfd.readouterr()
    assert code == 0, captured.err
    day = out / D.isoformat()
    texts = _texts_of(day)
    assert {Path(k.split("!")[0]).name for k in texts} >= {
        "exceptions.parquet", "exceptions.csv", "settlement.parquet", "settlement.csv",
        "positions.csv", "summary.json", "report.html", "exceptions.xlsx"}
    texts["stdout"], texts["stderr"] = captured.out, captured.err
    for log in wh.parent.glob("*.log"):
        texts[str(log)] = log.read_text(encoding="utf-8")
    for beside in wh.parent.glob("*.json"):  # the status file `recon status` reads
        texts[str(beside)] = beside.read_text(encoding="utf-8")
    assert any(k.endswith(".status.json") for k in texts)
    leaks = {(where, rid) for where, text in texts.items() for rid in planted if rid in text}
    assert leaks == set()
    assert all(scrub_text(t) == t for t in texts.values())

    # the planted IDs did arrive, masked, and the findings keep their raw-key ids
    exceptions = pl.read_csv(day / "exceptions.csv", infer_schema=False)
    sentence = exceptions.filter(pl.col("detail").str.contains(r"\*{8}"))
    assert sentence.height >= 10
    by_id = exceptions.filter(pl.col("record_id") == f"ID{unknown[:6]}********{unknown[-4:]}.csv")
    assert by_id["exception_id"].to_list() == [
        exception_id("F03", D.isoformat(), "44", f"ID{unknown}.csv")]
    assert SHARER in exceptions["sharer_psn_no"].to_list()     # a 20-digit psn_no is intact


def test_a_scrubbing_stream_survives_being_copied():
    """Prefect copies what a flow touches; a copy of the wrapped terminal must be the
    terminal itself, still masking (a copy once recursed without end and failed a
    backfill under Prefect)."""
    import copy

    from contracts.privacy import ScrubbingStream
    inner = io.StringIO()
    stream = ScrubbingStream(inner)
    for twin in (copy.copy(stream), copy.deepcopy(stream), copy.deepcopy({"s": stream})["s"]):
        twin.write(f"certno {ISSUE_ID}\n")
    assert inner.getvalue() == f"certno {ISSUE_MASKED}\n" * 3
    bare = ScrubbingStream.__new__(ScrubbingStream)   # as pickle makes it
    assert not hasattr(bare, "encoding")


def test_a_scrubbing_stream_whose_terminal_was_closed_drops_what_it_is_given():
    """A log handler keeps the stream it was made with (Prefect's console handler holds
    sys.stderr of the moment logging was set up); when that stream is closed under it,
    writing and flushing must not raise, or logging reports the error through the same
    handler without end (a Prefect backfill once died of RecursionError so)."""
    import logging

    from contracts.privacy import ScrubbingStream
    inner = io.StringIO()
    stream = ScrubbingStream(inner)
    handler = logging.StreamHandler(stream)
    lg = logging.getLogger("recon.test.closed")
    lg.addHandler(handler)
    lg.propagate = False
    try:
        inner.close()
        assert stream.write("after close\n") == len("after close\n")
        stream.flush()
        lg.warning("a record after the terminal closed")   # no error, no recursion
    finally:
        lg.removeHandler(handler)
