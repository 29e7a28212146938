"""Comms templates end to end: the policy file's templates rendered by the served process from
the incident as the log holds it, previewed, sent as `comms.sent`, listed; the CLI's forms."""

import json
import os
import subprocess
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from tests_support import as_role, one_line_error, run_cli

from services.auth import Role
from services.bootstrap import Service, running
from services.config import Config
from services.natsserver import EmbeddedNatsServer

POLICY = '''
[templates.initial]
channel = "war_room"

[templates.exec_brief]
audience = "executives"
kind = "update"
channel = "email"
text = """
{{ severity }} {{ title }}: {{ status }}, commander {{ commander }}.
Customers: {{ impact.customers }}. Cost so far: {{ cost }}.
"""
'''
DUE = "2026-11-10T15:00:00Z"


@pytest.fixture
async def policed(nats_server: EmbeddedNatsServer, tmp_path: Path) -> AsyncIterator[Service]:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    config = Config(
        nats_url=nats_server.url, data_dir=tmp_path / "var", http_port=0, policy_file=policy
    )
    async with running(config) as service:
        yield service


async def _stored(service: Service, incident_id: str) -> list[dict[str, Any]]:
    loaded = await service.store.load(incident_id)
    return [msgspec.to_builtins(stored.event) for stored in loaded.events]


async def _declared(http: httpx.AsyncClient) -> str:
    declared = await http.post(
        "/v1/incidents",
        json={
            "title": "API gateway down",
            "severity": "P0",
            "services": ["api-gateway"],
            "commander": "alice",
            "impact": {"customers": ["acme", "globex"], "users_affected_pct": 100, "text": "All"},
        },
    )
    assert declared.status_code == 201, declared.text
    incident_id: str = declared.json()["incident_id"]
    return incident_id


async def test_a_template_renders_from_the_log_previews_and_sends(policed: Service) -> None:
    async with httpx.AsyncClient(base_url=policed.http_url, timeout=10) as http:
        incident_id = await _declared(http)
        on = f"/v1/incidents/{incident_id}"
        assert (await http.post(f"{on}/status", json={"status": "identified"})).status_code == 200
        before = await _stored(policed, incident_id)

        # Straight after the status change, with no wait for the read models: the log says it.
        body = {"template": "initial", "next_update_at": DUE, "vars": {"bridge": "#inc-1"}}
        preview = await http.post(f"{on}/comms/preview", json=body)
        assert preview.status_code == 200, preview.text
        shown = preview.json()["comms"]
        lines = shown["message"].splitlines()
        assert lines[0] == "🚨 INCIDENT DETECTED: API gateway down"
        for line in (
            "Severity: P0",
            "Service: api-gateway",
            "Impact: All (100% of users; customers acme, globex)",
            "Status: IDENTIFIED",
            "Incident Commander: alice",
            f"Page: {policed.http_url}/incidents/{incident_id}",
            "War room: #inc-1",
            "Next update: 2026-11-10 15:00:00Z",
        ):
            assert line in lines, (line, lines)
        # The file changed the default's channel and kept the rest.
        assert (shown["template"], shown["audience"], shown["kind"], shown["channel"]) == (
            "initial",
            "internal",
            "initial",
            "war_room",
        )
        assert await _stored(policed, incident_id) == before  # a preview stores nothing

        sent = await http.post(f"{on}/comms", json=body)
        assert sent.status_code == 200, sent.text
        assert sent.json()["comms"]["message"] == shown["message"]
        assert [e["type"] for e in sent.json()["events"]] == ["comms.sent"]
        event = (await _stored(policed, incident_id))[-1]
        assert event["message"] == shown["message"]
        assert (event["template"], event["audience"], event["kind"], event["channel"]) == (
            "initial",
            "internal",
            "initial",
            "war_room",
        )
        assert (event["status"], event["next_update_at"]) == ("identified", DUE)

        # A retry with the same event id is answered with what was sent, even once the
        # incident has changed (now the message would say MONITORING).
        once = body | {"event_id": "comms-once"}
        first = (await http.post(f"{on}/comms", json=once)).json()
        assert (await http.post(f"{on}/status", json={"status": "monitoring"})).is_success
        again = (await http.post(f"{on}/comms", json=once)).json()
        assert [e["duplicate"] for e in again["events"]] == [True]
        assert again["comms"] == first["comms"]
        assert "Status: IDENTIFIED" in again["comms"]["message"]

        # A template of the file's own, with an extra and the body's overrides.
        brief = {"template": "exec_brief", "vars": {"cost": "$5k"}, "channel": "slack"}
        brief |= {"audience": "internal", "kind": "initial"}
        answer = await http.post(f"{on}/comms", json=brief)
        assert answer.status_code == 200, answer.text
        event = (await _stored(policed, incident_id))[-1]
        assert event["message"] == (
            "P0 API gateway down: monitoring, commander alice.\n"
            "Customers: acme, globex. Cost so far: $5k."
        )
        assert (event["audience"], event["kind"], event["channel"]) == (
            "internal",
            "initial",
            "slack",
        )

        # Free text still works, now with a channel.
        free = {"audience": "customers", "kind": "update", "message": "Still on it"}
        answer = await http.post(f"{on}/comms", json=free | {"channel": "support_portal"})
        assert answer.status_code == 200, answer.text
        event = (await _stored(policed, incident_id))[-1]
        assert (event["message"], event["channel"], event["template"]) == (
            "Still on it",
            "support_portal",
            None,
        )


async def test_template_requests_are_refused_naming_what_is_wrong(policed: Service) -> None:
    async with httpx.AsyncClient(base_url=policed.http_url, timeout=10) as http:
        incident_id = await _declared(http)
        on = f"/v1/incidents/{incident_id}"
        before = await _stored(policed, incident_id)
        cases: list[tuple[str, dict[str, Any], int, str | None, str]] = [
            ("comms", {"template": "nope"}, 422, "template", "no template nope (known: initial"),
            (
                "comms",
                {"template": "initial", "message": "hi"},
                422,
                "message",
                "give either message or template",
            ),
            ("comms", {"template": "initial"}, 422, "next_update_at", "template initial uses"),
            (
                "comms/preview",
                {"template": "exec_brief"},
                422,
                "vars.cost",
                "template exec_brief uses cost, which is not set",
            ),
            (
                "comms",
                {"template": "exec_brief", "vars": {"cost": "1", "title": "x"}},
                422,
                "vars.title",
                "title comes from the incident",
            ),
            ("comms", {"template": "exec_brief", "vars": {"bad-name": "1"}}, 422, None, ""),
            (
                "comms",
                {"audience": "internal", "kind": "update", "message": "x", "vars": {"a": "1"}},
                422,
                "vars",
                "vars go with a template",
            ),
            ("comms", {"audience": "internal", "kind": "update"}, 422, "message", "give message"),
            ("comms", {}, 422, "audience", "give audience"),
            ("comms/preview", {"audience": "internal"}, 422, "template", "a preview renders"),
            ("comms", {"template": "initial", "channel": "twitter"}, 422, "channel", ""),
        ]
        for route, body, status, field, detail in cases:
            answer = await http.post(f"{on}/{route}", json=body)
            assert answer.status_code == status, (body, answer.text)
            error = answer.json()
            assert error["error"] == "invalid", (body, error)
            if field is not None:
                assert error["field"] == field, (body, error)
            assert detail in error["detail"], (body, error)
        unknown = await http.post(
            "/v1/incidents/INC-NOPE0000/comms/preview",
            json={"template": "resolution"},
        )
        assert (unknown.status_code, unknown.json()["error"]) == (404, "not_found")
        assert await _stored(policed, incident_id) == before


async def test_templates_are_listed_with_their_extras(policed: Service) -> None:
    async with httpx.AsyncClient(base_url=policed.http_url, timeout=10) as http:
        listed = (await http.get("/v1/templates")).json()
    assert listed["policy_version"].startswith("policy.toml@")
    by_name = {t["name"]: t for t in listed["templates"]}
    assert set(by_name) == {
        "initial",
        "update",
        "resolution",
        "customer_initial",
        "customer_update",
        "customer_resolution",
        "exec_brief",
    }
    brief = by_name["exec_brief"]
    assert (brief["audience"], brief["kind"], brief["channel"]) == ("executives", "update", "email")
    assert brief["extras"] == ["cost"]
    assert {"severity", "title", "status", "commander", "impact", "cost"} == set(brief["variables"])
    assert by_name["initial"]["channel"] == "war_room"
    assert "next_update" in by_name["initial"]["variables"]
    assert by_name["resolution"]["extras"] == ["cause", "fix"]


async def test_only_responders_send_and_readers_may_preview(guarded: Service) -> None:
    async with httpx.AsyncClient(base_url=guarded.http_url, timeout=10) as http:
        declared = await http.post(
            "/v1/incidents",
            json={"title": "Queue backlog", "severity": "P2"},
            headers=as_role(Role.RESPONDER),
        )
        on = f"/v1/incidents/{declared.json()['incident_id']}"
        body = {"template": "resolution"}
        auditor = as_role(Role.AUDITOR)
        preview = await http.post(f"{on}/comms/preview", json=body, headers=auditor)
        assert preview.status_code == 200, preview.text
        assert (await http.post(f"{on}/comms", json=body, headers=auditor)).status_code == 403
        assert (await http.get("/v1/templates", headers=auditor)).status_code == 200
        assert (await http.get("/v1/templates")).status_code == 401


async def _cli(service: Service, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INCIDENTS_URL": service.http_url, "INCIDENTS_ACTOR": "carol"}
    env.pop("INCIDENTS_TOKEN", None)
    return await run_cli(env, *args)


async def test_the_cli_previews_and_sends_a_template_and_keeps_free_text(
    service: Service,
) -> None:
    async with httpx.AsyncClient(base_url=service.http_url, timeout=10) as http:
        incident_id = await _declared(http)
    before = await _stored(service, incident_id)

    preview = await _cli(
        service, "comms", incident_id, "--template", "update", "--next-update", "30m",
        "--set", "actions=rolled back v42", "--preview",
    )  # fmt: skip
    assert preview.returncode == 0, preview.stderr
    assert preview.stdout.splitlines()[0] == (
        "update (update) to internal via slack; preview, nothing sent"
    )
    assert "📊 INCIDENT UPDATE: API gateway down" in preview.stdout
    assert "Actions taken: rolled back v42" in preview.stdout
    assert "no change" not in preview.stdout
    assert await _stored(service, incident_id) == before

    sent = await _cli(
        service, "comms", incident_id, "--template", "customer_initial", "--next-update", "1h",
        "--channel", "status_page", "--set", "workaround=retry later",
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert "Workaround: retry later" in sent.stdout
    assert f"{incident_id} comms.sent seq " in sent.stdout
    event = (await _stored(service, incident_id))[-1]
    assert (event["template"], event["audience"], event["channel"]) == (
        "customer_initial",
        "customers",
        "status_page",
    )
    assert event["source"] == "cli" and event["actor"] == "carol"
    due = datetime.fromisoformat(event["next_update_at"]) - datetime.fromisoformat(
        event["occurred_at"]
    )
    assert timedelta(minutes=59) < due <= timedelta(hours=1)
    assert f"Next update: {event['next_update_at'][:10]}" in event["message"]

    as_json = await _cli(
        service, "comms", incident_id, "--template", "resolution", "--preview", "--json"
    )
    assert json.loads(as_json.stdout)["comms"]["kind"] == "resolution"

    free = await _cli(
        service, "comms", incident_id, "internal", "update", "Rollback done", "--channel",
        "war_room",
    )  # fmt: skip
    assert free.returncode == 0, free.stderr
    event = (await _stored(service, incident_id))[-1]
    assert (event["message"], event["channel"], event["template"]) == (
        "Rollback done",
        "war_room",
        None,
    )

    refusals = [
        (["--template", "initial"], "next_update_at"),
        (["--template", "initial", "--set", "oops"], "--set takes KEY=VALUE"),
        (["--template", "initial", "internal"], "--template writes the message"),
        (["internal", "update"], "give AUDIENCE KIND MESSAGE, or --template NAME"),
        (["internal", "update", "hi", "--preview"], "go with --template"),
        (["--template", "nope", "--preview"], "no template nope"),
    ]
    for args, expected in refusals:
        line = one_line_error(await _cli(service, "comms", incident_id, *args), 2)
        assert expected in line, (args, line)
    assert len(await _stored(service, incident_id)) == len(before) + 2
