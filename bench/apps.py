"""Apps benchmark: install of a packed 50-step workflow, and task-style validation against the cached tool.

1. Install over HTTP (embedded server, TLS, SQLite): a generated workflow with STEPS inlined
   CommandLineTool steps (what sbpack produces), posted REPEAT times as new revisions. The baseline is the
   same request for a one-tool app, measured in the same run; the ratio shows what a big document costs.
2. In-process: ``loaded_tool`` (cached per revision) plus cwltool's job-order check ``_init_job`` for a
   task's inputs. The baseline is loading the document without the cache (``load_process``), which is
   what every validation would cost without it.

Targets: install < 1 s, cached validation < 5 ms. Environment: BENCH_STEPS (default 50), BENCH_REPEAT
(default 10). Prints human-readable figures and ends with one JSON line.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bridgehead.domain import cwl
from bridgehead.embedded import EmbeddedServer

STEPS = int(os.environ.get("BENCH_STEPS", "50"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "10"))


def tool(n: int) -> dict[str, Any]:
    return {
        "cwlVersion": "v1.2",
        "class": "CommandLineTool",
        "id": f"step_tool_{n}",
        "baseCommand": ["sort"],
        "requirements": [
            {"class": "ResourceRequirement", "coresMin": 1 + n % 4, "ramMin": 512 * (1 + n % 3)}
        ],
        "inputs": [
            {"id": "infile", "type": "File", "inputBinding": {"position": 1}},
            {"id": "reverse", "type": "boolean?", "inputBinding": {"prefix": "-r"}},
        ],
        "outputs": [{"id": "out", "type": "stdout"}],
        "stdout": f"sorted_{n}.txt",
        "sbg:appVersion": ["v1.2"],
    }


def workflow(steps: int) -> dict[str, Any]:
    """A chain of ``steps`` inlined tools, each reading the previous step's output."""
    body = []
    for n in range(steps):
        source = "reads" if n == 0 else f"s{n - 1}/out"
        body.append(
            {
                "id": f"s{n}",
                "run": tool(n),
                "in": [{"id": "infile", "source": source}],
                "out": [{"id": "out"}],
            }
        )
    return {
        "cwlVersion": "v1.2",
        "class": "Workflow",
        "label": f"{steps}-step chain",
        "inputs": [{"id": "reads", "type": "File"}],
        "outputs": [{"id": "final", "type": "File", "outputSource": f"s{steps - 1}/out"}],
        "steps": body,
        "requirements": [],
    }


def timed_installs(
    client: httpx.Client, path: str, raw: dict[str, Any], repeat: int, server: psutil.Process
) -> tuple[list[float], float]:
    """Wall-clock ms of each install, and the server's CPU ms per install (robust on a busy machine)."""
    out = []
    cpu = server.cpu_times()
    for _ in range(repeat):
        start = time.perf_counter()
        resp = client.post(path, json=raw)
        out.append((time.perf_counter() - start) * 1000)
        resp.raise_for_status()
    after = server.cpu_times()
    return out, (after.user + after.system - cpu.user - cpu.system) * 1000 / repeat


def validation(raw: dict[str, Any], repeat: int) -> tuple[float, float]:
    from cwltool.context import RuntimeContext

    app_id = "bench/apps/chain/0"
    stored = {**raw, "sbg:id": app_id, "sbg:modifiedOn": 1}
    job: dict[str, Any] = {
        "reads": {"class": "File", "location": "file:///tmp/reads.txt", "path": "/tmp/reads.txt"}
    }
    uncached = []
    for _ in range(max(3, repeat // 3)):
        start = time.perf_counter()
        cwl.load_process(app_id, stored)
        uncached.append((time.perf_counter() - start) * 1000)
    cwl.loaded_tool(app_id, stored)
    cached = []
    with tempfile.TemporaryDirectory() as tmp:
        rc = RuntimeContext({"use_container": False, "outdir": tmp, "basedir": tmp})
        for _ in range(repeat * 20):
            start = time.perf_counter()
            process = cwl.loaded_tool(app_id, stored)
            process._init_job(dict(job), rc)
            cached.append((time.perf_counter() - start) * 1000)
    return statistics.median(cached), statistics.median(uncached)


def main() -> None:
    big = workflow(STEPS)
    small = tool(0)
    print(f"workflow: {STEPS} steps, {len(json.dumps(big)) / 1024:.0f} KiB of JSON; {REPEAT} installs each")
    with (
        EmbeddedServer(engine="fake", tls=True, username="bench") as server,
        httpx.Client(
            base_url=server.url,
            verify=server.ca_file or False,
            headers={"X-SBG-Auth-Token": server.token},
            timeout=120,
        ) as client,
    ):
        assert server.proc is not None
        proc = psutil.Process(server.proc.pid)
        project = client.post("/projects", json={"name": "bench apps"}).json()["id"]
        # warm the server's CWL schema once so that neither series pays for it
        first = timed_installs(client, f"/apps/{project}/warm/raw", small, 1, proc)[0][0]
        walls, tool_cpu = timed_installs(client, f"/apps/{project}/tool/raw", small, REPEAT, proc)
        tool_ms = statistics.median(walls)
        walls, wf_cpu = timed_installs(client, f"/apps/{project}/chain/raw", big, REPEAT, proc)
        wf_ms = statistics.median(walls)
        get_start = time.perf_counter()
        for _ in range(REPEAT):
            client.get(f"/apps/{project}/chain").raise_for_status()
        get_ms = (time.perf_counter() - get_start) * 1000 / REPEAT
    cached_ms, uncached_ms = validation(big, REPEAT)
    print(f"first install in a fresh server (schema parse): {first:8.1f} ms")
    print(f"install one-tool app (baseline):                 {tool_ms:8.1f} ms median")
    print(f"install {STEPS}-step packed workflow:                {wf_ms:8.1f} ms median (target < 1000)")
    print(f"server CPU per install: tool {tool_cpu:.1f} ms, workflow {wf_cpu:.1f} ms")
    print(f"load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall times scale with it)")
    print(f"GET the {STEPS}-step app:                            {get_ms:8.1f} ms mean")
    print(f"load + validate without cache:                   {uncached_ms:8.1f} ms median")
    print(f"cached loaded_tool + _init_job:                  {cached_ms:8.3f} ms median (target < 5)")
    result = {
        "bench": "apps",
        "steps": STEPS,
        "install_workflow_ms": round(wf_ms, 1),
        "install_tool_ms": round(tool_ms, 1),
        "install_workflow_server_cpu_ms": round(wf_cpu, 1),
        "install_tool_server_cpu_ms": round(tool_cpu, 1),
        "load_average": round(os.getloadavg()[0], 1),
        "install_ratio_vs_tool": round(wf_ms / tool_ms, 2),
        "first_install_ms": round(first, 1),
        "get_workflow_ms": round(get_ms, 1),
        "validate_cached_ms": round(cached_ms, 3),
        "validate_uncached_ms": round(uncached_ms, 1),
        "cache_speedup": round(uncached_ms / cached_ms, 1),
        "install_under_1s": wf_ms < 1000,
        "validate_under_5ms": cached_ms < 5,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
