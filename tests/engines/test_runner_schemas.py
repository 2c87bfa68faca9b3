"""Parsed CWL schemas saved by one job process and restored by the next (what slurm jobs share).

Each case runs in a fresh interpreter: the test process itself has the schemas parsed already.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

RUNNER = Path(__file__).resolve().parents[2] / "src" / "bridgehead" / "engines" / "runner.py"

TOOL = {
    "cwlVersion": "v1.2",
    "class": "CommandLineTool",
    "baseCommand": ["wc", "-l"],
    "inputs": {"infile": {"type": "File", "inputBinding": {"position": 1}}},
    "outputs": {"count": {"type": "stdout"}},
    "stdout": "count.txt",
}

# Loads runner.py by path as the slurm job does, counts real schema parses, loads the tool and
# validates a job order against it (which needs the File schema from the restored v1.0 entry).
SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, sys
    from pathlib import Path
    import schema_salad.schema
    parses = []
    real = schema_salad.schema.load_schema
    def counting(*args, **kwargs):
        parses.append(args[0])
        return real(*args, **kwargs)
    schema_salad.schema.load_schema = counting
    import cwltool.process
    cwltool.process.load_schema = counting
    spec = importlib.util.spec_from_file_location("job_runner", sys.argv[1])
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    raw = json.loads(sys.argv[3])
    runner.prepare_schemas(Path(sys.argv[2]), raw)
    tool = runner.load_tool(raw)
    data = Path(sys.argv[2]).parent / "in.txt"
    data.write_text("a\\nb\\n")
    job = {"infile": {"class": "File", "location": data.as_uri()}}
    builder = tool._init_job(job, __import__("cwltool.context").context.RuntimeContext({"basedir": "/"}))
    print(json.dumps({"parses": len(parses), "infile": builder.job["infile"]["basename"]}))
    """
)


def _job(cache: Path) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(RUNNER), str(cache), json.dumps(TOOL)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert isinstance(result, dict)
    return result


def test_second_process_restores_instead_of_parsing(tmp_path: Path) -> None:
    cache = tmp_path / "schemas"
    first = _job(cache)
    assert first == {"parses": 2, "infile": "in.txt"}  # v1.2 (the tool's) and v1.0 (File, Directory)
    saved = list(cache.glob("cwl-schemas-*.pickle"))
    assert len(saved) == 1
    assert _job(cache) == {"parses": 0, "infile": "in.txt"}
    assert list(cache.glob("*")) == saved  # nothing rewritten, no temporary left behind


def test_unreadable_cache_is_parsed_again_and_replaced(tmp_path: Path) -> None:
    cache = tmp_path / "schemas"
    _job(cache)
    [saved] = cache.glob("cwl-schemas-*.pickle")
    saved.write_bytes(b"not a pickle")
    assert _job(cache) == {"parses": 2, "infile": "in.txt"}
    assert _job(cache) == {"parses": 0, "infile": "in.txt"}


def test_server_seeded_cache_spares_the_first_job_parsing(tmp_path: Path) -> None:
    from bridgehead.domain import cwl
    from bridgehead.engines import runner

    cache = tmp_path / "schemas"
    cwl.warm()  # the server has parsed the schemas by the time it seeds
    with cwl.loader_lock():
        runner.seed_schemas(cache)
    assert _job(cache) == {"parses": 0, "infile": "in.txt"}
