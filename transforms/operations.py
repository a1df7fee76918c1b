"""Pure computations of the operations layer (issue 11): what changed in a date's
inputs since its run, and whether a date's ERROR findings spiked.

No I/O here: flows/operations.py reads the inbox and the warehouse and hands
over plain dicts.
"""
from __future__ import annotations

from datetime import date

import polars as pl

from contracts.codes import RULES


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


def error_counts(summaries: list[dict]) -> pl.DataFrame:
    """(business_date, errors): ERROR findings per date, from summary.json `findings.per_rule`."""
    rows = [{"business_date": s["business_date"], "rule_code": code, "findings": int(n)}
            for s in summaries for code, n in s.get("findings", {}).get("per_rule", {}).items()]
    severity = pl.DataFrame({"rule_code": list(RULES), "severity": [r.severity for r in RULES.values()]})
    frame = pl.DataFrame(rows, schema={"business_date": pl.String, "rule_code": pl.String,
                                       "findings": pl.Int64})
    dates = pl.DataFrame({"business_date": [s["business_date"] for s in summaries]},
                         schema={"business_date": pl.String}).unique()
    errors = (frame.join(severity, on="rule_code", how="left")
              .filter(pl.col("severity") == "ERROR")
              .group_by("business_date").agg(pl.col("findings").sum().alias("errors")))
    return (dates.join(errors, on="business_date", how="left")
            .with_columns(pl.col("errors").fill_null(0)).sort("business_date"))


def error_spike(today: dict, history: list[dict], factor: float, baseline_days: int,
                min_days: int) -> dict | None:
    """ERROR findings of `today` above `factor` x the median of the previous dates.

    history: summaries of earlier processed dates (any order); the last
    `baseline_days` of them before today form the baseline, which needs at least
    `min_days`. A median of 0 counts as 1. Returns {errors, median, threshold}
    when today spikes, else None."""
    d = today["business_date"]
    earlier = sorted((s for s in history if s["business_date"] < d),
                     key=lambda s: s["business_date"])[-baseline_days:]
    if len(earlier) < min_days:
        return None
    base = error_counts(earlier)
    median = float(base["errors"].median())
    errors = int(error_counts([today])["errors"][0])
    threshold = factor * max(median, 1.0)
    if errors > threshold:
        return {"errors": errors, "median": median, "threshold": threshold}
    return None
