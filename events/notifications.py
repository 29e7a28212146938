"""Notification routes as policy data: where the notifier (`services/notify`) delivers what.

Pure. `parse_notifications` reads the policy file's `[notifications]` table (`events.policy`
calls it); the names of what can be notified (event types and obligations) live here too, so
the policy, the notifier and the README agree on them.
"""

import enum
import re
from collections.abc import Mapping
from typing import Final, NoReturn
from urllib.parse import urlsplit

import msgspec
from msgspec import Struct

from events.durations import parse_duration
from events.schema import MAX_NAME, MAX_URI, TYPE_NAMES, Severity

# What a route hears about when it names nothing (`obligations` left out): the turns of an
# incident people act on. Any other event type may be named, except the notifier's own record.
DEFAULT_EVENTS: Final = (
    "incident.declared",
    "incident.severity_changed",
    "incident.status_changed",
    "incident.escalated",
    "comms.sent",
    "incident.resolved",
    "incident.reopened",
    "incident.closed",
    "postmortem.published",
)
NOTIFIABLE_EVENTS: Final = TYPE_NAMES - {"notification.sent"}  # never about itself: no loop

# A reminder ahead of the next comms deadline (the promised `next_update_at`, the cadence).
NEXT_UPDATE_DUE: Final = "next_update_due"
# The breach kinds known today (`projections.breaches` and the ones of issue 13); a breach of
# a kind added later is notified all the same, under `breach_obligation(kind)`.
BREACH_KINDS: Final = (
    "ack",
    "first_comms",
    "update_cadence",
    "resolution",
    "postmortem",
    "escalation",
    "next_update_missed",
    "action_item_overdue",
    "postmortem_review_overdue",
)


def breach_obligation(kind: str) -> str:
    """The obligation a breach of `kind` notifies: `ack` -> `ack_overdue`; kinds that already
    say how they are late (`next_update_missed`, `action_item_overdue`) keep their name."""
    return kind if kind.endswith(("_due", "_missed", "_overdue")) else f"{kind}_overdue"


OBLIGATIONS: Final = (NEXT_UPDATE_DUE, *(breach_obligation(kind) for kind in BREACH_KINDS))


class RouteKind(enum.StrEnum):
    SLACK = "slack"  # Slack incoming webhook: {"text", "blocks"}
    WEBHOOK = "webhook"  # generic JSON


class Secret(str):
    """A route's URL or header value: a secret, so its repr (logs, tracebacks, struct reprs)
    never shows it. `str(secret)` is the value, for the one place that sends it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'<secret>'"


class Route(Struct, frozen=True, kw_only=True):
    """One destination. Filters left out (None) let everything through."""

    name: str  # also the name of its JetStream consumer: `notify-<name>`
    kind: RouteKind
    url: Secret | None = None  # exactly one of url and url_env
    url_env: str | None = None  # the environment variable holding the URL, read at start
    target: str = ""  # for people (`#incidents`); recorded in `notification.sent`
    severities: frozenset[Severity] | None = None
    services: frozenset[str] | None = None
    obligations: frozenset[str] | None = None
    headers: tuple[tuple[str, Secret], ...] = ()  # webhook only (`Authorization`...)

    @property
    def events(self) -> frozenset[str]:
        """The event types this route is told about."""
        if self.obligations is None:
            return frozenset(DEFAULT_EVENTS)
        return self.obligations & NOTIFIABLE_EVENTS

    @property
    def wants_obligations(self) -> bool:
        return self.obligations is None or any(o not in TYPE_NAMES for o in self.obligations)

    def wants(self, obligation: str, severity: str | None, services: tuple[str, ...]) -> bool:
        if obligation in TYPE_NAMES:
            if obligation not in self.events:
                return False
        elif self.obligations is not None and obligation not in self.obligations:
            return False
        if self.severities is not None and severity not in self.severities:
            return False
        return self.services is None or not self.services.isdisjoint(services)


class Notifications(Struct, frozen=True, kw_only=True):
    routes: tuple[Route, ...] = ()
    base_url: str | None = None  # the incident pages' public address, for links
    remind_before_s: float = 300.0  # `next_update_due` this long before the deadline
    check_every_s: float = 30.0  # how often due obligations are computed
    retry_first_s: float = 1.0  # first pause after a failed delivery; doubles, with jitter
    retry_max_s: float = 300.0


NO_NOTIFICATIONS: Final = Notifications()

_ROUTE_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token
_ROUTE_KEYS: Final = "name, kind, url, url_env, target, severities, services, obligations, headers"
_KEYS: Final = "routes, base_url, remind_before, check_every, retry_first, retry_max"


class NotificationsError(ValueError):
    """A `[notifications]` table that cannot be used; the message names the key
    (`events.policy` reports it as a PolicyError)."""


def _fail(message: str) -> NoReturn:
    raise NotificationsError(message)


def _text(value: object, where: str, limit: int = MAX_NAME) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        _fail(f"{where}: expected text of 1 to {limit} characters, got {value!r}")
    return value.strip()


def _names(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not value:
        _fail(f"{where}: expected a non-empty list, got {value!r}")
    return [_text(item, f"{where}[{n}]") for n, item in enumerate(value)]


def _url(value: object, where: str) -> Secret:
    text = _text(value, where, MAX_URI)
    try:
        parts = urlsplit(text)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        valid = valid and parts.port != 0 and not any(c.isspace() for c in text)
    except ValueError:  # a bad port or IPv6 literal
        valid = False
    if not valid:
        # The value is a secret: name the key, never echo it.
        _fail(f"{where}: expected an http(s) URL with a host")
    return Secret(text)


def _duration(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        _fail(f"{where}: expected a duration, got {value!r}")
    try:
        seconds = parse_duration(value) if isinstance(value, str) else float(value)
    except ValueError as exc:
        _fail(f"{where}: {exc}")
    if not seconds > 0 or seconds == float("inf"):
        _fail(f"{where}: expected a positive duration, got {value!r}")
    return seconds


def _severities(value: object, where: str) -> frozenset[Severity]:
    found = set()
    for n, name in enumerate(_names(value, where)):
        try:
            found.add(Severity(name.upper()))
        except ValueError:
            _fail(f"{where}[{n}]: not a severity (use P0..P4), got {name!r}")
    return frozenset(found)


def _obligations(value: object, where: str) -> frozenset[str]:
    names = _names(value, where)
    for n, name in enumerate(names):
        if name not in NOTIFIABLE_EVENTS and name not in OBLIGATIONS:
            _fail(
                f"{where}[{n}]: {name!r} is neither an event type nor an obligation "
                f"({', '.join(OBLIGATIONS)})"
            )
    return frozenset(names)


def _headers(value: object, where: str) -> tuple[tuple[str, Secret], ...]:
    if not isinstance(value, Mapping):
        _fail(f"{where}: expected a table of header names and values")
    headers = []
    for name, text in value.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            _fail(f"{where}: {name!r} is not a header name")
        if not isinstance(text, str) or any(c in text for c in "\r\n\0"):
            _fail(f"{where}.{name}: expected a one-line text value")
        headers.append((name, Secret(text)))
    return tuple(headers)


def _route(document: object, where: str) -> Route:
    if not isinstance(document, Mapping):
        _fail(f"{where}: expected a table (TOML: [[notifications.routes]])")
    fields: dict[str, object] = {}
    for key, value in document.items():
        at = f"{where}.{key}"
        if key == "name":
            name = _text(value, at)
            if not _ROUTE_NAME.fullmatch(name):
                _fail(f"{at}: 1 to 64 letters, digits, '_' or '-', got {name!r}")
            fields[key] = name
        elif key == "kind":
            try:
                fields[key] = RouteKind(str(value).strip().lower())
            except ValueError:
                _fail(f"{at}: expected 'slack' or 'webhook', got {value!r}")
        elif key == "url":
            fields[key] = _url(value, at)
        elif key == "url_env":
            env = _text(value, at)
            if not _ENV_NAME.fullmatch(env):
                _fail(f"{at}: not an environment variable name: {env!r}")
            fields[key] = env
        elif key == "target":
            fields[key] = _text(value, at)
        elif key == "severities":
            fields[key] = _severities(value, at)
        elif key == "services":
            fields[key] = frozenset(_names(value, at))
        elif key == "obligations":
            fields[key] = _obligations(value, at)
        elif key == "headers":
            fields[key] = _headers(value, at)
        else:
            _fail(f"{at}: unknown key (use {_ROUTE_KEYS})")
    for required in ("name", "kind"):
        if required not in fields:
            _fail(f"{where}.{required}: required")
    if ("url" in fields) == ("url_env" in fields):
        _fail(f"{where}.url: give the URL (url) or the variable that holds it (url_env), one")
    if "headers" in fields and fields["kind"] is RouteKind.SLACK:
        _fail(f"{where}.headers: Slack incoming webhooks take no headers (kind 'webhook' does)")
    return Route(**fields)  # type: ignore[arg-type]


def parse_notifications(document: object, base: Notifications = NO_NOTIFICATIONS) -> Notifications:
    """`[notifications]` over `base`: its settings, and `routes` (a list) replacing base's."""
    if not isinstance(document, Mapping):
        _fail(f"notifications: expected a table, got {document!r}")
    fields: dict[str, object] = {}
    for key, value in document.items():
        where = f"notifications.{key}"
        if key == "routes":
            if not isinstance(value, list):
                _fail(f"{where}: expected a list of tables (TOML: [[notifications.routes]])")
            routes = tuple(_route(item, f"{where}[{n}]") for n, item in enumerate(value))
            seen: set[str] = set()
            for n, route in enumerate(routes):
                if route.name in seen:
                    _fail(f"{where}[{n}].name: {route.name!r} is used by another route")
                seen.add(route.name)
            fields[key] = routes
        elif key == "base_url":
            url = _url(value, where)
            fields[key] = str(url).rstrip("/")
        elif key in ("remind_before", "check_every", "retry_first", "retry_max"):
            fields[f"{key}_s"] = _duration(value, where)
        else:
            _fail(f"{where}: unknown key (use {_KEYS})")
    merged = msgspec.structs.replace(base, **fields)
    if merged.retry_first_s > merged.retry_max_s:
        _fail("notifications.retry_first: longer than retry_max")
    return merged
