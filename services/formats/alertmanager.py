"""Alertmanager webhook payloads (version 4) -> alert observations. Pure.

Each alert of a POST is read by its own `status`: one notification may mix firing and resolved.
A delivery holds at most `MAX_ALERTS` alerts (its alerts are decided by runs of one key and
status, each run one append: `services.write.correlation`); more is refused
with 413 naming `alerts`: set `max_alerts` on the receiver so Alertmanager truncates instead
(it then counts the alerts it left out in `truncatedAlerts`).
"""

from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta, Struct, field

from events.schema import MAX_NAME, MAX_SHORT, MAX_TEXT, MAX_URI, EvidenceKind, Source
from services.errors import ErrorKind
from services.formats import utf8
from services.formats.observation import (
    AlertObservation,
    WebhookError,
    canonical,
    clipped,
    digest,
    instant,
    iso,
    joined,
    links,
    recordable,
    severity_from_labels,
    title,
    unique,
    where_and_why,
)

# Grafana's own webhook contact point sends the same shape with version "1": add it here to accept.
ALERTMANAGER_VERSIONS: Final = frozenset({"4", "1"})
# Alerts per delivery: each one is correlated and appended on its own (~2 ms apiece), so a
# bigger delivery would keep its sender waiting past any sensible webhook timeout.
MAX_ALERTS: Final = 1000


class AlertmanagerAlert(Struct, kw_only=True):
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    starts_at: Annotated[datetime, Meta(tz=True)] | None = field(name="startsAt", default=None)
    ends_at: Annotated[datetime, Meta(tz=True)] | None = field(name="endsAt", default=None)
    generator_url: str = field(name="generatorURL", default="")
    fingerprint: Annotated[str, Meta(max_length=MAX_NAME)] = ""


class _AmVersion(Struct):
    version: Any = None


class AlertmanagerPayload(Struct, kw_only=True):
    """An Alertmanager webhook notification (payload version 4; Grafana's "1" too). Fields
    not listed here (`receiver`, `groupLabels`, `externalURL`...) are ignored."""

    version: str
    group_key: Annotated[str, Meta(min_length=1, max_length=MAX_TEXT)] = field(name="groupKey")
    alerts: list[AlertmanagerAlert]
    truncated_alerts: Annotated[int, Meta(ge=0)] = field(name="truncatedAlerts", default=0)


_am_version: Final = msgspec.json.Decoder(_AmVersion)
_am_decoder: Final = msgspec.json.Decoder(AlertmanagerPayload)


def parse_alertmanager(body: bytes, received_at: datetime) -> list[AlertObservation]:
    """One observation per alert, each read by its own `status` (a POST may mix both)."""
    found = utf8.problem(body)
    if found is not None:
        raise WebhookError(found.field or "body", found.detail, ErrorKind.MALFORMED)
    try:
        # Version first, so a v3 body is refused for its version, not for some alert field.
        version = _am_version.decode(body).version
        if not isinstance(version, str) or version not in ALERTMANAGER_VERSIONS:
            raise WebhookError("version", f"unsupported payload version {version!r}, expected '4'")
        payload = _am_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise WebhookError(*where_and_why(exc)) from exc
    except msgspec.DecodeError as exc:
        raise WebhookError("body", f"malformed JSON: {exc}") from exc
    except RecursionError as exc:
        raise WebhookError("body", "nested too deeply") from exc
    if len(payload.alerts) > MAX_ALERTS:
        detail = (
            f"holds {len(payload.alerts)} alerts; a delivery holds at most {MAX_ALERTS} "
            "(set max_alerts on the Alertmanager receiver)"
        )
        raise WebhookError("alerts", detail, ErrorKind.TOO_LARGE)
    now = instant(received_at, "received_at") or received_at
    return [
        recordable(_from_alertmanager(payload, alert, f"alerts[{i}]", now), f"alerts[{i}]")
        for i, alert in enumerate(payload.alerts)
    ]


def _kind_of(annotation: str) -> EvidenceKind:
    name = annotation.lower()
    if "runbook" in name or "playbook" in name:
        return EvidenceKind.RUNBOOK
    if "dashboard" in name or "grafana" in name:
        return EvidenceKind.DASHBOARD
    if "log" in name:
        return EvidenceKind.LOG_QUERY
    if "trace" in name:
        return EvidenceKind.TRACE
    return EvidenceKind.LINK


def _url_annotations(annotations: dict[str, str]) -> list[tuple[str | None, EvidenceKind, str]]:
    """Every annotation whose value is a URL (`runbook_url`, `dashboard`, ...), kind by its name."""
    return [(value.strip(), _kind_of(name), name) for name, value in sorted(annotations.items())]


def _from_alertmanager(
    payload: AlertmanagerPayload, alert: AlertmanagerAlert, where: str, received_at: datetime
) -> AlertObservation:
    group_key = payload.group_key
    firing = alert.status == "firing"
    labels, annotations = clipped(alert.labels), clipped(alert.annotations)
    starts_at = instant(alert.starts_at, f"{where}.startsAt")
    ends_at = instant(alert.ends_at, f"{where}.endsAt")
    # Alertmanager's fingerprint is a hash of the label set; derive one the same way if absent.
    fingerprint = alert.fingerprint or digest(canonical(alert.labels))[:16]
    severity, label = severity_from_labels(labels)
    alertname = labels.get("alertname", "")[:MAX_SHORT]
    note = annotations.get("summary", "")
    parts = [group_key, fingerprint, alert.status, iso(starts_at)]
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
        title=title(alertname, note) or f"Alert {fingerprint}",
        summary=joined([note, annotations.get("description", "")], "\n\n"),
        services=unique([labels.get("service")], MAX_NAME),
        source=Source.ALERTMANAGER,
        event_id="am-" + digest(*parts, *([] if firing else [iso(ends_at)])),
        occurred_at=(starts_at if firing else ends_at) or received_at,
        links=links(
            [
                *_url_annotations(annotations),
                (generator_url, EvidenceKind.METRICS, "generatorURL"),
            ]
        ),
        truncated_alerts=payload.truncated_alerts,
    )
