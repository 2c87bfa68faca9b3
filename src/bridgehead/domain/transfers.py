"""Imports (volume object -> project file) and exports (project file -> volume object).

Submitting only validates and records a PENDING row; ``workers/transfers.py`` does the copying
outside any transaction and records the outcome with ``complete`` / ``fail``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from bridgehead.db.base import utcnow
from bridgehead.db.models import File, Project, User
from bridgehead.db.models.volumes import (
    COMPLETED,
    EXPORT,
    FAILED,
    IMPORT,
    PENDING,
    RUNNING,
    STATES,
    Transfer,
)
from bridgehead.domain import files, projects, volumes
from bridgehead.domain.errors import MORE_INFO, BadRequest, NotFound

MAX_ATTEMPTS = 3


def error_object(status: int, code: int, message: str) -> dict[str, Any]:
    return {"status": status, "code": code, "message": message, "more_info": MORE_INFO}


def _object(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        raise BadRequest(f"Missing required field '{field}'.", code=9011, field=field)
    if not isinstance(value, dict):
        raise BadRequest(f"Field '{field}' must be an object.", code=9011, field=field)
    return value


def _flag(value: Any, field: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadRequest(f"Field '{field}' must be true or false.", code=9011, field=field)
    return value


def check_location(value: Any, field: str, folder_ok: bool) -> str:
    if not isinstance(value, str) or not value.strip("/"):
        raise BadRequest(f"Missing required field '{field}'.", code=9011, field=field)
    location = value.lstrip("/")
    if ".." in location.split("/") or "\x00" in location:
        raise BadRequest(f"Invalid {field} {value!r}: '..' is not allowed.", code=9011, field=field)
    if location.endswith("/") and not folder_ok:
        raise BadRequest(f"Invalid {field} {value!r}: it must name an object, not a folder.", field=field)
    return location


def _properties(value: Any, field: str = "properties") -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"Field '{field}' must be an object.", code=9011, field=field)
    return dict(value)


def submit_import(session: Session, user: User, item: Any) -> Transfer:
    """Validate one import request body (as sent to ``POST /storage/imports``) and queue it."""
    body = _object(item, "body")
    source = _object(body.get("source"), "source")
    dest = _object(body.get("destination"), "destination")
    vol = volumes.access(session, user, source.get("volume"), "read", field="source.volume").volume
    if not vol.active:
        raise BadRequest(f"Volume {vol.sbg_id} is not active.", code=9103, field="source.volume")
    location = check_location(source.get("location"), "source.location", folder_ok=True)
    overwrite = _flag(body.get("overwrite"), "overwrite", False)
    autorename = _flag(body.get("autorename"), "autorename", False)
    if overwrite and autorename:
        raise BadRequest("Use either overwrite or autorename, not both.", field="autorename")
    is_folder = location.endswith("/")
    preserve = _flag(body.get("preserve_folder_structure"), "preserve_folder_structure", is_folder)
    if dest.get("project") and dest.get("parent"):
        raise BadRequest(
            "Give either destination.project or destination.parent, not both.", field="destination.parent"
        )
    if dest.get("parent"):
        parent, acc = files.folder(session, user, dest["parent"], "write", field="destination.parent")
        project = acc.project
    elif dest.get("project"):
        project = projects.access(
            session, user, dest["project"], "write", field="destination.project"
        ).project
        parent = files.root_folder(session, project)
    else:
        raise BadRequest("Missing required field 'destination.project'.", field="destination.project")
    name = dest.get("name")
    if name is None or name == "":
        name = location.rstrip("/").rsplit("/", 1)[-1]
        if not name:
            raise BadRequest("Cannot infer the file name; give destination.name.", code=9018, field="name")
    files.check_name(name, field="destination.name")
    spec = {
        "destination": {"project": project.sbg_id, "parent": parent.id, "name": name},
        "parent_id": parent.id,
        "overwrite": overwrite,
        "autorename": autorename,
        "preserve_folder_structure": preserve,
        "properties": _properties(body.get("properties")),
    }
    return _queue(session, user, IMPORT, vol.id, vol.sbg_id, location, project.id, spec)


def request_export(
    session: Session,
    user: User,
    file: File | str,
    volume_id: str,
    location: str,
    overwrite: bool = False,
    copy_only: bool = True,
    properties: dict[str, Any] | None = None,
) -> Transfer:
    """Queue a copy of a project file to ``location`` on volume ``owner/name``.

    Raises the same SBG errors as ``POST /storage/exports``: unknown file/volume, no permission,
    an RO volume (9026) or a bad location. Used by the API and by task output export.
    """
    file_id = file if isinstance(file, str) else file.id
    found, acc = files.get(session, user, file_id, "read", field="source.file")
    if found.is_folder:
        raise BadRequest(
            f"{file_id} is a folder; only files can be exported.", code=9006, field="source.file"
        )
    vol = volumes.access(session, user, volume_id, "write", field="destination.volume").volume
    if vol.access_mode != "RW":
        raise BadRequest(
            f"Volume {vol.sbg_id} is read-only (access_mode RO); exports need an RW volume.",
            code=9026,
            field="destination.volume",
        )
    if not vol.active:
        raise BadRequest(f"Volume {vol.sbg_id} is not active.", code=9103, field="destination.volume")
    loc = check_location(location, "destination.location", folder_ok=False)
    spec = {
        "file": found.id,
        "overwrite": bool(overwrite),
        "copy_only": bool(copy_only),
        "properties": dict(properties or {}),
    }
    return _queue(session, user, EXPORT, vol.id, vol.sbg_id, loc, acc.project.id, spec)


def submit_export(session: Session, user: User, item: Any, copy_only: bool) -> Transfer:
    """Validate one export request body (as sent to ``POST /storage/exports``) and queue it."""
    body = _object(item, "body")
    source = _object(body.get("source"), "source")
    dest = _object(body.get("destination"), "destination")
    file_id = source.get("file")
    if not isinstance(file_id, str) or not file_id:
        raise BadRequest("Missing required field 'source.file'.", code=9011, field="source.file")
    return request_export(
        session,
        user,
        file_id,
        dest.get("volume"),  # type: ignore[arg-type]  # validated by volumes.access
        dest.get("location"),  # type: ignore[arg-type]  # validated by check_location
        overwrite=_flag(body.get("overwrite"), "overwrite", False),
        copy_only=copy_only,
        properties=_properties(body.get("properties")),
    )


def _queue(
    session: Session,
    user: User,
    kind: str,
    volume_id: int,
    volume_sbg_id: str,
    location: str,
    project_id: int,
    spec: dict[str, Any],
) -> Transfer:
    row = Transfer(
        id=secrets.token_hex(16),
        kind=kind,
        user_id=user.id,
        volume_id=volume_id,
        volume=volume_sbg_id,
        location=location,
        project_id=project_id,
        state=PENDING,
        spec=spec,
        attempts=0,
        created_on=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def get(session: Session, user: User, kind: str, transfer_id: str) -> Transfer:
    """One import/export of the caller (admins see all): 404 otherwise."""
    row = session.get(Transfer, transfer_id) if isinstance(transfer_id, str) else None
    if row is None or row.kind != kind or (row.user_id != user.id and not user.is_admin):
        noun = "Import" if kind == IMPORT else "Export"
        raise NotFound(f"{noun} {transfer_id} does not exist.", code=9008, field="id")
    return row


def query(
    session: Session,
    user: User,
    kind: str,
    *,
    volume: str | None,
    project: str | None,
    state: str | None,
    offset: int,
    limit: int,
) -> tuple[list[Transfer], int]:
    q = select(Transfer).where(Transfer.kind == kind)
    if not user.is_admin:
        q = q.where(Transfer.user_id == user.id)
    if volume:
        volumes.parse_volume_id(volume)
        q = q.where(Transfer.volume == volume)
    if project:
        q = q.where(Transfer.project_id == projects.access(session, user, project).project.id)
    if state:
        if state.upper() not in STATES:
            raise BadRequest(f"Invalid state {state!r}; one of {', '.join(STATES)}.", field="state")
        q = q.where(Transfer.state == state.upper())
    total = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = session.scalars(q.order_by(Transfer.created_on, Transfer.id).offset(offset).limit(limit))
    return list(rows), total


def result_file(session: Session, row: Transfer) -> tuple[File, Project] | None:
    if row.result_file is None:
        return None
    found = session.get(File, row.result_file)
    if found is None:
        return None
    project = session.get(Project, found.project_id)
    return (found, project) if project is not None else None


# --- used by the worker ----------------------------------------------------------------------


def claim(session: Session, owner: str) -> Transfer | None:
    """Take the oldest PENDING row for ``owner`` (rows locked by another server are skipped on PostgreSQL)."""
    row = session.scalar(
        select(Transfer)
        .where(Transfer.state == PENDING)
        .order_by(Transfer.created_on, Transfer.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if row is None:
        return None
    row.state = RUNNING
    row.claimed_by = owner
    row.started_on = utcnow()
    row.attempts = (row.attempts or 0) + 1
    session.flush()
    return row


def complete(session: Session, row: Transfer, result: File | None) -> None:
    row.state = COMPLETED
    row.result_file = result.id if result is not None else None
    row.error = None
    row.finished_on = utcnow()
    session.flush()


def fail(session: Session, row: Transfer, status: int, code: int, message: str) -> None:
    row.state = FAILED
    row.error = error_object(status, code, message)
    row.finished_on = utcnow()
    session.flush()


def recover(session: Session, owners: Sequence[str]) -> tuple[int, int]:
    """RUNNING rows of ``owners`` (a restarted process's own id, or dead workers' ids) and unowned ones go
    back to PENDING (both kinds are safe to redo), or FAILED once they have been tried ``MAX_ATTEMPTS``
    times. Rows other live processes run are left alone. Returns (retried, failed)."""
    retried = failed = 0
    owned = or_(Transfer.claimed_by.in_(list(owners)), Transfer.claimed_by.is_(None))
    for row in session.scalars(select(Transfer).where(Transfer.state == RUNNING, owned)):
        if (row.attempts or 0) >= MAX_ATTEMPTS:
            fail(session, row, 503, 9100, f"Interrupted by server restarts {row.attempts} times; gave up.")
            failed += 1
        else:
            row.state = PENDING
            row.claimed_by = None
            row.started_on = None
            retried += 1
    session.flush()
    return retried, failed
