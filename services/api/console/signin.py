"""Signing in to the console with an API token, and out again.

The token is checked once, here, and never kept: the session remembers the principal it
names. A producer token is refused (producers append events; they do not read or drive
incidents). Signing in starts a new session (a session id known before signing in is never
promoted), signing out ends it on the server.
"""

from typing import Annotated, Any, Final

from litestar import get, post
from litestar.params import QueryParameter
from litestar.response import Redirect, Template

from services.api.console.access import (
    CSRF_FIELD,
    SECURITY_HEADERS,
    SIGN_IN,
    ended_cookie,
    local_path,
    posted_form,
    session_cookie,
    session_id_of,
    sessions_of,
    tokens_of,
)
from services.api.state import AnyRequest
from services.auth import Permission

_REFUSED_ROLE: Final = (
    "role {role} cannot use the console: producers append events and alerts; "
    "sign in with a responder, auditor or admin token"
)


def _form(
    request: AnyRequest, next_path: str, error: str | None = None, status_code: int = 200
) -> Template:
    """The sign-in form, in this browser's session (one is started for it if needed)."""
    sessions = sessions_of(request)
    session = sessions.get(session_id_of(request))
    cookies = []
    if session is None:
        session_id, session = sessions.start(None)
        cookies.append(session_cookie(request, session_id))
    context: dict[str, Any] = {
        "csrf": session.csrf,
        "next": local_path(next_path),
        "error": error,
        "signed_in": session.principal,
    }
    return Template(
        template_name="signin.html",
        context=context,
        status_code=status_code,
        cookies=cookies,
        headers=SECURITY_HEADERS,
    )


@get(SIGN_IN, include_in_schema=False)
async def sign_in_form(
    request: AnyRequest, next_: Annotated[str | None, QueryParameter(name="next")] = None
) -> Template | Redirect:
    if not tokens_of(request).enabled:
        return Redirect(local_path(next_), status_code=303)
    return _form(request, next_ or "/")


@post(SIGN_IN, include_in_schema=False, status_code=303)
async def sign_in(request: AnyRequest) -> Template | Redirect:
    form = await request.form()
    next_path = local_path(str(form.get("next") or "/"))
    tokens = tokens_of(request)
    if not tokens.enabled:
        return Redirect(next_path, status_code=303)
    sessions = sessions_of(request)
    old_id = session_id_of(request)
    session = sessions.get(old_id)
    if session is None or not session.csrf_matches(str(form.get(CSRF_FIELD) or "")):
        detail = "this sign-in form had expired: it is fresh now, try again"
        return _form(request, next_path, detail, 403)
    principal = tokens.authenticate(str(form.get("token") or "").strip())
    if principal is None:
        return _form(request, next_path, "that token is not valid", 401)
    if not principal.may(Permission.READ):
        return _form(request, next_path, _REFUSED_ROLE.format(role=principal.role.value), 403)
    sessions.end(old_id)
    session_id, _ = sessions.start(principal)
    return Redirect(next_path, status_code=303, cookies=[session_cookie(request, session_id)])


@post("/console/sign-out", include_in_schema=False, status_code=303)
async def sign_out(request: AnyRequest) -> Redirect:
    await posted_form(request)
    sessions_of(request).end(session_id_of(request))
    after = SIGN_IN if tokens_of(request).enabled else "/"
    return Redirect(after, status_code=303, cookies=[ended_cookie(request)])


ROUTES: Final = [sign_in_form, sign_in, sign_out]
