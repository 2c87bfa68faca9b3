"""Cluster engines benchmark: the same batch of small tasks through local, slurm and toil-on-Slurm.

For each engine it starts its own embedded server (TLS, SQLite; PostgreSQL when
BENCH_DATABASE_URL is a fresh database URL), installs a one-line `wc -l` tool, uploads one input,
then creates and runs N tasks through the official client and waits for all of them. Reported per
engine: wall time, tasks/s, wall time per task (the per-task overhead: the tool itself takes
milliseconds) and the ratio to the local engine measured in the same run.

Toil is also compared with plain `toil-cwl-runner --batchSystem slurm` on the same two-step
workflow (one run each), which isolates what bridgehead adds around Toil.

Targets: slurm < 1 s/task overhead; toil through bridgehead within 2x of plain toil-cwl-runner.
Environment: BENCH_TASKS (default 50, local and slurm), BENCH_TOIL_TASKS (default 6: every Toil task
starts a leader that costs seconds), BENCH_ENGINES (default "local,slurm,toil").
Prints human-readable figures and ends with one JSON line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sevenbridges as sbg
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bridgehead.embedded import EmbeddedServer

ROOT = Path(__file__).resolve().parents[1]
TASKS = int(os.environ.get("BENCH_TASKS", "50"))
TOIL_TASKS = int(os.environ.get("BENCH_TOIL_TASKS", "6"))
ENGINES = [e for e in os.environ.get("BENCH_ENGINES", "local,slurm,toil").split(",") if e]
WORKFLOW = ROOT / "tests" / "cluster" / "cwl" / "sort_count.cwl"
WC = ROOT / "tests" / "cluster" / "cwl" / "wc.cwl"
TERMINAL = {"COMPLETED", "FAILED", "ABORTED"}


def run_batch(engine: str, count: int, work: Path) -> dict[str, Any]:
    server = EmbeddedServer(
        engine=engine,
        data_dir=work / f"data-{engine}",
        database_url=os.environ.get("BENCH_DATABASE_URL"),
        extra_env={"BRIDGEHEAD_TOIL_BATCH_SYSTEM": "slurm"},
    )
    trust(server.start())
    try:
        api = sbg.Api(url=server.url, token=server.token)
        project = api.projects.create(name=f"bench {engine}", billing_group=api.billing_groups.query()[0].id)
        app = api.apps.install_app(id=f"{project.id}/wc", raw=yaml.safe_load(WC.read_text()))
        data = work / "lines.txt"
        data.write_text("".join(f"line {i}\n" for i in range(1000)))
        infile = api.files.upload(str(data), project=project, file_name=f"lines-{engine}.txt").result()
        started = time.monotonic()
        ids = [
            api.tasks.create(name=f"t{i}", project=project, app=app, inputs={"infile": infile}, run=True).id
            for i in range(count)
        ]
        submitted = time.monotonic() - started
        states = wait_all(api, ids, timeout=max(600.0, count * 30.0))
        wall = time.monotonic() - started
    finally:
        server.stop()
    done = sum(1 for s in states.values() if s == "COMPLETED")
    return {
        "engine": engine,
        "tasks": count,
        "completed": done,
        "wall_s": round(wall, 2),
        "create_s": round(submitted, 2),
        "tasks_per_s": round(count / wall, 2),
        "per_task_s": round(wall / count, 3),
    }


def trust(server: EmbeddedServer) -> None:
    """The official client insists on https: trust this server's self-signed certificate."""
    os.environ["REQUESTS_CA_BUNDLE"] = str(server.ca_file)


def wait_all(api: sbg.Api, ids: list[str], timeout: float) -> dict[str, str]:
    states: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for task_id in ids:
            if states.get(task_id) not in TERMINAL:
                states[task_id] = api.tasks.get(task_id).status
        if all(s in TERMINAL for s in states.values()):
            return states
        time.sleep(0.5)
    return states


def toil_through_bridgehead(work: Path) -> float:
    server = EmbeddedServer(
        engine="toil",
        data_dir=work / "data-toil-wf",
        extra_env={"BRIDGEHEAD_TOIL_BATCH_SYSTEM": "slurm"},
    )
    trust(server.start())
    try:
        api = sbg.Api(url=server.url, token=server.token)
        project = api.projects.create(name="toil wf", billing_group=api.billing_groups.query()[0].id)
        app = api.apps.install_app(id=f"{project.id}/wf", raw=yaml.safe_load(WORKFLOW.read_text()))
        data = work / "letters.txt"
        data.write_text("c\nb\na\n")
        infile = api.files.upload(str(data), project=project, file_name="letters.txt").result()
        started = time.monotonic()
        task = api.tasks.create(name="wf", project=project, app=app, inputs={"infile": infile}, run=True)
        states = wait_all(api, [task.id], timeout=600)
        elapsed = time.monotonic() - started
        if states.get(task.id) != "COMPLETED":
            raise RuntimeError(f"the workflow ended {states.get(task.id)} through bridgehead")
        return elapsed
    finally:
        server.stop()


def toil_plain(work: Path) -> float:
    runner = Path(sys.executable).parent / "toil-cwl-runner"
    data = work / "plain-letters.txt"
    data.write_text("c\nb\na\n")
    job = work / "plain-job.json"
    job.write_text(json.dumps({"infile": {"class": "File", "location": str(data)}}))
    env = dict(os.environ, PATH=f"{runner.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    started = time.monotonic()
    subprocess.run(
        [
            str(runner),
            "--jobStore",
            f"file:{work / 'plain-js'}",
            "--batchSystem",
            "slurm",
            "--no-container",
            "--outdir",
            str(work / "plain-out"),
            "--workDir",
            str(work),
            "--statePollingWait",
            "1",
            str(WORKFLOW),
            str(job),
        ],
        check=True,
        capture_output=True,
        env=env,
    )
    return time.monotonic() - started


def main() -> None:
    global ENGINES
    if ("slurm" in ENGINES or "toil" in ENGINES) and shutil.which("sbatch") is None:
        print("Slurm is not available here (run scripts/slurm-services.sh as root): measuring local only")
        ENGINES = [e for e in ENGINES if e == "local"]
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-", dir=os.environ.get("BENCH_TMP")))
    results: dict[str, dict[str, Any]] = {}
    try:
        for engine in ENGINES:
            count = TOIL_TASKS if engine == "toil" else TASKS
            print(f"{engine}: {count} tasks ...", flush=True)
            res = run_batch(engine, count, work)
            results[engine] = res
            print(
                f"  {res['completed']}/{count} completed in {res['wall_s']} s "
                f"({res['tasks_per_s']} tasks/s, {res['per_task_s']} s per task; "
                f"creating took {res['create_s']} s)"
            )
        toil_ratio = None
        if "toil" in ENGINES:
            print(
                "toil: one two-step workflow through bridgehead and with plain toil-cwl-runner ...",
                flush=True,
            )
            through = toil_through_bridgehead(work)
            plain = toil_plain(work)
            toil_ratio = round(through / plain, 2)
            print(f"  through bridgehead {through:.1f} s, plain toil-cwl-runner {plain:.1f} s: {toil_ratio}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    local = results.get("local")
    summary: dict[str, Any] = {"bench": "cluster"}
    for engine, res in results.items():
        summary[f"{engine}_tasks"] = res["tasks"]
        summary[f"{engine}_completed"] = res["completed"]
        summary[f"{engine}_wall_s"] = res["wall_s"]
        summary[f"{engine}_per_task_s"] = res["per_task_s"]
        if local and engine != "local":
            summary[f"{engine}_per_task_vs_local"] = round(res["per_task_s"] / local["per_task_s"], 2)
    if "toil" in ENGINES:
        summary["toil_vs_plain_toil"] = toil_ratio
    if "slurm" in results:
        summary["slurm_target_met"] = results["slurm"]["per_task_s"] < 1.0
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
