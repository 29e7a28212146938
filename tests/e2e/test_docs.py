"""The API documents in docs/ are what the service serves and does (issue 14).

- docs/openapi.json equals `GET /schema/openapi.json` of a running service, and
  docs/asyncapi.json a fresh generation from the faststream broker: a route or subject changed
  without re-exporting fails here, naming the command that regenerates them.
- The OpenAPI document tells the truth: real refusals have the documented `Error` shape under
  a status the route documents; the webhook routes document their request bodies, and a real
  Alertmanager and PagerDuty payload validate against them; PagerDuty's routes document
  PagerDuty's own answers.
- `/schema` renders without internet: every URL the page loads is local and served.
"""

import re
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import msgspec
from tests_support import fixture_bytes, producer_event

from services import asyncapi
from services.api.intake import PagerDutyAnswer
from services.api.openapi import Error
from services.bootstrap import Service
from services.docs import COMMAND, DOCS

STALE = f"is stale: regenerate it with `{COMMAND}` and commit docs/"


def documented(name: str) -> Any:
    return msgspec.json.decode((DOCS / name).read_bytes())


async def served_openapi(http: httpx.AsyncClient) -> Any:
    answer = await http.get("/schema/openapi.json")
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_docs_openapi_json_is_the_served_document(http: httpx.AsyncClient) -> None:
    served = await served_openapi(http)
    assert documented("openapi.json") == served, f"docs/openapi.json {STALE}"


def test_docs_asyncapi_json_is_a_fresh_generation() -> None:
    fresh = msgspec.json.decode(msgspec.json.encode(asyncapi.document()))
    assert documented("asyncapi.json") == fresh, f"docs/asyncapi.json {STALE}"


def test_asyncapi_names_every_subject_with_its_payload() -> None:
    doc = documented("asyncapi.json")
    channels = doc["channels"]
    addresses = {channel["address"] for channel in channels.values()}
    assert {
        "intake.events",
        "intake.alertmanager",
        "intake.{producer}.events",
        "intake.{producer}.alertmanager",
        "incidents.{incident_id}.{event_type}",
        "incidents.{incident_id}.notification.sent",
    } <= addresses
    messages = doc["components"]["messages"]
    schemas = doc["components"]["schemas"]
    for channel in channels.values():
        for ref in channel["messages"].values():
            if "$ref" in ref:
                key = ref["$ref"].rsplit("/", 1)[1].replace("%2A", "*")
                assert messages[key]["payload"] != {"$ref": "#/components/schemas/EmptyPayload"}
    assert "AlertmanagerPayload" in schemas and "IncidentDeclared" in schemas
    receives = [op for op in doc["operations"].values() if op["action"] == "receive"]
    assert len(receives) == 4
    assert all(op["reply"]["channel"] == {"$ref": "#/channels/reply"} for op in receives)


def _statuses(doc: Any, path: str, method: str = "post") -> set[int]:
    return {int(status) for status in doc["paths"][path][method]["responses"]}


def _error(answer: httpx.Response) -> Error:
    body = msgspec.json.decode(answer.content)
    assert set(body) == {"error", "field", "detail"}, body
    return msgspec.convert(body, Error)


async def test_refusals_have_the_documented_shape_and_status(
    service: Service, http: httpx.AsyncClient
) -> None:
    doc = await served_openapi(http)
    for status in ("400", "404", "409", "413", "415", "421", "422", "503"):
        ref = {"$ref": "#/components/schemas/Error"}
        response = doc["components"]["responses"]
        assert any(r["content"]["application/json"]["schema"] == ref for r in response.values()), (
            status
        )

    declare = "/v1/incidents"
    cases: list[tuple[str, str, httpx.Response]] = [
        (declare, "post", await http.post(declare, content=b"{", headers=_JSON)),
        (declare, "post", await http.post(declare, json={"title": "x", "severity": "P9"})),
        (declare, "post", await http.post(declare, content=b"{}", headers=_TEXT)),
        (declare, "get", await http.get(declare, headers={"Host": "evil.example"})),
        (
            "/v1/incidents/{incident_id}/ack",
            "post",
            await http.post("/v1/incidents/INC-NOSUCH1/ack", json={}),
        ),
        (
            "/v1/incidents/{incident_id}/timeline",
            "get",
            await http.get("/v1/incidents/INC-NOSUCH1/timeline"),
        ),
        (
            "/v1/events",
            "post",
            await http.post("/v1/events", content=b"[" * 1_100_000, headers=_JSON),
        ),
    ]
    answered = await http.post(declare, json={"title": "Docs", "severity": "P3"})
    assert answered.status_code == 201, answered.text
    incident_id = answered.json()["events"][0]["incident_id"]
    resolve = f"/v1/incidents/{incident_id}/close"
    cases.append(("/v1/incidents/{incident_id}/close", "post", await http.post(resolve, json={})))
    seen = set()
    for path, method, answer in cases:
        assert 400 <= answer.status_code < 500, (path, answer.status_code, answer.text)
        error = _error(answer)
        seen.add((answer.status_code, error.error))
        assert answer.status_code in _statuses(doc, path, method), (path, answer.status_code)
    assert {s for s, _ in seen} == {400, 404, 409, 413, 415, 421, 422}, seen


_JSON = {"Content-Type": "application/json"}
_TEXT = {"Content-Type": "text/plain"}


def _validate(doc: Any, component: str, instance: Any) -> None:
    """`instance` against a component schema of the document (refs resolve inside it)."""
    schema = {"$ref": f"#/components/schemas/{component}", "components": doc["components"]}
    jsonschema.Draft202012Validator(schema).validate(instance)


async def test_webhook_request_bodies_are_documented_and_real_payloads_fit(
    http: httpx.AsyncClient,
) -> None:
    doc = await served_openapi(http)

    def body_schema(path: str) -> Any:
        return doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]

    alertmanager = {"$ref": "#/components/schemas/AlertmanagerPayload"}
    assert body_schema("/v1/webhooks/alertmanager") == alertmanager
    for path in ("/v2/enqueue", "/v1/webhooks/pagerduty", "/v1/webhooks/pagerduty/v2/enqueue"):
        assert body_schema(path) == {"$ref": "#/components/schemas/PagerDutyEvent"}
    assert body_schema("/v2/change/enqueue") == {
        "$ref": "#/components/schemas/PagerDutyChangeEvent"
    }
    # One event or a batch of them, as producers send.
    events = {**body_schema("/v1/events"), "components": doc["components"]}
    event = producer_event("alert.fired", "INC-DOCS1", "docs-1", fingerprint="f1", title="t")
    jsonschema.Draft202012Validator(events).validate(event)
    jsonschema.Draft202012Validator(events).validate([event, event | {"event_id": "docs-2"}])
    assert not jsonschema.Draft202012Validator(events).is_valid(event | {"type": "no.such"})

    for name in ("alertmanager_firing.json", "alertmanager_resolved.json"):
        _validate(doc, "AlertmanagerPayload", msgspec.json.decode(fixture_bytes(name)))
    for name in ("pagerduty_trigger.json", "pagerduty_acknowledge.json"):
        _validate(doc, "PagerDutyEvent", msgspec.json.decode(fixture_bytes(name)))
    not_alertmanager = {"version": "4", "alerts": []}  # no groupKey
    try:
        _validate(doc, "AlertmanagerPayload", not_alertmanager)
    except jsonschema.ValidationError as exc:
        assert "groupKey" in exc.message
    else:
        raise AssertionError("a payload without groupKey fits the documented schema")


async def test_pagerduty_routes_document_pagerdutys_answers(http: httpx.AsyncClient) -> None:
    doc = await served_openapi(http)
    answer_ref = {"$ref": "#/components/schemas/PagerDutyAnswer"}
    responses = doc["paths"]["/v2/enqueue"]["post"]["responses"]
    for status in ("202", "400", "401", "403"):
        assert responses[status]["content"]["application/json"]["schema"] == answer_ref, status
    refused = await http.post("/v2/enqueue", json={"routing_key": "x", "event_action": "nope"})
    assert refused.status_code == 400
    body = msgspec.json.decode(refused.content, type=PagerDutyAnswer)
    assert body.status == "invalid event" and body.errors


async def test_the_docs_page_loads_only_local_files(http: httpx.AsyncClient) -> None:
    page = await http.get("/schema")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assert urls, html[:500]
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = await http.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 0, url
    scripts = [url for url in urls if url.endswith(".js")]
    assert any(Path(url).name == "swagger-ui-bundle.js" for url in scripts), urls
    assert "cdn." not in html and "jsdelivr" not in html
