"""Output ingestion: every File/Directory in a finished run's CWL output object becomes a project file.

Files go into the blob store (moved when possible) and are placed in the task's output folder (or a
per-port location) with ``origin.task``; the task's ``outputs`` then hold platform-shaped file
objects. Required outputs that were not produced turn a successful run into a failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from sqlalchemy.orm import Session

from bridgehead.db.base import new_file_id
from bridgehead.db.models import File, Project
from bridgehead.db.models.files import FILE, FOLDER
from bridgehead.domain import files
from bridgehead.storage.blobs import BlobStore


@dataclass
class Ingested:
    outputs: dict[str, Any]
    total_bytes: int = 0
    placed: list[tuple[str, str]] = field(default_factory=list)  # (output id, file id) for exports
    missing: list[str] = field(default_factory=list)


def local_path(value: dict[str, Any]) -> Path | None:
    raw = value.get("path") or value.get("location")
    if not isinstance(raw, str):
        return None
    if raw.startswith("file://"):
        raw = unquote(urlparse(raw).path)
    return Path(raw)


class Placer(Protocol):
    """Where a finished run's files and folders are created; both return ``(id, final name)``.

    ``SessionPlacer`` writes through the session and looks every name up; ``FreshPlacer`` only builds
    rows, for folders it knows to be new (see ``execution.plan_finish``).
    """

    def file(self, parent_id: str, name: str, blob_key: str | None, size: int) -> tuple[str, str]: ...

    def folder(self, parent_id: str, name: str, *, exist_ok: bool = False) -> tuple[str, str]: ...


class SessionPlacer:
    """Files placed with the platform's autorename; folders autorenamed, or reused with ``exist_ok``."""

    def __init__(self, session: Session, project: Project, task_id: str) -> None:
        self.session, self.project, self.task_id = session, project, task_id

    def _parent(self, parent_id: str) -> File:
        parent = self.session.get(File, parent_id)
        assert parent is not None
        return parent

    def file(self, parent_id: str, name: str, blob_key: str | None, size: int) -> tuple[str, str]:
        placed = files.place_file(
            self.session,
            project=self.project,
            parent=self._parent(parent_id),
            name=name,
            blob_key=blob_key,
            size=size,
            conflict="autorename",
            origin_task=self.task_id,
        )
        return placed.id, placed.name

    def folder(self, parent_id: str, name: str, *, exist_ok: bool = False) -> tuple[str, str]:
        if not exist_ok:
            name = files.free_name(self.session, parent_id, name)
        made = files.make_folder(
            self.session, project=self.project, parent=self._parent(parent_id), name=name, exist_ok=exist_ok
        )
        return made.id, made.name


class FreshPlacer:
    """Rows for ``files`` under folders created by this placer: names are checked in memory.

    Every parent it is given is one it made (or one the caller made and ``adopt``-ed), so no other
    row can clash with a name here and no query is needed; the rows are inserted in one statement.
    """

    def __init__(self, project_id: int, task_id: str, now: datetime) -> None:
        self.project_id, self.task_id, self.now = project_id, task_id, now
        self.rows: list[dict[str, Any]] = []
        self._names: dict[str, dict[str, str]] = {}  # parent id -> {name: id}

    def adopt(self, parent_id: str, name: str) -> str:
        """A new folder (its row is ``rows[-1]``) directly under a parent that is not fresh."""
        self.rows.append(file_row(self.project_id, parent_id, name, self.now))
        self._names[self.rows[-1]["id"]] = {}
        return str(self.rows[-1]["id"])

    def _free(self, parent_id: str, name: str) -> str:
        taken, candidate, n = self._names[parent_id], name, 0
        while candidate in taken:  # the platform's autorename, as files.free_name does it
            n += 1
            candidate = f"_{n}_{name}"
        return candidate

    def file(self, parent_id: str, name: str, blob_key: str | None, size: int) -> tuple[str, str]:
        name = self._free(parent_id, name)
        row = file_row(self.project_id, parent_id, name, self.now, FILE)
        row.update(size=size, blob_key=blob_key, origin_task=self.task_id)
        self.rows.append(row)
        self._names[parent_id][name] = row["id"]
        return row["id"], name

    def folder(self, parent_id: str, name: str, *, exist_ok: bool = False) -> tuple[str, str]:
        if exist_ok and name in self._names[parent_id]:
            return self._names[parent_id][name], name
        name = self._free(parent_id, name)
        row = file_row(self.project_id, parent_id, name, self.now)
        self.rows.append(row)
        self._names[parent_id][name] = row["id"]
        self._names[row["id"]] = {}
        return row["id"], name


def file_row(project_id: int, parent_id: str, name: str, now: datetime, kind: str = FOLDER) -> dict[str, Any]:
    """A ``files`` row as ``files.make_folder`` / ``files.place_file`` would write it."""
    return {
        "id": new_file_id(),
        "project_id": project_id,
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


class _Ingester:
    def __init__(self, placer: Placer, blobs: BlobStore) -> None:
        self.placer = placer
        self.blobs = blobs
        self.result = Ingested({})

    def file(self, value: dict[str, Any], folder_id: str, output_id: str) -> dict[str, Any] | None:
        src = local_path(value)
        if src is None or not src.is_file():
            return None
        key, size = self.blobs.put_file(src.resolve(), move=False)
        name = files.check_name(value.get("basename") or src.name)
        file_id, name = self.placer.file(folder_id, name, key if size else None, size)
        self.result.total_bytes += size
        self.result.placed.append((output_id, file_id))
        out: dict[str, Any] = {
            "class": "File",
            "path": file_id,
            "name": name,
            "basename": name,
            "size": size,
            "metadata": {},  # a new file (names clash by autorename, never by overwrite)
        }
        secondary = [
            s
            for s in (
                self.file(v, folder_id, output_id)
                for v in value.get("secondaryFiles") or []
                if isinstance(v, dict) and str(v.get("class", "")).lower() == "file"
            )
            if s is not None
        ]
        out["secondaryFiles"] = secondary
        return out

    def directory(self, value: dict[str, Any], folder_id: str, output_id: str) -> dict[str, Any] | None:
        src = local_path(value)
        if src is None or not src.is_dir():
            return None
        name = files.check_name(value.get("basename") or src.name)
        made_id, name = self.placer.folder(folder_id, name)
        self._fill(src, made_id, output_id)
        return {"class": "Directory", "path": made_id, "name": name, "basename": name}

    def _fill(self, src: Path, folder_id: str, output_id: str) -> None:
        for entry in sorted(src.iterdir()):
            if entry.is_dir():
                sub_id, _ = self.placer.folder(folder_id, files.check_name(entry.name))
                self._fill(entry, sub_id, output_id)
            elif entry.is_file():
                self.file({"class": "File", "path": str(entry)}, folder_id, output_id)

    def value(self, value: Any, folder_id: str, output_id: str) -> Any:
        if isinstance(value, list):
            return [self.value(v, folder_id, output_id) for v in value]
        if isinstance(value, dict):
            cls = str(value.get("class", "")).lower()
            if cls == "file":
                return self.file(value, folder_id, output_id)
            if cls == "directory":
                return self.directory(value, folder_id, output_id)
            return {k: self.value(v, folder_id, output_id) for k, v in value.items()}
        return value


def required_outputs(summary: dict[str, Any]) -> list[str]:
    return [str(o.get("id")) for o in summary.get("outputs", []) if o.get("required")]


def ingest(
    placer: Placer,
    blobs: BlobStore,
    cwl_outputs: dict[str, Any],
    summary: dict[str, Any],
    folders: dict[str, str],
    fallback_id: str,
) -> Ingested:
    """Place every output (port id -> folder id in ``folders``, else ``fallback_id``)."""
    ingester = _Ingester(placer, blobs)
    declared = [str(o.get("id")) for o in summary.get("outputs", [])]
    for oid in declared + [k for k in cwl_outputs if k not in declared]:
        value = ingester.value(cwl_outputs.get(oid), folders.get(oid, fallback_id), oid)
        ingester.result.outputs[oid] = value
    ingester.result.missing = [
        oid for oid in required_outputs(summary) if ingester.result.outputs.get(oid) is None
    ]
    return ingester.result
