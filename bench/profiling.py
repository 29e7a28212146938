"""`--profile DIR`: cProfile of an in-process stage, its worker threads included (the projector
applies batches in threads), as `<stage>.pstats` and a top-30 `<stage>.txt`."""

import cProfile
import io
import pstats
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any


@contextmanager
def profiled(directory: Path | None, stage: str) -> Iterator[None]:
    if directory is None:
        yield
        return
    main = cProfile.Profile()
    threads: list[cProfile.Profile] = []

    def in_new_thread(frame: FrameType, event: str, arg: Any) -> None:
        # Python 3.11's cProfile sees only the thread that enabled it: one per new thread.
        profile = cProfile.Profile()
        threads.append(profile)
        profile.enable()

    threading.setprofile(in_new_thread)
    main.enable()
    try:
        yield
    finally:
        main.disable()
        threading.setprofile(None)
        _write(pstats.Stats(main, *threads), directory, stage)


def _write(stats: pstats.Stats, directory: Path, stage: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    stats.dump_stats(directory / f"{stage}.pstats")
    text = io.StringIO()
    stats.stream = text  # type: ignore[attr-defined]
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(30)
    (directory / f"{stage}.txt").write_text(text.getvalue())
