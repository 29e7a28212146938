"""What metrics can be grouped by: the one list, for the queries, the API and the CLI.

Pure (no DuckDB), so the command line can import it without loading the read-model stack.
"""

import enum
from typing import Final


class GroupBy(enum.StrEnum):
    SEVERITY = "severity"
    SERVICE = "service"
    CATEGORY = "category"
    MONTH = "month"
    REGION = "region"
    TEAM = "team"  # issue 13: the services' teams, by the policy's `[teams]`


# Two dimensions at once (`severity,month`) answer what people ask; more would be a cube.
MAX_KEYS: Final = 2


def parse_group_by(text: str) -> tuple[GroupBy, ...]:
    """`severity` or `severity,month`: one or two distinct keys, comma-separated.

    ValueError says what is wrong, for the edges to name `group_by`.
    """
    names = [part.strip().lower() for part in text.split(",")]
    known = ", ".join(GroupBy)
    keys: list[GroupBy] = []
    for name in names:
        try:
            key = GroupBy(name)
        except ValueError:
            raise ValueError(
                f"group_by is one of {known}, or two of them comma-separated, not {name!r}"
            ) from None
        if key in keys:
            raise ValueError(f"group_by names {key} twice")
        keys.append(key)
    if len(keys) > MAX_KEYS:
        raise ValueError(f"group_by takes at most {MAX_KEYS} keys, not {len(keys)}")
    return tuple(keys)


def group_by_text(keys: tuple[GroupBy, ...]) -> str:
    """How answers name the grouping: `severity` or `severity,month`."""
    return ",".join(keys)
