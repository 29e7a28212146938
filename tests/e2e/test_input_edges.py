"""Inputs that used to be 500s with no log line: a 4xx naming the field, over HTTP and NATS.

Bytes that are not UTF-8 inside JSON strings, times whose offset moves them out of UTC's range,
a negative audit limit, an Alertmanager delivery of thousands of alerts (issue 11, point 4).
"""

from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import nats
import pytest

from services.bootstrap import Service
from services.formats.alertmanager import MAX_ALERTS, parse_alertmanager

JSON = {"content-type": "application/json"}
T = "2026-11-20T10:00:00Z"
# Past year 9999 once in UTC; before year 1 once in UTC.
LATE = "9999-12-31T23:59:59-23:59"
EARLY = "0001-01-01T00:00:00+23:59"
ROUTING_KEY = "R0UT1NGKEY0123456789ABCDEFGHIJKL"


def _declared(event_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "incident.declared",
        "event_id": event_id,
        "incident_id": "INC-EDGE0001",
        "occurred_at": T,
        "actor": "synthetic-checker",
        "source": "synthetic",
        "title": "Login probe failing",
        "severity": "P2",
    } | fields


def _bad_utf8(document: Any, marker: str = "MARK") -> bytes:
    """`document` as JSON with the string `marker` replaced by bytes that are not UTF-8."""
    return msgspec.json.encode(document).replace(marker.encode(), b"ab\xff\xfecd")


def _alertmanager(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {"version": "4", "groupKey": '{}:{alertname="Edge"}', "status": "firing",
            "alerts": list(alerts)}  # fmt: skip


UTF8_ROUTES = [
    ("/v1/incidents", {"title": "MARK", "severity": "P1"}, "title"),
    ("/v1/incidents/INC-EDGE0001/notes", {"text": "MARK"}, "text"),
    ("/v1/events", _declared("u1", title="MARK"), "title"),
    ("/v1/events", [_declared("u2"), _declared("u3", title="MARK")], "[1].title"),
    (
        "/v1/webhooks/alertmanager",
        _alertmanager({"status": "firing", "labels": {"alertname": "MARK"}}),
        "alerts[0].labels.alertname",
    ),
    ("/v1/query", {"sql": "SELECT 'MARK'"}, "sql"),
    ("/v1/admin/replay", {"verify": "MARK"}, "verify"),
]


@pytest.mark.parametrize(("path", "document", "field"), UTF8_ROUTES)
async def test_bytes_that_are_not_utf8_are_a_4xx_naming_the_field(
    http: httpx.AsyncClient, service: Service, path: str, document: Any, field: str
) -> None:
    answer = await http.post(path, content=_bad_utf8(document), headers=JSON)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "malformed"
    assert answer.json()["field"] == field
    assert "UTF-8" in answer.json()["detail"]
    assert await service.store.last_seq() == 0
    assert (await http.get("/v1/admin/replay")).json()["state"] == "idle"


async def test_pagerduty_names_the_field_that_is_not_utf8(
    http: httpx.AsyncClient, service: Service
) -> None:
    trigger = {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "payload": {"summary": "MARK", "source": "probe", "severity": "error"},
    }
    answer = await http.post("/v2/enqueue", content=_bad_utf8(trigger), headers=JSON)
    assert answer.status_code == 400, answer.text
    assert answer.json()["status"] == "invalid event"
    assert any("payload.summary" in e and "UTF-8" in e for e in answer.json()["errors"])
    assert await service.store.last_seq() == 0


async def test_nats_answers_bytes_that_are_not_utf8_naming_the_field(service: Service) -> None:
    nc = await nats.connect(service.nats_url)
    try:
        events = await nc.request(
            "intake.events", _bad_utf8(_declared("n1", title="MARK")), timeout=5
        )
        assert msgspec.json.decode(events.data)["field"] == "title"
        alerts = await nc.request(
            "intake.alertmanager",
            _bad_utf8(_alertmanager({"status": "firing", "labels": {"alertname": "MARK"}})),
            timeout=5,
        )
        answer = msgspec.json.decode(alerts.data)
        assert answer["error"] == "malformed"
        assert answer["field"] == "alerts[0].labels.alertname"
    finally:
        await nc.close()
    assert await service.store.last_seq() == 0


OUT_OF_UTC = [
    ("/v1/incidents", {"title": "t", "severity": "P1", "occurred_at": EARLY}, "occurred_at"),
    ("/v1/incidents", {"title": "t", "severity": "P1", "detected_at": LATE}, "detected_at"),
    ("/v1/events", _declared("o1", occurred_at=EARLY), "occurred_at"),
    ("/v1/events", _declared("o2", detected_at=LATE), "detected_at"),
    ("/v1/events", [_declared("o3"), _declared("o4", detected_at=LATE)], "[1].detected_at"),
]


@pytest.mark.parametrize(("path", "document", "field"), OUT_OF_UTC)
async def test_a_time_out_of_range_in_utc_is_422_naming_the_field(
    http: httpx.AsyncClient, service: Service, path: str, document: Any, field: str
) -> None:
    answer = await http.post(path, json=document)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field
    assert await service.store.last_seq() == 0


@pytest.mark.parametrize("moment", [LATE, EARLY])
@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/v1/incidents", "as_of"),
        ("/v1/audit", "from"),
        ("/v1/audit", "to"),
        ("/v1/metrics/mttr", "from"),
        ("/v1/incidents/INC-EDGE0001/timeline", "as_of"),
    ],
)
async def test_a_query_time_out_of_range_in_utc_is_422_naming_it(
    http: httpx.AsyncClient, path: str, parameter: str, moment: str
) -> None:
    answer = await http.get(path, params={parameter: moment})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == parameter


async def test_nats_answers_a_time_out_of_range_in_utc(service: Service) -> None:
    nc = await nats.connect(service.nats_url)
    try:
        for event, field in [
            (_declared("n2", occurred_at=EARLY), "occurred_at"),
            (_declared("n3", detected_at=LATE), "detected_at"),
        ]:
            reply = await nc.request("intake.events", msgspec.json.encode(event), timeout=5)
            answer = msgspec.json.decode(reply.data)
            assert answer["error"] == "invalid" and answer["field"] == field, answer
    finally:
        await nc.close()
    assert await service.store.last_seq() == 0


@pytest.mark.parametrize("limit", ["-1", "0", "-9223372036854775808"])
async def test_an_audit_limit_out_of_bounds_is_422_naming_it(
    http: httpx.AsyncClient, limit: str
) -> None:
    answer = await http.get("/v1/audit", params={"limit": limit})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "limit"


async def test_an_audit_limit_within_bounds_answers(http: httpx.AsyncClient) -> None:
    for limit in ["1", "10000", "10001"]:  # beyond 10,000: the first 10,000
        assert (await http.get("/v1/audit", params={"limit": limit})).status_code == 200


def _many_alerts(count: int) -> bytes:
    return msgspec.json.encode(
        _alertmanager(
            *({"status": "firing", "labels": {"alertname": f"Edge{i}"}} for i in range(count))
        )
    )


async def test_an_alertmanager_delivery_over_the_cap_is_413_over_http_and_nats(
    http: httpx.AsyncClient, service: Service
) -> None:
    answer = await http.post(
        "/v1/webhooks/alertmanager", content=_many_alerts(5000), headers=JSON, timeout=5
    )
    assert answer.status_code == 413, answer.text
    assert answer.json()["field"] == "alerts"
    assert str(MAX_ALERTS) in answer.json()["detail"]
    nc = await nats.connect(service.nats_url)
    try:
        reply = await nc.request("intake.alertmanager", _many_alerts(MAX_ALERTS + 1), timeout=5)
        assert msgspec.json.decode(reply.data)["error"] == "too_large"
    finally:
        await nc.close()
    assert await service.store.last_seq() == 0


def test_a_delivery_at_the_cap_is_taken() -> None:
    observations = parse_alertmanager(_many_alerts(MAX_ALERTS), datetime.now(UTC))
    assert len(observations) == MAX_ALERTS


async def test_a_bug_is_logged_and_answered_over_http_and_nats(
    http: httpx.AsyncClient,
    service: Service,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(service.intake, "events", broken)
    answer = await http.post("/v1/events", json=_declared("b1"))
    assert answer.status_code == 500
    assert answer.json()["error"] == "internal"
    nc = await nats.connect(service.nats_url)
    try:
        reply = await nc.request("intake.events", msgspec.json.encode(_declared("b2")), timeout=5)
        assert msgspec.json.decode(reply.data)["error"] == "internal"
    finally:
        await nc.close()
    logged = [r for r in caplog.records if r.exc_info and "a bug" in str(r.exc_info[1])]
    assert len(logged) == 2
