"""A real S3 API for tests: moto's standalone server on a loopback port.

The port is chosen when a test module is imported, so that the module's ``SERVER_ENV`` can point
the bridgehead server's boto3 at it (``AWS_ENDPOINT_URL``) before either process starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from bridgehead.embedded import free_port

ACCESS_KEY = "testing-key"
SECRET_KEY = "testing-secret"


@dataclass
class S3Endpoint:
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )


def endpoint() -> S3Endpoint:
    """A free port for a moto server; start it with the ``moto_s3`` fixture factory."""
    return S3Endpoint(free_port())


def moto_fixture(where: S3Endpoint) -> Any:
    """A module-scoped fixture running moto on ``where.port`` for the module's tests."""

    @pytest.fixture(scope="module")
    def s3() -> Iterator[S3Endpoint]:
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=where.port, verbose=False)
        server.start()
        try:
            yield where
        finally:
            server.stop()

    return s3
