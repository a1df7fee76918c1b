"""The intake streams (issue 12): a run holds the provinces in flight, never the nation.

PlainExecutor.stream hands the loaded provinces over in order while at most
PROVINCES_IN_FLIGHT load ahead; transforms.intake.stage inserts each and drops it.
That streamed and listed staging give the same warehouse is guarded by
tests/test_dask.py::test_staging_through_parquet_gives_the_plain_results (the
plain run streams, the Parquet run hands over a list)."""
import threading
import weakref

import pytest

from contracts.resources import PROVINCES_IN_FLIGHT
from flows.nightly import PlainExecutor, Step


class Loaded:
    """Stands for a province's loaded frames; counted while alive."""

    def __init__(self, province: str):
        self.province = province


def _counting_step(alive: weakref.WeakSet, lock: threading.Lock, fail_at: str | None = None) -> Step:
    def load(province: str, _d) -> Loaded:
        if province == fail_at:
            raise ValueError(f"province {province} cannot be read")
        x = Loaded(province)
        with lock:
            alive.add(x)
        return x
    return Step("load_province", load)


PROVINCES = [f"{n:02d}" for n in range(11, 41)]


def test_a_streamed_day_holds_the_provinces_in_flight_and_the_one_being_staged():
    alive, lock = weakref.WeakSet(), threading.Lock()
    ex = PlainExecutor(max_workers=8)
    seen, most = [], 0
    for loaded in ex.stream(_counting_step(alive, lock), PROVINCES, None):
        seen.append(loaded.province)   # staged here; the previous one is gone
        with lock:
            most = max(most, len(alive))
        del loaded
    assert seen == PROVINCES                       # in province order, none lost
    assert most <= PROVINCES_IN_FLIGHT + 1 < len(PROVINCES)
    assert "load_province (waited)" in ex.timings


def test_a_province_that_fails_to_load_fails_the_stream_with_its_own_error():
    alive, lock = weakref.WeakSet(), threading.Lock()
    ex = PlainExecutor(max_workers=2)
    seen = []
    with pytest.raises(ValueError, match="province 14 cannot be read") as e:
        for loaded in ex.stream(_counting_step(alive, lock, fail_at="14"), PROVINCES, None):
            seen.append(loaded.province)
    assert seen == ["11", "12", "13"]
    assert e.value.recon_step == "load_province"   # the one-sentence error names the step


def test_an_executor_that_loads_elsewhere_keeps_its_list():
    """StagingExecutor / Dask hand over Parquet and drop it when STAGE sees the list."""
    class Elsewhere(PlainExecutor):
        def map(self, step, items, *args):
            return [f"parquet of {x}" for x in items]

    assert Elsewhere().stream(Step("load_province", None), ["11", "12"], None) == \
        ["parquet of 11", "parquet of 12"]
