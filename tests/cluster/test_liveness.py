"""Worker liveness rules in-process, on SQLite and PostgreSQL: heartbeat, take-over, lost registration."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from bridgehead.config import Settings
from bridgehead.db import migrate
from bridgehead.db.base import new_uuid, utcnow
from bridgehead.db.models.cluster import Worker
from bridgehead.db.models.tasks import Task
from bridgehead.db.session import Database
from bridgehead.domain import projects, users
from bridgehead.engines.fake import FakeEngine
from bridgehead.workers.worker import ClusterWorker, WorkerConflict

from ..conftest import DB_KINDS, fresh_database_url


@pytest.fixture(params=DB_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Settings, Database, int]]:
    url = fresh_database_url(request.param) or f"sqlite:///{tmp_path / 'bh.db'}"
    migrate.upgrade(url)
    database = Database(url, pool_size=2)
    with database.write() as s:
        user = users.create_user(s, "owner")
        project_id = projects.create_project(s, user, name="p").id
    try:
        yield Settings(data_dir=tmp_path, database_url=url, engine="fake"), database, project_id
    finally:
        database.dispose()


def worker(settings: Settings, database: Database, worker_id: str) -> ClusterWorker:
    return ClusterWorker(settings, database, engine=FakeEngine(settings), worker_id=worker_id, dead_after=5)


def add_task(database: Database, project_id: int, status: str, claimed_by: str | None) -> str:
    task_id = new_uuid()
    with database.write() as s:
        s.add(
            Task(
                id=task_id,
                project_id=project_id,
                name="t",
                app_id="owner/p/app/0",
                status=status,
                created_by="owner",
                claimed_by=claimed_by,
                engine_handle=None,
            )
        )
    return task_id


def test_stale_worker_is_taken_over_by_exactly_one(db: tuple[Settings, Database, int]) -> None:
    settings, database, project_id = db
    dead, alive_a, alive_b = (worker(settings, database, name) for name in ("dead", "a", "b"))
    for w in (dead, alive_a, alive_b):
        w.register()
    running = add_task(database, project_id, "RUNNING", "dead")
    finished = add_task(database, project_id, "COMPLETED", "dead")
    assert alive_a.take_over_dead() == []  # "dead" is still fresh
    with database.write() as s:
        s.execute(
            update(Worker).where(Worker.id == "dead").values(heartbeat_at=utcnow() - timedelta(seconds=60))
        )
    assert alive_a.take_over_dead() == ["dead"]
    assert alive_b.take_over_dead() == []  # the row is gone: nobody takes it twice
    with database.read() as s:
        owners = dict(s.execute(select(Task.id, Task.claimed_by)).all())
        assert owners == {running: "a", finished: "dead"}  # finished tasks keep their history
        assert s.get(Worker, "dead") is None
    # The declared-dead worker notices on its next heartbeat and must stop.
    assert dead.beat() is False
    assert alive_a.beat() is True


def test_duplicate_live_id_is_refused_but_a_stale_one_is_reused(db: tuple[Settings, Database, int]) -> None:
    settings, database, _ = db
    first = worker(settings, database, "same")
    first.register()
    with database.write() as s:  # pretend another host holds it
        s.execute(update(Worker).where(Worker.id == "same").values(hostname="elsewhere"))
    with pytest.raises(WorkerConflict, match="pick another --id"):
        worker(settings, database, "same").register()
    with database.write() as s:
        s.execute(
            update(Worker).where(Worker.id == "same").values(heartbeat_at=utcnow() - timedelta(seconds=60))
        )
    worker(settings, database, "same").register()  # stale: a restart may take its id back
