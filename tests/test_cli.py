"""The ``bridgehead`` command line: admin commands, first start, unsafe settings, TLS files."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from sqlalchemy import create_engine, text

from bridgehead.embedded import free_port

TOKEN = re.compile(r"^[0-9a-f]{32}$")


def run(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGEHEAD_")}
    return subprocess.run(
        [sys.executable, "-m", "bridgehead", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**base, **(env or {})},
        timeout=120,
        check=False,
    )


@contextmanager
def serving(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run ``bridgehead serve`` until /healthz answers; yield the process and its base URL."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGEHEAD_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridgehead", "serve", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**base, **(env or {})},
    )
    scheme = "https" if "--tls-self-signed" in args else "http"
    url = f"{scheme}://localhost:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            try:
                if httpx.get(url + "/healthz", verify=False, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield proc, url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_create_user_prints_only_the_token_last_and_stores_a_hash(tmp_path: Path) -> None:
    done = run(
        "admin", "create-user", "ada", "--email", "ada@lab.test", "--admin", "--data-dir", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    token = lines[-1]
    assert TOKEN.match(token)
    engine = create_engine(f"sqlite:///{tmp_path / 'bridgehead.db'}")
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT token_hash FROM tokens")).scalars().all()
        user = conn.execute(text("SELECT email, is_admin FROM users WHERE username='ada'")).one()
    engine.dispose()
    assert stored == [hashlib.sha256(token.encode()).hexdigest()], "only the hash is stored"
    assert token not in (tmp_path / "bridgehead.db").read_bytes().decode("latin-1")
    assert user == ("ada@lab.test", True)

    again = run("admin", "create-token", "ada", "--data-dir", str(tmp_path))
    assert again.returncode == 0 and TOKEN.match(again.stdout.strip().splitlines()[-1])
    assert again.stdout.strip().splitlines()[-1] != token

    listed = run("admin", "list-users", "--data-dir", str(tmp_path))
    assert listed.returncode == 0 and "ada" in listed.stdout and "yes" in listed.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["admin", "create-user", "ada"], "already exists"),
        (["admin", "create-user", "bad name!"], "Invalid username"),
        (["admin", "create-token", "nobody"], "does not exist"),
    ],
)
def test_admin_errors_exit_nonzero_with_a_message(tmp_path: Path, args: list[str], message: str) -> None:
    assert run("admin", "create-user", "ada", "--data-dir", str(tmp_path)).returncode == 0
    done = run(*args, "--data-dir", str(tmp_path))
    assert done.returncode == 1
    assert message in done.stderr
    assert not TOKEN.match((done.stdout.strip().splitlines() or [""])[-1])


def test_default_data_dir_and_env_variables(tmp_path: Path) -> None:
    assert run("admin", "create-user", "ada", cwd=tmp_path).returncode == 0
    assert (tmp_path / ".bridgehead" / "bridgehead.db").exists()
    other = tmp_path / "elsewhere"
    assert run("admin", "create-user", "bob", env={"BRIDGEHEAD_DATA_DIR": str(other)}).returncode == 0
    assert (other / "bridgehead.db").exists()


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    done = run(
        "admin",
        "list-users",
        "--database-url",
        "postgresql+psycopg://u:secret@127.0.0.1:1/x",
        "--data-dir",
        str(tmp_path),
    )
    assert done.returncode == 2
    assert "cannot prepare the database" in done.stderr
    assert "secret" not in done.stderr, "passwords are never printed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0"], "refusing to serve plain HTTP"),
        (["--host", "10.1.2.3"], "refusing to serve plain HTTP"),
        (["--tls-cert", "/nonexistent.pem"], "must be given together"),
    ],
)
def test_unsafe_settings_refuse_to_start(tmp_path: Path, args: list[str], message: str) -> None:
    done = run("serve", "--data-dir", str(tmp_path), "--port", str(free_port()), *args)
    assert done.returncode == 2
    assert message in done.stderr


@pytest.mark.parametrize(
    ("args", "env", "name"),
    [(["--engine", "bogus"], {}, "engine"), ([], {"BRIDGEHEAD_PORT": "abc"}, "port")],
)
def test_invalid_settings_are_named_without_a_traceback(
    tmp_path: Path, args: list[str], env: dict[str, str], name: str
) -> None:
    done = run("serve", "--data-dir", str(tmp_path), *args, env=env)
    assert done.returncode == 2
    assert f"invalid setting {name}" in done.stderr
    assert "Traceback" not in done.stderr


def test_unsafe_bind_refused_from_environment_too(tmp_path: Path) -> None:
    done = run("serve", env={"BRIDGEHEAD_HOST": "0.0.0.0", "BRIDGEHEAD_DATA_DIR": str(tmp_path)})
    assert done.returncode == 2 and "refusing" in done.stderr


def test_first_start_prints_admin_token_once_and_the_url(tmp_path: Path) -> None:
    with serving("--data-dir", str(tmp_path)) as (proc, url):
        resp = httpx.get(url + "/healthz")
        assert resp.status_code == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    token = out.strip().splitlines()[-1]
    assert TOKEN.match(token)
    assert "created the admin user" in err
    assert f"listening on {url}/v2" in err
    with serving("--data-dir", str(tmp_path)) as (proc, url):
        me = httpx.get(url + "/v2/user", headers={"X-SBG-Auth-Token": token})
        assert me.status_code == 200 and me.json()["username"] == "admin"
        assert me.json()["role"] == "ADMIN"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert not re.search(r"[0-9a-f]{32}", out), "the token is shown only on the first start"
    assert "created the admin user" not in err


def test_tls_self_signed_writes_files_that_verify(tmp_path: Path) -> None:
    with serving("--data-dir", str(tmp_path), "--tls-self-signed", env={}) as (proc, url):
        cert_path, key_path = tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"
        assert cert_path.exists() and key_path.exists()
        assert key_path.stat().st_mode & 0o077 == 0, "the private key is private"
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "localhost" in sans.get_values_for_type(x509.DNSName)
        assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
        port = url.rsplit(":", 1)[1]
        check = (
            "import requests, sys; "
            f"r1 = requests.get('https://localhost:{port}/healthz'); "
            f"r2 = requests.get('https://127.0.0.1:{port}/healthz'); "
            "sys.exit(0 if r1.ok and r2.ok else 1)"
        )
        verified = subprocess.run(
            [sys.executable, "-c", check],
            env={**os.environ, "REQUESTS_CA_BUNDLE": str(cert_path)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert verified.returncode == 0, verified.stderr
        # Without the bundle the certificate is (rightly) not trusted.
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/healthz")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert f"REQUESTS_CA_BUNDLE={cert_path.resolve()}" in err
