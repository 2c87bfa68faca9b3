"""Execution benchmark: N trivial CWL tasks end to end through the API on the ``local`` engine.

Baseline, measured in the same run: the same N jobs with the ``cwltool`` CLI (one process per job,
``--no-container``), two at a time (the machine's two cores; the server's admission also runs at most
``max_cores`` one-core tasks at once). Reported:
- tasks/s for both and their ratio (target: the API at least 10x the CLI);
- latency from the task's run request returning to its tool process starting (from ``result.json``),
  median and p90 over tasks submitted one at a time onto an idle server;
- RSS of the server plus the engine supervisor while two tasks run (target: under 300 MiB).

Environment: BENCH_TASKS (default 200), BENCH_CLI_JOBS (default: BENCH_TASKS), BENCH_LATENCY (default 20).
Prints human-readable figures and ends with one JSON line.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bridgehead.embedded import EmbeddedServer

TASKS = int(os.environ.get("BENCH_TASKS", "200"))
CLI_JOBS = int(os.environ.get("BENCH_CLI_JOBS", str(TASKS)))
LATENCY_SAMPLES = int(os.environ.get("BENCH_LATENCY", "20"))
CWLTOOL = Path(sys.executable).parent / "cwltool"

TOOL: dict[str, Any] = {
    "cwlVersion": "v1.2",
    "class": "CommandLineTool",
    "baseCommand": "echo",
    "inputs": {"word": {"type": "string", "inputBinding": {"position": 1}}},
    "outputs": {"said": {"type": "stdout"}},
    "stdout": "said.txt",
}
SLEEP: dict[str, Any] = {
    "cwlVersion": "v1.2",
    "class": "CommandLineTool",
    "baseCommand": ["sleep", "4"],
    "inputs": {},
    "outputs": {},
}
TERMINAL = ("COMPLETED", "FAILED", "ABORTED")


def run_task(http: httpx.Client, project: str, app: str, word: str) -> dict[str, Any]:
    body = {"project": project, "app": app, "name": word, "inputs": {"word": word}}
    resp = http.post("/tasks", params={"action": "run"}, json=body)
    resp.raise_for_status()
    return dict(resp.json())


def wait_all(http: httpx.Client, project: str, count: int, timeout: float = 1800) -> dict[str, int]:
    """Wait until ``count`` tasks of the project are finished; returns the status counts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts: dict[str, int] = {}
        for status in TERMINAL:
            resp = http.get("/tasks", params={"project": project, "status": status, "limit": 1})
            counts[status] = int(resp.headers.get("X-Total-Matching-Query", "0"))
        if sum(counts.values()) >= count:
            return counts
        time.sleep(0.1)
    raise RuntimeError(f"tasks did not finish within {timeout} s")


def api_throughput(srv: EmbeddedServer, http: httpx.Client) -> tuple[float, float, dict[str, int]]:
    project = http.post("/projects", json={"name": "bench throughput"}).json()["id"]
    app = http.post(f"/apps/{project}/echo/raw", json=TOOL).json()["sbg:id"]
    run_task(http, project, app, "warmup")  # the supervisor imports cwltool and loads the tool once
    wait_all(http, project, 1)
    started = time.perf_counter()
    for i in range(TASKS):
        run_task(http, project, app, f"w{i}")
    submitted = time.perf_counter() - started
    counts = wait_all(http, project, TASKS + 1)
    elapsed = time.perf_counter() - started
    return elapsed, submitted, counts


def start_latency(srv: EmbeddedServer, http: httpx.Client) -> tuple[list[float], list[float]]:
    """Per task, one at a time: seconds from the run request returning to the tool process starting,
    and the engine's share (its ``submit`` writing ``run.json`` to the tool process starting)."""
    project = http.post("/projects", json={"name": "bench latency"}).json()["id"]
    app = http.post(f"/apps/{project}/echo/raw", json=TOOL).json()["sbg:id"]
    total: list[float] = []
    engine: list[float] = []
    for i in range(LATENCY_SAMPLES):
        sent = time.time()
        task = run_task(http, project, app, f"l{i}")
        done = wait_all(http, project, i + 1)
        assert done["COMPLETED"] == i + 1, done
        workdir = srv.data_path / "tasks" / task["id"]
        started = json.loads((workdir / "result.json").read_text())["started_at"]
        total.append(started - sent)
        engine.append(started - (workdir / "run.json").stat().st_mtime)
    return total, engine


def rss_with_two_running(srv: EmbeddedServer, http: httpx.Client) -> tuple[float, float]:
    """RSS (MiB) of the server and of the engine supervisor while two tasks are running."""
    project = http.post("/projects", json={"name": "bench rss"}).json()["id"]
    app = http.post(f"/apps/{project}/sleep/raw", json=SLEEP).json()["sbg:id"]
    ids = [run_task(http, project, app, f"s{i}")["id"] for i in range(2)]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        statuses = [http.get(f"/tasks/{i}").json()["status"] for i in ids]
        if statuses == ["RUNNING", "RUNNING"]:
            break
        time.sleep(0.05)
    time.sleep(0.5)
    assert srv.proc is not None
    server = psutil.Process(srv.proc.pid)
    supervisor = [c for c in server.children() if "bridgehead.engines.runner" in " ".join(c.cmdline())]
    server_mib = server.memory_info().rss / 2**20
    supervisor_mib = sum(p.memory_info().rss for p in supervisor) / 2**20
    wait_all(http, project, 2)
    return server_mib, supervisor_mib


def cli_throughput(workdir: Path) -> float:
    tool = workdir / "echo.cwl"
    tool.write_text(json.dumps(TOOL))

    def one(i: int) -> int:
        job = workdir / f"job{i}.json"
        job.write_text(json.dumps({"word": f"w{i}"}))
        proc = subprocess.run(
            [
                str(CWLTOOL),
                "--quiet",
                "--no-container",
                "--outdir",
                str(workdir / f"out{i}"),
                str(tool),
                str(job),
            ],
            capture_output=True,
            check=False,
        )
        return proc.returncode

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        codes = list(pool.map(one, range(CLI_JOBS)))
    elapsed = time.perf_counter() - started
    if any(codes):
        raise RuntimeError(f"{sum(1 for c in codes if c)} cwltool runs failed")
    return elapsed


def main() -> None:
    with (
        EmbeddedServer(engine="local", tls=False, extra_env={"BRIDGEHEAD_MAX_CORES": "2"}) as srv,
        httpx.Client(base_url=srv.url, headers={"X-SBG-Auth-Token": srv.token}, timeout=120) as http,
    ):
        elapsed, submitted, counts = api_throughput(srv, http)
        api_rate = TASKS / elapsed
        print(
            f"API, local engine: {TASKS} tasks in {elapsed:.1f} s ({api_rate:.1f} tasks/s); "
            f"submitting took {submitted:.1f} s; final states {counts}"
        )
        latency, engine_latency = start_latency(srv, http)
        lat_med = statistics.median(latency) * 1000
        lat_p90 = sorted(latency)[int(0.9 * (len(latency) - 1))] * 1000
        eng_med = statistics.median(engine_latency) * 1000
        print(
            f"run request -> tool process started: median {lat_med:.0f} ms, p90 {lat_p90:.0f} ms "
            f"({len(latency)} tasks one at a time); of which engine submit -> tool start: "
            f"median {eng_med:.0f} ms"
        )
        server_mib, supervisor_mib = rss_with_two_running(srv, http)
        print(
            f"RSS with 2 tasks running: server {server_mib:.0f} MiB + supervisor "
            f"{supervisor_mib:.0f} MiB = {server_mib + supervisor_mib:.0f} MiB"
        )
    with tempfile.TemporaryDirectory(prefix="bench-cwltool-") as tmp:
        cli_elapsed = cli_throughput(Path(tmp))
    cli_rate = CLI_JOBS / cli_elapsed
    ratio = api_rate / cli_rate
    print(f"cwltool CLI, 2 in parallel: {CLI_JOBS} jobs in {cli_elapsed:.1f} s ({cli_rate:.2f} jobs/s)")
    print(f"ratio API/CLI: {ratio:.1f}x (target >= 10x)")
    print(
        json.dumps(
            {
                "bench": "execution",
                "tasks": TASKS,
                "api_tasks_per_s": round(api_rate, 2),
                "cli_jobs": CLI_JOBS,
                "cli_jobs_per_s": round(cli_rate, 2),
                "ratio_api_vs_cli": round(ratio, 2),
                "completed": counts.get("COMPLETED", 0) - 1,
                "start_latency_ms_median": round(lat_med, 1),
                "start_latency_ms_p90": round(lat_p90, 1),
                "engine_start_ms_median": round(eng_med, 1),
                "rss_server_mib": round(server_mib, 1),
                "rss_supervisor_mib": round(supervisor_mib, 1),
                "rss_total_mib": round(server_mib + supervisor_mib, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
