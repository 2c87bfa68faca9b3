"""Staging: turn a task's inputs (project file ids) into a CWL job order of local paths.

Each input File's blob is symlinked as ``<workdir>/inputs/<file id>/<name>`` so tools see the file's
real name without a copy; folders become real directories of such symlinks. A file deleted after the
task was queued makes staging fail with a message naming it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridgehead.db.models import File
from bridgehead.db.models.files import FOLDER
from bridgehead.storage.blobs import BlobStore


class StagingError(Exception):
    """An input cannot be staged; the message is shown as the task's failure message."""


def _link(blobs: BlobStore, f: File, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        return
    if f.blob_key is None:  # empty: a link to the store's one empty file (no new inode per run)
        try:
            os.link(blobs.empty_file(), target)
        except OSError:
            target.touch()
        return
    source = blobs.path(f.blob_key)
    if not source.exists():
        raise StagingError(f"The content of input file {f.name} ({f.id}) is missing from the blob store.")
    # A hard link looks like a regular file to tools (``find -type f``, ``test -f`` on a folder's
    # content); a symlink is the fallback when the blob store is on another filesystem.
    try:
        os.link(source, target)
    except OSError:
        os.symlink(source, target)


class Stager:
    def __init__(self, session: Session, blobs: BlobStore, workdir: Path) -> None:
        self.session = session
        self.blobs = blobs
        self.root = workdir / "inputs"

    def _file(self, value: dict[str, Any], input_id: str) -> dict[str, Any]:
        file_id = value.get("path")
        f = self.session.get(File, file_id) if isinstance(file_id, str) else None
        if f is None or f.type == FOLDER:
            name = value.get("name") or file_id
            raise StagingError(f"Input file {name} ({file_id}) of input '{input_id}' no longer exists.")
        target = self.root / f.id / f.name
        _link(self.blobs, f, target)
        out: dict[str, Any] = {
            "class": "File",
            "location": str(target),
            "path": str(target),
            "basename": f.name,
            "size": f.size,
        }
        if isinstance(value.get("format"), str):
            out["format"] = value["format"]
        secondary = [
            self._file(s, input_id) for s in value.get("secondaryFiles") or [] if isinstance(s, dict)
        ]
        if secondary:
            out["secondaryFiles"] = secondary
        return out

    def _folder(self, value: dict[str, Any], input_id: str) -> dict[str, Any]:
        folder_id = value.get("path")
        f = self.session.get(File, folder_id) if isinstance(folder_id, str) else None
        if f is None or f.type != FOLDER:
            name = value.get("name") or folder_id
            raise StagingError(f"Input folder {name} ({folder_id}) of input '{input_id}' no longer exists.")
        target = self.root / f.id / f.name
        self._fill(f, target)
        return {"class": "Directory", "location": str(target), "path": str(target), "basename": f.name}

    def _fill(self, folder: File, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        for child in self.session.scalars(select(File).where(File.parent_id == folder.id)):
            if child.type == FOLDER:
                self._fill(child, target / child.name)
            else:
                _link(self.blobs, child, target / child.name)

    def value(self, value: Any, input_id: str) -> Any:
        if isinstance(value, list):
            return [self.value(v, input_id) for v in value]
        if isinstance(value, dict):
            cls = str(value.get("class", "")).lower()
            if cls == "file":
                return self._file(value, input_id)
            if cls in ("directory", "folder"):
                return self._folder(value, input_id)
            return {k: self.value(v, input_id) for k, v in value.items()}
        return value


def job_order(
    session: Session, blobs: BlobStore, inputs: dict[str, Any], workdir: Path, declared: set[str]
) -> dict[str, Any]:
    """The CWL job order; unset inputs are left out so the tool's defaults apply."""
    stager = Stager(session, blobs, workdir)
    return {k: stager.value(v, k) for k, v in inputs.items() if v is not None and k in declared}
