"""The CLI read verbs end to end: the installed `incidents` script against the served process."""

import asyncio
import json
import os
import subprocess
from datetime import UTC, datetime
from typing import Any, NamedTuple

import httpx
from tests_support import fixture_bytes, one_line_error, run_cli

from services.bootstrap import Service


class Seeded(NamedTuple):
    a: str  # open P0 (declared P1), backfilled, with the whole vocabulary of the timeline
    b: str  # open P3
    c: str  # resolved P2, 45 minutes from declaration to resolution
    middle: str  # a moment between A's acknowledgement and its escalation, as recorded


async def _run(
    service: Service, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INCIDENTS_URL": service.http_url}
    env.pop("INCIDENTS_TOKEN", None)
    env.pop("COLUMNS", None)
    return await run_cli(env, *args, stdin=stdin)


async def _ok(service: Service, *args: str, stdin: str | None = None) -> str:
    done = await _run(service, *args, stdin=stdin)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    assert done.stderr == "", done.stderr
    return done.stdout


async def _outputs(service: Service, *commands: tuple[str, ...]) -> list[str]:
    """Several verbs at once, two at a time: `to_thread` borrows from the default executor that
    the service also needs for its DuckDB reads, and a full pool would starve them."""
    gate = asyncio.Semaphore(2)

    async def one(args: tuple[str, ...]) -> str:
        async with gate:
            return await _ok(service, *args)

    return await asyncio.gather(*map(one, commands))


async def _seed(service: Service, http: httpx.AsyncClient) -> Seeded:
    seqs: list[int] = []

    async def post(path: str, **body: Any) -> dict[str, Any]:
        answer = await http.post(path, json={"actor": "carol@example.com", **body})
        assert answer.status_code in (200, 201), (path, answer.text)
        decoded: dict[str, Any] = answer.json()
        seqs.extend(event["seq"] for event in decoded["events"])
        return decoded

    def at(hhmm: str, day: str = "2026-01-02") -> str:
        return f"{day}T{hhmm}:00Z"

    declared = await post(
        "/v1/incidents",
        title="Checkout 5xx",
        severity="P1",
        services=["checkout"],
        commander="bob",
        occurred_at=at("09:00"),
    )
    a = declared["incident_id"]
    on = f"/v1/incidents/{a}"
    await post(f"{on}/ack", occurred_at=at("09:10"), actor="alice@example.com")
    middle = datetime.now(UTC).isoformat()
    await post(f"{on}/escalations", to="payments-oncall", level=2, occurred_at=at("09:11"))
    await post(f"{on}/severity", to="P0", reason="all regions", occurred_at=at("09:12"))
    comms = {"audience": "status_page", "kind": "initial", "message": "We are investigating"}
    await post(f"{on}/comms", **comms, occurred_at=at("09:13"))
    mitigation = {"mitigation_id": "m1", "action": "rollback", "target": "checkout@v41"}
    await post(f"{on}/mitigations", **mitigation, occurred_at=at("09:15"))
    await post(f"{on}/mitigations/complete", mitigation_id="m1", outcome="succeeded")
    await post(f"{on}/notes", text="it is DNS", event_id=f"{a}-dns", occurred_at=at("09:20"))
    await post(f"{on}/retractions", target_event_id=f"{a}-dns", reason="it was not DNS")
    await post(f"{on}/notes", text="bad deploy", kind="root_cause", event_id=f"{a}-cause")
    await post(
        f"{on}/corrections",
        target_event_id=f"{a}-cause",
        corrected_occurred_at=at("09:14"),
        reason="found in the deploy log",
    )

    b = (await post("/v1/incidents", title="Search slow", severity="P3", services=["search"]))[
        "incident_id"
    ]
    day = "2026-01-03"
    c = (
        await post(
            "/v1/incidents",
            title="Queue backlog",
            severity="P2",
            occurred_at=at("08:00", day),
            actor="dave@example.com",
        )
    )["incident_id"]
    await post(f"/v1/incidents/{c}/resolve", occurred_at=at("08:45", day))
    await service.projector.wait(max(seqs), timeout=10)
    return Seeded(a, b, c, middle)


def _without(answer: dict[str, Any], *keys: str) -> Any:
    """The answer without what depends on the moment of asking."""
    if isinstance(answer, dict):
        return {k: _without(v, *keys) for k, v in answer.items() if k not in keys}
    if isinstance(answer, list):
        return [_without(v, *keys) for v in answer]
    return answer


async def test_list_show_and_their_json(service: Service, http: httpx.AsyncClient) -> None:
    s = await _seed(service, http)
    board, everything, p3, as_json, shown = await _outputs(
        service,
        ("list",),
        ("list", "--all"),
        ("list", "--severity", "P3"),
        ("list", "--all", "--json"),
        ("show", s.a),
    )
    assert s.a in board and s.b in board and s.c not in board
    assert "Checkout 5xx" in board and "Search slow" in board
    line_a = next(line for line in board.splitlines() if s.a in line)
    assert "P0" in line_a and "bob" in line_a and "yes" in line_a
    assert "d " in line_a  # aged days since the backfilled declaration: "Nd HHh"
    assert s.c in everything and "Queue backlog" in everything and "resolved" in everything
    assert s.b in p3 and s.a not in p3

    expected = (await http.get("/v1/incidents", params={"include_closed": "true"})).json()
    assert _without(json.loads(as_json), "age_s") == _without(expected, "age_s")

    for text in ("Checkout 5xx", "commander", "bob", "2026-01-02 09:00:00Z", "breaches"):
        assert text in shown, (text, shown)
    assert "payments-oncall" not in shown  # the escalation shows in the timeline, not here
    shown_json = json.loads(await _ok(service, "show", s.a, "--json"))
    expected = (await http.get(f"/v1/incidents/{s.a}")).json()
    assert _without(shown_json, "age_s", "actual_s") == _without(expected, "age_s", "actual_s")


async def test_timeline_renders_bodies_retractions_and_corrections(
    service: Service, http: httpx.AsyncClient
) -> None:
    s = await _seed(service, http)
    out, then, as_json = await _outputs(
        service,
        ("timeline", s.a),
        ("timeline", s.a, "--as-of", s.middle),
        ("timeline", s.a, "--json"),
    )
    for text in (
        "P1 application: Checkout 5xx [checkout]",
        "level 2 -> payments-oncall",
        "P1 -> P0: all regions",
        "status_page initial: We are investigating",
        "rollback checkout@v41 (m1)",
        "m1 succeeded",
        "[retracted] it is DNS",
        "retracts seq 9: it was not DNS",
        "root_cause: bad deploy",
        "2026-01-02 09:14:00Z (corrected, was ",
        "alice@example.com",
    ):
        assert text in out, (text, out)
    expected = (await http.get(f"/v1/incidents/{s.a}/timeline")).json()
    assert _without(json.loads(as_json), "age_s", "actual_s") == _without(
        expected, "age_s", "actual_s"
    )

    cells = [line.split() for line in out.splitlines()]
    seqs = [int(c[1]) for c in cells if len(c) > 1 and c[0] == "│" and c[1].isdigit()]
    assert seqs == sorted(seqs) and len(seqs) == 12
    assert "incident.acknowledged" in then and "incident.escalated" not in then


async def test_mttr_breaches_and_audit(service: Service, http: httpx.AsyncClient) -> None:
    s = await _seed(service, http)
    mttr, by_service, breaches, open_a, audit, declared = await _outputs(
        service,
        ("mttr",),
        ("mttr", "--group-by", "service", "--from", "2026-01-02T00:00:00Z"),
        ("breaches",),
        ("breaches", "--open", "--incident", s.a),
        ("audit", "--actor", "dave@example.com"),
        ("audit", "--type", "incident.declared", "--limit", "2"),
    )
    for text in (
        "MTTD",
        "Time to declare",
        "MTTA",
        "MTTM",
        "MTTR",
        "P0",
        "P2",
        "45m 00s",
        "10m 00s",
    ):
        assert text in mttr, (text, mttr)
    assert "checkout" in by_service and "P2" not in by_service
    mttr_json = json.loads(await _ok(service, "mttr", "--json"))
    expected = (await http.get("/v1/metrics/mttr")).json()
    assert _without(mttr_json, "asked_at") == _without(expected, "asked_at")

    assert s.a in breaches and "ack" in breaches and "repeat incidents" in breaches
    assert s.a in open_a and s.c not in open_a
    assert s.c in audit and s.a not in audit and "carol" not in audit  # only C's declaration
    assert s.b in declared and s.c in declared and s.a not in declared  # newest first

    bad = one_line_error(await _run(service, "mttr", "--group-by", "week"), 2)
    assert "week" in bad


async def test_query_and_refusals(service: Service, http: httpx.AsyncClient) -> None:
    s = await _seed(service, http)
    count, as_json = await _outputs(
        service,
        ("query", "SELECT count(*) AS n FROM incidents"),
        ("query", "SELECT severity FROM incidents ORDER BY 1", "--json"),
    )
    piped = await _ok(service, "query", "-", stdin="SELECT incident_id, title FROM incidents")
    assert "│ 3 " in count and "1 rows" in count
    assert all(i in piped for i in (s.a, s.b, s.c, "Queue backlog"))
    assert json.loads(as_json) == {
        "columns": ["severity"],
        "rows": [["P0"], ["P2"], ["P3"]],
        "truncated": False,
    }

    refused = one_line_error(await _run(service, "query", "COPY events TO '/tmp/x'"), 2)
    assert "COPY statements are not allowed" in refused and "(field sql)" in refused
    unknown = one_line_error(await _run(service, "show", "INC-NOSUCH1"), 2)
    assert "does not exist" in unknown
    timeline = one_line_error(await _run(service, "timeline", "INC-NOSUCH1"), 2)
    assert "does not exist" in timeline
    bad_time = one_line_error(await _run(service, "audit", "--from", "yesterday"), 2)
    assert "RFC 3339" in bad_time
    empty = one_line_error(await _run(service, "query", "-", stdin="  "), 2)
    assert "empty" in empty


async def test_unreachable_service_exits_1(service: Service) -> None:
    done = await _run(service, "list", "--url", "http://127.0.0.1:9")
    assert "unreachable at http://127.0.0.1:9" in one_line_error(done, 1)
    assert done.stdout == ""


async def test_show_renders_impact_detection_evidence_and_truncated_alerts(
    service: Service, http: httpx.AsyncClient
) -> None:
    impact = {"regions": ["eu-west-1"], "customers_affected": 120, "users_affected_pct": 30.5}
    declared = await http.post(
        "/v1/incidents",
        json={
            "title": "Checkout 5xx",
            "severity": "P1",
            "occurred_at": "2026-01-02T10:00:00Z",
            "detected_at": "2026-01-02T09:50:00Z",
            "impact_started_at": "2026-01-02T09:45:00Z",
            "impact": impact | {"data_loss": False, "text": "EU checkout failing"},
        },
    )
    incident_id = declared.json()["incident_id"]
    on = f"/v1/incidents/{incident_id}"
    grafana = {"kind": "dashboard", "uri": "https://grafana.example.com/d/1", "description": "5xx"}
    await http.post(f"{on}/evidence", json=grafana)
    await http.post(
        f"{on}/evidence", json={"kind": "trace", "uri": "https://t/x", "event_id": "t1"}
    )
    await http.post(f"{on}/retractions", json={"target_event_id": "t1", "reason": "wrong trace"})
    fired = await http.post(
        "/v1/webhooks/alertmanager",
        content=fixture_bytes("alertmanager_firing.json").replace(
            b'"truncatedAlerts":0', b'"truncatedAlerts":7'
        ),
        headers={"Content-Type": "application/json"},
    )
    alerted = fired.json()["events"][0]["incident_id"]
    await service.projector.wait(await service.store.last_seq(), timeout=10)

    shown, other = await _outputs(service, ("show", incident_id), ("show", alerted))
    for text in (
        "impact",
        "users affected",
        "30.5%",
        "customers affected  120",
        "eu-west-1",
        "data loss",
        "EU checkout failing",
        "detected_at",
        "2026-01-02 09:50:00Z",
        "impact_started_at",
        "2026-01-02 09:45:00Z",
        "evidence",
        "https://grafana.example.com/d/1",
    ):
        assert text in shown, (text, shown)
    assert "https://t/x" not in shown  # retracted
    assert "not delivered" not in shown
    assert "7 alerts not delivered (truncated)" in other
    assert "impact: not stated" in other
    assert "https://runbooks.example.invalid/checkout-5xx" in other  # the alert's runbook link
