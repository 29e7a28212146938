"""`GET /metrics`: the Prometheus text exposition of the process's metrics and of the incidents.

Open like `/healthz` (no token), so a Prometheus server scrapes it as any target. The incident
families (`services.telemetry.incident_families`) are read from this generation's read models
in a reader thread, never on the event loop.
"""

from typing import Final

from litestar import get
from prometheus_client import CONTENT_TYPE_LATEST

from projections.gauges import incident_gauges
from services.api.state import AnyRequest, reader_of
from services.telemetry import exposition, incident_families

# Declared on the route, not set per answer, so the OpenAPI document says text/plain too;
# without the charset, which Litestar appends to text types itself.
MEDIA_TYPE: Final = CONTENT_TYPE_LATEST.replace("; charset=utf-8", "")


@get("/metrics", tags=["operations"], media_type=MEDIA_TYPE)
async def metrics(request: AnyRequest) -> bytes:
    reader = reader_of(request)
    gauges = await reader.run(incident_gauges, reader.policy, reader.clock())
    return exposition(incident_families(gauges))


ROUTES: Final = [metrics]
