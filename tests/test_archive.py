"""`recon archive --before B` (outputs.md, command table): the rows no rule reads any more
move to per-date Parquet that DuckDB still queries, nothing is lost, the dates from B on
reconcile exactly as without the archive, and a date before B is no longer re-run."""
from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from contracts.errors import InputError
from flows import warehouse as wh
from flows.archive import ARCHIVE_SUFFIX, archive_before
from flows.cli import main
from flows.nightly import Paths, backfill_plain, run_date_plain
from synth.generate import generate
from transforms.archive import ARCHIVED_TABLES

START = date(2026, 11, 20)
DATES = [START + timedelta(days=i) for i in range(5)]
REPORTS = ("exceptions.csv", "settlement.csv", "positions.csv")


@pytest.fixture(scope="module")
def inbox(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("archive-inbox")
    generate(root / "inbox", START, len(DATES), 300, 11, violation_rate=0.02)
    return root / "inbox"


@pytest.fixture(scope="module")
def reference(inbox, tmp_path_factory) -> Path:
    """The five dates reconciled one after the other, never archived."""
    root = tmp_path_factory.mktemp("archive-reference")
    backfill_plain(inbox, root / "reports", root / "wh.duckdb", DATES[0], DATES[-1])
    return root


def processed(inbox: Path, tmp_path: Path, last: date) -> Paths:
    """A warehouse of DATES[0]..last, reconciled one date after the other."""
    paths = Paths.of(inbox, tmp_path / "reports", tmp_path / "wh.duckdb")
    backfill_plain(inbox, paths.out, paths.warehouse, DATES[0], last)
    return paths


def recon_archive(paths: Paths, before: date) -> int:
    """`recon archive --before` as an operator runs it, with a look-back of one day."""
    return main(["archive", "--before", before.isoformat(), "--lookback-days", "1",
                 "--inbox", str(paths.inbox), "--out", str(paths.out),
                 "--warehouse", str(paths.warehouse)])


def rows(con, table: str, where: str = "") -> list[tuple]:
    return con.execute(f"SELECT * FROM {table} {where} ORDER BY ALL").fetchall()


def test_archived_rows_stay_queryable_and_the_dates_after_reconcile_as_without_the_archive(
        inbox, reference, tmp_path):
    paths = processed(inbox, tmp_path, DATES[3])
    moved = archive_before(paths, DATES[2], lookback_days=1)   # the latest date is DATES[3]

    ref = duckdb.connect(str(reference / "wh.duckdb"), read_only=True)
    con = wh.open_warehouse(paths.warehouse, read_only=True)
    root = Path(f"{paths.warehouse}{ARCHIVE_SUFFIX}")
    try:
        for table, keep in ARCHIVED_TABLES.items():
            gone = DATES[:2 - keep]   # the dates before B, but the last `keep`
            before = f"WHERE business_date IN ({', '.join(repr(d.isoformat()) for d in gone)})"
            want = rows(ref, table, before)
            assert moved[table] == len(want)
            assert rows(con, table, before) == []   # left the warehouse ...
            files = sorted(p.name for p in (root / table).iterdir())
            assert files == [f"{d.isoformat()}.parquet" for d in gone]
            archived = con.execute(f"SELECT * FROM read_parquet('{root / table}/*.parquet') "
                                   "ORDER BY ALL").fetchall()
            assert archived == want                 # ... and every row is in the archive
            kept = (f"WHERE business_date BETWEEN '{gone[-1] + timedelta(days=1)}' "
                    f"AND '{DATES[3]}'")   # the reference has DATES[4] too
            assert rows(con, table, kept) == rows(ref, table, kept)
        assert sum(moved[t] for t in ("lots", "balances")) > 0
    finally:
        con.close()
        ref.close()

    # D+1 of the archived warehouse reports exactly what the never-archived one reported
    run_date_plain(inbox, paths.out, paths.warehouse, DATES[4])
    for name in REPORTS:
        got = (paths.out / DATES[4].isoformat() / name).read_bytes()
        assert got == (reference / "reports" / DATES[4].isoformat() / name).read_bytes(), name
    # the boundary date re-runs (it reads the lots of the date before, which stayed) ...
    run_date_plain(inbox, paths.out, paths.warehouse, DATES[2])
    # ... a date before it does not: its closing state is gone
    with pytest.raises(InputError, match="cannot be re-run"):
        run_date_plain(inbox, paths.out, paths.warehouse, DATES[1])
    with pytest.raises(InputError, match="cannot be re-run"):
        backfill_plain(inbox, paths.out, paths.warehouse, DATES[1], DATES[2])


def test_a_boundary_inside_the_nightly_look_back_is_refused_and_nothing_moves(
        inbox, tmp_path, capsys):
    paths = processed(inbox, tmp_path, DATES[2])
    rc = recon_archive(paths, DATES[2])
    err = capsys.readouterr().err
    assert rc == 2
    assert "within the nightly look-back" in err and err.count("\n") == 1
    assert not Path(f"{paths.warehouse}{ARCHIVE_SUFFIX}").exists()


def printed_queries(out: str) -> list[str]:
    return [line.split("DuckDB: ", 1)[1] for line in out.splitlines() if "read_parquet(" in line]


@pytest.mark.parametrize("before", [DATES[1], DATES[2]], ids=["one date before", "two dates before"])
def test_the_command_says_what_moved_and_every_query_it_prints_reads_those_rows(
        inbox, tmp_path, capsys, before):
    """With one date before B its lots and balances stay (B opens from them): the command
    then offers no query of a folder that holds no file (DuckDB refuses such a glob)."""
    paths = processed(inbox, tmp_path, DATES[3])
    rc = recon_archive(paths, before)
    out = capsys.readouterr().out
    assert rc == 0
    moved = {t: int(n.replace(",", "")) for t, n in
             (part.split() for part in out.split(": ", 1)[1].split(".\n", 1)[0].split(", "))}
    queries = printed_queries(out)
    assert [q.split("/")[-2] for q in queries] == [t for t, n in moved.items() if n]
    assert ("lots" in moved and moved["lots"] > 0) == (before == DATES[2])
    con = duckdb.connect()
    try:
        for q in queries:
            table = q.split("/")[-2]
            assert con.execute(q.replace("SELECT *", "SELECT count(*)").rstrip(";")
                               ).fetchone()[0] == moved[table]
    finally:
        con.close()
    # an earlier --before then moves nothing: it must not say every date re-runs
    assert recon_archive(paths, DATES[0]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Nothing to archive") and "every date re-runs" not in out
    assert f"the dates before {before.isoformat()}, the boundary of an earlier archive" in out


def test_an_archive_with_nothing_to_move_says_so_and_sets_no_boundary(inbox, tmp_path, capsys):
    paths = processed(inbox, tmp_path, DATES[3])
    rc = recon_archive(paths, DATES[0])   # no processed date before it
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith("Nothing to archive") and printed_queries(out) == []
    assert not Path(f"{paths.warehouse}{ARCHIVE_SUFFIX}").exists()
    run_date_plain(inbox, paths.out, paths.warehouse, DATES[0])   # still re-runs
    assert "every date re-runs as before" in out


def test_a_link_planted_as_the_archive_folder_is_refused_and_its_target_untouched(
        inbox, tmp_path):
    paths = processed(inbox, tmp_path, DATES[3])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, f"{paths.warehouse}{ARCHIVE_SUFFIX}")
    with pytest.raises(InputError, match="not a folder of recon's own"):
        archive_before(paths, DATES[2], lookback_days=1)
    assert list(elsewhere.iterdir()) == []
    con = wh.open_warehouse(paths.warehouse, read_only=True)
    try:   # nothing moved
        assert con.execute("SELECT count(DISTINCT business_date) FROM lots").fetchone() == (4,)
    finally:
        con.close()


def test_a_stale_date_before_the_boundary_is_refused_it_could_never_be_brought_up_to_date(
        inbox, tmp_path):
    paths = processed(inbox, tmp_path, DATES[4])
    run_date_plain(inbox, paths.out, paths.warehouse, DATES[1])   # DATES[2..4] are STALE now
    with pytest.raises(InputError, match=f"{DATES[2].isoformat()} is STALE"):
        archive_before(paths, DATES[3], lookback_days=1)
    assert not Path(f"{paths.warehouse}{ARCHIVE_SUFFIX}").exists()


def test_the_catch_up_leaves_archived_dates_alone_and_still_sees_the_others(inbox, tmp_path):
    import shutil

    from flows import operations
    own = tmp_path / "inbox"
    shutil.copytree(inbox, own)
    paths = processed(own, tmp_path, DATES[3])
    archive_before(paths, DATES[2], lookback_days=1)
    for d in (DATES[0], DATES[3]):   # a corrected delivery of an archived and of a later date
        balances = own / d.isoformat() / "11" / "balances.csv"
        balances.write_bytes(balances.read_bytes() + b"\n")
    changed = operations.changed_dates(paths, lookback_days=10)
    assert [c.business_date for c in changed] == [DATES[3]]
    # `recon status` agrees with the catch-up: it does not offer the archived date
    from flows import warehouse as wh
    from flows.cli import status_lines
    assert [r["archived"] for r in wh.status_snapshot(paths)["runs"]] == [True, True, False, False]
    lines = status_lines(paths)
    listed = [x for x in lines if x.startswith("  ") and "balances.csv" in x]
    heading = next(i for i, x in enumerate(lines) if x.startswith("Inputs changed since their run on archived"))
    # the archived date changed too: said apart, as a date catch-up cannot re-run
    assert [x.split()[0] for x in listed] == [DATES[3].isoformat(), DATES[0].isoformat()]
    assert lines.index(listed[1]) == heading + 1 and lines.index(listed[0]) < heading
