"""Apps on the wire: install (JSON, YAML, JSON-string YAML), revisions, reads, summary, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bridgehead.embedded import EmbeddedServer
from tests.support.dbstate import snapshot

DATA = Path(__file__).resolve().parents[1] / "data" / "apps"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DATA / name).read_text())
    return data


@pytest.fixture(scope="module")
def project(http: httpx.Client) -> str:
    resp = http.post("/projects", json={"name": "apps wire"})
    assert resp.status_code == 201, resp.text
    pid: str = resp.json()["id"]
    return pid


def app_rows(server: EmbeddedServer) -> tuple[str, str]:
    snap = snapshot(server.resolved_database_url)
    return snap["apps"], snap["app_revisions"]


def test_install_json_object_stamps_sbg_keys(http: httpx.Client, project: str) -> None:
    raw = load("wc.cwl")
    raw["sbg:revisionNotes"] = "first"
    raw["sbg:custom"] = {"kept": True}
    resp = http.post(f"/apps/{project}/wc/raw", json=raw)
    assert resp.status_code == 200, resp.text
    stored = resp.json()
    assert stored["sbg:id"] == f"{project}/wc/0"
    assert stored["sbg:revision"] == 0
    assert stored["sbg:latestRevision"] == 0
    assert stored["sbg:project"] == project
    assert stored["sbg:createdBy"] == "tester" and stored["sbg:modifiedBy"] == "tester"
    assert isinstance(stored["sbg:createdOn"], int) and isinstance(stored["sbg:modifiedOn"], int)
    assert stored["sbg:revisionsInfo"] == [
        {
            "sbg:revision": 0,
            "sbg:modifiedBy": "tester",
            "sbg:modifiedOn": stored["sbg:modifiedOn"],
            "sbg:revisionNotes": "first",
        }
    ]
    assert stored["sbg:contributors"] == ["tester"]
    assert stored["sbg:appVersion"] == ["v1.2"]
    assert stored["sbg:custom"] == {"kept": True}
    assert stored["$namespaces"] == {"sbg": "https://sevenbridges.com"}
    for key in ("class", "inputs", "outputs", "baseCommand", "requirements", "hints", "label"):
        assert stored[key] == raw[key]

    app = http.get(f"/apps/{project}/wc").json()
    assert app["id"] == f"{project}/wc/0"
    assert app["href"].endswith(f"/v2/apps/{project}/wc/0") and app["href"].startswith("https://")
    assert app["revision"] == 0 and app["name"] == "wc" and app["project"] == project
    assert app["raw"] == stored


def test_summary_is_stored_in_the_shape_tasks_read(
    server: EmbeddedServer, http: httpx.Client, project: str
) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(server.resolved_database_url)
    with engine.connect() as conn:
        value = conn.execute(
            text(
                "SELECT r.summary FROM app_revisions r JOIN apps a ON a.id = r.app_id "
                "WHERE a.sbg_id = :id AND r.revision = 0"
            ),
            {"id": f"{project}/wc"},
        ).scalar_one()
    engine.dispose()
    summary = json.loads(value) if isinstance(value, str) else value
    assert summary["class"] == "CommandLineTool" and summary["cwlVersion"] == "v1.2"
    assert summary["label"] == "Line counter"
    inputs = {i["id"]: i for i in summary["inputs"]}
    assert inputs["reads"] == {
        "id": "reads",
        "type": "File",
        "required": True,
        "secondaryFiles": [{"pattern": ".bai", "required": True}, {"pattern": ".crai", "required": False}],
        "default": None,
        "label": "Input file",
    }
    assert inputs["lines"]["type"] == ["null", "int"] and inputs["lines"]["required"] is False
    assert inputs["mode"]["type"] == {"type": "enum", "symbols": ["fast", "slow"]}
    assert inputs["mode"]["default"] == "fast" and inputs["mode"]["required"] is False
    assert summary["outputs"] == [{"id": "count", "type": "File", "required": True, "secondaryFiles": []}]
    assert summary["batch_input"] == "reads"
    assert summary["batch_by"] == {"type": "CRITERIA", "criteria": ["metadata.sample_id"]}
    assert summary["resources"] == {"cores": 2, "ram_mib": 2048}
    assert summary["steps"] == 1
    assert summary["requirements"] == ["ResourceRequirement"]


def test_yaml_bodies_raw_and_as_json_string(http: httpx.Client, project: str) -> None:
    text = (DATA / "expr.cwl").read_text()
    resp = http.post(f"/apps/{project}/expr/raw", content=text, headers={"Content-Type": "application/yaml"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["sbg:id"] == f"{project}/expr/0"
    assert resp.json()["expression"] == load("expr.cwl")["expression"]
    # what sevenbridges-python sends for raw_format='yaml': a JSON string literal holding YAML
    resp = http.post(
        f"/apps/{project}/expr/raw", content=json.dumps(text), headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["sbg:id"] == f"{project}/expr/1"


def test_graph_document_and_packed_workflow(http: httpx.Client, project: str) -> None:
    resp = http.post(
        f"/apps/{project}/graph/raw",
        content=(DATA / "graph.cwl").read_text(),
        headers={"Content-Type": "application/yaml"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["$graph"][1]["id"] == "main"


def test_revisions_are_strictly_incremental(server: EmbeddedServer, http: httpx.Client, project: str) -> None:
    raw = load("wc.cwl")
    http.post(f"/apps/{project}/rev/raw", json=raw).raise_for_status()
    resp = http.post(f"/apps/{project}/rev/1/raw", json={**raw, "label": "second"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["sbg:id"] == f"{project}/rev/1"
    assert [i["sbg:revision"] for i in resp.json()["sbg:revisionsInfo"]] == [0, 1]
    # the install path on an existing app adds the next revision
    resp = http.post(f"/apps/{project}/rev/raw", json={**raw, "label": "third"})
    assert resp.json()["sbg:id"] == f"{project}/rev/2"

    before = app_rows(server)
    for bad in (2, 4, 0):
        resp = http.post(f"/apps/{project}/rev/{bad}/raw", json=raw)
        assert resp.status_code == 409
        assert resp.json()["code"] == 6003
        assert "latest revision is 2" in resp.json()["message"] and "must be 3" in resp.json()["message"]
    assert app_rows(server) == before

    latest = http.get(f"/apps/{project}/rev").json()
    assert latest["revision"] == 2 and latest["raw"]["label"] == "third"
    first = http.get(f"/apps/{project}/rev/0").json()
    assert first["revision"] == 0 and first["raw"]["label"] == "Line counter"
    assert first["raw"]["sbg:latestRevision"] == 2
    assert http.get(f"/apps/{project}/rev/1/raw").json()["label"] == "second"
    assert http.get(f"/apps/{project}/rev/raw").json()["sbg:id"] == f"{project}/rev/2"
    missing = http.get(f"/apps/{project}/rev/7")
    assert missing.status_code == 404 and missing.json()["code"] == 6002


def test_fields_selector_on_one_app(http: httpx.Client, project: str) -> None:
    body = http.get(f"/apps/{project}/wc", params={"fields": "id,revision"}).json()
    assert body == {"id": f"{project}/wc/0", "revision": 0}


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)

EXTERNAL_RUN = {
    "cwlVersion": "v1.2",
    "class": "Workflow",
    "inputs": [],
    "outputs": [],
    "steps": [{"id": "s", "run": "file:///etc/hostname", "in": [], "out": []}],
}
EXTERNAL_INCLUDE = {
    "cwlVersion": "v1.2",
    "class": "CommandLineTool",
    "baseCommand": "true",
    "inputs": [],
    "outputs": [],
    "doc": {"$include": "file:///etc/hostname"},
}

BAD_BODIES: list[tuple[str, bytes, str, str]] = [
    (
        "step run outside the document",
        json.dumps(EXTERNAL_RUN).encode(),
        "application/json",
        "file:///etc/hostname",
    ),
    ("$include of a server file", json.dumps(EXTERNAL_INCLUDE).encode(), "application/json", "not allowed"),
    ("YAML alias bomb", ALIAS_BOMB.encode(), "application/yaml", "more than"),
    ("deeply nested JSON", b"[" * 50000 + b"]" * 50000, "application/json", "nested deeper"),
    (
        "NaN in JSON",
        b'{"cwlVersion": "v1.2", "class": "CommandLineTool", "x": NaN}',
        "application/json",
        "NaN",
    ),
    ("not CWL at all", b'{"hello": "world"}', "application/json", "cwlVersion"),
    (
        "YAML that does not parse",
        b"cwlVersion: v1.2\nclass: [CommandLineTool\n",
        "application/yaml",
        "line 3",
    ),
    ("JSON string with broken YAML", json.dumps("a: [1\nb: 2").encode(), "application/json", "line 2"),
    (
        "unknown class",
        b'{"cwlVersion": "v1.2", "class": "Pipeline", "inputs": [], "outputs": []}',
        "application/json",
        "'Pipeline'",
    ),
    (
        "unsupported version",
        b'{"cwlVersion": "draft-2", "class": "CommandLineTool"}',
        "application/json",
        "draft-2",
    ),
    ("a list, not a document", b"[1, 2]", "application/json", "got list"),
    ("empty body", b"", "application/json", "Missing request body"),
    (
        "bad type deep inside",
        b"cwlVersion: v1.2\nclass: CommandLineTool\ninputs:\n  x:\n    type: Filez\noutputs: []\n",
        "application/yaml",
        "line 5",
    ),
]


@pytest.mark.parametrize(("label", "body", "ctype", "needle"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_documents_are_refused_and_change_nothing(
    server: EmbeddedServer, http: httpx.Client, project: str, label: str, body: bytes, ctype: str, needle: str
) -> None:
    before = app_rows(server)
    resp = http.post(f"/apps/{project}/broken/raw", content=body, headers={"Content-Type": ctype})
    assert resp.status_code == 400, resp.text
    err = resp.json()
    assert set(err) == {"status", "code", "message", "more_info"}
    assert err["code"] == 90000
    assert needle in err["message"], err["message"]
    assert app_rows(server) == before
    assert http.get(f"/apps/{project}/broken").status_code == 404


def test_invalid_json_document_reports_the_line(http: httpx.Client, project: str) -> None:
    body = (
        '{\n  "cwlVersion": "v1.2",\n  "class": "CommandLineTool",\n'
        '  "inputs": [\n    {"id": "x", "type": "Filex"}\n  ],\n  "outputs": []\n}'
    )
    resp = http.post(
        f"/apps/{project}/broken/raw", content=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400
    assert "line 5" in resp.json()["message"] and "Filex" in resp.json()["message"]


@pytest.mark.parametrize("name", ["bad.name", "bad!name", "b%40d", "-lead"])
def test_app_name_with_bad_characters(
    server: EmbeddedServer, http: httpx.Client, project: str, name: str
) -> None:
    before = app_rows(server)
    resp = http.post(f"/apps/{project}/{name}/raw", json=load("wc.cwl"))
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"] == 6011
    assert app_rows(server) == before


def test_malformed_revision_and_unknown_app(http: httpx.Client, project: str) -> None:
    resp = http.get(f"/apps/{project}/wc/latest")
    assert resp.status_code == 400 and resp.json()["code"] == 6011
    resp = http.get(f"/apps/{project}/nope")
    assert resp.status_code == 404 and resp.json()["code"] == 6002
    resp = http.get("/apps/tester/no-such-project/wc")
    assert resp.status_code == 404 and resp.json()["code"] == 6002


def test_raw_over_ten_mib_is_refused(server: EmbeddedServer, http: httpx.Client, project: str) -> None:
    before = app_rows(server)
    raw = load("wc.cwl")
    raw["doc"] = "x" * (10 * 1024 * 1024 + 10)
    resp = http.post(f"/apps/{project}/huge/raw", json=raw)
    assert resp.status_code == 413
    assert "10 MiB" in resp.json()["message"]
    # chunked upload without Content-Length is cut off as well
    payload = json.dumps(raw).encode()

    def chunks() -> Any:
        for i in range(0, len(payload), 1 << 20):
            yield payload[i : i + (1 << 20)]

    resp = http.post(
        f"/apps/{project}/huge/raw", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 413
    assert app_rows(server) == before


def test_permissions(server: EmbeddedServer, http: httpx.Client, project: str, ssl_context: Any) -> None:
    token = server.create_user("apps-outsider")
    with httpx.Client(base_url=server.url, verify=ssl_context, headers={"X-SBG-Auth-Token": token}) as other:
        resp = other.get(f"/apps/{project}/wc")
        assert resp.status_code == 403 and resp.json()["code"] == 6001
        resp = other.post(f"/apps/{project}/intruder/raw", json=load("wc.cwl"))
        assert resp.status_code == 403 and resp.json()["code"] == 6001
        # a read-only member sees the app but cannot add revisions
        http.post(f"/projects/{project}/members", json={"username": "apps-outsider"}).raise_for_status()
        assert other.get(f"/apps/{project}/wc").status_code == 200
        resp = other.post(f"/apps/{project}/wc/raw", json=load("wc.cwl"))
        assert resp.status_code == 403 and resp.json()["code"] == 6001


def test_integers_beyond_64_bits_round_trip(http: httpx.Client, project: str) -> None:
    """A CWL ``long`` default past 64 bits is valid JSON: installed and read back exactly, never a 500."""
    huge = 2**70 + 3
    raw = {
        "cwlVersion": "v1.2",
        "class": "CommandLineTool",
        "baseCommand": ["echo"],
        "inputs": [{"id": "n", "type": "long", "default": huge, "inputBinding": {}}],
        "outputs": [],
    }
    resp = http.post(f"/apps/{project}/huge/raw", json=raw)
    assert resp.status_code == 200, resp.text
    assert resp.json()["inputs"][0]["default"] == huge
    again = http.get(f"/apps/{project}/huge")
    assert again.status_code == 200 and again.json()["raw"]["inputs"][0]["default"] == huge
    task = http.post("/tasks", json={"project": project, "app": f"{project}/huge", "inputs": {"n": huge}})
    assert task.status_code == 201, task.text
    assert task.json()["inputs"]["n"] == huge
