"""What the notifier has told, as the log says: `notification.sent` records, read and written.

Before a delivery, `sent` asks the log (the incident's `incidents.<id>.notification.sent`
subject, a handful of records) whether the delivery's record is there, so a restarted service,
or another replica, never sends again what was recorded. After a delivery, `record` appends it
through the write path (`Record(event)`, the same rules as every write) under the id derived
from the delivery id, so even a record retried after a lost answer is stored once.
"""

import asyncio
import logging
from collections import OrderedDict
from typing import Final

import msgspec
import nats.errors

from events.commands import Record
from events.decisions import Rejected
from events.schema import NotificationSent, Principal
from events.store import EventStore, StoreUnavailableError
from events.subjects import event_subject
from services.write.handler import CommandHandler, ContentionError

log = logging.getLogger("incidents")

NOTIFIER: Final = "notifier"  # the actor of its records
# The service's own principal: nobody's token; covered by the hash chain like any other.
PRINCIPAL: Final = Principal(name=NOTIFIER, role="service")
REMEMBERED_INCIDENTS: Final = 4096
RETRY_RECORD_S: Final = 1.0


class _Id(msgspec.Struct):
    event_id: str = ""


_ids: Final = msgspec.json.Decoder(_Id)


class Ledger:
    def __init__(self, store: EventStore, handler: CommandHandler) -> None:
        self.store = store
        self.handler = handler
        # Ids recorded per incident, as last read or written: a hit needs no read of the log.
        self._known: OrderedDict[str, set[str]] = OrderedDict()

    async def sent(self, incident_id: str, record_id: str) -> bool:
        known = self._known.get(incident_id)
        if known is not None and record_id in known:
            return True
        records = await self.store.records(event_subject(incident_id, "notification.sent"))
        found = set()
        for _, data in records:
            try:
                found.add(_ids.decode(data).event_id)
            except msgspec.DecodeError:
                continue  # quarantined by every reader; it records nothing of ours
        self._remember(incident_id, found)
        return record_id in found

    async def record(self, event: NotificationSent) -> None:
        """Append until the log has it: the delivery is done, only its record is missing."""
        while True:
            try:
                result = await self.handler.handle(Record(event))
                break
            except (StoreUnavailableError, ContentionError, nats.errors.Error) as exc:
                log.warning(
                    "notifier: recording delivery %s failed (%s); retrying",
                    event.delivery_id[:16],
                    exc,
                )
                await asyncio.sleep(RETRY_RECORD_S)
        if isinstance(result, Rejected):  # `decide` admits every notification.sent
            raise RuntimeError(f"notification.sent refused: {result.reason}")
        self._remember(event.incident_id, {event.event_id})

    def _remember(self, incident_id: str, ids: set[str]) -> None:
        self._known.setdefault(incident_id, set()).update(ids)
        self._known.move_to_end(incident_id)
        while len(self._known) > REMEMBERED_INCIDENTS:
            self._known.popitem(last=False)
