"""The two volume backends in-process: the same listing semantics, confinement, and atomic writes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridgehead.storage.volumes import LocalDirVolume, S3Volume, VolumeBackend, VolumeError
from tests.support.s3 import ACCESS_KEY, SECRET_KEY, S3Endpoint, endpoint, moto_fixture

S3 = endpoint()
s3 = moto_fixture(S3)

TREE = {"a.txt": b"a", "b/c.txt": b"cc", "b/d/e.txt": b"eee", "b/f.txt": b"f", "g.txt": b"gggg"}


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VolumeBackend]:
    """The same tree (under a volume prefix ``vol``) in a directory or a bucket."""
    if request.param == "local":
        for key, data in TREE.items():
            path = tmp_path / "vol" / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        yield LocalDirVolume(tmp_path, "vol")
    else:
        where: S3Endpoint = request.getfixturevalue("s3")
        bucket = f"bk-{uuid.uuid4().hex[:8]}"
        client = where.client()
        client.create_bucket(Bucket=bucket)
        for key, data in TREE.items():
            client.put_object(Bucket=bucket, Key=f"vol/{key}", Body=data)
        client.put_object(Bucket=bucket, Key="outside.txt", Body=b"not in the volume")
        yield S3Volume(
            bucket, "vol", where.url, {"access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY}
        )


def test_listing_is_relative_to_the_prefix_and_pages(backend: VolumeBackend) -> None:
    top = backend.list("", 100, None)
    assert [o.location for o in top.objects] == ["a.txt", "g.txt"] and top.prefixes == ["b/"]
    assert top.next_token is None
    inner = backend.list("b/", 100, None)
    assert [o.location for o in inner.objects] == ["b/c.txt", "b/f.txt"] and inner.prefixes == ["b/d/"]
    assert [o.size for o in inner.objects] == [2, 1]
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        page = backend.list("b/", 1, token)
        seen += [o.location for o in page.objects] + page.prefixes
        pages += 1
        token = page.next_token
        if token is None:
            break
    assert sorted(seen) == ["b/c.txt", "b/d/", "b/f.txt"] and pages == 3
    assert [o.location for o in backend.list("g", 10, None).objects] == ["g.txt"]  # a name prefix


def test_stat_walk_read_write(backend: VolumeBackend) -> None:
    info = backend.stat("b/d/e.txt")
    assert info is not None and info.size == 3 and info.metadata["size"] == 3
    assert backend.stat("b/missing.txt") is None
    assert sorted(o.location for o in backend.walk("b/")) == ["b/c.txt", "b/d/e.txt", "b/f.txt"]
    assert b"".join(backend.read("g.txt")) == b"gggg"
    with pytest.raises(VolumeError) as err:
        b"".join(backend.read("nope.txt"))
    assert err.value.missing and "nope.txt" in err.value.message
    assert backend.write("new/dir/x.bin", iter([b"12", b"345"])) == 5
    assert b"".join(backend.read("new/dir/x.bin")) == b"12345"
    assert backend.write("empty.bin", iter([])) == 0
    stat = backend.stat("empty.bin")
    assert stat is not None and stat.size == 0


def test_local_volume_cannot_escape_its_directory(tmp_path: Path) -> None:
    (tmp_path / "vol").mkdir()
    (tmp_path / "secret.txt").write_bytes(b"secret")
    os.symlink(tmp_path / "secret.txt", tmp_path / "vol" / "link.txt")
    volume = LocalDirVolume(tmp_path, "vol")
    for location in ("../secret.txt", "link.txt", "/etc/passwd"):
        with pytest.raises(VolumeError, match="outside the volume"):
            b"".join(volume.read(location))
    with pytest.raises(VolumeError, match="outside the volume"):
        volume.write("../planted.txt", iter([b"x"]))
    assert not (tmp_path / "planted.txt").exists()


def test_failed_local_write_leaves_nothing(tmp_path: Path) -> None:
    volume = LocalDirVolume(tmp_path)

    def broken() -> Iterator[bytes]:
        yield b"partial"
        raise OSError("source went away")

    with pytest.raises(OSError):
        volume.write("out/half.bin", broken())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []


def test_unreachable_storage_is_reported(tmp_path: Path, s3: S3Endpoint) -> None:
    with pytest.raises(VolumeError, match="does not exist"):
        LocalDirVolume(tmp_path / "absent").check()
    with pytest.raises(VolumeError, match="not reachable"):
        S3Volume("no-such-bucket-here", "", s3.url, {"access_key_id": "k", "secret_access_key": "s"}).check()
