"""domain/cwl in-process: summaries of every supported shape, the per-revision tool cache, job checks."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from cwl_utils.errors import WorkflowException
from cwltool.context import RuntimeContext

from bridgehead.domain import cwl

DATA = Path(__file__).resolve().parents[1] / "data" / "apps"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DATA / name).read_text())
    return data


def packed_workflow() -> dict[str, Any]:
    """The multi-file workflow as sbpack packs it (steps inlined as ``run`` dicts)."""
    from sbpack.pack import pack

    packed: dict[str, Any] = pack(str(DATA / "wf" / "main.cwl"))
    return packed


def test_summary_of_packed_workflow() -> None:
    raw = packed_workflow()
    summary = cwl.summarize(cwl.load_process("t/p/wf/0", raw), raw)
    assert summary["class"] == "Workflow" and summary["cwlVersion"] == "v1.2"
    assert summary["label"] == "Sort then count"
    assert summary["steps"] == 2
    assert summary["inputs"] == [
        {
            "id": "infile",
            "type": "File",
            "required": True,
            "secondaryFiles": [],
            "default": None,
            "label": None,
        }
    ]
    assert summary["outputs"] == [
        {"id": "line_count", "type": "File", "required": True, "secondaryFiles": []}
    ]
    assert summary["resources"] == {"cores": 4, "ram_mib": 1024}  # the sort step asks for 4 cores
    assert summary["requirements"] == ["StepInputExpressionRequirement", "ResourceRequirement"]
    assert summary["batch_input"] is None and summary["batch_by"] is None


def test_summary_of_graph_and_expression_tool() -> None:
    graph = load("graph.cwl")
    summary = cwl.summarize(cwl.load_process("t/p/graph/0", graph), graph)
    assert (summary["class"], summary["cwlVersion"], summary["steps"]) == ("Workflow", "v1.1", 1)
    assert [i["id"] for i in summary["inputs"]] == ["message"]
    expr = load("expr.cwl")
    summary = cwl.summarize(cwl.load_process("t/p/expr/0", expr), expr)
    assert (summary["class"], summary["cwlVersion"]) == ("ExpressionTool", "v1.0")
    assert summary["inputs"][1]["type"] == {"type": "array", "items": "string"}
    assert summary["requirements"] == ["InlineJavascriptRequirement"]
    assert summary["resources"] == {"cores": 1, "ram_mib": 1024}


def test_records_and_item_batching() -> None:
    raw = {
        "cwlVersion": "v1.2",
        "class": "CommandLineTool",
        "baseCommand": "true",
        "inputs": [
            {
                "id": "sample",
                "type": [
                    "null",
                    {"type": "record", "name": "S", "fields": [{"name": "reads", "type": "File[]"}]},
                ],
            },
            {"id": "many", "type": "string[]?"},
        ],
        "outputs": [{"id": "maybe", "type": "File?", "outputBinding": {"glob": "x"}}],
        "sbg:batchInput": "sample",
        "sbg:batchBy": {"type": "ITEM"},
    }
    summary = cwl.summarize(cwl.load_process("t/p/rec/0", raw), raw)
    sample = summary["inputs"][0]
    assert sample["type"] == [
        "null",
        {"type": "record", "fields": [{"name": "reads", "type": {"type": "array", "items": "File"}}]},
    ]
    assert sample["required"] is False
    assert summary["inputs"][1]["type"] == ["null", {"type": "array", "items": "string"}]
    assert summary["outputs"][0] == {
        "id": "maybe",
        "type": ["null", "File"],
        "required": False,
        "secondaryFiles": [],
    }
    assert summary["batch_input"] == "sample" and summary["batch_by"] == {"type": "ITEM"}


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("File", "File"),
        ("File?", ["null", "File"]),
        ("int[]", {"type": "array", "items": "int"}),
        ("File[]?", ["null", {"type": "array", "items": "File"}]),
        ("file:///x.cwl#main/Enum", "Enum"),
        (
            {"type": "enum", "symbols": ["file:///x.cwl#main/e/a", "#b"]},
            {"type": "enum", "symbols": ["a", "b"]},
        ),
    ],
)
def test_canonical_types(given: Any, canonical: Any) -> None:
    assert cwl.canonical_type(given) == canonical


def test_loaded_tool_is_cached_per_revision() -> None:
    raw = {**load("wc.cwl"), "sbg:id": "t/p/cache/0", "sbg:modifiedOn": 1}
    first = cwl.loaded_tool("t/p/cache/0", raw)
    assert cwl.loaded_tool("t/p/cache/0", raw) is first
    # the same id with different stored content (project deleted and re-created) is loaded afresh
    changed = {**raw, "sbg:modifiedOn": 2, "label": "other"}
    second = cwl.loaded_tool("t/p/cache/0", changed)
    assert second is not first and second.tool["label"] == "other"
    cwl.forget("t/p/cache/0")
    assert cwl.loaded_tool("t/p/cache/0", changed) is not second


def test_loaded_tool_from_several_threads() -> None:
    raw = load("wc.cwl")
    results: dict[int, Any] = {}
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            results[n] = cwl.loaded_tool(f"t/p/threads/{n % 3}", {**raw, "sbg:id": f"t/p/threads/{n % 3}"})
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({id(results[n]) for n in range(9)}) == 3  # one load per revision, shared
    for n in range(9):
        assert results[n] is cwl.loaded_tool(
            f"t/p/threads/{n % 3}", {**raw, "sbg:id": f"t/p/threads/{n % 3}"}
        )


def test_cached_tool_checks_a_job_order(tmp_path: Path) -> None:
    """What task validation does with the cached tool: cwltool's own job-order check."""
    tool = cwl.loaded_tool("t/p/job/0", load("wc.cwl"))
    rc = RuntimeContext({"use_container": False, "outdir": str(tmp_path), "basedir": str(tmp_path)})
    reads = tmp_path / "r.txt"
    reads.write_text("a\nb\n")
    bai = tmp_path / "r.txt.bai"
    bai.write_text("")
    index: dict[str, Any] = {"class": "File", "location": bai.as_uri(), "path": str(bai)}
    ok: dict[str, Any] = {
        "reads": {"class": "File", "location": reads.as_uri(), "path": str(reads), "secondaryFiles": [index]}
    }
    builder = tool._init_job(ok, rc)
    assert builder.job["mode"] == "fast"  # the default was applied
    with pytest.raises(WorkflowException, match="reads"):
        tool._init_job({}, rc)
    with pytest.raises(WorkflowException, match="mode"):
        tool._init_job({**ok, "mode": "medium"}, rc)


def test_invalid_documents_name_the_problem() -> None:
    with pytest.raises(cwl.CwlInvalid, match="cwlVersion"):
        cwl.load_process("t/p/bad/0", {"class": "CommandLineTool"})
    with pytest.raises(cwl.CwlInvalid, match=r"\$graph\[1\]\.class"):
        cwl.load_process("t/p/bad/0", {"cwlVersion": "v1.2", "$graph": [{"class": "Workflow"}, {}]})
    text = "cwlVersion: v1.2\nclass: CommandLineTool\ninputs:\n  a: int\noutputs:\n  o:\n    type: Nope\n"
    with pytest.raises(cwl.CwlInvalid, match=r"line 7.*Nope"):
        cwl.load_process("t/p/bad/0", yaml.safe_load(text), text)


def test_warm_up_leaves_later_loads_fast() -> None:
    cwl.warm_in_background().join(timeout=120)
    start = time.perf_counter()
    cwl.load_process("t/p/after-warm/0", load("wc.cwl"))
    assert time.perf_counter() - start < 5  # ms on an idle machine; generous for a busy one
