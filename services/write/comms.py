"""Comms from the policy's templates: the incident's fields as variables, rendered in the one
sandboxed jinja2 environment (`events.templates.ENVIRONMENT`).

The incident is read from the log and folded, not from a read model, so a message composed
right after a status change already says the new status. Rendering failures are
`ServiceError`s (invalid) naming the template and what it lacked.
"""

import asyncio
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import msgspec
from jinja2 import TemplateError, UndefinedError
from msgspec import Struct

from events.durations import format_duration
from events.incident import Incident, fold
from events.schema import Audience, Channel, CommsKind, Impact, IncidentId, Role, Status
from events.store import EventStore
from events.templates import ENVIRONMENT, CommsTemplate
from services.clock import utc_text
from services.errors import ErrorKind, ServiceError, located

NOT_STATED: Final = "not stated yet"
# Names every template can use; `--set` extras may not shadow them (one source for each fact).
# `next_update` is defined only when the request promises one.
BUILT_IN: Final = frozenset(
    {
        "incident_id",
        "title",
        "severity",
        "category",
        "status",
        "phase",
        "services",
        "impact",
        "impact_summary",
        "detected_at",
        "impact_started_at",
        "opened_at",
        "acknowledged_at",
        "resolved_at",
        "duration",
        "escalation_level",
        "now",
        "next_update",
        "url",
        *(role.value for role in Role),
    }
)
_UNDEFINED: Final = re.compile(r"'([A-Za-z_][A-Za-z0-9_]*)' is undefined")


class Composed(Struct, frozen=True, kw_only=True):
    """A message as it would be sent: the template's audience, kind and channel, the public
    status the incident has now."""

    template: str | None
    audience: Audience
    kind: CommsKind
    channel: Channel | None
    status: Status | None
    message: str
    next_update_at: datetime | None = None


def _when(moment: datetime | None) -> str | None:
    return utc_text(moment) if moment is not None else None


def _listed(names: tuple[str, ...]) -> str:
    return ", ".join(names)


def impact_summary(impact: Impact | None) -> str:
    """One line for people: the statement's text, then its facts in brackets."""
    if impact is None:
        return NOT_STATED
    facts = []
    if impact.users_affected_pct is not None:
        facts.append(f"{impact.users_affected_pct:g}% of users")
    if impact.customers_affected is not None:
        facts.append(f"{impact.customers_affected} customers")
    for label, names in (
        ("customers", impact.customers),
        ("regions", impact.regions),
        ("services", impact.services),
    ):
        if names:
            facts.append(f"{label} {_listed(names)}")
    if impact.data_loss is not None:
        facts.append("data loss" if impact.data_loss else "no data loss")
    if impact.security is not None:
        facts.append("security impact" if impact.security else "no security impact")
    if impact.revenue_at_risk is not None:
        facts.append(f"revenue at risk {impact.revenue_at_risk}")
    if impact.text and facts:
        return f"{impact.text} ({'; '.join(facts)})"
    return impact.text or "; ".join(facts) or NOT_STATED


def _impact(impact: Impact | None) -> dict[str, Any]:
    """The statement's fields, lists as comma-separated text (messages are plain text)."""
    shown = impact or Impact()
    values = {name: getattr(shown, name) for name in Impact.__struct_fields__}
    return {k: _listed(v) if isinstance(v, tuple) else v for k, v in values.items()}


def variables(
    state: Incident, now: datetime, next_update_at: datetime | None, url: str | None
) -> dict[str, Any]:
    """The template variables of an incident as folded; unknown facts are None."""
    start = state.detected_at or state.opened_at
    end = state.resolved_at or now
    values: dict[str, Any] = {
        "incident_id": state.incident_id,
        "title": state.title,
        "severity": state.severity.value if state.severity else None,
        "category": state.category.value if state.category else None,
        "status": state.status.value if state.status else None,
        "phase": state.phase.value if state.phase else None,
        "services": _listed(state.services),
        "impact": _impact(state.impact),
        "impact_summary": impact_summary(state.impact),
        "detected_at": _when(state.detected_at),
        "impact_started_at": _when(state.impact_started_at),
        "opened_at": _when(state.opened_at),
        "acknowledged_at": _when(state.acknowledged_at),
        "resolved_at": _when(state.resolved_at),
        "duration": format_duration((end - start).total_seconds()) if start else None,
        "escalation_level": state.escalation_level,
        "now": utc_text(now),
        "url": url,
        **{role.value: state.holder(role) for role in Role},
    }
    if next_update_at is not None:
        values["next_update"] = utc_text(next_update_at)
    return values


def _undefined(name: str, exc: UndefinedError) -> ServiceError:
    found = _UNDEFINED.fullmatch(exc.message or "")
    if found is None:  # an attribute a value lacks (`impact.nope`)
        return ServiceError(ErrorKind.INVALID, f"template {name}: {exc.message}", "template")
    variable = found.group(1)
    if variable == "next_update":
        detail = f"template {name} uses next_update: give next_update_at, the update's due time"
        return ServiceError(ErrorKind.INVALID, detail, "next_update_at")
    detail = f"template {name} uses {variable}, which is not set: give it in vars"
    return ServiceError(ErrorKind.INVALID, detail, f"vars.{variable}")


def render(template: CommsTemplate, values: Mapping[str, Any]) -> str:
    """The message, stripped of surrounding blank lines; never empty."""
    try:
        text = ENVIRONMENT.from_string(template.text).render(values).strip()
    except UndefinedError as exc:
        raise _undefined(template.name, exc) from exc
    # Template mistakes the compile step cannot see (a sandbox refusal, `{{ title + 1 }}`).
    except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
        detail = f"template {template.name} failed: {exc}"
        raise ServiceError(ErrorKind.INVALID, detail, "template") from exc
    if not text:
        detail = f"template {template.name} rendered an empty message"
        raise ServiceError(ErrorKind.INVALID, detail, "template")
    return text


async def current_state(store: EventStore, incident_id: str) -> Incident:
    """The incident as the log holds it now; 404 when it was never declared."""
    try:
        msgspec.convert(incident_id, IncidentId)
    except msgspec.ValidationError as exc:
        raise ServiceError(ErrorKind.INVALID, located(str(exc))[1], "incident_id") from exc
    loaded = await store.load(incident_id)
    # Folding a long incident is CPU work: off the event loop, as the write path does.
    state = await asyncio.to_thread(fold, [stored.event for stored in loaded.events])
    if not state.declared:
        raise ServiceError(ErrorKind.NOT_FOUND, f"incident {incident_id} does not exist")
    return state


async def compose(
    store: EventStore,
    template: CommsTemplate,
    incident_id: str,
    *,
    extras: Mapping[str, str],
    next_update_at: datetime | None,
    now: datetime,
    url: str | None = None,
) -> Composed:
    """`template` rendered from the incident's current state and `extras` (`--set key=value`)."""
    for key in extras:
        if key in BUILT_IN:
            detail = f"{key} comes from the incident; name the extra otherwise"
            raise ServiceError(ErrorKind.INVALID, detail, f"vars.{key}")
    state = await current_state(store, incident_id)
    values = variables(state, now, next_update_at, url) | dict(extras)
    return Composed(
        template=template.name,
        audience=template.audience,
        kind=template.kind,
        channel=template.channel,
        status=state.status,
        message=render(template, values),
        next_update_at=next_update_at,
    )
