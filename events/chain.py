"""The per-incident SHA-256 hash chain: sealing events before append and verifying stored ones.

An event's `hash` is SHA-256 over its canonical JSON (keys sorted, compact, UTF-8) with the
`hash` key removed; `prev_hash` (inside that JSON) is the hash of the incident's previous event.
Verification works on stored bytes, not re-encoded Structs, so schema changes never break it.
"""

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Final

import msgspec

from events.schema import AnyEvent, encode_canonical, normalized, to_utc

GENESIS: Final = ""


def digest(document: dict[str, Any]) -> str:
    body = {key: value for key, value in document.items() if key != "hash"}
    return hashlib.sha256(encode_canonical(body)).hexdigest()


def seal(events: Sequence[AnyEvent], prev_hash: str, recorded_at: datetime) -> list[AnyEvent]:
    """Stamp `recorded_at`, link each event to the previous one and compute its hash."""
    sealed: list[AnyEvent] = []
    for event in events:
        stamped = msgspec.structs.replace(
            normalized(event), recorded_at=to_utc(recorded_at), prev_hash=prev_hash, hash=""
        )
        prev_hash = digest(msgspec.to_builtins(stamped))
        sealed.append(msgspec.structs.replace(stamped, hash=prev_hash))
    return sealed


class ChainBreak(msgspec.Struct, frozen=True):
    """The first place an incident's chain does not hold."""

    incident_id: str
    seq: int
    event_id: str
    reason: str


_document: Final = msgspec.json.Decoder(dict[str, Any])


def verify(records: Iterable[tuple[int, bytes]]) -> list[ChainBreak]:
    """Check stored events (stream sequence, raw bytes) in log order; one break per incident."""
    heads: dict[str, str] = {}
    broken: dict[str, ChainBreak] = {}
    for seq, raw in records:
        try:
            document = _document.decode(raw)
            incident_id = str(document["incident_id"])
            event_id = str(document.get("event_id", ""))
        except (msgspec.DecodeError, KeyError):
            # Undecodable bytes cannot name their incident; report them under a sentinel.
            broken.setdefault("?", ChainBreak("?", seq, "", "not a JSON event"))
            continue
        if incident_id in broken:
            continue
        expected_prev = heads.get(incident_id, GENESIS)
        if document.get("prev_hash") != expected_prev:
            broken[incident_id] = ChainBreak(incident_id, seq, event_id, "prev_hash does not link")
        elif digest(document) != document.get("hash"):
            broken[incident_id] = ChainBreak(incident_id, seq, event_id, "hash does not match")
        else:
            heads[incident_id] = str(document["hash"])
    return list(broken.values())
