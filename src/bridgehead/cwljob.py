"""The CWL side of ``bridgehead-cwl-runner``: the packed document and the job order it sends.

Everything here works on local files and plain dicts (no server): packing the tool, choosing the
process to run, folding ``cwl:requirements`` of the job into it, finding secondary files and turning
file objects written in the document itself into literals the server can hold.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from bridgehead.domain.cwl import secondary_name

UNSUPPORTED = 33


class RunnerError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def tool_location(arg: str) -> tuple[str, Path]:
    """``TOOL.cwl`` or ``TOOL.cwl#process`` (one process of a ``$graph``) as a URI, and the file's path."""
    if arg.startswith("file://"):
        return arg, Path(unquote(urlparse(arg).path))
    path, _, fragment = arg.partition("#")
    resolved = Path(path).resolve()
    if not resolved.is_file():
        raise RunnerError(f"The tool {path} does not exist")
    return resolved.as_uri() + (f"#{fragment}" if fragment else ""), resolved


def pack_tool(path: str) -> dict[str, Any]:
    """One self-contained document (steps embedded), as ``cwltool --pack`` would print it.

    A ``#fragment`` selects one process of a ``$graph``; packing renames it ``#main``.
    """
    from cwltool.context import LoadingContext
    from cwltool.load_tool import fetch_document, resolve_and_validate_document
    from cwltool.pack import pack

    logging.getLogger("cwltool").setLevel(logging.WARNING)  # its import set INFO ("Resolved ...")
    lc = LoadingContext()
    lc, workflowobj, uri = fetch_document(tool_location(path)[0], lc)
    lc, uri = resolve_and_validate_document(lc, workflowobj, uri)
    packed: dict[str, Any] = json.loads(json.dumps(pack(lc, uri), default=str))
    graph = packed.get("$graph", [])
    if len(graph) == 1:
        return dict(graph[0])
    return packed


def main_process(doc: dict[str, Any]) -> dict[str, Any]:
    """The process to run (the document itself, or ``#main`` of a ``$graph``); not a copy."""
    graph: list[dict[str, Any]] | None = doc.get("$graph")
    if not graph:
        return doc
    return next((p for p in graph if p.get("id") in ("#main", "main")), graph[0])


def add_job_requirements(proc: dict[str, Any], job: dict[str, Any]) -> None:
    """``cwl:requirements`` of the job order join the process's own and win over them, as in cwltool.

    The server runs what the app says, so they are written into the installed document.
    """
    extra = job.pop("cwl:requirements", None)
    if not extra:
        return
    if isinstance(extra, dict):  # the map form {Class: {...}}
        extra = [{"class": name, **(body or {})} for name, body in extra.items()]
    own = proc.get("requirements") or []
    if isinstance(own, dict):
        own = [{"class": name, **(body or {})} for name, body in own.items()]
    classes = {r.get("class") for r in extra if isinstance(r, dict)}
    proc["requirements"] = [r for r in own if r.get("class") not in classes] + list(extra)


def short(ident: str) -> str:
    return ident.rsplit("#", 1)[-1].rsplit("/", 1)[-1]


def local_path(value: dict[str, Any], base: Path) -> Path | None:
    """Where a File/Directory of the job lives; ``location`` is a URI (percent-encoded), ``path`` is not."""
    location, path = value.get("location"), value.get("path")
    raw = location if isinstance(location, str) else path if isinstance(path, str) else None
    if raw is None:
        return None
    if raw.startswith("file://"):  # packing turns a document's relative ``path`` into one of these too
        return Path(unquote(urlparse(raw).path))
    if "://" in raw:
        raise RunnerError(f"Only local files can be uploaded, not {raw}")
    return (base / (unquote(raw) if isinstance(location, str) else raw)).resolve()


def static_patterns(param: dict[str, Any]) -> list[str]:
    """The input's secondaryFiles patterns that need no expression (those are known before the run)."""
    entries = param.get("secondaryFiles") or []
    out = []
    for entry in entries if isinstance(entries, list) else [entries]:
        pattern = entry.get("pattern") if isinstance(entry, dict) else entry
        if isinstance(pattern, str) and "$(" not in pattern and "${" not in pattern:
            out.append(pattern.removesuffix("?"))
    return out


def with_secondaries(value: Any, patterns: list[str], base: Path) -> Any:
    """Add the local siblings a File's secondaryFiles patterns name, as cwltool finds them on disk.

    The server looks secondary files up beside the primary in the project, so they must be uploaded
    with it even when the job order does not list them.
    """
    if isinstance(value, list):
        return [with_secondaries(v, patterns, base) for v in value]
    if not patterns or not isinstance(value, dict) or value.get("class") != "File":
        return value
    src = local_path(value, base)
    if src is None:
        return value
    listed = [s for s in value.get("secondaryFiles") or [] if isinstance(s, dict)]
    known = {local_path(s, base) for s in listed}
    name = str(value.get("basename") or src.name)
    extra = []
    for pattern in patterns:
        found = src.parent / secondary_name(src.name, pattern)
        if found != src and found not in known and found.exists():
            cls = "Directory" if found.is_dir() else "File"
            extra.append(
                {"class": cls, "location": found.as_uri(), "basename": secondary_name(name, pattern)}
            )
    return {**value, "secondaryFiles": listed + extra} if extra else value


def schema_types(proc: dict[str, Any]) -> dict[str, Any]:
    """The named types of the process's ``SchemaDefRequirement``, by name."""
    out: dict[str, Any] = {}
    for req in proc.get("requirements") or []:
        if isinstance(req, dict) and req.get("class") == "SchemaDefRequirement":
            out.update(
                {str(t["name"]): t for t in req.get("types") or [] if isinstance(t, dict) and "name" in t}
            )
    return out


def find_secondaries(value: Any, param: dict[str, Any], types: dict[str, Any], base: Path) -> Any:
    """``with_secondaries`` for one input, following its type into arrays and record fields (each
    field carries its own patterns) and through unions and named types."""
    return _find(value, param.get("type"), static_patterns(param), types, base)


def _find(value: Any, kind: Any, patterns: list[str], types: dict[str, Any], base: Path) -> Any:
    if isinstance(kind, str):
        kind = types.get(kind, kind)
    if isinstance(kind, list):  # a union: the member the value's shape fits
        wanted = "array" if isinstance(value, list) else "record" if _is_record(value) else None
        kind = next(
            (
                m
                for m in (types.get(k, k) if isinstance(k, str) else k for k in kind)
                if isinstance(m, dict) and m.get("type") == wanted
            ),
            None,
        )
    if isinstance(kind, dict) and kind.get("type") == "array" and isinstance(value, list):
        return [_find(v, kind.get("items"), patterns, types, base) for v in value]
    if isinstance(kind, dict) and kind.get("type") == "record" and _is_record(value):
        out = dict(value)
        for field in kind.get("fields") or []:
            name = str(field.get("name", "")).rsplit("/", 1)[-1].rsplit("#", 1)[-1]
            if name in out:
                out[name] = _find(out[name], field.get("type"), static_patterns(field), types, base)
        return out
    return with_secondaries(value, patterns, base)


def _is_record(value: Any) -> bool:
    return isinstance(value, dict) and "class" not in value


LITERAL_LIMIT = 1 << 20  # bytes of text a document may carry inline per file


def inline_file_objects(doc: dict[str, Any]) -> None:
    """Turn File/Directory objects written in the document into literals the server can hold.

    An ``InitialWorkDirRequirement`` listing or a step default may name a file beside the tool; the
    server does not share this disk (and rejects a ``location`` it cannot resolve), so such objects
    become File literals (``contents``) and Directory literals (``listing``). Input defaults of the
    process to run are left alone: they are uploaded as task inputs. A file that is not UTF-8 text or
    exceeds ``LITERAL_LIMIT`` is left as it was.
    """
    proc = main_process(doc)
    defaults = {i: p.pop("default") for i, p in enumerate(proc.get("inputs") or []) if "default" in p}
    try:
        _inline(doc)
    finally:
        for i, default in defaults.items():
            proc["inputs"][i]["default"] = default


def _inline(node: Any) -> None:
    if isinstance(node, list):
        for i, item in enumerate(node):
            node[i] = _literal(item) if _is_local_object(item) else item
            _inline(node[i])
    elif isinstance(node, dict):
        for key, item in node.items():
            node[key] = _literal(item) if _is_local_object(item) else item
            _inline(node[key])


def _is_local_object(node: Any) -> bool:
    if not isinstance(node, dict) or node.get("class") not in ("File", "Directory"):
        return False
    location = node.get("location") or node.get("path")
    return isinstance(location, str) and (location.startswith("file://") or location.startswith("/"))


def _literal(value: dict[str, Any]) -> dict[str, Any]:
    src = local_path(value, Path("/"))
    if src is None:
        return value
    rest = {k: v for k, v in value.items() if k not in ("location", "path", "basename", "listing")}
    name = str(value.get("basename") or src.name)
    if value["class"] == "Directory":
        if not src.is_dir():
            return value
        listing = [
            _literal({"class": "Directory" if e.is_dir() else "File", "location": e.as_uri()})
            for e in sorted(src.iterdir())
            if e.is_dir() or e.is_file()
        ]
        return {**rest, "basename": name, "listing": listing}
    try:
        if not src.is_file() or src.stat().st_size > LITERAL_LIMIT:
            return value
        data = src.read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return value
    # ``size`` too: a ResourceRequirement may read it before the literal is written out.
    return {**rest, "basename": name, "contents": text, "size": len(data)}
