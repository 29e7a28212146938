"""The live display: one bar over the run's steps, one more for a step that counts events."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class Steps:
    def __init__(self, total: int, console: Console) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self._overall = self._progress.add_task("bench", total=total)

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self._progress.update(self._overall, description=name)
        yield
        self._progress.advance(self._overall)

    @contextmanager
    def counting(self, name: str, total: int) -> Iterator[Callable[[int], None]]:
        """A bar of its own for a step over `total` items; yields `done(n)` to move it."""
        task: TaskID = self._progress.add_task(f"  {name}", total=total)
        try:
            yield lambda n: self._progress.update(task, completed=n)
        finally:
            self._progress.remove_task(task)

    def log(self, text: str) -> None:
        self._progress.console.print(text)
