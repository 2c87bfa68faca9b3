"""Execution bookkeeping used by the dispatcher: expanding batches, starting and finishing runs.

These functions take a session and never commit; the dispatcher owns the transactions. They are
kept here (not in the worker) so a separate ``bridgehead worker`` reuses exactly the same rules.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import orjson
from sqlalchemy import JSON, Table, insert, select
from sqlalchemy import column as sa_column
from sqlalchemy import table as sa_table
from sqlalchemy.orm import Session
from sqlalchemy.types import UserDefinedType

from bridgehead.db.base import new_file_id, new_uuid, utcnow
from bridgehead.db.models import AppRevision, File, Project, User
from bridgehead.db.models.files import FILE, FOLDER
from bridgehead.db.models.tasks import ABORTED, COMPLETED, FAILED, QUEUED, RUNNING, Task
from bridgehead.domain import files
from bridgehead.domain.errors import SbgError
from bridgehead.domain.tasks import batching, locations, outputs, pricing, rules
from bridgehead.domain.tasks.validation import collect_ids, file_ref, load_files
from bridgehead.engines.base import JobInfo, RunStatus
from bridgehead.storage.blobs import BlobStore

log = logging.getLogger(__name__)


def summary_of(session: Session, task: Task) -> dict[str, Any]:
    rev = session.get(AppRevision, task.app_revision_id) if task.app_revision_id else None
    return dict(rev.summary or {}) if rev is not None else {"inputs": [], "outputs": []}


def preload(session: Session, tasks: list[Task], root_folders: bool = True) -> list[Any]:
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
    ids: set[str] = set()
    for t in tasks:
        collect_ids(t.inputs or {}, ids)
    keep += list(load_files(session, ids).values())
    return keep


class _JsonText(UserDefinedType[str]):
    """Already-serialised JSON: bound as-is with no cast, so the column's JSON type takes the text."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "JSON"


def _bulk_insert(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert many task rows fast: JSON values are serialised once here with orjson.

    Through the ORM each of the ~12 JSON columns of every row goes through ``json.dumps``, which
    dominated the creation of a 10,000-child batch; a Core insert whose JSON columns are bound as
    text skips that (both SQLite and PostgreSQL accept JSON text for a JSON column). ``None`` stays SQL
    NULL so that ``IS NULL`` filters (unclaimed, no engine handle) keep working.
    """
    table = cast(Table, Task.__table__)
    json_columns = {c.name for c in table.columns if isinstance(c.type, JSON)}
    target = sa_table(
        table.name,
        *[sa_column(c.name, _JsonText() if c.name in json_columns else c.type) for c in table.columns],
    )
    encoded = [
        {k: (orjson.dumps(v).decode() if k in json_columns and v is not None else v) for k, v in row.items()}
        for row in rows
    ]
    # On PostgreSQL with RETURNING, SQLAlchemy sends up to 1,000 rows per statement
    # ("insertmanyvalues"); without it psycopg sends one statement per row, and the per-statement
    # triggers keeping project_task_counts would fire per row, updating one counter row 10,000 times.
    many_rows = session.get_bind().dialect.name == "postgresql"
    statement = insert(target).returning(target.c.id) if many_rows else insert(target)
    for start in range(0, len(encoded), 1000):
        result = session.execute(statement, encoded[start : start + 1000])
        if many_rows:
            result.all()


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
    _bulk_insert(session, rows)
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


def _store_logs(
    session: Session, blobs: BlobStore, task: Task, project: Project, folder: File, jobs: list[JobInfo]
) -> dict[str, dict[str, str]]:
    """Each job's log files become project files under ``<output folder>/.logs``."""
    out: dict[str, dict[str, str]] = {}
    logs_folder: File | None = None
    for job in jobs:
        for name, path in job.logs.items():
            p = Path(path)
            if not p.is_file():
                continue
            if logs_folder is None:
                logs_folder = files.make_folder(
                    session, project=project, parent=folder, name=".logs", exist_ok=True
                )
            key, size = blobs.put_file(p)
            placed = files.place_file(
                session,
                project=project,
                parent=logs_folder,
                name=files.check_name(f"{job.name}.{name}"),
                blob_key=key if size else None,
                size=size,
                conflict="autorename",
                origin_task=task.id,
            )
            out.setdefault(job.name, {})[name] = placed.id
    return out


def _export(
    session: Session, task: Task, placed: list[tuple[str, File]], targets: dict[str, locations.Target]
) -> None:
    from bridgehead.domain import transfers  # the volumes area; imported here to keep the API light

    wanted = [(oid, f) for oid, f in placed if targets.get(oid) and targets[oid].volume]
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
        assert target.volume is not None
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
    logs = _store_logs(session, blobs, task, project, folder, status.jobs)
    task.jobs = jobs_json(status.jobs, logs)
    if status.state != "completed":
        rules.transition(task, FAILED, message=status.message or "Failed", prices=prices)
        return
    _take_outputs(session, blobs, task, project, status, summary, targets, folder, prices)


def _take_outputs(
    session: Session,
    blobs: BlobStore,
    task: Task,
    project: Project,
    status: RunStatus,
    summary: dict[str, Any],
    targets: dict[str, locations.Target],
    folder: File,
    prices: pricing.PriceTable,
) -> None:
    """A completed run's outputs become project files (and volume exports); COMPLETED, or FAILED
    naming the required outputs that were not produced."""
    got = outputs.ingest(session, blobs, task, project, status.outputs or {}, summary, targets, folder)
    task.outputs = got.outputs
    if got.missing:
        message = "Required output(s) not produced: " + ", ".join(got.missing) + "."
        rules.transition(task, FAILED, message=message, prices=prices, output_bytes=got.total_bytes)
        return
    _export(session, task, got.placed, targets)
    rules.transition(task, COMPLETED, prices=prices, output_bytes=got.total_bytes)


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


def finish_many(
    session: Session, blobs: BlobStore, items: list[tuple[Task, RunStatus]], prices: pricing.PriceTable
) -> list[Task]:
    """``finish`` for many runs at once, creating their folders and log files in one flush.

    Finishing one task at a time costs about ten round trips (a lookup and an insert for the output
    folder, its ``.logs`` folder and each log file); here the name lookups are one query and the
    inserts one statement. It covers the common shape: runs without an ``output_location`` whose
    default folder name is still free. Every other task is returned untouched, for ``finish``.
    The rows written are the ones ``finish`` writes (same names, same autorename of clashing logs).
    """
    left: list[Task] = []
    named: list[tuple[Task, RunStatus, Project, str]] = []
    for task, status in items:
        if status.state == "aborted" or task.abort_requested or not plain_location(task):
            left.append(task)
            continue
        project = session.get(Project, task.project_id)
        assert project is not None
        # The name ``locations.default_folder`` gives (``project_folder`` applies ``safe`` once more).
        name = locations.safe(f"{locations.safe(task.name)}_{task.id[:8]}")
        try:
            named.append((task, status, project, files.check_name(name)))
        except SbgError:
            left.append(task)
    if not named:
        return left
    roots = {p.root_folder for _, _, p, _ in named}
    taken = set(
        session.execute(
            select(File.parent_id, File.name).where(
                File.parent_id.in_(roots), File.name.in_({n for *_, n in named})
            )
        ).tuples()
    )
    now = utcnow()
    placed: list[tuple[Task, RunStatus, Project, str, dict[str, dict[str, str]]]] = []
    new_rows: list[dict[str, Any]] = []
    for task, status, project, name in named:
        if (project.root_folder, name) in taken:  # a folder of that name exists: the careful path
            left.append(task)
            continue
        taken.add((project.root_folder, name))
        made = _row(project, project.root_folder, name, now)
        new_rows.append(made)
        logs: dict[str, dict[str, str]] = {}
        logs_folder: dict[str, Any] | None = None
        used: set[str] = set()
        for job in status.jobs:
            for log_name, path in job.logs.items():
                p = Path(path)
                if not p.is_file():
                    continue
                if logs_folder is None:
                    logs_folder = _row(project, made["id"], ".logs", now)
                    new_rows.append(logs_folder)
                key, size = blobs.put_file(p)
                wanted = files.check_name(f"{job.name}.{log_name}")
                file_name, n = wanted, 0
                while file_name in used:  # the platform's autorename, as files.free_name does it
                    n += 1
                    file_name = f"_{n}_{wanted}"
                used.add(file_name)
                row = _row(project, logs_folder["id"], file_name, now, FILE)
                row.update(size=size, blob_key=key if size else None, origin_task=task.id)
                new_rows.append(row)
                logs.setdefault(job.name, {})[log_name] = row["id"]
        placed.append((task, status, project, made["id"], logs))
    # One multi-row INSERT through Core (every row has the same columns): ORM objects cost more to
    # build than the insert itself, and these rows carry no metadata for the ORM's metadata index.
    session.flush()
    session.execute(insert(cast(Table, File.__table__)), new_rows)
    for task, status, project, folder_id, logs in placed:
        _take_final_counts(task, status)
        task.output_folder = folder_id
        task.jobs = jobs_json(status.jobs, logs)
        if status.state != "completed":
            rules.transition(task, FAILED, message=status.message or "Failed", prices=prices)
            continue
        summary = summary_of(session, task)
        if not status.outputs and not summary.get("outputs"):
            task.outputs = {}  # nothing to ingest, nothing required
            rules.transition(task, COMPLETED, prices=prices)
            continue
        folder = session.get(File, folder_id)
        assert folder is not None
        target = locations.Target(folder)
        targets = {str(o.get("id")): target for o in summary.get("outputs", [])}
        _take_outputs(session, blobs, task, project, status, summary, targets, folder, prices)
    return left


def _row(project: Project, parent_id: str, name: str, now: datetime, kind: str = FOLDER) -> dict[str, Any]:
    """A ``files`` row as ``files.make_folder`` / ``files.place_file`` would write it."""
    return {
        "id": new_file_id(),
        "project_id": project.id,
        "parent_id": parent_id,
        "name": name,
        "type": kind,
        "size": 0,
        "blob_key": None,
        "origin_task": None,
        "metadata": {},
        "tags": [],
        "storage": {"type": "PLATFORM"},
        "created_on": now,
        "modified_on": now,
    }


def fail(task: Task, message: str, prices: pricing.PriceTable) -> None:
    rules.transition(task, FAILED, message=message, prices=prices)
