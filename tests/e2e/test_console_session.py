"""The web console over real HTTP: sign-in, its session cookie, CSRF-checked forms, roles.

With tokens on, a browser nobody signed in is sent to the sign-in page (never a JSON 401); a
token signs in once and the session carries the principal. Forms are taken only with the
session's cookie and CSRF token; they send the same commands as the API, recorded with the
signed-in principal and source `web`. Without tokens the console works as `local`.
"""

import re
from urllib.parse import urlsplit

import httpx
from tests_support import TOKENS, as_role

from services.api.console.sessions import COOKIE
from services.auth import Role
from services.bootstrap import Service

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _csrf(html: str) -> str:
    found = CSRF.search(html)
    assert found, html[:2000]
    return found.group(1)


async def _declare(http: httpx.AsyncClient, title: str = "Checkout 5xx", **extra: object) -> str:
    responder = as_role(Role.RESPONDER)
    body = {"title": title, "severity": "P1", **extra}
    answer = await http.post("/v1/incidents", json=body, headers=responder)
    assert answer.status_code == 201, answer.text
    seq = answer.json()["events"][-1]["seq"]
    await http.get("/v1/incidents", params={"wait_for": seq}, headers=responder)
    incident_id: str = answer.json()["incident_id"]
    return incident_id


async def _sign_in(http: httpx.AsyncClient, role: Role, next_path: str = "/") -> httpx.Response:
    form = await http.get("/console/sign-in", params={"next": next_path})
    assert form.status_code == 200, form.text
    body = {"csrf": _csrf(form.text), "token": TOKENS[role], "next": next_path}
    return await http.post("/console/sign-in", data=body)


async def _timeline(http: httpx.AsyncClient, incident_id: str) -> list[dict[str, object]]:
    answer = await http.get(
        f"/v1/incidents/{incident_id}/timeline", headers=as_role(Role.RESPONDER)
    )
    events: list[dict[str, object]] = answer.json()["events"]
    return events


async def test_a_browser_nobody_signed_in_gets_the_sign_in_page(guarded: Service) -> None:
    async with httpx.AsyncClient(base_url=guarded.http_url, timeout=10) as http:
        incident_id = await _declare(http)
        for path in ["/", f"/incidents/{incident_id}", "/console/metrics"]:
            answer = await http.get(path)
            assert answer.status_code == 303, (path, answer.text)
            location = urlsplit(answer.headers["location"])
            assert location.path == "/console/sign-in", answer.headers["location"]
        page = await http.get("/console/sign-in", params={"next": f"/incidents/{incident_id}"})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<label for="token">Token</label>' in page.text
        assert f'name="next" value="/incidents/{incident_id}"' in page.text
        # Where to go after signing in is a path here, never another site.
        away = await http.get("/console/sign-in", params={"next": "//evil.example/x"})
        assert 'name="next" value="/"' in away.text


async def test_signing_in_sets_an_opaque_strict_httponly_session(guarded: Service) -> None:
    async with httpx.AsyncClient(base_url=guarded.http_url, timeout=10) as http:
        incident_id = await _declare(http)
        before = (await http.get("/console/sign-in")).cookies.get(COOKIE)
        signed_in = await _sign_in(http, Role.RESPONDER, f"/incidents/{incident_id}")
        assert signed_in.status_code == 303, signed_in.text
        assert signed_in.headers["location"] == f"/incidents/{incident_id}"
        set_cookie = signed_in.headers["set-cookie"]
        assert "HttpOnly" in set_cookie and "samesite=strict" in set_cookie.lower(), set_cookie
        session_id = http.cookies[COOKIE]
        assert session_id != before  # a new session, not the sign-in form's promoted
        assert TOKENS[Role.RESPONDER] not in set_cookie
        page = await http.get(f"/incidents/{incident_id}")
        assert page.status_code == 200
        assert "responder <span" in page.text and 'action="/console/sign-out"' in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
        assert f'action="/console/incidents/{incident_id}/ack"' in page.text


async def test_forms_need_the_session_and_its_csrf_token(guarded: Service) -> None:
    async with httpx.AsyncClient(base_url=guarded.http_url, timeout=10) as http:
        incident_id = await _declare(http)
        await _sign_in(http, Role.RESPONDER)
        csrf = _csrf((await http.get(f"/incidents/{incident_id}")).text)
        ack = f"/console/incidents/{incident_id}/ack"
        last = await guarded.store.last_seq()
        for body in [{}, {"csrf": "forged"}]:
            refused = await http.post(ack, data=body)
            assert refused.status_code == 403, refused.text
            assert "Nothing was done" in refused.text
        # JSON is not a form, and another site's page cannot send the cookie (SameSite).
        as_json = await http.post(ack, json={"csrf": csrf})
        assert as_json.status_code == 415, as_json.text
        async with httpx.AsyncClient(base_url=guarded.http_url) as stranger:
            cookieless = await stranger.post(ack, data={"csrf": csrf})
        assert cookieless.status_code == 303
        assert cookieless.headers["location"].startswith("/console/sign-in?next=/incidents/")
        assert await guarded.store.last_seq() == last

        done = await http.post(ack, data={"csrf": csrf})
        assert done.status_code == 303, done.text
        assert done.headers["location"].startswith(f"/incidents/{incident_id}?done=ack&wait_for=")
        page = await http.get(done.headers["location"])
        assert "Acknowledge: recorded." in page.text
        acked = [
            e for e in await _timeline(http, incident_id) if e["type"] == "incident.acknowledged"
        ]
        assert [(e["actor"], e["principal"], e["source"]) for e in acked] == [
            ("responder", "responder", "web")
        ]


async def test_signing_out_ends_the_session_on_the_server(guarded: Service) -> None:
    async with httpx.AsyncClient(base_url=guarded.http_url, timeout=10) as http:
        await _sign_in(http, Role.AUDITOR)
        session_id = http.cookies[COOKIE]
        csrf = _csrf((await http.get("/")).text)
        out = await http.post("/console/sign-out", data={"csrf": csrf})
        assert out.status_code == 303 and out.headers["location"] == "/console/sign-in"
        stolen = {COOKIE: session_id}
        async with httpx.AsyncClient(base_url=guarded.http_url, cookies=stolen) as thief:
            replayed = await thief.get("/")
        assert replayed.status_code == 303  # the old cookie signs nobody in


async def test_roles_decide_who_signs_in_and_which_buttons_show(guarded: Service) -> None:
    async with httpx.AsyncClient(base_url=guarded.http_url, timeout=10) as http:
        incident_id = await _declare(http)
        producer = await _sign_in(http, Role.PRODUCER)
        assert producer.status_code == 403
        assert "role producer cannot use the console" in producer.text
        wrong = await http.post(
            "/console/sign-in", data={"csrf": _csrf(producer.text), "token": "nope"}
        )
        assert wrong.status_code == 401 and "that token is not valid" in wrong.text

        assert (await _sign_in(http, Role.AUDITOR)).status_code == 303
        page = (await http.get(f"/incidents/{incident_id}")).text
        assert 'action="/console/incidents/' not in page
        assert "Read only: role auditor does not drive incidents." in page
        assert "Export evidence bundle" not in page
        last = await guarded.store.last_seq()
        forged = await http.post(
            f"/console/incidents/{incident_id}/ack", data={"csrf": _csrf(page)}
        )
        assert forged.status_code == 403 and "role auditor" in forged.text
        assert await guarded.store.last_seq() == last

        assert (await _sign_in(http, Role.ADMIN)).status_code == 303
        page = (await http.get(f"/incidents/{incident_id}")).text
        assert "Export evidence bundle" in page
        bundle = await http.get(f"/incidents/{incident_id}/export")
        assert bundle.status_code == 200 and bundle.headers["content-type"] == "application/gzip"


async def test_local_console_works_as_local_and_shows_errors_inline(
    http: httpx.AsyncClient, service: Service
) -> None:
    incident_id = await _declare(http)
    page = await http.get(f"/incidents/{incident_id}")
    assert page.status_code == 200 and COOKIE in page.cookies  # a session for its CSRF token
    assert 'action="/console/sign-out"' not in page.text  # nobody to sign out
    csrf = _csrf(page.text)
    on = f"/console/incidents/{incident_id}"

    last = await service.store.last_seq()
    refused = await http.post(f"{on}/escalate", data={"csrf": csrf, "level": "99", "to": "cto"})
    assert refused.status_code == 422, refused.text
    assert 'id="escalate-error"' in refused.text and "<code>level</code>" in refused.text
    assert '<details class="action" open>\n<summary>Escalate</summary>' in refused.text
    assert 'name="to" type="text" value="cto"' in refused.text  # filled in as sent
    assert await service.store.last_seq() == last

    sent = await http.post(
        f"{on}/comms",
        data={"csrf": csrf, "template": "update", "next_update_at": "30m", "var.eta": "1h"},
    )
    assert sent.status_code == 303, sent.text
    shown = (await http.get(sent.headers["location"])).text
    assert "📊 INCIDENT UPDATE: Checkout 5xx" in shown and "ETA: 1h" in shown
    comms = [e for e in await _timeline(http, incident_id) if e["type"] == "comms.sent"]
    assert len(comms) == 1
    body = comms[0]["body"]
    assert isinstance(body, dict)
    assert (body["template"], comms[0]["actor"], comms[0]["source"]) == ("update", "local", "web")

    late = await http.post(f"{on}/comms", data={"csrf": csrf, "template": "update"})
    assert late.status_code == 422 and "<code>next_update_at</code>" in late.text


async def test_board_filters(http: httpx.AsyncClient) -> None:
    major = await _declare(http, "Checkout 5xx", services=["checkout"])
    minor = await _declare(http, "Search slow", severity="P4", services=["search"])
    every = (await http.get("/")).text
    assert major in every and minor in every
    assert '<td data-label="Acked" class="warn">no</td>' in every  # unacknowledged: red
    by_severity = (await http.get("/", params={"severity": "P4"})).text
    assert minor in by_severity and major not in by_severity
    by_service = (await http.get("/", params={"service": "checkout"})).text
    assert major in by_service and minor not in by_service
    words = (await http.get("/", params={"severity": "SEV-1", "service": ""})).text
    assert major not in words  # SEV-1 is P0 by the default words
    typo = await http.get("/", params={"severity": "P9"})
    assert (
        typo.status_code == 200
        and "&#39;P9&#39; is not a severity (P0..P4): filter ignored" in typo.text
    )
    assert major in typo.text and minor in typo.text
