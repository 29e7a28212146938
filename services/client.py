"""HTTP client of the service, for the CLI verbs: JSON in, JSON out, failures as two errors.

`BadRequest` is the caller's fault (a 4xx answer, exit 2); `Unavailable` is the system's
(no connection, a timeout, a 5xx or an answer that is not JSON, exit 1). Below the client, the
plumbing both verb modules share: the service options, argument parsers and `call`.
"""

import inspect
import re
from datetime import datetime
from types import TracebackType
from typing import Annotated, Any, Final, NoReturn
from urllib.parse import urlsplit

import httpx
import msgspec
import typer
from typer.core import TyperCommand

from events.schema import INCIDENT_ID_PATTERN

DEFAULT_TIMEOUT_S: Final = 10.0
DEFAULT_URL: Final = "http://127.0.0.1:8080"


class ClientError(Exception):
    pass


class BadRequest(ClientError):
    """The service refused the request (4xx); `error_body` is its `{error, field, detail}`."""

    def __init__(self, status: int, error_body: dict[str, Any]) -> None:
        self.status = status
        self.error_body = error_body
        super().__init__(self.detail)

    @property
    def detail(self) -> str:
        for key in ("detail", "message", "error"):
            if self.error_body.get(key):
                return str(self.error_body[key])
        return f"HTTP {self.status}"

    @property
    def field(self) -> str | None:
        field = self.error_body.get("field")
        return str(field) if field else None


class Unavailable(ClientError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        decoded = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        decoded = None
    if isinstance(decoded, dict):
        return decoded
    return {"error": f"http_{response.status_code}", "detail": response.text.strip()[:200]}


class Client:
    """A synchronous session with the service; use it as a context manager."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"User-Agent": "incidents-cli", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> "Client":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def send(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
    ) -> bytes:
        """The raw JSON of a 2xx answer; anything else raises `BadRequest` or `Unavailable`."""
        content = None if body is None else msgspec.json.encode(body)
        headers = {"Content-Type": "application/json"} if content is not None else None
        try:
            response = self._http.request(
                method, path, content=content, params=params, headers=headers
            )
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise Unavailable(f"service unreachable at {self.base_url}: {reason}") from exc
        if 400 <= response.status_code < 500:
            raise BadRequest(response.status_code, _error_body(response))
        if not response.is_success:
            detail = BadRequest(response.status_code, _error_body(response)).detail
            raise Unavailable(
                f"service at {self.base_url} answered {response.status_code}: {detail}"
            )
        return response.content

    def post(self, path: str, body: Any) -> dict[str, Any]:
        answer = self.decode(self.send("POST", path, body))
        if not isinstance(answer, dict):
            raise Unavailable(f"service at {self.base_url} answered a JSON {type(answer)}")
        return answer

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.decode(self.send("GET", path, params=params))

    def decode(self, raw: bytes) -> Any:
        try:
            return msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            raise Unavailable(f"service at {self.base_url} answered with non-JSON") from exc


def fail(reason: str, code: int = 2) -> NoReturn:
    typer.echo("error: " + " ".join(reason.split()), err=True)
    raise typer.Exit(code)


def call(
    url: str,
    token: str | None,
    method: str,
    path: str,
    body: Any = None,
    params: dict[str, Any] | None = None,
) -> tuple[bytes, Any]:
    """One request for a verb: the raw and decoded answer, or exit 2 (4xx) or 1 (system)."""
    try:
        with Client(url, token) as client:
            raw = client.send(method, path, body, params)
            return raw, client.decode(raw)
    except BadRequest as exc:
        fail(exc.detail + (f" (field {exc.field})" if exc.field else ""))
    except Unavailable as exc:
        fail(exc.reason, code=1)


class Verb(TyperCommand):
    """A verb whose bad arguments cost one line on stderr instead of a usage panel."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except typer.TyperException as exc:  # the base of typer's usage errors
            reason = exc.format_message().replace("Value error, ", "")
            fail(f"{reason} (see: incidents {info_name} --help)", exc.exit_code)


def http_url(text: str) -> str:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise ValueError(f"malformed URL {text!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not an http(s) URL, e.g. {DEFAULT_URL}")
    return text


def rfc3339(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValueError(f"{text!r} is not RFC 3339 with an offset, e.g. 2026-01-02T10:00:00Z")
    return moment


def parse_incident_id(text: str) -> str:
    if not re.fullmatch(INCIDENT_ID_PATTERN, text):
        raise ValueError(f"{text!r} is not an incident id (letters, digits, '_' and '-')")
    return text


IncidentArg = Annotated[
    str,
    typer.Argument(
        metavar="ID",
        parser=parse_incident_id,
        show_default=False,
        help="Incident id, e.g. INC-7K2M9Q.",
    ),
]


def option(
    name: str, kind: Any, default: Any, *decls: str, panel: str, **info: Any
) -> inspect.Parameter:
    """A keyword parameter with a typer option, for signatures built by `register`."""
    option = typer.Option(*decls, rich_help_panel=panel, show_default=False, **info)
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option]
    )


def service_options(panel: str) -> tuple[inspect.Parameter, inspect.Parameter, inspect.Parameter]:
    """`--url`, `--token` and `--json`, as parameters `url`, `token` and `as_json`."""
    return (
        option(
            "url",
            str,
            DEFAULT_URL,
            envvar="INCIDENTS_URL",
            parser=http_url,
            panel=panel,
            help=f"Base URL of the service (default {DEFAULT_URL}).",
        ),
        option(
            "token", str | None, None, envvar="INCIDENTS_TOKEN", panel=panel, help="Bearer token."
        ),
        option("as_json", bool, False, "--json", panel=panel, help="Print the JSON answer as is."),
    )
