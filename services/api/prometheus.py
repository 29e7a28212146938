"""`GET /metrics`: the Prometheus text exposition of the process's metrics and of the incidents.

Open like `/healthz` (no token), so a Prometheus server scrapes it as any target. The incident
families (`services.telemetry.incident_families`) are read from this generation's read models
in a reader thread, never on the event loop.
"""

from typing import Final

from litestar import Response, get
from prometheus_client import CONTENT_TYPE_LATEST

from projections.gauges import incident_gauges
from services.api.state import AnyRequest, reader_of
from services.telemetry import exposition, incident_families


@get("/metrics", tags=["operations"])
async def metrics(request: AnyRequest) -> Response[bytes]:
    reader = reader_of(request)
    gauges = await reader.run(incident_gauges, reader.policy, reader.clock())
    body = exposition(incident_families(gauges))
    return Response(body, headers={"Content-Type": CONTENT_TYPE_LATEST})


ROUTES: Final = [metrics]
