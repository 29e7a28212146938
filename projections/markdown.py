"""Markdown for documents made from read-model rows: escaped cells and prose, tables, times."""

import itertools
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

_UNITS: Final = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def humanize(seconds: float) -> str:
    """Two units, the larger first, the smaller left out when zero: "1h 05m", "12m", "1d"."""
    left = max(int(seconds), 0)
    for (big, size), (small, step) in itertools.pairwise(_UNITS):
        if left >= size:
            rest = left % size // step
            return f"{left // size}{big}" + (f" {rest:02d}{small}" if rest else "")
    return f"{left}s"


def utc(value: datetime | str) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def when(value: datetime | str | None) -> str:
    return "" if value is None else utc(value).strftime("%Y-%m-%d %H:%M:%SZ")


def lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip().splitlines()]


def cell(value: Any) -> str:
    """`value` as one Markdown table cell: `|`, `\\` and `<` escaped, newlines as `<br>`."""
    text = "" if value is None else str(value)
    escaped = text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "\\<")
    return "<br>".join(line.strip() for line in lines(escaped))


def prose(text: str) -> str:
    """Authored text kept as Markdown, but never raw HTML."""
    return "\n".join(lines(text)).replace("<", "\\<")


def heading(text: str) -> str:
    return " ".join(text.split()).replace("\\", "\\\\").replace("<", "\\<")


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A table of cells already escaped with `cell`."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def bullet(text: str, by: str, marker: str = "-") -> str:
    """A list item (`marker` "-", or "1." for a numbered list) whose continuation lines are
    indented under its text, so the item never ends the list."""
    indent = " " * (len(marker) + 1)
    first, *rest = prose(text).split("\n")
    body = "\n".join([first, *(f"{indent}{line}" if line else "" for line in rest)])
    return f"{marker} {body} — {by}"


def words(*parts: Any) -> str:
    return " ".join(str(part) for part in parts if part not in (None, "", False))


def because(text: str, why: Any) -> str:
    return f"{text}: {why}" if why else text
