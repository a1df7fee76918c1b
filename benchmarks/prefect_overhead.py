"""Overhead of the Prefect path over the plain path (issue 11, item 1).

    PREFECT_API_URL=http://127.0.0.1:4200/api .venv/bin/python benchmarks/prefect_overhead.py
    .venv/bin/python benchmarks/prefect_overhead.py --persons 100000 --repeat 3

Reconciles one generated day (default 100,000 persons, all 31 provinces) into a
fresh warehouse, alternately with the plain orchestration (`run_date` +
`PlainExecutor`) and as the Prefect flow `reconcile-date` against a running
Prefect server (PREFECT_API_URL; without it, a temporary `prefect server start`
on a free port of 127.0.0.1 with its own PREFECT_HOME, stopped at the end). Each
run is a fresh subprocess and the clock covers the reconciliation call only (not
the interpreter's imports, Prefect's lazy ones included: their time is printed).
Prints wall and CPU seconds, the CPU seconds of our own server (it shares the
cores), the load average, the medians and the overhead. Targets (issue 11 item
1): <= 2 s on a 100,000-person day, <= 10 % on the national day of `make bench`
(--persons 2500000). Last figures, with their commands and load: README,
"What Prefect costs". Nothing here is a test.
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
    # the modules the Prefect path imports on first use, before the clock (as flows.nightly
    # is for both paths): `import prefect` alone is not all of it (fastapi's encoder, the
    # engines). Their time is printed beside the overhead.
    t0 = time.perf_counter()
    import prefect.main, prefect.flow_engine, prefect.task_engine, prefect.engine  # noqa: F401
    import prefect.artifacts, prefect.task_runners, fastapi.encoders  # noqa: F401
    import flows.distributed  # noqa: F401
    imports = time.perf_counter() - t0
    run = lambda: nightly.run_date_prefect(paths, d, "threads")
else:
    imports = 0.0
    run = lambda: nightly.run_date(paths, d, nightly.PlainExecutor())
c0, t0 = time.process_time(), time.perf_counter()
s = run()
print(json.dumps({"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                  "imports": imports, "status": s["status"]}))
"""


def one_run(inbox: Path, mode: str, env: dict, server_pid: int | None) -> dict:
    """One reconciliation in a fresh subprocess: its wall and CPU seconds, and the CPU
    seconds the Prefect server spent meanwhile (when it is ours: it shares the cores)."""
    work = Path(tempfile.mkdtemp(prefix=f"overhead-{mode}-", dir=OUT))
    try:
        s0 = server_cpu(server_pid)
        r = subprocess.run([sys.executable, "-c", CHILD, str(inbox), str(work / "reports"),
                            str(work / "wh.duckdb"), DAY.isoformat(), mode],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            raise SystemExit(f"{mode} run failed:\n{r.stderr[-2000:]}")
        out = json.loads(r.stdout.strip().splitlines()[-1])
        out["server_cpu"] = server_cpu(server_pid) - s0 if server_pid else float("nan")
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def server_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) of the server process and its waited-for children."""
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@contextlib.contextmanager
def prefect_api():
    """PREFECT_API_URL if set, else a temporary server of our own (stopped at the end)."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"], "the running server at PREFECT_API_URL", None
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
        yield api, f"a temporary server at {api}", server.pid
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
    with prefect_api() as (api, where, server_pid):
        print(f"Prefect overhead on a {a.persons:,}-person day ({DAY}), against {where}")
        print(f"  load average before: {load_average()}", flush=True)
        plain_env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        prefect_env = {**os.environ, "PREFECT_API_URL": api,
                       "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        plain, prefect = [], []
        for i in range(a.repeat):
            plain.append(one_run(inbox, "plain", plain_env, server_pid))
            prefect.append(one_run(inbox, "prefect", prefect_env, server_pid))
            p, f = plain[-1], prefect[-1]
            print(f"  run {i + 1}: plain {p['seconds']:.2f} s ({p['cpu']:.2f} s CPU), prefect "
                  f"{f['seconds']:.2f} s ({f['cpu']:.2f} s CPU; server {f['server_cpu']:.2f} s "
                  f"CPU, idle server during plain {p['server_cpu']:.2f} s)", flush=True)
        print(f"  load average after:  {load_average()}")

    def med(runs, key):
        return statistics.median(r[key] for r in runs)

    p, f = med(plain, "seconds"), med(prefect, "seconds")
    print(f"median plain   {p:.2f} s wall, {med(plain, 'cpu'):.2f} s CPU")
    print(f"median prefect {f:.2f} s wall, {med(prefect, 'cpu'):.2f} s CPU "
          f"(+ server {med(prefect, 'server_cpu'):.2f} s CPU; Prefect's imports before the "
          f"clock {med(prefect, 'imports'):.2f} s)")
    pairs = statistics.median(b["seconds"] - a["seconds"] for a, b in zip(plain, prefect))
    print(f"overhead       {f - p:+.2f} s ({(f - p) / p:+.0%}); median of the pairs {pairs:+.2f} s; "
          f"target <= 2 s on 100,000 persons, <= 10 % on the national day")


if __name__ == "__main__":
    main()
