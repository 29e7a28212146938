"""The per-incident SHA-256 hash chain: sealing events before append and verifying stored ones.

An event's `hash` is SHA-256 over its stored bytes with the hash value left empty
(`"hash":""`); `prev_hash`, inside those bytes, is the hash of the incident's previous event.
Verification works on the stored bytes themselves, never on a re-encoding, so any changed byte
shows, and an auditor needs nothing but text substitution and sha256sum:

    sed 's/"hash":"<hash>"/"hash":""/' event.json | sha256sum   # == <hash>
"""

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Final

import msgspec

from events.schema import AnyEvent, encode, normalized, to_utc

GENESIS: Final = ""


def digest(preimage: bytes) -> str:
    return hashlib.sha256(preimage).hexdigest()


def seal(events: Sequence[AnyEvent], prev_hash: str, recorded_at: datetime) -> list[AnyEvent]:
    """Stamp `recorded_at` and the type's schema version, link each event to the previous one
    and compute its hash."""
    sealed: list[AnyEvent] = []
    for event in events:
        unsealed = msgspec.structs.replace(
            normalized(event),
            recorded_at=to_utc(recorded_at),
            schema_version=event.SCHEMA_VERSION,
            prev_hash=prev_hash,
            hash="",
        )
        prev_hash = digest(encode(unsealed))
        sealed.append(msgspec.structs.replace(unsealed, hash=prev_hash))
    return sealed


def preimage(raw: bytes, claimed: str) -> bytes | None:
    """The bytes the hash covers: `raw` with its one `"hash":"<claimed>"` emptied."""
    needle = b'"hash":"' + claimed.encode() + b'"'
    if raw.count(needle) != 1:
        return None
    return raw.replace(needle, b'"hash":""')


class ChainBreak(msgspec.Struct, frozen=True):
    """The first place an incident's chain does not hold."""

    incident_id: str
    seq: int
    event_id: str
    reason: str


class _Links(msgspec.Struct):
    incident_id: str
    event_id: str = ""
    prev_hash: Any = None
    hash: Any = None


_links: Final = msgspec.json.Decoder(_Links)


def verify(
    records: Iterable[tuple[int, bytes]], heads: dict[str, str] | None = None
) -> list[ChainBreak]:
    """Check stored events (stream sequence, raw bytes) in log order; one break per incident.

    `heads` gives, per incident, the hash its next event must link to, for checking a log
    whose beginning has expired; an incident absent from it starts at GENESIS.
    """
    heads = dict(heads or {})
    broken: dict[str, ChainBreak] = {}
    for seq, raw in records:
        try:
            links = _links.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError):
            # Undecodable bytes cannot name their incident; report them under a sentinel.
            broken.setdefault("?", ChainBreak("?", seq, "", "not a JSON event"))
            continue
        incident_id = links.incident_id
        if incident_id in broken:
            continue
        claimed = links.hash if isinstance(links.hash, str) else ""
        covered = preimage(raw, claimed)
        if links.prev_hash != heads.get(incident_id, GENESIS):
            reason = "prev_hash does not link to the previous event"
        elif covered is None or digest(covered) != claimed:
            reason = "hash does not match the stored bytes"
        else:
            heads[incident_id] = claimed
            continue
        broken[incident_id] = ChainBreak(incident_id, seq, links.event_id, reason)
    return list(broken.values())
