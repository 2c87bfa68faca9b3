"""The runner's CWL-side preparation (bridgehead.cwljob) on real files; the end-to-end cases are in the
corpus (test_cwl_corpus.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridgehead.cwljob import (
    RunnerError,
    add_job_requirements,
    find_secondaries,
    inline_file_objects,
    local_path,
    pack_tool,
    schema_types,
    tool_location,
    with_secondaries,
)

CWL = Path(__file__).resolve().parents[1] / "cwl"


def test_fragment_selects_a_graph_process_packed_as_main() -> None:
    uri, path = tool_location(f"{CWL}/graph.cwl#shout")
    assert uri == (CWL / "graph.cwl").as_uri() + "#shout" and path == CWL / "graph.cwl"
    packed = pack_tool(f"{CWL}/graph.cwl#shout")
    main = next(p for p in packed["$graph"] if p["id"] == "#main")
    assert main["class"] == "Workflow"
    with pytest.raises(RunnerError, match="does not exist"):
        tool_location(f"{CWL}/no-such.cwl#main")


def test_job_requirements_replace_the_same_class_and_leave_the_rest() -> None:
    proc = {"requirements": {"EnvVarRequirement": {"envDef": {"A": "tool"}}, "ShellCommandRequirement": {}}}
    job = {"x": 1, "cwl:requirements": [{"class": "EnvVarRequirement", "envDef": {"A": "job"}}]}
    add_job_requirements(proc, job)
    assert job == {"x": 1}
    assert proc["requirements"] == [
        {"class": "ShellCommandRequirement"},
        {"class": "EnvVarRequirement", "envDef": {"A": "job"}},
    ]


def test_location_is_percent_decoded_but_path_is_not(tmp_path: Path) -> None:
    assert local_path({"location": "data/%61.txt"}, tmp_path) == tmp_path / "data" / "a.txt"
    assert local_path({"path": "data/%61.txt"}, tmp_path) == tmp_path / "data" / "%61.txt"
    with pytest.raises(RunnerError, match="Only local files"):
        local_path({"location": "https://example.org/x"}, tmp_path)


def test_secondary_files_found_beside_the_input(tmp_path: Path) -> None:
    for name in ("ref.fa", "ref.fa.fai", "ref.dict"):
        (tmp_path / name).write_text(name)
    value = {"class": "File", "location": "ref.fa"}
    out = with_secondaries([value], [".fai", "^.dict", ".bai"], tmp_path)
    assert [s["basename"] for s in out[0]["secondaryFiles"]] == ["ref.fa.fai", "ref.dict"]
    listed = {**value, "secondaryFiles": [{"class": "File", "location": "ref.fa.fai"}]}
    again = with_secondaries(listed, [".fai"], tmp_path)
    assert again["secondaryFiles"] == listed["secondaryFiles"]  # already listed: not added twice


def test_document_file_objects_become_literals_but_input_defaults_stay(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "t.txt").write_text("text\n")
    (tmp_path / "bin.dat").write_bytes(b"\xff\xfe\x00")
    default = {"class": "File", "location": (tmp_path / "d" / "sub" / "t.txt").as_uri()}
    doc = {
        "class": "CommandLineTool",
        "inputs": [{"id": "#main/f", "type": "File", "default": dict(default)}],
        "requirements": [
            {
                "class": "InitialWorkDirRequirement",
                "listing": [
                    {"class": "Directory", "location": (tmp_path / "d").as_uri()},
                    {"class": "File", "location": (tmp_path / "bin.dat").as_uri()},
                ],
            }
        ],
    }
    inline_file_objects(doc)
    directory, binary = doc["requirements"][0]["listing"]
    assert directory == {
        "class": "Directory",
        "basename": "d",
        "listing": [
            {
                "class": "Directory",
                "basename": "sub",
                "listing": [{"class": "File", "basename": "t.txt", "contents": "text\n", "size": 5}],
            }
        ],
    }
    assert binary["location"] == (tmp_path / "bin.dat").as_uri()  # not text: left for the server
    assert doc["inputs"][0]["default"] == default


def test_secondary_files_of_record_fields_through_a_named_type(tmp_path: Path) -> None:
    for name in ("A", "A.s2", "B", "B.s3", "C"):
        (tmp_path / name).write_text(name)
    record = {
        "name": "#main/Rec",
        "type": "record",
        "fields": [
            {"name": "#main/Rec/f1", "type": "File", "secondaryFiles": {"pattern": ".s2"}},
            {"name": "#main/Rec/f2", "type": {"type": "array", "items": "File"}, "secondaryFiles": [".s3"]},
        ],
    }
    proc = {"requirements": [{"class": "SchemaDefRequirement", "types": [record]}]}
    value = {
        "f1": {"class": "File", "location": "A"},
        "f2": [{"class": "File", "location": "B"}, {"class": "File", "location": "C"}],
    }
    out = find_secondaries(value, {"type": ["null", "#main/Rec"]}, schema_types(proc), tmp_path)
    assert [s["basename"] for s in out["f1"]["secondaryFiles"]] == ["A.s2"]
    assert [s["basename"] for s in out["f2"][0]["secondaryFiles"]] == ["B.s3"]
    assert "secondaryFiles" not in out["f2"][1]  # C.s3 does not exist: nothing is made up


def test_a_packed_path_uri_is_read_as_a_uri(tmp_path: Path) -> None:
    uri = (tmp_path / "x y.txt").as_uri()  # "x%20y.txt"
    assert local_path({"class": "File", "path": uri}, Path("/elsewhere")) == tmp_path / "x y.txt"
