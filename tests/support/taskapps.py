"""Test fixtures for the task tests: apps and files written straight into a server's database.

Apps are inserted as App/AppRevision rows carrying the summary the apps area computes at install, so
the task tests do not depend on CWL parsing; files get real blobs in the server's blob store.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from bridgehead.db.base import new_file_id, utcnow
from bridgehead.db.models import App, AppRevision, File, Project
from bridgehead.embedded import EmbeddedServer

FILE_ARRAY = {"type": "array", "items": "File"}

SUMMARY: dict[str, Any] = {
    "class": "CommandLineTool",
    "cwlVersion": "v1.2",
    "inputs": [
        {
            "id": "reads",
            "type": FILE_ARRAY,
            "required": True,
            "secondaryFiles": [],
            "default": None,
            "label": None,
        },
        {
            "id": "reference",
            "type": ["null", "File"],
            "required": False,
            "secondaryFiles": [
                {"pattern": ".fai", "required": True},
                {"pattern": "^.dict", "required": True},
            ],
            "default": None,
            "label": None,
        },
        {
            "id": "threads",
            "type": ["null", "int"],
            "required": False,
            "secondaryFiles": [],
            "default": None,
            "label": None,
        },
        {
            "id": "mode",
            "type": ["null", {"type": "enum", "symbols": ["fast", "slow"]}],
            "required": False,
            "secondaryFiles": [],
            "default": None,
            "label": None,
        },
        {
            "id": "label",
            "type": ["null", "string"],
            "required": False,
            "secondaryFiles": [],
            "default": None,
            "label": None,
        },
        {
            "id": "options",
            "type": ["null", {"type": "record", "fields": [{"name": "depth", "type": "int"}]}],
            "required": False,
            "secondaryFiles": [],
            "default": None,
            "label": None,
        },
    ],
    "outputs": [
        {"id": "result", "type": "File", "required": True, "secondaryFiles": []},
        {"id": "summary", "type": ["null", "File"], "required": False, "secondaryFiles": []},
        {"id": "count", "type": "int", "required": True, "secondaryFiles": []},
    ],
    "batch_input": None,
    "batch_by": None,
    "resources": {"cores": 1, "ram_mib": 256},
    "steps": 1,
    "requirements": [],
}

RAW: dict[str, Any] = {
    "class": "CommandLineTool",
    "cwlVersion": "v1.2",
    "baseCommand": "true",
    "inputs": [{"id": i["id"], "type": i["type"]} for i in SUMMARY["inputs"]],
    "outputs": [
        {"id": "result", "type": "File"},
        {"id": "summary", "type": ["null", "File"]},
        {"id": "count", "type": "int"},
    ],
}


def _session(server: EmbeddedServer) -> Session:
    engine = create_engine(server.resolved_database_url, poolclass=NullPool)
    return Session(engine)


def install_app(
    server: EmbeddedServer,
    project: str,
    name: str,
    summary: dict[str, Any] | None = None,
    raw: dict[str, Any] | None = None,
) -> str:
    """Insert an app (one revision, 0) and return its id ``owner/project/name``."""
    owner, slug = project.split("/")
    with _session(server) as s, s.begin():
        p = s.scalar(select(Project).where(Project.owner == owner, Project.slug == slug))
        assert p is not None
        app_id = f"{project}/{name}"
        app = App(sbg_id=app_id, project_id=p.id, name=name, latest_revision=0)
        s.add(app)
        s.flush()
        doc = dict(raw or RAW)
        doc["sbg:id"] = f"{app_id}/0"
        s.add(
            AppRevision(
                app_id=app.id, revision=0, raw=doc, summary=dict(summary or SUMMARY), created_by=owner
            )
        )
    return app_id


def add_file(
    server: EmbeddedServer,
    project: str,
    name: str,
    content: bytes = b"data\n",
    metadata: dict[str, Any] | None = None,
    parent: str | None = None,
) -> str:
    """A project file with real content in the server's blob store; returns its id."""
    owner, slug = project.split("/")
    digest = hashlib.sha256(content).hexdigest()
    blob = Path(server.data_path) / "blobs" / digest[:2] / digest
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(content)
    with _session(server) as s, s.begin():
        p = s.scalar(select(Project).where(Project.owner == owner, Project.slug == slug))
        assert p is not None
        fid = new_file_id()
        now = utcnow()
        s.add(
            File(
                id=fid,
                project_id=p.id,
                parent_id=parent or p.root_folder,
                name=name,
                type="FILE",
                size=len(content),
                blob_key=digest,
                metadata_=dict(metadata or {}),
                tags=[],
                storage={"type": "PLATFORM"},
                created_on=now,
                modified_on=now,
            )
        )
    return fid


def delete_file(server: EmbeddedServer, file_id: str) -> None:
    with _session(server) as s, s.begin():
        f = s.get(File, file_id)
        if f is not None:
            s.delete(f)


def wait_task(http: httpx.Client, task_id: str, timeout: float = 60) -> dict[str, Any]:
    """Poll ``GET /tasks/{id}`` until the task ends (or ``timeout`` passes); returns its last body."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = http.get(f"/tasks/{task_id}").json()
        if body["status"] in ("COMPLETED", "FAILED", "ABORTED") or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def project_and_app_fixtures(project_name: str, app_name: str) -> tuple[Any, Any]:
    """Module fixtures ``project`` (a new project of the module's live server) and ``app_id`` (a
    tool installed in it): ``project, app_id = project_and_app_fixtures("exec", "tool")``."""
    import pytest

    @pytest.fixture(scope="module", name="project")
    def project(http: httpx.Client) -> str:
        return str(http.post("/projects", json={"name": project_name}).json()["id"])

    @pytest.fixture(scope="module", name="app_id")
    def app_id(server: EmbeddedServer, project: str) -> str:
        return install_app(server, project, app_name)

    return project, app_id
