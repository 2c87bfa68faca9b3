"""The CWL corpus in tests/cwl through ``bridgehead-cwl-runner`` and cwltest, against one live server.

The runner is a client of the public API, so one server on SQLite is enough here; the database
matrix for execution is covered by test_local_api.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest

from bridgehead.embedded import EmbeddedServer
from tests.conftest import start_server

CWL = Path(__file__).resolve().parents[1] / "cwl"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tls_dir: Path) -> Iterator[EmbeddedServer]:
    srv = start_server(tmp_path_factory.mktemp("cwl"), tls_dir, engine="local")
    try:
        yield srv
    finally:
        srv.stop()


def runner_env(server: EmbeddedServer) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        BRIDGEHEAD_URL=server.url, BRIDGEHEAD_TOKEN=server.token, REQUESTS_CA_BUNDLE=str(server.ca_file)
    )
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_corpus_passes_under_cwltest(server: EmbeddedServer, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            str(BIN / "cwltest"),
            "--test",
            str(CWL / "corpus.yaml"),
            "--tool",
            "bridgehead-cwl-runner",
            "-j2",
            "--junit-xml",
            str(tmp_path / "junit.xml"),
        ],
        cwd=CWL,
        env=runner_env(server),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    suite = ElementTree.parse(tmp_path / "junit.xml").getroot()
    cases = suite.findall(".//testcase")
    assert len(cases) == 15
    assert [
        c.get("name") for c in cases if c.find("failure") is not None or c.find("skipped") is not None
    ] == []


@pytest.mark.parametrize(
    ("tool", "code", "says"),
    [
        ("docker-required.cwl", 33, "DockerRequirement"),
        ("fails.cwl", 1, "exited with code 4"),
    ],
)
def test_runner_exit_codes(server: EmbeddedServer, tmp_path: Path, tool: str, code: int, says: str) -> None:
    proc = subprocess.run(
        [
            str(BIN / "bridgehead-cwl-runner"),
            "--outdir",
            str(tmp_path),
            "--tmpdir-prefix",
            "/tmp/x",
            "--relax-path-checks",
            str(CWL / tool),
        ],
        cwd=tmp_path,
        env=runner_env(server),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == code, proc.stderr
    assert says in proc.stderr
    assert proc.stdout == ""


def test_runner_starts_its_own_server_when_none_is_configured(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGEHEAD_")}
    proc = subprocess.run(
        [
            str(BIN / "bridgehead-cwl-runner"),
            "--quiet",
            "--outdir",
            str(tmp_path),
            "record-enum.cwl",
            "record-enum-job.yml",
        ],
        cwd=CWL,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["summary"] == {"name": "s1", "mode": "slow", "total": 42}
    said = Path(out["said"]["path"])
    assert said.parent == tmp_path and said.read_text() == "s1 21 slow 2 none\n"
    assert out["said"]["checksum"] == "sha1$c10432834ed9f58f3dba1866dc975474077f2c86"
