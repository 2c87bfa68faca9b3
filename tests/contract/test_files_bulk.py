"""Bulk calls, async jobs and actions through the unmodified sevenbridges-python client."""

from __future__ import annotations

from pathlib import Path

import pytest
import sevenbridges as sbg

from bridgehead.embedded import EmbeddedServer


@pytest.fixture(scope="module")
def project(api: sbg.Api) -> sbg.Project:
    return api.projects.create(name="bulk")


def _files(api: sbg.Api, tmp: Path, project: sbg.Project, prefix: str, n: int) -> list[sbg.File]:
    out = []
    for i in range(n):
        path = tmp / f"{prefix}-{i}.txt"
        path.write_bytes(f"{prefix} {i}".encode())
        result = api.files.upload(str(path), project=project).result()
        assert isinstance(result, sbg.File)
        out.append(result)
    return out


def test_bulk_get_update_edit_delete(api: sbg.Api, project: sbg.Project, tmp_path: Path) -> None:
    a, b = _files(api, tmp_path, project, "bulk", 2)
    records = api.files.bulk_get([a.id, "f" * 24, b])
    assert [r.valid for r in records] == [True, False, True]
    assert records[0].resource.id == a.id and records[2].resource.name == b.name
    assert records[1].error.status == 404 and records[1].error.code == 5002

    a.metadata = {"x": "1", "y": "2"}
    a.tags = ["t1"]
    a.save()
    a = api.files.get(a.id)
    a.name = "renamed-bulk.txt"
    a.tags = ["t2"]
    updated = api.files.bulk_update([a])
    assert updated[0].valid and updated[0].resource.name == "renamed-bulk.txt"
    after = api.files.get(a.id)
    assert list(after.tags) == ["t2"] and dict(after.metadata) == {"x": "1", "y": "2"}

    b.metadata = {"keep": "me"}
    b.save()
    b = api.files.get(b.id)
    b.metadata["added"] = "yes"
    edited = api.files.bulk_edit([b])
    assert edited[0].valid
    assert dict(api.files.get(b.id).metadata) == {"keep": "me", "added": "yes"}

    deleted = api.files.bulk_delete([a.id, b.id, a.id])
    assert [r.valid for r in deleted] == [True, True, False]
    with pytest.raises(sbg.errors.NotFound):
        api.files.get(a.id)


def test_async_copy_move_delete(
    api: sbg.Api, server: EmbeddedServer, project: sbg.Project, tmp_path: Path
) -> None:
    a, b = _files(api, tmp_path, project, "async", 2)
    target = api.files.create_folder(name="async-target", project=project)
    job = api.async_jobs.file_bulk_copy(
        [
            {"file": a.id, "parent": target.id},
            {"file": b.id, "parent": target.id, "name": "b-copy.txt"},
            {"file": "0" * 24, "parent": target.id},
        ]
    )
    assert job.type == "COPY" and job.state == "FINISHED"
    fetched = api.async_jobs.get_file_copy_job(job.id)
    assert fetched.total_files == 3 and fetched.completed_files == 2 and fetched.failed_files == 1
    results = fetched.get_result()
    assert results[0].resource.parent == target.id and results[1].resource.name == "b-copy.txt"
    assert results[2].error.code == 5002
    assert sorted(f.name for f in target.list_files()) == ["async-0.txt", "b-copy.txt"]

    moved_dir = api.files.create_folder(name="async-moved", project=project)
    move = api.async_jobs.file_bulk_move([{"file": a.id, "parent": moved_dir.id}])
    assert api.async_jobs.get_file_move_job(move.id).completed_files == 1
    assert api.files.get(a.id).parent == moved_dir.id

    copies = [r.resource.id for r in results[:2]]
    delete = api.async_jobs.file_bulk_delete([{"file": fid} for fid in copies])
    assert api.async_jobs.get_file_delete_job(delete.id).completed_files == 2
    assert list(target.list_files()) == []
    kinds = {j.type for j in api.async_jobs.list_file_jobs()}
    assert kinds == {"COPY", "MOVE", "DELETE"}


def test_action_copy_and_feedback(api: sbg.Api, project: sbg.Project, tmp_path: Path) -> None:
    (f,) = _files(api, tmp_path, project, "action", 1)
    dest = api.projects.create(name="bulk-dest")
    result = api.actions.bulk_copy_files([f.id, "1" * 24], dest.id)
    assert result[f.id]["status"] == "OK"
    copied = api.files.get(result[f.id]["new_file_id"])
    assert copied.project == dest.id and copied.name == f.name
    assert result["1" * 24]["code"] == 5002
    api.actions.send_feedback(type="IDEA", text="works offline")
