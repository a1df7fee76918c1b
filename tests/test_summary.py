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


def test_the_money_invariants_are_amounts_and_the_files_invariant_a_count(real_run):
    # rules.md §8: quota, clearing and settlements hold when their difference is 0.00;
    # the summary writes that difference like every amount, not as the integer 0.
    for d in real_run.dates:
        values = {i["name"]: i["value"] for i in real_run.summary(d)["invariants"]}
        assert set(values) == {"files", "quota", "clearing", "settlements"}
        assert values["files"] == 0 and type(values["files"]) is int
        for name in ("quota", "clearing", "settlements"):
            assert values[name] == "0.00", name


@pytest.mark.parametrize("value", ["abc", "NaN", "Infinity", "1e400", True, [1]])
def test_an_amount_that_is_not_a_decimal_number_is_refused_in_one_sentence(real_run, value):
    written = real_run.summary(real_run.dates[0])
    with pytest.raises(SummaryError, match="amounts.settled: Value error, an amount must be"):
        parse(dict(written, amounts=dict(written["amounts"], settled=value)))
    invariants = [dict(i) for i in written["invariants"]]
    invariants[1]["value"] = value
    with pytest.raises(SummaryError, match="invariants.1.value"):
        parse(dict(written, invariants=invariants))


def test_the_files_invariant_is_refused_unless_a_count(real_run):
    written = real_run.summary(real_run.dates[0])
    for value in ("0.00", 0.0, True):
        invariants = [dict(i) for i in written["invariants"]]
        invariants[0]["value"] = value
        with pytest.raises(SummaryError, match="invariants.0.value"):
            parse(dict(written, invariants=invariants))


def test_status_says_a_published_summary_with_a_garbage_amount_was_not_checked(real_run, copied_run):
    from flows.cli import status_lines
    d = real_run.dates[0]
    path = copied_run.out / d.isoformat() / "summary.json"
    data = json.loads(path.read_text())
    data["amounts"]["held"] = "12,3"
    path.write_text(json.dumps(data))
    [line] = [x for x in status_lines(copied_run) if x.strip().startswith(d.isoformat()) and "not checked" in x]
    assert line.endswith(f"not checked: {path} does not match its contract at amounts.held: "
                         "Value error, an amount must be a decimal number.")


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


def test_a_later_date_run_on_top_of_stale_dates_widens_their_command_to_it(real_run, copied_run):
    """The third date is STALE; the inbox gets a fourth date (every province missing: a
    PARTIAL run), which runs on top of it: the third's reports must now name the range up
    to the fourth, or following them would mark the fourth STALE and leave it so."""
    from datetime import timedelta

    from flows import nightly
    third = real_run.dates[2]
    fourth = third + timedelta(days=1)
    (copied_run.inbox / fourth.isoformat()).mkdir()
    nightly.run_date(copied_run, fourth, nightly.PlainExecutor())
    s = load(copied_run.out / third.isoformat() / "summary.json")
    assert (s.status, s.stale_clear_command) == (STALE, clear_command(third, fourth, copied_run.where))


def test_a_re_run_before_a_stale_date_s_range_widens_the_command_on_its_reports(real_run, copied_run):
    # real_run: the second date was re-run, so the third is STALE, cleared by a backfill of
    # itself. A re-run of the first date makes the second STALE too: the third's reports must
    # now name the range from the second, or following them would build on a STALE date.
    from flows import nightly
    first, second, third = real_run.dates
    assert load(copied_run.out / third.isoformat() / "summary.json").stale_clear_command == \
        clear_command(third, third, (real_run.inbox, real_run.out, real_run.warehouse))
    nightly.run_date(copied_run, first, nightly.PlainExecutor())
    widened = clear_command(second, third, copied_run.where)
    for d in (second, third):
        folder = copied_run.out / d.isoformat()
        s = load(folder / "summary.json")
        assert (s.status, s.stale_clear_command) == (STALE, widened), d
        assert widened in (folder / "report.html").read_text(encoding="utf-8"), d
    assert load(copied_run.out / third.isoformat() / "summary.json").status_before_stale == \
        real_run.summary(third)["status_before_stale"]          # what it was before stays


def test_the_prefect_artifact_says_why_a_date_is_partial(real_run):
    from transforms.reports import markdown_summary
    s = load(real_run.folder(real_run.partial) / "summary.json")
    md = markdown_summary(s)
    assert md.startswith(f"# Reconciliation {real_run.partial.isoformat()}: PARTIAL")
    assert f"**Why PARTIAL:** {s.why()}" in md and real_run.withdrawn in md
    ch = s.changes_since_previous_run
    assert f"{len(ch.new)} new findings" in md and f"{len(ch.disappeared)} disappeared" in md


# --------------------------------------------------------------------------- every reader

def _renamed(summary: dict, old: str, new: str) -> dict:
    """The summary with one field renamed, as a careless change of the writer would do."""
    return {new if k == old else k: v for k, v in summary.items()}


def _rename_in_warehouse(paths, d, old: str, new: str) -> None:
    from flows import warehouse as wh
    con = wh.open_warehouse(paths.warehouse)
    try:
        [(text,)] = con.execute("SELECT summary_json FROM runs WHERE business_date = ?", [d]).fetchall()
        con.execute("UPDATE runs SET summary_json = ? WHERE business_date = ?",
                    [json.dumps(_renamed(json.loads(text), old, new)), d])
    finally:
        con.close()


def test_the_look_back_refuses_a_recorded_summary_with_a_renamed_field(real_run, copied_run, capsys):
    """Before the contract, a renamed input_sha256 read as {}: every date looked changed."""
    from flows import operations as ops
    from flows.cli import main
    d = real_run.dates[0]
    _rename_in_warehouse(copied_run, d, "input_sha256", "input_hashes")
    with pytest.raises(SummaryError, match=f"recorded for {d.isoformat()} does not match its "
                                           "contract at input_sha256"):
        ops.recorded_runs(copied_run)
    assert main(["catch-up", "--inbox", str(copied_run.inbox), "--out", str(copied_run.out),
                 "--warehouse", str(copied_run.warehouse)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"recon: The summary that the warehouse recorded for {d.isoformat()}")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_the_alerts_of_a_night_refuse_a_summary_with_a_renamed_field(real_run, copied_run):
    """The late-delivery and spike alerts read the run's summary through the contract."""
    from flows import operations as ops
    from flows.alerts import Alerter
    written = _renamed(real_run.summary(real_run.dates[0]), "provinces", "province_counts")
    with pytest.raises(SummaryError, match="provinces"):
        ops.run_dates(copied_run, [real_run.dates[0]], lambda d: written, Alerter(),
                      ops.recorded_runs(copied_run), ops.OpsConfig())


def test_status_says_a_published_summary_with_a_renamed_field_was_not_checked(real_run, copied_run):
    from flows.cli import status_lines
    d = real_run.dates[0]
    path = copied_run.out / d.isoformat() / "summary.json"
    path.write_text(json.dumps(_renamed(json.loads(path.read_text()), "input_sha256", "sha256")))
    lines = status_lines(copied_run)
    [line] = [x for x in lines if x.strip().startswith(d.isoformat()) and "not checked" in x]
    assert line.endswith(f"not checked: {path} does not match its contract at input_sha256: "
                         "Field required.")


def test_status_provinces_refuses_a_status_copy_with_a_renamed_field(real_run, copied_run, capsys):
    from flows.cli import main
    from flows.warehouse import status_file
    f = status_file(copied_run.warehouse)
    doc = json.loads(f.read_text())
    doc["runs"][0]["summary"] = _renamed(doc["runs"][0]["summary"], "files", "file_loads")
    f.write_text(json.dumps(doc))
    assert main(["status", "--provinces", "--inbox", str(copied_run.inbox), "--out",
                 str(copied_run.out), "--warehouse", str(copied_run.warehouse)]) == 2
    assert capsys.readouterr().err == (
        f"recon: The summary of {real_run.dates[0].isoformat()} in the status file does not "
        "match its contract at files: Field required.\n")


def test_the_workbench_refuses_a_published_summary_with_a_renamed_field(real_run, copied_run, tmp_path):
    from workbench.ingest import ingest
    from workbench.store import connect
    d = real_run.dates[0].isoformat()
    path = copied_run.out / d / "summary.json"
    path.write_text(json.dumps(_renamed(json.loads(path.read_text()), "status", "state")))
    res = ingest(connect(tmp_path / "wb.sqlite"), copied_run.out)
    assert res.problems == {d: "summary.json does not match its contract at status: Field required"}
    assert res.ingested == [x.isoformat() for x in real_run.dates[1:]]


def test_a_summary_written_before_the_scorecard_is_still_read(real_run):
    """The two fields added with the scorecard are the only ones a reader may find absent."""
    written = real_run.summary(real_run.dates[0])
    older = {k: v for k, v in written.items() if k != "delivery_scorecard"}
    older["provinces"] = {k: v for k, v in written["provinces"].items() if k != "exported_at"}
    s = parse(older)
    assert s.delivery_scorecard is None and s.provinces.exported_at is None


# --------------------------------------------------------------------------- the scorecard

def test_the_scorecard_of_a_re_run_date_puts_the_withdrawn_province_first_as_missing(real_run):
    first = load(real_run.folder(real_run.dates[0]) / "summary.json")
    s = load(real_run.folder(real_run.partial) / "summary.json")
    card = s.delivery_scorecard
    assert (card.first_date, card.last_date, card.dates, card.not_counted) == \
        (real_run.dates[0], real_run.partial, 2, [])
    [withdrawn] = [r for r in card.provinces if r.province == real_run.withdrawn]
    assert (withdrawn.missing, withdrawn.on_time) == (1, 1)   # delivered on the first date only
    assert {r.province for r in card.provinces} == set(first.provinces.expected)
    worst_first = [(r.missing, r.late, r.files_rejected) for r in card.provinces]
    assert worst_first == sorted(worst_first, reverse=True)
    for r in card.provinces:
        files = [f for x in (first, s) for f in x.files if f.province == r.province]
        assert r.on_time + r.late + r.missing == r.dates == 2
        assert r.files_rejected == sum(f.rejected for f in files)
        assert (r.rows_read, r.rows_quarantined) == (sum(f.rows_read for f in files),
                                                     sum(f.rows_quarantined for f in files))
    assert sum(r.missing for r in card.provinces) == len(first.provinces.missing) + \
        len(s.provinces.missing)


def test_the_scorecard_records_each_delivered_province_s_exported_at(real_run):
    s = load(real_run.folder(real_run.dates[0]) / "summary.json")
    manifests = {pp: json.loads((real_run.inbox / s.business_date.isoformat() / pp /
                                 "manifest.json").read_text(encoding="utf-8-sig"))
                 for pp in s.provinces.delivered}
    assert {pp: at.isoformat() for pp, at in s.provinces.exported_at.items()} == \
        {pp: m["exported_at"] for pp, m in manifests.items()}


def test_the_scorecard_reads_at_most_its_window_of_stored_summaries(real_run, copied_run, monkeypatch):
    """A day's scorecard costs the same after a year: SCORECARD_DATES stored summaries at most."""
    import contracts.summary as contract
    from flows import operations as ops
    from flows import warehouse as wh
    monkeypatch.setattr(contract, "SCORECARD_DATES", 2)
    con = wh.open_warehouse(copied_run.warehouse, read_only=True)
    try:
        card = parse(ops.with_scorecard(con, real_run.summary(real_run.stale), [])).delivery_scorecard
    finally:
        con.close()
    assert (card.first_date, card.last_date, card.dates) == (real_run.partial, real_run.stale, 2)


def test_a_stored_summary_of_an_older_version_is_named_not_counted(real_run, copied_run):
    from flows import operations as ops
    from flows import warehouse as wh
    _rename_in_warehouse(copied_run, real_run.dates[0], "files", "file_loads")
    con = wh.open_warehouse(copied_run.warehouse, read_only=True)
    try:
        card = parse(ops.with_scorecard(con, real_run.summary(real_run.stale), [])).delivery_scorecard
    finally:
        con.close()
    assert (card.first_date, card.dates, card.not_counted) == (real_run.dates[0], 2, [real_run.dates[0]])


def test_status_says_why_is_not_shown_for_a_status_copy_with_a_renamed_field(real_run, copied_run):
    from flows.cli import status_lines
    from flows.warehouse import status_file
    f = status_file(copied_run.warehouse)
    doc = json.loads(f.read_text())
    [row] = [r for r in doc["runs"] if r["business_date"] == real_run.partial.isoformat()]
    row["summary"] = _renamed(row["summary"], "partial_because", "why_partial")
    f.write_text(json.dumps(doc))
    lines = status_lines(copied_run)
    at = next(i for i, x in enumerate(lines) if x.startswith(real_run.partial.isoformat()))
    assert lines[at + 1].strip() == ("why: not shown, the summary its run committed does not match "
                                     "its contract at partial_because: Field required.")


def test_a_night_reads_only_the_summaries_of_its_window_so_an_old_version_beyond_it_does_not_stop_it(
        real_run, copied_run, monkeypatch):
    import contracts.operations as settings
    from flows import operations as ops
    monkeypatch.setattr(settings, "BASELINE_DAYS", 0)
    _rename_in_warehouse(copied_run, real_run.dates[0], "findings", "findings_per_rule")
    runs = ops.recorded_runs(copied_run, lookback_days=1)     # the last date (STALE) only
    assert [r["summary"] is None for r in runs] == [True, True, False]
    assert runs[-1]["status"] == "STALE" and runs[-1]["summary"].business_date == real_run.stale
    with pytest.raises(SummaryError, match=f"recorded for {real_run.dates[0].isoformat()}"):
        ops.recorded_runs(copied_run, lookback_days=3)
