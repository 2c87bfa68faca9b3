"""Metadata, tags, rename, folders, copy and move through the unmodified sevenbridges-python client."""

from __future__ import annotations

from pathlib import Path

import pytest
import sevenbridges as sbg


@pytest.fixture(scope="module")
def project(api: sbg.Api) -> sbg.Project:
    return api.projects.create(name="manage")


def _upload(api: sbg.Api, tmp: Path, project: sbg.Project, name: str, data: bytes) -> sbg.File:
    path = tmp / name
    path.write_bytes(data)
    upload = api.files.upload(str(path), project=project)
    result = upload.result()
    assert isinstance(result, sbg.File), upload.status
    return result


def test_metadata_merge_replace_and_tags(api: sbg.Api, project: sbg.Project, tmp_path: Path) -> None:
    f = _upload(api, tmp_path, project, "sample.bam", b"reads")
    f.metadata["sample_id"] = "S1"
    f.metadata["platform"] = "illumina"
    f.save()
    assert dict(api.files.get(f.id).metadata) == {"sample_id": "S1", "platform": "illumina"}

    f.metadata["platform"] = "ont"  # in-place edit -> PATCH merge keeps the other key
    f.save()
    assert dict(api.files.get(f.id).metadata) == {"sample_id": "S1", "platform": "ont"}

    f.metadata = {"only": "this"}  # assignment -> PUT replace
    f.save()
    assert dict(api.files.get(f.id).metadata) == {"only": "this"}

    f.tags = ["raw", "batch-1"]
    f.save()
    again = api.files.get(f.id)
    assert list(again.tags) == ["raw", "batch-1"]
    assert dict(again.metadata) == {"only": "this"}


def test_rename(api: sbg.Api, project: sbg.Project, tmp_path: Path) -> None:
    f = _upload(api, tmp_path, project, "old-name.txt", b"x")
    f.name = "new-name.txt"
    f.save()
    assert api.files.get(f.id).name == "new-name.txt"
    names = [x.name for x in api.files.query(project=project, names=["new-name.txt", "old-name.txt"])]
    assert names == ["new-name.txt"]


def test_query_by_metadata_tags_and_names(api: sbg.Api, project: sbg.Project, tmp_path: Path) -> None:
    wanted = _upload(api, tmp_path, project, "q1.txt", b"1")
    other = _upload(api, tmp_path, project, "q2.txt", b"2")
    wanted.metadata = {"study": "alpha", "kind": "tumor"}
    wanted.tags = ["keep"]
    wanted.save()
    other.metadata = {"study": "alpha", "kind": "normal"}
    other.save()

    hits = api.files.query(project=project, metadata={"study": "alpha", "kind": "tumor"})
    assert [h.id for h in hits] == [wanted.id]
    both = api.files.query(project=project, metadata={"study": "alpha", "kind": ["tumor", "normal"]})
    assert sorted(h.id for h in both) == sorted([wanted.id, other.id])
    assert [h.id for h in api.files.query(project=project, tags=["keep"])] == [wanted.id]
    assert api.files.query(project=project, metadata={"study": "beta"}).total == 0


def test_folders_create_list_copy_move(api: sbg.Api, project: sbg.Project, tmp_path: Path) -> None:
    inbox = api.files.create_folder(name="inbox", project=project)
    assert inbox.is_folder() and inbox.parent == project.root_folder
    archive = api.files.create_folder(name="archive", parent=inbox)
    assert archive.parent == inbox.id

    f = _upload(api, tmp_path, project, "data.csv", b"a,b\n1,2\n")
    f.metadata = {"k": "v"}
    f.save()
    copied = f.copy_to_folder(parent=inbox, name="data-copy.csv")
    assert copied.id != f.id and copied.parent == inbox.id and dict(copied.metadata) == {"k": "v"}
    assert copied.content() == "a,b\n1,2\n"

    moved = f.move_to_folder(parent=archive)
    assert moved.id == f.id and moved.parent == archive.id
    assert api.files.get(f.id).parent == archive.id
    assert sorted(x.name for x in inbox.list_files()) == ["archive", "data-copy.csv"]
    assert [x.name for x in archive.list_files()] == ["data.csv"]

    other = api.projects.create(name="manage-other")
    cross = copied.copy(project=other.id)
    assert cross.project == other.id and cross.parent == other.root_folder


def test_delete_file_and_folder(api: sbg.Api, project: sbg.Project, tmp_path: Path) -> None:
    box = api.files.create_folder(name="to-delete", project=project)
    path = tmp_path / "gone.txt"
    path.write_bytes(b"bye")
    inner = api.files.upload(str(path), parent=box).result()
    with pytest.raises(sbg.errors.BadRequest):
        box.delete()  # not empty
    inner.delete()
    box.delete()
    with pytest.raises(sbg.errors.NotFound):
        api.files.get(box.id)


def test_paging_offset_and_continuation_token(api: sbg.Api, tmp_path: Path) -> None:
    project = api.projects.create(name="paging")
    box = api.files.create_folder(name="many", project=project)
    names = [f"f{i:02d}.txt" for i in range(7)]
    for name in names:
        path = tmp_path / name
        path.write_bytes(name.encode())
        assert api.files.upload(str(path), parent=box).result() is not None
    first = api.files.query(parent=box, limit=3)
    assert first.total == 7 and [f.name for f in first] == names[:3]
    assert [f.name for f in first.all()] == names
    last = api.files.query(parent=box, offset=6, limit=3)
    assert last.total == 7 and [f.name for f in last] == names[6:]
    assert api.files.query(parent=box, offset=9, limit=3).total == 7

    scrolled = api.files.query(parent=box, cont_token="init", limit=3)
    assert [f.name for f in scrolled] == names[:3] and int(scrolled.total) == 7
    second = scrolled.next_page()
    assert [f.name for f in second] == names[3:6] and int(second.total) == 7
    assert [f.name for f in scrolled.all()] == names
    listed = box.list_files(cont_token="init", limit=2)
    assert [f.name for f in listed.all()] == names
    assert [f.name for f in api.files.query(parent=box, names=[])] == []
