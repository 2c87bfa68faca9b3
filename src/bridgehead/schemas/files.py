"""Wire shapes of files and folders: request bodies and the File JSON every area emits."""

from __future__ import annotations

from typing import Any

from bridgehead.db.models import File
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
