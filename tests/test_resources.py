"""DuckDB's memory limit and spill folder come from contracts/resources.py, env-overridable."""
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
