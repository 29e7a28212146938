"""Browser-borne requests: the Host a request names, the Origin it comes from, its media type.

Without tokens (the default loopback mode) any web page a responder opens could otherwise use
the responder's browser against the service: write incidents with a cross-site form or
`fetch` (CSRF), or read them through a DNS name rebound to 127.0.0.1. So, on every route:

- Host: the name a request was sent to must be this service's own: `localhost`, a loopback
  address, the address the connection arrived on, or a name in `INCIDENTS_ALLOWED_HOSTS`
  (comma-separated; `*` allows any). Anything else is 421 Misdirected Request naming `Host`.
  With tokens on, the Host is checked only when `INCIDENTS_ALLOWED_HOSTS` is set: a browser
  never sends a bearer token by itself, so a rebound name or a foreign page gains nothing.
- Origin: a state-changing request (POST, PUT, PATCH, DELETE) that carries an `Origin` must
  come from the service's own origin (scheme, host and port of the request); else 403.
- Content-Type: their bodies are JSON sent as `application/json`; any other type (text/plain,
  forms, multipart: what a page may send cross-site without a CORS preflight), or a body sent
  with no type at all, is 415 naming `Content-Type`. The web console's own forms, under
  `/console/`, are the one exception: they post `application/x-www-form-urlencoded`, and are
  taken only with the console session's cookie (SameSite=Strict) and its CSRF token
  (services/api/console/access.py).
"""

import functools
import ipaddress
from collections.abc import Collection
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec
from litestar.datastructures import Headers
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

ALLOWED_HOSTS_ENV: Final = "INCIDENTS_ALLOWED_HOSTS"
ANY_HOST: Final = "*"
LOOPBACK_NAMES: Final = frozenset({"localhost", "127.0.0.1", "::1"})
STATE_CHANGING: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON: Final = "application/json"
FORM: Final = "application/x-www-form-urlencoded"
CONSOLE_FORMS: Final = "/console/"  # the console's form routes: session and CSRF checked
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class BrowserRefusal(Exception):
    """A request refused for where it comes from or how it is sent; app.py answers it."""

    def __init__(self, status: int, kind: str, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.status = status
        self.kind = kind
        self.field = field
        self.detail = detail


class HostPolicy(msgspec.Struct, frozen=True):
    """The names a request may be addressed to; `any_host`: the Host is not checked."""

    names: frozenset[str]
    any_host: bool = False

    def allows(self, hostname: str, local_address: str | None) -> bool:
        if self.any_host or hostname in self.names:
            return True
        try:
            address = ipaddress.ip_address(hostname)
        except ValueError:
            return False  # a name: only the listed ones
        # An address literal cannot be rebound; the one the connection arrived on is ours.
        return address.is_loopback or hostname == local_address


def host_policy(tokens_enabled: bool, configured: Collection[str]) -> HostPolicy:
    names = frozenset(_normalized(n) for n in configured)
    if ANY_HOST in names or (tokens_enabled and not names):
        return HostPolicy(names, any_host=True)
    return HostPolicy(LOOPBACK_NAMES | names)


def _normalized(name: str) -> str:
    return name.strip().strip("[]").rstrip(".").lower()


# Every request names a Host, and a service is addressed by a handful of them: parse each once
# (urlsplit took ~2% of the CPU of a POST /v1/events). Bounded against many names.
@functools.lru_cache(maxsize=256)
def _hostname(value: str) -> tuple[str, int | None]:
    """(name, port) of a Host header value or an Origin's authority; ValueError if neither."""
    parts = urlsplit(f"//{value.strip()}")
    port = parts.port  # raises ValueError for a malformed port
    if not parts.hostname or parts.username is not None or parts.path:
        raise ValueError(value)
    return parts.hostname.rstrip("."), port


class BrowserGuard(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    def __init__(self, policy: HostPolicy) -> None:
        self.policy = policy

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        headers = Headers.from_scope(scope)
        host = headers.get("host")
        if host is not None:
            self._check_host(host, scope)
        if scope.get("method") in STATE_CHANGING:
            origin = headers.get("origin")
            if origin is not None:
                _check_origin(origin, host, scope)
            forms = str(scope.get("path", "")).startswith(CONSOLE_FORMS)
            _check_media_type(headers, FORM if forms else JSON)
        await next_app(scope, receive, send)

    def _check_host(self, host: str, scope: Scope) -> None:
        server: Any = scope.get("server")
        local = str(server[0]) if server else None
        try:
            hostname, _ = _hostname(host)
        except ValueError:
            hostname = ""
        if not hostname or not self.policy.allows(hostname, local):
            raise BrowserRefusal(
                421,
                "misdirected",
                "Host",
                f"this service does not answer for {host!r}: address it as localhost or by "
                f"its address, or add the name to {ALLOWED_HOSTS_ENV}",
            )


def _check_origin(origin: str, host: str | None, scope: Scope) -> None:
    scheme = str(scope.get("scheme", "http"))
    ours = None
    if host is not None:
        try:
            name, port = _hostname(host)
            ours = (scheme, name, port or _DEFAULT_PORTS.get(scheme))
        except ValueError:
            ours = None
    theirs = None
    parts = urlsplit(origin.strip())
    try:
        if parts.scheme in _DEFAULT_PORTS and parts.hostname:
            port = parts.port or _DEFAULT_PORTS[parts.scheme]
            theirs = (parts.scheme, parts.hostname.rstrip("."), port)
    except ValueError:
        theirs = None
    if ours is None or theirs != ours:
        raise BrowserRefusal(
            403,
            "forbidden",
            "Origin",
            f"requests that change state are not taken from another origin ({origin!r})",
        )


def _check_media_type(headers: Headers, wanted: str = JSON) -> None:
    given = headers.get("content-type")
    if given is None:
        length = headers.get("content-length")
        if headers.get("transfer-encoding") is None and length in (None, "0"):
            return  # no body: nothing to misread (commands without fields, a plain replay)
        detail = (
            f"send the body as {'JSON' if wanted == JSON else 'a form'} with Content-Type: {wanted}"
        )
    elif given.split(";", 1)[0].strip().lower() == wanted:
        return
    else:
        detail = f"{given.split(';', 1)[0].strip()!r} is not accepted: send {wanted}"
    raise BrowserRefusal(415, "unsupported_media_type", "Content-Type", detail)
