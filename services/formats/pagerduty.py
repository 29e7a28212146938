"""PagerDuty Events API v2 bodies -> alert observations, acknowledgements and changes. Pure.

trigger -> a firing observation, resolve -> a resolved one, acknowledge -> `PagerDutyAck`; a
change event (`/v2/change/enqueue`) -> `PagerDutyChange`. Invalid events are refused with
PagerDuty's own error list (`PagerDutyError`).

Keys are scoped by routing key, as PagerDuty scopes a `dedup_key` to its integration: the
correlation key is `["<sender>","<dedup_key>"]`, where the sender is a digest of the routing key
(with tokens on the routing key is a producer's token: it is never stored). Two senders using
the same `dedup_key` never meet, even under one principal. The sender's own `dedup_key` is kept
as given (`dedup_key` fields, the answer). A trigger without one gets a digest of its routing
key and payload: a retried identical POST gets the same key, so it opens no second incident,
and any other event gets a key of its own.
"""

import contextlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec
from msgspec import Struct, field

from events.changes import ChangeLink
from events.schema import (
    MAX_EVENT_BYTES,
    MAX_LABEL_VALUE,
    MAX_NAME,
    MAX_SHORT,
    MAX_TITLE,
    MAX_URI,
    EvidenceKind,
    Source,
)
from events.subjects import SERVICE_ID_PREFIX
from services.formats import utf8
from services.formats.observation import (
    AlertObservation,
    WebhookError,
    canonical,
    clipped,
    digest,
    instant,
    joined,
    links,
    recordable,
    severity_from_labels,
    title,
    unique,
    where_and_why,
)

_PD_SEVERITIES: Final = ("critical", "error", "warning", "info")
_PD_ACTIONS: Final = ("trigger", "acknowledge", "resolve")
ROUTING_KEY_LENGTH: Final = 32
# How far ahead of our clock a change's timestamp may be: clocks drift, the future is not a
# time anything happened at (as for our own events, `services.write.intake.MAX_CLOCK_SKEW`).
MAX_CLOCK_SKEW: Final = timedelta(minutes=5)
# Room a change record needs beyond what the sender sent: envelope, ids, times, principal.
_CHANGE_ENVELOPE_BYTES: Final = 1024


class PagerDutyError(ValueError):
    """An invalid Events API v2 event; `errors` name the field, as PagerDuty's 400 answer does."""

    message: Final = "Event object is invalid"

    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"{self.message}: {'; '.join(errors)}")
        self.errors = errors


class PagerDutyAck(Struct, frozen=True, kw_only=True):
    key: str  # the correlation key, scoped by routing key (`scoped_key`)
    dedup_key: str  # as the sender gave it: what the answer names
    event_id: str
    occurred_at: datetime


class PagerDutyChange(Struct, frozen=True, kw_only=True):
    """A change event (`/v2/change/enqueue`): what a `change.recorded` record says."""

    change_id: str  # a digest of the routing key and what was sent
    sender: str  # a digest of the routing key
    occurred_at: datetime  # payload.timestamp, else when it reached us (UTC)
    timestamped: bool  # it named when it happened: the same body is the same change, always
    summary: str
    host: str  # PagerDuty's payload.source
    custom_details: Any
    links: tuple[ChangeLink, ...]


def sender(routing_key: str) -> str:
    """Who sent an event, without the routing key itself (a producer's token, with tokens on)."""
    return digest("pagerduty routing_key", routing_key)


def scoped_key(routing_key: str, dedup_key: str) -> str:
    """A dedup_key within its routing key: `["<sender>","<dedup_key>"]`."""
    return canonical([sender(routing_key), dedup_key])


class PagerDutyLink(Struct, kw_only=True):
    href: str
    text: str = ""


class PagerDutyImage(Struct, kw_only=True):
    src: str
    href: str | None = None
    alt: str | None = None


class PagerDutyPayload(Struct, kw_only=True):
    summary: str = ""
    source: str = ""
    severity: str = ""
    timestamp: datetime | None = None
    component: str | None = None
    group: str | None = None
    class_: str | None = field(name="class", default=None)
    custom_details: Any = None


class PagerDutyEvent(Struct, kw_only=True):
    """A PagerDuty Events API v2 event (trigger, acknowledge, resolve) as its clients send it.
    Lenient as a type: what is missing or wrong is answered 400 with PagerDuty's `errors`."""

    routing_key: str = ""
    event_action: str = ""
    dedup_key: str | None = None
    payload: PagerDutyPayload | None = None
    links: list[PagerDutyLink] = []
    images: list[PagerDutyImage] = []
    client: str | None = None
    client_url: str | None = None


class PagerDutyChangePayload(Struct, kw_only=True):
    summary: str = ""
    source: str = ""
    timestamp: datetime | None = None
    custom_details: Any = None


class PagerDutyChangeEvent(Struct, kw_only=True):
    """A PagerDuty change event as its clients send it (`POST /v2/change/enqueue`)."""

    routing_key: str = ""
    payload: PagerDutyChangePayload | None = None
    links: list[PagerDutyLink] = []
    images: list[PagerDutyImage] = []  # not in the API reference, but PagerDuty's client sends them


_pd_decoder: Final = msgspec.json.Decoder(PagerDutyEvent)
_change_decoder: Final = msgspec.json.Decoder(PagerDutyChangeEvent)
_NO_PAYLOAD: Final = PagerDutyPayload()


def parse_pagerduty(body: bytes, received_at: datetime) -> AlertObservation | PagerDutyAck:
    """trigger -> firing observation, resolve -> resolved one, acknowledge -> `PagerDutyAck`."""
    with _refusals():
        event = _pd_decoder.decode(_utf8(body))
        errors = _pd_problems(event)
        if errors:
            raise PagerDutyError(errors)
        parsed = _from_pagerduty(event, instant(received_at, "received_at") or received_at)
        return parsed if isinstance(parsed, PagerDutyAck) else recordable(parsed, "payload")


def parse_change(body: bytes, received_at: datetime) -> PagerDutyChange:
    """A change event (PagerDuty's "Send a Change Event"): validated as PagerDuty does."""
    with _refusals():
        event = _change_decoder.decode(_utf8(body))
        received = instant(received_at, "received_at") or received_at
        timestamp = None
        if event.payload is not None:
            timestamp = instant(event.payload.timestamp, "payload.timestamp")
        errors = _change_problems(event, timestamp, received)
        if errors or event.payload is None:
            raise PagerDutyError(errors)
        return _change(event, event.payload, timestamp, received)


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """Every way a body can be unreadable, as PagerDuty's error list."""
    try:
        yield
    except msgspec.ValidationError as exc:
        path, reason = where_and_why(exc)
        raise PagerDutyError([f"'{path}' {reason}"]) from exc
    except msgspec.DecodeError as exc:
        raise PagerDutyError([f"body is not valid JSON: {exc}"]) from exc
    except RecursionError as exc:
        raise PagerDutyError(["body is nested too deeply"]) from exc
    except WebhookError as exc:
        raise PagerDutyError([f"'{exc.field}' {exc.detail}"]) from exc


def _utf8(body: bytes) -> bytes:
    found = utf8.problem(body)
    if found is not None:
        raise PagerDutyError([f"'{found.field or 'body'}' {found.detail}"])
    return body


def _routing_key_problems(routing_key: str) -> list[str]:
    if not routing_key.strip():
        return ["'routing_key' is missing or blank"]
    if len(routing_key) != ROUTING_KEY_LENGTH:
        return [f"'routing_key' must be {ROUTING_KEY_LENGTH} characters long"]
    return []


def _summary_problems(summary: str) -> list[str]:
    """`payload.summary`, required for triggers and changes alike (at most 1,024 characters)."""
    if not summary.strip():
        return ["'payload.summary' is missing or blank"]
    if len(summary) > MAX_SHORT:
        return [f"'payload.summary' must be at most {MAX_SHORT} characters long"]
    return []


def _pd_problems(event: PagerDutyEvent) -> list[str]:
    errors = _routing_key_problems(event.routing_key)
    if event.event_action not in _PD_ACTIONS:
        errors.append(f"'event_action' must be one of {', '.join(_PD_ACTIONS)}")
    if event.dedup_key is not None and len(event.dedup_key) > 255:
        errors.append("'dedup_key' must be at most 255 characters long")
    if event.event_action in ("acknowledge", "resolve") and not (event.dedup_key or "").strip():
        errors.append(f"'dedup_key' is missing or blank (required to {event.event_action})")
    if event.event_action == "trigger":
        payload = event.payload
        if payload is None:
            return [*errors, "'payload' is missing"]
        errors += _summary_problems(payload.summary)
        if not payload.source.strip():
            errors.append("'payload.source' is missing or blank")
        if payload.severity not in _PD_SEVERITIES:
            errors.append(f"'payload.severity' must be one of {', '.join(_PD_SEVERITIES)}")
    return errors


def _from_pagerduty(
    event: PagerDutyEvent, received_at: datetime
) -> AlertObservation | PagerDutyAck:
    payload = canonical(event.payload)
    # PagerDuty invents a dedup_key when a trigger has none; a retried POST must get the same.
    given = event.dedup_key if event.dedup_key and event.dedup_key.strip() else None
    dedup_key = given or digest(event.routing_key, payload)
    key = scoped_key(event.routing_key, dedup_key)
    event_id = "pd-" + digest(event.routing_key, dedup_key, event.event_action, payload)
    if event.event_action == "acknowledge":
        return PagerDutyAck(
            key=key, dedup_key=dedup_key, event_id=event_id, occurred_at=received_at
        )
    firing = event.event_action == "trigger"
    p = event.payload if firing and event.payload is not None else _NO_PAYLOAD
    standard = {"severity": p.severity, "source": p.source, "component": p.component}
    labels = clipped(
        {k: v for k, v in {**standard, "group": p.group, "class": p.class_}.items() if v}
    )
    details = clipped(_rendered(p.custom_details))
    severity, label = severity_from_labels(labels)
    starts_at = instant(p.timestamp, "payload.timestamp") or (received_at if firing else None)
    client_url = event.client_url if event.client_url and len(event.client_url) <= MAX_URI else None
    return AlertObservation(
        key=key,
        # Within its incident, which is this routing key's: the sender's own key reads best.
        fingerprint=dedup_key,
        firing=firing,
        alertname=p.summary,
        severity_label=label,
        severity=severity,
        labels=labels,
        annotations={**details, "summary": p.summary[:MAX_LABEL_VALUE]} if p.summary else details,
        starts_at=starts_at,
        ends_at=None if firing else received_at,
        generator_url=client_url,
        group_key=None,
        dedup_key=dedup_key,
        title=title(p.summary) or f"PagerDuty alert {dedup_key}"[:MAX_TITLE],
        summary=joined([p.summary, joined([f"{k}: {v}" for k, v in details.items()], "\n")]),
        services=unique([p.component, p.group], MAX_NAME),
        source=Source.PAGERDUTY,
        event_id=event_id,
        occurred_at=starts_at or received_at,
        links=links(
            [
                *((link.href, EvidenceKind.LINK, link.text) for link in event.links),
                *((i.src, EvidenceKind.IMAGE, i.alt or "") for i in event.images),
                (client_url, EvidenceKind.LINK, event.client or "client"),
            ]
        ),
    )


def _rendered(details: Any) -> dict[str, str]:
    if details is None:
        return {}
    if not isinstance(details, dict):
        details = {"custom_details": details}
    return {str(k): v if isinstance(v, str) else canonical(v) for k, v in details.items()}


def _change_problems(
    event: PagerDutyChangeEvent, timestamp: datetime | None, received_at: datetime
) -> list[str]:
    errors = _routing_key_problems(event.routing_key)
    payload = event.payload
    if payload is None:
        return [*errors, "'payload' is missing"]
    errors += _summary_problems(payload.summary)
    if len(payload.source) > MAX_SHORT:
        errors.append(f"'payload.source' must be at most {MAX_SHORT} characters long")
    if timestamp is not None and timestamp > received_at + MAX_CLOCK_SKEW:
        errors.append(f"'payload.timestamp' is in the future (now {received_at.isoformat()})")
    for index, link in enumerate(event.links):
        if not link.href.strip():
            errors.append(f"'links[{index}].href' is missing or blank")
    size = len(canonical([payload, event.links, event.images])) + _CHANGE_ENVELOPE_BYTES
    if size > MAX_EVENT_BYTES:
        errors.append(
            f"'payload' is about {size} bytes once recorded; a record is at most {MAX_EVENT_BYTES}"
        )
    return errors


def _change(
    event: PagerDutyChangeEvent,
    payload: PagerDutyChangePayload,
    timestamp: datetime | None,
    received_at: datetime,
) -> PagerDutyChange:
    # What was sent, and by whom: a retried POST is the same change (`events.changes`).
    sent = canonical([payload, event.links, event.images])
    return PagerDutyChange(
        change_id=f"{SERVICE_ID_PREFIX}change-{digest(event.routing_key, sent)}",
        sender=sender(event.routing_key),
        occurred_at=timestamp or received_at,
        timestamped=timestamp is not None,
        summary=payload.summary,
        host=payload.source,
        custom_details=payload.custom_details,
        # The evidence links alerts keep (http(s), whole): a cut URL would be a wrong one.
        links=tuple(
            ChangeLink(href=link.uri, text=link.description)
            for link in links(
                [
                    *((x.href, EvidenceKind.LINK, x.text) for x in event.links),
                    *((i.src, EvidenceKind.IMAGE, i.alt or "") for i in event.images),
                ]
            )
        ),
    )
