"""Times: every answer is UTC whatever the host's zone, and naive times are refused everywhere.

The service runs as `incidents serve` in a child process with `TZ` set, because the zone DuckDB
answers in is that of the process holding it: Asia/Tokyo (+09:00) and America/St_Johns (-03:30,
a half-hour offset, and the previous day at 02:00Z). The CLI runs under the same `TZ`.
"""

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from tests_support import INCIDENTS, fixture_bytes, one_line_error, run_cli

from services.bootstrap import Service
from services.natsserver import EmbeddedNatsServer

ZONES = ["Asia/Tokyo", "America/St_Johns"]
# An RFC 3339 time anywhere in an answer (a whole JSON string).
RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?([Zz]|[+-]\d\d(:?\d\d)?)?")
DECLARED = "2026-01-02T02:00:00Z"  # 11:00+09:00 in Tokyo, 22:30-03:30 the day before in St John's


@contextmanager
def _served(nats_url: str, data_dir: Path, zone: str) -> Iterator[str]:
    """`incidents serve` under `TZ=zone`, over the test's nats-server; yields its HTTP URL."""
    env = {
        **os.environ,
        "TZ": zone,
        "INCIDENTS_NATS_URL": nats_url,
        "INCIDENTS_DATA_DIR": str(data_dir),
        "INCIDENTS_HTTP": "127.0.0.1:0",
    }
    env.pop("INCIDENTS_TOKENS_FILE", None)
    log = data_dir.parent / "serve.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([INCIDENTS, "serve"], env=env, stderr=sink, stdout=sink)
    try:
        deadline = time.monotonic() + 30
        while not (ready := re.search(r"incidents ready: (http://\S+),", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield ready.group(1)
    finally:
        proc.terminate()
        proc.wait(20)


def _times(answer: Any, where: str = "$") -> Iterator[tuple[str, str]]:
    """(path, text) of every time in a decoded JSON answer."""
    if isinstance(answer, dict):
        for key, value in answer.items():
            if key.endswith("_at") and value is not None:
                assert isinstance(value, str) and RFC3339.fullmatch(value), (where, key, value)
            yield from _times(value, f"{where}.{key}")
    elif isinstance(answer, list):
        for n, value in enumerate(answer):
            yield from _times(value, f"{where}[{n}]")
    elif isinstance(answer, str) and RFC3339.fullmatch(answer):
        yield where, answer


def _all_utc(answer: Any) -> int:
    """Asserts every time in `answer` is written in UTC; returns how many there were."""
    found = list(_times(answer))
    foreign = [(where, text) for where, text in found if not text.endswith(("Z", "+00:00", "+00"))]
    assert foreign == [], foreign
    return len(found)


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _seed(http: httpx.Client) -> tuple[str, str]:
    """Incident A (open: declared, acknowledged, comms with a promised update, a mitigation),
    B (resolved), and one opened by an Alertmanager webhook; returns A's id and the alert's."""
    seqs: list[int] = []

    def post(path: str, **body: Any) -> dict[str, Any]:
        answer = http.post(path, json={"actor": "carol@example.com", **body})
        assert answer.status_code in (200, 201), (path, answer.text)
        decoded: dict[str, Any] = answer.json()
        seqs.extend(event["seq"] for event in decoded["events"])
        return decoded

    a = post(
        "/v1/incidents",
        title="Checkout 5xx",
        severity="P1",
        services=["checkout"],
        commander="bob@example.com",
        occurred_at=DECLARED,
    )["incident_id"]
    post(f"/v1/incidents/{a}/ack", occurred_at="2026-01-02T02:10:00Z")
    post(
        f"/v1/incidents/{a}/comms",
        audience="status_page",
        kind="initial",
        message="We are investigating",
        next_update_at="2026-01-02T02:45:00Z",
        occurred_at="2026-01-02T02:15:00Z",
    )
    post(
        f"/v1/incidents/{a}/mitigations",
        mitigation_id="m1",
        action="rollback",
        target="checkout@v41",
        occurred_at="2026-01-02T02:20:00Z",
    )
    b = post(
        "/v1/incidents", title="Search slow", severity="P3", occurred_at="2026-01-02T01:00:00Z"
    )["incident_id"]
    post(f"/v1/incidents/{b}/resolve", occurred_at="2026-01-02T01:45:00Z")
    hook = http.post(
        "/v1/webhooks/alertmanager",
        content=fixture_bytes("alertmanager_firing.json"),
        headers={"Content-Type": "application/json"},
    )
    assert hook.status_code in (200, 201, 202), hook.text
    seqs.extend(event["seq"] for event in hook.json()["events"])
    fired = next(e for e in hook.json()["events"] if e["type"] == "alert.fired")
    assert http.get("/v1/incidents", params={"wait_for": max(seqs)}).status_code == 200
    return a, fired["incident_id"]


class Served(NamedTuple):
    zone: str
    url: str
    http: httpx.Client
    a: str  # open: declared 02:00Z, acknowledged, comms promising an update, a mitigation
    alerted: str  # opened by an Alertmanager webhook


@pytest.fixture(scope="module", params=ZONES)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """The service under a foreign `TZ`, seeded once for the tests of this zone."""
    zone: str = request.param
    root = tmp_path_factory.mktemp(zone.replace("/", "-"))
    server = EmbeddedNatsServer(root / "nats")
    server.start()
    try:
        with (
            _served(server.url, root / "var", zone) as url,
            httpx.Client(base_url=url, timeout=30) as http,
        ):
            a, alerted = _seed(http)
            yield Served(zone, url, http, a, alerted)
    finally:
        server.stop()


def test_json_answers_are_utc_and_the_stored_instants(served: Served) -> None:
    http, a = served.http, served.a
    answers = {
        "board": http.get("/v1/incidents"),
        "all": http.get("/v1/incidents", params={"include_closed": "true"}),
        "incident": http.get(f"/v1/incidents/{a}"),
        "alerted": http.get(f"/v1/incidents/{served.alerted}"),
        "timeline": http.get(f"/v1/incidents/{a}/timeline"),
        "audit": http.get("/v1/audit", params={"from": "2026-01-01T00:00:00+09:00"}),
        "breaches": http.get("/v1/breaches"),
        "mttr": http.get("/v1/metrics/mttr", params={"from": "2026-01-01T00:00:00-03:30"}),
        "readyz": http.get("/readyz"),
    }
    decoded = {}
    for name, answer in answers.items():
        assert answer.status_code == 200, (name, answer.text)
        decoded[name] = answer.json()
        assert _all_utc(decoded[name]) > 0, name

    incident = decoded["incident"]["incident"]
    assert incident["opened_at"] == DECLARED
    assert incident["acknowledged_at"] == "2026-01-02T02:10:00Z"
    assert incident["next_update_at"] == "2026-01-02T02:45:00Z"
    resolved = [i for i in decoded["all"]["incidents"] if i["resolved_at"]]
    assert [i["resolved_at"] for i in resolved] == ["2026-01-02T01:45:00Z"]
    [alert, *_] = decoded["alerted"]["incident"]["alerts"]
    assert _instant(alert["starts_at"]) == _instant("2026-11-23T13:13:05.197Z")
    timeline = decoded["timeline"]["events"]
    assert timeline[0]["occurred_at"] == timeline[0]["effective_at"] == DECLARED
    for event in timeline:  # the stored event itself, as the log holds it
        assert event["occurred_at"] == event["body"]["occurred_at"]
        assert event["recorded_at"] == event["body"]["recorded_at"]
    declared = [e for e in decoded["audit"]["entries"] if e["type"] == "incident.declared"]
    assert DECLARED in [e["occurred_at"] for e in declared]


def test_as_of_is_read_and_answered_in_utc(served: Served) -> None:
    http, a = served.http, served.a
    later = datetime.now(UTC) + timedelta(minutes=1)
    as_of = later.astimezone(timezone(timedelta(hours=9))).isoformat()  # +09:00 on purpose
    expected = later.isoformat().replace("+00:00", "Z")
    now = http.get(f"/v1/incidents/{a}/timeline").json()
    past = http.get(f"/v1/incidents/{a}/timeline", params={"as_of": as_of}).json()
    assert past["as_of"] == expected and _all_utc(past) > 0
    assert past["events"] == now["events"]
    board = http.get("/v1/incidents", params={"as_of": as_of}).json()
    assert board["as_of"] == expected and _all_utc(board) > 0
    assert DECLARED in [i["opened_at"] for i in board["incidents"]]


def test_sql_sees_utc(served: Served) -> None:
    """Casts to text and dates, strftime: the SQL of auditors runs in UTC too."""
    answer = served.http.post(
        "/v1/query",
        json={
            "sql": "SELECT opened_at, CAST(opened_at AS VARCHAR) AS text, "
            "strftime(opened_at, '%H:%M') AS hhmm, CAST(opened_at AS DATE) AS day, "
            "current_setting('TimeZone') AS zone "
            f"FROM incidents WHERE incident_id = '{served.a}'"
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["rows"] == [
        [DECLARED, "2026-01-02 02:00:00+00", "02:00", "2026-01-02", "UTC"]
    ]


def test_web_pages_print_the_utc_time(served: Served) -> None:
    """The true UTC time, not the host's clock face with a Z."""
    shown = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ")
    page = served.http.get(f"/incidents/{served.a}").text
    # Events at 02:00-02:20; the promised next update (02:45) and the next escalation (02:30).
    minutes = ("00", "10", "15", "20", "30", "45")
    assert set(shown.findall(page)) == {f"2026-01-02 02:{m}:00Z" for m in minutes}
    board = served.http.get("/").text
    # Last comms and next update of one; next escalations: 15 min after each one's detection.
    escalations = {"2026-01-02 02:30:00Z", "2026-11-23 13:28:05Z"}
    assert set(shown.findall(board)) == {
        "2026-01-02 02:15:00Z",
        "2026-01-02 02:45:00Z",
        *escalations,
    }
    postmortem = served.http.get(f"/v1/incidents/{served.a}/postmortem").text
    assert "| Declared | 2026-01-02 02:00:00Z |" in postmortem


def test_cli_prints_utc_under_the_same_zone(served: Served) -> None:
    a = served.a
    env = {**os.environ, "TZ": served.zone, "INCIDENTS_URL": served.url}
    env.pop("INCIDENTS_TOKEN", None)

    def cli(*args: str) -> str:
        done = subprocess.run(
            [INCIDENTS, *args], capture_output=True, text=True, env=env, timeout=60
        )
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    sql = f"SELECT opened_at, strftime(opened_at, '%H:%M') FROM incidents WHERE incident_id = '{a}'"
    table = cli("query", sql)
    assert DECLARED in table and "02:00" in table
    assert json.loads(cli("query", sql, "--json"))["rows"] == [[DECLARED, "02:00"]]
    assert _all_utc(json.loads(cli("list", "--all", "--json"))) > 0
    assert _all_utc(json.loads(cli("timeline", a, "--json"))) > 0
    assert "2026-01-02 02:00:00Z" in cli("timeline", a)
    assert "2026-01-02 02:10:00Z" in cli("show", a)
    assert "2026-01-02 02:45:00Z" in cli("list")
    assert "2026-01-02 02:00:00Z" in cli("audit", "--incident", a)
    titled = cli("timeline", a, "--as-of", "2099-01-01T09:00:00+09:00")
    assert "as of 2099-01-01 00:00:00Z" in titled


def test_a_replayed_generation_answers_utc(served: Served) -> None:
    """A replay opens the new generation's file the same way as the first."""
    http = served.http
    assert http.post("/v1/admin/replay", json={"verify": True}).status_code == 202
    for _ in range(1200):
        status: dict[str, Any] = http.get("/v1/admin/replay").json()
        if status["state"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert status["state"] == "done" and status["differences"] == [], status
    assert _all_utc(status) == 2
    incident = http.get(f"/v1/incidents/{served.a}").json()["incident"]
    assert incident["opened_at"] == DECLARED and _all_utc(incident) > 0


async def test_naive_times_are_refused_naming_the_field(http: httpx.AsyncClient) -> None:
    """Every time parameter of every route (found in the OpenAPI document, so a new one is
    covered too): without an offset 422 naming it, an offset other than Z read as that instant."""
    declared = await http.post(
        "/v1/incidents", json={"title": "x", "severity": "P2", "occurred_at": DECLARED}
    )
    incident_id = declared.json()["incident_id"]
    await http.get("/v1/incidents", params={"wait_for": declared.json()["events"][-1]["seq"]})

    schema = (await http.get("/schema/openapi.json")).json()
    params = [
        (path.replace("{incident_id}", incident_id), param["name"])
        for path, item in schema["paths"].items()
        for param in item.get("get", {}).get("parameters", [])
        if param["in"] == "query" and '"date-time"' in json.dumps(param["schema"])
    ]
    assert sorted(params) == sorted(
        [
            ("/v1/audit", "from"),
            ("/v1/audit", "to"),
            ("/v1/changes", "from"),
            ("/v1/changes", "to"),
            ("/v1/incidents", "as_of"),
            (f"/v1/incidents/{incident_id}/timeline", "as_of"),
            ("/v1/metrics/mttr", "from"),
            ("/v1/metrics/mttr", "to"),
        ]
    )
    wrong = []  # every route's problems at once
    for path, name in params:
        for naive in ("2026-01-02T02:00:00", "2026-01-02T02:00:00.5", "2026-01-02"):
            answer = await http.get(path, params={name: naive})
            refusal = answer.json()
            expected = {"error": "invalid", "field": name, "detail": refusal.get("detail")}
            if answer.status_code != 422 or refusal != expected or not refusal["detail"]:
                wrong.append((path, name, naive, answer.status_code, refusal))
        answer = await http.get(path, params={name: "2099-01-01T09:00:00+09:00"})
        assert answer.status_code == 200, (path, name, answer.text)
        if name == "as_of" and answer.json()["as_of"] != "2099-01-01T00:00:00Z":
            wrong.append((path, name, "+09:00", answer.status_code, answer.json()["as_of"]))
    assert wrong == []
    naive = (await http.get("/v1/audit", params={"from": "2026-01-02T02:00:00"})).json()
    assert "offset" in naive["detail"], naive
    # Bodies follow the same rule (msgspec, tz=True).
    body = {"title": "y", "severity": "P2", "occurred_at": "2026-01-02T02:00:00"}
    refused = await http.post("/v1/incidents", json=body)
    assert refused.status_code == 422 and refused.json()["field"] == "occurred_at", refused.text

    # The same instant however it is written: one answer.
    bounds = ("2026-01-02T01:59:00Z", "2026-01-02T10:59:00+09:00", "2026-01-01T22:29:00-03:30")
    answers = [
        (await http.get("/v1/metrics/mttr", params={"from": bound})).json()["rows"]
        for bound in bounds
    ]
    assert answers[0] == answers[1] == answers[2] != []


async def test_the_cli_refuses_naive_times(service: Service) -> None:
    env = {**os.environ, "INCIDENTS_URL": service.http_url}
    env.pop("INCIDENTS_TOKEN", None)
    for args in (
        ("audit", "--from", "2026-01-02T02:00:00"),
        ("mttr", "--to", "2026-01-02"),
        ("timeline", "INC-X1", "--as-of", "2026-01-02T02:00:00"),
    ):
        assert "offset" in one_line_error(await run_cli(env, *args), 2), args
