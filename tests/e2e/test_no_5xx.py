"""Bad input never gets a 5xx: every POST route of the OpenAPI document, fed garbage."""

import httpx

from services.bootstrap import Service

GARBAGE = [
    b"",
    b"null",
    b"[]",
    b"{}",
    b'"text"',
    b"42",
    b'{"unknown": 1}',
    b"\xff\xfe\x00",
    b"[" * 2000 + b"]" * 2000,
    b'{"title": null, "severity": [], "occurred_at": "yesterday"}',
    b'[{"type": "incident.declared"}]',
]


async def test_every_post_route_answers_bad_input_with_4xx(
    http: httpx.AsyncClient, service: Service
) -> None:
    spec = (await http.get("/schema/openapi.json")).json()
    routes = [
        path.replace("{incident_id}", "INC-FUZZ0001")
        for path, operations in spec["paths"].items()
        if "post" in operations
    ]
    assert len(routes) > 20
    for path in routes:
        for body in GARBAGE:
            if path == "/v1/admin/replay" and body in (b"", b"null", b"{}"):
                continue  # no body is a valid replay request (it would start one)
            answer = await http.post(
                path, content=body, headers={"content-type": "application/json"}
            )
            assert 400 <= answer.status_code < 500, (
                path,
                body[:40],
                answer.status_code,
                answer.text,
            )
            assert answer.json(), (path, body[:40])
    assert await service.store.last_seq() == 0
