"""Pure computations of the operations layer (issue 11): what changed in a date's
inputs since its run, whether a date's ERROR findings spiked, and the province
delivery scorecard.

No I/O here: flows/operations.py reads the inbox and the warehouse and hands over
sha256 dicts and summaries parsed by contracts/summary.py (never raw dicts).
"""
from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta, timezone

import polars as pl

from contracts.codes import RULES
from contracts.summary import DeliveryScorecard, ScorecardRow, SummaryCore

SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")  # as flows.nightly: no DST there


def input_changes(d: date, recorded: dict[str, str], current: dict[str, str]) -> list[str]:
    """Sentences saying how D's delivered files differ from those its run read.

    Both dicts map `<D>/<PP>/<file>` to sha256 (as in summary.json `input_sha256`);
    keys of other dates and of reference/ are ignored (reference/ is not a delivery
    of D). Empty when nothing changed."""
    prefix = f"{d.isoformat()}/"
    before = {k: v for k, v in recorded.items() if k.startswith(prefix)}
    now = {k: v for k, v in current.items() if k.startswith(prefix)}
    out = []
    provinces_before = {k.split("/")[1] for k in before if k.endswith("/manifest.json")}
    for pp in sorted({k.split("/")[1] for k in now if k.endswith("/manifest.json")} - provinces_before):
        out.append(f"province {pp} delivered after the run")
    for pp in sorted(provinces_before - {k.split("/")[1] for k in now if k.endswith("/manifest.json")}):
        out.append(f"province {pp} withdrew its delivery")
    for k in sorted(set(before) & set(now)):
        if before[k] != now[k]:
            out.append(f"{k} changed (sha256 {before[k][:12]}… is now {now[k][:12]}…)")
    known = {k.split("/")[1] for k in before if k.endswith("/manifest.json")} & \
        {k.split("/")[1] for k in now if k.endswith("/manifest.json")}
    for k in sorted(set(now) - set(before)):
        if k.split("/")[1] in known:
            out.append(f"{k} arrived after the run")
    for k in sorted(set(before) - set(now)):
        if k.split("/")[1] in known:
            out.append(f"{k} is gone since the run")
    return out


def late_provinces(missing_before: list[str], delivered_now: list[str]) -> list[str]:
    """Provinces missing at a date's previous run that its re-run received."""
    return sorted(set(missing_before) & set(delivered_now))


def manifest_exported_at(raw: bytes | None) -> datetime | None:
    """manifest.json `exported_at` (inbox.md) as an aware datetime; None when the manifest
    is absent or gives no readable timestamp with an offset (the scorecard then counts
    the delivery on time: the run had it)."""
    if not raw:
        return None
    try:
        doc = json.loads(raw.decode("utf-8-sig"))
        at = datetime.fromisoformat(str(doc["exported_at"]))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
        return None
    return at if at.tzinfo is not None else None


def error_counts(summaries: list[SummaryCore]) -> pl.DataFrame:
    """(business_date, errors): ERROR findings per date, from summary.json `findings.per_rule`."""
    rows = [{"business_date": s.business_date.isoformat(), "rule_code": code, "findings": int(n)}
            for s in summaries for code, n in s.findings.per_rule.items()]
    severity = pl.DataFrame({"rule_code": list(RULES), "severity": [r.severity for r in RULES.values()]})
    frame = pl.DataFrame(rows, schema={"business_date": pl.String, "rule_code": pl.String,
                                       "findings": pl.Int64})
    dates = pl.DataFrame({"business_date": [s.business_date.isoformat() for s in summaries]},
                         schema={"business_date": pl.String}).unique()
    errors = (frame.join(severity, on="rule_code", how="left")
              .filter(pl.col("severity") == "ERROR")
              .group_by("business_date").agg(pl.col("findings").sum().alias("errors")))
    return (dates.join(errors, on="business_date", how="left")
            .with_columns(pl.col("errors").fill_null(0)).sort("business_date"))


def error_spike(today: SummaryCore, history: list[SummaryCore], factor: float, baseline_days: int,
                min_days: int) -> dict | None:
    """ERROR findings of `today` above `factor` x the median of the previous dates.

    history: summaries of earlier processed dates (any order); the last
    `baseline_days` of them before today form the baseline, which needs at least
    `min_days`. A median of 0 counts as 1. Returns {errors, median, threshold}
    when today spikes, else None."""
    d = today.business_date
    earlier = sorted((s for s in history if s.business_date < d),
                     key=lambda s: s.business_date)[-baseline_days:]
    if len(earlier) < min_days:
        return None
    base = error_counts(earlier)
    median = float(base["errors"].median())
    errors = int(error_counts([today])["errors"][0])
    threshold = factor * max(median, 1.0)
    if errors > threshold:
        return {"errors": errors, "median": median, "threshold": threshold}
    return None


SCORECARD_COLUMNS = tuple(ScorecardRow.model_fields)


def due_at(d: date, deadline: time) -> datetime:
    """The deadline of D's delivery: `deadline` on D+1, Asia/Shanghai."""
    return datetime.combine(d + timedelta(days=1), deadline, SHANGHAI)


def _delivery_days(s: SummaryCore, deadline: time) -> list[dict]:
    """One row per live province of one date: on time / late / missing, files rejected,
    rows read and quarantined (the date's own summary, nothing else)."""
    missing, exported = set(s.provinces.missing), s.provinces.exported_at or {}
    per_file: dict[str, list[int]] = {}
    for f in s.files:
        agg = per_file.setdefault(f.province, [0, 0, 0])
        agg[0] += int(f.rejected)
        agg[1] += f.rows_read
        agg[2] += f.rows_quarantined
    due = due_at(s.business_date, deadline)
    days = []
    for pp in s.provinces.expected:
        at = exported.get(pp)
        timing = "missing" if pp in missing else "late" if at is not None and at > due else "on time"
        rejected, read, quarantined = per_file.get(pp, [0, 0, 0])
        days.append({"province": pp, "timing": timing, "files_rejected": rejected,
                     "rows_read": read, "rows_quarantined": quarantined})
    return days


def scorecard_frame(summaries: list[SummaryCore], deadline: time) -> pl.DataFrame:
    """Per live province over the given dates' summaries, worst first: delivered on time
    (exported by `deadline` on D+1), late (exported after it), missing (still missing at
    the date's latest run), files rejected, rows quarantined per 10,000 rows read."""
    days = [row for s in summaries for row in _delivery_days(s, deadline)]
    frame = pl.DataFrame(days, schema={"province": pl.String, "timing": pl.String,
                                       "files_rejected": pl.Int64, "rows_read": pl.Int64,
                                       "rows_quarantined": pl.Int64})
    return (frame.group_by("province").agg(
        pl.len().cast(pl.Int64).alias("dates"),
        (pl.col("timing") == "on time").sum().cast(pl.Int64).alias("on_time"),
        (pl.col("timing") == "late").sum().cast(pl.Int64).alias("late"),
        (pl.col("timing") == "missing").sum().cast(pl.Int64).alias("missing"),
        pl.col("files_rejected").sum(), pl.col("rows_read").sum(), pl.col("rows_quarantined").sum())
        .with_columns(pl.when(pl.col("rows_read") > 0)
                      .then((pl.col("rows_quarantined") * 10_000 / pl.col("rows_read")).round(1))
                      .alias("quarantined_per_10k"))
        .sort(["missing", "late", "files_rejected", "quarantined_per_10k", "province"],
              descending=[True, True, True, True, False], nulls_last=True)
        .select(SCORECARD_COLUMNS))


def delivery_scorecard(summaries: list[SummaryCore], deadline: time,
                       not_counted: list[date] = ()) -> DeliveryScorecard | None:
    """The scorecard of summary.json over `summaries` (the last processed dates, at most
    SCORECARD_DATES of them) and the dates left out (`not_counted`); None without a date."""
    dates = sorted({s.business_date for s in summaries} | set(not_counted))
    if not dates:
        return None
    rows = scorecard_frame(summaries, deadline).to_dicts()
    return DeliveryScorecard(first_date=dates[0], last_date=dates[-1], dates=len(summaries),
                             deadline=f"{deadline:%H:%M}", not_counted=sorted(not_counted),
                             provinces=[ScorecardRow(**r) for r in rows])
