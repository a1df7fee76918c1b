"""End-to-end over the synthetic nation (issue 3, item 6).

For several seeds and five consecutive days: every planted violation is found
and nothing else is (the exceptions equal the planted truth), the four
invariants of rules.md §8 pass, and positions sum to 0.00.
"""
from __future__ import annotations

import csv
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal

import duckdb
import pytest

from flows.inbox import read_inbox_date
from synth.generate import generate
from transforms import clearing
from transforms.context import RunContext, bind_date, create_warehouse
from transforms.intake import load_province, stage
from transforms.reconcile import reconcile

START = date(2026, 11, 1)
DAYS = 5


def reconcile_days(inbox, days, start=START):
    """Run every date through intake and the transforms, as the plain orchestration does."""
    con = duckdb.connect()
    create_warehouse(con)
    results = {}
    for i in range(days):
        d = start + timedelta(days=i)
        ctx = RunContext.for_date(d, genesis=(i == 0))
        bind_date(con, ctx)
        inbox_date = read_inbox_date(inbox, d)
        intakes = [load_province(delivery, d) for delivery in inbox_date.deliveries]
        con.execute("BEGIN")
        stage(con, ctx, inbox_date, intakes)
        reconcile(con, ctx)
        con.execute("COMMIT")
        found = {(r[0], r[1], r[2]) for r in con.execute(
            "SELECT rule_code, province, record_id FROM findings WHERE business_date = ?",
            [d]).fetchall()}
        results[d] = {
            "found": found,
            "invariants": clearing.invariants(con, ctx),
            "positions": clearing.positions_report(con, ctx),
        }
    return con, results


def planted_truth(inbox):
    truth: dict[date, set] = {}
    with open(inbox / "planted_truth.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            d = date.fromisoformat(row["business_date"])
            truth.setdefault(d, set()).add((row["rule_code"], row["province"], row["record_id"]))
    return truth


@pytest.fixture(scope="module", params=[11, 2027])
def reconciled(request, tmp_path_factory):
    inbox = tmp_path_factory.mktemp(f"inbox-{request.param}")
    generate(inbox, START, DAYS, 1500, request.param, violation_rate=0.01)
    con, results = reconcile_days(inbox, DAYS)
    return inbox, results


def test_every_planted_violation_is_found_and_nothing_else(reconciled):
    inbox, results = reconciled
    truth = planted_truth(inbox)
    for d, r in results.items():
        expected = truth.get(d, set())
        missed = sorted(expected - r["found"])
        extra = sorted(r["found"] - expected)
        assert not missed, f"{d}: planted but not found (first 10): {missed[:10]}"
        assert not extra, f"{d}: found but not planted (first 10): {extra[:10]}"


def test_every_rule_code_is_planted_and_found(reconciled):
    inbox, results = reconciled
    codes = Counter(code for r in results.values() for code, _, _ in r["found"])
    from contracts.codes import RULES
    assert set(RULES) <= set(codes), f"never found: {sorted(set(RULES) - set(codes))}"


def test_invariants_pass_every_day(reconciled):
    _, results = reconciled
    for d, r in results.items():
        failed = [i for i in r["invariants"] if not i["passed"]]
        assert not failed, f"{d}: {failed}"


def test_positions_sum_to_zero_every_day(reconciled):
    _, results = reconciled
    for d, r in results.items():
        assert sum(r["positions"]["net"].to_list(), Decimal("0")) == Decimal("0.00"), d
