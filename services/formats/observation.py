"""What every monitor format becomes: one `AlertObservation` per alert state, before correlation.

Pure, like the parsers beside it (`alertmanager`, `pagerduty`). Foreign formats decode leniently
(unknown fields ignored); outputs fit the log's field limits (`events.schema`).
"""

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

import msgspec
from msgspec import Struct

from events.commands import Link
from events.policy import DEFAULT_ALERT_RULES
from events.schema import (
    MAX_EVENT_BYTES,
    MAX_LABEL_VALUE,
    MAX_NAME,
    MAX_TEXT,
    MAX_TITLE,
    MAX_URI,
    EvidenceKind,
    Severity,
    Source,
)
from services.errors import ErrorKind, ServiceError, located

# Sorted keys: the bytes hashed into event ids and derived dedup keys must not depend on order.
_canonical: Final = msgspec.json.Encoder(order="sorted")


def canonical(value: object) -> str:
    return _canonical.encode(value).decode()


class WebhookError(ServiceError):
    """A monitor body that cannot be read; `field` is a path such as `alerts[0].status`."""

    field: str

    def __init__(self, field: str, detail: str, kind: ErrorKind = ErrorKind.INVALID) -> None:
        super().__init__(kind, detail, field)


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
    links: tuple[Link, ...] = ()  # kept as evidence when the alert joins an incident
    truncated_alerts: int = 0  # alerts the monitor left out of this delivery


def severity_from_labels(labels: Mapping[str, str]) -> tuple[Severity, str | None]:
    """The severity by the default alert rules (DESIGN 7): what the monitor said, before the
    policy file's rules, which correlation applies (`events.policy.AlertRules`)."""
    return DEFAULT_ALERT_RULES.severity(labels)


# Room an alert event needs beyond what the monitor sent: envelope, ids, times, hashes.
_ENVELOPE_BYTES: Final = 2048
GO_ZERO_TIME: Final = datetime(1, 1, 1, tzinfo=UTC)  # time.Time{} as Go marshals it


def recordable(obs: AlertObservation, where: str) -> AlertObservation:
    """`obs`, if its alert event fits the log's per-event limit (as `POST /v1/events` does)."""
    sent = [obs.labels, obs.annotations, obs.alertname, obs.severity_label, obs.fingerprint]
    sent += [obs.generator_url, obs.group_key, obs.dedup_key]
    size = len(_canonical.encode(sent)) + _ENVELOPE_BYTES
    if size > MAX_EVENT_BYTES:
        detail = f"is about {size} bytes once recorded; an event is at most {MAX_EVENT_BYTES}"
        raise WebhookError(where, detail, ErrorKind.TOO_LARGE)
    return obs


def where_and_why(exc: msgspec.ValidationError) -> tuple[str, str]:
    """(field path, reason) of a foreign body's validation error, phrased for its sender."""
    path, reason = located(str(exc))
    if reason.startswith("Object missing required field `"):
        reason = "is required"
    return path or "body", reason[:1].lower() + reason[1:]


def instant(value: datetime | None, where: str) -> datetime | None:
    """UTC; None for Go's zero time (`0001-01-01T00:00:00Z`, what a firing alert's endsAt says).
    Any other time before year 1 in UTC (`0001-01-01T00:00:00+00:01`) is out of range."""
    if value is None:
        return None
    if value.utcoffset() is None:
        value = value.replace(tzinfo=UTC)
    if value == GO_ZERO_TIME:
        return None
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise WebhookError(where, "is out of range in UTC") from exc


def clipped(mapping: Mapping[str, str]) -> dict[str, str]:
    """Within the log's label limits: an oversized value is cut, never a lost alert."""
    return {k[:MAX_NAME]: v[:MAX_LABEL_VALUE] for k, v in mapping.items()}


def title(*parts: str) -> str:
    return ": ".join(p for p in parts if p.strip())[:MAX_TITLE]


def joined(parts: list[str], sep: str = "\n\n") -> str:
    return sep.join(p for p in dict.fromkeys(parts) if p.strip())[:MAX_TEXT]


def unique(values: list[str | None], limit: int) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v[:limit] for v in values if v and v.strip()))


def links(values: list[tuple[str | None, EvidenceKind, str]]) -> tuple[Link, ...]:
    """Distinct http(s) URLs as evidence links (uri, kind, description), the first of each
    uri kept; a cut URL would be a wrong one, so an oversized one is left out."""
    found: dict[str, Link] = {}
    for uri, kind, description in values:
        if uri and len(uri) <= MAX_URI and uri.strip().lower().startswith(("http://", "https://")):
            found.setdefault(uri, Link(uri=uri, kind=kind, description=description[:MAX_TEXT]))
    return tuple(found.values())


def iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()


def digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]
