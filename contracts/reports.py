"""Contracts of the published reports (outputs.md), checked before anything is published.

A report frame that breaks its contract is an internal failure (exit 1): the
run publishes nothing and the previous reports stay in place.
"""
from __future__ import annotations

import pandera.polars as pa
import polars as pl

from contracts.codes import EXPENSE_TYPES, PROVINCES, RULES

MONEY = pl.Decimal(18, 2)
DATASETS = ("manifest", "persons", "relationships", "transfers", "settlements", "balances")


class ReportContractError(Exception):
    """A report frame does not match outputs.md; str() is one sentence."""


def _net_is_difference(a: str, b: str, net: str):
    return pa.Check(lambda data: data.lazyframe.select(
        (pl.col(net) == pl.col(a) - pl.col(b)).all()), name=f"{net} = {a} - {b}")


EXCEPTIONS = pa.DataFrameSchema(
    {
        "exception_id": pa.Column(pl.Utf8, pa.Check.str_matches(r"^[0-9a-f]{16}$")),
        "business_date": pa.Column(pl.Date),
        "rule_code": pa.Column(pl.Utf8, pa.Check.isin(list(RULES))),
        "rule_name": pa.Column(pl.Utf8, pa.Check.isin([r.name for r in RULES.values()])),
        "severity": pa.Column(pl.Utf8, pa.Check.isin(["ERROR", "WARNING"])),
        "province": pa.Column(pl.Utf8, pa.Check.isin(list(PROVINCES))),
        "dataset": pa.Column(pl.Utf8, pa.Check.isin(list(DATASETS))),
        "record_id": pa.Column(pl.Utf8, pa.Check.str_length(min_value=1)),
        "sharer_psn_no": pa.Column(pl.Utf8, nullable=True),
        "beneficiary_psn_no": pa.Column(pl.Utf8, nullable=True),
        "amount": pa.Column(MONEY, nullable=True),
        "detail": pa.Column(pl.Utf8, pa.Check.str_length(min_value=1)),
        "source_file": pa.Column(pl.Utf8, nullable=True),
        "source_row": pa.Column(pl.Int64, pa.Check.ge(1), nullable=True),
    },
    strict=True, ordered=True, name="exceptions",
)

SETTLEMENT = pa.DataFrameSchema(
    {
        "business_date": pa.Column(pl.Date),
        "payer_province": pa.Column(pl.Utf8, pa.Check.isin(list(PROVINCES))),
        "payee_province": pa.Column(pl.Utf8, pa.Check.isin(list(PROVINCES))),
        "expense_type": pa.Column(pl.Utf8, pa.Check.isin(list(EXPENSE_TYPES))),
        "settled_amount": pa.Column(MONEY, pa.Check.ge(0)),
        "refunded_amount": pa.Column(MONEY, pa.Check.ge(0)),
        "net_amount": pa.Column(MONEY),
        "settlement_count": pa.Column(pl.Int64, pa.Check.ge(0)),
        "refund_count": pa.Column(pl.Int64, pa.Check.ge(0)),
        "cross_province": pa.Column(pl.Boolean),
    },
    checks=[
        _net_is_difference("settled_amount", "refunded_amount", "net_amount"),
        pa.Check(lambda data: data.lazyframe.select(
            (pl.col("cross_province") == (pl.col("payer_province") != pl.col("payee_province"))).all()),
            name="cross_province = payer != payee"),
    ],
    unique=["payer_province", "payee_province", "expense_type"],
    strict=True, ordered=True, name="settlement",
)

POSITIONS = pa.DataFrameSchema(
    {
        "business_date": pa.Column(pl.Date),
        "province": pa.Column(pl.Utf8, pa.Check.isin(list(PROVINCES)), unique=True),
        "receivable": pa.Column(MONEY),
        "payable": pa.Column(MONEY),
        "net": pa.Column(MONEY),
    },
    checks=[
        _net_is_difference("receivable", "payable", "net"),
        pa.Check(lambda data: data.lazyframe.select(pl.col("net").sum() == 0),
                 name="net positions sum to 0.00"),
    ],
    strict=True, ordered=True, name="positions",
)

SCHEMAS = {"exceptions": EXCEPTIONS, "settlement": SETTLEMENT, "positions": POSITIONS}


def validate_reports(frames: dict[str, pl.DataFrame], business_date) -> None:
    """Check every report frame against its contract and the run's date."""
    for name, df in frames.items():
        schema = SCHEMAS[name]
        try:
            schema.validate(df, lazy=True)
        except (pa.errors.SchemaErrors, pa.errors.SchemaError) as e:
            first = _first_failure(e)
            raise ReportContractError(
                f"the {name} report of {business_date} breaks its contract ({first}); "
                "nothing was published.") from None
        if df.height and df["business_date"].unique().to_list() != [business_date]:
            raise ReportContractError(
                f"the {name} report holds rows of another date than {business_date}; "
                "nothing was published.")


def _first_failure(e: Exception) -> str:
    cases = getattr(e, "failure_cases", None)
    if cases is not None and getattr(cases, "height", 0):
        row = cases.row(0, named=True)
        return f"column {row.get('column')}: {row.get('check')}"
    return str(e).splitlines()[0][:200]


# --------------------------------------------------------------------------- display of text

# Longest text (detail, record_id, file names) shown in report.html and exceptions.xlsx; the
# full value is kept in exceptions.csv / .parquet. A 50 MB field must not make a 157 MB page.
DISPLAY_TEXT_MAX = 500
DISPLAY_ELLIPSIS = " …[shortened; full text in exceptions.csv]"
# Exception ids of a re-run's changes listed on the page (all of them are in summary.json).
RERUN_IDS_SHOWN = 500


def shorten_for_display(text: str | None) -> str | None:
    """`text` cut to DISPLAY_TEXT_MAX characters, saying it was cut (None stays None)."""
    if text is None or len(text) <= DISPLAY_TEXT_MAX:
        return text
    return text[:DISPLAY_TEXT_MAX] + DISPLAY_ELLIPSIS
