"""HTTP client of the service, for the CLI verbs: JSON in, JSON out, failures as two errors.

`BadRequest` is the caller's fault (a 4xx answer, exit 2); `Unavailable` is the system's
(no connection, a timeout, a 5xx or an answer that is not JSON, exit 1). `call` is one verb's
request with those failures turned into exit codes. HTTPS is verified against the CA file
`INCIDENTS_CA_FILE` when it is set (a private CA: it alone is trusted), else against the usual
public CAs.
"""

import os
import ssl
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final

import httpx
import msgspec

from services.cli.options import fail, service_url
from services.config import ConfigError

DEFAULT_TIMEOUT_S: Final = 10.0
CA_FILE_ENV: Final = "INCIDENTS_CA_FILE"


def trust(env: Mapping[str, str] = os.environ) -> ssl.SSLContext | bool:
    """What HTTPS answers are verified against: the CA file of `INCIDENTS_CA_FILE`, or httpx's
    default (public CAs). A file that is not a readable PEM CA is a ConfigError naming it."""
    ca_file = env.get(CA_FILE_ENV, "").strip()
    if not ca_file:
        return True
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(
            f"{CA_FILE_ENV}={ca_file}: not a readable PEM CA file ({reason})"
        ) from None


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
        verify: ssl.SSLContext | bool | None = None,
    ) -> None:
        """`verify` None: `trust()` (INCIDENTS_CA_FILE), which may raise ConfigError."""
        self.base_url = base_url.rstrip("/")
        headers = {"User-Agent": "incidents-cli", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout,
            transport=transport,
            verify=trust() if verify is None else verify,
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


def call(
    url: str | None,
    token: str | None,
    method: str,
    path: str,
    body: Any = None,
    params: dict[str, Any] | None = None,
    *,
    json: bool = True,
) -> tuple[bytes, Any]:
    """One request for a verb: the raw and decoded answer, or exit 2 (4xx) or 1 (system).

    With `json=False` the answer is not JSON (a Markdown draft): only the raw bytes come back.
    `url` None: the running service's, or the default (`service_url`).
    """
    try:
        with Client(service_url(url), token) as client:
            raw = client.send(method, path, body, params)
            return raw, client.decode(raw) if json else None
    except ConfigError as exc:
        fail(str(exc))
    except BadRequest as exc:
        fail(exc.detail + (f" (field {exc.field})" if exc.field else ""))
    except Unavailable as exc:
        fail(exc.reason, code=1)
