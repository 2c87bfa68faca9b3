"""Files and folders: lookup with permission checks, name rules, and placing a new file in a folder."""

from __future__ import annotations

import re
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridgehead.db.base import utcnow
from bridgehead.db.models import File, Project, User
from bridgehead.db.models.files import FILE, FOLDER
from bridgehead.domain import projects
from bridgehead.domain.errors import BadRequest, Conflict, NotFound

MAX_NAME = 255
FILE_ID_RE = re.compile(r"^[0-9a-f]{24}$")
Conflicts = Literal["error", "overwrite", "autorename"]


def check_name(name: Any, field: str = "name") -> str:
    if not isinstance(name, str) or not name or name in (".", ".."):
        raise BadRequest("File name must not be empty.", code=5024, field=field)
    if "/" in name or "\x00" in name:
        raise BadRequest(f"File name {name!r} must not contain '/'.", code=5024, field=field)
    if len(name.encode()) > MAX_NAME:
        raise BadRequest(f"File name is longer than {MAX_NAME} bytes.", code=5024, field=field)
    return name


def find(session: Session, file_id: str) -> File | None:
    if not isinstance(file_id, str) or not FILE_ID_RE.match(file_id):
        return None
    return session.get(File, file_id)


def get(
    session: Session, user: User, file_id: str, permission: str = "read", field: str = "id"
) -> tuple[File, projects.Access]:
    """A file the caller may act on: 404 (5002) when missing, 403 when not allowed."""
    found = find(session, file_id)
    if found is None:
        raise NotFound(f"File {file_id} does not exist.", code=5002, field=field)
    project = session.get(Project, found.project_id)
    assert project is not None
    return found, projects.access_to(session, user, project, permission)


def folder(
    session: Session, user: User, folder_id: str, permission: str = "read", field: str = "parent"
) -> tuple[File, projects.Access]:
    found, acc = get(session, user, folder_id, permission, field)
    if found.type != FOLDER:
        raise BadRequest(f"{folder_id} is not a folder.", code=5022, field=field)
    return found, acc


def root_folder(session: Session, project: Project) -> File:
    root = session.get(File, project.root_folder)
    assert root is not None
    return root


def child(session: Session, parent_id: str, name: str) -> File | None:
    return session.scalar(select(File).where(File.parent_id == parent_id, File.name == name))


def free_name(session: Session, parent_id: str, name: str) -> str:
    """The platform's autorename: ``_1_name``, ``_2_name``, ... until the name is free."""
    candidate, n = name, 0
    while child(session, parent_id, candidate) is not None:
        n += 1
        candidate = f"_{n}_{name}"
    return candidate


def place_file(
    session: Session,
    *,
    project: Project,
    parent: File,
    name: str,
    blob_key: str | None,
    size: int,
    conflict: Conflicts = "error",
    origin_task: str | None = None,
    metadata: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    storage: dict[str, Any] | None = None,
) -> File:
    """Create a file row under ``parent``, resolving a name clash as asked.

    ``overwrite`` replaces the content of an existing file (keeping its id); a folder in the
    way is never overwritten.
    """
    name = check_name(name)
    existing = child(session, parent.id, name)
    now = utcnow()
    if existing is not None:
        if conflict == "overwrite" and existing.type == FILE:
            existing.blob_key, existing.size, existing.modified_on = blob_key, size, now
            if origin_task is not None:
                existing.origin_task = origin_task
            if metadata is not None:
                existing.metadata_ = dict(metadata)
            session.flush()
            return existing
        if conflict == "autorename":
            name = free_name(session, parent.id, name)
        else:
            raise Conflict(f"A file named {name!r} already exists in this folder.", code=5003, field="name")
    created = File(
        project_id=project.id,
        parent_id=parent.id,
        name=name,
        type=FILE,
        size=size,
        blob_key=blob_key,
        origin_task=origin_task,
        metadata_=dict(metadata or {}),
        tags=list(tags or []),
        storage=dict(storage or {"type": "PLATFORM"}),
        created_on=now,
        modified_on=now,
    )
    session.add(created)
    session.flush()
    return created


def make_folder(
    session: Session, *, project: Project, parent: File, name: str, exist_ok: bool = False
) -> File:
    name = check_name(name)
    existing = child(session, parent.id, name)
    if existing is not None:
        if exist_ok and existing.type == FOLDER:
            return existing
        raise Conflict(f"A file or folder named {name!r} already exists here.", code=5030, field="name")
    now = utcnow()
    created = File(
        project_id=project.id,
        parent_id=parent.id,
        name=name,
        type=FOLDER,
        created_on=now,
        modified_on=now,
        storage={"type": "PLATFORM"},
    )
    session.add(created)
    session.flush()
    return created


def blob_in_use(session: Session, blob_key: str) -> bool:
    """Copies share blobs; a blob may be deleted only when no file row points at it."""
    return session.scalar(select(File.id).where(File.blob_key == blob_key).limit(1)) is not None
