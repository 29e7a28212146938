"""Every obligation of the runbooks is a breach (issue 13, points 2, 4, 6, 7): escalation levels,
promised updates, one breach for one missing first message, postmortem reviews, action items.

The whole service runs (real nats-server, DuckDB file, HTTP); the only fake is the clock, which
dates the commands and is the `now` the open breaches are judged against.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests_support import one_line_error, run_cli

from services.bootstrap import running
from services.config import Config
from services.natsserver import EmbeddedNatsServer

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def at(minutes: float = 0, days: float = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, days=days)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Desk:
    """One running service and its fake clock, driven over HTTP as a responder would."""

    def __init__(self, http: httpx.AsyncClient, clock: Clock, url: str) -> None:
        self.http, self.clock, self.url, self.seq = http, clock, url, 0

    async def declare(self, severity: str, title: str = "Checkout 5xx") -> str:
        answer = await self.http.post("/v1/incidents", json={"title": title, "severity": severity})
        assert answer.status_code == 201, answer.text
        self.seq = answer.json()["events"][-1]["seq"]
        incident_id: str = answer.json()["incident_id"]
        return incident_id

    async def do(self, incident_id: str, verb: str, **body: Any) -> httpx.Response:
        answer = await self.http.post(f"/v1/incidents/{incident_id}/{verb}", json=body)
        if answer.status_code == 200:
            self.seq = answer.json()["events"][-1]["seq"]
        return answer

    async def ok(self, incident_id: str, verb: str, **body: Any) -> dict[str, Any]:
        answer = await self.do(incident_id, verb, **body)
        assert answer.status_code == 200, answer.text
        event: dict[str, Any] = answer.json()["events"][-1]
        return event

    async def incident(self, incident_id: str) -> dict[str, Any]:
        answer = await self.http.get(f"/v1/incidents/{incident_id}", params={"wait_for": self.seq})
        assert answer.status_code == 200, answer.text
        incident: dict[str, Any] = answer.json()["incident"]
        return incident

    async def breaches(self, incident_id: str, kind: str) -> list[dict[str, Any]]:
        await self.incident(incident_id)  # the read models have the last write
        answer = await self.http.get("/v1/breaches", params={"incident_id": incident_id})
        assert answer.status_code == 200, answer.text
        return [b for b in answer.json()["breaches"] if b["kind"] == kind]


Start = Callable[..., Any]


@pytest.fixture
def desk(nats_server: EmbeddedNatsServer, tmp_path: Path) -> Start:
    """`async with desk(policy_text) as d`: the service on the test's nats-server."""

    @asynccontextmanager
    async def start(policy: str | None = None) -> AsyncIterator[Desk]:
        policy_file = None
        if policy is not None:
            policy_file = tmp_path / "policy.toml"
            policy_file.write_text(policy)
        clock = Clock()
        config = Config(
            nats_url=nats_server.url,
            data_dir=tmp_path / "var",
            http_port=0,
            policy_file=policy_file,
        )
        async with (
            running(config, clock=clock) as service,
            httpx.AsyncClient(base_url=service.http_url, timeout=10) as http,
        ):
            yield Desk(http, clock, service.http_url)

    return start


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def levels(found: list[dict[str, Any]]) -> list[tuple[int, str, float, bool]]:
    return [(b["level"], b["to"], b["actual_s"], b["open"]) for b in found]


async def test_escalation_levels_fall_due_along_the_p0_path(desk: Start) -> None:
    """Runbook 002's SEV-1 path: secondary at 5 min without an acknowledgement, manager at 10
    and VP at 20 without a resolution; `escalate` with no level or target walks the path."""
    async with desk() as d:
        inc = await d.declare("P0")
        d.clock.now = at(4)
        shown = await d.incident(inc)
        assert shown["next_escalation"] == {
            "level": 1,
            "to": "secondary-oncall",
            "due_at": "2026-11-02T09:05:00Z",
            "without": "ack",
        }
        assert await d.breaches(inc, "escalation") == []

        d.clock.now = at(6)  # level 1 is a minute late: an open breach, judged against now
        assert levels(await d.breaches(inc, "escalation")) == [(1, "secondary-oncall", 360, True)]
        board = (await d.http.get("/v1/incidents")).json()["incidents"]
        assert [i["next_escalation"]["level"] for i in board if i["incident_id"] == inc] == [1]

        escalated = await d.ok(inc, "escalations")  # `{}`: the path says level 1, to whom
        assert escalated["type"] == "incident.escalated"
        [breach] = await d.breaches(inc, "escalation")
        assert (breach["level"], breach["actual_s"], breach["open"]) == (1, 360, False)
        assert breach["due_at"] == "2026-11-02T09:05:00Z"

        d.clock.now = at(7)
        await d.ok(inc, "ack")
        shown = await d.incident(inc)
        assert shown["escalation_level"] == 1
        assert shown["next_escalation"]["level"] == 2
        assert shown["next_escalation"]["to"] == "engineering-manager"

        d.clock.now = at(11)
        found = await d.breaches(inc, "escalation")
        assert levels(found) == [
            (1, "secondary-oncall", 360, False),
            (2, "engineering-manager", 660, True),
        ]
        await d.ok(inc, "escalations", to="carol@example.com")  # an explicit target wins
        d.clock.now = at(15)
        await d.ok(inc, "escalations")  # level 3, five minutes before it falls due
        shown = await d.incident(inc)
        assert (shown["escalation_level"], shown["next_escalation"]) == (3, None)

        d.clock.now = at(25)
        found = await d.breaches(inc, "escalation")
        assert levels(found) == [
            (1, "secondary-oncall", 360, False),
            (2, "engineering-manager", 660, False),
        ]
        refused = await d.do(inc, "escalations")
        assert refused.status_code == 409, refused.text
        assert refused.json()["detail"].endswith(
            "is at escalation level 3, the top of the P0 escalation path: "
            "say whom to escalate to (`to`)"
        )
        env = {**os.environ, "INCIDENTS_URL": d.url}
        env.pop("INCIDENTS_TOKEN", None)
        done = await run_cli(env, "escalate", inc)
        assert "the top of the P0 escalation path" in one_line_error(done, 2)
        done = await run_cli(env, "escalate", inc, "--to", "cto@example.com", "--json")
        assert done.returncode == 0, done.stderr


async def test_a_level_waiting_for_the_resolution_ends_with_it(desk: Start) -> None:
    """A policy file's path (runbook 001's levels for P1 here): levels waiting for the
    resolution stop when it comes; acknowledging does not stop them."""
    policy = (
        "[escalation]\n"
        'P1 = [{after = "5m", to = "senior-sre", without = "resolution"},\n'
        '      {after = "10m", to = "engineering-manager", without = "resolution"}]\n'
    )
    async with desk(policy) as d:
        inc = await d.declare("P1")
        d.clock.now = at(1)
        await d.ok(inc, "ack")
        d.clock.now = at(8)
        await d.ok(inc, "resolve")
        d.clock.now = at(60)
        assert levels(await d.breaches(inc, "escalation")) == [(1, "senior-sre", 480, False)]
        assert (await d.incident(inc))["next_escalation"] is None


async def test_one_missing_first_message_is_one_breach(desk: Start) -> None:
    async with desk() as d:
        p1 = await d.declare("P1")
        p3 = await d.declare("P3", "Slow search")  # no first-comms target: the cadence counts
        d.clock.now = at(days=1, minutes=61)
        [first] = await d.breaches(p1, "first_comms")
        assert (first["open"], first["actual_s"]) == (True, 86400 + 61 * 60.0)
        assert await d.breaches(p1, "update_cadence") == []
        assert await d.breaches(p3, "first_comms") == []
        [cadence] = await d.breaches(p3, "update_cadence")
        assert (cadence["open"], cadence["due_at"]) == (True, "2026-11-03T09:00:00Z")

        await d.ok(p1, "comms", audience="internal", kind="initial", message="on it")
        d.clock.now = at(days=1, minutes=100)  # the cadence runs from the first message
        [cadence] = await d.breaches(p1, "update_cadence")
        assert (cadence["actual_s"], cadence["target_s"]) == (39 * 60.0, 30 * 60.0)


async def test_a_promised_update_that_passes_is_a_breach(desk: Start) -> None:
    async with desk() as d:
        inc = await d.declare("P2")
        d.clock.now = at(1)
        update = {"audience": "status_page", "kind": "initial", "message": "investigating"}
        await d.ok(inc, "comms", **update, next_update_at="2026-11-02T09:20:00Z")
        d.clock.now = at(20)
        assert await d.breaches(inc, "next_update_missed") == []  # due, not yet missed
        d.clock.now = at(25)
        [missed] = await d.breaches(inc, "next_update_missed")
        assert (missed["target_s"], missed["actual_s"], missed["open"]) == (1140, 1440, True)
        assert missed["due_at"] == "2026-11-02T09:20:00Z"

        d.clock.now = at(30)
        update["kind"] = "update"
        await d.ok(inc, "comms", **update, next_update_at="2026-11-02T10:00:00Z")
        [missed] = await d.breaches(inc, "next_update_missed")
        assert (missed["actual_s"], missed["open"]) == (29 * 60, False)  # kept late: settled
        d.clock.now = at(40)
        await d.ok(inc, "resolve")  # the resolution releases the 10:00 promise
        d.clock.now = at(120)
        assert len(await d.breaches(inc, "next_update_missed")) == 1


async def test_a_postmortem_review_is_due_a_week_after_publication(desk: Start) -> None:
    async with desk() as d:
        inc = await d.declare("P1")
        d.clock.now = at(30)
        await d.ok(inc, "resolve")
        d.clock.now = at(days=1)
        await d.ok(inc, "postmortem", markdown="# What happened", status="draft")
        d.clock.now = at(days=8)
        assert await d.breaches(inc, "postmortem_review_overdue") == []
        d.clock.now = at(days=8, minutes=1)
        [late] = await d.breaches(inc, "postmortem_review_overdue")
        assert (late["open"], late["due_at"]) == (True, "2026-11-10T09:00:00Z")

        d.clock.now = at(days=9)
        held = "2026-11-10T15:00:00Z"
        await d.ok(inc, "postmortem/review", held_at=held, attendees=["ic", "sre"])
        [late] = await d.breaches(inc, "postmortem_review_overdue")
        assert (late["open"], late["actual_s"]) == (False, 7 * 86400 + 6 * 3600.0)


async def test_runbook_004_reviews_within_48_hours(desk: Start) -> None:
    async with desk('[P1]\nreview = "48h"\n') as d:
        inc = await d.declare("P1")
        await d.ok(inc, "resolve")
        await d.ok(inc, "postmortem", uri="https://wiki.example.com/pm/1")
        d.clock.now = at(days=3)
        [late] = await d.breaches(inc, "postmortem_review_overdue")
        assert (late["target_s"], late["due_at"]) == (48 * 3600.0, "2026-11-04T09:00:00Z")


async def test_an_action_item_is_overdue_once_its_due_day_has_ended(desk: Start) -> None:
    async with desk() as d:
        inc = await d.declare("P2")
        await d.ok(inc, "resolve")
        for item_id, due in (("AI-LATE", "2026-11-05"), ("AI-KEPT", "2026-11-05")):
            await d.ok(inc, "action-items", item_id=item_id, title="add an alert", due=due)
        d.clock.now = datetime(2026, 11, 5, 23, 59, tzinfo=UTC)
        await d.ok(inc, "action-items/complete", item_id="AI-KEPT")
        assert await d.breaches(inc, "action_item_overdue") == []

        d.clock.now = datetime(2026, 11, 6, tzinfo=UTC)  # the end of the due day, UTC
        [late] = await d.breaches(inc, "action_item_overdue")
        since_added = (d.clock.now - T0).total_seconds()  # added with the declaration
        assert (late["item_id"], late["open"], late["actual_s"]) == ("AI-LATE", True, since_added)
        assert (late["target_s"], late["due_at"]) == (since_added, "2026-11-06T00:00:00Z")

        d.clock.now = datetime(2026, 11, 7, 12, tzinfo=UTC)
        await d.ok(inc, "action-items/complete", item_id="AI-LATE")
        d.clock.now = datetime(2026, 11, 20, tzinfo=UTC)
        [late] = await d.breaches(inc, "action_item_overdue")
        done = (datetime(2026, 11, 7, 12, tzinfo=UTC) - T0).total_seconds()
        assert (late["item_id"], late["open"], late["actual_s"]) == ("AI-LATE", False, done)
