"""Foreign monitor payloads (Alertmanager webhook v4, PagerDuty Events API v2) -> observations.

Pure: intake hands raw bodies here and passes the `AlertObservation`s on to correlation.
Foreign formats decode leniently (unknown fields ignored); outputs fit the log's field limits.
"""

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta, Struct, field

from events.schema import Severity, Source

MAX_TITLE: Final = 300
MAX_TEXT: Final = 16 * 1024
MAX_SHORT: Final = 1024
MAX_NAME: Final = 256
MAX_LABEL_VALUE: Final = 4096
MAX_URI: Final = 2048
DEFAULT_SEVERITY: Final = Severity.P3
# Grafana's own webhook contact point sends the same shape with version "1": add it here to accept.
ALERTMANAGER_VERSIONS: Final = frozenset({"4", "1"})

_PRIORITIES: Final[Mapping[str, Severity]] = {s.value: s for s in Severity}
_SEVERITIES: Final[Mapping[str, Severity]] = {
    "critical": Severity.P1,
    "error": Severity.P2,
    "high": Severity.P2,
    "warning": Severity.P3,
    "info": Severity.P4,
}
_PD_SEVERITIES: Final = ("critical", "error", "warning", "info")
_PD_ACTIONS: Final = ("trigger", "acknowledge", "resolve")


class WebhookError(ValueError):
    """An Alertmanager body that cannot be read; `field` is a path such as `alerts[0].status`."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


class PagerDutyError(ValueError):
    """An invalid Events API v2 event; `errors` name the field, as PagerDuty's 400 answer does."""

    message: Final = "Event object is invalid"

    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"{self.message}: {'; '.join(errors)}")
        self.errors = errors


class AlertObservation(Struct, frozen=True, kw_only=True):
    """One alert state as a monitor reported it, before correlation gives it an incident."""

    key: str
    fingerprint: str
    firing: bool
    alertname: str
    severity_label: str | None
    severity: Severity
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime | None
    ends_at: datetime | None
    generator_url: str | None
    group_key: str | None
    dedup_key: str | None
    title: str
    summary: str
    services: tuple[str, ...]
    source: Source
    event_id: str
    occurred_at: datetime
    links: tuple[str, ...] = ()


class PagerDutyAck(Struct, frozen=True, kw_only=True):
    key: str
    event_id: str
    occurred_at: datetime


class _AmAlert(Struct, kw_only=True):
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    starts_at: Annotated[datetime, Meta(tz=True)] | None = field(name="startsAt", default=None)
    ends_at: Annotated[datetime, Meta(tz=True)] | None = field(name="endsAt", default=None)
    generator_url: str = field(name="generatorURL", default="")
    fingerprint: Annotated[str, Meta(max_length=MAX_NAME)] = ""


class _AmVersion(Struct):
    version: Any = None


class _AmPayload(Struct, kw_only=True):
    version: str
    group_key: Annotated[str, Meta(min_length=1, max_length=MAX_TEXT)] = field(name="groupKey")
    alerts: list[_AmAlert]
    truncated_alerts: int = field(name="truncatedAlerts", default=0)


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


_am_version: Final = msgspec.json.Decoder(_AmVersion)
_am_decoder: Final = msgspec.json.Decoder(_AmPayload)
_pd_decoder: Final = msgspec.json.Decoder(_PdEvent)
# Sorted keys: the bytes hashed into event ids and derived dedup keys must not depend on order.
_canonical: Final = msgspec.json.Encoder(order="sorted")
_NO_PAYLOAD: Final = _PdPayload()


def severity_from_labels(labels: Mapping[str, str]) -> tuple[Severity, str | None]:
    """The severity and the raw label value it came from (DESIGN 7).

    A `priority` label P0..P4 (any case) wins; else the `severity` label maps critical -> P1,
    error/high -> P2, warning -> P3, info -> P4. Anything else, or no label, gives P3.
    """
    priority = labels.get("priority")
    if priority is not None and priority.strip().upper() in _PRIORITIES:
        return _PRIORITIES[priority.strip().upper()], priority
    raw = labels.get("severity")
    return _SEVERITIES.get((raw or "").strip().lower(), DEFAULT_SEVERITY), raw


def parse_alertmanager(body: bytes, received_at: datetime) -> list[AlertObservation]:
    """One observation per alert, each read by its own `status` (a POST may mix both)."""
    try:
        # Version first, so a v3 body is refused for its version, not for some alert field.
        version = _am_version.decode(body).version
        if not isinstance(version, str) or version not in ALERTMANAGER_VERSIONS:
            raise WebhookError("version", f"unsupported payload version {version!r}, expected '4'")
        payload = _am_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise WebhookError(*_located(exc)) from exc
    except msgspec.DecodeError as exc:
        raise WebhookError("body", f"malformed JSON: {exc}") from exc
    except RecursionError as exc:
        raise WebhookError("body", "nested too deeply") from exc
    now = _instant(received_at, "received_at") or received_at
    return [
        _from_alertmanager(payload.group_key, alert, f"alerts[{index}]", now)
        for index, alert in enumerate(payload.alerts)
    ]


def parse_pagerduty(body: bytes, received_at: datetime) -> AlertObservation | PagerDutyAck:
    """trigger -> firing observation, resolve -> resolved one, acknowledge -> `PagerDutyAck`."""
    try:
        event = _pd_decoder.decode(body)
        errors = _pd_problems(event)
        if errors:
            raise PagerDutyError(errors)
        return _from_pagerduty(event, _instant(received_at, "received_at") or received_at)
    except msgspec.ValidationError as exc:
        path, reason = _located(exc)
        raise PagerDutyError([f"'{path}' {reason}"]) from exc
    except msgspec.DecodeError as exc:
        raise PagerDutyError([f"body is not valid JSON: {exc}"]) from exc
    except RecursionError as exc:
        raise PagerDutyError(["body is nested too deeply"]) from exc
    except WebhookError as exc:
        raise PagerDutyError([f"'{exc.field}' {exc.detail}"]) from exc


def _from_alertmanager(
    group_key: str, alert: _AmAlert, where: str, received_at: datetime
) -> AlertObservation:
    firing = alert.status == "firing"
    labels, annotations = _clipped(alert.labels), _clipped(alert.annotations)
    starts_at = _instant(alert.starts_at, f"{where}.startsAt")
    ends_at = _instant(alert.ends_at, f"{where}.endsAt")
    # Alertmanager's fingerprint is a hash of the label set; derive one the same way if absent.
    fingerprint = alert.fingerprint or _digest(_canonical.encode(alert.labels).decode())[:16]
    severity, label = severity_from_labels(labels)
    alertname = labels.get("alertname", "")[:MAX_SHORT]
    note = annotations.get("summary", "")
    parts = [group_key, fingerprint, alert.status, _iso(starts_at)]
    generator_url = alert.generator_url if 0 < len(alert.generator_url) <= MAX_URI else None
    return AlertObservation(
        key=group_key,
        fingerprint=fingerprint,
        firing=firing,
        alertname=alertname,
        severity_label=None if label is None else label[:MAX_SHORT],
        severity=severity,
        labels=labels,
        annotations=annotations,
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url=generator_url,
        group_key=group_key,
        dedup_key=None,
        title=_title(alertname, note) or f"Alert {fingerprint}",
        summary=_joined([note, annotations.get("description", "")], "\n\n"),
        services=_unique([labels.get("service")], MAX_NAME),
        source=Source.ALERTMANAGER,
        event_id="am-" + _digest(*parts, *([] if firing else [_iso(ends_at)])),
        occurred_at=(starts_at if firing else ends_at) or received_at,
        links=_links([generator_url, annotations.get("runbook_url")]),
    )


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
            errors.append("'payload.summary' must be at most 1024 characters long")
        if not payload.source.strip():
            errors.append("'payload.source' is missing or blank")
        if payload.severity not in _PD_SEVERITIES:
            errors.append(f"'payload.severity' must be one of {', '.join(_PD_SEVERITIES)}")
    return errors


def _from_pagerduty(event: _PdEvent, received_at: datetime) -> AlertObservation | PagerDutyAck:
    canonical = _canonical.encode(event.payload).decode()
    # PagerDuty invents a dedup_key when a trigger has none; a retried POST must get the same.
    given = event.dedup_key if event.dedup_key and event.dedup_key.strip() else None
    key = given or _digest(event.routing_key, canonical)
    event_id = "pd-" + _digest(event.routing_key, key, event.event_action, canonical)
    if event.event_action == "acknowledge":
        return PagerDutyAck(key=key, event_id=event_id, occurred_at=received_at)
    firing = event.event_action == "trigger"
    p = event.payload if firing and event.payload is not None else _NO_PAYLOAD
    standard = {"severity": p.severity, "source": p.source, "component": p.component}
    labels = _clipped(
        {k: v for k, v in {**standard, "group": p.group, "class": p.class_}.items() if v}
    )
    details = _clipped(_rendered(p.custom_details))
    severity, label = severity_from_labels(labels)
    starts_at = _instant(p.timestamp, "payload.timestamp") or (received_at if firing else None)
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
        title=_title(p.summary) or f"PagerDuty alert {key}"[:MAX_TITLE],
        summary=_joined([p.summary, _joined([f"{k}: {v}" for k, v in details.items()], "\n")]),
        services=_unique([p.component, p.group], MAX_NAME),
        source=Source.PAGERDUTY,
        event_id=event_id,
        occurred_at=starts_at or received_at,
        links=_links([*(link.href for link in event.links), client_url]),
    )


def _located(exc: msgspec.ValidationError) -> tuple[str, str]:
    """(field path, reason) out of msgspec's "Reason - at `$.alerts[0].status`"."""
    reason, _, where = str(exc).rpartition(" - at `$")
    if not reason:
        reason, where = str(exc), ""
    path = where.rstrip("`").lstrip(".")
    if reason.startswith("Object missing required field `"):
        name = reason.split("`")[1]
        path, reason = (f"{path}.{name}" if path else name), "is required"
    return path or "body", reason[:1].lower() + reason[1:]


def _instant(value: datetime | None, where: str) -> datetime | None:
    """UTC; None for Go's zero time (`0001-01-01T00:00:00Z`, what a firing alert's endsAt says)."""
    if value is None or value.year == 1:
        return None
    if value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise WebhookError(where, "is out of range in UTC") from exc


def _rendered(details: Any) -> dict[str, str]:
    if details is None:
        return {}
    if not isinstance(details, dict):
        details = {"custom_details": details}
    return {
        str(k): v if isinstance(v, str) else _canonical.encode(v).decode()
        for k, v in details.items()
    }


def _clipped(mapping: Mapping[str, str]) -> dict[str, str]:
    """Within the log's label limits: an oversized value is cut, never a lost alert."""
    return {k[:MAX_NAME]: v[:MAX_LABEL_VALUE] for k, v in mapping.items()}


def _title(*parts: str) -> str:
    return ": ".join(p for p in parts if p.strip())[:MAX_TITLE]


def _joined(parts: list[str], sep: str = "\n\n") -> str:
    return sep.join(p for p in dict.fromkeys(parts) if p.strip())[:MAX_TEXT]


def _unique(values: list[str | None], limit: int) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v[:limit] for v in values if v and v.strip()))


def _links(values: list[str | None]) -> tuple[str, ...]:
    """Distinct URLs; a cut URL would be a wrong one, so an oversized one is left out."""
    return tuple(dict.fromkeys(v for v in values if v and v.strip() and len(v) <= MAX_URI))


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]
