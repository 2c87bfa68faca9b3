"""A throwaway bridgehead server in a child process.

Used by the test suite, the benchmarks and ``bridgehead-cwl-runner`` (when no server is configured):
it picks a free port, prepares a data dir, creates a user and waits until ``/healthz`` answers.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cli(*args: str, env: dict[str, str] | None = None) -> str:
    """Run the ``bridgehead`` CLI and return its stdout (raises with stderr on failure)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bridgehead", *args], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"bridgehead {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout


@dataclass
class EmbeddedServer:
    engine: str = "fake"
    data_dir: Path | None = None
    database_url: str | None = None
    tls: bool = True
    username: str = "tester"
    workers: int = 1  # API processes (`serve --workers`)
    extra_env: dict[str, str] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)
    port: int = 0
    token: str = ""
    proc: subprocess.Popen[bytes] | None = None
    _tmp: str | None = None

    @property
    def root(self) -> str:
        return f"{'https' if self.tls else 'http'}://localhost:{self.port}"

    @property
    def url(self) -> str:
        return self.root + "/v2"

    @property
    def ca_file(self) -> str | None:
        return str(self.data_path / "tls" / "cert.pem") if self.tls else None

    @property
    def data_path(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_path / 'bridgehead.db').resolve()}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGEHEAD_")}
        env.update(self.extra_env)
        env["BRIDGEHEAD_DATA_DIR"] = str(self.data_path)
        env["BRIDGEHEAD_ENGINE"] = self.engine
        if self.database_url:
            env["BRIDGEHEAD_DATABASE_URL"] = self.database_url
        return env

    def create_user(self, username: str, admin: bool = False) -> str:
        args = ["admin", "create-user", username] + (["--admin"] if admin else [])
        return cli(*args, env=self.env()).strip().splitlines()[-1]

    def start(self) -> EmbeddedServer:
        if self.data_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="bridgehead-")
            self.data_dir = Path(self._tmp)
        self.port = self.port or free_port()
        self.token = self.create_user(self.username, admin=True)
        self._spawn()
        return self

    def _spawn(self) -> None:
        args = [sys.executable, "-m", "bridgehead", "serve", "--port", str(self.port), *self.extra_args]
        if self.workers > 1:
            args += ["--workers", str(self.workers)]
        if self.tls:
            from bridgehead.tls import ensure_self_signed

            # Written here (the server reuses it) so that wait_ready can trust it from the first poll.
            ensure_self_signed(self.data_path / "tls")
            args.append("--tls-self-signed")
        with open(self.data_path / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                args, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        context = ssl.create_default_context(cafile=self.ca_file) if self.tls else None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"bridgehead serve exited early:\n{self.log_text()}")
            try:
                with urllib.request.urlopen(self.root + "/healthz", timeout=2, context=context) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"bridgehead serve did not answer within {timeout} s:\n{self.log_text()}")

    def log_text(self) -> str:
        path = self.data_path / "server.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Stop the server process (SIGKILL by default, as a crash would)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def restart(self) -> None:
        self.kill(signal.SIGTERM)
        self._spawn()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
