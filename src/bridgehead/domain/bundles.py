"""Diagnostics bundle: one ``.tar.gz`` with everything needed to understand what a task did.

Contents: ``task.json`` (the task as the API shows it, plus the engine handle), ``app.cwl.json`` (the
resolved app revision's CWL), ``inputs.json`` (the task's inputs) and, when the run directory still
exists, ``run/job_order.json`` (the staged CWL job order), ``run/result.json``, ``run/progress.json``,
``run/engine.log`` and every job's log under ``run/logs/``. Job logs stored as project files are added
from the blob store under ``logs/`` so a bundle is complete even after the run directory is gone.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path
from typing import IO, Any

from sqlalchemy.orm import Session

from bridgehead.config import Settings
from bridgehead.db.models import AppRevision, File, Project
from bridgehead.db.models.tasks import Task
from bridgehead.schemas.tasks import task_out
from bridgehead.storage.blobs import BlobStore

RUN_FILES = ("result.json", "progress.json", "engine.log")


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_json(tar: tarfile.TarFile, name: str, value: Any) -> None:
    _add_bytes(tar, name, json.dumps(value, indent=2, sort_keys=True, default=str).encode())


def run_dir(settings: Settings, task: Task) -> Path:
    handle = task.engine_handle or {}
    given = handle.get("workdir")
    return Path(given) if isinstance(given, str) else settings.tasks_dir / task.id


def write(
    session: Session, settings: Settings, blobs: BlobStore, task: Task, api: str, out: IO[bytes]
) -> None:
    """Write the bundle of ``task`` as gzip-compressed tar to ``out``."""
    project = session.get(Project, task.project_id)
    prefix = f"task-{task.id}"
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        data = task_out(api, task, project.sbg_id if project is not None else "")
        data["engine"] = task.engine
        data["engine_handle"] = task.engine_handle
        data["jobs"] = task.jobs
        _add_json(tar, f"{prefix}/task.json", data)
        rev = session.get(AppRevision, task.app_revision_id) if task.app_revision_id else None
        _add_json(tar, f"{prefix}/app.cwl.json", rev.raw if rev is not None else None)
        _add_json(tar, f"{prefix}/inputs.json", task.inputs)
        workdir = run_dir(settings, task)
        spec = workdir / "run.json"
        if spec.is_file():
            _add_json(tar, f"{prefix}/run/job_order.json", json.loads(spec.read_text()).get("job_order"))
        for name in RUN_FILES:
            if (workdir / name).is_file():
                tar.add(workdir / name, f"{prefix}/run/{name}")
        logs = workdir / "logs"
        if logs.is_dir():
            for path in sorted(logs.iterdir()):
                if path.is_file():
                    tar.add(path, f"{prefix}/run/logs/{path.name}")
        for job in task.jobs or []:
            for log_name, file_id in (job.get("logs") or {}).items():
                row = session.get(File, file_id) if isinstance(file_id, str) else None
                if row is None or row.blob_key is None or not blobs.exists(row.blob_key):
                    continue
                tar.add(blobs.path(row.blob_key), f"{prefix}/logs/{job.get('name')}.{log_name}")
