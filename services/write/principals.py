"""Who may append what: the one table of event types per role, and the principal events record.

Intake checks every write against it, whichever transport brought it (HTTP, NATS, webhooks),
before anything is decided or appended. A producer is a monitor or a tool: it reports alerts,
declares, states impact (a status-page tool counting affected users), raises severity,
escalates, records automated mitigations, notes, evidence and comms; it never acknowledges,
assigns, changes status or phase (a person's take-over), resolves, reopens, closes, writes the
postmortem, or corrects or retracts. Commands (people's verbs) need a role that may command.
Webhooks derive their events in the service from the monitor's protocol
(`services.write.correlation`), within the sender's own correlation keys.
"""

from typing import Final

from events.schema import TYPE_NAMES
from events.schema import Principal as Recorded
from services.auth import Permission, Principal, Role
from services.errors import ErrorKind, ServiceError

PRODUCER_TYPES: Final = frozenset(
    {
        "alert.fired",
        "alert.resolved",
        "incident.declared",
        "incident.impact_updated",
        "incident.severity_changed",
        "incident.escalated",
        "mitigation.started",
        "mitigation.completed",
        "comms.sent",
        "incident.note_added",
        "evidence.attached",
    }
)
# The event types each role may append as events (`POST /v1/events`, NATS `intake.events`).
APPENDABLE: Final[dict[Role, frozenset[str]]] = {
    Role.PRODUCER: PRODUCER_TYPES,
    Role.RESPONDER: frozenset(),  # people use commands
    Role.AUDITOR: frozenset(),
    Role.ADMIN: TYPE_NAMES,
}
# Without tokens, NATS producers on the shared subjects (`intake.events`): monitors.
NATS: Final = Principal("nats", Role.PRODUCER)


def recorded(principal: Principal) -> Recorded:
    """The principal as the envelope records it: token name and role (`local`, `admin` without
    tokens)."""
    return Recorded(name=principal.name, role=principal.role.value)


def forbidden(principal: Principal, what: str, field: str | None = None) -> ServiceError:
    return ServiceError(ErrorKind.FORBIDDEN, f"role {principal.role} may not {what}", field)


def require(principal: Principal, permission: Permission) -> None:
    if not principal.may(permission):
        raise forbidden(principal, permission.value)


def may_append(principal: Principal, event_type: str) -> bool:
    return event_type in APPENDABLE[principal.role]
