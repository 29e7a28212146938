"""Who is looking at a console page, and whether a form they posted is theirs.

A page is seen by:
- the principal of a bearer token, when the request carries one (scripts, curl): read only,
  as there is no session to carry a CSRF token;
- the principal of the browser's console session (signed in with a token);
- without tokens (`INCIDENTS_TOKENS_FILE` unset), `local`: every browser gets a session of its
  own on its first page, only for the CSRF token its forms carry.
Anyone else is sent to the sign-in page (`SignInRequired`), never answered a JSON 401.

A form is taken only with the session cookie (SameSite=Strict: a page of another site cannot
send it) and the session's CSRF token in its `csrf` field (`StaleForm` otherwise).
"""

from typing import Any, Final
from urllib.parse import quote

import msgspec
from litestar.datastructures import Cookie
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.response import Template

from services.api.console.sessions import COOKIE, Session, Sessions
from services.api.state import AnyRequest
from services.auth import LOCAL, Permission, Principal, Tokens, bearer

SIGN_IN: Final = "/console/sign-in"
CSRF_FIELD: Final = "csrf"
# The console's own pages load only their own script and styles, and are never framed.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


class SignInRequired(Exception):
    """Nobody is signed in: the browser goes to the sign-in page, then back to `next_path`."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class StaleForm(Exception):
    """A form posted without this browser's session or with another CSRF token: refused."""


class Viewer(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal
    tokens_on: bool
    session: Session | None = None  # None: a bearer token, no forms
    new_session_id: str | None = None  # set the cookie: the session was started just now

    @property
    def csrf(self) -> str | None:
        return self.session.csrf if self.session is not None else None

    def may(self, permission: Permission) -> bool:
        return self.principal.may(permission)

    @property
    def may_command(self) -> bool:
        """Command forms are shown (and taken) only in a session of a role that commands."""
        return self.session is not None and self.may(Permission.COMMAND)


def tokens_of(request: AnyRequest) -> Tokens:
    tokens: Tokens = request.app.state.tokens
    return tokens


def sessions_of(request: AnyRequest) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


def session_id_of(request: AnyRequest) -> str | None:
    return request.cookies.get(COOKIE)


def here(request: AnyRequest) -> str:
    """The path and query of this request: where to come back after signing in."""
    query = request.scope.get("query_string", b"").decode("latin-1")
    return request.url.path + (f"?{query}" if query else "")


def local_path(candidate: str | None, default: str = "/") -> str:
    """`candidate` if it is a path on this service (never `//host` or a URL), else `default`."""
    if not candidate or not candidate.startswith("/") or candidate.startswith(("//", "/\\")):
        return default
    return candidate


def sign_in_url(next_path: str) -> str:
    return f"{SIGN_IN}?next={quote(local_path(next_path), safe='/')}"


def viewer(request: AnyRequest, start: bool = True) -> Viewer:
    """The principal a console page is shown to; `SignInRequired` when there is none.
    `start`: without tokens, give a browser with no session one (pages with forms do)."""
    tokens = tokens_of(request)
    authorization = request.headers.get("authorization")
    if authorization is not None:
        principal = tokens.authenticate(bearer(authorization))
        if principal is None:
            raise NotAuthorizedException("a valid bearer token is required")
        if not principal.may(Permission.READ):
            # Sign-in refuses such a role a session; a bearer token must not get around that.
            raise PermissionDeniedException(
                f"the role {principal.role.value} does not read incidents"
            )
        return Viewer(principal=principal, tokens_on=tokens.enabled)
    sessions = sessions_of(request)
    session = sessions.get(session_id_of(request))
    if session is not None and session.principal is not None:
        return Viewer(principal=session.principal, tokens_on=tokens.enabled, session=session)
    if tokens.enabled:
        raise SignInRequired(here(request))
    if not start:
        return Viewer(principal=LOCAL, tokens_on=False)
    session_id, session = sessions.start(LOCAL)
    return Viewer(principal=LOCAL, tokens_on=False, session=session, new_session_id=session_id)


async def posted_form(request: AnyRequest, back: str = "/") -> tuple[Viewer, dict[str, str]]:
    """The viewer who posted a console form and its fields (the CSRF token checked and left
    out); `StaleForm` without the session or its token, `SignInRequired` (then `back`) once
    the session ended."""
    form = await request.form()
    fields = {key: str(value) for key, value in form.items() if isinstance(value, str)}
    given = fields.pop(CSRF_FIELD, None)
    tokens = tokens_of(request)
    session = sessions_of(request).get(session_id_of(request))
    if session is None:
        if tokens.enabled:
            raise SignInRequired(back)
        raise StaleForm()
    if not session.csrf_matches(given):
        raise StaleForm()
    if session.principal is None:
        raise SignInRequired(back)
    return Viewer(principal=session.principal, tokens_on=tokens.enabled, session=session), fields


def session_cookie(request: AnyRequest, session_id: str) -> Cookie:
    return Cookie(
        key=COOKIE,
        value=session_id,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def ended_cookie(request: AnyRequest) -> Cookie:
    return Cookie(
        key=COOKIE,
        value="",
        path="/",
        max_age=0,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def page(
    request: AnyRequest,
    seen_by: Viewer,
    template_name: str,
    context: dict[str, Any],
    status_code: int = 200,
) -> Template:
    """A console page: the viewer in its context, a fresh session's cookie, the headers."""
    cookies = [session_cookie(request, seen_by.new_session_id)] if seen_by.new_session_id else []
    return Template(
        template_name=template_name,
        context={"viewer": seen_by, **context},
        status_code=status_code,
        cookies=cookies,
        headers=SECURITY_HEADERS,
    )
