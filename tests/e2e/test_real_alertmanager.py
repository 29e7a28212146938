"""A real Alertmanager (Debian's prometheus-alertmanager, 0.25) notifying the service: fire,
resolve, fire again leaves two incidents, the first resolved by `auto-resolve`.

Debian's package is installed when missing (as root, where apt-get exists), so a fresh CI
machine runs it; skipped, saying why, only where installing is impossible (the recorded
payloads of tests/fixtures cover the same path everywhere).
"""

import asyncio
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from tests_support import apt_install

from events.incident import fold
from events.schema import AnyEvent, IncidentDeclared, IncidentResolved
from services.bootstrap import Service


def _binary() -> str | None:
    return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


CONFIG = """
route:
  receiver: timeline
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: timeline
    webhook_configs:
      - url: {url}/v1/webhooks/alertmanager
        send_resolved: true
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def alertmanager(service: Service, tmp_path: Path) -> Iterator[str]:
    binary = _binary()
    if binary is None:
        why = apt_install(("prometheus-alertmanager",))
        binary = _binary()
        if binary is None:
            pytest.skip(f"no Alertmanager to run: {why}")
    config = tmp_path / "alertmanager.yml"
    config.write_text(CONFIG.format(url=service.http_url))
    port = _free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


async def _post_alert(api: str, starts_at: datetime, ends_at: datetime | None = None) -> None:
    alert = {
        "labels": {"alertname": "LoginDown", "service": "login", "severity": "critical"},
        "annotations": {
            "summary": "Login probe failing",
            "runbook_url": "https://runbooks.example.invalid/login",
        },
        "startsAt": starts_at.isoformat(),
        "generatorURL": "http://prometheus.example.invalid/graph?g0.expr=up",
    }
    if ends_at is not None:
        alert["endsAt"] = ends_at.isoformat()
    async with httpx.AsyncClient(timeout=5) as client:
        for _ in range(100):  # until Alertmanager listens
            try:
                answer = await client.post(f"{api}/api/v2/alerts", json=[alert])
                break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        assert answer.status_code == 200, answer.text


async def _log(service: Service) -> list[AnyEvent]:
    return [s.event async for batch in service.store.read() for s in batch]


async def _until(service: Service, done: Callable[[list[AnyEvent]], bool]) -> list[AnyEvent]:
    for _ in range(300):
        events = await _log(service)
        if done(events):
            return events
        await asyncio.sleep(0.1)
    raise AssertionError(f"not reached; log: {[type(e).__name__ for e in events]}")


def _declared(events: list[AnyEvent]) -> list[str]:
    return [e.incident_id for e in events if isinstance(e, IncidentDeclared)]


async def test_fire_resolve_fire_again(service: Service, alertmanager: str) -> None:
    now = datetime.now(UTC)
    await _post_alert(alertmanager, now - timedelta(minutes=2))
    await _until(service, lambda events: len(_declared(events)) == 1)

    await _post_alert(alertmanager, now - timedelta(minutes=2), now - timedelta(seconds=1))
    events = await _until(
        service, lambda events: any(isinstance(e, IncidentResolved) for e in events)
    )
    (resolution,) = [e for e in events if isinstance(e, IncidentResolved)]
    assert resolution.actor == "auto-resolve"
    assert "LoginDown" in resolution.summary

    await _post_alert(alertmanager, datetime.now(UTC))
    events = await _until(service, lambda events: len(_declared(events)) == 2)
    first, second = _declared(events)
    assert first != second
    states = {i: fold(e for e in events if e.incident_id == i) for i in (first, second)}
    assert states[first].is_resolved and not states[second].is_resolved
    # Detected when the alert started, not when the notification arrived.
    detected = states[first].detected_at
    assert detected is not None
    assert abs(detected - (now - timedelta(minutes=2))) < timedelta(milliseconds=1)
