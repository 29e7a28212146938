"""Delivering one notification over HTTP: POST until the receiver takes it, with exponential
backoff and jitter between attempts.

A receiver takes a delivery by answering 2xx. Anything else (refused connection, timeout, 429,
5xx, and 4xx too, which a fixed receiver or route will take later) is retried: the notifier
promises at least once, so it never drops a notification, it waits. The delivery id travels as
the `Idempotency-Key` header (and in the JSON body of generic webhooks) so receivers can drop
the rare second copy. URLs are secrets: no error, log line or record here ever shows one.
"""

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

import httpx
from msgspec import Struct

from events.notifications import Secret

USER_AGENT: Final = "incident-timeline-notifier"
TIMEOUT_S: Final = 10.0
# While a delivery waits to retry, JetStream must not hand its message to another reader.
KEEPALIVE_EVERY_S: Final = 10.0
_ANSWER_SHOWN: Final = 120  # characters of a refusing receiver's answer kept in the reason


class DeliveryFailedError(Exception):
    """One attempt that the receiver did not take; the message is one line, without the URL."""


class Backoff(Struct, frozen=True):
    first_s: float
    max_s: float

    def pause(self, attempt: int, rng: random.Random | None = None) -> float:
        """Before attempt `attempt + 1`: doubling from `first_s` up to `max_s`, each pause
        drawn from its upper half ("equal jitter"), so receivers coming back are not hit by
        every sender at once, and no pause is ever close to nothing."""
        ceiling = min(self.max_s, self.first_s * 2 ** min(attempt - 1, 62))
        return (rng or random).uniform(ceiling / 2, ceiling)


class Outbound(Struct, frozen=True):
    url: Secret
    body: bytes
    delivery_id: str
    headers: tuple[tuple[str, Secret], ...] = ()


def _reason(outbound: Outbound, exc: BaseException) -> str:
    detail = str(exc).replace(str(outbound.url), "<url>")
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


async def post(client: httpx.AsyncClient, outbound: Outbound) -> None:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Idempotency-Key": outbound.delivery_id,
        **{name: str(value) for name, value in outbound.headers},
    }
    try:
        response = await client.post(str(outbound.url), content=outbound.body, headers=headers)
    except httpx.HTTPError as exc:
        raise DeliveryFailedError(_reason(outbound, exc)) from None
    if not response.is_success:
        answer = " ".join(response.text[:_ANSWER_SHOWN].split()).replace(str(outbound.url), "<url>")
        raise DeliveryFailedError(f"HTTP {response.status_code}" + (f" {answer}" if answer else ""))


async def deliver(
    client: httpx.AsyncClient,
    outbound: Outbound,
    backoff: Backoff,
    failed: Callable[[int, str, float], None],
    keepalive: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """POST until taken; returns the number of attempts. `failed(attempt, reason, pause_s)` is
    told of each failure; `keepalive` is awaited while waiting to retry."""
    attempt = 0
    while True:
        attempt += 1
        try:
            await post(client, outbound)
            return attempt
        except DeliveryFailedError as exc:
            pause = backoff.pause(attempt)
            failed(attempt, str(exc), pause)
        while pause > 0:
            step = min(pause, KEEPALIVE_EVERY_S)
            await asyncio.sleep(step)
            pause -= step
            if keepalive is not None:
                await keepalive()


class _Redact(logging.Filter):
    """httpx logs each request's URL at INFO: the route URLs are secrets."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self.secrets):
            for secret in self.secrets:
                message = message.replace(secret, "<url>")
            record.msg, record.args = message, None
        return True


# One for the process: services started one after another (tests) add their secrets to it.
_REDACT: Final = _Redact()


def client(secrets: Iterable[str]) -> httpx.AsyncClient:
    """The notifier's HTTP client; the log lines of the HTTP libraries never show `secrets`."""
    _REDACT.secrets.update(s for s in secrets if s)
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)
    return httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False)
