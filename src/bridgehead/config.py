"""Typed settings. Every option reads from a ``BRIDGEHEAD_<NAME>`` environment variable."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

EngineName = Literal["local", "fake", "toil", "slurm"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BRIDGEHEAD_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path(".bridgehead")
    database_url: str | None = None
    public_url: str | None = None
    tls_self_signed: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    forwarded_allow_ips: str | None = None
    engine: EngineName = "local"
    dispatcher: bool = True
    # API processes of `serve`. With more than one, the API runs in that many child processes sharing
    # the port, and the dispatcher and transfers run in the parent: requests and background work use
    # separate cores instead of sharing one interpreter lock.
    workers: int = Field(default=1, ge=1, le=64)
    # Set by `serve` for its API child processes: where to send wake-ups for the parent's loops.
    wake_address: str | None = None

    # Rate limiting per user: requests per window. The platform allows 1000 per 5 minutes;
    # a self-hosted server defaults to something far more generous.
    rate_limit: int = 100_000
    rate_limit_window: int = 300

    # Append "METHOD /route/template STATUS" per request to this file (the test suite sets it so that
    # `python -m bridgehead.fidelity` can say which endpoints the tests exercise). Off by default.
    route_log: Path | None = None

    # Signed transfer URLs (upload parts, downloads) stay valid this many seconds.
    transfer_url_ttl: int = 3600
    upload_part_size: int = 32 * 1024 * 1024

    # Admission for local execution; 0 means "what the machine has".
    max_cores: int = 0
    max_memory_mib: int = 0
    default_cores: int = 1
    default_memory_mib: int = 1024

    # Price table (USD): per CPU-hour and per GB-month of storage.
    price_cpu_hour: float = 0.0
    price_gb_month: float = 0.0

    # Roots a `local` volume may point at (colon separated in the environment).
    volume_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)

    # Toil / Slurm (cluster deployments).
    work_dir: Path | None = None
    toil_batch_system: str = "slurm"
    slurm_partition: str | None = None

    @field_validator("volume_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str):
            return [p for p in value.split(os.pathsep) if p]
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'bridgehead.db').resolve()}"

    @property
    def tls_enabled(self) -> bool:
        return self.tls_self_signed or (self.tls_cert is not None and self.tls_key is not None)

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def tasks_dir(self) -> Path:
        return self.data_dir / "tasks"

    def unsafe_reasons(self) -> list[str]:
        """Settings that must refuse to start (design principle 8)."""
        reasons: list[str] = []
        if (self.tls_cert is None) != (self.tls_key is None):
            reasons.append("--tls-cert and --tls-key must be given together")
        if not _is_loopback(self.host) and not self.tls_enabled and not self.forwarded_allow_ips:
            reasons.append(
                f"refusing to serve plain HTTP on the public address {self.host}: "
                "use --tls-self-signed, --tls-cert/--tls-key, or --forwarded-allow-ips behind a TLS proxy"
            )
        return reasons


def _is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
