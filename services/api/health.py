"""Health for supervisors: `/healthz` (the process answers), `/readyz` (the log answers, and
how far the read models are behind it)."""

from typing import Any, Final

from litestar import Response, get

from events.store import StoreUnavailableError
from services.api.state import AnyRequest, reader_of, store_of


@get("/healthz", tags=["operations"])
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", tags=["operations"])
async def readyz(request: AnyRequest) -> Response[dict[str, Any]]:
    """Ready when NATS is connected; reports the projector's lag behind the log."""
    reader = reader_of(request)
    store = store_of(request)
    try:
        first_seq, last_seq = await store.bounds()
        _, oldest_at = await store.first_retained()
    except StoreUnavailableError as exc:
        return Response({"ready": False, "reason": str(exc)}, status_code=503)
    projector = reader.projector
    lag = max(last_seq - projector.checkpoint, 0)
    return Response(
        {
            "ready": True,
            "stream": {"first_seq": first_seq, "last_seq": last_seq},
            "projector": {"checkpoint": projector.checkpoint, "lag": lag},
            "retention": {
                "first_retained_seq": projector.first_retained,
                "oldest_record_at": oldest_at,
                "prune_pending": first_seq > projector.first_retained,
                "expired_events": projector.expired,
            },
        }
    )


ROUTES: Final = [healthz, readyz]
