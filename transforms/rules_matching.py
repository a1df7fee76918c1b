"""rules.md §5 two-sided matching X01-X04, all provinces of D together.

"Match OUT and IN records on transfer_id." FAILED records are matched too.
record_id transfer_id; dataset 'transfers'; amount and persons of the record the
finding is about (X02: the IN record, else the OUT record); province per rule.
X03 and X04 are independent: one pair may carry both.
"""
from __future__ import annotations

import duckdb

from transforms.context import RunContext
from transforms.findings import record

_OUT_COMMON = """o.file_province AS province, 'transfers' AS dataset, o.transfer_id AS record_id,
                 o.sharer_psn_no, o.beneficiary_psn_no, o.amount"""
_FMT = "'%Y-%m-%d %H:%M:%S'"
_FMT_FRACTION = "'%Y-%m-%d %H:%M:%S.%f'"

# The fields of X04, compared as text ("transfer_time compared as timestamps": the
# warehouse holds one TIMESTAMP type, so equal instants give equal text).
X04_FIELDS = ("relation_id", "sharer_psn_no", "beneficiary_psn_no", "sharer_province",
              "beneficiary_province", "status", "transfer_time")

_PAIRS = """
    SELECT o.*, i.amount AS in_amount,
           {in_fields}, i.file_province AS in_province,
           i.source_file AS in_source_file, i.source_row AS in_source_row
    FROM d_transfers o JOIN d_transfers i ON i.transfer_id = o.transfer_id AND i.side = 'IN'
    WHERE o.side = 'OUT'
""".format(in_fields=", ".join(f"i.{f} AS in_{f}" for f in X04_FIELDS))

# X03 / X04 are one finding per OUT record: a transfer_id whose IN side is delivered
# by more than one province pairs the OUT record with each IN record, and the
# mismatching pairs are gathered into that one finding (else the report would hold
# the same exception_id twice).
_PER_OUT = """o.file_province, o.transfer_id, o.sharer_psn_no, o.beneficiary_psn_no, o.amount,
              o.source_file, o.source_row"""


def x01_missing_in(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """X01 MISSING_IN: "an OUT record has no IN record". Province: the OUT file's."""
    record(con, "X01", f"""
        SELECT {_OUT_COMMON},
               'OUT record of ' || o.transfer_id || ' (' || o.status || ', ' || o.amount || ', '
                 || o.sharer_province || '→' || o.beneficiary_province
                 || ') has no IN record in any province''s transfers of '
                 || strftime(CAST($d AS DATE), '%Y-%m-%d') || '.' AS detail,
               o.source_file, o.source_row
        FROM d_transfers o
        WHERE o.side = 'OUT'
          AND NOT EXISTS (SELECT 1 FROM d_transfers i WHERE i.side = 'IN' AND i.transfer_id = o.transfer_id)
    """, {"d": ctx.business_date})


def x02_missing_out(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """X02 MISSING_OUT: "an IN record has no OUT record". Province: the IN file's."""
    record(con, "X02", f"""
        SELECT i.file_province AS province, 'transfers' AS dataset, i.transfer_id AS record_id,
               i.sharer_psn_no, i.beneficiary_psn_no, i.amount,
               'IN record of ' || i.transfer_id || ' (' || i.status || ', ' || i.amount || ', '
                 || i.sharer_province || '→' || i.beneficiary_province
                 || ') has no OUT record in any province''s transfers of '
                 || strftime(CAST($d AS DATE), '%Y-%m-%d') || '.' AS detail,
               i.source_file, i.source_row
        FROM d_transfers i
        WHERE i.side = 'IN'
          AND NOT EXISTS (SELECT 1 FROM d_transfers o WHERE o.side = 'OUT' AND o.transfer_id = i.transfer_id)
    """, {"d": ctx.business_date})


def x03_amount_mismatch(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """X03 AMOUNT_MISMATCH: "both present, amounts differ". Province: the OUT file's."""
    record(con, "X03", f"""
        SELECT {_OUT_COMMON},
               'OUT amount ' || o.amount || ' (' || o.source_file || ') differs from '
                 || string_agg('IN amount ' || o.in_amount || ' (' || o.in_province || ') by '
                               || (o.amount - o.in_amount), '; '
                               ORDER BY o.in_province, o.in_source_file, o.in_source_row) || '.' AS detail,
               o.source_file, o.source_row
        FROM ({_PAIRS}) o
        WHERE o.amount <> o.in_amount
        GROUP BY {_PER_OUT}
    """)


def x04_field_mismatch(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """X04 FIELD_MISMATCH: "both present, any of relation_id, sharer_psn_no,
    beneficiary_psn_no, sharer_province, beneficiary_province, status, transfer_time
    differ". Province: the OUT file's."""
    def show(col: str) -> str:   # a fraction of a second shows when it is there to compare
        if not col.endswith("transfer_time"):
            return col
        return (f"CASE WHEN microsecond({col}) % 1000000 = 0 THEN strftime({col}, {_FMT}) "
                f"ELSE strftime({col}, {_FMT_FRACTION}) END")
    diffs = ",\n".join(
        f"CASE WHEN o.{f} IS DISTINCT FROM o.in_{f} THEN '{f} OUT ' || coalesce({show('o.' + f)}, 'null')"
        f" || ' vs IN ' || coalesce({show('o.in_' + f)}, 'null') END"
        for f in X04_FIELDS)
    differ = " OR ".join(f"o.{f} IS DISTINCT FROM o.in_{f}" for f in X04_FIELDS)
    record(con, "X04", f"""
        SELECT {_OUT_COMMON},
               'OUT and IN records of ' || o.transfer_id || ' differ: '
                 || CASE WHEN count(*) = 1 THEN min(o.diffs)
                         ELSE string_agg('IN record of ' || o.in_province || ': ' || o.diffs, ' | '
                                         ORDER BY o.in_province, o.in_source_file, o.in_source_row)
                    END || '.' AS detail,
               o.source_file, o.source_row
        FROM (SELECT o.*, concat_ws('; ', {diffs}) AS diffs FROM ({_PAIRS}) o WHERE {differ}) o
        GROUP BY {_PER_OUT}
    """)


def run(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    x01_missing_in(con, ctx)
    x02_missing_out(con, ctx)
    x03_amount_mismatch(con, ctx)
    x04_field_mismatch(con, ctx)
