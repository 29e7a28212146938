"""Which team owns which service (issue 13): the policy file's `[teams]` table
(`checkout = "payments-team"`), for metrics grouped by team. Pure.

Service names match as the events spell them (case-sensitive), as grouping by service does.
"""

from collections.abc import Mapping
from typing import Final

_MAX_NAME: Final = 200


def parse_teams(document: object, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`[teams]`: service = "team", merged over `base`; ValueError names the key."""
    if not isinstance(document, Mapping):
        raise ValueError(f'teams: expected a table (checkout = "payments-team"), got {document!r}')
    teams = dict(base or {})
    for service, team in document.items():
        where = f"teams.{service}"
        if not str(service).strip():
            raise ValueError("teams: a service name is not blank")
        if not isinstance(team, str) or not team.strip() or len(team) > _MAX_NAME:
            raise ValueError(f"{where}: expected a team name (1 to {_MAX_NAME} characters)")
        teams[str(service)] = team.strip()
    return teams
