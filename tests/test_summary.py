"""summary.json has one contract (contracts/summary.py): what the run writes is what
every reader parses, a renamed or missing field is refused, money is text with two
decimals. Built on the summaries a real pipeline run wrote (tests/conftest.py)."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest

from contracts.summary import (STALE, SummaryError, clear_command, dump, load, mark_stale, parse,
                               parse_reasons)


def test_what_the_run_writes_round_trips_through_the_contract(real_run):
    for d in real_run.dates:
        path = real_run.folder(d) / "summary.json"
        written = json.loads(path.read_text(encoding="utf-8"))
        assert dump(load(path)) == written


def test_money_is_text_with_two_decimals_never_a_float(real_run):
    written = real_run.summary(real_run.dates[0])
    for name, value in written["amounts"].items():
        assert isinstance(value, str) and Decimal(value).as_tuple().exponent == -2, name
    with pytest.raises(SummaryError, match="amounts.settled"):
        parse(dict(written, amounts=dict(written["amounts"], settled=1.5)))


@pytest.mark.parametrize("field", ["provinces", "partial_because", "changes_since_previous_run",
                                   "findings"])
def test_a_missing_field_is_refused_naming_it(real_run, field):
    written = real_run.summary(real_run.dates[0])
    with pytest.raises(SummaryError, match=field):
        parse({k: v for k, v in written.items() if k != field})


def test_a_renamed_field_is_refused(real_run):
    written = dict(real_run.summary(real_run.dates[0]))
    written["findings_per_rule"] = written.pop("findings")["per_rule"]
    with pytest.raises(SummaryError):
        parse(written)


def test_partial_because_names_each_missing_province_and_rejected_file(real_run):
    s = load(real_run.folder(real_run.partial) / "summary.json")
    assert s.status == "PARTIAL"
    assert s.missing_provinces == s.provinces.missing
    rejected = [(f.province, f.source_file.rsplit("/", 1)[1], f.reject_rule, f.reject_reason)
                for f in s.files if f.rejected]
    assert [(r.province, r.file, r.rule_code, r.reason.rstrip(".")) for r in s.rejected_files] == \
        [(p, f, rule, reason.rstrip(".")) for p, f, rule, reason in rejected]
    assert parse_reasons(json.loads(json.dumps(dump(s)["partial_because"]))) == s.partial_because


def test_a_complete_date_has_no_reason(real_run):
    s = load(real_run.folder(real_run.dates[0]) / "summary.json")
    complete = s.model_copy(update={"status": "COMPLETE", "partial_because": []})
    assert complete.why() == ""


def test_marking_stale_keeps_the_status_before_and_the_command_that_clears_it(real_run):
    s = load(real_run.folder(real_run.dates[0]) / "summary.json")
    clear = clear_command(real_run.dates[0], real_run.dates[2])
    stale = mark_stale(s, clear)
    assert stale.status == STALE and stale.status_before_stale == s.status
    assert stale.stale_clear_command == clear == (
        f"recon backfill --start {real_run.dates[0].isoformat()} --end {real_run.dates[2].isoformat()}")
    assert mark_stale(stale, clear) == stale
    assert mark_stale(stale, clear_command(real_run.dates[1], real_run.dates[2])) == stale  # once
    assert stale.why().startswith(f"STALE (was {s.status}): an earlier date was re-run; clear with `{clear}`")


def test_the_prefect_artifact_says_why_a_date_is_partial(real_run):
    from transforms.reports import markdown_summary
    s = load(real_run.folder(real_run.partial) / "summary.json")
    md = markdown_summary(s)
    assert md.startswith(f"# Reconciliation {real_run.partial.isoformat()}: PARTIAL")
    assert f"**Why PARTIAL:** {s.why()}" in md and real_run.withdrawn in md
    ch = s.changes_since_previous_run
    assert f"{len(ch.new)} new findings" in md and f"{len(ch.disappeared)} disappeared" in md
