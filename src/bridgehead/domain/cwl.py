"""CWL documents: parse request bodies, validate with cwltool, summarise, and cache loaded tools.

cwltool parses its metaschema on the first load in a process (about half a second); later loads reuse
``cwltool.process.SCHEMA_CACHE`` and take milliseconds. Documents are loaded from memory under a fake
base URI (``file:///bridgehead/apps/<id>.cwl``) so nothing touches the disk. ``loaded_tool`` keeps one
loaded ``Process`` per app revision, so task validation and execution never parse a revision twice.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from bridgehead.domain.errors import BadRequest

if TYPE_CHECKING:
    from cwltool.process import Process

log = logging.getLogger(__name__)

SBG_NAMESPACE = "https://sevenbridges.com"
CLASSES = ("CommandLineTool", "Workflow", "ExpressionTool")
VERSIONS = ("v1.0", "v1.1", "v1.2")
DEFAULT_CORES = 1
DEFAULT_RAM_MIB = 1024
CACHE_SIZE = 256
MAX_NODES = 2_000_000
MAX_DEPTH = 200
INVALID_CODE = 90000

# schema-salad's loaders share caches that are not safe to mutate from several threads at once; a load
# is milliseconds once the schema is warm, so serialising them costs little.
_load_lock = threading.RLock()
_cache_lock = threading.Lock()
# id with revision -> (fingerprint of the raw, loaded tool); the fingerprint guards against an id being
# reused after its project was deleted and re-created.
_cache: OrderedDict[str, tuple[Any, Process]] = OrderedDict()


class CwlInvalid(BadRequest):
    """The document is not a CWL app we can install; the message says what and where."""

    code = INVALID_CODE


# --- request bodies --------------------------------------------------------------------------------


def _yaml_loader() -> Any:
    # The round-trip loader without timestamp parsing keeps dates as strings (JSON-safe) and records
    # line/column positions, which the error messages use.
    from schema_salad.utils import yaml_no_ts

    return yaml_no_ts()


def _plain(value: Any) -> Any:
    """ruamel's Commented* containers as plain dicts and lists (what we store and hash)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _checked(doc: Any) -> Any:
    """A plain copy of a parsed body, refusing what would break storage or blow up in size.

    YAML aliases share nodes, so a small body can expand into a huge document ("billion laughs");
    NaN and infinities are not JSON and PostgreSQL refuses them.
    """
    budget = [MAX_NODES]

    def walk(value: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise CwlInvalid(f"The app document expands to more than {MAX_NODES} values.", field="raw")
        if depth > MAX_DEPTH:
            raise CwlInvalid(f"The app document is nested deeper than {MAX_DEPTH} levels.", field="raw")
        if isinstance(value, dict):
            return {str(k): walk(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, depth + 1) for v in value]
        if isinstance(value, float) and not math.isfinite(value):
            raise CwlInvalid(
                "The app document contains NaN or Infinity, which JSON cannot hold.", field="raw"
            )
        return value

    return walk(doc, 0)


def parse_yaml(text: str) -> Any:
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        return _yaml_loader().load(io.StringIO(text))
    except RecursionError:
        raise CwlInvalid(f"The app document is nested deeper than {MAX_DEPTH} levels.", field="raw") from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "syntax error"
        raise CwlInvalid(f"The app is not valid YAML{where}: {problem}.", field="raw") from None
    except YAMLError as exc:
        raise CwlInvalid(f"The app is not valid YAML: {exc}.", field="raw") from None


def parse_body(body: bytes, content_type: str | None) -> tuple[dict[str, Any], str]:
    """The CWL document of an install request and the text it came from (for error positions).

    Accepts a JSON object, a JSON string holding YAML (what ``sevenbridges-python`` sends for
    ``raw_format='yaml'``, still typed ``application/json``) and plain YAML (``application/yaml``).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise CwlInvalid("The app body is not UTF-8 text.", field="raw") from None
    if not text.strip():
        raise CwlInvalid("Missing request body: send the app as CWL (JSON or YAML).", field="raw")
    kind = (content_type or "").split(";")[0].strip().lower()
    doc: Any
    if "yaml" in kind:
        doc = parse_yaml(text)
    else:
        try:
            doc = json.loads(text)
        except RecursionError:
            raise CwlInvalid(
                f"The app document is nested deeper than {MAX_DEPTH} levels.", field="raw"
            ) from None
        except ValueError:
            doc = parse_yaml(text)  # YAML sent with a JSON content type
        else:
            if isinstance(doc, str):
                text = doc
                doc = parse_yaml(text)
    if not isinstance(doc, dict):
        raise CwlInvalid(
            f"The app must be a CWL document (a JSON/YAML object), got {type(doc).__name__}.", field="raw"
        )
    return _checked(doc), text


# --- loading and validation ----------------------------------------------------------------------


def base_uri(app_id: str) -> str:
    return f"file:///bridgehead/apps/{app_id}.cwl"


def _message(exc: Exception, uri: str) -> str:
    """cwltool's multi-line message with the fake URI turned into readable positions."""
    text = str(exc)
    text = re.sub(re.escape(uri) + r"(?:#[^\s:]*)?:(\d+):(\d+):", r"line \1, column \2:", text)
    text = text.replace(uri + "#", "#").replace(uri, "<app>")
    text = re.sub(r"(?:\.\./)+bridgehead/apps/[^'\s#]*", "<app>", text)
    text = re.sub(r"\(\d{6,}\) |\(<app>\) ", "", text)  # schema-salad's loader ids and our base URI
    return " ".join(text.split())


def _precheck(doc: dict[str, Any]) -> None:
    """Cheap checks with clearer wording than the schema validator's."""
    version = doc.get("cwlVersion")
    if version is None:
        raise CwlInvalid(
            "Not a CWL document: the top-level 'cwlVersion' field is missing (expected one of "
            f"{', '.join(VERSIONS)}).",
            field="cwlVersion",
        )
    if version not in VERSIONS:
        raise CwlInvalid(
            f"Unsupported cwlVersion {version!r}; supported: {', '.join(VERSIONS)}.", field="cwlVersion"
        )
    if "$graph" in doc:
        graph = doc["$graph"]
        if not isinstance(graph, list) or not graph:
            raise CwlInvalid("'$graph' must be a non-empty list of processes.", field="$graph")
        for i, proc in enumerate(graph):
            _check_class(proc, f"$graph[{i}].class")
        return
    _check_class(doc, "class")


def _check_class(proc: Any, where: str) -> None:
    cls = proc.get("class") if isinstance(proc, dict) else None
    if cls is None:
        raise CwlInvalid(f"Not a CWL process: field '{where}' is missing.", field=where)
    if cls not in CLASSES:
        raise CwlInvalid(
            f"Unknown CWL class {cls!r} in field '{where}'; expected one of {', '.join(CLASSES)}.",
            field=where,
        )


_fetcher_class: Any = None


def _no_fetch_fetcher(cache: Any, session: Any) -> Any:
    """A schema-salad fetcher that serves only what is already in memory.

    An installed app must be one self-contained document: a ``run:``, ``$import``, ``$include`` or
    ``$schemas`` pointing elsewhere would otherwise make the server read its own files or fetch URLs
    chosen by the caller.
    """
    global _fetcher_class
    if _fetcher_class is None:
        from schema_salad.exceptions import ValidationException
        from schema_salad.fetcher import DefaultFetcher

        class NoFetch(DefaultFetcher):
            def fetch_text(self, url: str, content_types: list[str] | None = None) -> str:
                cached = self.cache.get(url)
                if isinstance(cached, str):
                    return cached
                raise ValidationException(
                    f"External reference {url!r} is not allowed: an app must be one self-contained "
                    "document (pack it, e.g. with sbpack)."
                )

            def check_exists(self, url: str) -> bool:
                return url in self.cache

        _fetcher_class = NoFetch
    return _fetcher_class(cache, None)


def _load(doc: Any, uri: str) -> Process:
    import cwltool.workflow
    from cwltool.context import LoadingContext
    from cwltool.load_tool import default_loader, make_tool, resolve_and_validate_document
    from schema_salad.sourceline import cmap

    lc = LoadingContext()
    lc.construct_tool_object = cwltool.workflow.default_make_tool
    lc.fetcher_constructor = _no_fetch_fetcher
    lc.skip_schemas = True
    lc.loader = default_loader(_no_fetch_fetcher)
    if not hasattr(doc, "lc"):
        doc = cmap(doc, fn=uri)
    else:
        _set_filename(doc, uri)
    namespaces = doc.get("$namespaces")
    if namespaces is None:
        doc["$namespaces"] = cmap({"sbg": SBG_NAMESPACE}, fn=uri)
    elif isinstance(namespaces, dict):
        namespaces.setdefault("sbg", SBG_NAMESPACE)
    if "$graph" not in doc:
        doc["id"] = uri  # the document's own id is kept in the stored raw; here it is our base
    lc.loader.idx[uri] = doc
    target = uri + "#main" if "$graph" in doc else uri
    with _load_lock:
        lc, target = resolve_and_validate_document(lc, doc, target)
        return make_tool(target, lc)


def _set_filename(node: Any, uri: str) -> None:
    """Point ruamel position info at our URI so messages can be rewritten into line numbers."""
    if hasattr(node, "lc"):
        node.lc.filename = uri
    if isinstance(node, dict):
        for v in node.values():
            _set_filename(v, uri)
    elif isinstance(node, list):
        for v in node:
            _set_filename(v, uri)


def load_process(app_id: str, raw: dict[str, Any], source: str | None = None) -> Process:
    """Validate and load one revision. On failure, re-parse ``source`` to report line numbers."""
    _precheck(raw)
    uri = base_uri(app_id)
    try:
        return _load(raw, uri)  # cmap() builds new containers, so ``raw`` itself is never modified
    except Exception as exc:  # schema-salad and cwltool raise several unrelated types
        first = exc
    if source is not None:
        try:
            positioned = _yaml_loader().load(io.StringIO(source))
            if isinstance(positioned, str):
                positioned = _yaml_loader().load(io.StringIO(positioned))
            _load(positioned, uri)
        except Exception as exc:
            first = exc
    raise CwlInvalid(f"Invalid CWL: {_message(first, uri)}", field="raw") from None


_WARM_TOOL: dict[str, Any] = {
    "cwlVersion": "v1.2",
    "class": "CommandLineTool",
    "baseCommand": "true",
    "inputs": [],
    "outputs": [],
}


def loader_lock() -> threading.RLock:
    """The lock every load here holds: schema-salad's shared loader state is not thread-safe."""
    return _load_lock


def warm() -> None:
    """Parse cwltool's schema now (about half a second, once per process) instead of in a request."""
    try:
        load_process("bridgehead/warm-up/tool/0", _WARM_TOOL)
    except Exception:  # never fatal: the first real load would report the same problem
        log.exception("warming up the CWL loader failed")


def warm_in_background() -> threading.Thread:
    """Start ``warm`` on a daemon thread (for a server's startup hook)."""
    thread = threading.Thread(target=warm, name="cwl-warm-up", daemon=True)
    thread.start()
    return thread


def loaded_tool(app_id_with_rev: str, raw: dict[str, Any]) -> Process:
    """The loaded cwltool ``Process`` for one app revision, parsed at most once per process (LRU)."""
    mark = fingerprint(raw)
    with _cache_lock:
        hit = _cache.get(app_id_with_rev)
        if hit is not None and hit[0] == mark:
            _cache.move_to_end(app_id_with_rev)
            return hit[1]
    with _load_lock:  # single flight: threads asking for the same revision wait for one load
        with _cache_lock:
            hit = _cache.get(app_id_with_rev)
        if hit is not None and hit[0] == mark:
            return hit[1]
        tool = load_process(app_id_with_rev, raw)
        remember(app_id_with_rev, raw, tool)
        return tool


def fingerprint(raw: dict[str, Any]) -> Any:
    """Cheap identity of a stored revision: the server stamps these keys on every install."""
    return (raw.get("sbg:id"), raw.get("sbg:modifiedOn"), raw.get("sbg:createdOn"), len(raw))


def remember(app_id_with_rev: str, raw: dict[str, Any], tool: Process) -> None:
    """Cache a tool loaded at install time (call after the install committed)."""
    with _cache_lock:
        _cache[app_id_with_rev] = (fingerprint(raw), tool)
        _cache.move_to_end(app_id_with_rev)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)


def forget(app_id_with_rev: str) -> None:
    with _cache_lock:
        _cache.pop(app_id_with_rev, None)


# --- summary ---------------------------------------------------------------------------------------


def short_id(value: str) -> str:
    """``file:///…/x.cwl#main/step/reads`` → ``reads``; ``#reads`` → ``reads``."""
    frag = value.split("#", 1)[1] if "#" in value else value
    return frag.rsplit("/", 1)[-1]


def canonical_type(t: Any) -> Any:
    """cwltool's expanded type as the short, stable shape the tasks area compares against."""
    if isinstance(t, str):
        if t.endswith("?"):
            return ["null", canonical_type(t[:-1])]
        if t.endswith("[]"):
            return {"type": "array", "items": canonical_type(t[:-2])}
        return short_id(t) if "#" in t else t
    if isinstance(t, list):
        return [canonical_type(x) for x in t]
    if isinstance(t, dict):
        kind = t.get("type")
        if kind == "array":
            return {"type": "array", "items": canonical_type(t.get("items"))}
        if kind == "enum":
            return {"type": "enum", "symbols": [short_id(str(s)) for s in t.get("symbols", [])]}
        if kind == "record":
            fields = [
                {"name": short_id(str(f.get("name", ""))), "type": canonical_type(f.get("type"))}
                for f in t.get("fields", [])
            ]
            return {"type": "record", "fields": fields}
        return canonical_type(kind)
    return t


def _is_optional(t: Any) -> bool:
    return t == "null" or (isinstance(t, list) and "null" in t)


def _secondary(value: Any, input_side: bool) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else [value] if value else []
    out = []
    for sf in items:
        if isinstance(sf, dict):
            pattern = sf.get("pattern")
            req = sf.get("required")
        else:
            pattern, req = sf, None
        if isinstance(pattern, str) and pattern.endswith("?"):
            pattern, req = pattern[:-1], False
        out.append({"pattern": pattern, "required": input_side if req is None else req})
    return out


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(_plain(value), default=str))


def _params(params: list[dict[str, Any]], input_side: bool) -> list[dict[str, Any]]:
    out = []
    for p in params:
        t = canonical_type(p.get("type"))
        has_default = p.get("default") is not None
        item: dict[str, Any] = {
            "id": short_id(str(p["id"])),
            "type": t,
            "required": not _is_optional(t) and not has_default,
            "secondaryFiles": _secondary(p.get("secondaryFiles"), input_side),
        }
        if input_side:
            item["default"] = _json_safe(p.get("default"))
            item["label"] = p.get("label")
        out.append(item)
    return out


def _processes(tool: Process) -> list[Process]:
    """The tool and every process embedded in it (steps, nested workflows)."""
    found = [tool]
    for step in getattr(tool, "steps", []) or []:
        found.extend(_processes(step.embedded_tool))
    return found


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _resources(tool: Process) -> dict[str, int]:
    cores, ram = DEFAULT_CORES, DEFAULT_RAM_MIB
    for proc in _processes(tool):
        for req in [*proc.tool.get("requirements", []), *proc.tool.get("hints", [])]:
            if not isinstance(req, dict) or short_id(str(req.get("class", ""))) != "ResourceRequirement":
                continue
            c = _number(req.get("coresMin"))
            c = c if c is not None else _number(req.get("coresMax"))
            r = _number(req.get("ramMin"))
            r = r if r is not None else _number(req.get("ramMax"))
            if c is not None:
                cores = max(cores, math.ceil(c))
            if r is not None:
                ram = max(ram, math.ceil(r))
    return {"cores": cores, "ram_mib": ram}


def _requirements(tool: Process) -> list[str]:
    names: list[str] = []
    for proc in _processes(tool):
        reqs = list(proc.tool.get("requirements", []))
        for step in getattr(proc, "steps", []) or []:
            reqs.extend(step.tool.get("requirements", []))
        for req in reqs:
            name = short_id(str(req.get("class", ""))) if isinstance(req, dict) else ""
            if name and name not in names:
                names.append(name)
    return names


def _batch_by(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    kind = str(value.get("type", "")).upper()
    if kind == "ITEM":
        return {"type": "ITEM"}
    if kind == "CRITERIA":
        return {"type": "CRITERIA", "criteria": list(value.get("criteria") or [])}
    return None


def summarize(tool: Process, raw: dict[str, Any]) -> dict[str, Any]:
    """The inputs/outputs/resources digest stored with each revision (read by the tasks area)."""
    doc = tool.tool
    batch_input = raw.get("sbg:batchInput")
    steps = getattr(tool, "steps", None)
    return {
        "class": short_id(str(doc.get("class"))),
        "cwlVersion": str(raw.get("cwlVersion")),
        "label": doc.get("label"),
        "inputs": _params(doc.get("inputs", []), True),
        "outputs": _params(doc.get("outputs", []), False),
        "batch_input": short_id(batch_input) if isinstance(batch_input, str) and batch_input else None,
        "batch_by": _batch_by(raw.get("sbg:batchBy")),
        "resources": _resources(tool),
        "steps": len(steps) if steps is not None else 1,
        "requirements": _requirements(tool),
    }


def secondary_name(name: str, pattern: str) -> str:
    """CWL secondaryFiles naming: each leading ``^`` drops one extension, the rest is appended."""
    while pattern.startswith("^"):
        pattern = pattern[1:]
        if "." in name:
            name = name.rsplit(".", 1)[0]
    return name + pattern
