"""Runtime configuration: the INCIDENTS_* environment variables parsed once into a frozen Config.

The composition root builds it with `Config.from_env()` and passes it down explicitly.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final, TypeVar

import msgspec

from events.durations import parse_duration
from projections.memory import DEFAULT_MEMORY_LIMIT, MIN_MEMORY_LIMIT
from services.natsurl import redacted, target


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


# JetStream stream names are also file names on the server and tokens in $JS.API subjects.
_STREAM_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,255}")
# A memory size: a number and a unit (`256MB`, `1.5GiB`, `512MiB`); bytes without a unit.
_MEMORY_SIZE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?", re.IGNORECASE)
_UNITS: Final = {"b": 1} | {
    f"{prefix}{infix}b": (1024 if infix else 1000) ** power
    for power, prefix in enumerate("kmgt", start=1)
    for infix in ("", "i")
}


class ServiceRole(enum.StrEnum):
    """What one `incidents serve` process runs (INCIDENTS_ROLE; DESIGN section 5).

    `all`: everything: projector and read models (its DuckDB file), queries, web page,
    notifier, the HTTP API and the NATS intake; alone, or as the projector+query replica of a
    scale-out. `api`: the stateless HTTP API and NATS intake only, for the writes (commands,
    webhooks, producer events): no DuckDB file, no projector, no notifier; its read routes
    answer 503 naming the role, so reads go to an `all` replica.
    """

    ALL = "all"
    API = "api"


class Config(msgspec.Struct, frozen=True, kw_only=True):
    nats_url: str | None = None
    data_dir: Path = Path("var")
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    stream: str = "INCIDENTS"
    retention_s: float = 90 * 86400.0
    replicas: int = 1
    duplicate_window_s: float = 120.0
    nats_port: int = 0
    tokens_file: Path | None = None
    policy_file: Path | None = None
    # More names the HTTP API answers for (Host), besides loopback and its own address.
    allowed_hosts: frozenset[str] = frozenset()
    # /healthz fails once NATS has been unreachable this long, so an outer supervisor can act.
    unhealthy_after_s: float = 30.0
    # HTTPS when both are set (PEM files): PagerDuty's maintained client posts to https:// only.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    role: ServiceRole = ServiceRole.ALL
    # DuckDB's `memory_limit` for the read models (bytes): the bound on its buffer pool, which
    # the projector and the queries share; what does not fit spills beside the database file.
    duckdb_memory_limit: int = DEFAULT_MEMORY_LIMIT

    @property
    def embedded_nats(self) -> bool:
        return self.nats_url is None

    @property
    def nats_store_dir(self) -> Path:
        return self.data_dir / "nats"

    @property
    def duckdb_path(self) -> Path:
        return self.data_dir / "incidents.duckdb"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        """Build from INCIDENTS_* variables; an unset or empty variable keeps the default."""
        default = cls()
        http_host, http_port = _parsed(
            env, "INCIDENTS_HTTP", _host_port, (default.http_host, default.http_port)
        )
        config = cls(
            nats_url=_parsed(
                env, "INCIDENTS_NATS_URL", _nats_url, default.nats_url, shown=redacted
            ),
            data_dir=_parsed(env, "INCIDENTS_DATA_DIR", _path, default.data_dir),
            http_host=http_host,
            http_port=http_port,
            stream=_parsed(env, "INCIDENTS_STREAM", _stream_name, default.stream),
            retention_s=_parsed(
                env, "INCIDENTS_RETENTION", _positive_duration, default.retention_s
            ),
            # JetStream caps a stream at 5 replicas.
            replicas=_parsed(env, "INCIDENTS_REPLICAS", _int_in(1, 5), default.replicas),
            duplicate_window_s=_parsed(
                env, "INCIDENTS_DUPLICATE_WINDOW", _positive_duration, default.duplicate_window_s
            ),
            nats_port=_parsed(env, "INCIDENTS_NATS_PORT", _int_in(0, 65535), default.nats_port),
            tokens_file=_parsed(env, "INCIDENTS_TOKENS_FILE", _path, default.tokens_file),
            policy_file=_parsed(env, "INCIDENTS_POLICY_FILE", _path, default.policy_file),
            allowed_hosts=_parsed(env, "INCIDENTS_ALLOWED_HOSTS", _names, default.allowed_hosts),
            unhealthy_after_s=_parsed(
                env, "INCIDENTS_UNHEALTHY_AFTER", _positive_duration, default.unhealthy_after_s
            ),
            tls_cert=_parsed(env, "INCIDENTS_TLS_CERT", _path, default.tls_cert),
            tls_key=_parsed(env, "INCIDENTS_TLS_KEY", _path, default.tls_key),
            role=_parsed(env, "INCIDENTS_ROLE", _role, default.role),
            duckdb_memory_limit=_parsed(
                env, "INCIDENTS_DUCKDB_MEMORY_LIMIT", _memory_size, default.duckdb_memory_limit
            ),
        )
        if (config.tls_cert is None) != (config.tls_key is None):
            raise ConfigError("INCIDENTS_TLS_CERT and INCIDENTS_TLS_KEY: set both, or neither")
        if config.duplicate_window_s > config.retention_s:
            # JetStream refuses a dedup window longer than max_age; say which knob to turn.
            raise ConfigError(
                "INCIDENTS_DUPLICATE_WINDOW: must not exceed INCIDENTS_RETENTION "
                f"({config.duplicate_window_s:g}s > {config.retention_s:g}s)"
            )
        return config


_T = TypeVar("_T")


def _parsed(
    env: Mapping[str, str],
    name: str,
    parse: Callable[[str], _T],
    default: _T,
    shown: Callable[[str], str] = str,
) -> _T:
    """`shown`: how the value appears in the error (a URL's password must not)."""
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        return parse(value)
    except ValueError as exc:
        raise ConfigError(f"{name}={shown(value)!r}: {exc}") from None


def _role(value: str) -> ServiceRole:
    try:
        return ServiceRole(value.lower())
    except ValueError:
        raise ValueError("expected " + " or ".join(r.value for r in ServiceRole)) from None


def _names(value: str) -> frozenset[str]:
    return frozenset(name.strip().lower() for name in value.split(",") if name.strip())


def _path(value: str) -> Path:
    return Path(value)


def _stream_name(value: str) -> str:
    if not _STREAM_NAME.fullmatch(value):
        raise ValueError("use only letters, digits, '_' and '-' (at most 255)")
    return value


def _positive_duration(value: str) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be greater than zero")
    return seconds


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError("not an integer") from None
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high}")
        return number

    return parse


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # bracketed IPv6 literal, e.g. [::1]:8080
    if not sep or not host:
        raise ValueError("expected host:port, e.g. 127.0.0.1:8080")
    return host, _int_in(0, 65535)(port)


def _memory_size(value: str) -> int:
    found = _MEMORY_SIZE.fullmatch(value)
    if found is None:
        raise ValueError("expected a size such as 256MB, 1GiB or 512MiB")
    size = int(float(found[1]) * _UNITS[(found[2] or "b").lower()])
    if size < MIN_MEMORY_LIMIT:
        raise ValueError(f"must be at least {MIN_MEMORY_LIMIT // 2**20}MiB")
    return size


def _nats_url(value: str) -> str:
    # A comma-separated list is how nats clients take several seed servers of one cluster.
    target(value)  # raises ValueError naming what is wrong
    return value
