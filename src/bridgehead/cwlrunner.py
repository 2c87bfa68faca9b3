"""``bridgehead-cwl-runner``: the standard ``cwl-runner`` interface, executed by a bridgehead server.

``bridgehead-cwl-runner [--outdir DIR] [--quiet] TOOL.cwl [JOB.yml]`` packs the tool, installs it as
an app, uploads the job's files (and File defaults), runs a task through the public API, downloads
the outputs into ``--outdir`` and prints the CWL output object as JSON on stdout. Exit codes follow
cwltest: 0 success, 33 unsupported requirement, 1 any other failure.

The server comes from ``BRIDGEHEAD_URL`` + ``BRIDGEHEAD_TOKEN`` (``REQUESTS_CA_BUNDLE`` for a private
CA); without them a throwaway embedded server with the ``local`` engine is started and stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx
import yaml

from bridgehead.cwljob import (
    UNSUPPORTED,
    RunnerError,
    add_job_requirements,
    find_secondaries,
    inline_file_objects,
    local_path,
    main_process,
    pack_tool,
    schema_types,
    short,
    tool_location,
)

log = logging.getLogger("bridgehead.cwlrunner")

TERMINAL = ("COMPLETED", "FAILED", "ABORTED")
UNSUPPORTED_HINTS = ("Unsupported requirement", "DockerRequirement", "is not supported")


# --- arguments -------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bridgehead-cwl-runner", description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", default=".", help="where the outputs are downloaded")
    parser.add_argument("--quiet", action="store_true", help="only errors on stderr")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the task")
    parser.add_argument("--version", action="store_true")
    # cwl-runner options cwltest may pass; accepted and ignored (the server chooses its own dirs).
    for ignored in ("--tmp-outdir-prefix", "--tmpdir-prefix", "--basedir", "--cachedir"):
        parser.add_argument(ignored, help=argparse.SUPPRESS)
    for flag in (
        "--relax-path-checks",
        "--no-container",
        "--enable-ext",
        "--parallel",
        "--debug",
        "--strict",
    ):
        parser.add_argument(flag, action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("tool", nargs="?")
    parser.add_argument("job", nargs="?")
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        log.debug("ignoring options %s", unknown)
    return args


# --- the API side ----------------------------------------------------------------------------------


class Client:
    def __init__(self, url: str, token: str, verify: Any) -> None:
        self.http = httpx.Client(
            base_url=url.rstrip("/"), headers={"X-SBG-Auth-Token": token}, verify=verify, timeout=120
        )
        self.verify = verify
        self.project = ""

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.http.request(method, path, **kwargs)
        if resp.status_code >= 400:
            try:
                message = resp.json().get("message", resp.text)
            except ValueError:
                message = resp.text
            raise RunnerError(f"{method} {path}: {resp.status_code} {message}")
        return resp.json() if resp.content else None

    def folder(self, name: str, parent: str | None = None) -> str:
        body = {
            "name": name,
            "type": "folder",
            **({"parent": parent} if parent else {"project": self.project}),
        }
        return str(self.call("POST", "/files", json=body)["id"])

    def upload(self, src: Path | None, name: str, parent: str, contents: bytes | None = None) -> str:
        """Multipart upload, one part in memory at a time (``contents`` for CWL file literals)."""
        size = len(contents) if contents is not None else src.stat().st_size if src is not None else 0
        up = self.call("POST", "/upload/multipart", json={"parent": parent, "name": name, "size": size})
        part_size = int(up.get("part_size") or size or 1)
        stream: IO[bytes] = io.BytesIO(contents or b"") if src is None else open(src, "rb")  # noqa: SIM115
        with stream:
            for number in range(1, max(1, -(-size // part_size)) + 1):  # an empty file is one empty part
                target = self.call("GET", f"/upload/multipart/{up['upload_id']}/part/{number}")
                put = httpx.put(
                    target["url"], content=stream.read(part_size), verify=self.verify, timeout=300
                )
                put.raise_for_status()
                etag = put.headers.get("ETag", "")
                report = {"part_number": number, "response": {"headers": {"ETag": etag}}}
                self.call("POST", f"/upload/multipart/{up['upload_id']}/part", json=report)
        return str(self.call("POST", f"/upload/multipart/{up['upload_id']}/complete", json=None)["id"])

    def download(self, file_id: str, dest: Path) -> None:
        url = self.call("GET", f"/files/{file_id}/download_info")["url"]
        with httpx.stream("GET", url, verify=self.verify, timeout=120) as resp:
            resp.raise_for_status()
            with open(dest, "wb") as out:
                for chunk in resp.iter_bytes():
                    out.write(chunk)

    def children(self, folder: str) -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            page = self.call(
                "GET", "/files", params={"parent": folder, "offset": offset, "limit": 100, "fields": "_all"}
            )
            yield from page["items"]
            offset += len(page["items"])
            if not page["items"] or offset >= int(page.get("total", offset)):
                return


class Uploader:
    """Turns a CWL job order of local files into task inputs referencing uploaded project files."""

    def __init__(self, client: Client, root: str) -> None:
        self.client = client
        self.root = root
        self.count = 0

    def _slot(self) -> str:
        """Each input gets its own folder so equal basenames from different places never collide."""
        self.count += 1
        return self.client.folder(f"in{self.count}", self.root)

    def value(self, value: Any, base: Path) -> Any:
        if isinstance(value, list):
            return [self.value(v, base) for v in value]
        if not isinstance(value, dict):
            return value
        cls = value.get("class")
        if cls == "File":
            return self.file(value, base, self._slot())
        if cls == "Directory":
            return self.directory(value, base, self._slot())
        return {k: self.value(v, base) for k, v in value.items()}

    def file(self, value: dict[str, Any], base: Path, parent: str) -> dict[str, Any]:
        src = local_path(value, base)
        if src is None and "contents" not in value:
            raise RunnerError(f"A File input has neither location, path nor contents: {value}")
        name = value.get("basename") or (src.name if src is not None else "literal.txt")
        if src is not None and not src.is_file():
            raise RunnerError(f"Input file {src} does not exist")
        contents = str(value["contents"]).encode() if src is None else None
        out: dict[str, Any] = {"class": "File", "path": self.client.upload(src, name, parent, contents)}
        secondary = [
            self.file(s, base, parent) if s.get("class") == "File" else self.directory(s, base, parent)
            for s in value.get("secondaryFiles") or []
        ]
        if secondary:
            out["secondaryFiles"] = secondary
        return out

    def directory(self, value: dict[str, Any], base: Path, parent: str) -> dict[str, Any]:
        src = local_path(value, base)
        name = value.get("basename") or (src.name if src is not None else "dir")
        made = self.client.folder(name, parent)
        if src is not None:
            if not src.is_dir():
                raise RunnerError(f"Input directory {src} does not exist")
            self._tree(src, made)
        for entry in value.get("listing") or []:
            if entry.get("class") == "File":
                self.file(entry, base, made)
            else:
                self.directory(entry, base, made)
        return {"class": "Directory", "path": made}

    def _tree(self, src: Path, folder: str) -> None:
        for entry in sorted(src.iterdir()):
            if entry.is_dir():
                self._tree(entry, self.client.folder(entry.name, folder))
            elif entry.is_file():
                self.client.upload(entry, entry.name, folder)


class Downloader:
    def __init__(self, client: Client, outdir: Path) -> None:
        self.client = client
        self.outdir = outdir

    def _free(self, directory: Path, name: str) -> Path:
        target = directory / name
        n = 1
        while target.exists():
            n += 1
            target = directory / f"{n}" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def value(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if not isinstance(value, dict):
            return value
        if value.get("class") == "File":
            return self.file(value, self.outdir)
        if value.get("class") == "Directory":
            return self.directory(value, self.outdir)
        return {k: self.value(v) for k, v in value.items()}

    def file(self, value: dict[str, Any], directory: Path) -> dict[str, Any]:
        info = self.client.call("GET", f"/files/{value['path']}")
        dest = self._free(directory, info["name"])
        self.client.download(value["path"], dest)
        out = file_object(dest)
        secondary = [
            self.file(s, dest.parent) if s.get("class") == "File" else self.directory(s, dest.parent)
            for s in value.get("secondaryFiles") or []
            if isinstance(s, dict)
        ]
        if secondary:
            out["secondaryFiles"] = secondary
        return out

    def directory(self, value: dict[str, Any], directory: Path) -> dict[str, Any]:
        info = self.client.call("GET", f"/files/{value['path']}")
        dest = self._free(directory, info["name"])
        dest.mkdir(parents=True, exist_ok=True)
        listing = []
        for child in self.client.children(value["path"]):
            if child.get("type") == "folder":
                listing.append(self.directory({"path": child["id"]}, dest))
            else:
                listing.append(self.file({"path": child["id"]}, dest))
        return {
            "class": "Directory",
            "location": dest.as_uri(),
            "path": str(dest),
            "basename": dest.name,
            "listing": listing,
        }


def file_object(path: Path) -> dict[str, Any]:
    sha1 = hashlib.sha1(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            sha1.update(chunk)
    return {
        "class": "File",
        "location": path.as_uri(),
        "path": str(path),
        "basename": path.name,
        "size": path.stat().st_size,
        "checksum": f"sha1${sha1.hexdigest()}",
    }


# --- the run ---------------------------------------------------------------------------------------


@contextmanager
def server() -> Iterator[tuple[str, str, Any]]:
    url, token = os.environ.get("BRIDGEHEAD_URL"), os.environ.get("BRIDGEHEAD_TOKEN")
    if url and token:
        yield url, token, os.environ.get("REQUESTS_CA_BUNDLE") or True
        return
    from bridgehead.embedded import EmbeddedServer

    with EmbeddedServer(engine="local", tls=False) as srv:  # loopback only: plain HTTP is allowed
        yield srv.url, srv.token, srv.ca_file or True


def job_inputs(args: argparse.Namespace) -> tuple[dict[str, Any], Path]:
    if not args.job:
        return {}, Path.cwd()
    path = Path(args.job).resolve()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RunnerError(f"Cannot read the job file {path}: {exc}")
    if not isinstance(data, dict):
        raise RunnerError(f"The job file {path} must hold a mapping of input ids to values")
    data.pop("cwl:tool", None)
    return data, path.parent


def run(args: argparse.Namespace) -> dict[str, Any]:
    raw = pack_tool(args.tool)
    job, base = job_inputs(args)
    proc = main_process(raw)
    add_job_requirements(proc, job)
    inline_file_objects(raw)
    tool_file = tool_location(args.tool)[1]
    tool_dir = tool_file.parent
    with server() as (url, token, verify):
        client = Client(url, token, verify)
        project = client.call("POST", "/projects", json={"name": f"cwl-runner {uuid.uuid4().hex[:10]}"})
        client.project = project["id"]
        app_name = "".join(c if c.isalnum() else "-" for c in tool_file.stem.lower())[:40] or "app"
        installed = client.call("POST", f"/apps/{project['id']}/{app_name}/raw", json=raw)
        app_id = installed.get("sbg:id") or f"{project['id']}/{app_name}/0"
        uploader = Uploader(client, client.folder("inputs"))
        params = {short(str(p.get("id", ""))): p for p in proc.get("inputs", [])}
        inputs: dict[str, Any] = {}
        types = schema_types(proc)
        for key, value in job.items():
            value = find_secondaries(value, params.get(short(key), {}), types, base)
            inputs[short(key)] = uploader.value(value, base)
        for pid, param in params.items():
            default = param.get("default")
            if pid not in inputs and isinstance(default, (dict, list)) and _has_files(default):
                value = find_secondaries(default, param, types, tool_dir)
                inputs[pid] = uploader.value(value, tool_dir)
        body = {
            "project": project["id"],
            "app": app_id,
            "name": f"cwl-runner {tool_file.name}",
            "inputs": inputs,
        }
        task = client.call("POST", "/tasks", params={"action": "run"}, json=body)
        log.info("task %s %s", task["id"], task["status"])
        if task.get("errors"):
            raise RunnerError(f"The task is not valid: {task['errors']}")
        deadline = time.monotonic() + args.timeout
        delay = 0.05
        while task["status"] not in TERMINAL:
            if time.monotonic() > deadline:
                client.call("POST", f"/tasks/{task['id']}/actions/abort", json=None)
                raise RunnerError(f"Task {task['id']} did not finish within {args.timeout} s")
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)
            task = client.call("GET", f"/tasks/{task['id']}")
        if task["status"] != "COMPLETED":
            message = str(task.get("execution_status", {}).get("message", ""))
            code = UNSUPPORTED if any(h in message for h in UNSUPPORTED_HINTS) else 1
            raise RunnerError(f"Task {task['id']} {task['status']}: {message}", code)
        outdir = Path(args.outdir).resolve()
        outdir.mkdir(parents=True, exist_ok=True)
        result: dict[str, Any] = Downloader(client, outdir).value(task.get("outputs") or {})
        return result


def _has_files(value: Any) -> bool:
    if isinstance(value, list):
        return any(_has_files(v) for v in value)
    return isinstance(value, dict) and (
        value.get("class") in ("File", "Directory") or any(_has_files(v) for v in value.values())
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.INFO, format="%(message)s")
    for chatty in ("httpx", "cwltool", "salad"):  # request lines and "Resolved ..." are noise here
        logging.getLogger(chatty).setLevel(logging.WARNING)
    if args.version:
        from bridgehead import __version__

        sys.stdout.write(f"bridgehead-cwl-runner {__version__}\n")
        sys.exit(0)
    if not args.tool:
        sys.stderr.write("usage: bridgehead-cwl-runner [--outdir DIR] [--quiet] TOOL.cwl [JOB.yml]\n")
        sys.exit(2)
    try:
        outputs = run(args)
    except RunnerError as exc:
        log.error("%s", exc)
        sys.exit(exc.code)
    except Exception as exc:  # a CWL document cwltool rejects, a server that is not reachable, ...
        message = str(exc)
        log.error("%s", message)
        sys.exit(UNSUPPORTED if "Unsupported requirement" in message else 1)
    sys.stdout.write(json.dumps(outputs, indent=2) + "\n")
    sys.exit(0)
