"""The one answer of every write, whichever transport brought it: the events as stored."""

from collections.abc import Sequence

import msgspec

from events.schema import type_name
from services.telemetry import APPENDED
from services.write.handler import Accepted


class StoredAnswer(msgspec.Struct, frozen=True):
    event_id: str
    type: str
    incident_id: str
    seq: int
    duplicate: bool


class Answer(msgspec.Struct, frozen=True):
    events: list[StoredAnswer]
    # Submitted events that changed nothing (a second acknowledgement...) and were not stored.
    unchanged: list[str] = []
    incident_id: str | None = None


def answer(*results: Accepted, unchanged: Sequence[str] = ()) -> Answer:
    for result in results:
        for appended in result.events:
            if not appended.duplicate:
                APPENDED.labels(appended.event.source.value).inc()
    stored = [
        StoredAnswer(a.event.event_id, type_name(a.event), a.event.incident_id, a.seq, a.duplicate)
        for result in results
        for a in result.events
    ]
    return Answer(stored, list(unchanged))
