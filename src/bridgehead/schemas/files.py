"""Wire shapes of files and folders: request bodies and the File JSON every area emits."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Row

from bridgehead.db.models import File
from bridgehead.db.models.files import FOLDER
from bridgehead.schemas.common import Wire, fmt_dt


class FolderCreate(Wire):
    name: Any = None
    type: Any = None
    parent: str | None = None
    project: str | None = None


class FileUpdate(Wire):
    """``PATCH /files/{id}``: the client sends only ``name``; ``metadata``/``tags`` are accepted too."""

    name: Any = None
    metadata: Any = None
    tags: Any = None


class CopyBody(Wire):
    project: str | None = None
    parent: str | None = None
    name: Any = None


class MoveBody(Wire):
    parent: str | None = None
    name: Any = None


def _json(value: Any) -> Any:
    """A JSON column read as text (SQLite) or already decoded (PostgreSQL's driver)."""
    return orjson.loads(value) if isinstance(value, str) else value


def _listed_time(value: Any) -> str:
    """``fmt_dt`` of a naive UTC time read raw: SQLite's stored text ``YYYY-MM-DD HH:MM:SS.ffffff`` is
    cut into shape (parsing it and calling ``strftime`` cost more than the rest of an item), and
    PostgreSQL's driver returns a datetime."""
    if isinstance(value, str):
        return f"{value[:10]}T{value[11:19]}Z"
    return fmt_dt(value) or ""


def listed_out(api: str, row: Row[*tuple[Any, ...]], project_sbg_id: str) -> dict[str, Any]:
    """``file_out`` for a row of ``domain.files.LISTED`` (the listing calls): the same JSON, byte for byte."""
    file_id, name, size, parent_id, kind, created, modified, origin_task, storage, metadata, tags = row
    folder = kind == FOLDER
    storage_d = _json(storage) or {}
    if "type" not in storage_d:
        storage_d["type"] = "PLATFORM"
    return {
        "href": f"{api}/files/{file_id}",
        "id": file_id,
        "name": name,
        "size": 0 if folder else int(size or 0),
        "project": project_sbg_id,
        "parent": parent_id,
        "type": "folder" if folder else "file",
        "created_on": _listed_time(created),
        "modified_on": _listed_time(modified),
        "origin": {"task": origin_task} if origin_task else {},
        "storage": storage_d,
        "metadata": _json(metadata) or {},
        "tags": _json(tags) or [],
    }


def storage_out(file: File) -> dict[str, Any]:
    storage = dict(file.storage or {})
    storage.setdefault("type", "PLATFORM")
    return storage


def file_out(api: str, file: File, project_sbg_id: str) -> dict[str, Any]:
    """The File object as the platform returns it (``api`` is the absolute ``…/v2`` base)."""
    folder = file.is_folder
    return {
        "href": f"{api}/files/{file.id}",
        "id": file.id,
        "name": file.name,
        "size": 0 if folder else int(file.size or 0),
        "project": project_sbg_id,
        "parent": file.parent_id,
        "type": "folder" if folder else "file",
        "created_on": fmt_dt(file.created_on),
        "modified_on": fmt_dt(file.modified_on),
        "origin": {"task": file.origin_task} if file.origin_task else {},
        "storage": storage_out(file),
        "metadata": dict(file.metadata_ or {}),
        "tags": list(file.tags or []),
    }
