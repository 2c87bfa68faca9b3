"""Reading tasks: one by id with permission checks, filtered listings, and bulk lookups."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, defer

from bridgehead.db.models import Member, Project, User
from bridgehead.db.models.tasks import STATUSES, ProjectTaskCount, Task
from bridgehead.domain import projects
from bridgehead.domain.errors import BadRequest, Forbidden, NotFound, SbgError

ORDER_COLUMNS: dict[str, Any] = {
    "created_time": Task.created_time,
    "start_time": Task.start_time,
    "end_time": Task.end_time,
    "name": Task.name,
    "created_by": Task.created_by,
    "status": Task.status,
}
LISTABLE_STATUSES = ("QUEUED", "DRAFT", "RUNNING", "COMPLETED", "ABORTED", "ABORTING", "FAILED")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return False
    return True


def get_task(session: Session, user: User, task_id: str, permission: str = "read") -> Task:
    """404 (7002) when missing or not visible; 403 when visible but the permission is missing."""
    task = session.get(Task, task_id) if is_uuid(task_id) else None
    if task is None:
        raise NotFound(f"Task {task_id} does not exist.", code=7002, field="id")
    project = session.get(Project, task.project_id)
    assert project is not None
    try:
        projects.access_to(session, user, project, "read")
    except Forbidden:
        raise NotFound(f"Task {task_id} does not exist.", code=7002, field="id") from None
    if permission != "read":
        projects.access_to(session, user, project, permission)
    return task


def parse_when(value: str, field: str) -> datetime:
    """``yyyy-MM-dd``, ``yyyy-MM-ddTHH:mm:ss`` (UTC) or with an offset (sbg-api §1.5)."""
    text = value.strip().replace(" ", "+") if "T" in value else value.strip()
    if text.endswith("Z"):
        text = text[:-1]
    try:
        if DATE_RE.match(text):
            return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(
            f"Invalid value for '{field}': {value!r} is not a date (yyyy-MM-dd or yyyy-MM-ddTHH:mm:ss).",
            field=field,
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def visible(query: Select[Any], user: User) -> Select[Any]:
    if user.is_admin:
        return query
    readable = select(Member.project_id).where(Member.user_id == user.id, Member.read.is_(True))
    return query.where(Task.project_id.in_(readable))


# JSON columns a task's wire form never shows: a listing does not decode them (``jobs`` grows with
# every step of a workflow). Touching one on a listed task raises instead of loading it row by row.
NOT_LISTED = (defer(Task.jobs, raiseload=True), defer(Task.engine_handle, raiseload=True))


def list_tasks(
    session: Session,
    user: User,
    *,
    filters: dict[str, Any],
    order_by: str | None,
    order: str | None,
    offset: int,
    limit: int,
) -> tuple[list[Task], int]:
    query = visible(select(Task), user)
    if filters.get("project"):
        acc = projects.access(session, user, filters["project"], "read")
        query = query.where(Task.project_id == acc.project.id)
    statuses = filters.get("status") or []
    for s in statuses:
        if s.upper() not in LISTABLE_STATUSES:
            raise BadRequest(
                f"Invalid status filter {s!r}; allowed: {', '.join(LISTABLE_STATUSES)}.",
                code=7006,
                field="status",
            )
    if statuses:
        query = query.where(Task.status.in_([s.upper() for s in statuses]))
    if filters.get("parent"):
        parent = filters["parent"]
        if not is_uuid(parent):
            raise BadRequest(f"Invalid 'parent' {parent!r}: task ids are UUIDs.", code=7005, field="parent")
        query = query.where(Task.parent_id == parent)
    if filters.get("batch") is not None:
        query = query.where(Task.batch.is_(bool(filters["batch"])))
    if filters.get("origin_id"):
        query = query.where(Task.origin_id == filters["origin_id"])
    for key, column in (
        ("created", Task.created_time),
        ("started", Task.start_time),
        ("ended", Task.end_time),
    ):
        if filters.get(f"{key}_from"):
            query = query.where(column >= parse_when(filters[f"{key}_from"], f"{key}_from"))
        if filters.get(f"{key}_to"):
            # Times on the wire have whole seconds; a bound is inclusive of the second it names.
            bound = parse_when(filters[f"{key}_to"], f"{key}_to") + timedelta(seconds=1)
            query = query.where(column < bound)
    if order_by is not None and order_by not in ORDER_COLUMNS:
        raise BadRequest(
            f"Invalid 'order_by' {order_by!r}; allowed: {', '.join(ORDER_COLUMNS)}.", field="order_by"
        )
    if order is not None and order.lower() not in ("asc", "desc"):
        raise BadRequest(f"Invalid 'order' {order!r}; allowed: asc, desc.", field="order")
    # No order_by: newest first. order_by without order: ascending (sbg-api addendum §4).
    descending = (order or ("asc" if order_by else "desc")).lower() == "desc"
    column = ORDER_COLUMNS[order_by or "created_time"]
    if filters.get("project") and not any(
        v not in (None, [], "") for k, v in filters.items() if k != "project"
    ):
        # The project's whole task list: its trigger-kept count (migration 0011), not a COUNT.
        total = session.scalar(
            select(ProjectTaskCount.tasks).where(ProjectTaskCount.project_id == acc.project.id)
        )
    else:
        total = session.scalar(select(func.count()).select_from(query.subquery()))
    ordering: list[Any] = [column.desc(), Task.id.desc()] if descending else [column.asc(), Task.id.asc()]
    query = query.options(*NOT_LISTED).order_by(*ordering).offset(offset).limit(limit)
    return list(session.scalars(query)), int(total or 0)


def bulk(session: Session, user: User, ids: list[Any]) -> list[Task | SbgError]:
    out: list[Task | SbgError] = []
    for task_id in ids:
        try:
            out.append(get_task(session, user, str(task_id)))
        except SbgError as exc:
            out.append(exc)
    return out


def project_ids(session: Session, tasks: list[Task]) -> dict[int, str]:
    """``owner/slug`` of the tasks' projects; those the session already holds (the project a listing is
    filtered by, loaded for its permission check) cost no query."""
    out: dict[int, str] = {}
    missing: set[int] = set()
    for pid in {t.project_id for t in tasks}:
        held = session.identity_map.get(session.identity_key(Project, pid))
        if isinstance(held, Project):
            out[pid] = f"{held.owner}/{held.slug}"
        else:
            missing.add(pid)
    if missing:
        rows = session.execute(
            select(Project.id, Project.owner, Project.slug).where(Project.id.in_(missing))
        ).all()
        out.update({pid: f"{owner}/{slug}" for pid, owner, slug in rows})
    return out


def status_names() -> tuple[str, ...]:
    return STATUSES
