"""PagerDuty's answers over real HTTP into a real log (DESIGN 7), as its clients expect them.

PagerDuty developer docs, "Events API v2 Overview: Response Codes & Retry Logic": 202 for an
accepted event, 400 for an invalid one (clients do not retry), 429 and 5xx retried; "Send a
Change Event": `POST /v2/change/enqueue`, answered 202 like alert events. Most tests speak raw
HTTP with the bodies PagerDuty's maintained client sends (`tests/fixtures/pagerduty_*.json`);
the last one drives that client itself, over HTTPS (it posts to https:// only).
"""

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pagerduty
import pytest
import trustme
from tests_support import TOKENS, fixture_bytes

from events.changes import decode as decode_change
from events.schema import AlertFired, AlertResolved, IncidentAcknowledged, IncidentDeclared
from events.store import EventStore
from services.auth import Role, token_entry
from services.bootstrap import Service, running
from services.config import Config
from services.natsserver import EmbeddedNatsServer

PROCESSED = {"status": "success", "message": "Event processed"}
CHANGED = {"status": "success", "message": "Change event processed"}
OTHER_KEY = "0THERR0UT1NGKEY0123456789ABCDEFG"


def fixture(name: str, **changes: Any) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(fixture_bytes(name))
    return loaded | changes


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat().replace("+00:00", "Z")


async def log_types(store: EventStore) -> list[type[Any]]:
    return [type(s.event) for batch in [b async for b in store.read()] for s in batch]


async def change_records(store: EventStore) -> list[Any]:
    return [decode_change(data) for _, data in await store.records("changes.>")]


async def trigger(http: httpx.AsyncClient, store: EventStore, **changes: Any) -> tuple[str, str]:
    """Trigger the fixture's alert (with `changes`); the dedup_key answered, its incident."""
    answer = await http.post("/v2/enqueue", json=fixture("pagerduty_trigger.json", **changes))
    assert answer.status_code == 202, answer.text
    dedup_key: str = answer.json()["dedup_key"]
    return dedup_key, await incident_of(store, dedup_key)


async def incident_of(store: EventStore, dedup_key: str) -> str:
    """The incident of the latest alert with this dedup_key."""
    fired = [
        s.event
        async for batch in store.read()
        for s in batch
        if isinstance(s.event, AlertFired) and s.event.dedup_key == dedup_key
    ]
    return fired[-1].incident_id


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
async def test_acknowledge_or_resolve_of_an_unknown_dedup_key_is_202_and_stores_nothing(
    http: httpx.AsyncClient, service: Service, action: str
) -> None:
    body = fixture(f"pagerduty_{action}.json", dedup_key="never-triggered")
    for path in ("/v2/enqueue", "/v1/webhooks/pagerduty", "/v1/webhooks/pagerduty/v2/enqueue"):
        answer = await http.post(path, json=body)
        assert answer.status_code == 202, answer.text
        assert answer.json() == PROCESSED | {"dedup_key": "never-triggered"}
    assert await service.store.last_seq() == 0


async def close_by_hand(http: httpx.AsyncClient, store: EventStore) -> str:
    """A PagerDuty incident a responder resolved and closed while its alert still fires."""
    dedup_key, incident_id = await trigger(http, store)
    assert (await http.post(f"/v1/incidents/{incident_id}/resolve")).status_code == 200
    assert (await http.post(f"/v1/incidents/{incident_id}/close")).status_code == 200
    return dedup_key


async def test_acknowledge_of_a_resolved_or_closed_incident_is_202_and_stores_nothing(
    http: httpx.AsyncClient, service: Service
) -> None:
    dedup_key, incident_id = await trigger(http, service.store)
    assert (await http.post(f"/v1/incidents/{incident_id}/resolve")).status_code == 200
    for _ in ("resolved", "closed"):
        stored = await service.store.last_seq()
        answer = await http.post("/v2/enqueue", json=fixture("pagerduty_acknowledge.json"))
        assert answer.status_code == 202, answer.text
        assert answer.json() == PROCESSED | {"dedup_key": dedup_key}
        assert await service.store.last_seq() == stored
        assert (await http.post(f"/v1/incidents/{incident_id}/close")).status_code in (200, 409)
    assert IncidentAcknowledged not in await log_types(service.store)


async def test_resolve_of_a_closed_incident_is_202_and_stores_nothing(
    http: httpx.AsyncClient, service: Service
) -> None:
    dedup_key = await close_by_hand(http, service.store)
    stored = await service.store.last_seq()
    answer = await http.post("/v2/enqueue", json=fixture("pagerduty_resolve.json"))
    assert answer.status_code == 202, answer.text
    assert answer.json() == PROCESSED | {"dedup_key": dedup_key}
    assert await service.store.last_seq() == stored


async def test_a_trigger_without_dedup_key_gets_one_and_a_retry_gets_the_same(
    http: httpx.AsyncClient, service: Service
) -> None:
    raw = fixture("pagerduty_trigger.json")
    del raw["dedup_key"]
    first = await http.post("/v2/enqueue", json=raw)
    assert first.status_code == 202, first.text
    dedup_key = first.json()["dedup_key"]
    assert first.json() == PROCESSED | {"dedup_key": dedup_key}
    assert len(dedup_key) == 32
    # The client retried (a lost answer): the same key, and no second incident.
    retried = await http.post("/v2/enqueue", json=raw)
    assert retried.json()["dedup_key"] == dedup_key
    other = raw | {"payload": raw["payload"] | {"summary": "Checkout latency above 2 s"}}
    second = await http.post("/v2/enqueue", json=other)
    assert second.json()["dedup_key"] not in (dedup_key, None)
    types = await log_types(service.store)
    assert types.count(IncidentDeclared) == 2 and types.count(AlertFired) == 2
    # The key answered is the one to acknowledge with.
    ack = fixture("pagerduty_acknowledge.json", dedup_key=dedup_key)
    assert (await http.post("/v2/enqueue", json=ack)).status_code == 202
    assert (await log_types(service.store)).count(IncidentAcknowledged) == 1


async def test_dedup_keys_are_scoped_by_routing_key(
    http: httpx.AsyncClient, service: Service
) -> None:
    """Two senders (one principal: `local`) with the same dedup_key never touch each other's
    incidents: neither joining, nor acknowledging, nor resolving."""
    dedup_key, mine = await trigger(http, service.store)
    answer = await http.post(
        "/v2/enqueue", json=fixture("pagerduty_trigger.json", routing_key=OTHER_KEY)
    )
    assert answer.json() == PROCESSED | {"dedup_key": dedup_key}
    log = [s.event async for batch in service.store.read() for s in batch]
    declared = [e for e in log if isinstance(e, IncidentDeclared)]
    assert len(declared) == 2
    theirs = next(e.incident_id for e in declared if e.incident_id != mine)
    assert {e.dedup_key for e in log if isinstance(e, AlertFired)} == {dedup_key}

    ack = fixture("pagerduty_acknowledge.json", routing_key=OTHER_KEY)
    assert (await http.post("/v2/enqueue", json=ack)).status_code == 202
    resolve = fixture("pagerduty_resolve.json")
    assert (await http.post("/v2/enqueue", json=resolve)).status_code == 202
    log = [s.event async for batch in service.store.read() for s in batch]
    assert [e.incident_id for e in log if isinstance(e, IncidentAcknowledged)] == [theirs]
    assert [e.incident_id for e in log if isinstance(e, AlertResolved)] == [mine]
    # A third sender knows neither.
    stranger = fixture("pagerduty_resolve.json", routing_key="S" * 32)
    stored = await service.store.last_seq()
    assert (await http.post("/v2/enqueue", json=stranger)).status_code == 202
    assert await service.store.last_seq() == stored


async def test_with_tokens_an_unknown_routing_key_is_400_like_pagerduty(
    guarded: Service,
) -> None:
    producer = TOKENS[Role.PRODUCER]
    async with httpx.AsyncClient(base_url=guarded.http_url) as http:
        for path, name in (
            ("/v2/enqueue", "pagerduty_trigger.json"),
            ("/v2/change/enqueue", "pagerduty_trigger.json"),
        ):
            answer = await http.post(path, json=fixture(name))  # the fixture's key: no token
            assert answer.status_code == 400, answer.text
            body = answer.json()
            assert body["status"] == "invalid event"
            assert body["message"] == "Event object is invalid"
            assert body["errors"] == ["'routing_key' is not a known routing key"]
        missing = fixture("pagerduty_trigger.json")
        del missing["routing_key"]
        answer = await http.post("/v2/enqueue", json=missing)
        assert answer.status_code == 400
        assert any("'routing_key'" in error for error in answer.json()["errors"])
        # A bad bearer header stays HTTP's 401; a known token of another role is 403.
        forged = await http.post(
            "/v2/enqueue",
            json=fixture("pagerduty_trigger.json", routing_key=producer),
            headers={"Authorization": "Bearer nope"},
        )
        assert forged.status_code == 401
        auditor = fixture("pagerduty_trigger.json", routing_key=TOKENS[Role.AUDITOR])
        assert (await http.post("/v2/enqueue", json=auditor)).status_code == 403
        assert await guarded.store.last_seq() == 0

        accepted = await http.post(
            "/v2/enqueue", json=fixture("pagerduty_trigger.json", routing_key=producer)
        )
        assert accepted.status_code == 202, accepted.text
        by_header = await http.post(
            "/v2/enqueue",
            json=fixture("pagerduty_trigger.json"),
            headers={"Authorization": f"Bearer {producer}"},
        )
        assert by_header.status_code == 202, by_header.text
        # Two routing keys, one producer: two incidents.
        log = [s.event async for batch in guarded.store.read() for s in batch]
        assert sum(isinstance(e, IncidentDeclared) for e in log) == 2
        assert {e.principal.name for e in log if e.principal} == {Role.PRODUCER.value}


def change_body(routing_key: str = OTHER_KEY, **payload: Any) -> dict[str, Any]:
    return {
        "routing_key": routing_key,
        "payload": {
            "summary": "Deployed checkout-api v1.8.3",
            "source": "ci.example.invalid",
            "timestamp": ago(minutes=40),
            "custom_details": {"build": 42},
            **payload,
        },
        "links": [{"href": "https://ci.example.invalid/builds/42", "text": "Build #42"}],
    }


async def listed(http: httpx.AsyncClient, count: int, **params: str) -> list[dict[str, Any]]:
    """`GET /v1/changes` once the projector has folded `count` changes."""
    for _ in range(100):
        found: list[dict[str, Any]] = (await http.get("/v1/changes", params=params)).json()[
            "changes"
        ]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} changes listed")


async def test_a_change_event_is_stored_once_outside_incidents_and_listed(
    http: httpx.AsyncClient, service: Service
) -> None:
    body = change_body()
    for path in ("/v2/change/enqueue", "/v1/webhooks/pagerduty/v2/change/enqueue"):
        answer = await http.post(path, json=body)
        assert answer.status_code == 202, answer.text
        assert answer.json() == CHANGED
    (record,) = await change_records(service.store)
    assert record.summary == body["payload"]["summary"]
    assert record.host == "ci.example.invalid"
    assert record.source == "pagerduty"
    assert (record.principal.name, record.principal.role) == ("local", "admin")
    assert record.custom_details == {"build": 42}
    assert [(link.href, link.text) for link in record.links] == [
        ("https://ci.example.invalid/builds/42", "Build #42")
    ]
    assert OTHER_KEY not in json.dumps([await service.store.records(">")], default=str)
    assert await log_types(service.store) == []  # no incident, no incident event

    (row,) = await listed(http, 1)
    assert row["summary"] == body["payload"]["summary"]
    assert row["occurred_at"].endswith("Z") and row["recorded_at"].endswith("Z")
    assert datetime.fromisoformat(row["occurred_at"]) == datetime.fromisoformat(
        body["payload"]["timestamp"]
    )
    assert row["links"] == [{"href": "https://ci.example.invalid/builds/42", "text": "Build #42"}]
    assert row["principal"] == "local" and row["source"] == "pagerduty"
    assert (await http.get("/v1/changes", params={"from": ago(minutes=30)})).json()["changes"] == []
    assert len((await http.get("/v1/changes", params={"to": ago(minutes=30)})).json()["changes"])
    naive = await http.get("/v1/changes", params={"from": "2026-11-23T10:00:00"})
    assert naive.status_code == 422 and naive.json()["field"] == "from"


async def test_a_change_without_timestamp_is_stored_once_on_a_quick_retry(
    http: httpx.AsyncClient, service: Service
) -> None:
    body = change_body()
    del body["payload"]["timestamp"]
    before = datetime.now(UTC)
    for _ in range(3):
        answer = await http.post("/v2/change/enqueue", json=body)
        assert answer.status_code == 202 and answer.json() == CHANGED
    (record,) = await change_records(service.store)
    assert before <= record.occurred_at <= datetime.now(UTC)


async def test_a_garbage_change_is_400_and_stores_nothing(
    http: httpx.AsyncClient, service: Service
) -> None:
    bodies: list[bytes] = [
        b"{not json",
        b"[1, 2]",
        b"\xff\xfe",
        json.dumps({"routing_key": OTHER_KEY}).encode(),
        json.dumps(change_body(summary="")).encode(),
        json.dumps(change_body(timestamp=ago(hours=-1))).encode(),  # an hour from now
    ]
    for garbage in bodies:
        answer = await http.post(
            "/v2/change/enqueue", content=garbage, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["status"] == "invalid event"
        assert answer.json()["message"] == "Event object is invalid"
        assert answer.json()["errors"]
    assert await service.store.last_seq() == 0


async def test_changes_of_the_hour_before_detection_come_with_the_incident(
    http: httpx.AsyncClient, service: Service
) -> None:
    trigger_body = fixture("pagerduty_trigger.json")
    trigger_body["payload"]["timestamp"] = ago(minutes=10)  # detected 10 minutes ago
    _, incident_id = await trigger(http, service.store, payload=trigger_body["payload"])
    declared = await service.store.last_seq()
    changes = {
        "too early": ago(minutes=75),
        "deploy shortly before": ago(minutes=40),
        "flag flip just before": ago(minutes=11),
        "after detection": ago(minutes=5),
    }
    for summary, at in changes.items():
        answer = await http.post(
            "/v2/change/enqueue", json=change_body(summary=summary, timestamp=at)
        )
        assert answer.status_code == 202, answer.text
    rows = await listed(http, len(changes))

    timeline = await http.get(
        f"/v1/incidents/{incident_id}/timeline", params={"wait_for": declared}
    )
    before = timeline.json()["changes_before_detection"]
    assert [c["summary"] for c in before] == ["deploy shortly before", "flag flip just before"]
    assert {"occurred_at", "summary", "source", "host", "links"} <= before[0].keys()
    assert before[0]["source"] == "pagerduty" and before[0]["host"] == "ci.example.invalid"
    assert before[0]["links"] == [
        {"href": "https://ci.example.invalid/builds/42", "text": "Build #42"}
    ]
    assert before[0]["occurred_at"].endswith("Z")
    shown = (await http.get(f"/v1/incidents/{incident_id}")).json()
    assert shown["changes_before_detection"] == before
    # As the log knew it when the deploy had been recorded, and the flag flip not yet.
    deploy = next(r for r in rows if r["summary"] == "deploy shortly before")
    past = await http.get(
        f"/v1/incidents/{incident_id}/timeline", params={"as_of": deploy["recorded_at"]}
    )
    assert past.status_code == 200, past.text
    assert [c["summary"] for c in past.json()["changes_before_detection"]] == [
        "deploy shortly before"
    ]


@pytest.fixture
async def https_guarded(
    nats_server: EmbeddedNatsServer, tmp_path: Path
) -> AsyncIterator[tuple[Service, ssl.SSLContext]]:
    """The service over HTTPS (a throw-away CA) with tokens on; yields it and a client context
    that trusts the CA."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    tokens_file = tmp_path / "tokens.toml"
    tokens_file.write_text("".join(token_entry(r.value, r, t) for r, t in TOKENS.items()))
    config = Config(
        nats_url=nats_server.url,
        data_dir=tmp_path / "var",
        http_port=0,
        tokens_file=tokens_file,
        tls_cert=chain,
        tls_key=key,
    )
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with running(config) as service:
        yield service, context


async def test_the_official_client_over_https_gets_pagerduty_answers(
    https_guarded: tuple[Service, ssl.SSLContext],
) -> None:
    """PagerDuty's maintained client (7.2): change events, a trigger without dedup_key, the
    acknowledge and resolve of a key it never triggered, and a routing key nobody issued."""
    service, context = https_guarded
    client = pagerduty.EventsApiV2Client(
        TOKENS[Role.PRODUCER], base_url=service.http_url, verify=context
    )
    stranger = pagerduty.EventsApiV2Client("N" * 32, base_url=service.http_url, verify=context)
    deploy = {
        "summary": "Deployed checkout-api v1.8.3",
        "source": "ci.example.invalid",
        "timestamp": ago(minutes=20),
        "custom_details": {"build": 42},
    }
    link = [{"href": "https://ci.example.invalid/builds/42", "text": "Build #42"}]

    def flow() -> dict[str, Any]:
        with client, stranger:
            client.send_change_event(payload=deploy, links=link)
            client.send_change_event(payload=deploy, links=link)  # a retry: stored once
            # `submit` needs an explicit timestamp: 7.2 fails making its own (AttributeError).
            client.submit("Feature flag new-checkout on", "flags", timestamp=ago(minutes=5))
            key = client.trigger("Checkout 5xx above 5%", "checkout-1.prod")
            again = client.trigger("Checkout 5xx above 5%", "checkout-1.prod")
            unknown = [client.acknowledge("never-seen"), client.resolve("never-seen")]
            with pytest.raises(pagerduty.HttpError) as refused:
                stranger.trigger("Who am I", "nowhere")
            response = refused.value.response
            assert response is not None
            return {
                "key": key,
                "again": again,
                "unknown": unknown,
                "refused": response.status_code,
                "errors": response.json()["errors"],
            }

    answers = await asyncio.to_thread(flow)
    assert answers["again"] == answers["key"] and len(answers["key"]) == 32
    assert answers["unknown"] == ["never-seen", "never-seen"]
    assert answers["refused"] == 400
    assert answers["errors"] == ["'routing_key' is not a known routing key"]
    stored = await change_records(service.store)
    assert sorted(c.summary for c in stored) == [
        "Deployed checkout-api v1.8.3",
        "Feature flag new-checkout on",
    ]
    assert {c.principal.name for c in stored} == {Role.PRODUCER.value}
    types = await log_types(service.store)
    assert types.count(IncidentDeclared) == 1 and IncidentAcknowledged not in types
