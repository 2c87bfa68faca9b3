"""The real ``sbpack``/``sbpull`` console scripts against a live server: pack, install, revise, pull back.

sbpack inlines the steps of a multi-file workflow (``run: sort.cwl``) into one document; what sbpull
brings back must validate with cwltool and equal what the server stored (and what sbpack packed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sevenbridges as sbg
import yaml

from bridgehead.domain.apps import MANAGED
from bridgehead.embedded import EmbeddedServer

DATA = Path(__file__).resolve().parents[1] / "data" / "apps"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def env(server: EmbeddedServer, tls_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Profile '.' reads the endpoint and token from the environment; HOME is a scratch dir."""
    home = tmp_path_factory.mktemp("home")
    return {
        **os.environ,
        "HOME": str(home),
        "SB_API_ENDPOINT": server.url,
        "SB_AUTH_TOKEN": server.token,
        "REQUESTS_CA_BUNDLE": str(tls_dir / "cert.pem"),
    }


def run(tool: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(BIN / tool), *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{tool} failed: {proc.stdout}\n{proc.stderr}"
    # sbpack reports API failures on stderr yet exits 0; a traceback there is a failure
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def validate(path: Path) -> None:
    proc = subprocess.run(
        [str(BIN / "cwltool"), "--validate", str(path)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is valid CWL" in proc.stdout + proc.stderr


def unmanaged(doc: dict[str, Any]) -> dict[str, Any]:
    drop = (*MANAGED, "sbg:revisionNotes", "sbg:appVersion", "$namespaces")
    return {k: v for k, v in doc.items() if k not in drop}


def test_sbpack_install_revise_and_sbpull(api: sbg.Api, env: dict[str, str], tmp_path: Path) -> None:
    project = api.projects.create(name="sbpack target").id
    source = tmp_path / "src"
    shutil.copytree(DATA / "wf", source)  # outside any git checkout, so sbpack records a plain path
    app_id = f"{project}/sort-count"

    run("sbpack", ".", app_id, str(source / "main.cwl"), env=env)
    first = api.apps.get(app_id)
    assert first.revision == 0
    steps = first.raw["steps"]
    assert [s["id"] for s in steps] == ["sort", "count"]
    assert all(isinstance(s["run"], dict) for s in steps), "sbpack inlines the step files"
    assert first.raw["sbg:revisionNotes"].startswith("Uploaded using sbpack")

    from sbpack.pack import pack

    packed = pack(str(source / "main.cwl"))
    assert unmanaged(first.raw) == unmanaged(packed)

    # the second upload sees the app and asks for revision 1 explicitly
    (source / "main.cwl").write_text((source / "main.cwl").read_text().replace("Sort then count", "Sorted"))
    run("sbpack", ".", app_id, str(source / "main.cwl"), env=env)
    second = api.apps.get(app_id)
    assert second.revision == 1 and second.raw["label"] == "Sorted"
    assert [i["sbg:revision"] for i in second.raw["sbg:revisionsInfo"]] == [0, 1]

    pulled = tmp_path / "pulled.cwl"
    run("sbpull", ".", app_id, str(pulled), env=env)
    assert yaml.safe_load(pulled.read_text()) == second.raw
    validate(pulled)

    old = tmp_path / "old.cwl"
    run("sbpull", ".", f"{app_id}/0", str(old), env=env)
    assert yaml.safe_load(old.read_text()) == api.apps.get(f"{app_id}/0").raw
    validate(old)

    unpacked_dir = tmp_path / "unpacked"
    unpacked_dir.mkdir()
    run("sbpull", ".", app_id, str(unpacked_dir / "main.cwl"), "--unpack", env=env)
    files = sorted(p.name for p in unpacked_dir.rglob("*.cwl"))
    assert len(files) == 3, files
    validate(unpacked_dir / "main.cwl")
    top = yaml.safe_load((unpacked_dir / "main.cwl").read_text())
    assert all(isinstance(s["run"], str) for s in top["steps"]), "--unpack writes steps to their own files"
    assert top["label"] == "Sorted"


def test_sbpull_of_a_missing_app_says_not_found(api: sbg.Api, env: dict[str, str], tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(BIN / "sbpull"), ".", "tester/nowhere/none", str(tmp_path / "x.cwl")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "not found" in (proc.stdout + proc.stderr).lower()
    assert not (tmp_path / "x.cwl").exists()
