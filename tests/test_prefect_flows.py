"""The Prefect side of the orchestration: the nightly deployment's schedule, task
retries on transient I/O only, and the task runner factory.

Tests marked `prefect` share one temporary Prefect API (tests/conftest.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from contracts.errors import InputError
from flows import nightly
from flows.nightly import Paths, PlainExecutor, PrefectExecutor, Step


class Flaky:
    """Fails with `exc` the first `fails` calls, then returns 'ok'."""

    def __init__(self, exc: Exception, fails: int):
        self.exc, self.fails, self.calls = exc, fails, 0

    def __call__(self, *args):
        self.calls += 1
        if self.calls <= self.fails:
            raise self.exc
        return "ok"


def test_plain_executor_retries_oserror_with_backoff():
    f = Flaky(OSError("NFS hiccup"), fails=2)
    assert PlainExecutor(backoff=0.001).call(Step("read", f, io_retries=3)) == "ok"
    assert f.calls == 3


def test_plain_executor_never_retries_bad_data():
    f = Flaky(ValueError("bad row"), fails=1)
    with pytest.raises(ValueError):
        PlainExecutor(backoff=0.001).call(Step("read", f, io_retries=3))
    assert f.calls == 1


def test_plain_executor_gives_up_after_the_retries():
    f = Flaky(OSError("gone"), fails=10)
    with pytest.raises(OSError):
        PlainExecutor(backoff=0.001).call(Step("read", f, io_retries=2))
    assert f.calls == 3


def test_unknown_or_missing_task_runner_is_a_usage_error():
    with pytest.raises(InputError, match="Unknown task runner"):
        nightly.task_runner("mpi")
    try:
        import prefect_dask  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="prefect-dask"):
            nightly.task_runner("dask")


def test_threads_is_the_default_task_runner(monkeypatch):
    from prefect.task_runners import ThreadPoolTaskRunner
    monkeypatch.delenv("RECON_TASK_RUNNER", raising=False)
    assert isinstance(nightly.task_runner(), ThreadPoolTaskRunner)


@pytest.mark.prefect
def test_nightly_deployment_is_scheduled_at_0230_shanghai(tmp_path):
    from prefect import get_client
    paths = Paths.of(tmp_path / "inbox", tmp_path / "reports", tmp_path / "wh.duckdb")
    deployment_id = nightly.register_deployment(paths)
    with get_client(sync_client=True) as client:
        dep = client.read_deployment(deployment_id)
    assert dep.name == nightly.DEPLOYMENT_NAME
    assert dep.entrypoint == "flows.nightly.nightly"
    assert len(dep.schedules) == 1
    schedule = dep.schedules[0].schedule
    assert schedule.cron == "30 2 * * *"
    assert schedule.timezone == "Asia/Shanghai"
    assert dep.parameters["inbox"] == str((tmp_path / "inbox").resolve())
    assert dep.parameters["warehouse"] == str((tmp_path / "wh.duckdb").resolve())


@pytest.mark.prefect
def test_prefect_task_retries_oserror_only():
    from prefect import flow

    io_fail = Flaky(OSError("transient"), fails=1)
    data_fail = Flaky(ValueError("bad data"), fails=1)
    ex = PrefectExecutor(backoff=0.01)

    @flow
    def probe():
        first = ex.call(Step("io_step", io_fail, io_retries=2))
        try:
            ex.call(Step("data_step", data_fail, io_retries=2))
        except ValueError:
            return first, "raised"
        return first, "not raised"

    assert probe() == ("ok", "raised")
    assert io_fail.calls == 2      # retried once after the OSError
    assert data_fail.calls == 1    # bad data is not retried
