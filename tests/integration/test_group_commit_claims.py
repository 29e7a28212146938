"""Correlation claims cached by a replica (`services.write.correlation`) against a real
nats-server: a cached claim another replica has moved on is caught, so an alert reaches the
incident its key's claim names now, never the one it named when it was cached; and the alerts
of one delivery are appended together, as if observed one by one."""

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from events.commands import Reopen
from events.schema import AlertFired, AlertResolved, IncidentResolved, Source
from events.store import EventStore
from services.auth import LOCAL
from services.formats.alertmanager import parse_alertmanager
from services.write.correlation import Correlator, runs
from services.write.handler import Accepted, CommandHandler

T = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
GROUP = '{}:{alertname="Checkout5xx"}'


def _delivery(cycle: int, status: str, alerts: int = 2) -> bytes:
    """An Alertmanager notification of the group; each cycle's alerts start anew."""
    starts = T + timedelta(hours=cycle)
    ends = "0001-01-01T00:00:00Z" if status == "firing" else (starts + timedelta(minutes=5))
    body: dict[str, Any] = {
        "version": "4",
        "groupKey": GROUP,
        "status": status,
        "alerts": [
            {
                "status": status,
                "labels": {
                    "alertname": "Checkout5xx",
                    "instance": f"i-{n}",
                    "severity": "critical",
                },
                "startsAt": starts,
                "endsAt": ends,
                "fingerprint": f"fp{n}",
            }
            for n in range(alerts)
        ],
    }
    return msgspec.json.encode(body)


class _Replica:
    def __init__(self, store: EventStore) -> None:
        self.handler = CommandHandler(store)
        self.correlator = Correlator(store, self.handler)

    async def deliver(self, cycle: int, status: str) -> Accepted:
        observations = parse_alertmanager(_delivery(cycle, status), T)
        results = await self.correlator.observe_all(observations, T, LOCAL)
        return Accepted([a for result in results for a in result.events])


def _incidents(result: Accepted) -> set[str]:
    return {a.event.incident_id for a in result.events}


async def _types(store: EventStore, incident_id: str) -> list[type]:
    return [type(s.event) for s in (await store.load(incident_id)).events]


async def _two_incidents(store: EventStore) -> tuple[_Replica, _Replica, str, str]:
    """Replica `a` opens incident one; `b` resolves it and opens two for the next firing: `a`
    still caches the claim of incident one, and its view of it as open."""
    a, b = _Replica(store), _Replica(store)
    [one] = _incidents(await a.deliver(0, "firing"))
    assert _incidents(await b.deliver(0, "resolved")) == {one}
    assert IncidentResolved in await _types(store, one)
    [two] = _incidents(await b.deliver(1, "firing"))
    assert two != one
    return a, b, one, two


async def test_a_resolve_through_a_stale_cached_claim_reaches_the_current_incident(
    store: EventStore,
) -> None:
    a, _, one, two = await _two_incidents(store)
    before = await _types(store, one)
    resolved = await a.deliver(1, "resolved")
    assert _incidents(resolved) == {two}
    assert await _types(store, one) == before
    assert (await _types(store, two)).count(AlertResolved) == 2
    assert IncidentResolved in await _types(store, two)


async def test_a_firing_through_a_stale_cached_claim_skips_a_reopened_old_incident(
    store: EventStore,
) -> None:
    a, b, one, two = await _two_incidents(store)
    later = T + timedelta(minutes=30)  # after the auto-resolve
    reopen = Reopen(
        incident_id=one, event_id="reopen-1", occurred_at=later, actor="p", source=Source.CLI
    )
    assert isinstance(await b.handler.handle(reopen), Accepted)
    before = await _types(store, one)
    # Alertmanager repeats the firing notification: `a` must find it stored in incident two.
    again = await a.deliver(1, "firing")
    assert _incidents(again) == {two}
    assert all(appended.duplicate for appended in again.events)
    assert await _types(store, one) == before
    assert (await _types(store, two)).count(AlertFired) == 2


async def test_a_delivery_is_one_append_and_each_alert_is_stored_once(store: EventStore) -> None:
    replica = _Replica(store)
    fired = await replica.deliver(0, "firing")
    [incident] = _incidents(fired)
    repeated = await replica.deliver(0, "firing")
    assert [(x.event.event_id, x.seq) for x in repeated.events] == [
        (x.event.event_id, x.seq) for x in fired.events if isinstance(x.event, AlertFired)
    ]
    assert all(x.duplicate for x in repeated.events)
    # Another replica, without a cache, answers the same delivery the same way.
    elsewhere = await _Replica(store).deliver(0, "firing")
    assert [x.event.event_id for x in elsewhere.events] == [
        x.event.event_id for x in repeated.events
    ]
    types = await _types(store, incident)
    assert types.count(AlertFired) == 2
    seqs = [x.seq for x in fired.events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # one batch: declare, both alerts


def test_a_delivery_splits_into_runs_of_one_key_and_status_with_distinct_alerts() -> None:
    firing = parse_alertmanager(_delivery(0, "firing", alerts=3), T)
    resolved = parse_alertmanager(_delivery(0, "resolved", alerts=2), T)
    mixed = [*firing[:2], *resolved, firing[0], firing[2]]
    assert [[o.fingerprint for o in run] for run in runs(mixed)] == [
        ["fp0", "fp1"],
        ["fp0", "fp1"],
        ["fp0", "fp2"],
    ]
    assert [[o.fingerprint for o in run] for run in runs([firing[0], firing[0]])] == [
        ["fp0"],
        ["fp0"],
    ]
