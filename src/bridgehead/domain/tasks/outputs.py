"""Output ingestion: every File/Directory in a finished run's CWL output object becomes a project file.

Files go into the blob store (moved when possible) and are placed in the task's output folder (or a
per-port location) with ``origin.task``; the task's ``outputs`` then hold platform-shaped file
objects. Required outputs that were not produced turn a successful run into a failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from sqlalchemy.orm import Session

from bridgehead.db.models import File, Project
from bridgehead.db.models.tasks import Task
from bridgehead.domain import files
from bridgehead.domain.tasks.locations import Target
from bridgehead.storage.blobs import BlobStore


@dataclass
class Ingested:
    outputs: dict[str, Any]
    total_bytes: int = 0
    placed: list[tuple[str, File]] = field(default_factory=list)  # (output id, file) for exports
    missing: list[str] = field(default_factory=list)


def local_path(value: dict[str, Any]) -> Path | None:
    raw = value.get("path") or value.get("location")
    if not isinstance(raw, str):
        return None
    if raw.startswith("file://"):
        raw = unquote(urlparse(raw).path)
    return Path(raw)


class _Ingester:
    def __init__(self, session: Session, blobs: BlobStore, task: Task, project: Project) -> None:
        self.session = session
        self.blobs = blobs
        self.task = task
        self.project = project
        self.result = Ingested({})

    def file(self, value: dict[str, Any], folder: File, output_id: str) -> dict[str, Any] | None:
        src = local_path(value)
        if src is None or not src.is_file():
            return None
        key, size = self.blobs.put_file(src.resolve(), move=False)
        name = files.check_name(value.get("basename") or src.name)
        placed = files.place_file(
            self.session,
            project=self.project,
            parent=folder,
            name=name,
            blob_key=key if size else None,
            size=size,
            conflict="autorename",
            origin_task=self.task.id,
        )
        self.result.total_bytes += size
        self.result.placed.append((output_id, placed))
        out: dict[str, Any] = {
            "class": "File",
            "path": placed.id,
            "name": placed.name,
            "basename": placed.name,
            "size": size,
            "metadata": dict(placed.metadata_ or {}),
        }
        secondary = [
            s
            for s in (
                self.file(v, folder, output_id)
                for v in value.get("secondaryFiles") or []
                if isinstance(v, dict) and str(v.get("class", "")).lower() == "file"
            )
            if s is not None
        ]
        out["secondaryFiles"] = secondary
        return out

    def directory(self, value: dict[str, Any], folder: File, output_id: str) -> dict[str, Any] | None:
        src = local_path(value)
        if src is None or not src.is_dir():
            return None
        name = files.check_name(value.get("basename") or src.name)
        name = files.free_name(self.session, folder.id, name)
        made = files.make_folder(self.session, project=self.project, parent=folder, name=name)
        self._fill(src, made, output_id)
        return {"class": "Directory", "path": made.id, "name": made.name, "basename": made.name}

    def _fill(self, src: Path, folder: File, output_id: str) -> None:
        for entry in sorted(src.iterdir()):
            if entry.is_dir():
                sub = files.make_folder(self.session, project=self.project, parent=folder, name=entry.name)
                self._fill(entry, sub, output_id)
            elif entry.is_file():
                self.file({"class": "File", "path": str(entry)}, folder, output_id)

    def value(self, value: Any, folder: File, output_id: str) -> Any:
        if isinstance(value, list):
            return [self.value(v, folder, output_id) for v in value]
        if isinstance(value, dict):
            cls = str(value.get("class", "")).lower()
            if cls == "file":
                return self.file(value, folder, output_id)
            if cls == "directory":
                return self.directory(value, folder, output_id)
            return {k: self.value(v, folder, output_id) for k, v in value.items()}
        return value


def required_outputs(summary: dict[str, Any]) -> list[str]:
    return [str(o.get("id")) for o in summary.get("outputs", []) if o.get("required")]


def ingest(
    session: Session,
    blobs: BlobStore,
    task: Task,
    project: Project,
    cwl_outputs: dict[str, Any],
    summary: dict[str, Any],
    targets: dict[str, Target],
    fallback: File,
) -> Ingested:
    ingester = _Ingester(session, blobs, task, project)
    declared = [str(o.get("id")) for o in summary.get("outputs", [])]
    for oid in declared + [k for k in cwl_outputs if k not in declared]:
        target = targets.get(oid)
        value = ingester.value(cwl_outputs.get(oid), target.folder if target else fallback, oid)
        ingester.result.outputs[oid] = value
    ingester.result.missing = [
        oid for oid in required_outputs(summary) if ingester.result.outputs.get(oid) is None
    ]
    return ingester.result
