"""HTTP intake of `incidents serve` (a child process): single events per request, sequential and
32 in flight; batches of 100; Alertmanager webhook deliveries from 8 senders. Each against raw
js.publish on the same nats-server.

Single events and webhooks are driven by wrk when it is installed: a Python client costs more
CPU per request than the service and would measure itself on a 2-core machine. Without wrk they
fall back to httpx, and the rows say so.
"""

import asyncio
import json
import secrets
import time
from pathlib import Path
from typing import Any, Final, NamedTuple

import httpx

from bench.children import WRK, ServeChild, wrk
from bench.common import RawPublishes, rate, windows
from bench.results import Row, row
from bench.sizes import Sizes

HERE: Final = Path(__file__).parent
FIXTURES: Final = HERE.parent / "tests" / "fixtures"
INCIDENTS: Final = 32  # as in wrk_post_event.lua
SENDERS: Final = 8
CLIENT: Final = "wrk" if WRK else "httpx, wrk not installed"
T = "2026-11-20T10:00:00Z"


class Load(NamedTuple):
    per_s: float
    non_2xx: int


def _event(kind: str, incident: int, n: int) -> dict[str, Any]:
    base = {
        "event_id": f"{kind}-{incident}-{n}",
        "incident_id": f"INC-BENCH{incident:04d}",
        "occurred_at": T,
        "actor": "bench",
        "source": "synthetic",
    }
    if kind == "decl":
        return {**base, "type": "incident.declared", "title": "bench", "severity": "P3"}
    return {**base, "type": "incident.note_added", "text": f"observation {n}"}


async def http_rows(
    nats_url: str, data_dir: Path, sizes: Sizes, sync: str, raw: RawPublishes
) -> list[Row]:
    async with ServeChild(nats_url, data_dir) as serve:
        limits = httpx.Limits(max_connections=INCIDENTS)
        async with httpx.AsyncClient(base_url=serve.url, limits=limits, timeout=60) as http:

            async def post(body: object) -> None:
                (await http.post("/v1/events", json=body)).raise_for_status()

            await post([_event("decl", i, 0) for i in range(INCIDENTS)])
            sequential, in_flight = await _single_events(serve.url, post, sizes)
            batches = await rate(
                sizes.http_batches * 100,
                # One batch per incident at a time: 100 events of one incident, one atomic append.
                lambda: windows(
                    sizes.http_batches,
                    8,
                    lambda b: post([_event(f"b{b}", b % INCIDENTS, n) for n in range(100)]),
                ),
            )
            alerts, failed = await _webhook(serve.url, http, sizes.load_seconds, data_dir)
    return [
        _single_row(
            "http_single_sequential",
            "sequential",
            sequential,
            sync,
            ("raw js.publish, sequential", raw.sequential, "msgs/s"),
        ),
        _single_row(
            "http_single_32",
            "32 in flight",
            in_flight,
            sync,
            ("raw js.publish, windows of 32", raw.window_32, "msgs/s"),
        ),
        row(
            "http_batches_100",
            f"HTTP, batches of 100 events, 8 in flight ({sizes.http_batches} batches)",
            batches,
            "events/s",
            f"{batches:,.0f} events/s",
            [("raw js.publish, windows of 32", raw.window_32, "msgs/s")],
            sync=sync,
        ),
        row(
            "webhook",
            f"Alertmanager webhook, 2-alert groups, fire/repeat/repeat/resolve, {SENDERS} "
            f"senders ({CLIENT})",
            alerts,
            "alerts/s",
            f"{alerts:,.0f} alerts/s, {failed} non-2xx",
            [("raw js.publish, windows of 32", raw.window_32, "msgs/s")],
            sync=sync,
            details={"non_2xx": failed},
        ),
    ]


def _single_row(
    key: str, mode: str, load: Load, sync: str, baseline: tuple[str, float, str]
) -> Row:
    return row(
        key,
        f"HTTP, 1 event per request, {mode} ({CLIENT})",
        load.per_s,
        "events/s",
        f"{load.per_s:,.0f} events/s, {load.non_2xx} non-2xx",
        [baseline],
        sync=sync,
        details={"non_2xx": load.non_2xx},
    )


async def _single_events(url: str, post: Any, sizes: Sizes) -> tuple[Load, Load]:
    """Single-event requests: one connection, then 32."""
    if WRK:
        script, target = HERE / "wrk_post_event.lua", f"{url}/v1/events"
        run = secrets.token_hex(4)
        one = await asyncio.to_thread(wrk, script, target, 1, 1, sizes.load_seconds, f"{run}s")
        many = await asyncio.to_thread(
            wrk, script, target, 1, INCIDENTS, sizes.load_seconds, f"{run}p"
        )
        return Load(one.requests_per_s, one.non_2xx), Load(many.requests_per_s, many.non_2xx)

    async def one_by_one() -> None:
        for n in range(sizes.sequential):
            await post(_event("seq", n % INCIDENTS, n))

    in_flight = await rate(
        sizes.pipelined,
        lambda: windows(
            sizes.pipelined, INCIDENTS, lambda n: post(_event("par", n % INCIDENTS, n))
        ),
    )
    # post() raises on any non-2xx: reaching here means none.
    return Load(await rate(sizes.sequential, one_by_one), 0), Load(in_flight, 0)


def templates(into: Path) -> tuple[Path, Path]:
    """The real Alertmanager 0.25 bodies of tests/fixtures, with `__GROUP__` in place of the
    group's alert name and in each alert's fingerprint, so every cycle is a group of its own."""
    paths = []
    for state in ("firing", "resolved"):
        text = (FIXTURES / f"alertmanager_{state}.json").read_text()
        payload = json.loads(text)
        for k, alert in enumerate(payload["alerts"]):
            text = text.replace(alert["fingerprint"], f"__GROUP__{k}")
        text = text.replace(payload["groupLabels"]["alertname"], "Bench__GROUP__")
        path = into / f"alertmanager_{state}.json"
        path.write_text(text)
        paths.append(path)
    return paths[0], paths[1]


async def _webhook(
    url: str, http: httpx.AsyncClient, seconds: int, data_dir: Path
) -> tuple[float, int]:
    """Alerts/s and the count of non-2xx answers of SENDERS sequential senders."""
    firing, resolved = templates(data_dir.parent)
    run = secrets.token_hex(3)
    if WRK:
        script = HERE / "wrk_alertmanager.lua"
        target = f"{url}/v1/webhooks/alertmanager"
        result = await asyncio.to_thread(
            wrk, script, target, SENDERS, SENDERS, seconds, str(firing), str(resolved), run
        )
        return 2 * result.requests_per_s, result.non_2xx
    bodies = (firing.read_text(), resolved.read_text())
    sent = failed = 0
    deadline = time.perf_counter() + seconds

    async def sender(k: int) -> None:
        nonlocal sent, failed
        n = 0
        while time.perf_counter() < deadline:
            body = bodies[1 if n % 4 == 3 else 0].replace("__GROUP__", f"{run}-{k}-{n // 4}")
            answer = await http.post(
                "/v1/webhooks/alertmanager",
                content=body,
                headers={"Content-Type": "application/json"},
            )
            sent, failed, n = sent + 1, failed + (not answer.is_success), n + 1

    start = time.perf_counter()
    await asyncio.gather(*(sender(k) for k in range(SENDERS)))
    return 2 * sent / (time.perf_counter() - start), failed
