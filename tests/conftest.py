"""Shared fixtures.

Prefect is started only for tests marked `prefect`: the session-scoped
`prefect_harness` (Prefect's temporary API on a throw-away SQLite database) is
requested automatically for them, once per session. Every other test runs the
transforms and the plain orchestration without Prefect.
"""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(autouse=True)
def _prefect_only_when_marked(request):
    if request.node.get_closest_marker("prefect") is not None:
        request.getfixturevalue("prefect_harness")
    yield


# --------------------------------------------------------------------------- a real run

REAL_START = __import__("datetime").date(2026, 11, 20)


class RealRun:
    """Three dates of a generated inbox reconciled by the plain pipeline, then the second
    date re-run after one of its provinces was withdrawn: the second date is PARTIAL with
    a re-run's new and disappeared findings, the third is STALE."""

    def __init__(self, root):
        from datetime import timedelta
        self.root = root
        self.inbox, self.out, self.warehouse = root / "inbox", root / "reports", root / "w.duckdb"
        self.dates = [REAL_START + timedelta(days=i) for i in range(3)]
        self.partial, self.stale = self.dates[1], self.dates[2]

    def folder(self, d):
        return self.out / d.isoformat()

    def summary(self, d) -> dict:
        import json
        return json.loads((self.folder(d) / "summary.json").read_text(encoding="utf-8"))

    def exceptions(self, d):
        import polars as pl
        return pl.read_parquet(self.folder(d) / "exceptions.parquet")


@pytest.fixture(scope="session")
def real_run(tmp_path_factory) -> RealRun:
    """`recon generate` + plain runs of a small inbox (a few hundred persons)."""
    import shutil

    import polars as pl

    from flows import nightly
    from flows.cli import main
    run = RealRun(tmp_path_factory.mktemp("real-run"))
    assert main(["generate", "--out", str(run.inbox), "--start", REAL_START.isoformat(),
                 "--days", "3", "--persons", "300", "--seed", "7"]) == 0
    paths = nightly.Paths.of(run.inbox, run.out, run.warehouse)
    for d in run.dates:
        nightly.run_date(paths, d, nightly.PlainExecutor())
    # withdraw a province that has findings of a rule other than F on the second date
    first = run.exceptions(run.partial).filter(~pl.col("rule_code").str.starts_with("F"))
    run.withdrawn = sorted(set(first["province"].to_list()))[0]
    run.first_summary = run.summary(run.partial)
    shutil.rmtree(run.inbox / run.partial.isoformat() / run.withdrawn)
    nightly.run_date(paths, run.partial, nightly.PlainExecutor())
    return run


@pytest.fixture
def copied_run(real_run, tmp_path):
    """The real run's inbox, reports and warehouse, copied (the session's copy stays intact)."""
    import shutil

    from flows.nightly import Paths
    root = tmp_path / "copy"
    shutil.copytree(real_run.root, root, ignore=shutil.ignore_patterns("*.lock", ".staging"))
    return Paths.of(root / "inbox", root / "reports", root / "w.duckdb")
