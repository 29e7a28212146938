"""Durations as people write and read them: "1h30m", "15 min" or "300" in, "1h 05m" out.

Pure. Used wherever a duration crosses a human edge: policy files, configuration, CLI options
and the tables that show seconds.
"""

import itertools
import math
import re
from collections.abc import Mapping
from typing import Final

_UNIT_SECONDS: Final[Mapping[str, float]] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_NUMBER: Final = r"\d+(?:\.\d+)?"
# One number and its unit, with no space between, or a space before a unit word ("15 min",
# "500 ms"): after a space a lone letter ("5 m") is not taken for a unit, nor is a space
# accepted between parts ("1h 30m"). "min" and "ms" come before "m" so "5min" is not read as
# 5 m plus junk, nor "500ms" as 500 m.
_PART: Final = rf"({_NUMBER})(?:\s*(min|ms)|(s|m|h|d|w))"
_PART_RE: Final = re.compile(_PART)
_DURATION: Final = re.compile(rf"(?:{_PART})+")
_PLAIN_SECONDS: Final = re.compile(_NUMBER)
_UNITS: Final = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def parse_duration(text: str) -> float:
    """Seconds in `text`, case-insensitive, surrounding blanks ignored.

    Plain seconds ("300", "0.25"), or numbers with units ms, s, m, min, h, d, w, several in a
    row from any units ("90d", "1h30m", "1.5h", "500ms", "15 min"). Finite and not negative.
    """
    value = text.strip().lower()
    if _PLAIN_SECONDS.fullmatch(value):
        seconds = float(value)
    elif _DURATION.fullmatch(value):
        seconds = sum(
            float(number) * _UNIT_SECONDS[word or letter]
            for number, word, letter in _PART_RE.findall(value)
        )
    else:
        raise ValueError(
            f"not a duration: {text!r} (use e.g. 90d, 12h, 30m, 15 min, 45s, 500ms, 1h30m "
            "or seconds)"
        )
    if not math.isfinite(seconds):
        raise ValueError(f"duration out of range: {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """Two units, the larger first: "3d 04h", "1h 05m", "5m 03s", "42s"."""
    sign, left = ("-" if seconds < 0 else ""), int(abs(seconds))
    for (big, size), (small, step) in itertools.pairwise(_UNITS):
        if left >= size:
            return f"{sign}{left // size}{big} {left % size // step:02d}{small}"
    return f"{sign}{left}s"
