"""Route guards: the bearer token's role must grant the route's permission."""

from collections.abc import Awaitable, Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler

from services.auth import Permission, Principal, Tokens, bearer

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


def requires(permission: Permission) -> Guard:
    # async: Litestar would run a sync guard in a worker thread, a hop per request.
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        tokens: Tokens = connection.app.state.tokens
        principal = tokens.authenticate(bearer(connection.headers.get("authorization")))
        if principal is None:
            raise NotAuthorizedException("a valid bearer token is required")
        if not principal.may(permission):
            raise PermissionDeniedException(f"role {principal.role} may not {permission.value}")
        connection.scope["state"]["principal"] = principal

    return guard


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    principal: Principal | None = connection.scope["state"].get("principal")
    return principal


def authenticated(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The principal a guarded route's guard found (every guarded request has one)."""
    principal = principal_of(connection)
    if principal is None:
        raise NotAuthorizedException("a valid bearer token is required")
    return principal


def actor_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The actor a person's command records unless its body claims another: the principal."""
    principal = principal_of(connection)
    return principal.name if principal else "anonymous"
