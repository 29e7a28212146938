"""Requests a browser could send for a web page a responder opens (issue 11, point 6).

JSON routes take only `application/json` (415 otherwise): a page can send text/plain, forms and
multipart cross-site without a preflight. A state-changing request from another Origin is 403.
A Host that is not the service's own (a DNS name rebound to 127.0.0.1) is 421. The CLI and the
web page, which send JSON and stay on their origin, work as before.
"""

import os
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from tests_support import as_role, run_cli

from services.auth import Role
from services.bootstrap import Service, running
from services.config import Config
from services.natsserver import EmbeddedNatsServer

DECLARE = b'{"title": "Checkout 5xx", "severity": "P1"}'


def _authority(service: Service) -> str:
    return urlsplit(service.http_url).netloc


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", None],
)
async def test_json_routes_refuse_other_media_types_with_415(
    http: httpx.AsyncClient, service: Service, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    for path in ["/v1/incidents", "/v1/events", "/v1/webhooks/alertmanager", "/v1/query"]:
        answer = await http.post(path, content=DECLARE, headers=headers)
        assert answer.status_code == 415, (path, answer.text)
        assert answer.json()["error"] == "unsupported_media_type"
        assert answer.json()["field"] == "Content-Type"
    assert await service.store.last_seq() == 0


async def test_forms_and_multipart_are_415(http: httpx.AsyncClient, service: Service) -> None:
    form = await http.post("/v1/incidents", data={"title": "x", "severity": "P1"})
    assert form.status_code == 415, form.text
    multipart = await http.post(
        "/v1/incidents", files={"title": ("t.txt", b"x")}, data={"severity": "P1"}
    )
    assert multipart.status_code == 415, multipart.text
    empty_form = await http.post(
        "/v1/admin/replay", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert empty_form.status_code == 415, empty_form.text
    assert (await http.get("/v1/admin/replay")).json()["state"] == "idle"
    assert await service.store.last_seq() == 0


async def test_json_with_a_charset_and_bodiless_commands_are_taken(
    http: httpx.AsyncClient,
) -> None:
    declared = await http.post(
        "/v1/incidents",
        content=DECLARE,
        headers={"content-type": "Application/JSON; charset=utf-8"},
    )
    assert declared.status_code == 201, declared.text
    incident_id = declared.json()["incident_id"]
    ack = await http.post(f"/v1/incidents/{incident_id}/ack")  # no body, no type: fine
    assert ack.status_code == 200, ack.text


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "null", "http://localhost:1", "https://127.0.0.1"]
)
async def test_a_state_changing_request_from_another_origin_is_403(
    http: httpx.AsyncClient, service: Service, origin: str
) -> None:
    declared = await http.post("/v1/incidents", json={"title": "Checkout 5xx", "severity": "P1"})
    incident_id = declared.json()["incident_id"]
    last = await service.store.last_seq()
    for path, body in [(f"/v1/incidents/{incident_id}/ack", None), ("/v1/incidents", DECLARE)]:
        headers = {"origin": origin, "content-type": "application/json"}
        answer = await http.post(path, content=body, headers=headers)
        assert answer.status_code == 403, (origin, path, answer.text)
        assert answer.json()["field"] == "Origin"
    assert await service.store.last_seq() == last


async def test_a_request_from_the_service_own_origin_is_taken(
    http: httpx.AsyncClient, service: Service
) -> None:
    answer = await http.post(
        "/v1/incidents",
        content=DECLARE,
        headers={"origin": service.http_url, "content-type": "application/json"},
    )
    assert answer.status_code == 201, answer.text


@pytest.mark.parametrize("path", ["/", "/v1/incidents", "/healthz", "/schema/openapi.json"])
async def test_a_host_that_is_not_the_service_own_is_421(
    http: httpx.AsyncClient, service: Service, path: str
) -> None:
    port = urlsplit(service.http_url).port
    for host in ["evil.example", f"evil.example:{port}", "127.0.0.1.nip.io"]:
        answer = await http.get(path, headers={"host": host})
        assert answer.status_code == 421, (host, path, answer.text)
        assert answer.json()["field"] == "Host"
    posted = await http.post(
        "/v1/incidents", content=DECLARE, headers={"host": "evil.example", **_json()}
    )
    assert posted.status_code == 421
    assert await service.store.last_seq() == 0


def _json() -> dict[str, str]:
    return {"content-type": "application/json"}


async def test_loopback_names_and_the_bound_address_are_the_service_own(
    http: httpx.AsyncClient, service: Service
) -> None:
    port = urlsplit(service.http_url).port
    for host in [_authority(service), f"localhost:{port}", "LOCALHOST", f"[::1]:{port}"]:
        answer = await http.get("/v1/incidents", headers={"host": host})
        assert answer.status_code == 200, (host, answer.text)


async def test_the_cli_and_the_web_page_still_work(
    http: httpx.AsyncClient, service: Service
) -> None:
    env = {**os.environ, "INCIDENTS_URL": service.http_url, "INCIDENTS_ACTOR": "alice"}
    env.pop("INCIDENTS_TOKEN", None)
    declared = await run_cli(env, "declare", "Checkout 5xx", "--severity", "P1")
    assert declared.returncode == 0, declared.stderr
    incident_id = declared.stdout.splitlines()[0].strip()
    for verb in (["ack", incident_id], ["note", incident_id, "looking"]):
        done = await run_cli(env, *verb)
        assert done.returncode == 0, (verb, done.stderr)
    queried = await run_cli(env, "query", "SELECT count(*) AS n FROM incidents", "--json")
    assert queried.returncode == 0, queried.stderr
    assert (await http.get("/")).status_code == 200
    page = await http.get(f"/incidents/{incident_id}")
    assert page.status_code == 200 and incident_id in page.text


@pytest.fixture
async def named(nats_server: EmbeddedNatsServer, tmp_path: Path) -> AsyncIterator[Service]:
    """The service told it is also `incidents.internal` (INCIDENTS_ALLOWED_HOSTS)."""
    names = Config.from_env({"INCIDENTS_ALLOWED_HOSTS": "incidents.internal, Ops.Example."})
    config = Config(
        nats_url=nats_server.url,
        data_dir=tmp_path / "var",
        http_port=0,
        allowed_hosts=names.allowed_hosts,
    )
    async with running(config) as service:
        yield service


async def test_allowed_hosts_adds_names(named: Service) -> None:
    async with httpx.AsyncClient(base_url=named.http_url, timeout=10) as http:
        for host in ["incidents.internal", "incidents.internal:8080", "ops.example"]:
            answer = await http.get("/v1/incidents", headers={"host": host})
            assert answer.status_code == 200, (host, answer.text)
        assert (await http.get("/", headers={"host": "evil.example"})).status_code == 421
        same = await http.post(
            "/v1/incidents",
            content=DECLARE,
            headers={
                "host": "incidents.internal:8080",
                "origin": "http://incidents.internal:8080",
                **_json(),
            },
        )
        assert same.status_code == 201, same.text


async def test_with_tokens_the_host_is_free_but_the_origin_is_not(guarded: Service) -> None:
    async with httpx.AsyncClient(base_url=guarded.http_url, timeout=10) as http:
        health = await http.get("/healthz", headers={"host": "incidents.internal:8080"})
        assert health.status_code == 200, health.text
        headers = {**as_role(Role.RESPONDER), "origin": "http://evil.example", **_json()}
        answer = await http.post("/v1/incidents", content=DECLARE, headers=headers)
        assert answer.status_code == 403, answer.text
        assert answer.json()["field"] == "Origin"
        plain = {**as_role(Role.RESPONDER), "content-type": "text/plain"}
        assert (await http.post("/v1/incidents", content=DECLARE, headers=plain)).status_code == 415
