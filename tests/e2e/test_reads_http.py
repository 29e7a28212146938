"""Read routes over real HTTP: status board, incident, timeline, audit, SQL, readiness, metrics
(by one or two keys, by team; the incident gauges of /metrics)."""

import asyncio
import json
import math
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests_support import one_line_error, run_cli

from services.bootstrap import Service, running
from services.config import Config
from services.natsserver import EmbeddedNatsServer


async def _declare(
    http: httpx.AsyncClient, title: str, severity: str, service: str
) -> tuple[str, int]:
    answer = await http.post(
        "/v1/incidents", json={"title": title, "severity": severity, "services": [service]}
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    return body["incident_id"], body["events"][-1]["seq"]


async def test_status_board_incident_and_timeline(http: httpx.AsyncClient) -> None:
    a, _ = await _declare(http, "Checkout 5xx", "P1", "checkout")
    b, _ = await _declare(http, "Search slow", "P3", "search")
    ack = (await http.post(f"/v1/incidents/{a}/ack", json={"actor": "alice@example.com"})).json()
    resolved = (await http.post(f"/v1/incidents/{b}/resolve")).json()
    last = max(ack["events"][0]["seq"], resolved["events"][0]["seq"])

    board = (await http.get("/v1/incidents", params={"wait_for": last})).json()["incidents"]
    assert [i["incident_id"] for i in board] == [a]
    assert board[0]["acknowledged"] is True and board[0]["severity"] == "P1"
    everything = (await http.get("/v1/incidents", params={"include_closed": "true"})).json()
    assert {i["incident_id"] for i in everything["incidents"]} == {a, b}
    by_service = (
        await http.get("/v1/incidents", params={"service": "search", "status": "resolved"})
    ).json()
    assert [i["incident_id"] for i in by_service["incidents"]] == [b]

    shown = (await http.get(f"/v1/incidents/{a}")).json()["incident"]
    assert shown["title"] == "Checkout 5xx" and shown["acknowledged_at"] is not None
    assert isinstance(shown["breaches"], list)

    timeline = (await http.get(f"/v1/incidents/{a}/timeline")).json()
    assert [e["type"] for e in timeline["events"]] == ["incident.declared", "incident.acknowledged"]
    assert timeline["events"][1]["actor"] == "alice@example.com"
    assert timeline["incident"]["incident_id"] == a
    assert (await http.get("/v1/incidents/INC-NOPE0000/timeline")).status_code == 404


async def test_audit_filters(http: httpx.AsyncClient) -> None:
    a, _ = await _declare(http, "Queue backlog", "P2", "queue")
    note = await http.post(
        f"/v1/incidents/{a}/notes", json={"text": "x", "actor": "bob@example.com"}
    )
    seq = note.json()["events"][0]["seq"]
    await http.get("/v1/incidents", params={"wait_for": seq})
    entries = (await http.get("/v1/audit", params={"actor": "bob@example.com"})).json()["entries"]
    assert [(e["type"], e["incident_id"]) for e in entries] == [("incident.note_added", a)]
    typed = (await http.get("/v1/audit", params={"type": "incident.declared"})).json()["entries"]
    assert [e["incident_id"] for e in typed] == [a]


async def test_query_route(http: httpx.AsyncClient) -> None:
    _, seq = await _declare(http, "Disk full", "P2", "db")
    await http.get("/v1/incidents", params={"wait_for": seq})
    answer = await http.post(
        "/v1/query", json={"sql": "SELECT severity, count(*) AS n FROM incidents GROUP BY ALL"}
    )
    assert answer.status_code == 200
    assert answer.json() == {"columns": ["severity", "n"], "rows": [["P2", 1]], "truncated": False}
    refused = await http.post("/v1/query", json={"sql": "COPY events TO '/tmp/out.csv'"})
    assert refused.status_code == 400
    assert "COPY statements are not allowed" in refused.json()["detail"]
    assert refused.json()["field"] == "sql"
    write = await http.post("/v1/query", json={"sql": "DELETE FROM incidents"})
    assert write.status_code == 400 and "read-only" in write.json()["detail"]


async def test_readyz_reports_lag_reaching_zero(http: httpx.AsyncClient, service: Service) -> None:
    for n in range(5):
        await _declare(http, f"Incident {n}", "P3", "svc")
    for _ in range(200):
        ready = (await http.get("/readyz")).json()
        if ready["projector"]["lag"] == 0:
            break
        await asyncio.sleep(0.02)
    assert ready["ready"] is True
    assert ready["projector"]["lag"] == 0
    assert ready["projector"]["checkpoint"] == ready["stream"]["last_seq"] == 5


async def test_prometheus_metrics(http: httpx.AsyncClient) -> None:
    _, seq = await _declare(http, "Metrics", "P4", "obs")
    await http.get("/v1/incidents", params={"wait_for": seq})
    text = (await http.get("/metrics")).text
    assert "incidents_events_appended_total" in text
    assert "incidents_events_projected_total" in text
    assert "incidents_projector_lag" in text
    assert "incidents_request_duration_seconds" in text


# ---- issue 13: metrics by two keys and by team, the automation share, incident gauges ------


@pytest.fixture
async def teamed(nats_server: EmbeddedNatsServer, tmp_path: Path) -> AsyncIterator[Service]:
    """The service with a policy file mapping services to teams."""
    policy = tmp_path / "policy.toml"
    policy.write_text('[teams]\ncheckout = "payments-team"\nbilling = "payments-team"\n')
    config = Config(
        nats_url=nats_server.url, data_dir=tmp_path / "var", http_port=0, policy_file=policy
    )
    async with running(config) as service:
        yield service


async def test_mttr_by_two_keys_and_by_team(teamed: Service) -> None:
    async with httpx.AsyncClient(base_url=teamed.http_url, timeout=10) as http:
        both = await http.post(
            "/v1/incidents",
            json={"title": "Pay", "severity": "P1", "services": ["checkout", "billing"]},
        )
        alone = await http.post(
            "/v1/incidents", json={"title": "Search", "severity": "P2", "services": ["search"]}
        )
        a = both.json()["incident_id"]
        await http.post(
            f"/v1/incidents/{a}/mitigations",
            json={"action": "rollback", "mitigation_id": "m1", "automated": True},
        )
        done = await http.post(
            f"/v1/incidents/{a}/mitigations/complete",
            json={"mitigation_id": "m1", "outcome": "succeeded"},
        )
        last = max(done.json()["events"][0]["seq"], alone.json()["events"][0]["seq"])
        await http.get("/v1/incidents", params={"wait_for": last})

        by_team = (await http.get("/v1/metrics/mttr", params={"group_by": "team"})).json()
        assert by_team["group_by"] == "team" and by_team["definitions_version"] == "3"
        # Two services of one team count once; a service without a team is '(none)'.
        assert [(r["group"], r["count"]) for r in by_team["rows"]] == [
            ("(none)", 1),
            ("payments-team", 1),
        ]
        pay = by_team["rows"][1]
        assert pay["automation"] == {
            "started": 1,
            "succeeded": 1,
            "mitigated": 1,
            "first_automated": 1,
            "share": 1.0,
        }
        assert set(pay) >= {"group", "groups", "count", "mttd", "mtta", "mttm", "mttr"}

        pairs = await http.get("/v1/metrics/mttr", params={"group_by": "team,severity"})
        assert pairs.json()["group_by"] == "team,severity"
        assert [(r["groups"], r["group"]) for r in pairs.json()["rows"]] == [
            ({"team": "(none)", "severity": "P2"}, "(none) / P2"),
            ({"team": "payments-team", "severity": "P1"}, "payments-team / P1"),
        ]
        for bad in ("severity,severity", "severity,month,team", "week"):
            refused = await http.get("/v1/metrics/mttr", params={"group_by": bad})
            assert refused.status_code == 422, bad
            assert refused.json()["field"] == "group_by"
        definitions = (await http.get("/v1/metrics/definitions")).json()
        assert definitions["version"] == "3"
        assert "team" in definitions["definitions"]["groups"]
        assert "first_automated" in definitions["definitions"]["automation"]
    env = {**os.environ, "INCIDENTS_URL": teamed.http_url}
    env.pop("INCIDENTS_TOKEN", None)
    table = await run_cli(env, "mttr", "--group-by", "Team, Severity")
    assert table.returncode == 0, table.stderr
    assert "grouped by team,severity" in table.stdout and "payments-team / P1" in table.stdout
    as_json = await run_cli(env, "mttr", "--group-by", "team,severity", "--json")
    assert json.loads(as_json.stdout)["rows"] == pairs.json()["rows"]
    line = one_line_error(await run_cli(env, "mttr", "--group-by", "team,team"), 2)
    assert "names team twice" in line


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, by name and labels (the parser refuses
    anything that is not the format)."""
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def _types(text: str) -> dict[str, str]:
    return {family.name: family.type for family in text_string_to_metric_families(text)}


async def test_prometheus_incident_gauges(http: httpx.AsyncClient, service: Service) -> None:
    now = service.models.reader.clock()
    ten_ago = (now - timedelta(minutes=10)).isoformat()
    p0 = await http.post(
        "/v1/incidents", json={"title": "All down", "severity": "P0", "detected_at": ten_ago}
    )
    p1 = await http.post(
        "/v1/incidents",
        json={
            "title": "Slow",
            "severity": "P1",
            "detected_at": (now - timedelta(minutes=30)).isoformat(),
        },
    )
    acked = await http.post(f"/v1/incidents/{p1.json()['incident_id']}/ack")
    resolved = await http.post(f"/v1/incidents/{p1.json()['incident_id']}/resolve")
    seqs = [a.json()["events"][-1]["seq"] for a in (p0, p1, acked, resolved)]
    await http.get("/v1/incidents", params={"wait_for": max(seqs)})

    answer = await http.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert "# HELP incidents_unacknowledged " in text
    assert "# TYPE incidents_unacknowledged gauge" in text
    types = _types(text)
    assert types["incidents_open"] == types["incidents_open_breaches"] == "gauge"
    assert types["incidents_mttr_seconds"] == types["incidents_mtta_seconds"] == "summary"
    got = _samples(text)

    def value(name: str, **labels: str) -> float:
        return got[(name, frozenset(labels.items()))]

    # "P0 unacknowledged": what a team alerts on.
    assert value("incidents_unacknowledged", severity="P0") == 1
    assert value("incidents_open", severity="P0") == 1
    assert value("incidents_unacknowledged_oldest_seconds", severity="P0") >= 600
    assert value("incidents_open", severity="P1") == 0  # resolved
    assert value("incidents_unacknowledged", severity="P4") == 0  # every severity present
    assert value("incidents_open_breaches", kind="ack") == 1  # P0: 5 min from detection
    assert value("incidents_open_breaches", kind="resolution") == 0
    assert value("incidents_mttr_seconds_count", severity="P1") == 1
    mttr = value("incidents_mttr_seconds_sum", severity="P1")
    assert mttr >= 1800
    assert value("incidents_mttr_seconds", severity="P1", quantile="0.5") == mttr
    assert value("incidents_mtta_seconds_count", severity="P1") == 1
    assert value("incidents_mttr_seconds_count", severity="P0") == 0
    assert math.isnan(value("incidents_mttr_seconds", severity="P0", quantile="0.9"))
    assert value("incidents_events_appended_total", source="api") >= 4  # the process's own
