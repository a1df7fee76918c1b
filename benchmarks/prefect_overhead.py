"""Overhead of the Prefect path over the plain path (issue 11, item 1).

    PREFECT_API_URL=http://127.0.0.1:4200/api .venv/bin/python benchmarks/prefect_overhead.py
    .venv/bin/python benchmarks/prefect_overhead.py --persons 100000 --repeat 3

Reconciles one generated day (default 100,000 persons, all 31 provinces) into a
fresh warehouse, alternately with the plain orchestration (`run_date` +
`PlainExecutor`) and as the Prefect flow `reconcile-date` against a running
Prefect server (PREFECT_API_URL; without it, a temporary `prefect server start`
on a free port of 127.0.0.1 with its own PREFECT_HOME, stopped at the end). Each
run is a fresh subprocess and the clock covers the reconciliation call only (not
the interpreter's imports). Prints the medians and the overhead (target: <= 2 s
on a 100,000-person day). Nothing here is a test.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.national_day import DAY, OUT, ensure_inbox  # noqa: E402

CHILD = """
import json, sys, time
from datetime import date
from flows import nightly
paths = nightly.Paths.of(sys.argv[1], sys.argv[2], sys.argv[3])
d = date.fromisoformat(sys.argv[4])
if sys.argv[5] == "prefect":
    import prefect.flows  # noqa: F401 (imports before the clock, as for the plain path)
    run = lambda: nightly.run_date_prefect(paths, d, "threads")
else:
    run = lambda: nightly.run_date(paths, d, nightly.PlainExecutor())
t0 = time.perf_counter()
s = run()
print(json.dumps({"seconds": time.perf_counter() - t0, "status": s["status"]}))
"""


def one_run(inbox: Path, mode: str, env: dict) -> float:
    work = Path(tempfile.mkdtemp(prefix=f"overhead-{mode}-", dir=OUT))
    try:
        r = subprocess.run([sys.executable, "-c", CHILD, str(inbox), str(work / "reports"),
                            str(work / "wh.duckdb"), DAY.isoformat(), mode],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            raise SystemExit(f"{mode} run failed:\n{r.stderr[-2000:]}")
        return json.loads(r.stdout.strip().splitlines()[-1])["seconds"]
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def prefect_api():
    """PREFECT_API_URL if set, else a temporary server of our own (stopped at the end)."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"], "the running server at PREFECT_API_URL"
        return
    home = Path(tempfile.mkdtemp(prefix="prefect-home-", dir=OUT))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home}/prefect.db",
           "PREFECT_UI_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"}
    log = open(home / "server.log", "wb")
    server = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start",
                               "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(Exception):
                if urllib.request.urlopen(f"{api}/health", timeout=2).status == 200:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"prefect server start failed; see {home / 'server.log'}")
            time.sleep(0.5)
        yield api, f"a temporary server at {api}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=20261120)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    inbox = ensure_inbox(a.persons, a.seed)
    with prefect_api() as (api, where):
        print(f"Prefect overhead on a {a.persons:,}-person day ({DAY}), against {where}")
        plain_env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        prefect_env = {**os.environ, "PREFECT_API_URL": api,
                       "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        plain, prefect = [], []
        for i in range(a.repeat):
            plain.append(one_run(inbox, "plain", plain_env))
            prefect.append(one_run(inbox, "prefect", prefect_env))
            print(f"  run {i + 1}: plain {plain[-1]:.2f} s, prefect {prefect[-1]:.2f} s", flush=True)
    p, f = statistics.median(plain), statistics.median(prefect)
    print(f"median plain   {p:.2f} s")
    print(f"median prefect {f:.2f} s")
    print(f"overhead       {f - p:+.2f} s ({(f - p) / p:+.0%}); target <= 2 s on 100,000 persons")


if __name__ == "__main__":
    main()
