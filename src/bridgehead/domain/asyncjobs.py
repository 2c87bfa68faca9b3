"""Many files at once: the bulk calls and the async copy/move/delete jobs.

Every item runs in its own savepoint, so one bad item is reported in its slot and rolls back alone
while the others take effect. Async jobs run to completion inside the submitting request and are
stored FINISHED with their per-item results, so ``GET`` always returns the job's true state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bridgehead.db.base import utcnow
from bridgehead.db.models import File, User
from bridgehead.db.models.uploads import AsyncJob
from bridgehead.domain import files
from bridgehead.domain.errors import MORE_INFO, BadRequest, NotFound, SbgError

MAX_ITEMS = 100
JOB_TYPES = ("COPY", "MOVE", "DELETE")

Render = Callable[[File], dict[str, Any]]


def error_entry(err: SbgError) -> dict[str, Any]:
    return {"error": {"status": err.status, "code": err.code, "message": err.message, "more_info": MORE_INFO}}


def check_items(items: Any, field: str) -> list[Any]:
    if not isinstance(items, list):
        raise BadRequest(f"'{field}' must be a list.", field=field)
    if not items:
        raise BadRequest(f"'{field}' must not be empty.", field=field)
    if len(items) > MAX_ITEMS:
        raise BadRequest(f"At most {MAX_ITEMS} items per call; got {len(items)}.", field=field)
    return items


def each(session: Session, items: list[Any], action: Callable[[Any], Any]) -> list[Any | SbgError]:
    """Run ``action`` per item in a savepoint; an item's error rolls back that item only."""
    out: list[Any | SbgError] = []
    for item in items:
        savepoint = session.begin_nested()
        try:
            result = action(item)
            savepoint.commit()
            out.append(result)
        except SbgError as err:
            savepoint.rollback()
            out.append(err)
    return out


def _file_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"'{field}' must be a file id string.", code=5004, field=field)
    return value


# --- bulk ------------------------------------------------------------------------------------------


def bulk_get(session: Session, user: User, ids: list[Any]) -> list[File | SbgError]:
    """Reads only: no savepoint per item (read sessions on PostgreSQL run without a transaction)."""
    out: list[File | SbgError] = []
    for fid in ids:
        try:
            out.append(files.get(session, user, _file_id(fid, "file_ids"))[0])
        except SbgError as err:
            out.append(err)
    return out


def bulk_delete(
    session: Session, user: User, ids: list[Any]
) -> tuple[list[File | SbgError], list[str | None]]:
    keys: list[str | None] = []

    def one(fid: Any) -> File:
        target, _ = files.get(session, user, _file_id(fid, "file_ids"), "write")
        keys.append(files.delete_file(session, target))
        return target

    return each(session, ids, one), keys


def bulk_edit(session: Session, user: User, items: list[Any], merge: bool) -> list[File | SbgError]:
    """``update`` replaces name, tags and metadata (omitted ones are cleared); ``edit`` merges."""

    def one(item: Any) -> File:
        if not isinstance(item, dict):
            raise BadRequest("Each item must be an object with an 'id'.", field="items")
        target, _ = files.get(session, user, _file_id(item.get("id"), "id"), "write")
        given = set(item) & {"name", "metadata", "tags"}
        if not merge:
            given |= {"metadata", "tags"}
        if target.is_folder:
            given -= {"metadata", "tags"}
        return files.edit(
            session,
            target,
            name=item.get("name"),
            metadata=item.get("metadata"),
            tags=item.get("tags"),
            merge=merge,
            fields_set=given,
        )

    return each(session, items, one)


def copy_to_project(session: Session, user: User, project_id: Any, ids: list[Any]) -> list[File | SbgError]:
    """``POST /action/files/copy``: each file into the destination project's root."""
    dest, acc = files.destination(session, user, project_id, None)

    def one(fid: Any) -> File:
        source, _ = files.get(session, user, _file_id(fid, "file_ids"), "copy")
        return files.copy_file(session, source, acc.project, dest)

    return each(session, ids, one)


# --- async jobs ------------------------------------------------------------------------------------


def _copy_or_move(session: Session, user: User, item: Any, move: bool) -> File:
    if not isinstance(item, dict):
        raise BadRequest("Each item must be an object with 'file' and 'parent' or 'project'.", field="items")
    source, _ = files.get(session, user, _file_id(item.get("file"), "file"), "write" if move else "copy")
    dest, acc = files.destination(session, user, item.get("project"), item.get("parent"))
    if move:
        return files.move_file(session, source, acc.project, dest, item.get("name"), conflict="autorename")
    return files.copy_file(session, source, acc.project, dest, item.get("name"))


def run_job(
    session: Session, user: User, job_type: str, items: list[Any], render: Render
) -> tuple[AsyncJob, list[str | None]]:
    """Create a job, run every item, store it FINISHED. Returns the job and blob keys to collect."""
    started = utcnow()
    keys: list[str | None] = []

    def one(item: Any) -> dict[str, Any]:
        if job_type == "DELETE":
            fid = item.get("file") if isinstance(item, dict) else None
            target, _ = files.get(session, user, _file_id(fid, "file"), "write")
            data = render(target)
            keys.append(files.delete_file(session, target))
            return data
        return render(_copy_or_move(session, user, item, move=job_type == "MOVE"))

    outcomes = each(session, items, one)
    result = [error_entry(o) if isinstance(o, SbgError) else {"resource": o} for o in outcomes]
    failed = sum(1 for o in outcomes if isinstance(o, SbgError))
    job = AsyncJob(
        user_id=user.id,
        type=job_type,
        state="FINISHED",
        result=result,
        total_files=len(items),
        completed_files=len(items) - failed,
        failed_files=failed,
        created_on=started,
        started_on=started,
        finished_on=utcnow(),
    )
    session.add(job)
    session.flush()
    return job, keys


def get_job(session: Session, user: User, job_type: str, job_id: str) -> AsyncJob:
    job = session.get(AsyncJob, job_id) if isinstance(job_id, str) and len(job_id) <= 36 else None
    if job is None or job.type != job_type or (job.user_id != user.id and not user.is_admin):
        raise NotFound(f"Async job {job_id} does not exist.", field="id")
    return job


def list_jobs(session: Session, user: User, offset: int, limit: int) -> tuple[list[AsyncJob], int]:
    cond = AsyncJob.user_id == user.id
    total = session.scalar(select(func.count()).select_from(AsyncJob).where(cond)) or 0
    query = select(AsyncJob).where(cond).order_by(AsyncJob.created_on.desc(), AsyncJob.id)
    return list(session.scalars(query.offset(offset).limit(limit))), total
