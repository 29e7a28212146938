"""As-of reconstruction: the read models as they stood at an instant, folded from the log itself.

The events recorded at or before the instant go through the projector into a throw-away
in-memory DuckDB, and the usual queries answer with `now` = that instant. So an incident "as of
T" is exactly what the live projection showed once it had those events, breaches included.
"""

from collections.abc import Iterable
from datetime import datetime

import duckdb

from events.records import Stored
from projections.database import open_database
from projections.projector import Projector


def reconstruct(events: Iterable[Stored], as_of: datetime) -> duckdb.DuckDBPyConnection:
    """Read models of the events recorded at or before `as_of` (log order kept)."""
    known = [s for s in events if (s.event.recorded_at or s.event.occurred_at) <= as_of]
    con = open_database(":memory:")
    projector = Projector(con, None)
    if known:
        projector.apply(known, known[-1].seq)
    return con
