"""The CLI write verbs end to end: the installed `incidents` script against the served process."""

import json
import os
import subprocess
from datetime import datetime, timedelta
from typing import Any

import msgspec
from tests_support import one_line_error, run_cli

from services.bootstrap import Service
from services.natsserver import free_port

ACTOR = "alice@laptop"


async def _run(service_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INCIDENTS_URL": service_url, "INCIDENTS_ACTOR": ACTOR}
    env.pop("INCIDENTS_TOKEN", None)
    return await run_cli(env, *args)


async def _ok(service: Service, *args: str) -> str:
    done = await _run(service.http_url, *args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


async def _events(service: Service, incident_id: str) -> list[dict[str, Any]]:
    loaded = await service.store.load(incident_id)
    return [msgspec.to_builtins(stored.event) for stored in loaded.events]


async def _declare(service: Service, *extra: str) -> str:
    out = await _ok(service, "declare", "Checkout 5xx", "--severity", "P1", *extra)
    return out.splitlines()[0].strip()


async def test_every_verb_drives_an_incident_through_its_life(service: Service) -> None:
    incident_id = await _declare(
        service, "--service", "checkout", "--service", "cart", "--commander", "bob"
    )
    assert incident_id.startswith("INC-")
    comms = ["--status", "identified", "--next-update", "30m"]
    steps = [
        (["ack", incident_id], "incident.acknowledged"),
        (["severity", incident_id, "P0", "--reason", "all regions"], "incident.severity_changed"),
        (["status", incident_id, "identified"], "incident.status_changed"),
        (["status", incident_id, "--phase", "mitigation"], "incident.phase_changed"),
        (["assign", incident_id, "comms", "carol"], "incident.role_assigned"),
        (["assign", incident_id, "comms", "carol", "--release"], "incident.role_released"),
        (
            ["escalate", incident_id, "--to", "payments-oncall", "--level", "3"],
            "incident.escalated",
        ),
        (
            [
                "mitigate",
                incident_id,
                "rollback",
                "--target",
                "checkout@v41",
                "--mitigation-id",
                "m1",
            ],
            "mitigation.started",
        ),
        (
            ["mitigate", incident_id, "--complete", "m1", "--outcome", "succeeded"],
            "mitigation.completed",
        ),
        (
            ["comms", incident_id, "status_page", "initial", "We are investigating", *comms],
            "comms.sent",
        ),
        (["note", incident_id, "bad deploy", "--kind", "root_cause"], "incident.note_added"),
        (["resolve", incident_id, "--summary", "rolled back"], "incident.resolved"),
        (["reopen", incident_id, "--reason", "errors are back"], "incident.reopened"),
        (["resolve", incident_id], "incident.resolved"),
        (["close", incident_id, "--reason", "postmortem done"], "incident.closed"),
    ]
    for args, expected in steps:
        out = await _ok(service, *args)
        assert f"{incident_id} {expected} seq " in out, (args, out)

    events = await _events(service, incident_id)
    assert [e["type"] for e in events] == [
        "incident.declared",
        "incident.role_assigned",  # --commander
        *(expected for _, expected in steps),
    ]
    assert {(e["actor"], e["source"]) for e in events} == {(ACTOR, "cli")}
    by_type = {e["type"]: e for e in events}
    declared, severity = by_type["incident.declared"], by_type["incident.severity_changed"]
    escalated, started = by_type["incident.escalated"], by_type["mitigation.started"]
    sent = by_type["comms.sent"]
    assert list(declared["services"]) == ["checkout", "cart"]
    assert (severity["from"], severity["to"], severity["reason"]) == ("P1", "P0", "all regions")
    assert (escalated["to"], escalated["level"]) == ("payments-oncall", 3)
    assert (started["mitigation_id"], started["action"]) == ("m1", "rollback")
    due = datetime.fromisoformat(sent["next_update_at"]) - datetime.fromisoformat(
        sent["occurred_at"]
    )
    # Due 30 minutes after the CLI ran; the service stamps occurred_at a moment later.
    assert timedelta(minutes=29) < due <= timedelta(minutes=30)


async def test_json_prints_the_answer_and_declare_takes_an_id(service: Service) -> None:
    out = await _ok(service, "declare", "DB failover", "-s", "P2", "--id", "INC-CLI-JSON", "--json")
    answer = json.loads(out)
    assert answer["incident_id"] == "INC-CLI-JSON"
    assert [(e["type"], e["seq"], e["duplicate"]) for e in answer["events"]] == [
        ("incident.declared", answer["events"][0]["seq"], False)
    ]
    again = json.loads(await _ok(service, "ack", "INC-CLI-JSON", "--json"))
    assert again["events"][0]["type"] == "incident.acknowledged"
    unchanged = await _ok(service, "ack", "INC-CLI-JSON")
    assert unchanged.strip() == "INC-CLI-JSON no change"


async def test_event_id_makes_a_retry_a_duplicate(service: Service) -> None:
    incident_id = await _declare(service)
    retry = ["note", incident_id, "checking dashboards", "--event-id", "cli-note-1"]
    first = json.loads(await _ok(service, *retry, "--json"))
    second = await _ok(service, *retry)
    assert first["events"][0]["duplicate"] is False
    assert (
        second.strip()
        == f"{incident_id} incident.note_added seq {first['events'][0]['seq']} duplicate"
    )
    notes = [e for e in await _events(service, incident_id) if e["type"] == "incident.note_added"]
    assert [n["event_id"] for n in notes] == ["cli-note-1"]


async def test_at_backfills_occurred_at(service: Service) -> None:
    incident_id = await _declare(service, "--at", "2026-01-02T10:00:00+01:00")
    await _ok(service, "ack", incident_id, "--at", "2026-01-02T09:20:00Z")
    declared, acknowledged = await _events(service, incident_id)
    assert declared["occurred_at"] == "2026-01-02T09:00:00Z"
    assert acknowledged["occurred_at"] == "2026-01-02T09:20:00Z"


async def test_declare_takes_detection_and_impact_start(service: Service) -> None:
    incident_id = await _declare(
        service,
        "--at",
        "2026-01-02T14:23:30Z",
        "--detected-at",
        "2026-01-02T14:23:00Z",
        "--impact-started-at",
        "2026-01-02T15:20:00+01:00",
    )
    (declared,) = await _events(service, incident_id)
    assert declared["detected_at"] == "2026-01-02T14:23:00Z"
    assert declared["impact_started_at"] == "2026-01-02T14:20:00Z"
    bad = await _run(service.http_url, "declare", "x", "-s", "P1", "--detected-at", "14:23")
    assert "RFC 3339" in one_line_error(bad, 2)


async def test_bad_input_exits_2_with_one_line(service: Service) -> None:
    incident_id = await _declare(service)
    cases = [
        (["severity", incident_id, "P9"], "P9"),
        (["declare", "x", "--severity", "urgent"], "urgent"),
        (["declare", "x"], "--severity"),
        (["note", incident_id, "x", "--kind", "gossip"], "gossip"),
        (["ack", incident_id, "--at", "2026-01-02T10:00:00"], "offset"),
        (["comms", incident_id, "internal", "update", "hi", "--next-update", "soon"], "soon"),
        (["status", incident_id], "STATUS"),
        (["mitigate", incident_id, "--complete", "m1"], "--outcome"),
        (["ack", incident_id, "--url", "ftp://example.com"], "http"),
        (["ack", incident_id, "--bogus"], "--bogus"),
        (["ack", "INC/../x"], "not an incident id"),
    ]
    for args, mentioned in cases:
        line = one_line_error(await _run(service.http_url, *args), 2)
        assert mentioned in line, (args, line)
    assert [e["type"] for e in await _events(service, incident_id)] == ["incident.declared"]


async def test_refusals_of_the_service_exit_2_with_its_reason(service: Service) -> None:
    unknown = one_line_error(await _run(service.http_url, "ack", "INC-NOSUCH1"), 2)
    assert "does not exist" in unknown
    incident_id = await _declare(service)
    early = one_line_error(await _run(service.http_url, "close", incident_id), 2)
    assert "resolve" in early
    invalid = one_line_error(
        await _run(service.http_url, "note", incident_id, "x", "--event-id", "a/b"), 2
    )
    assert "(field event_id)" in invalid


async def test_unreachable_service_exits_1_with_one_line(service: Service) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = await _run(service.http_url, "ack", "INC-ANY", "--url", url)
    line = one_line_error(done, 1)
    assert f"unreachable at {url}" in line
    assert done.stdout == ""


async def test_impact_and_declare_state_who_and_what_is_hurt(service: Service) -> None:
    incident_id = await _declare(
        service,
        "--region",
        "eu-west-1",
        "--users-pct",
        "30",
        "--no-data-loss",
        "--impact-text",
        "EU checkout failing",
    )
    stated = [
        *("--service", "checkout", "--region", "eu-west-1", "--region", "us-east-1"),
        *("--customer", "acme", "--customers-affected", "120", "--users-pct", "30.5"),
        *("--data-loss", "--no-security", "--revenue-at-risk", "50000", "--text", "worse"),
    ]
    out = await _ok(service, "impact", incident_id, *stated)
    assert f"{incident_id} incident.impact_updated seq " in out
    declared, updated = await _events(service, incident_id)
    assert msgspec.json.decode(msgspec.json.encode(declared["impact"])) == {
        "regions": ["eu-west-1"],
        "users_affected_pct": 30.0,
        "data_loss": False,
        "text": "EU checkout failing",
    }
    assert msgspec.json.decode(msgspec.json.encode(updated["impact"])) == {
        "services": ["checkout"],
        "regions": ["eu-west-1", "us-east-1"],
        "customers": ["acme"],
        "customers_affected": 120,
        "users_affected_pct": 30.5,
        "data_loss": True,
        "security": False,
        "revenue_at_risk": 50000,
        "text": "worse",
    }
    assert (updated["actor"], updated["source"]) == (ACTOR, "cli")

    cases = [
        (["impact", incident_id], "at least one impact option"),
        (["impact", incident_id, "--users-pct", "150"], "--users-pct"),
        (["impact", incident_id, "--users-pct", "lots"], "--users-pct"),
        (["impact", incident_id, "--revenue-at-risk", "-1"], "--revenue-at-risk"),
        (["impact", incident_id, "--customers-affected", "1.5"], "--customers-affected"),
        (["declare", "x", "-s", "P1", "--users-pct", "101"], "--users-pct"),
        (["declare", "x", "-s", "P1", "--text", "hi"], "--text"),  # declare's is --impact-text
    ]
    for args, mentioned in cases:
        line = one_line_error(await _run(service.http_url, *args), 2)
        assert mentioned in line, (args, line)
    assert len(await _events(service, incident_id)) == 2


async def test_correct_moves_detection_on_the_declaration(service: Service) -> None:
    incident_id = await _declare(
        service,
        "--event-id",
        "decl-cli-fix",
        "--at",
        "2026-01-02T10:00:00Z",
        "--detected-at",
        "2026-01-02T09:50:00Z",
    )
    fix = ["--detected-at", "2026-01-02T10:40:00+01:00", "--reason", "errors from 09:40"]
    out = await _ok(
        service, "correct", incident_id, *fix, "--impact-started-at", "2026-01-02T09:30:00Z"
    )
    assert f"{incident_id} event.corrected seq " in out
    await _ok(service, "note", incident_id, "it is DNS", "--event-id", "cli-fix-note")
    await _ok(
        service,
        "correct",
        incident_id,
        "cli-fix-note",
        "--text",
        "it is not DNS",
        "--reason",
        "typo",
    )
    _, corrected, _, retold = await _events(service, incident_id)
    assert (corrected["target_event_id"], corrected["corrected_detected_at"]) == (
        "decl-cli-fix",
        "2026-01-02T09:40:00Z",
    )
    assert corrected["corrected_impact_started_at"] == "2026-01-02T09:30:00Z"
    assert (retold["target_event_id"], retold["corrected_text"]) == (
        "cli-fix-note",
        "it is not DNS",
    )
    answer = json.loads(await _ok(service, "show", incident_id, "--json"))
    assert answer["incident"]["detected_at"] == "2026-01-02T09:40:00Z"

    cases = [
        (["correct", incident_id, "cli-fix-note", *fix], "declaration"),
        (["correct", incident_id, "--reason", "nothing"], "correct something"),
        (["correct", incident_id, "--detected-at", "09:40", "--reason", "x"], "RFC 3339"),
        (["correct", incident_id, "--detected-at", "2026-01-02T09:40:00Z"], "--reason"),
        (["correct", "INC-NOSUCH1", *fix], "does not exist"),
    ]
    for args, mentioned in cases:
        line = one_line_error(await _run(service.http_url, *args), 2)
        assert mentioned in line, (args, line)
    assert len(await _events(service, incident_id)) == 4
