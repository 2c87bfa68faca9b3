"""Volumes, imports and exports through the unmodified ``sevenbridges-python`` client.

S3 volumes talk to a real S3 API (moto's server); the bridgehead server finds it through boto3's
standard ``AWS_ENDPOINT_URL``, because ``create_s3_volume`` has no endpoint argument. Local
volumes are created over plain HTTP (the client has no form for them) and then used via the client.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import sevenbridges as sbg
from sevenbridges.models.storage_export import Export
from sevenbridges.models.storage_import import Import

from bridgehead.embedded import EmbeddedServer
from tests.conftest import user_api
from tests.support.s3 import ACCESS_KEY, SECRET_KEY, S3Endpoint, endpoint, moto_fixture

S3 = endpoint()
ROOT = Path(tempfile.mkdtemp(prefix="bh-volroot-"))
SERVER_ENV = {"BRIDGEHEAD_VOLUME_ROOTS": str(ROOT), "AWS_ENDPOINT_URL": S3.url}

s3 = moto_fixture(S3)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def wait(job: Any, timeout: float = 60) -> Any:
    """Poll an Import/Export with the client until it leaves PENDING/RUNNING."""
    deadline = time.monotonic() + timeout
    while True:
        job.reload()
        if job.state in ("COMPLETED", "FAILED"):
            return job
        assert time.monotonic() < deadline, f"{job} still {job.state}"
        time.sleep(0.2)


def make_bucket(s3: S3Endpoint, objects: dict[str, bytes]) -> str:
    bucket = f"bh-{uuid.uuid4().hex[:10]}"
    client = s3.client()
    client.create_bucket(Bucket=bucket)
    for key, data in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=data)
    return bucket


def test_s3_volume_full_cycle(api: sbg.Api, http: httpx.Client, s3: S3Endpoint, tmp_path: Path) -> None:
    payload = uuid.uuid4().bytes * 5000
    bucket = make_bucket(
        s3, {"in/sample.fastq": payload, "in/sub/a.txt": b"a", "in/sub/b.txt": b"bb", "top.txt": b"t"}
    )
    name = unique("s3vol")
    volume = api.volumes.create_s3_volume(
        name=name,
        bucket=bucket,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        access_mode="RW",
        description="reads",
    )
    assert volume.id == f"{api.users.me().username}/{name}"
    assert volume.service["type"] == "s3" and volume.service["bucket"] == bucket
    assert volume.service["credentials"] is None  # write-only
    assert volume.active is True and volume.created_on is not None

    got = api.volumes.get(volume.id)
    assert got.description == "reads" and got.access_mode == "RW"
    assert volume.id in [v.id for v in api.volumes.query().all()]
    got.description = "reads, renamed"
    got.save()
    assert api.volumes.get(volume.id).description == "reads, renamed"

    listing = got.list()
    assert [o.location for o in listing] == ["top.txt"]
    assert [p.prefix for p in listing.prefixes] == ["in/"]
    inner = got.list(prefix="in/")
    assert [o.location for o in inner] == ["in/sample.fastq"]
    assert [p.prefix for p in inner.prefixes] == ["in/sub/"]
    info = got.get_volume_object_info("in/sample.fastq")
    assert info.location == "in/sample.fastq" and info.metadata["size"] == len(payload)
    assert info.volume == volume.id and info.type == "s3"

    project = api.projects.create(name=unique("vol-proj"), billing_group=api.billing_groups.query()[0])
    imp = api.imports.submit_import(volume=got, location="in/sample.fastq", project=project)
    assert imp.state in ("PENDING", "RUNNING", "COMPLETED")
    imp = wait(imp)
    assert imp.state == "COMPLETED", imp.error
    assert imp.started_on is not None and imp.finished_on is not None
    assert imp.source.volume == volume.id and imp.source.location == "in/sample.fastq"
    assert imp.destination.project == project.id
    imported = imp.result
    assert imported.name == "sample.fastq" and imported.size == len(payload)
    target = tmp_path / "downloaded.fastq"
    api.files.get(imported.id).download(str(target))
    assert target.read_bytes() == payload

    # A folder import keeps the structure below the prefix.
    folder_imp = wait(api.imports.submit_import(volume=got, location="in/sub/", project=project, name="sub"))
    assert folder_imp.state == "COMPLETED", folder_imp.error
    folder = folder_imp.result
    assert folder.type == "folder" and folder.name == "sub"
    assert sorted(f.name for f in api.files.query(parent=folder.id).all()) == ["a.txt", "b.txt"]

    exp = api.exports.submit_export(file=imported, volume=got, location="out/copy.fastq", copy_only=True)
    exp = wait(exp)
    assert exp.state == "COMPLETED", exp.error
    assert exp.destination.volume == volume.id and exp.destination.location == "out/copy.fastq"
    assert exp.source.id == imported.id
    body = s3.client().get_object(Bucket=bucket, Key="out/copy.fastq")["Body"].read()
    assert body == payload
    assert imp.id in [i.id for i in api.imports.query(volume=got).all()]
    assert exp.id in [e.id for e in api.exports.query(volume=got, state="COMPLETED").all()]

    # Bulk forms: two imports (one of a missing object) and bulk get.
    records = Import.bulk_submit(
        [
            {"volume": got.id, "location": "top.txt", "project": project.id, "name": "top-bulk.txt"},
            {"volume": got.id, "location": "nope.txt", "project": project.id},
        ],
        api=api,
    )
    assert all(r.valid for r in records)
    ids = [r.resource.id for r in records]
    for rid in ids:
        wait(api.imports.get(rid))
    fetched = Import.bulk_get(ids, api=api)
    assert [r.resource.state for r in fetched] == ["COMPLETED", "FAILED"]
    failed = fetched[1].resource
    assert f"s3://{bucket}/nope.txt" in failed.error.message and failed.error.code == 9105

    eids = [
        r.resource.id
        for r in Export.bulk_submit(
            [{"file": imported.id, "volume": got.id, "location": f"bulk/{i}.fastq"} for i in range(2)],
            copy_only=True,
            api=api,
        )
    ]
    for eid in eids:
        wait(api.exports.get(eid))
    assert [r.resource.state for r in Export.bulk_get(eids, api=api)] == ["COMPLETED", "COMPLETED"]
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket, Prefix="bulk/")["Contents"]]
    assert sorted(keys) == ["bulk/0.fastq", "bulk/1.fastq"]

    got.delete()
    gone = http.get(f"/storage/volumes/{volume.id}")
    assert gone.status_code == 404 and gone.json()["code"] == 9007


def test_s3_volume_with_endpoint_in_service(api: sbg.Api, http: httpx.Client, s3: S3Endpoint) -> None:
    """Any S3-compatible endpoint can be named per volume (plain HTTP: the client has no field)."""
    bucket = make_bucket(s3, {"x/y.txt": b"hello"})
    name = unique("ep")
    service = {
        "type": "S3",
        "bucket": bucket,
        "prefix": "x",
        "endpoint": s3.url,
        "credentials": {"access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY},
    }
    resp = http.post("/storage/volumes", json={"name": name, "access_mode": "RO", "service": service})
    assert resp.status_code == 201, resp.text
    assert resp.json()["service"]["endpoint"] == s3.url and "credentials" not in resp.json()["service"]
    volume = api.volumes.get(resp.json()["id"])
    assert [o.location for o in volume.list()] == ["y.txt"]  # relative to the volume prefix


def test_local_volume_cycle(api: sbg.Api, http: httpx.Client, tmp_path: Path) -> None:
    root = ROOT / unique("d")
    (root / "data").mkdir(parents=True)
    (root / "data" / "reads.txt").write_bytes(b"ACGT" * 1000)
    name = unique("local")
    resp = http.post(
        "/storage/volumes",
        json={"name": name, "access_mode": "RW", "service": {"type": "local", "root": str(root)}},
    )
    assert resp.status_code == 201, resp.text
    volume = api.volumes.get(resp.json()["id"])
    assert volume.service["type"] == "local" and volume.service["root"] == str(root.resolve())
    listing = volume.list()
    assert [p.prefix for p in listing.prefixes] == ["data/"] and list(listing) == []
    assert volume.get_volume_object_info("data/reads.txt").metadata["size"] == 4000

    project = api.projects.create(name=unique("local-proj"), billing_group=api.billing_groups.query()[0])
    imp = wait(api.imports.submit_import(volume=volume, location="data/reads.txt", project=project))
    assert imp.state == "COMPLETED", imp.error
    target = tmp_path / "reads.txt"
    imp.result.download(str(target))
    assert target.read_bytes() == b"ACGT" * 1000

    again = wait(
        api.imports.submit_import(volume=volume, location="data/reads.txt", project=project, autorename=True)
    )
    assert again.state == "COMPLETED" and again.result.name == "_1_reads.txt"

    # Into a folder (parent=) and flattened: preserve_folder_structure=False drops the sub-folders.
    for sub in ("x", "y"):
        (root / "tree" / sub).mkdir(parents=True)
        (root / "tree" / sub / f"{sub}.txt").write_bytes(sub.encode())
    inbox = api.files.create_folder(name="inbox", project=project)
    flat = wait(
        api.imports.submit_import(
            volume=volume, location="tree/", parent=inbox, preserve_folder_structure=False, name="tree"
        )
    )
    assert flat.state == "COMPLETED", flat.error
    assert flat.preserve_folder_structure is False and flat.destination.parent == inbox.id
    assert sorted(f.name for f in api.files.query(parent=inbox.id).all()) == ["x.txt", "y.txt"]
    assert flat.id in [i.id for i in api.imports.query(project=project, state="COMPLETED").all()]

    exp = wait(api.exports.submit_export(file=imp.result, volume=volume, location="out/reads-copy.txt"))
    assert exp.state == "COMPLETED", exp.error
    assert (root / "out" / "reads-copy.txt").read_bytes() == b"ACGT" * 1000
    # Without copy_only the platform file becomes an alias of the exported object.
    assert api.files.get(imp.result.id).storage.type == "VOLUME"


def test_volume_members_with_the_client(api: sbg.Api, http: httpx.Client, server: EmbeddedServer) -> None:
    root = ROOT / unique("m")
    root.mkdir()
    (root / "shared.txt").write_bytes(b"shared")
    resp = http.post(
        "/storage/volumes",
        json={"name": unique("shared"), "access_mode": "RW", "service": {"type": "local", "root": str(root)}},
    )
    volume = api.volumes.get(resp.json()["id"])
    carol = unique("carol")
    carol_api = user_api(server, carol)
    member = volume.add_member(carol, {"read": True, "write": False, "execute": True})
    assert member.username == carol and member.permissions["write"] is False
    assert [m.username for m in volume.get_members()] == [carol]
    assert carol_api.volumes.get(volume.id).name == volume.name
    assert [o.location for o in carol_api.volumes.get(volume.id).list()] == ["shared.txt"]

    # get_member uses the client's class-level default Api (the most recently created one: carol's)
    # unless told otherwise, and carol may not change permissions.
    fetched = volume.get_member(carol, api=api)
    fetched.permissions["write"] = True
    fetched.save()
    assert volume.get_member(carol, api=api).permissions["write"] is True
    volume.remove_member(carol)
    assert list(volume.get_members()) == []
    try:
        carol_api.volumes.get(volume.id)
    except sbg.errors.Forbidden as exc:
        assert exc.code == 9020
    else:
        raise AssertionError("a removed member can still read the volume")
