"""Hostile input, generated (issue 16.6): the write routes over HTTP and the NATS intake
subjects of a real `incidents serve`, fed garbage bytes, deep nesting, huge strings, bytes that
are not UTF-8, times whose offset moves them out of UTC's range and ids holding `*`, `>`, `.`,
spaces or newlines (`strategies.hostile_bodies`). Every answer is a 4xx with the `Error` body
(naming the field where one is to blame), every NATS reply an error body; never a 5xx, and the
log's last sequence is the same afterwards. Fixed seed (derandomize), bounded examples.
"""

import asyncio
from collections.abc import Iterator
from typing import Any, Final

import httpx
import msgspec
import nats
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NATS
from serve_process import ServeProcess
from strategies import Hostile, Target, hostile_bodies
from tests_support import producer_declared, producer_note

from events.store import EventStore

INCIDENT: Final = "INC-HOSTILE01"
JSON: Final = {"content-type": "application/json"}
HTTP_EXAMPLES: Final = 80
NATS_EXAMPLES: Final = 60
SETTINGS: Final = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)

ONE_EVENT: Final = Target(
    producer_note(INCIDENT, "hostile-1"),
    id=("incident_id",),
    time=("occurred_at",),
    text=("text",),
)
BATCH: Final = Target(
    [producer_note(INCIDENT, "hostile-2"), producer_note(INCIDENT, "hostile-3")],
    id=(1, "incident_id"),
    time=(1, "occurred_at"),
    text=(1, "text"),
)
ALERTMANAGER: Final = Target(
    {
        "version": "4",
        "groupKey": '{}:{alertname="Hostile"}',
        "status": "firing",
        "receiver": "incidents",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "Hostile", "severity": "critical"},
                "startsAt": "2026-11-20T10:00:00Z",
            }
        ],
    },
    id=None,
    time=("alerts", 0, "startsAt"),
    text=("groupKey",),  # bounded; label values are foreign data the service cuts short
)
HTTP_TARGETS: Final[dict[str, Target]] = {
    "/v1/events": ONE_EVENT,
    "/v1/events ": BATCH,  # the same route, a batch (the key's space is stripped)
    "/v1/incidents": Target(
        {"title": "Hostile", "severity": "P2", "incident_id": "INC-HOSTILE02"},
        id=("incident_id",),
        time=("detected_at",),
        text=("title",),
    ),
    f"/v1/incidents/{INCIDENT}/notes": Target(
        {"text": "looking", "incident_id": INCIDENT},
        id=("incident_id",),
        time=("occurred_at",),
        text=("text",),
    ),
    "/v1/webhooks/alertmanager": ALERTMANAGER,
}
NATS_TARGETS: Final[dict[str, Target]] = {
    "intake.events": ONE_EVENT,
    "intake.events ": BATCH,
    "intake.alertmanager": ALERTMANAGER,
}


def _cases(targets: dict[str, Target]) -> st.SearchStrategy[tuple[str, Hostile]]:
    return st.sampled_from(sorted(targets)).flatmap(
        lambda where: hostile_bodies(targets[where]).map(lambda body: (where.strip(), body))
    )


def _is_refusal(answer: Any, hostile: Hostile) -> bool:
    """The `Error` body, naming a field when one field was made hostile (a huge one may be
    refused whole: an event over 64 KiB)."""
    if not isinstance(answer, dict) or set(answer) != {"error", "field", "detail"}:
        return False
    named = hostile.field is None or hostile.kind == "huge" or answer["field"] is not None
    return answer["error"] != "internal" and bool(answer["detail"]) and named


class Served:
    """`incidents serve` without tokens, an incident declared, and a NATS client on its loop."""

    def __init__(self, process: ServeProcess) -> None:
        self.process = process
        self.loop = asyncio.new_event_loop()
        self.nc: NATS = self.run(nats.connect(f"nats://127.0.0.1:{process.nats_port}"))
        self.store = EventStore(self.nc)

    def run(self, work: Any) -> Any:
        return self.loop.run_until_complete(work)

    def last_seq(self) -> int:
        seq: int = self.run(self.store.last_seq())
        return seq

    def close(self) -> None:
        self.run(self.nc.close())
        self.loop.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    process = ServeProcess(tmp_path_factory.mktemp("hostile") / "var")
    try:
        process.wait_ready()
        declared = process.post("/v1/events", producer_declared(INCIDENT, "hostile-0"))
        assert declared.status_code == 200, declared.text
        service = Served(process)
        yield service
        service.close()
    finally:
        process.stop()


def test_hostile_http_bodies_get_a_4xx_naming_the_field_and_append_nothing(
    served: Served,
) -> None:
    before = served.last_seq()
    seen: dict[str, int] = {}

    @settings(SETTINGS, max_examples=HTTP_EXAMPLES)
    @given(case=_cases(HTTP_TARGETS))
    def post(case: tuple[str, Hostile]) -> None:
        path, hostile = case
        answer = httpx.post(
            served.process.http_url + path, content=hostile.body, headers=JSON, timeout=30
        )
        seen[hostile.kind] = seen.get(hostile.kind, 0) + 1
        assert 400 <= answer.status_code < 500, (
            path,
            hostile.kind,
            answer.status_code,
            answer.text,
        )
        assert _is_refusal(answer.json(), hostile), (path, hostile, answer.text[:300])

    post()
    print(f"HTTP hostile bodies by kind: {seen}")
    assert served.last_seq() == before
    assert len(seen) == 6, seen  # every kind was drawn


def test_hostile_nats_messages_get_an_error_reply_and_append_nothing(served: Served) -> None:
    before = served.last_seq()
    seen: dict[str, int] = {}

    @settings(SETTINGS, max_examples=NATS_EXAMPLES)
    @given(case=_cases(NATS_TARGETS))
    def request(case: tuple[str, Hostile]) -> None:
        subject, hostile = case
        reply = served.run(served.nc.request(subject, hostile.body, timeout=10))
        seen[hostile.kind] = seen.get(hostile.kind, 0) + 1
        answer = msgspec.json.decode(reply.data)
        assert _is_refusal(answer, hostile), (subject, hostile.kind, reply.data[:300])

    request()
    print(f"NATS hostile messages by kind: {seen}")
    assert served.last_seq() == before
    assert len(seen) == 6, seen


# What schemathesis found (tests/faults/test_openapi_fuzz.py), each pinned by hand.
FOUND: Final = [
    # A bare number was read as seconds since 1970 (Litestar's lax conversion): 200.
    ("GET", "/v1/audit?to=0.5", None, 422, "to"),
    ("GET", "/v1/incidents?as_of=1e9", None, 422, "as_of"),
    # A seq the log has not reached waited 10 s, then answered 503.
    ("GET", f"/v1/incidents/{INCIDENT}?wait_for=100000000000", None, 422, "wait_for"),
    # `0` was taken for `false`, `"5"` for 5: the body is checked strictly against its type.
    ("POST", "/v1/incidents", {"title": "t", "severity": "P1", "impact": {"security": 0}}, 422,
     "impact.security"),
    ("POST", f"/v1/incidents/{INCIDENT}/notes", {"text": "x", "occurred_at": 5}, 422,
     "occurred_at"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "status", "field"), FOUND)
def test_what_schemathesis_found_is_refused_naming_the_field(
    served: Served, method: str, path: str, body: Any, status: int, field: str
) -> None:
    before = served.last_seq()
    answer = httpx.request(method, served.process.http_url + path, json=body, timeout=30)
    assert (answer.status_code, answer.json()["field"]) == (status, field), answer.text
    assert served.last_seq() == before


def test_metrics_answer_the_documented_text_plain(served: Served) -> None:
    answer = served.process.get("/metrics")
    documented = served.process.get("/schema/openapi.json").json()["paths"]["/metrics"]["get"]
    assert answer.headers["content-type"] == "text/plain; version=1.0.0; charset=utf-8"
    assert list(documented["responses"]["200"]["content"]) == ["text/plain; version=1.0.0"]


@pytest.mark.parametrize("subject", ["intake.events", "intake.alertmanager"])
def test_a_nats_message_nested_thousands_deep_gets_an_error_reply(
    served: Served, subject: str
) -> None:
    """faststream's decoder raised RecursionError before any handler: no reply, no log line."""
    reply = served.run(served.nc.request(subject, b"[" * 3000 + b"]" * 3000, timeout=10))
    answer = msgspec.json.decode(reply.data)
    assert answer["error"] in ("malformed", "invalid"), answer
