"""The request class of the app: Litestar's, with JSON bodies checked for UTF-8 first.

Routes typed `JSONBody[...]` (commands, the SQL query, replay) are decoded by Litestar through
`Request.json()`, where msgspec raised a bare `UnicodeDecodeError` on bytes that are not UTF-8:
a 500 with no field. Here such a body is refused with 400 naming the field that holds them.
Routes that read the raw body (events, webhooks) check it in their own decoders, which the NATS
intake shares.
"""

from typing import Any

from litestar import Request

from services.formats import utf8


class JsonRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        utf8.require(await self.body())
        return await super().json()
