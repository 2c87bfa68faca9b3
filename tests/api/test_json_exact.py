"""Integers beyond 64 bits survive the database's JSON columns exactly (CWL ``long`` values).

orjson reads such a number as a float; the JSON columns go through ``jsonutil.loads``, which hands
them to the standard library instead.
"""

from __future__ import annotations

import httpx

from bridgehead import jsonutil

BIG = 2**70 + 1

TOOL = {
    "cwlVersion": "v1.2",
    "class": "CommandLineTool",
    "baseCommand": ["echo"],
    "inputs": [{"id": "n", "type": "long", "default": BIG, "inputBinding": {"position": 1}}],
    "outputs": [],
}


def test_loads_is_exact_for_long_integers() -> None:
    assert jsonutil.loads(b'{"n": 1180591620717411303425}') == {"n": BIG}
    assert jsonutil.loads(memoryview(b"[1, 2.5]")) == [1, 2.5]
    assert jsonutil.loads('{"id": "1234567890123456789012345"}') == {"id": "1234567890123456789012345"}


def test_a_long_default_and_input_come_back_exactly(http: httpx.Client) -> None:
    project = http.post("/projects", json={"name": "exact json"}).json()["id"]
    installed = http.post(f"/apps/{project}/big/raw", json=TOOL)
    assert installed.status_code in (200, 201), installed.text
    raw = http.get(f"/apps/{project}/big/raw").json()
    assert raw["inputs"][0]["default"] == BIG
    task = http.post("/tasks", json={"project": project, "app": f"{project}/big", "inputs": {"n": BIG + 1}})
    assert task.status_code == 201, task.text
    assert http.get(f"/tasks/{task.json()['id']}").json()["inputs"]["n"] == BIG + 1
