"""Execution bookkeeping used by the dispatcher: expanding batches, starting and finishing runs.

These functions take a session and never commit; the dispatcher owns the transactions. They are
kept here (not in the worker) so a separate ``bridgehead worker`` reuses exactly the same rules.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from bridgehead.db.base import new_uuid, utcnow
from bridgehead.db.models import AppRevision, File, Project, User
from bridgehead.db.models.tasks import ABORTED, COMPLETED, FAILED, QUEUED, RUNNING, Task
from bridgehead.domain import files, memo
from bridgehead.domain.errors import SbgError
from bridgehead.domain.tasks import batching, inserts, locations, outputs, pricing, rules
from bridgehead.domain.tasks.validation import collect_ids, file_ref, load_files
from bridgehead.engines.base import JobInfo, RunStatus
from bridgehead.storage.blobs import BlobStore

log = logging.getLogger(__name__)


def summary_of(session: Session, task: Task) -> dict[str, Any]:
    rev = session.get(AppRevision, task.app_revision_id) if task.app_revision_id else None
    return dict(rev.summary or {}) if rev is not None else {"inputs": [], "outputs": []}


def preload(
    session: Session, tasks: list[Task], root_folders: bool = True, input_files: bool = True
) -> list[Any]:
    """Load the projects, root folders, app revisions and input files of many tasks in a few queries.

    Starting runs needs no root folder (``root_folders=False`` saves that query); finishing them does.

    The session's identity map holds objects weakly, so the caller keeps the returned list alive for
    the length of its transaction; every later ``session.get`` of these rows is then free.
    """
    keep: list[Any] = []
    project_ids = {t.project_id for t in tasks}
    revision_ids = {t.app_revision_id for t in tasks if t.app_revision_id}
    if project_ids:
        found = list(session.scalars(select(Project).where(Project.id.in_(project_ids))))
        keep += found
        if root_folders:
            keep += list(session.scalars(select(File).where(File.id.in_([p.root_folder for p in found]))))
    if revision_ids:
        keep += list(session.scalars(select(AppRevision).where(AppRevision.id.in_(revision_ids))))
    if input_files:
        ids: set[str] = set()
        for t in tasks:
            collect_ids(t.inputs or {}, ids)
        keep += list(load_files(session, ids).values())
    return keep


def expand(session: Session, parent: Task) -> int:
    """Create the children of a queued batch parent (one bulk insert) and start the parent."""
    summary = summary_of(session, parent)
    inputs = dict(parent.inputs or {})
    key = parent.batch_input or ""
    value = inputs.get(key)
    items = value if isinstance(value, list) else ([] if value is None else [value])
    port: dict[str, Any] = next((i for i in summary.get("inputs", []) if i.get("id") == key), {})
    port_type = port.get("type")
    port_is_array = (isinstance(port_type, dict) and port_type.get("type") == "array") or (
        isinstance(port_type, list)
        and any(isinstance(t, dict) and t.get("type") == "array" for t in port_type)
    )
    metadata: dict[str, dict[str, Any]] = {}
    if (parent.batch_by or {}).get("type") == batching.CRITERIA:
        ids = {ref for ref in (file_ref(i)[1] for i in items) if ref}
        metadata = {fid: dict(f.metadata_ or {}) for fid, f in load_files(session, ids).items()}
    grouped = batching.groups(items, parent.batch_by or {"type": batching.ITEM}, metadata)
    now = utcnow()
    if not grouped:
        rules.transition(
            parent, FAILED, message=f"Batch input '{key}' is empty: there is nothing to run.", now=now
        )
        return 0
    rows = []
    for index, (members, group) in enumerate(grouped):
        child_inputs = dict(inputs)
        child_inputs[key] = members if port_is_array else members[0]
        rows.append(
            {
                "id": new_uuid(),
                "project_id": parent.project_id,
                "name": f"{parent.name} - {group['value']}"[:255],
                "description": parent.description,
                "app_id": parent.app_id,
                "app_revision_id": parent.app_revision_id,
                "status": QUEUED,
                "created_by": parent.created_by,
                "executed_by": parent.executed_by,
                "created_time": now,
                "queued_time": now,
                "start_time": None,
                "end_time": None,
                "batch": False,
                "batch_input": None,
                "batch_by": None,
                "batch_group": group,
                "batch_disabled": False,
                "parent_id": parent.id,
                "expanded": False,
                "use_interruptible_instances": parent.use_interruptible_instances,
                "execution_settings": dict(parent.execution_settings or {}),
                "inputs": child_inputs,
                "outputs": dict(parent.outputs or {}),
                "output_location": parent.output_location,
                "errors": [],
                "warnings": [],
                "execution_status": {"message": "In queue"},
                "price": None,
                "origin_id": None,
                "engine": None,
                "engine_handle": None,
                "claimed_by": None,
                "abort_requested": False,
                "cores": parent.cores,
                "memory": parent.memory,
                "output_folder": None,
                "jobs": [],
                "batch_index": index,
            }
        )
    inserts.insert_tasks(session, inserts.encode_tasks(rows))
    parent.expanded = True
    parent.claimed_by = None
    rules.transition(parent, RUNNING, now=now)
    rules.rollup(session, parent, now)
    return len(rows)


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def jobs_json(jobs: list[JobInfo], logs: dict[str, dict[str, str]] | None = None) -> list[dict[str, Any]]:
    return [
        {
            "name": j.name,
            "status": "FAILED" if j.status == "ABORTED" else j.status,
            "start_time": _iso(j.start_time),
            "end_time": _iso(j.end_time),
            "command_line": j.command_line,
            "logs": (logs or {}).get(j.name, {}),
        }
        for j in jobs
    ]


def progress(task: Task, status: RunStatus) -> None:
    """Record steps and jobs of a running task (only when something changed, to spare writes)."""
    current = task.execution_status or {}
    if (
        current.get("steps_completed") == status.steps_completed
        and current.get("steps_total") == status.steps_total
        and len(task.jobs or []) == len(status.jobs)
    ):
        return
    es = rules.base_status(task)
    es.update(
        message=status.message or "Running",
        steps_completed=status.steps_completed,
        steps_total=max(status.steps_total, 1),
    )
    task.execution_status = es
    task.jobs = jobs_json(status.jobs)


def store_ahead(blobs: BlobStore, statuses: list[RunStatus]) -> None:
    """Put finished runs' log and output files into the blob store ahead of recording them.

    Reading, hashing and copying files is the slow part of finishing a run; done here, outside the
    write transaction, the same ``put_file`` calls inside it are answered from the store's memory
    (see ``LocalBlobStore.put_file``). Anything that fails here is simply done again there, where
    its failure is handled.
    """
    for status in statuses:
        for job in status.jobs:
            for path in job.logs.values():
                _store_quietly(blobs, Path(path))
        _store_values(blobs, status.outputs or {})


def _store_values(blobs: BlobStore, value: Any) -> None:
    if isinstance(value, list):
        for item in value:
            _store_values(blobs, item)
    elif isinstance(value, dict):
        cls = str(value.get("class", "")).lower()
        if cls == "file":
            src = outputs.local_path(value)
            if src is not None:
                _store_quietly(blobs, src.resolve())
                _store_values(blobs, value.get("secondaryFiles") or [])
        elif cls == "directory":
            src = outputs.local_path(value)
            if src is not None and src.is_dir():
                for entry in src.rglob("*"):
                    _store_quietly(blobs, entry.resolve())
        else:  # a record
            for item in value.values():
                _store_values(blobs, item)


def _store_quietly(blobs: BlobStore, path: Path) -> None:
    try:
        if path.is_file():
            blobs.put_file(path)
    except OSError:
        pass


def _place_logs(
    placer: outputs.Placer, blobs: BlobStore, folder_id: str, jobs: list[JobInfo]
) -> dict[str, dict[str, str]]:
    """Each job's log files become project files under ``<output folder>/.logs``."""
    out: dict[str, dict[str, str]] = {}
    logs_folder: str | None = None
    for job in jobs:
        for name, path in job.logs.items():
            p = Path(path)
            if not p.is_file():
                continue
            if logs_folder is None:
                logs_folder, _ = placer.folder(folder_id, ".logs", exist_ok=True)
            key, size = blobs.put_file(p)
            file_id, _ = placer.file(
                logs_folder, files.check_name(f"{job.name}.{name}"), key if size else None, size
            )
            out.setdefault(job.name, {})[name] = file_id
    return out


def _export(
    session: Session, task: Task, placed: list[tuple[str, str]], targets: dict[str, locations.Target]
) -> None:
    from bridgehead.domain import transfers  # the volumes area; imported here to keep the API light

    wanted = [
        (oid, session.get(File, fid)) for oid, fid in placed if targets.get(oid) and targets[oid].volume
    ]
    if not wanted:
        return
    user = session.scalar(select(User).where(User.username == (task.executed_by or task.created_by)))
    if user is None:
        return
    loc = dict(task.output_location or {})
    records: list[dict[str, Any]] = list(loc.get("exports", []))
    warnings = list(task.warnings or [])
    for oid, f in wanted:
        target = targets[oid]
        assert target.volume is not None and f is not None
        location = f"{target.prefix.strip('/')}/{f.name}".lstrip("/")
        try:
            with session.begin_nested():
                job = transfers.request_export(session, user, f, target.volume, location, overwrite=True)
            records.append(
                {
                    "output_id": oid,
                    "file": f.id,
                    "volume": target.volume,
                    "location": location,
                    "export": job.id,
                }
            )
        except SbgError as exc:
            warnings.append(
                {"type": "warning/task/output_export", "message": exc.message, "input_id": oid, "path": oid}
            )
    loc["exports"] = records
    task.output_location = loc
    task.warnings = warnings


def finish(
    session: Session, blobs: BlobStore, task: Task, status: RunStatus, prices: pricing.PriceTable
) -> None:
    """Record a finished run: outputs as project files, logs, the required-output check, price, state."""
    _take_final_counts(task, status)
    if status.state == "aborted" or task.abort_requested:
        task.jobs = jobs_json(status.jobs)
        rules.transition(task, ABORTED, prices=prices)
        return
    project = session.get(Project, task.project_id)
    assert project is not None
    summary = summary_of(session, task)
    output_ids = [str(o.get("id")) for o in summary.get("outputs", [])]
    folder, targets = locations.targets(session, task, project, output_ids)
    task.output_folder = folder.id
    placer = outputs.SessionPlacer(session, project, task.id)
    task.jobs = jobs_json(status.jobs, _place_logs(placer, blobs, folder.id, status.jobs))
    if status.state != "completed":
        rules.transition(task, FAILED, message=status.message or "Failed", prices=prices)
        return
    folders = {oid: t.folder.id for oid, t in targets.items()}
    got = _take_outputs(placer, blobs, task, status, summary, folders, folder.id, prices)
    if got is not None:
        _export(session, task, got.placed, targets)
        rules.transition(task, COMPLETED, prices=prices, output_bytes=got.total_bytes)


def _take_outputs(
    placer: outputs.Placer,
    blobs: BlobStore,
    task: Task,
    status: RunStatus,
    summary: dict[str, Any],
    folders: dict[str, str],
    folder_id: str,
    prices: pricing.PriceTable,
) -> outputs.Ingested | None:
    """A completed run's outputs become project files; FAILED (and None) naming the required outputs
    that were not produced. The caller exports and completes the task."""
    got = outputs.ingest(placer, blobs, status.outputs or {}, summary, folders, folder_id)
    task.outputs = got.outputs
    if got.missing:
        message = "Required output(s) not produced: " + ", ".join(got.missing) + "."
        rules.transition(task, FAILED, message=message, prices=prices, output_bytes=got.total_bytes)
        return None
    return got


def _take_final_counts(task: Task, status: RunStatus) -> None:
    """The run's start time and step counts as the engine last reported them: a run that ended before
    any progress poll would otherwise keep the queued defaults (one step)."""
    if status.started_at and task.start_time is None:
        task.start_time = datetime.fromtimestamp(status.started_at, UTC)
    if status.steps_total:
        es = rules.base_status(task)
        es.update(steps_total=max(status.steps_total, 1), steps_completed=status.steps_completed)
        task.execution_status = es


def plain_location(task: Task) -> bool:
    """True when every output of the task lands in its default folder (no output_location set)."""
    loc = task.output_location or {}
    nodes = loc.get("nodes_location") or {}
    return not loc.get("main_location") and not any((n or {}).get("output_location") for n in nodes.values())


# The columns finishing a run may change: ``apply_finish`` writes exactly these.
FINISHED_COLUMNS = (
    "status",
    "start_time",
    "end_time",
    "execution_status",
    "outputs",
    "jobs",
    "price",
    "output_folder",
)


@dataclass
class FinishPlan:
    """Rows to write for runs finished in the common shape, prepared without the write lock.

    ``left`` are the runs the plan does not cover (aborts, output locations, memoization, a default
    folder name already taken): they take ``finish``, one by one, inside the write transaction.
    """

    updates: dict[str, dict[str, Any]] = field(default_factory=dict)  # task id -> FINISHED_COLUMNS
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # task id -> new files rows
    folders: dict[str, tuple[str, str]] = field(default_factory=dict)  # task id -> (root id, name)
    expected: dict[str, str] = field(default_factory=dict)  # task id -> status it had when planned
    parents: dict[str, str] = field(default_factory=dict)  # task id -> batch parent id
    left: list[str] = field(default_factory=list)


def plan_finish(
    session: Session, blobs: BlobStore, statuses: dict[str, RunStatus], prices: pricing.PriceTable
) -> FinishPlan:
    """Plan the recording of finished runs in a read transaction (``apply_finish`` writes the plan).

    Finishing a run means new folder, log and output rows and a task row with its final state, price
    and outputs; building them (ORM loads, JSON, names, blob keys) is most of the cost. Done here,
    the write transaction that follows only checks that nothing changed meanwhile and executes a
    few statements: on SQLite every API write waits while a writer holds the database.

    Covered: runs without an ``output_location`` or memoization whose default folder name is free.
    The tasks are loaded here and detached before they are changed, so this session writes nothing.
    """
    plan = FinishPlan()
    tasks = list(session.scalars(select(Task).where(Task.id.in_(list(statuses)))))
    keep = preload(session, tasks, root_folders=False, input_files=False)  # noqa: F841  # see preload
    named: list[tuple[Task, Project, str]] = []
    for task in tasks:
        status = statuses[task.id]
        project = session.get(Project, task.project_id)
        assert project is not None
        fits = (
            status.state in ("completed", "failed")
            and task.status == RUNNING
            and not task.abort_requested
            and plain_location(task)
            and not memo.enabled(session, task)  # remembering a job takes the careful path
        )
        name = locations.safe(f"{locations.safe(task.name)}_{task.id[:8]}")  # as locations.default_folder
        try:
            name = files.check_name(name)
        except SbgError:
            fits = False
        if fits:
            named.append((task, project, name))
        else:
            plan.left.append(task.id)
    loaded = {t.id for t in tasks}
    plan.left += [i for i in statuses if i not in loaded]
    taken = _taken_names(session, {(p.root_folder, n) for _, p, n in named})
    now = utcnow()
    for task, project, name in named:
        if (project.root_folder, name) in taken:
            plan.left.append(task.id)
            continue
        session.expunge(task)  # changed below; must never be flushed by this read session
        placer = outputs.FreshPlacer(project.id, task.id, now)
        try:
            _plan_one(session, blobs, placer, task, statuses[task.id], project.root_folder, name, prices, now)
        except Exception:  # a bad name, an unreadable file: finish() records the failure properly
            log.exception("planning the finish of task %s failed: it takes the careful path", task.id)
            plan.left.append(task.id)
            continue
        taken.add((project.root_folder, name))
        plan.expected[task.id] = RUNNING
        if task.parent_id:
            plan.parents[task.id] = task.parent_id
        plan.folders[task.id] = (project.root_folder, name)
        plan.rows[task.id] = placer.rows
        plan.updates[task.id] = {c: getattr(task, c) for c in FINISHED_COLUMNS}
    return plan


def _plan_one(
    session: Session,
    blobs: BlobStore,
    placer: outputs.FreshPlacer,
    task: Task,
    status: RunStatus,
    root_id: str,
    folder_name: str,
    prices: pricing.PriceTable,
    now: datetime,
) -> None:
    """``finish`` of one run onto a detached task, its new rows collected by ``placer``."""
    folder_id = placer.adopt(root_id, folder_name)
    _take_final_counts(task, status)
    task.output_folder = folder_id
    task.jobs = jobs_json(status.jobs, _place_logs(placer, blobs, folder_id, status.jobs))
    if status.state != "completed":
        rules.transition(task, FAILED, message=status.message or "Failed", prices=prices, now=now)
        return
    got = _take_outputs(placer, blobs, task, status, summary_of(session, task), {}, folder_id, prices)
    if got is not None:
        rules.transition(task, COMPLETED, prices=prices, output_bytes=got.total_bytes, now=now)


def _taken_names(session: Session, wanted: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (parent folder id, name) pairs already name a file or folder."""
    if not wanted:
        return set()
    found = session.execute(
        select(File.parent_id, File.name).where(
            File.parent_id.in_({p for p, _ in wanted}), File.name.in_({n for _, n in wanted})
        )
    ).all()
    return {(str(p), str(n)) for p, n in found} & wanted


def apply_finish(session: Session, blobs: BlobStore, plan: FinishPlan) -> set[str]:
    """Write a ``FinishPlan`` in the caller's write transaction; returns the ids it finished.

    A task whose row changed since it was planned (an abort arrived, another worker took it), whose
    folder name was taken meanwhile, or one of whose stored contents is gone (deleting another file
    of the same content collects it) is not written: the caller finishes it the careful way, which
    stores the content again. The rows are locked first (PostgreSQL), as the careful path does, so
    an abort waits for us.
    """
    if not plan.updates:
        return set()
    current = session.execute(
        select(Task.id, Task.status, Task.abort_requested)
        .where(Task.id.in_(list(plan.updates)))
        .with_for_update()
    ).all()
    ready = {tid for tid, status, abort in current if status == plan.expected[tid] and not abort}
    clashes = _taken_names(session, {plan.folders[t] for t in ready})
    ready = {t for t in ready if plan.folders[t] not in clashes}
    keys = {str(r["blob_key"]) for t in ready for r in plan.rows[t] if r["blob_key"]}
    gone = {k for k in keys if not blobs.exists(k)}
    ready = {t for t in ready if not any(r["blob_key"] in gone for r in plan.rows[t])}
    if not ready:
        return set()
    inserts.insert_many(session, cast(Table, File.__table__), [row for t in ready for row in plan.rows[t]])
    table = cast(Table, Task.__table__)
    session.execute(
        update(table)
        .where(table.c.id == bindparam("task_id"))
        .values({c: bindparam(c) for c in FINISHED_COLUMNS}),
        [dict(plan.updates[t], task_id=t) for t in ready],
    )
    return ready


def fail(task: Task, message: str, prices: pricing.PriceTable) -> None:
    rules.transition(task, FAILED, message=message, prices=prices)
