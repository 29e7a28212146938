"""With tokens on, the embedded nats-server lets only the service near the log (DESIGN 10).

A real nats-server started by the service: anonymous clients are refused; a producer with the
credentials `incidents token producer NAME --nats` printed may request on its own intake
subjects and get its replies, and nothing else: not the stream's subjects, not `$JS.API`, not
another producer's subjects, not the service's inboxes. Without tokens the server stays open
on loopback.
"""

import asyncio
import os
import re
import socket
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import nats.errors
import pytest
from nats.aio.client import Client as NATS
from tests_support import TOKENS, as_role, fixture_bytes, run_cli

from services.auth import Role, digest, new_token, token_entry
from services.bootstrap import running
from services.config import Config

CREDENTIALS_FILE = "nats-credentials.toml"  # in the data dir, mode 0600

EVENT: dict[str, object] = {
    "type": "incident.declared",
    "event_id": "nats-auth-1",
    "incident_id": "INC-NATSAU1",
    "occurred_at": "2026-11-20T10:00:00Z",
    "actor": "probe",
    "source": "synthetic",
    "title": "probe",
    "severity": "P4",
}


def host_port(url: str) -> str:
    return url.removeprefix("nats://")


async def issue(data_dir: Path, name: str) -> tuple[str, str]:
    """`incidents token producer NAME --nats`: (NATS password, tokens-file entry)."""
    env = {**os.environ, "INCIDENTS_DATA_DIR": str(data_dir)}
    done = await run_cli(env, "token", "producer", name, "--nats")
    assert done.returncode == 0, done.stderr
    found = re.search(r"^nats password: (\S+)$", done.stdout, re.MULTILINE)
    assert found, done.stdout
    assert f"intake.{name}.events" in done.stdout
    assert f"nats inbox prefix: _INBOX_{name}" in done.stdout
    entry = done.stdout[done.stdout.index("[[token]]") :]
    assert "nats = true" in entry
    return found.group(1), entry


def refused(where: str, user: str | None = None, password: str = "") -> str:
    """What the server answers a CONNECT (raw protocol: nats-py leaks the socket of a refused
    connection)."""
    host, port = where.rsplit(":", 1)
    connect: dict[str, object] = {"verbose": False, "pedantic": False}
    if user is not None:
        connect |= {"user": user, "pass": password}
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        stream = sock.makefile("rb")
        assert stream.readline().startswith(b"INFO ")
        sock.sendall(b"CONNECT " + msgspec.json.encode(connect) + b"\r\nPING\r\n")
        return stream.readline().decode().strip()


async def test_with_tokens_anonymous_clients_are_refused(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens.toml"
    tokens_file.write_text("".join(token_entry(r.value, r, t) for r, t in TOKENS.items()))
    config = Config(data_dir=tmp_path / "var", http_port=0, tokens_file=tokens_file)
    async with running(config) as service:
        where = host_port(service.nats_url)
        assert refused(where) == "-ERR 'Authorization Violation'"
        assert refused(where, "producer", TOKENS[Role.PRODUCER]) == (
            "-ERR 'Authorization Violation'"
        )
        async with httpx.AsyncClient(base_url=service.http_url, timeout=10) as http:
            answer = await http.post("/v1/events", json=EVENT, headers=as_role(Role.PRODUCER))
            assert answer.status_code == 200, answer.text


async def test_with_tokens_only_the_service_reaches_the_log(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    password, entry = await issue(data_dir, "alertmanager")
    # A producer token without `nats = true` gets no NATS user, whatever it tries.
    plain = new_token()
    tokens_file = tmp_path / "tokens.toml"
    tokens_file.write_text(
        entry
        + token_entry("plain", Role.PRODUCER, plain)
        + "".join(token_entry(r.value, r, t) for r, t in TOKENS.items())
    )
    config = Config(data_dir=data_dir, http_port=0, tokens_file=tokens_file)

    async with running(config) as service:
        where = host_port(service.nats_url)
        assert refused(where) == "-ERR 'Authorization Violation'"
        assert refused(where, "alertmanager", "nope") == "-ERR 'Authorization Violation'"
        from services.natsauth import ServiceCredentials

        derived = ServiceCredentials.load_or_create(data_dir).producer_password(
            "plain", digest(plain)
        )
        assert refused(where, "plain", derived) == "-ERR 'Authorization Violation'"
        assert refused(where, "alertmanager", password) == "PONG"

        errors: list[str] = []

        async def remember(exc: Exception) -> None:
            errors.append(str(exc))

        producer = await nats.connect(
            f"nats://alertmanager:{password}@{where}",
            error_cb=remember,
            allow_reconnect=False,
            inbox_prefix="_INBOX_alertmanager",  # the only inboxes it may subscribe to
        )
        try:
            await _producer_is_served(producer)
            before = await service.store.last_seq()
            await _producer_is_refused_the_rest(producer)
        finally:
            await producer.close()
        for subject in (
            "incidents.inc-forged1.incident.declared",
            "intake.events",
            "intake.someone-else.events",
            "$js.api.stream.update.incidents",
            "$js.api.stream.delete.incidents",
            "$js.api.stream.purge.incidents",
        ):
            assert any(f'publish to "{subject}"' in e.lower() for e in errors), (subject, errors)
        for subject in ("incidents.>", "_incidents_inbox.>", "_inbox.>"):
            assert any(f'subscription to "{subject}"' in e.lower() for e in errors), errors

        # Nothing reached the log, and its retention promise stands.
        assert await service.store.last_seq() == before
        info = await service.nc.jetstream().stream_info(config.stream)
        assert info.config.max_age == config.retention_s
        # The service itself works.
        async with httpx.AsyncClient(base_url=service.http_url, timeout=10) as http:
            answer = await http.post(
                "/v1/incidents",
                json={"title": "after", "severity": "P3"},
                headers=as_role(Role.RESPONDER),
            )
            assert answer.status_code == 201, answer.text

    assert (data_dir / CREDENTIALS_FILE).stat().st_mode & 0o777 == 0o600
    assert (data_dir / "nats" / "nats-server.conf").stat().st_mode & 0o777 == 0o600


async def _producer_is_served(producer: NATS) -> None:
    reply = await producer.request(
        "intake.alertmanager.events", msgspec.json.encode(EVENT), timeout=5
    )
    answer: dict[str, Any] = msgspec.json.decode(reply.data)
    assert answer["events"][0]["event_id"] == "nats-auth-1", answer
    alerts = await producer.request(
        "intake.alertmanager.alertmanager", fixture_bytes("alertmanager_firing.json"), timeout=5
    )
    types = [e["type"] for e in msgspec.json.decode(alerts.data)["events"]]
    assert [t for t in types if t != "evidence.attached"] == [
        "incident.declared",
        "alert.fired",
        "alert.fired",
    ]


async def _producer_is_refused_the_rest(producer: NATS) -> None:
    forged = {**EVENT, "event_id": "forged", "incident_id": "INC-FORGED1"}
    await producer.publish("incidents.INC-FORGED1.incident.declared", msgspec.json.encode(forged))
    for subject in ("intake.events", "intake.someone-else.events"):
        with pytest.raises(nats.errors.TimeoutError):
            await producer.request(subject, msgspec.json.encode(forged), timeout=0.5)
    shorter = msgspec.json.encode({"name": "INCIDENTS", "subjects": ["x.>"], "max_age": 10**9})
    for api in ("UPDATE", "DELETE", "PURGE"):
        with pytest.raises(nats.errors.TimeoutError):
            await producer.request(f"$JS.API.STREAM.{api}.INCIDENTS", shorter, timeout=0.5)
    await producer.subscribe("incidents.>")
    await producer.subscribe("_INCIDENTS_INBOX.>")
    await producer.subscribe("_INBOX.>")  # other clients' replies (JetStream deliveries too)
    await producer.flush()
    await asyncio.sleep(0.3)  # the server's -ERR for each arrives asynchronously


async def test_a_producer_name_must_be_a_subject_token(tmp_path: Path) -> None:
    env = {**os.environ, "INCIDENTS_DATA_DIR": str(tmp_path / "var")}
    for role, name in (("producer", "alert.manager"), ("producer", "incidents"), ("admin", "a")):
        done = await run_cli(env, "token", role, name, "--nats")
        assert done.returncode == 2, done.stdout
        assert done.stderr.startswith("error: ")
    assert not (tmp_path / "var" / CREDENTIALS_FILE).exists()


async def test_without_tokens_the_embedded_server_is_open_on_loopback(tmp_path: Path) -> None:
    config = Config(data_dir=tmp_path / "var", http_port=0)
    async with running(config) as service:
        assert service.nats_url.startswith("nats://127.0.0.1:")
        nc = await nats.connect(service.nats_url)
        try:
            shared = await nc.request("intake.events", msgspec.json.encode(EVENT), timeout=5)
            assert msgspec.json.decode(shared.data)["events"][0]["seq"] >= 1
            named = {**EVENT, "event_id": "nats-auth-2", "incident_id": "INC-NATSAU2"}
            own = await nc.request("intake.local.events", msgspec.json.encode(named), timeout=5)
            assert msgspec.json.decode(own.data)["events"][0]["event_id"] == "nats-auth-2"
        finally:
            await nc.close()
    assert not (tmp_path / "var" / CREDENTIALS_FILE).exists()
    assert "authorization" not in (tmp_path / "var" / "nats" / "nats-server.conf").read_text()
