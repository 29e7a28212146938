"""Named crash points: places where a test may have the process die abruptly, as by SIGKILL.

`INCIDENTS_CRASH_AT=<point>` kills the process the first time it passes `<point>`;
`<point>@<n>` the n-th time. Nothing is cleaned up (no `finally`, no flush, no close): what a
power cut or the OOM killer would leave is what the next start finds. A name not in `POINTS`
is refused loudly, so a misspelt point never passes for a run that survived it.

The points, where they are, and what a restart must then do:
- `after_publish` (`services.write.handler`): a decision's events are stored, the caller has no
  answer yet; its retry with the same event ids gets the stored events, each once.
- `before_write`, `after_write`, `after_commit` (`projections.projector`): before a batch's
  transaction, inside it after its rows and checkpoint (rolled back), after its commit; the
  projector resumes from the committed checkpoint.
- `during_build` (`projections.rebuild`): a replay's shadow build committed a batch and is not
  finished; the next replay resumes it from its own checkpoint.
- `after_swap` (`services.readmodels`): readers moved to the new generation, the old one is
  not retired yet; the next start removes it.

Here, in the lowest layer, so that every layer can name its points; `tests/faults` crashes
each of them and fails for a point it has no case for.
"""

import os
import signal
import threading
from collections import Counter
from typing import Final

ENV: Final = "INCIDENTS_CRASH_AT"
POINTS: Final = (
    "after_publish",
    "before_write",
    "after_write",
    "after_commit",
    "during_build",
    "after_swap",
)

_passes: Counter[str] = Counter()
_counting = threading.Lock()  # projector writes pass their points in worker threads


def parse(value: str) -> tuple[str, int]:
    """`<point>` or `<point>@<n>` as (point, n); ValueError for anything else."""
    point, at, count = value.partition("@")
    if point not in POINTS:
        raise ValueError(f"{ENV}={value!r}: unknown crash point (known: {', '.join(POINTS)})")
    if not at:
        return point, 1
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"{ENV}={value!r}: expected <point>@<n> with n >= 1")
    return point, int(count)


def reached(point: str) -> None:
    """Die here, at once and without cleaning up, if `ENV` names `point` and this is the pass
    it names; otherwise do nothing (one environment lookup when unset)."""
    if point not in POINTS:
        raise ValueError(f"{point!r} is not a crash point (known: {', '.join(POINTS)})")
    value = os.environ.get(ENV)
    if not value:
        return
    wanted, at = parse(value)
    if wanted != point:
        return
    with _counting:
        _passes[point] += 1
        passes = _passes[point]
    if passes == at:
        # Straight to the file descriptor: a logging handler may hand records to a thread (the
        # HTTP server's queue listener does), which the kill would stop before it writes.
        os.write(2, f"crash point {point} reached (pass {passes}): SIGKILL\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)
