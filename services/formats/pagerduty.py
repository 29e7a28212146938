"""PagerDuty Events API v2 bodies -> alert observations and acknowledgements. Pure.

trigger -> a firing observation, resolve -> a resolved one, acknowledge -> `PagerDutyAck`;
invalid events are refused with PagerDuty's own error list (`PagerDutyError`).
"""

from datetime import datetime
from typing import Any, Final

import msgspec
from msgspec import Struct, field

from events.schema import (
    MAX_LABEL_VALUE,
    MAX_NAME,
    MAX_SHORT,
    MAX_TITLE,
    MAX_URI,
    EvidenceKind,
    Source,
)
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


class PagerDutyError(ValueError):
    """An invalid Events API v2 event; `errors` name the field, as PagerDuty's 400 answer does."""

    message: Final = "Event object is invalid"

    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"{self.message}: {'; '.join(errors)}")
        self.errors = errors


class PagerDutyAck(Struct, frozen=True, kw_only=True):
    key: str
    event_id: str
    occurred_at: datetime


class _PdLink(Struct, kw_only=True):
    href: str
    text: str = ""


class _PdImage(Struct, kw_only=True):
    src: str
    href: str | None = None
    alt: str | None = None


class _PdPayload(Struct, kw_only=True):
    summary: str = ""
    source: str = ""
    severity: str = ""
    timestamp: datetime | None = None
    component: str | None = None
    group: str | None = None
    class_: str | None = field(name="class", default=None)
    custom_details: Any = None


class _PdEvent(Struct, kw_only=True):
    routing_key: str = ""
    event_action: str = ""
    dedup_key: str | None = None
    payload: _PdPayload | None = None
    links: list[_PdLink] = []
    images: list[_PdImage] = []
    client: str | None = None
    client_url: str | None = None


_pd_decoder: Final = msgspec.json.Decoder(_PdEvent)
_NO_PAYLOAD: Final = _PdPayload()


def parse_pagerduty(body: bytes, received_at: datetime) -> AlertObservation | PagerDutyAck:
    """trigger -> firing observation, resolve -> resolved one, acknowledge -> `PagerDutyAck`."""
    found = utf8.problem(body)
    if found is not None:
        raise PagerDutyError([f"'{found.field or 'body'}' {found.detail}"])
    try:
        event = _pd_decoder.decode(body)
        errors = _pd_problems(event)
        if errors:
            raise PagerDutyError(errors)
        parsed = _from_pagerduty(event, instant(received_at, "received_at") or received_at)
        return parsed if isinstance(parsed, PagerDutyAck) else recordable(parsed, "payload")
    except msgspec.ValidationError as exc:
        path, reason = where_and_why(exc)
        raise PagerDutyError([f"'{path}' {reason}"]) from exc
    except msgspec.DecodeError as exc:
        raise PagerDutyError([f"body is not valid JSON: {exc}"]) from exc
    except RecursionError as exc:
        raise PagerDutyError(["body is nested too deeply"]) from exc
    except WebhookError as exc:
        raise PagerDutyError([f"'{exc.field}' {exc.detail}"]) from exc


def _pd_problems(event: _PdEvent) -> list[str]:
    errors = []
    if not event.routing_key.strip():
        errors.append("'routing_key' is missing or blank")
    elif len(event.routing_key) != 32:
        errors.append("'routing_key' must be 32 characters long")
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
        if not payload.summary.strip():
            errors.append("'payload.summary' is missing or blank")
        elif len(payload.summary) > MAX_SHORT:
            errors.append(f"'payload.summary' must be at most {MAX_SHORT} characters long")
        if not payload.source.strip():
            errors.append("'payload.source' is missing or blank")
        if payload.severity not in _PD_SEVERITIES:
            errors.append(f"'payload.severity' must be one of {', '.join(_PD_SEVERITIES)}")
    return errors


def _from_pagerduty(event: _PdEvent, received_at: datetime) -> AlertObservation | PagerDutyAck:
    payload = canonical(event.payload)
    # PagerDuty invents a dedup_key when a trigger has none; a retried POST must get the same.
    given = event.dedup_key if event.dedup_key and event.dedup_key.strip() else None
    key = given or digest(event.routing_key, payload)
    event_id = "pd-" + digest(event.routing_key, key, event.event_action, payload)
    if event.event_action == "acknowledge":
        return PagerDutyAck(key=key, event_id=event_id, occurred_at=received_at)
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
        fingerprint=key,
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
        dedup_key=key,
        title=title(p.summary) or f"PagerDuty alert {key}"[:MAX_TITLE],
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
