"""Uploads and downloads through the unmodified sevenbridges-python client."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import sevenbridges as sbg

from bridgehead.embedded import EmbeddedServer

MiB = 1024 * 1024


def _write_random(path: Path, size: int) -> str:
    """Write ``size`` pseudo-random bytes in 1 MiB slices (never whole in memory); return the sha256."""
    sha = hashlib.sha256()
    with open(path, "wb") as fh:
        left = size
        while left:
            chunk = os.urandom(min(MiB, left))
            sha.update(chunk)
            fh.write(chunk)
            left -= len(chunk)
    return sha.hexdigest()


def _sha(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(MiB), b""):
            sha.update(chunk)
    return sha.hexdigest()


@pytest.fixture(scope="module")
def project(api: sbg.Api) -> sbg.Project:
    return api.projects.create(name="transfer")


def _upload(api: sbg.Api, path: Path, project: sbg.Project, **kw: object) -> sbg.File:
    upload = api.files.upload(str(path), project=project, **kw)
    upload.wait()
    result = upload.result()
    assert isinstance(result, sbg.File)
    return result


def _blob_files(server: EmbeddedServer) -> list[Path]:
    root = server.data_path / "blobs"
    return [p for p in root.rglob("*") if p.is_file() and p.parent.name != "tmp"]


@pytest.mark.parametrize("size", [0, 1234, 5 * MiB + 17])
def test_upload_download_roundtrip(api: sbg.Api, project: sbg.Project, tmp_path: Path, size: int) -> None:
    src = tmp_path / f"in-{size}.bin"
    digest = _write_random(src, size)
    uploaded = _upload(api, src, project)
    assert uploaded.size == size and uploaded.name == src.name
    again = api.files.get(uploaded.id)
    assert again.size == size and again.type == "file" and again.parent == project.root_folder

    dst = tmp_path / f"out-{size}.bin"
    again.download(str(dst))
    assert _sha(dst) == digest

    streamed = hashlib.sha256()
    for chunk in again.stream(part_size=MiB):
        streamed.update(chunk)
    assert streamed.hexdigest() == digest


def test_large_upload_in_many_parts(
    api: sbg.Api, server: EmbeddedServer, project: sbg.Project, tmp_path: Path
) -> None:
    size = 200 * MiB + 12345
    src = tmp_path / "big.bin"
    digest = _write_random(src, size)
    uploaded = _upload(api, src, project, part_size=32 * MiB)
    assert uploaded.size == size
    # Parts are gone after completion; one blob holds the content.
    assert not any(p.is_file() for p in (server.data_path / "uploads").rglob("*"))
    dst = tmp_path / "big.out"
    api.files.get(uploaded.id).download(str(dst))
    assert _sha(dst) == digest
    src.unlink()
    dst.unlink()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_overwrite_replaces_content_and_collects_old_blob(
    api: sbg.Api, server: EmbeddedServer, project: sbg.Project, tmp_path: Path
) -> None:
    src = tmp_path / "same-name.txt"
    src.write_bytes(b"first version")
    first = _upload(api, src, project)
    src.write_bytes(b"second version, longer")
    clash = api.files.upload(str(src), project=project)  # the client reports the 409 as a failed upload
    assert clash.status == "FAILED" and clash.result() is None
    before = set(_blob_files(server))
    second = _upload(api, src, project, overwrite=True)
    assert second.id == first.id and second.size == len(b"second version, longer")
    assert second.content() == "second version, longer"
    after = set(_blob_files(server))
    assert len(after) == len(before), "the replaced content's blob must be removed"


def test_upload_into_folder(api: sbg.Api, project: sbg.Project, tmp_path: Path) -> None:
    folder = api.files.create_folder(name="inbox", project=project)
    src = tmp_path / "note.txt"
    src.write_bytes(b"hello folder")
    upload = api.files.upload(str(src), parent=folder)
    upload.wait()
    made = upload.result()
    assert made.parent == folder.id
    assert [f.name for f in folder.list_files()] == ["note.txt"]
