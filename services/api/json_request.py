"""The request class of the app: Litestar's, with JSON bodies checked for UTF-8 and decoded
strictly against the route's body type.

Routes typed `JSONBody[...]` (commands, the SQL query, replay) are decoded by Litestar through
`Request.json()`, where msgspec raised a bare `UnicodeDecodeError` on bytes that are not UTF-8:
a 500 with no field. Here such a body is refused with 400 naming the field that holds them.
Litestar then converts the JSON to the body type in msgspec's lax mode, which took `0` for
`false`, `"12"` for `12` and a bare number for a time: not what the OpenAPI document promises.
So a body only lax mode accepts is refused here (422 naming the field), as the routes that
read the raw body (events, webhooks) and the NATS intake refuse it in their own decoders.
"""

from typing import Any

import msgspec
from litestar import Request

from services.errors import ErrorKind, ServiceError, located
from services.formats import utf8


class JsonRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        utf8.require(await self.body())
        document = await super().json()
        body = self.route_handler.parsed_fn_signature.parameters.get("data")
        if body is not None:
            try:
                msgspec.convert(document, body.annotation)
            except msgspec.ValidationError as exc:
                if not _lax_accepts(document, body.annotation):
                    return document  # Litestar refuses it, naming the field as it always has
                field, reason = located(str(exc))
                raise ServiceError(ErrorKind.INVALID, reason, field) from exc
        return document


def _lax_accepts(document: Any, body_type: Any) -> bool:
    try:
        msgspec.convert(document, body_type, strict=False, str_keys=True)
    except msgspec.ValidationError:
        return False
    return True
