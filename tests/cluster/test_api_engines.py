"""Through the API with the real dispatcher: a two-step workflow and a batch of 10 on slurm and toil-on-Slurm.

One server per engine on PostgreSQL (the cluster deployment's database; SQLite when PostgreSQL is
absent), driven by the unmodified official client.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sevenbridges as sbg

from bridgehead.embedded import EmbeddedServer

from ..conftest import PG_ADMIN_URL, start_server
from .conftest import app, needs_slurm, squeue_names

pytestmark = [pytest.mark.slurm, needs_slurm]

COUNT_ALL = {
    "cwlVersion": "v1.2",
    "class": "CommandLineTool",
    "doc": "Count the lines of every file given.",
    "baseCommand": ["cat"],
    "inputs": {"reads": {"type": "File[]", "inputBinding": {"position": 1}}},
    "stdout": "all.txt",
    "outputs": {"merged": {"type": "stdout"}},
}


@pytest.fixture(scope="module", params=["slurm", "toil"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tls_dir: Path
) -> Iterator[tuple[EmbeddedServer, sbg.Api, Any]]:
    srv = start_server(
        tmp_path_factory.mktemp(request.param),
        tls_dir,
        engine=request.param,
        db_kind="postgres" if PG_ADMIN_URL else "sqlite",
        extra_env={"BRIDGEHEAD_TOIL_BATCH_SYSTEM": "slurm"},
    )
    api = sbg.Api(url=srv.url, token=srv.token)
    project = api.projects.create(name=f"on {request.param}", billing_group=api.billing_groups.query()[0].id)
    try:
        yield srv, api, project
    finally:
        srv.stop()


def upload(api: sbg.Api, project: Any, tmp: Path, name: str, text: str) -> Any:
    path = tmp / name
    path.write_text(text)
    return api.files.upload(str(path), project=project, file_name=name).result()


def content(api: sbg.Api, file_id: str, tmp: Path) -> str:
    target = tmp / f"dl-{file_id}"
    api.files.get(file_id).download(str(target), wait=True)
    return target.read_text()


def test_two_step_workflow(cluster: tuple[EmbeddedServer, sbg.Api, Any], tmp_path: Path) -> None:
    srv, api, project = cluster
    wf = api.apps.install_app(id=f"{project.id}/sort-count", raw=app("sort_count.cwl"))
    data = upload(api, project, tmp_path, "letters.txt", "c\na\nb\n")
    task = api.tasks.create(name="two steps", project=project, app=wf, inputs={"infile": data}, run=True)
    task.wait(period=1)
    task.reload()
    assert task.status == "COMPLETED", (task.execution_status.message, srv.log_text()[-2000:])
    assert (task.execution_status.steps_completed, task.execution_status.steps_total) == (2, 2)
    out = task.outputs["count"]
    assert content(api, out.id, tmp_path).split()[0] == "3"
    # The run really went through this engine: its own traces are in the task's directory.
    trace = {"slurm": "slurm_job_id", "toil": "toil.log"}[srv.engine]
    assert (srv.data_path / "tasks" / task.id / trace).exists()


def test_batch_of_ten(cluster: tuple[EmbeddedServer, sbg.Api, Any], tmp_path: Path) -> None:
    _, api, project = cluster
    tool = api.apps.install_app(id=f"{project.id}/merge", raw=COUNT_ALL)
    files = [upload(api, project, tmp_path, f"part{i}.txt", f"line of part {i}\n") for i in range(10)]
    task = api.tasks.create(
        name="ten at once",
        project=project,
        app=tool,
        inputs={"reads": files},
        batch_input="reads",
        batch_by={"type": "ITEM"},
        run=True,
    )
    task.wait(period=1)
    task.reload()
    children = list(task.get_batch_children().all())
    assert len(children) == 10
    assert task.status == "COMPLETED", [
        c.execution_status.message for c in children if c.status != "COMPLETED"
    ]
    texts = sorted(content(api, c.outputs["merged"].id, tmp_path) for c in children)
    assert texts == sorted(f"line of part {i}\n" for i in range(10))
    assert all(c.status == "COMPLETED" for c in children)
    left = squeue_names()
    assert not [c.id for c in children if any(c.id in name for name in left)], "Slurm jobs left behind"
