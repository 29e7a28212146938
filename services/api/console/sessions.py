"""Console sessions: an opaque id in an HttpOnly, SameSite=Strict cookie, the rest in memory.

The cookie holds a random id and nothing else: no token, no name, no role. The server keeps,
per session, who signed in (a `Principal`, or nobody yet: the sign-in form's own session)
and the CSRF token every form of that session carries. Sessions end on sign-out, after
`IDLE_S` without a request, and `LIFETIME_S` after sign-in, whichever comes first; a restart
ends them all (people sign in again). They live in this process: behind several API replicas,
route each browser to one replica (sticky sessions).

Ids are stored hashed, so a dump of this table signs nobody in.
"""

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

import msgspec

from services.auth import Principal

COOKIE: Final = "incidents_session"
IDLE_S: Final = 8 * 3600.0
LIFETIME_S: Final = 12 * 3600.0  # a long shift
# Without tokens every browser gets a session (for its CSRF token): bound the table.
MAX_SESSIONS: Final = 10_000


class Session(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal | None  # None: not signed in yet (the sign-in form's session)
    csrf: str
    started: float
    seen: float

    def csrf_matches(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(self.csrf.encode(), given.encode())


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class Sessions:
    """The live sessions of this process, least recently used first."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._by_key: OrderedDict[str, Session] = OrderedDict()

    def start(self, principal: Principal | None) -> tuple[str, Session]:
        """A new session; returns its id (for the cookie only) and the session."""
        now = self._clock()
        session_id = secrets.token_urlsafe(32)
        session = Session(
            principal=principal, csrf=secrets.token_urlsafe(32), started=now, seen=now
        )
        self._by_key[_key(session_id)] = session
        while len(self._by_key) > MAX_SESSIONS:
            self._by_key.popitem(last=False)
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of `session_id` (its idle clock restarts), or None."""
        if not session_id:
            return None
        key = _key(session_id)
        session = self._by_key.get(key)
        if session is None:
            return None
        now = self._clock()
        if now - session.seen > IDLE_S or now - session.started > LIFETIME_S:
            del self._by_key[key]
            return None
        session = msgspec.structs.replace(session, seen=now)
        self._by_key[key] = session
        self._by_key.move_to_end(key)
        return session

    def end(self, session_id: str | None) -> None:
        if session_id:
            self._by_key.pop(_key(session_id), None)

    def __len__(self) -> int:
        return len(self._by_key)
