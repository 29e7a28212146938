"""`GET /v1/changes`: change records (deploys, config pushes: PagerDuty change events).

They are stored outside any incident by `POST /v2/change/enqueue` (`services.api.intake`) and
read from the `changes` table (`projections.changes`); an incident's timeline shows those of
the hour before its detection (`changes_before_detection`).
"""

from typing import Any, Final

from litestar import get
from litestar.params import FromQuery

from projections import changes
from services.api.guards import requires
from services.api.state import AnyRequest, QueryFrom, QueryTime, query_time, reader_of
from services.auth import Permission
from services.errors import ErrorKind, ServiceError


@get("/v1/changes", guards=[requires(Permission.READ)], tags=["reads"])
async def list_changes(
    request: AnyRequest,
    from_: QueryFrom = None,
    to: QueryTime = None,
    limit: FromQuery[int] = 1000,
) -> dict[str, Any]:
    """Changes that happened between `from` and `to` (RFC 3339 with an offset; either open),
    oldest first; at most `limit` (default 1,000; more than 10,000 gives 10,000)."""
    if limit < 1:
        raise ServiceError(ErrorKind.INVALID, "must be at least 1", "limit")
    since, until = query_time(from_, "from"), query_time(to, "to")
    reader = reader_of(request)
    rows = await reader.run(changes.between, since, until, limit)
    return {"changes": rows, "through_seq": reader.projector.changes_seq}


ROUTES: Final = [list_changes]
