"""Event ids are global: each id is claimed for one incident before its event is appended.

A claim is a message on `event_ids.<sha256(id)>` in the `<stream>_IDS` stream, published only
if that subject is still empty (`Nats-Expected-Last-Subject-Sequence: 0`), so of two writers
using one id on two incidents exactly one wins, inside JetStream's duplicate window and after
it, for as long as retention keeps the claim. A writer that finds its own claim (a retry, or an
append that lost a race after claiming) goes on: the claim binds the id to the incident, not to
one attempt. Ids the service made itself (`~...`, unique by construction) are not claimed.
"""

import asyncio
from collections.abc import Sequence
from typing import Final

import msgspec
import nats.js.errors
from nats.aio.client import Client as NATS

from events.batches import publish_atomic
from events.schema import AnyEvent
from events.subjects import SERVICE_ID_PREFIX, event_id_subject

# The subject moved past the expected sequence: 10071 from a single server ("wrong last
# sequence: N"), 10164 from a clustered stream's leader (the same check, without the number).
WRONG_LAST_SEQUENCE: Final = frozenset({10071, 10164})


class EventIdTakenError(Exception):
    """The event id already belongs to another incident."""

    def __init__(self, event_id: str, holder: str) -> None:
        super().__init__(f"event_id {event_id} is already used by incident {holder}")
        self.event_id = event_id
        self.holder = holder


class Claim(msgspec.Struct, frozen=True):
    event_id: str
    incident_id: str


_decode_claim: Final = msgspec.json.Decoder(Claim).decode
_EXPECTED: Final = "Nats-Expected-Last-Subject-Sequence"


def _claim_of(event: AnyEvent) -> bytes:
    return msgspec.json.encode(Claim(event.event_id, event.incident_id))


class EventIds:
    def __init__(self, nc: NATS, stream: str, timeout: float) -> None:
        self._nc = nc
        self._js = nc.jetstream(timeout=timeout)
        self._timeout = timeout
        self.stream = stream

    async def claim(self, events: Sequence[AnyEvent]) -> None:
        """Bind each event's id to its incident, or raise `EventIdTakenError` for the first
        id another incident holds. Claims are independent, so they go out together."""
        claimed = [e for e in events if not e.event_id.startswith(SERVICE_ID_PREFIX)]
        if len(claimed) > 1:
            # Fresh ids, the usual case, go as one atomic batch: one round trip and one write.
            messages = [
                (event_id_subject(e.event_id), _claim_of(e), {_EXPECTED: "0"}) for e in claimed
            ]
            try:
                await publish_atomic(self._nc, messages, self._timeout)
                return
            except nats.js.errors.APIError as exc:
                if exc.err_code not in WRONG_LAST_SEQUENCE:
                    raise
                # Some id is claimed already (by this incident on a retry, or by another):
                # claim one by one to tell which.
        await asyncio.gather(*(self._claim(event) for event in claimed))

    async def _claim(self, event: AnyEvent) -> None:
        try:
            await self._js.publish(
                event_id_subject(event.event_id),
                _claim_of(event),
                stream=self.stream,
                headers={_EXPECTED: "0"},
            )
        except nats.js.errors.APIError as exc:
            if exc.err_code not in WRONG_LAST_SEQUENCE:
                raise
            holder = await self.holder(event.event_id)
            if holder is None:
                # The claim that refused ours is staged, not stored yet: whose it is shows
                # once it lands, so the refusal stands (the writer decides again).
                raise
            if holder != event.incident_id:
                raise EventIdTakenError(event.event_id, holder) from None

    async def holder(self, event_id: str) -> str | None:
        """The incident that claimed `event_id`, if any, as the stream's leader has it.

        Not a direct get: on a replicated stream any replica answers those, and one that has
        not applied a claim the leader just stored answers that there is none."""
        try:
            msg = await self._js.get_last_msg(self.stream, event_id_subject(event_id))
        except nats.js.errors.NotFoundError:
            return None
        return _decode_claim(msg.data or b"").incident_id
