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
