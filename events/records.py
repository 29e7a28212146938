"""Records as the log's readers hand them out: decoded incident events, or quarantined ones.

A record on `incidents.>` that does not decode (a stray publish, a type written by a newer
version during a rolling upgrade) is never a reason for a reader to stop (DESIGN 8): it is
carried as `Quarantined`, with its sequence, subject, the reason and its exact bytes. Projectors
keep it in their `quarantine` table and move past it; writers fold an incident's history
without it. Each is logged once per process, however many readers meet it.
"""

import logging
from collections import OrderedDict
from collections.abc import Iterable
from typing import Final, TypeAlias

from msgspec import Struct

from events.schema import AnyEvent, decode

log = logging.getLogger(__name__)

_REPORTED_AT_MOST: Final = 10_000  # (subject, seq) pairs remembered as already logged


class Stored(Struct, frozen=True, gc=False):
    """An event as the log holds it: stream sequence, decoded event and the exact stored bytes."""

    seq: int
    event: AnyEvent
    raw: bytes


class Quarantined(Struct, frozen=True, gc=False):
    """A record on an incident subject that does not decode: kept aside, never dropped."""

    seq: int
    subject: str
    reason: str
    raw: bytes


Record: TypeAlias = Stored | Quarantined


class Batch(Struct, frozen=True, gc=False):
    """Incident events read together, and the stream position they bring a reader to."""

    events: list[Stored]
    last_seq: int
    pending: int = 0  # records after last_seq in the stream when it was read
    first_seq: int = 0  # first record of the batch: past the reader's position when it expired
    quarantined: list[Quarantined] = []  # records of the batch that do not decode


class Loaded(Struct, frozen=True, gc=False):
    events: list[Stored]
    last_seq: int  # the incident's last record, quarantined or not: what appends expect

    @property
    def head_hash(self) -> str:
        return self.events[-1].event.hash if self.events else ""


_reported: OrderedDict[tuple[str, int], None] = OrderedDict()


def record(seq: int, subject: str, data: bytes) -> Record:
    """The record stored at `seq`: its event, or quarantined when it does not decode."""
    try:
        return Stored(seq, decode(data), data)
    except (ValueError, TypeError) as exc:  # SchemaError, and whatever a field check raises
        quarantined = Quarantined(seq, subject, str(exc) or type(exc).__name__, data)
        _report(quarantined)
        return quarantined


def split(records: Iterable[Record]) -> tuple[list[Stored], list[Quarantined]]:
    """Events and quarantined records, each in log order."""
    events: list[Stored] = []
    quarantined: list[Quarantined] = []
    for r in records:
        if isinstance(r, Stored):
            events.append(r)
        else:
            quarantined.append(r)
    return events, quarantined


def _report(q: Quarantined) -> None:
    key = (q.subject, q.seq)
    if key in _reported:
        return
    _reported[key] = None
    if len(_reported) > _REPORTED_AT_MOST:
        _reported.popitem(last=False)
    log.warning(
        "quarantined record seq %s on %s (%s bytes), skipped by projection and writers: %s",
        q.seq,
        q.subject,
        len(q.raw),
        q.reason,
    )
