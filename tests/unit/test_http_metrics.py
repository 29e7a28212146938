"""HTTP metrics by method, route template and status, through a real Litestar app."""

from litestar import Litestar, get
from litestar.params import FromPath
from litestar.testing import TestClient
from prometheus_client import REGISTRY

from services.api.http_metrics import APP_NAME, HttpMetrics


@get("/probe/items/{item:int}")
async def item(item: FromPath[int]) -> dict[str, int]:
    if item == 0:
        raise RuntimeError("a bug")
    return {"item": item}


def _sample(name: str, status: int) -> float:
    labels = {"method": "GET", "path": "/probe/items/{item}", "app_name": APP_NAME}
    value = REGISTRY.get_sample_value(name, labels | {"status_code": str(status)})
    return value or 0.0


def test_counted_per_route_template_and_status() -> None:
    before_ok = _sample("incidents_requests_total", 200)
    before_failed = _sample("incidents_requests_total", 500)
    before_errors = _sample("incidents_requests_error_total", 500)
    before_timed = _sample("incidents_request_duration_seconds_count", 200)
    app = Litestar([item], middleware=[HttpMetrics()])
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/probe/items/1").status_code == 200
        assert client.get("/probe/items/2").status_code == 200
        assert client.get("/probe/items/0").status_code == 500
    assert _sample("incidents_requests_total", 200) == before_ok + 2  # one template, two paths
    assert _sample("incidents_request_duration_seconds_count", 200) == before_timed + 2
    assert _sample("incidents_requests_total", 500) == before_failed + 1
    assert _sample("incidents_requests_error_total", 500) == before_errors + 1
    in_progress = REGISTRY.get_sample_value(
        "incidents_requests_in_progress",
        {"method": "GET", "path": "/probe/items/{item}", "app_name": APP_NAME},
    )
    assert in_progress == 0
