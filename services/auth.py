"""Tokens with roles: who may append, command, read, query or administer.

Tokens live in `INCIDENTS_TOKENS_FILE` (TOML) as SHA-256 hashes, never in clear:

    [[token]]
    name = "alertmanager"
    role = "producer"
    sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

`incidents token ROLE NAME` prints a new token and the entry to add. Without a tokens file
there is no authentication, and the service refuses to listen beyond loopback.
"""

import enum
import hashlib
import ipaddress
import secrets
import tomllib
from pathlib import Path
from typing import Final

import msgspec


class Role(enum.StrEnum):
    PRODUCER = "producer"
    RESPONDER = "responder"
    AUDITOR = "auditor"
    ADMIN = "admin"


class Permission(enum.Enum):
    APPEND = "append alerts and events"
    COMMAND = "drive incidents"
    READ = "read incidents and metrics"
    QUERY = "run SQL over read models"
    ADMINISTER = "replay, export and verify"


GRANTS: Final[dict[Role, frozenset[Permission]]] = {
    Role.PRODUCER: frozenset({Permission.APPEND}),
    Role.RESPONDER: frozenset({Permission.COMMAND, Permission.READ}),
    Role.AUDITOR: frozenset({Permission.READ, Permission.QUERY}),
    Role.ADMIN: frozenset(Permission),
}


class Principal(msgspec.Struct, frozen=True):
    name: str
    role: Role

    def may(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]


LOCAL: Final = Principal("local", Role.ADMIN)


class _Entry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    role: Role
    sha256: str


class _File(msgspec.Struct, frozen=True):
    token: list[_Entry] = []


class TokensError(ValueError):
    pass


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    # 32 characters: also a valid PagerDuty routing_key, so PagerDuty senders can use it.
    return secrets.token_hex(16)


class Tokens:
    """Authentication; `None` file means open access for loopback-only deployments."""

    def __init__(self, entries: list[_Entry] | None) -> None:
        self.enabled = entries is not None
        self._by_hash = {entry.sha256.lower(): entry for entry in entries or []}

    @classmethod
    def load(cls, path: Path | None) -> "Tokens":
        if path is None:
            return cls(None)
        try:
            parsed = msgspec.convert(tomllib.loads(path.read_text()), _File)
        except (OSError, tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
            raise TokensError(f"INCIDENTS_TOKENS_FILE {path}: {exc}") from exc
        return cls(parsed.token)

    def authenticate(self, token: str | None) -> Principal | None:
        if not self.enabled:
            return LOCAL
        if not token:
            return None
        entry = self._by_hash.get(digest(token))
        return Principal(entry.name, entry.role) if entry else None


def bearer(authorization: str | None) -> str | None:
    """The token of `Authorization: Bearer <token>` (also `Token token=<token>`)."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "token":
        return value.strip().removeprefix("token=") or None
    return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_entry(name: str, role: Role, token: str) -> str:
    return f'[[token]]\nname = "{name}"\nrole = "{role.value}"\nsha256 = "{digest(token)}"\n'
