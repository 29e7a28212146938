"""Where things live in the stream: subjects per incident and event type, and incident ids."""

import hashlib
import re
import secrets
import uuid
from typing import Final

from events.schema import INCIDENT_ID_PATTERN

INCIDENTS_PREFIX: Final = "incidents"
CORRELATION_PREFIX: Final = "correlation"
RETENTION_PREFIX: Final = "retention"
# Change records (deploys, config pushes: PagerDuty change events), outside any incident:
# `changes.<sender>.<digest>` (`events.changes`).
CHANGES_PREFIX: Final = "changes"
ALL_CHANGES: Final = f"{CHANGES_PREFIX}.>"
# Claims of event ids, one subject per id, in a stream of their own (`<stream>_IDS`).
EVENT_IDS_PREFIX: Final = "event_ids"
ALL_INCIDENTS: Final = f"{INCIDENTS_PREFIX}.>"
STREAM_SUBJECTS: Final = (
    f"{INCIDENTS_PREFIX}.>",
    f"{CORRELATION_PREFIX}.>",
    f"{RETENTION_PREFIX}.>",
    ALL_CHANGES,
)

# Crockford base32: no I, L, O, U, so ids survive being read aloud on a bridge call.
CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_INCIDENT_ID: Final = re.compile(INCIDENT_ID_PATTERN)


class InvalidIncidentIdError(ValueError):
    pass


def new_incident_id(length: int = 8) -> str:
    if not 6 <= length <= 10:
        raise ValueError("generated incident ids have 6 to 10 characters")
    return "INC-" + "".join(secrets.choice(CROCKFORD) for _ in range(length))


def _incident_id_from(text: str) -> str:
    digest = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8])
    return "INC-" + "".join(CROCKFORD[(digest >> (5 * i)) & 31] for i in range(10))


def derived_incident_id(key: str, claim_seq: int) -> str:
    """The incident id for correlation key `key` claimed at sequence `claim_seq`: the same inputs
    give the same id, so writers racing on one claim declare one incident."""
    return _incident_id_from(f"{key}\0{claim_seq}")


def declared_incident_id(event_id: str) -> str:
    """The incident a declaration without an incident id opens: a retry finds the same one."""
    # A prefix no correlation key hash shares: "declaration\0" never ends in "\0<digits>".
    return _incident_id_from(f"declaration\0{event_id}\0")


def event_id_subject(event_id: str) -> str:
    """Where the claim of one event id lives: event ids are global, one incident each."""
    return f"{EVENT_IDS_PREFIX}.{hashlib.sha256(event_id.encode()).hexdigest()}"


def new_event_id() -> str:
    return uuid.uuid4().hex


# Ids the service makes itself (for commands sent without one, for monitor deliveries) start
# with this, and clients may not use it: such ids are unique by construction (a random id, or a
# digest naming the incident), so they need no claim (`events.ids`), the cost of a publish.
SERVICE_ID_PREFIX: Final = "~"


def service_event_id() -> str:
    return SERVICE_ID_PREFIX + new_event_id()


def validate_incident_id(incident_id: str) -> str:
    if not _INCIDENT_ID.fullmatch(incident_id):
        raise InvalidIncidentIdError(
            f"incident id {incident_id!r} must match {INCIDENT_ID_PATTERN}"
        )
    return incident_id


def event_subject(incident_id: str, event_type: str) -> str:
    return f"{INCIDENTS_PREFIX}.{validate_incident_id(incident_id)}.{event_type}"


def incident_filter(incident_id: str) -> str:
    """All subjects of one incident; also the optimistic-concurrency scope of its writers."""
    return f"{INCIDENTS_PREFIX}.{validate_incident_id(incident_id)}.>"


def incident_of(subject: str) -> str:
    prefix, incident_id, _ = subject.split(".", 2)
    if prefix != INCIDENTS_PREFIX:
        raise ValueError(f"{subject!r} is not an incident subject")
    return incident_id
