"""DuckDB's memory limit and spill folder come from contracts/resources.py, env-overridable."""
import duckdb
import pytest

from contracts import resources
from contracts.errors import InputError
from flows.warehouse import open_warehouse


def test_default_memory_limit_is_the_contract_value():
    assert resources.memory_limit({}) == resources.MEMORY_LIMIT


def test_memory_limit_is_overridden_by_its_variable():
    assert resources.memory_limit({resources.MEMORY_LIMIT_ENV: "800MB"}) == "800MB"


@pytest.mark.parametrize("bad", ["lots", "1GB'; DROP TABLE persons; --", "-5GB", "80%"])
def test_a_bad_memory_limit_is_refused_in_one_sentence_naming_the_variable(bad):
    with pytest.raises(InputError) as e:
        resources.memory_limit({resources.MEMORY_LIMIT_ENV: bad})
    assert resources.MEMORY_LIMIT_ENV in str(e.value) and str(e.value).count(".") <= 2


def test_the_warehouse_connection_spills_beside_the_warehouse_within_the_limit(tmp_path, monkeypatch):
    monkeypatch.setenv(resources.MEMORY_LIMIT_ENV, "300MB")
    monkeypatch.delenv(resources.TEMP_DIRECTORY_ENV, raising=False)
    con = open_warehouse(tmp_path / "wh.duckdb")
    try:
        limit, tmp = con.execute("SELECT current_setting('memory_limit'), "
                                 "current_setting('temp_directory')").fetchone()
    finally:
        con.close()
    assert limit == "286.1 MiB"   # 300 MB as DuckDB prints it
    assert tmp == f"{tmp_path / 'wh.duckdb'}.tmp"


def test_the_spill_folder_is_overridden_by_its_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(resources.TEMP_DIRECTORY_ENV, str(tmp_path / "it's spill"))
    con = open_warehouse(tmp_path / "wh.duckdb")
    try:
        assert con.execute("SELECT current_setting('temp_directory')").fetchone()[0] == \
            str(tmp_path / "it's spill")
    finally:
        con.close()


def _row_groups(path) -> list[int]:
    con = open_warehouse(path, read_only=True)
    try:
        return [n for (n,) in con.execute(
            "SELECT max(count) FROM pragma_storage_info('lots') GROUP BY row_group_id "
            "ORDER BY row_group_id").fetchall()]
    finally:
        con.close()


def _run_of(path, day: int, rows: int = 1000) -> None:
    """What a run does to a date-partitioned table: replace the date's rows, commit, close."""
    con = open_warehouse(path)
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute("DELETE FROM lots WHERE business_date = DATE '2026-09-01' + ?", [day])
        con.execute("""INSERT INTO lots SELECT DATE '2026-09-01' + $day, 'L' || i, 'B' || i, '41',
                                'S' || i, '41', FALSE, NULL, 'T' || i, 1.00, 1.00
                       FROM range($rows) r(i)""", {"day": day, "rows": rows})
        con.execute("COMMIT")
    finally:
        con.close()


def test_each_date_keeps_row_groups_of_its_own_and_a_rerun_leaves_none_of_its_old_rows(tmp_path):
    """No row-group merging at checkpoints (MAX_VACUUM_TASKS): a late date's commit does
    not rewrite earlier dates' rows, and a re-run's deleted rows are still dropped."""
    assert resources.MAX_VACUUM_TASKS == 0
    w = tmp_path / "wh.duckdb"
    for day in range(4):
        _run_of(w, day)
    assert _row_groups(w) == [1000, 1000, 1000, 1000]   # merged, they would fit in one
    _run_of(w, 1, rows=900)                              # a re-run of the second date
    assert sorted(_row_groups(w)) == [900, 1000, 1000, 1000]


def _memory(con, tag: str) -> int:
    return con.execute("SELECT memory_usage_bytes FROM duckdb_memory() WHERE tag = ?", [tag]).fetchall()[0][0]


def _warehouse_with_history(path, dates: int = 24):
    """A warehouse whose table `history` holds `dates` dates in row groups of their own."""
    con = open_warehouse(path)
    con.execute("CREATE TABLE history (business_date DATE, payload VARCHAR)")
    for i in range(dates):
        con.execute("INSERT INTO history SELECT DATE '2026-09-01' + ?::INTEGER, md5(range::VARCHAR) "
                    "FROM range(150000)", [i])
        con.execute("CHECKPOINT")
    return con


def test_the_blocks_a_read_of_every_date_leaves_cached_are_released_and_the_limit_restored(tmp_path):
    con = _warehouse_with_history(tmp_path / "wh.duckdb")
    try:
        con.execute("BEGIN")
        con.execute("CREATE TEMP TABLE today AS SELECT * FROM range(200000)")
        con.execute("INSERT INTO history SELECT DATE '2026-10-01', 'today' FROM range(1000)")
        limit_before = con.execute("SELECT current_setting('memory_limit')").fetchall()
        temp_before = _memory(con, "IN_MEMORY_TABLE")
        expected = con.execute("SELECT count(DISTINCT payload), max(payload) FROM history").fetchall()
        assert _memory(con, "BASE_TABLE") > 3 * resources.CACHED_BLOCKS_KEPT  # every date's blocks stay

        resources.release_cached_blocks(con)

        assert _memory(con, "BASE_TABLE") <= resources.CACHED_BLOCKS_KEPT + 2**20
        assert _memory(con, "IN_MEMORY_TABLE") == temp_before  # nothing of the run spilled
        assert con.execute("SELECT current_setting('memory_limit')").fetchall() == limit_before
        # the same answers: the blocks come back from the file, the run's own rows stayed
        assert con.execute("SELECT count(DISTINCT payload), max(payload) FROM history").fetchall() == expected
        assert con.execute("SELECT count(*) FROM today").fetchall() == [(200000,)]
        con.execute("COMMIT")
        assert con.execute("SELECT count(*) FROM history WHERE payload = 'today'").fetchall() == [(1000,)]
    finally:
        con.close()


def test_a_connection_not_opened_as_a_warehouse_keeps_its_cache_and_its_limit(tmp_path):
    _warehouse_with_history(tmp_path / "wh.duckdb").close()
    con = duckdb.connect(str(tmp_path / "wh.duckdb"))
    try:
        con.execute("SET memory_limit = '2GB'")
        con.execute("SELECT max(payload) FROM history").fetchall()
        cached = _memory(con, "BASE_TABLE")
        resources.release_cached_blocks(con)
        assert _memory(con, "BASE_TABLE") == cached > 2 * resources.CACHED_BLOCKS_KEPT
        assert con.execute("SELECT current_setting('memory_limit')").fetchall() == [("1.8 GiB",)]
    finally:
        con.close()


# --- a day larger than the national day gets more memory ---------------------------

def test_a_day_past_the_large_day_rows_gets_the_large_day_limit_one_row_less_does_not():
    assert resources.day_memory_limit(resources.LARGE_DAY_ROWS, {}) is None
    assert resources.day_memory_limit(resources.LARGE_DAY_ROWS + 1, {}) == resources.LARGE_DAY_MEMORY_LIMIT


def test_an_operators_memory_limit_stands_for_a_large_day_too():
    env = {resources.MEMORY_LIMIT_ENV: "800MB"}
    assert resources.day_memory_limit(10 * resources.LARGE_DAY_ROWS, env) is None


def test_the_rows_a_day_declares_are_the_manifests_rows_an_unreadable_manifest_counts_none():
    import json
    from datetime import date
    from contracts.inbox import ProvinceDelivery
    from transforms.intake import declared_rows
    d = date(2026, 11, 20)
    sha = "0" * 64

    def manifest(pp, files):
        return json.dumps({"province": pp, "business_date": d.isoformat(), "encoding": "utf-8",
                           "files": files}).encode()
    deliveries = [
        ProvinceDelivery("11", d, manifest_bytes=manifest("11", {
            "persons.csv": {"rows": 7, "sha256": sha}, "transfers.csv": {"rows": 5, "sha256": sha}})),
        ProvinceDelivery("12", d, manifest_bytes=manifest("12", {
            "persons.csv": {"rows": 3, "sha256": sha},
            "balances.csv": {"rows": -4, "sha256": sha},          # unreadable entry: 0
            "settlements.csv": {"rows": True, "sha256": sha}})),  # not a count: 0
        ProvinceDelivery("13", d, manifest_bytes=manifest("31", {   # another province's: 0
            "persons.csv": {"rows": 1000, "sha256": sha}})),
        ProvinceDelivery("14", d, manifest_bytes=b"{not json"),
        ProvinceDelivery("15", d),                                  # no manifest (F01)
    ]
    assert declared_rows(deliveries, d) == 15


def test_a_large_day_raises_the_warehouse_connections_limit_and_the_one_evictions_restore(tmp_path, monkeypatch):
    from flows.warehouse import size_for_day
    monkeypatch.delenv(resources.MEMORY_LIMIT_ENV, raising=False)
    con = open_warehouse(tmp_path / "wh.duckdb")
    try:
        limit = lambda: con.execute("SELECT current_setting('memory_limit')").fetchone()[0]  # noqa: E731
        national = limit()
        size_for_day(con, resources.LARGE_DAY_ROWS)
        assert limit() == national
        size_for_day(con, resources.LARGE_DAY_ROWS + 1)
        with duckdb.connect() as ref:
            ref.execute(f"SET memory_limit = '{resources.LARGE_DAY_MEMORY_LIMIT}'")
            expected = ref.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        assert limit() == expected != national
        assert con.execute(f"SELECT getvariable('{resources.MEMORY_LIMIT_VARIABLE}')").fetchone()[0] \
            == resources.LARGE_DAY_MEMORY_LIMIT
    finally:
        con.close()
