"""NATS server URLs as INCIDENTS_NATS_URL gives them: the credentials they carry, split out
into connect options, and hidden wherever a URL is logged or shown in an error.

nats-py applies credentials written into a URL to that server only. The servers a cluster
announces (`connect_urls`) are dialled with the connect options, so a client whose only
credentials sat in its seed URLs met "Authorization Violation" on failing over to a discovered
server. `target()` takes them out of the URLs and hands them to `nats.connect` (and faststream)
as `user`/`password` or `token`, which nats-py uses for every server, announced ones included.
"""

import re
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import msgspec

_SCHEMES: Final = frozenset({"nats", "tls", "ws", "wss"})
# `scheme://userinfo@`: userinfo runs to the last `@` before the host (a password may hold
# an unescaped `@`; a host never does).
_USERINFO: Final = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#]*)@")
HIDDEN: Final = "***"
# Every connection of the service: a server answers pings from its connection handling, not
# from JetStream, so a busy stream does not hold them up. 10 to 15 s without an answer is an
# outage (nats-py's default, 2 minutes apart, took 4 to 6 minutes to notice a partition).
PING_INTERVAL_S: Final = 5
PINGS_UNANSWERED: Final = 2  # given up at the next ping after this many went unanswered


class NatsTarget(msgspec.Struct, frozen=True, kw_only=True):
    """Where to connect (URLs without credentials) and as whom."""

    servers: tuple[str, ...]
    user: str | None = None
    password: str | None = None
    token: str | None = None

    def options(self) -> dict[str, Any]:
        """Keyword arguments of `nats.connect` (and of faststream's `NatsBroker`)."""
        options: dict[str, Any] = {"servers": list(self.servers)}
        if self.token is not None:
            options["token"] = self.token
        elif self.user is not None:
            options |= {"user": self.user, "password": self.password or ""}
        return options


def target(url: str) -> NatsTarget:
    """Split a comma-separated list of server URLs into servers and one set of credentials.

    Credentials may be written into any of the URLs (usually the first); URLs that carry
    different ones are refused, as one connection has one identity. Raises ValueError for a
    malformed URL.
    """
    servers: list[str] = []
    found: set[tuple[str | None, str | None]] = set()
    for server in url.split(","):
        parts = urlsplit(server.strip())
        try:
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError as exc:
            raise ValueError(f"malformed URL {redacted(server.strip())}: {exc}") from None
        if parts.scheme not in _SCHEMES or not parts.hostname:
            raise ValueError(
                f"{redacted(server.strip())}: expected nats://host:port (or tls://, ws://, wss://)"
            )
        if parts.username is not None or parts.password is not None:
            found.add((_unquoted(parts.username), _unquoted(parts.password)))
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        port = f":{parts.port}" if parts.port is not None else ""
        servers.append(f"{parts.scheme}://{host}{port}{parts.path}")
    if len(found) > 1:
        raise ValueError("the server URLs carry different credentials; give one set")
    if not found:
        return NatsTarget(servers=tuple(servers))
    user, password = found.pop()
    if password is None:  # nats://TOKEN@host, as nats-py and the nats CLI read it
        return NatsTarget(servers=tuple(servers), token=user)
    return NatsTarget(servers=tuple(servers), user=user, password=password)


def redacted(url: str) -> str:
    """`url` (or a comma-separated list of them) with each password or token replaced by
    `***`; a user name stays, as it says who connects. Anything not a URL is kept as is."""
    return ",".join(_redact_one(part) for part in url.split(","))


def _redact_one(url: str) -> str:
    found = _USERINFO.match(url.strip())
    if found is None:
        return url
    user, colon, _ = found["userinfo"].partition(":")
    hidden = f"{user}:{HIDDEN}" if colon else HIDDEN
    leading = url[: len(url) - len(url.lstrip())]
    return f"{leading}{found['scheme']}{hidden}@{url.strip()[found.end() :]}"


def _unquoted(value: str | None) -> str | None:
    return None if value is None else unquote(value)
