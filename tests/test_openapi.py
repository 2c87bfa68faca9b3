"""The committed openapi.json is the generated document: any wire change shows up as a diff."""

from __future__ import annotations

import json
from pathlib import Path

from bridgehead.openapi import render

COMMITTED = Path(__file__).resolve().parents[1] / "openapi.json"


def test_committed_document_matches_the_code() -> None:
    generated = render()
    assert COMMITTED.exists(), "openapi.json is missing: run `make openapi`"
    assert COMMITTED.read_text() == generated, "openapi.json is out of date: run `make openapi` and commit it"


def test_document_is_deterministic_and_uses_the_sbg_error_shape() -> None:
    first, second = render(), render()
    assert first == second
    doc = json.loads(first)
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    operations = [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items()]
    assert any(path == "/v2/projects" and method == "post" for path, method, _ in operations)
    for path, method, op in operations:
        assert "422" not in op["responses"], (path, method)
        assert op["responses"]["401"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
    create = doc["paths"]["/v2/projects"]["post"]
    assert "ProjectCreate" in json.dumps(create["requestBody"])
    assert create["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ProjectOut"
    }
