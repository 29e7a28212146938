"""Tokens with roles: who may append, command, read, query or administer.

Tokens live in `INCIDENTS_TOKENS_FILE` (TOML) as SHA-256 hashes, never in clear:

    [[token]]
    name = "alertmanager"
    role = "producer"
    sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

`incidents token ROLE NAME` prints a new token and the entry to add. Without a tokens file
there is no authentication, and the service refuses to listen beyond loopback.

A producer entry with `nats = true` is also a NATS user of the embedded nats-server, named
like the entry (so the name must be a NATS subject token); see services/natsauth.py.
"""

import enum
import hashlib
import ipaddress
import re
import secrets
import tomllib
from pathlib import Path
from typing import Final

import msgspec

from events.schema import LOCAL_PRINCIPAL


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


LOCAL: Final = Principal(LOCAL_PRINCIPAL, Role.ADMIN)
# A NATS producer's name is a token of its subjects (`intake.<name>.events`) and its user name.
NATS_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
# The NATS user of the service itself (embedded nats-server with tokens on, compose.yaml).
NATS_SERVICE_USER: Final = "incidents"


class _Entry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    role: Role
    sha256: str
    nats: bool = False


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
        seen: set[str] = set()
        for entry in parsed.token:
            if not entry.nats:
                continue
            problem = nats_name_problem(entry.name, entry.role)
            if problem is None and entry.name in seen:
                problem = "another NATS producer has the same name"
            if problem is not None:
                raise TokensError(f"INCIDENTS_TOKENS_FILE {path}: {entry.name!r}: {problem}")
            seen.add(entry.name)
        return cls(parsed.token)

    def nats_producers(self) -> list[tuple[str, str]]:
        """(name, token SHA-256) of every producer that may publish over NATS."""
        return [(e.name, e.sha256.lower()) for e in self._by_hash.values() if e.nats]

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


def nats_name_problem(name: str, role: Role) -> str | None:
    """Why `name` cannot be a NATS producer, or None."""
    if role is not Role.PRODUCER:
        return "only producer tokens may have NATS credentials"
    if not NATS_NAME.fullmatch(name):
        return "a NATS producer name has 1 to 64 letters, digits, '_' or '-'"
    if name == NATS_SERVICE_USER:
        return f"{NATS_SERVICE_USER!r} is the service's own NATS user"
    return None


def token_entry(name: str, role: Role, token: str, nats: bool = False) -> str:
    entry = f'[[token]]\nname = "{name}"\nrole = "{role.value}"\nsha256 = "{digest(token)}"\n'
    return entry + ("nats = true\n" if nats else "")
