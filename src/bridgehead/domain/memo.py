"""Memoization: an identical job reuses the outputs of an earlier completed task instead of running.

A job is identical when the app revision's CWL, every input file's content (its blob key) and name,
the other input values and the execution settings are all the same. The key is a SHA-256 over a
canonical JSON of those. Reuse is opt-in per task (``execution_settings.use_memoization``) or per
project (``settings.use_memoization``), as on the platform. On a hit the earlier outputs are placed
again (same blobs, no copy of the bytes) in the new task's project with ``origin.task`` set to the new
task, and its ``execution_status`` says where they came from (``memoized_from``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bridgehead.db.models import AppRevision, File, Project
from bridgehead.db.models.execution import MemoEntry
from bridgehead.db.models.files import FOLDER
from bridgehead.db.models.tasks import COMPLETED, QUEUED, RUNNING, Task
from bridgehead.domain import files
from bridgehead.domain.tasks import locations, pricing, rules

log = logging.getLogger(__name__)


class _Gone(Exception):
    """An input or an earlier output no longer exists: no key, or no reuse."""


def enabled(session: Session, task: Task) -> bool:
    settings = task.execution_settings or {}
    if "use_memoization" in settings:
        return bool(settings["use_memoization"])
    project = session.get(Project, task.project_id)
    return bool(project is not None and (project.settings or {}).get("use_memoization"))


def _file_ref(value: dict[str, Any]) -> str | None:
    ref = value.get("path") or value.get("id")
    return ref if isinstance(ref, str) else None


def _canonical(session: Session, value: Any) -> Any:
    """Input values with every file replaced by what the tool can observe: name and content."""
    if isinstance(value, list):
        return [_canonical(session, v) for v in value]
    if not isinstance(value, dict):
        return value
    cls = str(value.get("class", "")).lower()
    if cls in ("file", "directory", "folder"):
        ref = _file_ref(value)
        row = session.get(File, ref) if ref else None
        if row is None:
            raise _Gone(f"input {ref} no longer exists")
        out = _tree(session, row)
        out["secondaryFiles"] = [_canonical(session, s) for s in value.get("secondaryFiles") or []]
        return out
    return {k: _canonical(session, v) for k, v in sorted(value.items())}


def _tree(session: Session, row: File) -> dict[str, Any]:
    if row.type != FOLDER:
        return {"class": "File", "name": row.name, "blob": row.blob_key or "", "size": row.size}
    children = session.scalars(select(File).where(File.parent_id == row.id).order_by(File.name))
    return {"class": "Directory", "name": row.name, "listing": [_tree(session, c) for c in children]}


def key(session: Session, task: Task) -> str | None:
    """The memo key of the task's job, or None when an input is gone (the run will fail on it anyway)."""
    rev = session.get(AppRevision, task.app_revision_id) if task.app_revision_id else None
    if rev is None:
        return None
    try:
        inputs = _canonical(session, dict(task.inputs or {}))
    except _Gone:
        return None
    settings = {k: v for k, v in (task.execution_settings or {}).items() if k != "use_memoization"}
    doc = {"app": rev.raw, "inputs": inputs, "settings": settings}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


class _Copier:
    """Places an earlier task's output files again, in the reusing task's project and folders."""

    def __init__(self, session: Session, task: Task, project: Project) -> None:
        self.session = session
        self.task = task
        self.project = project

    def value(self, value: Any, folder: File) -> Any:
        if isinstance(value, list):
            return [self.value(v, folder) for v in value]
        if not isinstance(value, dict):
            return value
        cls = str(value.get("class", "")).lower()
        if cls not in ("file", "directory"):
            return {k: self.value(v, folder) for k, v in value.items()}
        ref = _file_ref(value)
        source = self.session.get(File, ref) if ref else None
        if source is None:
            raise _Gone(f"earlier output {ref} no longer exists")
        placed = self.place(source, folder)
        out = dict(value, path=placed.id, name=placed.name, basename=placed.name)
        if cls == "file":
            out["secondaryFiles"] = [self.value(s, folder) for s in value.get("secondaryFiles") or []]
        return out

    def place(self, source: File, folder: File) -> File:
        if source.type == FOLDER:
            made = files.make_folder(
                self.session,
                project=self.project,
                parent=folder,
                name=files.free_name(self.session, folder.id, source.name),
            )
            for child in self.session.scalars(select(File).where(File.parent_id == source.id)):
                self.place(child, made)
            return made
        return files.place_file(
            self.session,
            project=self.project,
            parent=folder,
            name=source.name,
            blob_key=source.blob_key,
            size=source.size or 0,
            conflict="autorename",
            origin_task=self.task.id,
            metadata=dict(source.metadata_ or {}),
        )


def _reuse(session: Session, task: Task, entry: MemoEntry, prices: pricing.PriceTable) -> None:
    project = session.get(Project, task.project_id)
    assert project is not None
    stored = dict(entry.outputs or {})
    folder, targets = locations.targets(session, task, project, list(stored))
    task.output_folder = folder.id
    copier = _Copier(session, task, project)
    task.outputs = {oid: copier.value(v, targets[oid].folder) for oid, v in stored.items()}
    task.jobs = []
    rules.transition(task, RUNNING)
    rules.transition(task, COMPLETED, message=f"Reused outputs of task {entry.task_id}", prices=prices)
    task.execution_status = dict(task.execution_status or {}, memoized_from=entry.task_id)
    entry.hits += 1


def try_reuse(session: Session, ids: list[str], prices: pricing.PriceTable) -> dict[str, str | None]:
    """Complete every claimed QUEUED task among ``ids`` that has a usable memo; {task id: parent id}."""
    done: dict[str, str | None] = {}
    for task in session.scalars(select(Task).where(Task.id.in_(ids), Task.status == QUEUED)):
        if not enabled(session, task):
            continue
        digest = key(session, task)
        entry = session.scalar(select(MemoEntry).where(MemoEntry.key == digest)) if digest else None
        if entry is None or entry.task_id == task.id:
            continue
        try:
            with session.begin_nested():
                _reuse(session, task, entry, prices)
        except _Gone as exc:  # the earlier outputs were deleted: forget them and run for real
            log.info("memo of task %s not reusable (%s)", entry.task_id, exc)
            session.refresh(task)
            session.delete(entry)
            continue
        done[task.id] = task.parent_id
    return done


def remember(session: Session, task: Task) -> None:
    """After a task completed with memoization on: record its outputs for identical jobs to come."""
    if task.status != COMPLETED or not enabled(session, task):
        return
    digest = key(session, task)
    if digest is None or session.scalar(select(MemoEntry.id).where(MemoEntry.key == digest)) is not None:
        return
    try:
        with session.begin_nested():
            session.add(
                MemoEntry(key=digest, task_id=task.id, app_id=task.app_id, outputs=dict(task.outputs))
            )
    except IntegrityError:  # another worker remembered the same job first
        pass
