"""What the AWS adapters share: a key pair (or boto3's default chain), and one cache of
boto3 clients per process (building a client costs tens of milliseconds)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config


@dataclass(frozen=True)
class AwsCredentials:
    """An access key pair; ``None`` in its place means boto3's default credential chain."""

    access_key_id: str
    secret_access_key: str

    def __repr__(self) -> str:  # never print the secret
        return f"AwsCredentials(access_key_id={self.access_key_id!r}, secret_access_key='****')"


def secrets_of(credentials: AwsCredentials | None) -> tuple[str, ...]:
    return (credentials.secret_access_key,) if credentials else ()


class ClientCache:
    """boto3 clients of one service, by region and credentials, shared by a process's threads."""

    def __init__(self, service: str, *, timeout_seconds: float) -> None:
        self._service = service
        self._config = Config(connect_timeout=timeout_seconds, read_timeout=timeout_seconds,
                              retries={"max_attempts": 2, "mode": "standard"})
        self._clients: dict[tuple[str, AwsCredentials | None], Any] = {}
        self._lock = threading.Lock()

    def client(self, region: str, credentials: AwsCredentials | None) -> Any:
        key = (region, credentials)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                kwargs: dict[str, Any] = {"region_name": region, "config": self._config}
                if credentials is not None:
                    kwargs["aws_access_key_id"] = credentials.access_key_id
                    kwargs["aws_secret_access_key"] = credentials.secret_access_key
                client = boto3.session.Session().client(self._service, **kwargs)  # type: ignore[call-overload]
                self._clients[key] = client
        return client


def error_parts(exc: botocore.exceptions.ClientError) -> tuple[str, int | None, str]:
    """(code, HTTP status, message) of an AWS error answer."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code, status, str(error.get("Message", "")) or code
