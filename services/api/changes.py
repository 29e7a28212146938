"""`GET /v1/changes`: change records (deploys, config pushes: PagerDuty change events).

They are stored outside any incident by `POST /v2/change/enqueue` (`services.api.intake`) and
read from the `changes` table (`projections.changes`); an incident's timeline shows those of
the hour before its detection (`changes_before_detection`).
"""

from datetime import datetime
from typing import Annotated, Any, Final

from litestar import get
from litestar.params import FromQuery, QueryParameter

from projections import changes
from services.api.guards import requires
from services.api.state import AnyRequest, reader_of
from services.auth import Permission
from services.clock import to_utc
from services.errors import ErrorKind, ServiceError
from services.formats.instants import OUT_OF_RANGE


def _utc(moment: datetime | None, field: str) -> datetime | None:
    """A time from the query string, in UTC; without an offset it is refused, naming `field`."""
    if moment is None:
        return None
    try:
        return to_utc(moment)
    except ValueError as exc:
        raise ServiceError(ErrorKind.INVALID, str(exc), field) from exc
    except OverflowError as exc:
        raise ServiceError(ErrorKind.INVALID, OUT_OF_RANGE, field) from exc


@get("/v1/changes", guards=[requires(Permission.READ)], tags=["reads"])
async def list_changes(
    request: AnyRequest,
    from_: Annotated[datetime | None, QueryParameter(name="from")] = None,
    to: FromQuery[datetime | None] = None,
    limit: FromQuery[int] = 1000,
) -> dict[str, Any]:
    """Changes that happened between `from` and `to` (RFC 3339 with an offset; either open),
    oldest first; at most `limit` (default 1,000; more than 10,000 gives 10,000)."""
    if limit < 1:
        raise ServiceError(ErrorKind.INVALID, "must be at least 1", "limit")
    since, until = _utc(from_, "from"), _utc(to, "to")
    reader = reader_of(request)
    rows = await reader.run(changes.between, since, until, limit)
    return {"changes": rows, "through_seq": reader.projector.changes_seq}


ROUTES: Final = [list_changes]
