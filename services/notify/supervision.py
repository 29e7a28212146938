"""Running the notifier for ever, as `services.readmodels.supervise` runs the projector: a
failure is noted on the notifier (`/readyz` answers 503 with it, `failure`), and it is started
again after a pause that doubles while it keeps failing.
"""

import asyncio
import logging

from services.notify.notifier import Notifier
from services.readmodels import RESTART_AFTER_S, RESTART_AT_MOST_S
from services.supervisor import one_line

log = logging.getLogger("incidents")


def _first(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


async def supervise(notifier: Notifier) -> None:
    """Run `notifier` for ever, as `services.readmodels.supervise` runs the projector."""
    delay = RESTART_AFTER_S
    while True:
        try:
            await notifier.run()
            reason = "stopped"  # `run` runs for ever: returning is a fault
        except Exception as exc:
            cause = _first(exc)
            reason = f"{type(cause).__name__}: {one_line(cause)}"
            if notifier.failure is None:
                log.error("notifier failed", exc_info=cause)
        if notifier.failure is None:
            delay = RESTART_AFTER_S  # it had recovered since: a new run of failures
        elif reason != notifier.failure:
            log.error("notifier failed again: %s", reason)
        notifier.failure = reason
        log.warning("notifier restarts in %.1f s (%s)", delay, reason)
        await asyncio.sleep(delay)
        delay = min(delay * 2, RESTART_AT_MOST_S)
        notifier.restarts += 1
