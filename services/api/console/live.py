"""Live pages: the projector's progress, which the console's script follows.

`GET /console/progress` answers the read models' checkpoint (the stream sequence they hold).
A page notes the checkpoint it was rendered at; the script asks this every few seconds and,
once it moved, fetches the page again and swaps in its live parts. Pages work without it:
the board then reloads itself, the incident page shows what was true when it was loaded.
"""

from typing import Final

from litestar import get

from services.api.console.access import viewer
from services.api.state import AnyRequest, reader_of


@get("/console/progress", include_in_schema=False)
async def progress(request: AnyRequest) -> dict[str, int]:
    viewer(request, start=False)
    return {"checkpoint": reader_of(request).projector.checkpoint}


ROUTES: Final = [progress]
