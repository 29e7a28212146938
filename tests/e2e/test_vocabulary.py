"""The runbooks' words (issue 13, point 8): `SEV-1`..`SEV-4` accepted wherever a severity is given
and stored as P0..P4 (HTTP commands, producer events over HTTP and NATS, the CLI, monitors'
labels); "mitigating" as a status answered with the phase route. Real service, real log."""

import json
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgspec
import nats
import pytest
from tests_support import fixture_bytes, one_line_error, producer_event, run_cli

from services.bootstrap import Service, running
from services.config import Config
from services.natsserver import EmbeddedNatsServer


async def _stored(service: Service, incident_id: str) -> list[bytes]:
    """The incident's records exactly as the log holds them."""
    return [stored.raw for stored in (await service.store.load(incident_id)).events]


def _field(raw: bytes, name: str) -> object:
    return json.loads(raw)[name]


async def _cli(service: Service, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INCIDENTS_URL": service.http_url, "INCIDENTS_ACTOR": "alice@laptop"}
    env.pop("INCIDENTS_TOKEN", None)
    return await run_cli(env, *args)


async def test_http_commands_store_the_severity_an_alias_names(
    http: httpx.AsyncClient, service: Service
) -> None:
    declared = await http.post(
        "/v1/incidents", json={"title": "Checkout down", "severity": "SEV-1"}
    )
    assert declared.status_code == 201, declared.text
    incident_id = declared.json()["incident_id"]
    changed = await http.post(f"/v1/incidents/{incident_id}/severity", json={"to": "sev-3"})
    assert changed.status_code == 200, changed.text
    declaration, change = await _stored(service, incident_id)
    assert _field(declaration, "severity") == "P0"
    assert b"SEV-" not in declaration.upper() + change.upper()
    assert (_field(change, "from"), _field(change, "to")) == ("P0", "P2")
    seq = changed.json()["events"][0]["seq"]
    shown = await http.get(f"/v1/incidents/{incident_id}", params={"wait_for": seq})
    assert shown.json()["incident"]["severity"] == "P2"

    unknown = await http.post("/v1/incidents", json={"title": "x", "severity": "SEV-9"})
    assert unknown.status_code == 422
    assert unknown.json()["field"] == "severity"
    assert "SEV-1" in unknown.json()["detail"]
    assert await service.store.last_seq() == 2  # nothing appended for the refusal


async def test_mitigating_is_a_phase_not_a_status(
    http: httpx.AsyncClient, service: Service
) -> None:
    declared = await http.post("/v1/incidents", json={"title": "Slow search", "severity": "P2"})
    incident_id = declared.json()["incident_id"]
    refused = await http.post(f"/v1/incidents/{incident_id}/status", json={"status": "mitigating"})
    assert refused.status_code == 422
    body = refused.json()
    assert (body["error"], body["field"]) == ("invalid", "status")
    assert body["detail"].startswith("mitigating is a phase, not a status")
    assert f'POST /v1/incidents/{incident_id}/phase {{"phase": "mitigation"}}' in body["detail"]
    assert await service.store.last_seq() == 1
    # What the answer points to works.
    phase = await http.post(f"/v1/incidents/{incident_id}/phase", json={"phase": "mitigation"})
    assert phase.status_code == 200, phase.text
    other = await http.post(f"/v1/incidents/{incident_id}/status", json={"status": "bogus"})
    assert (other.status_code, other.json()["field"]) == (422, "status")

    line = one_line_error(await _cli(service, "status", incident_id, "Mitigating"), 2)
    assert "is a phase, not a status" in line and "--phase mitigation" in line


async def test_producer_events_are_stored_canonically_over_http_and_nats(
    http: httpx.AsyncClient, service: Service
) -> None:
    batch = [
        producer_event(
            "incident.declared", "INC-SEVA1", "sa-1", title="Probe down", severity="SEV-2"
        ),
        producer_event(
            "incident.severity_changed", "INC-SEVA1", "sa-2", **{"from": "SEV-2", "to": "p0"}
        ),
    ]
    answer = await http.post("/v1/events", json=batch)
    assert answer.status_code == 200, answer.text
    declaration, change = await _stored(service, "INC-SEVA1")
    assert _field(declaration, "severity") == "P1"
    assert (_field(change, "from"), _field(change, "to")) == ("P1", "P0")
    wrong = producer_event("incident.declared", "INC-SEVA2", "sa-3", title="x", category="SEV-1")
    refused = await http.post("/v1/events", json=wrong | {"severity": "SEV-3"})
    assert refused.status_code == 422
    assert refused.json()["field"] == "category"  # an alias only ever names a severity

    nc = await nats.connect(service.nats_url)
    try:
        event = producer_event(
            "incident.declared", "INC-SEVN1", "sn-1", title="Queue", severity="Sev-4"
        )
        reply = await nc.request("intake.events", msgspec.json.encode(event), timeout=5)
        assert msgspec.json.decode(reply.data)["events"][0]["seq"] > 0, reply.data
    finally:
        await nc.close()
    [stored] = await _stored(service, "INC-SEVN1")
    assert _field(stored, "severity") == "P3"


async def test_cli_takes_aliases_and_the_log_holds_the_severity(service: Service) -> None:
    done = await _cli(service, "declare", "Payments failing", "--severity", "SEV-1")
    assert done.returncode == 0, done.stderr
    incident_id = done.stdout.splitlines()[0].strip()
    changed = await _cli(service, "severity", incident_id, "sev-2", "--reason", "contained")
    assert changed.returncode == 0, changed.stderr
    declaration, change = await _stored(service, incident_id)
    assert _field(declaration, "severity") == "P0"
    assert _field(change, "to") == "P1"
    line = one_line_error(await _cli(service, "declare", "x", "--severity", "SEV-7"), 2)
    assert "severity" in line and "SEV-7" in line


async def test_alert_labels_may_say_sev(http: httpx.AsyncClient, service: Service) -> None:
    payload = json.loads(fixture_bytes("alertmanager_firing.json"))
    for alert in payload["alerts"]:
        alert["labels"]["priority"] = "SEV-1"
    answer = await http.post("/v1/webhooks/alertmanager", json=payload)
    assert answer.status_code == 200, answer.text
    incident_id = answer.json()["events"][0]["incident_id"]
    declaration = (await _stored(service, incident_id))[0]
    assert _field(declaration, "severity") == "P0"


@pytest.fixture
async def policed(nats_server: EmbeddedNatsServer, tmp_path: Path) -> AsyncIterator[Service]:
    """The service with a policy that moves SEV-1 and adds a word of its own."""
    policy = tmp_path / "policy.toml"
    policy.write_text('[severity_aliases]\nSEV-1 = "P1"\nCritical = "P0"\n')
    config = Config(
        nats_url=nats_server.url, data_dir=tmp_path / "var", http_port=0, policy_file=policy
    )
    async with running(config) as service:
        yield service


async def test_the_policy_decides_what_a_word_means(policed: Service) -> None:
    async with httpx.AsyncClient(base_url=policed.http_url, timeout=10) as http:
        one = await http.post("/v1/incidents", json={"title": "a", "severity": "SEV-1"})
        two = await http.post("/v1/incidents", json={"title": "b", "severity": "critical"})
        three = await http.post("/v1/incidents", json={"title": "c", "severity": "SEV-2"})
    severities = []
    for answer in (one, two, three):
        assert answer.status_code == 201, answer.text
        [raw] = await _stored(policed, answer.json()["incident_id"])
        severities.append(_field(raw, "severity"))
    assert severities == ["P1", "P0", "P1"]  # SEV-2 keeps its default
    event = producer_event("incident.declared", "INC-CRIT1", "c-1", title="d", severity="CRITICAL")
    nc = await nats.connect(policed.nats_url)
    try:
        await nc.request("intake.events", msgspec.json.encode(event), timeout=5)
    finally:
        await nc.close()
    [raw] = await _stored(policed, "INC-CRIT1")
    assert _field(raw, "severity") == "P0"
