"""The dispatcher loop: expands batches, admits QUEUED tasks into the engine, polls, finishes, aborts.

Request handlers only change rows; this loop does the work. Tasks are claimed with one conditional
UPDATE (``status='QUEUED' AND claimed_by IS NULL``), so several dispatchers or ``bridgehead worker``
processes on one database never take the same task. Each step opens its own short transaction.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import load_only

from bridgehead.config import Settings
from bridgehead.db.models import AppRevision
from bridgehead.db.models.tasks import ABORTED, ABORTING, QUEUED, RUNNING, Task
from bridgehead.db.session import Database
from bridgehead.domain import memo
from bridgehead.domain.tasks import execution, pricing, rules, staging
from bridgehead.engines import get_engine
from bridgehead.engines.base import Engine, RunSpec, RunStatus
from bridgehead.storage.blobs import store_for

log = logging.getLogger(__name__)

ADMIT_BATCH = 200
# Finished runs recorded per write transaction: small enough that API writes never wait long.
RECORD_CHUNK = 20
# What recording a submitted run reads (its transition to RUNNING, a failure's price); any other
# column is loaded on first use. The big JSON columns (inputs, outputs, jobs) are not decoded for nothing.
STARTING = (
    Task.status,
    Task.parent_id,
    Task.batch,
    Task.cores,
    Task.memory,
    Task.queued_time,
    Task.start_time,
    Task.end_time,
    Task.execution_status,
    Task.engine_handle,
    Task.abort_requested,
)
# With row locks (PostgreSQL) a bigger group holds nobody up and saves round trips.
RECORD_CHUNK_ROW_LOCKS = 200


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        engine: Engine | None = None,
        worker_id: str | None = None,
        interval: float = 0.2,
    ) -> None:
        self.settings = settings
        self.db = db
        self.engine = engine or get_engine(settings)
        self.worker_id = worker_id or f"{socket.gethostname()}/{self.engine.name}"
        self.interval = interval
        self.blobs = store_for(settings)
        self.prices = pricing.PriceTable(settings.price_cpu_hour, settings.price_gb_month)
        # task id -> (cores, memory MiB, engine handle or None): runs this dispatcher owns.
        self.inflight: dict[str, tuple[int, int, dict[str, Any] | None]] = {}
        self._stop = threading.Event()
        # Set by the API after it queues or aborts work, so the loop does not sleep out its interval.
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        self.recover()
        self._thread = threading.Thread(target=self.run_forever, name="bridgehead-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.tick()
            except Exception:  # a bad row must not kill the loop; it is logged and retried
                log.exception("dispatcher tick failed")
                busy = False
            if not busy:  # an engine whose poll is cheap (local files) may ask to be polled faster
                fast = self.interval
                if self.inflight:
                    fast = getattr(self.engine, "poll_interval", self.interval)
                self._wake.wait(min(self.interval, fast))
                self._wake.clear()

    def wake(self) -> None:
        """Start the next pass now (called after a request queued, aborted or cloned-and-ran a task)."""
        self._wake.set()

    def tick(self) -> bool:
        """One pass over every kind of work; True when something happened (loop again at once).

        Admission comes first: a woken pass reaches ``engine.submit`` of a just-queued task without
        first waiting for the batch and abort queries.
        """
        busy = self.admit()
        busy = self.expand_batches() or busy
        busy = self.handle_aborts() or busy
        busy = self.poll() or busy
        return busy

    # --- recovery ----------------------------------------------------------------------------------

    def recover(self) -> None:
        """Adopt this worker's runs after a restart; claims that never reached the engine are released."""
        with self.db.write() as s:
            s.execute(
                update(Task)
                .where(Task.claimed_by == self.worker_id, Task.status == QUEUED, Task.engine_handle.is_(None))
                .values(claimed_by=None)
            )
            rows = s.execute(
                select(Task.id, Task.cores, Task.memory, Task.engine_handle).where(
                    Task.claimed_by == self.worker_id, Task.status.in_([RUNNING, ABORTING, QUEUED])
                )
            ).all()
        for task_id, cores, memory, handle in rows:
            self.inflight[task_id] = (cores, memory, handle)
        recovered: dict[str, RunStatus] = {}
        for task_id, (_, _, handle) in list(self.inflight.items()):
            if handle is None:
                continue
            try:
                recovered[task_id] = self.engine.recover(handle)
            except Exception as exc:  # the engine cannot tell: fail the task with the reason
                recovered[task_id] = RunStatus("failed", f"Could not recover the run after a restart: {exc}")
        self._record(recovered)

    # --- batches -----------------------------------------------------------------------------------

    def expand_batches(self) -> bool:
        with self.db.read() as s:
            ids = list(
                s.scalars(
                    select(Task.id)
                    .where(
                        Task.status == QUEUED,
                        Task.batch.is_(True),
                        Task.expanded.is_(False),
                        Task.claimed_by.is_(None),
                    )
                    .limit(20)
                )
            )
        for task_id in ids:
            with self.db.write() as s:
                result: Any = s.execute(
                    update(Task)
                    .where(Task.id == task_id, Task.status == QUEUED, Task.claimed_by.is_(None))
                    .values(claimed_by=self.worker_id)
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount != 1:
                    continue
                parent = s.get(Task, task_id)
                assert parent is not None
                s.refresh(parent)
                count = execution.expand(s, parent)
                log.info("batch %s expanded into %d children", task_id, count)
        return bool(ids)

    # --- admission ---------------------------------------------------------------------------------

    def _free(self) -> tuple[int, int]:
        cores, memory = self.engine.capacity()
        # An engine whose scheduler queues work itself (Slurm) may hold more than it can run at once:
        # the next jobs then already wait in its queue when a slot frees, instead of waiting for our
        # next pass to notice and submit. Whether a task can ever fit still uses the real capacity.
        ahead = int(getattr(self.engine, "admission_factor", 1))
        cores, memory = cores * ahead, memory * ahead
        used_c = sum(c for c, _, _ in self.inflight.values())
        used_m = sum(m for _, m, _ in self.inflight.values())
        return cores - used_c, memory - used_m

    def admit(self) -> bool:
        """Claim QUEUED tasks that fit the engine's free capacity, then submit them.

        The claim and the preparation of the runs (memoized reuse, run specs with staged inputs) share
        one write transaction. SQLite: candidates are read first, so an idle tick never takes the write
        lock. PostgreSQL: candidates are read with ``FOR UPDATE SKIP LOCKED`` in that transaction, so
        two workers take disjoint sets side by side instead of one waiting on the other's row locks
        and then finding those rows taken.
        """
        chosen: list[str] = []
        too_big: list[str] = []
        if self.db.is_sqlite:
            with self.db.read() as s:
                rows = s.execute(self._candidates()).all()
            if not rows:
                return False
            chosen, too_big = self._choose(rows)
            if not chosen and not too_big:
                return False
        with self.db.write() as s:
            if not self.db.is_sqlite:
                rows = s.execute(self._candidates().with_for_update(skip_locked=True)).all()
                if not rows:
                    return False
                chosen, too_big = self._choose(rows)
            if too_big:
                self._fail_too_big(s, too_big)
            mine = self._claim(s, chosen) if chosen else []
            ids = [row[0] for row in mine]
            reused = self._reuse(s, ids) if ids else set()
        # Staging links files into run directories: file system work that must not hold the write
        # lock (on SQLite every API write would wait for it).
        specs, failed = self._prepare([i for i in ids if i not in reused])
        for task_id, cores, memory in mine:  # reused ones are done; the others now hold capacity
            if task_id in specs or task_id in failed:
                self.inflight[task_id] = (cores, memory, None)
        if ids:
            self._start(ids, specs, failed)
        return bool(ids or too_big)

    @staticmethod
    def _candidates() -> Any:
        return (
            select(Task.id, Task.cores, Task.memory)
            .where(Task.status == QUEUED, Task.claimed_by.is_(None), Task.batch.is_(False))
            .order_by(Task.queued_time, Task.created_time, Task.id)
            .limit(ADMIT_BATCH)
        )

    def _choose(self, rows: Any) -> tuple[list[str], list[str]]:
        """(ids that fit the free capacity now, ids that can never fit the engine)."""
        cap_cores, cap_mem = self.engine.capacity()
        free_c, free_m = self._free()
        too_big: list[str] = []
        chosen: list[str] = []
        for task_id, cores, memory in rows:
            if cores > cap_cores or memory > cap_mem:
                too_big.append(task_id)
            elif cores <= free_c and memory <= free_m:
                chosen.append(task_id)
                free_c -= cores
                free_m -= memory
        return chosen, too_big

    def _claim(self, s: Any, chosen: list[str]) -> list[Any]:
        """Take the chosen tasks still unclaimed; returns (id, cores, memory) of those we got."""
        return list(
            s.execute(
                update(Task)
                .where(Task.id.in_(chosen), Task.status == QUEUED, Task.claimed_by.is_(None))
                .values(claimed_by=self.worker_id, engine=self.engine.name)
                .returning(Task.id, Task.cores, Task.memory)
                .execution_options(synchronize_session=False)
            ).all()
        )

    def _fail_too_big(self, s: Any, ids: list[str]) -> None:
        cap_cores, cap_mem = self.engine.capacity()
        touched: set[str] = set()
        for task in s.scalars(select(Task).where(Task.id.in_(ids), Task.status == QUEUED)):
            execution.fail(
                task,
                f"The task needs {task.cores} cores and {task.memory} MiB of memory, but the "
                f"engine '{self.engine.name}' has at most {cap_cores} cores and {cap_mem} MiB.",
                self.prices,
            )
            if task.parent_id:
                touched.add(task.parent_id)
        self._rollup(s, touched)

    def _spec(self, s: Any, task: Task) -> RunSpec:
        rev = s.get(AppRevision, task.app_revision_id) if task.app_revision_id else None
        raw = dict(rev.raw) if rev is not None else {}
        summary = dict(rev.summary or {}) if rev is not None else {}
        declared = {str(i.get("id")) for i in summary.get("inputs", [])}
        # Cluster engines need the run directory on a filesystem the compute nodes share.
        workdir = ((self.settings.work_dir or self.settings.tasks_dir) / task.id).resolve()
        order = staging.job_order(s, self.blobs, dict(task.inputs or {}), workdir, declared)
        settings = dict(task.execution_settings or {})
        settings["use_interruptible_instances"] = task.use_interruptible_instances
        return RunSpec(
            task_id=task.id,
            app_id=task.app_id,
            app_raw=raw,
            job_order=order,
            workdir=workdir,
            cores=task.cores,
            memory_mib=task.memory,
            settings=settings,
        )

    def _reuse(self, s: Any, ids: list[str]) -> set[str]:
        """Claimed tasks whose identical earlier job can be reused (use_memoization) complete now."""
        tasks = list(s.scalars(select(Task).where(Task.id.in_(ids))))
        wanted = [t.id for t in tasks if memo.enabled(s, t)]
        if not wanted:
            return set()
        keep = execution.preload(s, tasks, root_folders=False)  # noqa: F841  # see preload
        reused = memo.try_reuse(s, wanted, self.prices)
        self._rollup(s, {p for p in reused.values() if p})
        return set(reused)

    def _prepare(self, ids: list[str]) -> tuple[dict[str, RunSpec], dict[str, str]]:
        """Run specs of claimed tasks (inputs staged), or a failure message when staging failed."""
        specs: dict[str, RunSpec] = {}
        failed: dict[str, str] = {}
        if not ids:
            return specs, failed
        with self.db.read() as s:
            tasks = list(s.scalars(select(Task).where(Task.id.in_(ids))))
            keep = execution.preload(s, tasks, root_folders=False)  # noqa: F841  # see preload
            for task in tasks:
                try:
                    specs[task.id] = self._spec(s, task)
                except staging.StagingError as exc:
                    failed[task.id] = str(exc)
        return specs, failed

    def _start(self, ids: list[str], specs: dict[str, RunSpec], failed: dict[str, str]) -> None:
        """Submit the prepared runs and record their handles (RUNNING), or fail those that could not start."""
        started: dict[str, dict[str, Any]] = {}
        ids = [i for i in ids if i in specs or i in failed]
        for task_id, spec in specs.items():
            try:
                started[task_id] = self.engine.submit(spec)
            except Exception as exc:  # the engine refused: the task fails with its reason
                log.exception("engine submit failed for %s", task_id)
                failed[task_id] = f"The engine could not start the task: {exc}"
        touched: set[str] = set()
        with self.db.write() as s:
            # Row locks: an abort committed meanwhile is seen here, and one arriving now waits for us;
            # without them this read-modify-write could overwrite ABORTING with RUNNING.
            query = select(Task).options(load_only(*STARTING)).where(Task.id.in_(ids)).with_for_update()
            for task in s.scalars(query):
                if task.id in failed:
                    self.inflight.pop(task.id, None)
                    if task.status in (QUEUED, ABORTING):
                        execution.fail(task, failed[task.id], self.prices)
                        touched.add(task.parent_id or "")
                    continue
                handle = started.get(task.id)
                task.engine_handle = handle
                cores, memory, _ = self.inflight.get(task.id, (task.cores, task.memory, None))
                self.inflight[task.id] = (cores, memory, handle)
                if task.status == QUEUED:
                    rules.transition(task, RUNNING)
            self._rollup(s, touched)

    # --- polling and finishing ---------------------------------------------------------------------

    def poll(self) -> bool:
        statuses: dict[str, RunStatus] = {}
        for task_id, (_, _, handle) in list(self.inflight.items()):
            if handle is None:
                continue
            try:
                statuses[task_id] = self.engine.poll(handle)
            except Exception as exc:
                log.exception("engine poll failed for %s", task_id)
                statuses[task_id] = RunStatus("failed", f"The engine lost track of the run: {exc}")
        if not statuses:
            return False
        return self._record(statuses)

    def _record(self, statuses: dict[str, RunStatus]) -> bool:
        """Store progress and finish ended runs, a few per transaction so API writes are not held up.

        Runs finished in the common shape are planned first, outside the write lock
        (``execution.plan_finish``); the write transaction then applies the plan in a few statements
        and finishes the rest one by one. Parents of the children finished in a chunk are rolled up
        in the same transaction, so a reader never sees all children ended while their parent
        still says RUNNING.
        """
        finished = {k: v for k, v in statuses.items() if v.state in ("completed", "failed", "aborted")}
        ids = list(statuses)
        size = RECORD_CHUNK if self.db.is_sqlite else RECORD_CHUNK_ROW_LOCKS
        for start in range(0, len(ids), size):
            chunk = ids[start : start + size]
            ended = [i for i in chunk if i in finished]
            # Content first, with no transaction open (a SQLite read would hold its WAL snapshot
            # through the copying); the plan's and the careful path's stores are then answered
            # from the blob store's memory.
            execution.store_ahead(self.blobs, [finished[i] for i in ended])
            plan = execution.FinishPlan(left=ended)
            if ended:
                try:
                    with self.db.read() as s:
                        plan = execution.plan_finish(
                            s, self.blobs, {i: finished[i] for i in ended}, self.prices
                        )
                except Exception:  # every run then takes the careful path, which fails only the faulty
                    log.exception("planning %d finished runs failed: finishing them one by one", len(ended))
            with self.db.write() as s:
                done = self._apply(s, plan)
                touched = {plan.parents[i] for i in done if i in plan.parents}
                rest = [i for i in chunk if i not in done]
                tasks = (
                    list(s.scalars(select(Task).where(Task.id.in_(rest)).with_for_update())) if rest else []
                )
                keep = execution.preload(s, [t for t in tasks if t.id in finished])  # noqa: F841  # see preload
                for task in tasks:
                    if task.id not in finished:
                        execution.progress(task, statuses[task.id])
                        continue
                    self._finish_one(s, task, finished[task.id])
                    if task.parent_id:
                        touched.add(task.parent_id)
                self._rollup(s, touched)
            for task_id in chunk:
                if task_id in finished:
                    self.inflight.pop(task_id, None)
        return bool(finished)

    def _apply(self, s: Any, plan: execution.FinishPlan) -> set[str]:
        """``execution.apply_finish`` in a savepoint: on any error nothing of it stays, and every task
        of the plan takes the careful one-at-a-time path, which fails only the task at fault."""
        try:
            with s.begin_nested():
                return execution.apply_finish(s, self.blobs, plan)
        except Exception:
            log.exception("finishing %d tasks together failed: finishing them one by one", len(plan.updates))
            return set()

    def _finish_one(self, s: Any, task: Task, status: RunStatus) -> None:
        try:
            with s.begin_nested():
                execution.finish(s, self.blobs, task, status, self.prices)
                memo.remember(s, task)
        except Exception as exc:  # ingestion failed: the task fails, the loop goes on
            log.exception("finishing task %s failed", task.id)
            s.refresh(task)
            if task.status not in (ABORTED, "COMPLETED", "FAILED"):
                execution.fail(task, f"Recording the task's results failed: {exc}", self.prices)

    def _rollup(self, s: Any, parent_ids: set[str]) -> None:
        for pid in parent_ids:
            if not pid:
                continue
            parent = s.get(Task, pid)
            if parent is not None:
                rules.rollup(s, parent)

    # --- aborts ------------------------------------------------------------------------------------

    def handle_aborts(self) -> bool:
        with self.db.read() as s:
            rows = s.execute(
                select(Task.id, Task.engine_handle, Task.claimed_by)
                .where(Task.status == ABORTING, Task.batch.is_(False))
                .limit(500)
            ).all()
        mine = [(tid, h) for tid, h, owner in rows if owner in (None, self.worker_id)]
        parents = self._abort_parents()
        if not mine:
            return parents
        for _, handle in mine:
            if handle is not None:
                try:
                    self.engine.cancel(handle)
                except Exception:
                    log.exception("engine cancel failed")
        touched: set[str] = set()
        with self.db.write() as s:
            for task in s.scalars(
                select(Task).where(Task.id.in_([tid for tid, _ in mine]), Task.status == ABORTING)
            ):
                rules.transition(task, ABORTED, prices=self.prices)
                self.inflight.pop(task.id, None)
                if task.parent_id:
                    touched.add(task.parent_id)
            self._rollup(s, touched)
        return True

    def _abort_parents(self) -> bool:
        """Batch parents in ABORTING: abort children created meanwhile, and finish once all have ended."""
        # Look first with a read transaction: an idle tick must not take SQLite's write lock (it would
        # queue every API write behind the dispatcher five times a second).
        with self.db.read() as s:
            if (
                s.scalar(select(Task.id).where(Task.status == ABORTING, Task.batch.is_(True)).limit(1))
                is None
            ):
                return False
        with self.db.write() as s:
            parents = list(
                s.scalars(select(Task).where(Task.status == ABORTING, Task.batch.is_(True)).limit(50))
            )
            for parent in parents:
                rules.abort_children(s, parent.id)
                rules.rollup(s, parent)
            return any(p.status != ABORTING for p in parents)
