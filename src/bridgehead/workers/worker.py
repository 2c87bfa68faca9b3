"""``bridgehead worker``: the dispatcher and volume-transfer loops, for clusters where API servers (which
then run no background work) and workers are apart.

Several API processes (``bridgehead serve --no-dispatcher``) and one or more workers share one
PostgreSQL. Safety rests on two things:

- claiming: the dispatcher takes a QUEUED task with one conditional UPDATE (``claimed_by IS NULL``),
  so under PostgreSQL's row locks exactly one worker's UPDATE matches; each worker has its own id;
- liveness: every worker keeps its row in ``workers`` fresh. A worker whose heartbeat is older than
  ``dead_after`` is presumed dead; the first live worker to delete that row (a conditional DELETE,
  so only one wins) re-claims the dead worker's tasks and lets its engine ``recover`` them. A worker
  that finds its own row gone was declared dead while it still ran (a long stall): its tasks now
  belong to someone else, so it stops at once instead of running them twice. The dead worker's
  interrupted imports and exports go back to PENDING in the same transaction.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import psutil
from sqlalchemy import delete, select, update

from bridgehead.config import Settings
from bridgehead.db.base import utcnow
from bridgehead.db.models.cluster import Worker as WorkerRow
from bridgehead.db.models.tasks import ABORTING, QUEUED, RUNNING, Task
from bridgehead.db.session import Database
from bridgehead.domain import transfers
from bridgehead.engines.base import Engine
from bridgehead.workers.transfers import TransferWorker

log = logging.getLogger(__name__)


class WorkerConflict(RuntimeError):
    """Another live process already uses this worker id."""


def default_worker_id(engine: str) -> str:
    return f"{socket.gethostname()}-{engine}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def engine_problems(settings: Settings, probe: bool = True, probe_timeout: float = 60.0) -> list[str]:
    """What stops the configured engine from working here, each problem saying what to fix."""
    if settings.engine == "slurm":
        from bridgehead.engines import slurm

        return slurm.preflight(settings, probe=probe, probe_timeout=probe_timeout)
    if settings.engine == "toil":
        from bridgehead.engines import toil

        return toil.preflight(settings, probe=probe, probe_timeout=probe_timeout)
    return []


class ClusterWorker:
    """Registers, heartbeats, takes over dead workers' tasks and runs the dispatcher loop."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        engine: Engine | None = None,
        worker_id: str | None = None,
        heartbeat: float = 2.0,
        dead_after: float = 15.0,
        interval: float = 0.2,
    ) -> None:
        from bridgehead.workers.dispatcher import Dispatcher

        self.settings = settings
        self.db = db
        self.heartbeat = heartbeat
        self.dead_after = dead_after
        self.dispatcher = Dispatcher(
            settings,
            db,
            engine=engine,
            worker_id=worker_id or default_worker_id(settings.engine),
            interval=interval,
        )
        self.id: str = self.dispatcher.worker_id
        self.stop_event = threading.Event()
        self.lost = False  # set when another worker declared us dead: stop, our tasks are theirs now

    # -- registration and heartbeat -------------------------------------------------------------------

    def register(self) -> None:
        host, pid = socket.gethostname(), os.getpid()
        with self.db.write() as s:
            row = s.get(WorkerRow, self.id)
            if row is not None and not self._stale(row) and not self._gone(row):
                raise WorkerConflict(
                    f"worker id {self.id!r} is in use by pid {row.pid} on {row.hostname} "
                    f"(heartbeat {(utcnow() - row.heartbeat_at).total_seconds():.0f} s ago): "
                    "stop that worker or pick another --id"
                )
            if row is None:
                row = WorkerRow(id=self.id, hostname=host, pid=pid, engine=self.settings.engine)
                s.add(row)
            row.hostname, row.pid, row.engine = host, pid, self.settings.engine
            row.started_at = row.heartbeat_at = utcnow()
        log.info("worker %s registered (engine %s)", self.id, self.settings.engine)

    def _stale(self, row: WorkerRow) -> bool:
        return utcnow() - row.heartbeat_at > timedelta(seconds=self.dead_after)

    @staticmethod
    def _gone(row: WorkerRow) -> bool:
        """A row left by a process on this host that no longer exists (restart right after a crash)."""
        return (
            row.hostname == socket.gethostname() and row.pid != os.getpid() and not psutil.pid_exists(row.pid)
        )

    def beat(self) -> bool:
        """Refresh our heartbeat; False if our row is gone (we were declared dead)."""
        with self.db.write() as s:
            result: Any = s.execute(
                update(WorkerRow).where(WorkerRow.id == self.id).values(heartbeat_at=utcnow())
            )
            return bool(result.rowcount == 1)

    def _heartbeat_loop(self) -> None:
        while not self.stop_event.wait(self.heartbeat):
            try:
                if not self.beat():
                    log.error("worker %s was declared dead by another worker: stopping", self.id)
                    self.lost = True
                    self.stop_event.set()
            except Exception:  # a database hiccup: try again next beat
                log.exception("heartbeat failed")

    # -- take-over ------------------------------------------------------------------------------------

    def take_over_dead(self) -> list[str]:
        """Claim the tasks of workers whose heartbeat stopped; returns the dead workers' ids."""
        cutoff = utcnow() - timedelta(seconds=self.dead_after)
        with self.db.read() as s:
            dead = list(
                s.scalars(
                    select(WorkerRow.id).where(WorkerRow.heartbeat_at < cutoff, WorkerRow.id != self.id)
                )
            )
        taken: list[str] = []
        for dead_id in dead:
            with self.db.write() as s:
                won: Any = s.execute(
                    delete(WorkerRow).where(WorkerRow.id == dead_id, WorkerRow.heartbeat_at < cutoff)
                )
                if won.rowcount != 1:
                    continue  # another worker got there first, or it came back to life
                moved: Any = s.execute(
                    update(Task)
                    .where(Task.claimed_by == dead_id, Task.status.in_([QUEUED, RUNNING, ABORTING]))
                    .values(claimed_by=self.id)
                    .execution_options(synchronize_session=False)
                )
                transfers.recover(s, [dead_id])  # its interrupted imports/exports are redone
            log.warning("worker %s took over %d task(s) of dead worker %s", self.id, moved.rowcount, dead_id)
            taken.append(dead_id)
        if taken:
            self.dispatcher.recover()
        return taken

    # -- the loop -------------------------------------------------------------------------------------

    def run(self) -> None:
        """Until ``stop_event`` is set (or we lose our registration): dispatch, heartbeat, take over."""
        self.register()
        self.dispatcher.recover()
        # Imports and exports run here too: API servers started with --no-dispatcher never run them.
        transfer_worker = TransferWorker(self.db, self.settings, self.id).start()
        beat = threading.Thread(target=self._heartbeat_loop, name="bridgehead-heartbeat", daemon=True)
        beat.start()
        next_check = 0.0
        try:
            while not self.stop_event.is_set():
                try:
                    busy = self.dispatcher.tick()
                    if time.monotonic() >= next_check:
                        next_check = time.monotonic() + self.heartbeat
                        busy = bool(self.take_over_dead()) or busy
                except Exception:  # one bad pass must not end the worker; it is logged and retried
                    log.exception("worker pass failed")
                    busy = False
                if not busy:
                    self.stop_event.wait(self.dispatcher.interval)
        finally:
            self.stop_event.set()
            transfer_worker.stop()
            beat.join(self.heartbeat + 1)
        log.info("worker %s stopped", self.id)
