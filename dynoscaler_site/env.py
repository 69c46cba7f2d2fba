"""Typed readers for environment variables.

Every reader takes the mapping it reads from (``env=os.environ`` by default) so tests pass
their own dict instead of patching the process environment, and every failure names the
variable and says what was expected, never echoing a value that might be a secret.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit


class EnvError(ValueError):
    """A variable is missing or malformed. The message names the variable."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        super().__init__(f"{name}: {problem}")


def env_str(name: str, default: str | None = None, *, env: Mapping[str, str] = os.environ) -> str:
    value = env.get(name, "").strip()
    if value:
        return value
    if default is None:
        raise EnvError(name, "is required but not set")
    return default


def env_optional(name: str, *, env: Mapping[str, str] = os.environ) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def env_int(
    name: str,
    default: int | None = None,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    env: Mapping[str, str] = os.environ,
) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        if default is None:
            raise EnvError(name, "is required but not set (expected a whole number)")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise EnvError(name, f"expected a whole number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise EnvError(name, f"must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise EnvError(name, f"must be at most {maximum}, got {value}")
    return value


def env_float(
    name: str,
    default: float | None = None,
    *,
    greater_than: float | None = None,
    env: Mapping[str, str] = os.environ,
) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        if default is None:
            raise EnvError(name, "is required but not set (expected a number)")
        return default
    try:
        value = float(raw)
    except ValueError:
        raise EnvError(name, f"expected a number, got {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise EnvError(name, f"expected a finite number, got {raw!r}")
    if greater_than is not None and value <= greater_than:
        raise EnvError(name, f"must be greater than {greater_than:g}, got {value:g}")
    return value


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_bool(name: str, default: bool, *, env: Mapping[str, str] = os.environ) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise EnvError(name, f"expected one of {sorted(_TRUE | _FALSE)}, got {raw!r}")


# DynoScaler runs on PostgreSQL (production) or SQLite (a laptop); these are the schemes of
# those two that dj-database-url knows.
DATABASE_SCHEMES = ("postgres", "postgresql", "pgsql", "sqlite")


def env_choice(name: str, default: str, choices: tuple[str, ...], *, env: Mapping[str, str] = os.environ) -> str:
    """One of ``choices`` (any case; returned as listed)."""
    value = env_str(name, default, env=env)
    for choice in choices:
        if value.lower() == choice.lower():
            return choice
    raise EnvError(name, f"expected one of {', '.join(choices)}, got {value!r}")


def env_database(name: str, default: str, *, env: Mapping[str, str] = os.environ, **options: Any) -> dict[str, Any]:
    """Django's DATABASES entry for the URL in `name`.

    A URL that cannot be read is named with what was expected, and never echoed: it holds the
    database password.
    """
    import dj_database_url

    url = env_str(name, default, env=env)
    example = "expected postgres://USER:PASSWORD@HOST:5432/NAME or sqlite:///PATH"
    scheme = urlsplit(url).scheme if "://" in url else ""
    if scheme not in DATABASE_SCHEMES:
        found = f"its scheme is {scheme!r}" if scheme else "it has no scheme"
        raise EnvError(name, f"{example}; {found} (DynoScaler runs on PostgreSQL or SQLite)")
    try:
        return dict(dj_database_url.parse(url, **options))
    except ValueError:
        raise EnvError(name, f"{example}; it is not a URL that can be read (is the port a number, "
                             "and are special characters in the password percent-encoded?)") from None


def env_redis_url(name: str, *, env: Mapping[str, str] = os.environ) -> str | None:
    """A Redis URL in `name`, or None when unset. Checked here: a URL without its scheme
    would otherwise be taken by the task queue for an AMQP host and retried a hundred
    times, and a bad port raised a traceback quoting the password."""
    url = env_optional(name, env=env)
    if url is None:
        return None
    example = "expected redis://[:PASSWORD@]HOST:PORT[/DB], rediss:// (TLS) or redis+socket:///PATH"
    try:
        parts = urlsplit(url) if "://" in url else None
        if parts is not None:
            parts.port  # noqa: B018 (read only to check it: a port that is not a number raises)
    except ValueError:
        raise EnvError(name, f"{example}; its port is not a number from 1 to 65535") from None
    if parts is None or parts.scheme not in ("redis", "rediss", "redis+socket"):
        found = f"its scheme is {parts.scheme!r}" if parts and parts.scheme else "it has no redis:// or rediss://"
        raise EnvError(name, f"{example}; {found}")
    if parts.scheme == "redis+socket":  # a Unix socket: the path is the socket, not a database
        return url
    if not parts.hostname:
        raise EnvError(name, f"{example}; it has no host")
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise EnvError(name, f"{example}; its database (after the last /) is not a number")
    return url


def env_http_url(name: str, *, default_port: int, host: str = "search.example.com",
                 env: Mapping[str, str] = os.environ) -> str | None:
    """An http(s) endpoint in `name`, or None when unset. Checked here, at start-up, not by
    the first request: a client library's error would quote the URL, and its password."""
    url = env_optional(name, env=env)
    if url is None:
        return None
    example = f"expected http(s)://HOST:PORT, e.g. https://{host}:{default_port}"
    if any(c.isspace() for c in url):
        raise EnvError(name, f"{example}; it has a space in it")
    try:
        parts = urlsplit(url) if "://" in url else None
    except ValueError:  # a bracket that opens an IPv6 host and never closes
        raise EnvError(name, f"{example}; it is not a URL that can be read") from None
    if parts is None or parts.scheme not in ("http", "https"):
        found = f"its scheme is {parts.scheme!r}" if parts and parts.scheme else "it has no http:// or https://"
        raise EnvError(name, f"{example}; {found}")
    try:
        port = parts.port
    except ValueError:
        raise EnvError(name, f"{example}; its port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise EnvError(name, f"{example}; it has no host")
    if port is None and parts.scheme == "http":
        raise EnvError(name, f"{example}; an http:// URL needs its port (the service listens on {default_port})")
    return url
