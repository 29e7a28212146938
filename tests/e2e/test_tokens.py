"""Tokens with roles over real HTTP: 401 without or with a bad token, 403 for the wrong role.

Every route by every role: tests/faults/test_permissions.py; here, writes that succeed."""

from pathlib import Path

import httpx
import pytest
from tests_support import TOKENS, fixture_bytes

from services.auth import Role
from services.bootstrap import Service, running
from services.config import Config, ConfigError
from services.natsserver import EmbeddedNatsServer

DECLARE: dict[str, object] = {"title": "Token test", "severity": "P3"}
EVENT: dict[str, object] = {
    "type": "incident.declared",
    "event_id": "tok-1",
    "incident_id": "INC-TOKEN1",
    "occurred_at": "2026-11-20T10:00:00Z",
    "actor": "probe",
    "source": "synthetic",
    "title": "probe",
    "severity": "P4",
}
ROUTES: list[tuple[str, dict[str, object] | bytes, set[Role]]] = [
    ("/v1/events", EVENT, {Role.PRODUCER, Role.ADMIN}),
    (
        "/v1/webhooks/alertmanager",
        fixture_bytes("alertmanager_firing.json"),
        {Role.PRODUCER, Role.ADMIN},
    ),
    ("/v1/incidents", DECLARE, {Role.RESPONDER, Role.ADMIN}),
]


@pytest.mark.parametrize(("path", "body", "allowed"), ROUTES, ids=[r[0] for r in ROUTES])
async def test_role_matrix(
    guarded: Service, path: str, body: dict[str, object] | bytes, allowed: set[Role]
) -> None:
    async with httpx.AsyncClient(base_url=guarded.http_url) as http:
        send = {"content": body} if isinstance(body, bytes) else {"json": body}
        json_type = {"content-type": "application/json"}
        anonymous = await http.post(path, headers=json_type, **send)
        assert anonymous.status_code == 401
        assert anonymous.json()["error"] == "unauthorized"
        forged = await http.post(
            path, headers={"Authorization": "Bearer nope", **json_type}, **send
        )
        assert forged.status_code == 401
        for role, token in TOKENS.items():
            bearer = {"Authorization": f"Bearer {token}", **json_type}
            answer = await http.post(path, headers=bearer, **send)
            if role in allowed:
                assert answer.status_code in (200, 201), (role, answer.text)
            else:
                assert answer.status_code == 403, (role, answer.text)
                assert answer.json()["error"] == "forbidden"
                assert role.value in answer.json()["detail"]


async def test_pagerduty_routing_key_is_a_producer_token(guarded: Service) -> None:
    trigger = fixture_bytes("pagerduty_trigger.json").replace(
        b"R0UT1NGKEY0123456789ABCDEFGHIJKL", TOKENS[Role.PRODUCER].encode()
    )
    async with httpx.AsyncClient(
        base_url=guarded.http_url, headers={"content-type": "application/json"}
    ) as http:
        assert (await http.post("/v2/enqueue", content=trigger)).status_code == 202
        wrong = trigger.replace(TOKENS[Role.PRODUCER].encode(), TOKENS[Role.AUDITOR].encode())
        assert (await http.post("/v2/enqueue", content=wrong)).status_code == 403
        stranger = fixture_bytes("pagerduty_trigger.json")
        # An unknown routing key is PagerDuty's 400 (an invalid event), not 401.
        assert (await http.post("/v2/enqueue", content=stranger)).status_code == 400


async def test_without_tokens_only_loopback(
    nats_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    config = Config(nats_url=nats_server.url, data_dir=tmp_path, http_host="0.0.0.0", http_port=0)
    with pytest.raises(ConfigError, match="loopback"):
        async with running(config):
            pass


def test_token_verb_prints_a_token_its_entry_authenticates(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from services.auth import Tokens
    from services.cli.main import app

    result = CliRunner().invoke(app, ["token", "auditor", "compliance-team"])
    assert result.exit_code == 0
    token = result.stdout.split("token: ")[1].split()[0]
    entry = result.stdout[result.stdout.index("[[token]]") :]
    (tmp_path / "tokens.toml").write_text(entry)
    principal = Tokens.load(tmp_path / "tokens.toml").authenticate(token)
    assert principal is not None and principal.name == "compliance-team"
    assert principal.role is Role.AUDITOR
    assert token not in entry
