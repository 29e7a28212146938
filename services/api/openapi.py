"""The OpenAPI document as the service really answers, and its docs page, served offline.

Litestar derives the document from the routes' signatures. What those cannot show is added
here, in one place, from facts about each route, since app.py's error handlers and origin.py's
checks apply to every route alike:
- the body of every refusal, `{"error", "field", "detail"}` (`Error`), under the statuses a
  route can give: 421 any route (Host); 401 and 403 a guarded one; 400, 403 (Origin), 413, 415
  and 422 a state-changing one, and 409 when it writes; 400 and 422 one with parameters; 404
  one under an incident's path or that appends events; 503 with Retry-After any `/v1` route
  and any state-changing one;
- a body the route may go without (`data` has a default: `POST .../ack`) is not `required`;
- the request body of a route that reads its body raw (events, webhooks: they validate it
  themselves): the route names the type in its `opt` (`opt=request_body(T)`);
- answers a route gives in a shape of its own (PagerDuty's) it declares with Litestar's
  `responses=`, and those are kept as they are (one that declares its own 400 gives no 422).

The page is Swagger UI from files vendored under `static/swagger-ui/`, served at
`/schema/static/`, so `/schema` renders without internet.
"""

import copy
from pathlib import Path
from typing import Any, Final

import msgspec
from litestar import Litestar, Request
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.router import Router
from litestar.routes import HTTPRoute
from litestar.static_files import create_static_files_router

from services.api.origin import STATE_CHANGING

TITLE: Final = "incident-timeline"
VERSION: Final = "1"
SCHEMA_PATH: Final = "/schema"
ASSETS: Final = Path(__file__).parent / "static" / "swagger-ui"
ASSETS_URL: Final = f"{SCHEMA_PATH}/static"
REQUEST_BODY: Final = "openapi_request_body"
_REF: Final = "#/components/schemas/{name}"
_BEARER: Final = "bearer"
_CACHE: Final = "openapi_document"

# Each refusal status: its name under components/responses, and why it is answered (the
# kind is `Error.error`).
_REFUSALS: Final[dict[int, tuple[str, str]]] = {
    400: ("Malformed", "`malformed`: not JSON, not UTF-8, or not of the expected shape"),
    401: (
        "Unauthorized",
        "`unauthorized`: a valid bearer token is required (with INCIDENTS_TOKENS_FILE)",
    ),
    403: (
        "Forbidden",
        "`forbidden`: the token's role may not do this, or a request that changes state came "
        "from another origin (`field`: `Origin`)",
    ),
    404: ("NotFound", "`not_found`: no such incident"),
    409: (
        "Conflict",
        "`conflict`: refused by the incident's lifecycle (the reason is in `detail`), an event "
        "id already used by another incident, or a damaged log",
    ),
    413: (
        "TooLarge",
        "`too_large`: a body over 1 MiB, an event over 64 KiB or a batch over 1,000 events",
    ),
    415: (
        "UnsupportedMediaType",
        "`unsupported_media_type`: a body not sent as `application/json` (`field`: `Content-Type`)",
    ),
    421: (
        "Misdirected",
        "`misdirected`: the Host is not a name this service answers for "
        "(INCIDENTS_ALLOWED_HOSTS; `field`: `Host`)",
    ),
    422: ("Invalid", "`invalid`: well-formed, but the field named in `field` is wrong"),
    503: (
        "Unavailable",
        "`unavailable`: the log (NATS JetStream) or the read models do not answer; retry "
        "after `Retry-After` seconds",
    ),
}


class Error(msgspec.Struct):
    """Every refusal of the API: `error` the kind (`malformed`, `unauthorized`, `forbidden`,
    `not_found`, `conflict`, `too_large`, `unsupported_media_type`, `misdirected`, `invalid`,
    `unavailable`), `field` the culprit when known (a body path like `alerts[0].status`, a
    parameter, or a header), `detail` the reason for people."""

    error: str
    field: str | None
    detail: str


def request_body(body_type: Any) -> dict[str, Any]:
    """The `opt` of a route that reads its JSON body raw: `body_type` documents it."""
    return {REQUEST_BODY: body_type}


def _statuses(
    handler: HTTPRouteHandler, method: str, path: str, operation: dict[str, Any]
) -> set[int]:
    found = {421}
    if handler.resolve_guards():
        found |= {401, 403}
    writes = method in STATE_CHANGING
    if writes:
        found |= {400, 403, 413, 415, 422}
        if "reads" not in (handler.resolve_tags() or ()):
            found.add(409)
    if operation.get("parameters"):
        found |= {400, 422}
    if "{incident_id}" in path or (writes and path == "/v1/events"):
        found.add(404)
    if writes or path.startswith("/v1/"):
        found.add(503)
    return found


def _refusals(error: dict[str, Any]) -> dict[str, Any]:
    """The refusals as reusable responses (components/responses), each with the `Error` body."""
    responses: dict[str, Any] = {}
    for status, (name, why) in _REFUSALS.items():
        answer: dict[str, Any] = {
            "description": why,
            "content": {"application/json": {"schema": error}},
        }
        if status == 503:
            seconds = {"type": "integer", "minimum": 0}
            answer["headers"] = {"Retry-After": {"description": "seconds", "schema": seconds}}
        responses[name] = answer
    return responses


def _merge(schemas: dict[str, Any], added: dict[str, Any]) -> None:
    """Add msgspec's component schemas to Litestar's; a name both have must be one type (the
    same enum values), else the document would lie: refuse it, for a developer to rename."""
    for name, schema in added.items():
        existing = schemas.get(name)
        if existing is None:
            schemas[name] = schema
        elif set(existing.get("enum", ())) != set(schema.get("enum", ())) or (
            "enum" not in schema and existing != schema
        ):
            raise ValueError(f"OpenAPI component {name!r}: two different types share the name")


def _operations(app: Litestar) -> list[tuple[HTTPRouteHandler, str, str]]:
    """(handler, method, path as the document spells it) of every documented operation."""
    found: list[tuple[HTTPRouteHandler, str, str]] = []
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for method, (handler, _) in route.route_handler_map.items():
                if handler.resolve_include_in_schema():
                    found.append((handler, method.upper(), route.path_format or "/"))
    return found


def amended(app: Litestar, document: dict[str, Any]) -> dict[str, Any]:
    """`document` (Litestar's) with what the routes do not say themselves (module doc)."""
    cached = app.state.get(_CACHE)
    if cached is not None and cached[0] is document:
        return cached[1]  # type: ignore[no-any-return]
    result = copy.deepcopy(document)
    operations = _operations(app)
    bodies = [h.opt[REQUEST_BODY] for h, _, _ in operations if REQUEST_BODY in h.opt]
    (error, *body_schemas), added = msgspec.json.schema_components(
        [Error, *bodies], ref_template=_REF
    )
    components = result.setdefault("components", {})
    _merge(components.setdefault("schemas", {}), added)
    components["responses"] = _refusals(error)
    components["securitySchemes"] = {_BEARER: {"type": "http", "scheme": "bearer"}}
    body_of = dict(zip(map(id, bodies), body_schemas, strict=True))
    for handler, method, path in operations:
        operation = result["paths"][path][method.lower()]
        if REQUEST_BODY in handler.opt:
            schema = body_of[id(handler.opt[REQUEST_BODY])]
            content = {"application/json": {"schema": schema}}
            operation["requestBody"] = {"required": True, "content": content}
        data = handler.parsed_fn_signature.parameters.get("data")
        if "requestBody" in operation and data is not None and data.has_default:
            operation["requestBody"]["required"] = False  # `POST .../ack` without a body
        if handler.resolve_guards():
            operation["security"] = [{_BEARER: []}]
        responses = operation.setdefault("responses", {})
        declared = {str(status) for status in handler.responses or {}}
        statuses = _statuses(handler, method, path, operation)
        if "400" in declared:
            statuses.discard(422)  # a route that refuses bad bodies its own way (PagerDuty's)
        for status in statuses:
            if str(status) not in declared:
                name = _REFUSALS[status][0]
                responses[str(status)] = {"$ref": f"#/components/responses/{name}"}
        operation["responses"] = dict(sorted(responses.items()))
    app.state[_CACHE] = (document, result)
    return result


class _Json(JsonRenderPlugin):
    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, amended(request.app, openapi_schema))


class _Swagger(SwaggerRenderPlugin):
    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, amended(request.app, openapi_schema))


def config() -> OpenAPIConfig:
    """`/schema`: Swagger UI from the vendored files; `/schema/openapi.json`: the document."""
    swagger = _Swagger(
        js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        css_url=f"{ASSETS_URL}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS_URL}/swagger-ui-standalone-preset.js",
        favicon=f'<link rel="icon" type="image/png" href="{ASSETS_URL}/favicon-32x32.png">',
    )
    return OpenAPIConfig(
        title=TITLE, version=VERSION, path=SCHEMA_PATH, render_plugins=[swagger, _Json()]
    )


def assets() -> Router:
    """The vendored Swagger UI files, at `/schema/static/`."""
    return create_static_files_router(
        path=ASSETS_URL, directories=[ASSETS], name="swagger-ui", include_in_schema=False
    )
