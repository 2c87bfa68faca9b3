"""Seeding and watching tasks straight in the database, for worker tests and benchmarks.

Tasks are inserted as QUEUED rows (what the API does on ``run``), so thousands can be created in
seconds; everything after that goes through the real dispatcher, engine and output ingestion.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from bridgehead.db.base import new_uuid, utcnow
from bridgehead.db.models import App, AppRevision, File, Project
from bridgehead.db.models.tasks import Task
from bridgehead.embedded import EmbeddedServer

ONE_OUTPUT_TOOL: dict[str, Any] = {
    "cwlVersion": "v1.2",
    "class": "CommandLineTool",
    "baseCommand": ["echo", "hello"],
    "inputs": [],
    "stdout": "out.txt",
    "outputs": [{"id": "out", "type": "stdout"}],
}


def db_engine(url: str) -> Engine:
    return create_engine(url, poolclass=NullPool)


def app_revision(engine: Engine, project: str, app: str) -> tuple[int, int, str]:
    """(project id, app revision id, full app id with revision) of an installed app."""
    owner, slug = project.split("/")
    with engine.connect() as conn:
        pid = conn.execute(
            select(Project.id).where(Project.owner == owner, Project.slug == slug)
        ).scalar_one()
        row = conn.execute(
            select(AppRevision.id, AppRevision.revision)
            .join(App, App.id == AppRevision.app_id)
            .where(App.project_id == pid, App.name == app)
            .order_by(AppRevision.revision.desc())
        ).first()
    assert row is not None, f"app {project}/{app} is not installed"
    return pid, row[0], f"{project}/{app}/{row[1]}"


def seed_queued(
    engine: Engine,
    project: str,
    app: str,
    count: int,
    created_by: str,
    settings: dict[str, Any] | None = None,
    status: str = "QUEUED",
) -> list[str]:
    """Insert ``count`` tasks of the app (QUEUED, or e.g. COMPLETED as history); returns their ids."""
    pid, rev_id, app_id = app_revision(engine, project, app)
    now = utcnow()
    ids = [new_uuid() for _ in range(count)]
    rows = [
        {
            "id": tid,
            "project_id": pid,
            "name": f"seeded {i}",
            "app_id": app_id,
            "app_revision_id": rev_id,
            "status": status,
            "created_by": created_by,
            "executed_by": created_by,
            "created_time": now,
            "queued_time": now,
            "start_time": now if status != "QUEUED" else None,
            "end_time": now if status in ("COMPLETED", "FAILED", "ABORTED") else None,
            "execution_settings": dict(settings or {}),
            "inputs": {},
            "outputs": {},
            "errors": [],
            "warnings": [],
            "execution_status": {},
            "jobs": [],
            "cores": 1,
            "memory": 100,
        }
        for i, tid in enumerate(ids)
    ]
    with engine.begin() as conn:
        # With RETURNING, SQLAlchemy sends many rows per statement ("insertmanyvalues"); without it
        # psycopg sends one statement per row, and the per-statement counting triggers fire per row.
        for start in range(0, len(rows), 5000):
            conn.execute(insert(Task).returning(Task.id), rows[start : start + 5000]).all()
    return ids


def status_counts(engine: Engine, ids: list[str] | None = None) -> dict[str, int]:
    query = select(Task.status, func.count()).group_by(Task.status)
    if ids is not None:
        query = query.where(Task.id.in_(ids))
    with engine.connect() as conn:
        return {status: n for status, n in conn.execute(query).all()}


def wait_for(engine: Engine, ids: list[str], states: set[str], timeout: float) -> dict[str, int]:
    """Wait until every task is in one of ``states``; returns the final counts."""
    deadline = time.monotonic() + timeout
    while True:
        counts = status_counts(engine, ids)
        if sum(n for s, n in counts.items() if s in states) == len(ids):
            return counts
        if time.monotonic() > deadline:
            raise AssertionError(f"tasks not all {sorted(states)} after {timeout} s: {counts}")
        time.sleep(0.2)


def claims(engine: Engine, ids: list[str]) -> dict[str, str | None]:
    with engine.connect() as conn:
        return dict(conn.execute(select(Task.id, Task.claimed_by).where(Task.id.in_(ids))).all())  # type: ignore[arg-type]


def unfinished(engine: Engine, ids: list[str]) -> set[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(Task.id).where(Task.id.in_(ids), Task.status.in_(["QUEUED", "RUNNING", "ABORTING"]))
        ).scalars()
        return set(rows)


def output_file_counts(engine: Engine, ids: list[str]) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(File.origin_task, func.count())
            .where(File.origin_task.in_(ids), File.type == "FILE")
            .group_by(File.origin_task)
        ).all()
    return {tid: n for tid, n in rows if tid is not None}


def worker_env(server: EmbeddedServer, **extra: str) -> dict[str, str]:
    env = server.env()
    env["BRIDGEHEAD_DATABASE_URL"] = server.resolved_database_url
    env.update(extra)
    return env


def start_worker(server: EmbeddedServer, args: list[str], log: Path, **env: str) -> subprocess.Popen[bytes]:
    """``bridgehead worker ARGS`` against the server's database and data dir."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bridgehead", "worker", *args],
            env=worker_env(server, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def run_worker(server: EmbeddedServer, args: list[str]) -> subprocess.CompletedProcess[str]:
    """``bridgehead worker ARGS`` to its end (one that refuses to start), output captured."""
    return subprocess.run(
        [sys.executable, "-m", "bridgehead", "worker", *args],
        env=worker_env(server),
        capture_output=True,
        text=True,
        timeout=60,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def start_api_only(tmp: Path, tls_dir: Path, **env: str) -> EmbeddedServer:
    """An API server with no dispatcher on PostgreSQL: only the workers under test do background work."""
    from tests.conftest import start_server

    return start_server(
        tmp, tls_dir, engine="fake", db_kind="postgres", extra_env={"BRIDGEHEAD_DISPATCHER": "false", **env}
    )
