"""One idempotency rule for event ids, all-or-nothing batches (issue 10, points 1-7).

An event id is stored once, on one incident, at any time inside retention: a retry gets the
original answer, a reuse elsewhere is a 409 naming the holder; batches are stored whole or not
at all, and are decided on the log, not on a replica's memory.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests_support import fixture_bytes, producer_declared, producer_event, producer_note

from events.schema import AlertResolved, IncidentDeclared, IncidentRoleAssigned
from events.store import EventStore
from services.auth import LOCAL
from services.bootstrap import Service, running
from services.config import Config
from services.natsserver import EmbeddedNatsServer
from services.write.correlation import Correlator
from services.write.handler import CommandHandler
from services.write.intake import Intake

# The smallest duplicate window nats-server takes: tests can outwait it.
WINDOW_S = 0.2


def note(incident_id: str, event_id: str, text: str = "looking") -> dict[str, Any]:
    return producer_note(incident_id, event_id, text)


@pytest.fixture
async def short_window(
    nats_server: EmbeddedNatsServer, tmp_path: Path
) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    """The service with a 0.2 s duplicate window, so a test can retry after it."""
    config = Config(
        nats_url=nats_server.url,
        data_dir=tmp_path / "var",
        http_port=0,
        duplicate_window_s=WINDOW_S,
        stream="SHORT",
    )
    async with (
        running(config) as service,
        httpx.AsyncClient(base_url=service.http_url, timeout=10) as http,
    ):
        yield service, http


async def ids_of(store: EventStore, incident_id: str) -> list[str]:
    return [stored.event.event_id for stored in (await store.load(incident_id)).events]


@pytest.mark.parametrize("commander", [None, "ana"])
async def test_retried_declare_gets_the_original_incident_inside_and_after_the_window(
    short_window: tuple[Service, httpx.AsyncClient], commander: str | None
) -> None:
    service, http = short_window
    body = {"title": "Checkout 5xx", "severity": "P1", "event_id": "decl-retry-1"}
    body |= {"commander": commander} if commander else {}
    first = await http.post("/v1/incidents", json=body)
    assert first.status_code == 201, first.text
    incident_id = first.json()["incident_id"]
    inside = await http.post("/v1/incidents", json=body)
    await asyncio.sleep(WINDOW_S * 3)
    after = await http.post("/v1/incidents", json=body)
    for retry in (inside, after):
        assert retry.status_code == 201, retry.text
        assert retry.json()["incident_id"] == incident_id
        assert [e["duplicate"] for e in retry.json()["events"]] == [True] * (2 if commander else 1)
        assert [e["seq"] for e in retry.json()["events"]] == [
            e["seq"] for e in first.json()["events"]
        ]
    log = [s.event for batch in [b async for b in service.store.read()] for s in batch]
    assert [type(e) for e in log] == [IncidentDeclared] + ([IncidentRoleAssigned] * bool(commander))


async def test_an_id_that_prefixes_a_stored_one_is_its_own_event(
    http: httpx.AsyncClient, service: Service
) -> None:
    assert (
        await http.post("/v1/events", json=producer_declared("INC-PFX1", "decl-pfx"))
    ).is_success
    assert (await http.post("/v1/events", json=note("INC-PFX1", "deploy/42"))).is_success
    answer = await http.post("/v1/events", json=note("INC-PFX1", "deploy", "rolled back"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["unchanged"] == []
    assert [e["duplicate"] for e in answer.json()["events"]] == [False]
    assert await ids_of(service.store, "INC-PFX1") == ["decl-pfx", "deploy/42", "deploy"]


async def test_an_id_reused_on_another_incident_is_409_naming_the_holder(
    short_window: tuple[Service, httpx.AsyncClient],
) -> None:
    service, http = short_window
    for incident_id in ("INC-HOLD1", "INC-OTHER1"):
        stored = await http.post(
            "/v1/events", json=producer_declared(incident_id, f"decl-{incident_id}")
        )
        assert stored.is_success
    assert (await http.post("/v1/events", json=note("INC-HOLD1", "shared-id"))).is_success
    inside = await http.post("/v1/events", json=note("INC-OTHER1", "shared-id"))
    await asyncio.sleep(WINDOW_S * 3)
    after = await http.post("/v1/events", json=note("INC-OTHER1", "shared-id"))
    command = await http.post(
        "/v1/incidents/INC-OTHER1/notes", json={"text": "x", "event_id": "shared-id"}
    )
    for refused in (inside, after, command):
        assert refused.status_code == 409, refused.text
        assert "INC-HOLD1" in refused.json()["detail"]
        assert refused.json()["field"] in ("event_id", "[0].event_id")
    assert await ids_of(service.store, "INC-OTHER1") == ["decl-INC-OTHER1"]
    # The holder's own retry is still the original, after the window too.
    again = await http.post("/v1/events", json=note("INC-HOLD1", "shared-id"))
    assert [e["duplicate"] for e in again.json()["events"]] == [True]


async def test_a_batch_with_one_refused_incident_stores_nothing(
    http: httpx.AsyncClient, service: Service
) -> None:
    for incident_id in ("INC-BAT1", "INC-BAT2", "INC-BAT3"):
        stored = await http.post(
            "/v1/events", json=producer_declared(incident_id, f"decl-{incident_id}")
        )
        assert stored.is_success
    assert (await http.post("/v1/events", json=note("INC-BAT3", "taken"))).is_success
    before = await service.store.last_seq()
    # Every event passes its incident's rules; the second reuses an id INC-BAT3 holds.
    batch = [note("INC-BAT1", "fresh-1"), note("INC-BAT2", "taken"), note("INC-BAT1", "fresh-2")]
    answer = await http.post("/v1/events", json=batch)
    assert answer.status_code == 409, answer.text
    assert answer.json()["field"] == "[1].event_id"
    assert await service.store.last_seq() == before
    assert await ids_of(service.store, "INC-BAT1") == ["decl-INC-BAT1"]


async def test_many_concurrent_multi_incident_batches_are_each_whole(
    http: httpx.AsyncClient, service: Service
) -> None:
    incidents = [f"INC-CONC{n}" for n in range(4)]
    for incident_id in incidents:
        assert (
            await http.post("/v1/events", json=producer_declared(incident_id, f"d-{incident_id}"))
        ).is_success
    batches = [[note(incidents[(b + k) % 4], f"b{b}-e{k}") for k in range(3)] for b in range(24)]
    answers = await asyncio.gather(*(http.post("/v1/events", json=batch) for batch in batches))
    stored = {e for incident_id in incidents for e in await ids_of(service.store, incident_id)}
    for batch, answer in zip(batches, answers, strict=True):
        ids = {event["event_id"] for event in batch}
        if answer.is_success:
            assert ids <= stored, answer.text
        else:
            assert answer.status_code in (409, 503), answer.text
            assert not ids & stored


async def test_a_batch_is_decided_on_the_log_not_on_a_replica_cache(service: Service) -> None:
    """Two replicas: the second saw the incident before the first changed it."""
    store = service.store
    other = CommandHandler(store)
    replica = Intake(other, Correlator(store, other))
    from services.write.intake import decode_events

    def events(*items: dict[str, Any]) -> bytes:
        return json.dumps(list(items)).encode()

    first = decode_events(events(producer_declared("INC-STALE1", "d-stale")))
    await replica.events(first, LOCAL)  # the replica now remembers INC-STALE1 as open
    resolve = producer_event("incident.resolved", "INC-STALE1", "r-stale")
    reopen = producer_event("incident.reopened", "INC-STALE1", "o-stale")
    await service.intake.events(decode_events(events(resolve)), LOCAL)  # elsewhere: resolved
    # Valid on the log (reopen a resolved incident), refused on the replica's stale memory.
    answer = await replica.events(decode_events(events(reopen)), LOCAL)
    assert [e.event_id for e in answer.events] == ["o-stale"]


async def test_pagerduty_fire_resolve_fire_resolve_stores_four_facts(
    service: Service,
) -> None:
    now = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    trigger, resolve = (
        fixture_bytes("pagerduty_trigger.json"),
        fixture_bytes("pagerduty_resolve.json"),
    )
    answers = []
    for minute, body in enumerate((trigger, resolve, trigger, resolve)):
        _, answer = await service.intake.pagerduty(body, now + timedelta(minutes=minute), LOCAL)
        answers.append(answer)
    # The same alert fired, resolved, fired again and resolved again: four facts, none a copy.
    assert [[e.duplicate for e in a.events if e.type.startswith("alert.")] for a in answers] == [
        [False],
        [False],
        [False],
        [False],
    ]
    # The first resolve resolved the incident (auto-resolve): the re-trigger opened a new one.
    first, second = answers[0].events[0].incident_id, answers[2].events[0].incident_id
    assert first != second
    for incident_id in (first, second):
        log = [s.event for s in (await service.store.load(incident_id)).events]
        assert sum(isinstance(e, AlertResolved) for e in log) == 1


async def test_redelivered_pagerduty_events_stay_duplicates(service: Service) -> None:
    now = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    for name in ("pagerduty_trigger.json", "pagerduty_acknowledge.json", "pagerduty_resolve.json"):
        _, first = await service.intake.pagerduty(fixture_bytes(name), now, LOCAL)
        stored = await service.store.last_seq()
        _, again = await service.intake.pagerduty(fixture_bytes(name), now, LOCAL)
        assert again.events and all(e.duplicate for e in again.events), name
        assert {e.seq for e in again.events} <= {e.seq for e in first.events}
        assert await service.store.last_seq() == stored


async def test_webhook_events_obey_the_per_event_limit(
    http: httpx.AsyncClient, service: Service
) -> None:
    trigger = json.loads(fixture_bytes("pagerduty_trigger.json"))
    trigger["payload"]["custom_details"] = {f"k{n}": "x" * 4000 for n in range(256)}  # ~1 MB
    answer = await http.post("/v2/enqueue", json=trigger)
    assert answer.status_code == 400, answer.text
    assert answer.json()["status"] == "invalid event"
    assert any("payload" in error for error in answer.json()["errors"])

    firing = json.loads(fixture_bytes("alertmanager_firing.json"))
    firing["alerts"][1]["annotations"] = {f"a{n}": "y" * 4000 for n in range(64)}
    refused = await http.post("/v1/webhooks/alertmanager", json=firing)
    assert refused.status_code == 413, refused.text
    assert refused.json()["field"] == "alerts[1]"
    assert await service.store.last_seq() == 0


async def test_times_in_the_future_are_refused(http: httpx.AsyncClient, service: Service) -> None:
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    event = producer_declared("INC-FUT1", "d-fut") | {"occurred_at": soon}
    answer = await http.post("/v1/events", json=event)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "occurred_at"
    command = await http.post(
        "/v1/incidents", json={"title": "x", "severity": "P3", "occurred_at": soon}
    )
    assert command.status_code == 422, command.text
    assert command.json()["field"] == "occurred_at"
    assert await service.store.last_seq() == 0
    # A little clock skew between hosts is not an error.
    skewed = (datetime.now(UTC) + timedelta(seconds=30)).isoformat()
    fine = await http.post(
        "/v1/events", json=producer_declared("INC-FUT2", "d-fut2") | {"occurred_at": skewed}
    )
    assert fine.status_code == 200, fine.text


async def test_ids_of_the_services_own_namespace_are_refused_from_clients(
    http: httpx.AsyncClient, service: Service
) -> None:
    """`~...` ids are made by the service and go unclaimed: a client must not forge one."""
    event = await http.post("/v1/events", json=producer_declared("INC-TILDE1", "~forged"))
    assert event.status_code == 422, event.text
    assert event.json()["field"] == "event_id"
    command = await http.post(
        "/v1/incidents", json={"title": "x", "severity": "P3", "event_id": "~x"}
    )
    assert command.status_code == 422, command.text
    assert command.json()["field"] == "event_id"
    assert await service.store.last_seq() == 0
    made = await http.post("/v1/incidents", json={"title": "x", "severity": "P3"})
    assert made.json()["events"][0]["event_id"].startswith("~")
