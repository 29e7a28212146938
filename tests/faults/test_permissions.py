"""Security regressions (issue 16, item 7): who may call each route and reach each NATS subject.

Two tables written by hand from the README's contract ("Tokens", "Web console", "NATS"):
`ROUTES`, one line per method and path the app serves, and `SUBJECTS`, one line per subject
the service listens on or writes to. A route or a subject the code gains without a line here
fails, naming it, and so does a line for one no longer there. Then every line is tried for
real: every route by each role, without a token and with a bad one, on one in-process service
with a tokens file; every subject by a producer and by the service, on a nats-server with the
users of deploy/nats/nats.conf and on one with the users `incidents serve` generates.
"""

import asyncio
import enum
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple, cast
from urllib.parse import quote

import httpx
import msgspec
import nats
import nats.errors
import pytest
from deploy_support import NATS_CONF, PASSWORDS, deploy_users_server
from faststream.nats.subscriber.usecases.basic import LogicSubscriber
from litestar import Litestar
from litestar.routes import HTTPRoute
from nats.aio.client import DEFAULT_INBOX_PREFIX
from tests_support import TOKENS

from events.stream import StreamSettings, event_ids_config, stream_config
from services.api.console.access import SIGN_IN
from services.api.console.sessions import COOKIE
from services.auth import Role, Tokens, digest, new_token, token_entry
from services.bootstrap import Service, running
from services.clock import utc_now
from services.config import Config
from services.docs import routes_only
from services.nats_intake import create_broker
from services.natsauth import (
    SERVICE_INBOX,
    ServiceCredentials,
    answerable,
    embedded_auth,
    producer_inbox,
)
from services.natsserver import EmbeddedNatsServer, NatsAuth, NatsUser
from services.natsurl import target
from services.write.intake import Intake

# ---------------------------------------------------------------------------------------------
# Routes


class Auth(enum.Enum):
    """How a route is reached, hence how it refuses."""

    PUBLIC = "anyone, no credentials"
    BEARER = "a bearer token: JSON 401 without a valid one, 403 for another role"
    PAGERDUTY = "a routing key or a bearer token, refused in PagerDuty's words"
    PAGE = "a console session or a bearer token; nobody signed in: to the sign-in page"
    FORM = "a console session and its CSRF token; nobody signed in: to the sign-in page"
    SIGN_IN = "the token typed into the sign-in form"


class Rule(NamedTuple):
    auth: Auth
    roles: frozenset[Role]


def rule(auth: Auth, *roles: Role) -> Rule:
    return Rule(auth, frozenset(roles))


PRODUCER, RESPONDER, AUDITOR, ADMIN = Role.PRODUCER, Role.RESPONDER, Role.AUDITOR, Role.ADMIN
# README "Tokens": producer appends; responder commands and reads; auditor reads and queries;
# admin everything. "Web console": producers are refused, exports are the admin's.
PUBLIC: Final = rule(Auth.PUBLIC, *Role)
APPEND: Final = rule(Auth.BEARER, PRODUCER, ADMIN)
COMMAND: Final = rule(Auth.BEARER, RESPONDER, ADMIN)
READ: Final = rule(Auth.BEARER, RESPONDER, AUDITOR, ADMIN)
QUERY: Final = rule(Auth.BEARER, AUDITOR, ADMIN)
ADMINISTER: Final = rule(Auth.BEARER, ADMIN)
PAGERDUTY: Final = rule(Auth.PAGERDUTY, PRODUCER, ADMIN)
PAGE: Final = rule(Auth.PAGE, RESPONDER, AUDITOR, ADMIN)
INCIDENT: Final = "/v1/incidents/{incident_id:str}"

ROUTES: Final[dict[tuple[str, str], Rule]] = {
    # Producers and monitors.
    ("POST", "/v1/events"): APPEND,
    ("POST", "/v1/webhooks/alertmanager"): APPEND,
    ("POST", "/v1/webhooks/pagerduty"): PAGERDUTY,
    ("POST", "/v2/enqueue"): PAGERDUTY,
    ("POST", "/v1/webhooks/pagerduty/v2/enqueue"): PAGERDUTY,
    ("POST", "/v2/change/enqueue"): PAGERDUTY,
    ("POST", "/v1/webhooks/pagerduty/v2/change/enqueue"): PAGERDUTY,
    # People's commands.
    ("POST", "/v1/incidents"): COMMAND,
    ("POST", f"{INCIDENT}/ack"): COMMAND,
    ("POST", f"{INCIDENT}/severity"): COMMAND,
    ("POST", f"{INCIDENT}/impact"): COMMAND,
    ("POST", f"{INCIDENT}/status"): COMMAND,
    ("POST", f"{INCIDENT}/phase"): COMMAND,
    ("POST", f"{INCIDENT}/roles"): COMMAND,
    ("POST", f"{INCIDENT}/roles/release"): COMMAND,
    ("POST", f"{INCIDENT}/escalations"): COMMAND,
    ("POST", f"{INCIDENT}/mitigations"): COMMAND,
    ("POST", f"{INCIDENT}/mitigations/complete"): COMMAND,
    ("POST", f"{INCIDENT}/notes"): COMMAND,
    ("POST", f"{INCIDENT}/evidence"): COMMAND,
    ("POST", f"{INCIDENT}/resolve"): COMMAND,
    ("POST", f"{INCIDENT}/reopen"): COMMAND,
    ("POST", f"{INCIDENT}/close"): COMMAND,
    ("POST", f"{INCIDENT}/postmortem"): COMMAND,
    ("POST", f"{INCIDENT}/postmortem/review"): COMMAND,
    ("POST", f"{INCIDENT}/action-items"): COMMAND,
    ("POST", f"{INCIDENT}/action-items/start"): COMMAND,
    ("POST", f"{INCIDENT}/action-items/complete"): COMMAND,
    ("POST", f"{INCIDENT}/corrections"): COMMAND,
    ("POST", f"{INCIDENT}/retractions"): COMMAND,
    ("POST", f"{INCIDENT}/comms"): COMMAND,
    # Reads ("read permission", the comms preview included: it stores nothing).
    ("POST", f"{INCIDENT}/comms/preview"): READ,
    ("GET", "/v1/templates"): READ,
    ("GET", "/v1/incidents"): READ,
    ("GET", INCIDENT): READ,
    ("GET", f"{INCIDENT}/timeline"): READ,
    ("GET", f"{INCIDENT}/postmortem"): READ,
    ("GET", "/v1/action-items"): READ,
    ("GET", "/v1/changes"): READ,
    ("GET", "/v1/metrics/mttr"): READ,
    ("GET", "/v1/breaches"): READ,
    ("GET", "/v1/audit"): READ,
    ("POST", "/v1/query"): QUERY,
    # Administration.
    ("POST", "/v1/admin/replay"): ADMINISTER,
    ("GET", "/v1/admin/replay"): ADMINISTER,
    ("GET", f"{INCIDENT}/export"): ADMINISTER,
    ("GET", "/v1/verify"): ADMINISTER,
    # Operations and documents: no token (README "Tokens").
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/v1/metrics/definitions"): PUBLIC,
    ("GET", "/schema"): PUBLIC,
    ("GET", "/schema/swagger"): PUBLIC,
    ("GET", "/schema/openapi.json"): PUBLIC,
    ("GET", "/schema/{path:str}"): PUBLIC,
    ("GET", "/schema/oauth2-redirect.html"): PUBLIC,
    ("GET", "/schema/static/{file_path:path}"): PUBLIC,
    ("HEAD", "/schema/static/{file_path:path}"): PUBLIC,
    # The web console ("Web console").
    ("GET", "/"): PAGE,
    ("GET", "/incidents/{incident_id:str}"): PAGE,
    ("GET", "/incidents/{incident_id:str}/postmortem"): PAGE,
    ("GET", "/incidents/{incident_id:str}/export"): rule(Auth.PAGE, ADMIN),
    ("GET", "/console/metrics"): PAGE,
    ("GET", "/console/progress"): PAGE,
    ("POST", "/console/incidents/{incident_id:str}/{action:str}"): rule(
        Auth.FORM, RESPONDER, ADMIN
    ),
    ("POST", "/console/sign-out"): rule(Auth.FORM, RESPONDER, AUDITOR, ADMIN),
    ("GET", "/console/sign-in"): PUBLIC,
    ("POST", "/console/sign-in"): rule(Auth.SIGN_IN, RESPONDER, AUDITOR, ADMIN),
    ("GET", "/console/static/{file_path:path}"): PUBLIC,
    ("HEAD", "/console/static/{file_path:path}"): PUBLIC,
}
Caller = Role | Literal["no token", "bad token"]
CALLERS: Final[tuple[Caller, ...]] = ("no token", "bad token", *Role)
# What a path parameter is replaced with in a request (`incident_id`: one the test declares):
# a form the console has, files that do not exist. Any answer but a refusal is fine.
PATH_VALUES: Final = {
    "action": "ack",
    "file_path": "nothing-here.css",
    "path": "nothing-here",
}
BAD_TOKEN: Final = "0" * 32


def _generated_options(handler: Any) -> bool:
    """Litestar's own OPTIONS answer (204 and `Allow`, for CORS preflights): the same for
    every route, it reveals only the route's methods. An OPTIONS handler of ours needs a line."""
    fn = handler.fn
    return bool(fn.__module__ == "litestar.routes.http" and fn.__name__ == "options_handler")


def served_routes(app: Litestar) -> set[tuple[str, str]]:
    served = set()
    for route in app.routes:
        assert isinstance(route, HTTPRoute), f"{route.path}: not an HTTP route, add a rule"
        for method, (handler, _) in route.route_handler_map.items():
            if method == "OPTIONS" and _generated_options(handler):
                continue
            served.add((str(method), route.path))
    return served


def test_every_served_route_has_a_rule() -> None:
    served = served_routes(routes_only())
    added = sorted(served - ROUTES.keys())
    gone = sorted(ROUTES.keys() - served)
    problems = [f"route {m} {p} added without a rule: add it to the matrix" for m, p in added]
    problems += [f"route {m} {p} is in the matrix but no longer served" for m, p in gone]
    assert not problems, "\n".join(problems)


def concrete(path: str, incident_id: str) -> str:
    values = {**PATH_VALUES, "incident_id": incident_id}
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda found: values[found[1]], path)


def bearer_header(caller: Caller) -> dict[str, str]:
    if caller == "no token":
        return {}
    token = BAD_TOKEN if caller == "bad token" else TOKENS[caller]
    return {"Authorization": f"Bearer {token}"}


def token_of(caller: Caller) -> str:
    if caller == "no token":
        return ""
    return BAD_TOKEN if caller == "bad token" else TOKENS[caller]


CSRF: Final = re.compile(r'name="csrf" value="([^"]+)"')


async def sign_in_form(http: httpx.AsyncClient) -> str:
    """A fresh sign-in form's CSRF token (its session cookie is now in `http`)."""
    form = await http.get(SIGN_IN)
    found = CSRF.search(form.text)
    assert form.status_code == 200 and found, form.text[:500]
    return found[1]


async def call(
    http: httpx.AsyncClient, method: str, url: str, auth: Auth, caller: Caller
) -> httpx.Response:
    """One request to `url` by `caller`, carrying its credentials the way `auth` takes them."""
    http.cookies.clear()  # each request in a browser of its own
    if auth is Auth.SIGN_IN:
        csrf = await sign_in_form(http)
        form = {"csrf": csrf, "token": token_of(caller), "next": "/"}
        return await http.post(url, data=form)
    if auth is Auth.FORM:
        return await post_form(http, url, caller)
    if method == "POST":
        return await http.post(url, json={}, headers=bearer_header(caller))
    return await http.request(method, url, headers=bearer_header(caller))


async def post_form(http: httpx.AsyncClient, url: str, caller: Caller) -> httpx.Response:
    """A console form as `caller` posts it: in a session signed in with its token (a producer
    cannot sign in, so it sends its token as a bearer instead), or in a forged session."""
    if caller == "bad token":
        http.cookies.set(COOKIE, BAD_TOKEN)
        return await http.post(url, data={"csrf": BAD_TOKEN})
    if caller == "no token":
        return await http.post(url, data={})
    if caller is PRODUCER:
        return await http.post(url, data={}, headers=bearer_header(caller))
    csrf = await sign_in_form(http)
    signed_in = await http.post(SIGN_IN, data={"csrf": csrf, "token": token_of(caller)})
    assert signed_in.status_code == 303, signed_in.text[:500]
    board = await http.get("/")  # signing in started a new session, with its own CSRF token
    found = CSRF.search(board.text)
    assert found, board.text[:500]
    return await http.post(url, data={"csrf": found[1]})


def _sent_to_sign_in(answer: httpx.Response) -> bool:
    """The console's refusal of nobody: to the sign-in page, and back here afterwards."""
    location = answer.headers.get("location", "")
    return answer.status_code == 303 and location.startswith(f"{SIGN_IN}?next=")


def _json(answer: httpx.Response) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def refusal_problem(auth: Auth, caller: Caller, answer: httpx.Response) -> str | None:
    """Why `answer` is not the refusal `auth` owes `caller`, or None."""
    status, body = answer.status_code, _json(answer)
    anonymous = caller in ("no token", "bad token")
    if auth is Auth.BEARER:
        kind = "unauthorized" if anonymous else "forbidden"
        wanted = 401 if anonymous else 403
        # A wrong role is told which role it has (README "Tokens", errors).
        named = anonymous or caller in str(body.get("detail"))
        ok = status == wanted and body.get("error") == kind and "detail" in body and named
        return None if ok else f"wanted {wanted} {{'error': {kind!r}, 'detail': ...}}"
    if auth is Auth.PAGERDUTY:  # PagerDuty's Events API answers
        wanted, kind = {
            "no token": (400, "invalid event"),  # no routing key in the event
            "bad token": (401, "unauthorized"),
        }.get(str(caller), (403, "forbidden"))
        ok = status == wanted and body.get("status") == kind
        return None if ok else f"wanted {wanted} {{'status': {kind!r}, ...}}"
    if auth is Auth.PAGE:
        if caller == "no token":
            return None if _sent_to_sign_in(answer) else "wanted 303 to the sign-in page"
        if caller == "bad token":
            ok = status == 401 and body.get("error") == "unauthorized"
            return None if ok else "wanted 401 {'error': 'unauthorized', ...}"
        return None if status == 403 else "wanted 403 (the 'Not allowed' page)"
    if auth is Auth.FORM:
        if anonymous or caller is PRODUCER:
            return None if _sent_to_sign_in(answer) else "wanted 303 to the sign-in page"
        return None if status == 403 else "wanted 403"
    if auth is Auth.SIGN_IN:
        wanted = 401 if anonymous else 403
        return None if status == wanted else f"wanted {wanted} (the form, with the reason)"
    return "a public route refuses nobody"


def served_problem(auth: Auth, answer: httpx.Response) -> str | None:
    if answer.status_code in (401, 403):
        return "refused"
    if auth in (Auth.PAGE, Auth.FORM) and _sent_to_sign_in(answer):
        return "sent to the sign-in page"
    return None


def verdict(rule_: Rule, caller: Caller, answer: httpx.Response) -> str | None:
    """What is wrong with `answer` to `caller` under `rule_`, or None."""
    auth, roles = rule_
    if auth is Auth.PUBLIC or caller in roles:
        problem = served_problem(auth, answer)
        return None if problem is None else f"allowed by the matrix, but {problem}"
    problem = refusal_problem(auth, caller, answer)
    return None if problem is None else f"refused by the matrix: {problem}"


async def declared(http: httpx.AsyncClient) -> str:
    """An incident, so that routes about one reach their role checks and beyond."""
    answer = await http.post(
        "/v1/incidents",
        json={"title": "Permissions", "severity": "P3"},
        headers=bearer_header(RESPONDER),
    )
    assert answer.status_code == 201, answer.text
    incident_id: str = answer.json()["incident_id"]
    return incident_id


async def test_every_route_refuses_whom_its_rule_refuses(guarded: Service) -> None:
    """Every line by every caller: a role the line names is served (any status but a refusal:
    an empty body may well be 404 or 422), anyone else refused as the line's way says."""
    problems, tried = [], 0
    # One client for all: making one costs more than a request (its TLS context).
    async with httpx.AsyncClient(base_url=guarded.http_url, timeout=30) as http:
        incident_id = await declared(http)
        for (method, path), line in ROUTES.items():
            for caller in CALLERS:
                answer = await call(http, method, concrete(path, incident_id), line.auth, caller)
                tried += 1
                problem = verdict(line, caller, answer)
                if problem is None:
                    continue
                got = f"{answer.status_code} {answer.headers.get('location', '')}"
                problems.append(
                    f"{method} {path} by {caller}: {problem}; got {got} {answer.text[:120]!r}"
                )
    print(f"role x route matrix: {len(ROUTES)} routes x {len(CALLERS)} callers = {tried}")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------
# NATS subjects


class Reach(NamedTuple):
    """What producers may do on a subject; the service's user is unrestricted. On a subject
    naming a producer (`{name}`), only the producer it names: never another one."""

    publish: bool
    subscribe: bool


NAME: Final = "{name}"
JS_API: Final = "$JS.API.>"
SERVICE_ONLY: Final = Reach(publish=False, subscribe=False)
# README "NATS", "What the server refuses".
SUBJECTS: Final[dict[str, Reach]] = {
    # The log's stream and the event-id claims: no producer writes, reads or follows them.
    "incidents.>": SERVICE_ONLY,
    "correlation.>": SERVICE_ONLY,
    "retention.>": SERVICE_ONLY,
    "changes.>": SERVICE_ONLY,
    "event_ids.>": SERVICE_ONLY,
    # JetStream itself: no stream info, update, purge, delete, message delete or consumer.
    JS_API: SERVICE_ONLY,
    # The intake: a producer sends on its own subjects (they name it); the shared ones, which
    # would name nobody, are the service's.
    "intake.events": SERVICE_ONLY,
    "intake.alertmanager": SERVICE_ONLY,
    f"intake.{NAME}.events": Reach(publish=True, subscribe=False),
    f"intake.{NAME}.alertmanager": Reach(publish=True, subscribe=False),
    # Replies: a producer's arrive on its own inbox prefix; nats-py's default `_INBOX` (where
    # other clients' replies and JetStream deliveries arrive) and the service's are not its.
    f"_INBOX_{NAME}.>": Reach(publish=False, subscribe=True),
    "_INBOX.>": SERVICE_ONLY,
    "_INCIDENTS_INBOX.>": SERVICE_ONLY,
}
# Besides the sample each line gives (`>` as two tokens), the JetStream calls a producer
# must never make.
JS_API_CALLS: Final = (
    "$JS.API.STREAM.INFO.INCIDENTS",
    "$JS.API.STREAM.UPDATE.INCIDENTS",
    "$JS.API.STREAM.PURGE.INCIDENTS",
    "$JS.API.STREAM.DELETE.INCIDENTS",
    "$JS.API.STREAM.MSG.DELETE.INCIDENTS",
    "$JS.API.STREAM.MSG.GET.INCIDENTS",
    "$JS.API.DIRECT.GET.INCIDENTS",
    "$JS.API.CONSUMER.CREATE.INCIDENTS",
    "$JS.API.CONSUMER.DURABLE.CREATE.INCIDENTS.mine",
)
OTHER: Final = "someone-else"


def used_subjects() -> set[str]:
    """Every subject the service listens on, writes to or answers on, from the code."""
    broker = create_broker(target("nats://127.0.0.1:4222"), cast(Intake, None), utc_now)
    # `intake.*.events` is where producer NAME sends `intake.NAME.events`.
    listened = set()
    for subscriber in broker.subscribers:
        assert isinstance(subscriber, LogicSubscriber), subscriber
        listened.add(subscriber.subject.broker_address.replace(".*.", f".{NAME}."))
    settings = StreamSettings()
    stored = {
        *(stream_config(settings).subjects or ()),
        *(event_ids_config(settings).subjects or ()),
    }
    inboxes = {
        f"{SERVICE_INBOX}.>",
        f"{producer_inbox(NAME)}.>",
        f"{DEFAULT_INBOX_PREFIX.decode()}.>",
    }
    return listened | stored | inboxes | {JS_API}


def test_every_subject_has_a_rule() -> None:
    used = used_subjects()
    problems = [
        f"subject {s} added without a rule: add it to SUBJECTS" for s in used - SUBJECTS.keys()
    ]
    problems += [f"subject {s} is in SUBJECTS but no longer used" for s in SUBJECTS.keys() - used]
    assert not problems, "\n".join(sorted(problems))


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` one token, `>` one or more trailing tokens."""
    wanted, tokens = pattern.split("."), subject.split(".")
    for i, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > i
        if i >= len(tokens) or token not in ("*", tokens[i]):
            return False
    return len(wanted) == len(tokens)


class Attempt(NamedTuple):
    action: Literal["publish", "subscribe"]
    subject: str
    allowed: bool  # for the producer; the service may do everything


def attempts(producer: str) -> list[Attempt]:
    """Every line of SUBJECTS tried by `producer`: on its own subjects and on another's."""
    tried = []
    for pattern, reach in SUBJECTS.items():
        sample = pattern.replace(">", "x.y")
        subjects = [(sample.replace(NAME, producer), True)]
        if NAME in pattern:
            subjects.append((sample.replace(NAME, OTHER), False))
        if pattern == JS_API:
            subjects += [(call, True) for call in JS_API_CALLS]
        for subject, own in subjects:
            tried.append(Attempt("publish", subject, own and reach.publish))
            tried.append(Attempt("subscribe", subject, own and reach.subscribe))
    return tried


# --- the users of a config, as lists ---------------------------------------------------------

_TOKEN: Final = re.compile(
    r'\s+|#[^\n]*|//[^\n]*|"([^"]*)"|\'([^\']*)\'|([{}\[\],:=])|([^\s{}\[\],:="\'#]+)'
)


def parse_conf(text: str) -> Any:
    """The nats-server configuration language, as far as `authorization` blocks use it:
    `{key: value ...}` maps (`:`, `=` or nothing between, commas or newlines after), lists and
    scalars; values are kept as text."""
    tokens: list[str] = []
    for found in _TOKEN.finditer(text):
        quoted = found[1] if found[1] is not None else found[2]
        if quoted is not None:
            tokens.append("\0" + quoted)  # a string, never punctuation
        elif found[3] or found[4]:
            tokens.append(found[3] or found[4])
    position = 0

    def value() -> Any:
        nonlocal position
        token = tokens[position]
        position += 1
        if token == "{":
            mapping: dict[str, Any] = {}
            while tokens[position] != "}":
                key = tokens[position].lstrip("\0")
                position += 1
                if tokens[position] in (":", "="):
                    position += 1
                mapping[key] = value()
                if tokens[position] == ",":
                    position += 1
            position += 1
            return mapping
        if token == "[":
            items = []
            while tokens[position] != "]":
                items.append(value())
                if tokens[position] == ",":
                    position += 1
            position += 1
            return items
        return token.lstrip("\0")

    return value()


def _allow(rights: Any, action: str) -> tuple[str, ...] | None:
    if action not in rights:
        return None
    assert set(rights[action]) == {"allow"}, f"{action}: only `allow` lists are checked here"
    return tuple(rights[action]["allow"])


def deploy_users() -> list[NatsUser]:
    """The users of deploy/nats/nats.conf and their permission lists."""
    text = NATS_CONF.read_text()
    block = parse_conf(text[text.index("authorization {") + len("authorization") :])
    users = []
    for entry in block["users"]:
        rights = entry.get("permissions", {})
        assert set(rights) <= {"publish", "subscribe"}, rights
        name = entry["user"]
        password = PASSWORDS[entry["password"].removeprefix("$")]
        users.append(
            NatsUser(name, password, _allow(rights, "publish"), _allow(rights, "subscribe"))
        )
    return users


def embedded_auth_of(data_dir: Path) -> NatsAuth:
    """The users `incidents serve` gives its embedded server (tokens on), with one NATS
    producer, `alertmanager`, besides one token of each role."""
    tokens_file = data_dir.parent / "nats-tokens.toml"
    tokens_file.write_text(
        token_entry("alertmanager", PRODUCER, new_token(), nats=True)
        + "".join(token_entry(r.value, r, t) for r, t in TOKENS.items())
    )
    return embedded_auth(ServiceCredentials.load_or_create(data_dir), Tokens.load(tokens_file))


def list_problems(user: NatsUser, producer: bool) -> list[str]:
    """Where `user`'s allow lists differ from SUBJECTS: a subject allowed that its line
    refuses, refused that its line allows, or an allow no line asks for."""
    if not producer:
        unrestricted = user.publish is None and user.subscribe is None
        return [] if unrestricted else [f"{user.name}: the service's user must be unrestricted"]
    problems = []
    needed: set[tuple[str, str]] = set()
    for attempt in attempts(user.name):
        allows = getattr(user, attempt.action) or ()
        covering = [a for a in allows if matches(a, attempt.subject)]
        if bool(covering) != attempt.allowed:
            problems.append(f"{user.name} {attempt.action} {attempt.subject}: allow {covering}")
        if attempt.allowed:
            needed.update((attempt.action, a) for a in covering)
    for action in ("publish", "subscribe"):
        for allow in getattr(user, action) or ():
            if (action, allow) not in needed:
                problems.append(f"{user.name} {action} allow {allow!r}: no line of SUBJECTS")
    return problems


def test_deploy_permission_lists_follow_the_table() -> None:
    users = deploy_users()
    assert [u.name for u in users if u.publish is None and u.subscribe is None] == ["incidents"]
    problems = [p for u in users for p in list_problems(u, producer=u.name != "incidents")]
    assert not problems, "\n".join(problems)


def test_embedded_permission_lists_follow_the_table(tmp_path: Path) -> None:
    auth = embedded_auth_of(tmp_path / "var")
    assert [u.name for u in auth.users] == ["alertmanager"]
    problems = list_problems(auth.service, producer=False)
    problems += [p for u in auth.users for p in list_problems(u, producer=True)]
    assert not problems, "\n".join(problems)


# --- the same, on real servers -----------------------------------------------------------------


@pytest.fixture
def deploy_server(tmp_path: Path) -> Iterator[str]:
    with deploy_users_server(tmp_path) as address:
        yield address


@pytest.fixture
def embedded_server(tmp_path: Path) -> Iterator[EmbeddedNatsServer]:
    server = EmbeddedNatsServer(tmp_path / "nats", auth=embedded_auth_of(tmp_path / "var"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


_VIOLATION: Final = re.compile(r'permissions violation for (publish|subscription) to "([^"]*)"')


REFUSALS_QUIET_S: Final = 1.0  # no refusal for this long after the flush: all were said


async def refused(where: str, user: NatsUser, inbox: str, tried: list[Attempt]) -> set[Attempt]:
    """Each attempt made by `user` on the server at `where`; those the server refused."""
    errors: list[str] = []

    async def remember(exc: Exception) -> None:
        errors.append(str(exc))

    url = f"nats://{quote(user.name)}:{quote(user.password)}@{where}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:  # the server may still be starting
        try:
            nc = await nats.connect(
                url, error_cb=remember, allow_reconnect=False, inbox_prefix=inbox
            )
            break
        except (OSError, nats.errors.NoServersError):
            assert loop.time() < deadline, f"no nats-server at {where}"
            await asyncio.sleep(0.1)
    errors.clear()  # those of connecting to a server still starting
    try:
        for attempt in tried:
            if attempt.action == "publish":
                await nc.publish(attempt.subject, b"{}")
            else:
                await nc.subscribe(attempt.subject)
        await nc.flush(timeout=30)
        # nats-py may send the flush's PING ahead of publishes still in its buffer, so
        # refusals can arrive after the PONG: wait until they stop coming.
        seen, quiet_since = -1, loop.time()
        while loop.time() - quiet_since < REFUSALS_QUIET_S:
            if len(errors) != seen:
                seen, quiet_since = len(errors), loop.time()
            assert loop.time() < deadline, "refusals kept coming"
            await asyncio.sleep(0.05)
    finally:
        await nc.close()
    by_what: dict[tuple[str, str], Attempt] = {(a.action, a.subject.lower()): a for a in tried}
    found = set()
    for error in errors:
        violation = _VIOLATION.search(error.lower())
        assert violation, f"not a permissions violation: {error}"
        action = "publish" if violation[1] == "publish" else "subscribe"
        assert (action, violation[2]) in by_what, f"a violation nobody tried: {error}"
        found.add(by_what[action, violation[2]])
    return found


async def check_server(where: str, service: NatsUser, producer: NatsUser) -> int:
    """The producer is refused exactly what SUBJECTS refuses it, the service nothing; returns
    how many attempts were made."""
    tried = attempts(producer.name)
    wanted = {a for a in tried if not a.allowed}
    got = await refused(where, producer, producer_inbox(producer.name), tried)
    assert got == wanted, (
        f"the server allowed what SUBJECTS refuses: {sorted(wanted - got)}; "
        f"the server refused what SUBJECTS allows: {sorted(got - wanted)}"
    )
    assert not await refused(where, service, SERVICE_INBOX, tried)
    return 2 * len(tried)


async def test_deploy_server_refuses_producers_what_the_table_refuses(deploy_server: str) -> None:
    by_name = {u.name: u for u in deploy_users()}
    made = await check_server(deploy_server, by_name["incidents"], by_name["producer"])
    print(f"deploy/nats/nats.conf: {made} publish/subscribe attempts as the table says")


async def test_embedded_server_refuses_producers_what_the_table_refuses(
    embedded_server: EmbeddedNatsServer,
) -> None:
    auth = embedded_server.auth
    assert auth is not None
    where = embedded_server.url.removeprefix("nats://")
    made = await check_server(where, auth.service, auth.users[0])
    print(f"embedded nats-server: {made} publish/subscribe attempts as the table says")


# --- answers: where the service publishes for a producer ---------------------------------------


@pytest.mark.parametrize(
    ("subject", "reply", "answered"),
    [
        ("intake.am.events", "_INBOX_am.n1.1", True),
        ("intake.am.alertmanager", "_INBOX_am.n1.2", True),
        ("intake.am.events", "incidents.INC-PERM0001.incident.note_added", False),
        ("intake.am.events", "event_ids.0f", False),
        ("intake.am.events", "_INBOX_other.n1.1", False),
        ("intake.am.events", "_INBOX_am_b.n1.1", False),  # another producer, `am_b`
        ("intake.am.events", "_INBOX.n1.1", False),
        ("intake.am.events", f"{SERVICE_INBOX}.n1.1", False),
        ("intake.am.events", "$JS.API.STREAM.PURGE.INCIDENTS", False),
        ("intake.events", f"{SERVICE_INBOX}.n1.1", True),  # only the service may send there
    ],
)
def test_a_producer_is_answered_only_in_its_own_inbox(
    subject: str, reply: str, answered: bool
) -> None:
    assert answerable(subject, reply) is answered


EVENT: Final = {
    "type": "incident.declared",
    "event_id": "perm-reply-1",
    "incident_id": "INC-PERMRPL1",
    "occurred_at": "2026-11-20T10:00:00Z",
    "actor": "probe",
    "source": "synthetic",
    "title": "probe",
    "severity": "P4",
}


async def test_a_producer_cannot_write_on_the_log_through_the_services_answer(
    tmp_path: Path,
) -> None:
    """The server lets a producer choose its message's reply subject freely; the service's
    answer there is a publish by the unrestricted user. A reply on the log's subjects must not
    put a record in the log."""
    data_dir, token = tmp_path / "var", new_token()
    tokens_file = tmp_path / "tokens.toml"
    tokens_file.write_text(token_entry("am", PRODUCER, token, nats=True))
    password = ServiceCredentials.load_or_create(data_dir).producer_password("am", digest(token))
    forged = "incidents.INC-PERMRPL1.incident.note_added"
    config = Config(data_dir=data_dir, http_port=0, tokens_file=tokens_file)
    async with running(config) as service:
        where = service.nats_url.removeprefix("nats://")
        producer = await nats.connect(
            f"nats://am:{password}@{where}", inbox_prefix=producer_inbox("am")
        )
        try:
            await producer.publish("intake.am.events", msgspec.json.encode(EVENT), reply=forged)
            await producer.flush()
            # Its own request after it: answered once the first message was handled.
            second = {**EVENT, "event_id": "perm-reply-2"}
            await producer.request("intake.am.events", msgspec.json.encode(second), timeout=30)
        finally:
            await producer.close()
        assert await service.store.records(forged) == []
