"""Group keys of the metrics (issue 13): one or two at once, `team` among them; refusals name
what is wrong."""

import pytest

from projections.groups import GroupBy, group_by_text, parse_group_by


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("severity", (GroupBy.SEVERITY,)),
        ("team", (GroupBy.TEAM,)),
        ("severity,month", (GroupBy.SEVERITY, GroupBy.MONTH)),
        (" Month , Severity ", (GroupBy.MONTH, GroupBy.SEVERITY)),  # order kept: rows sort so
        ("region,team", (GroupBy.REGION, GroupBy.TEAM)),
    ],
)
def test_one_or_two_keys(text: str, keys: tuple[GroupBy, ...]) -> None:
    assert parse_group_by(text) == keys
    assert parse_group_by(group_by_text(keys)) == keys


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("week", "not 'week'"),
        ("severity,", "not ''"),
        ("", "not ''"),
        ("team,team", "names team twice"),
        ("severity,month,team", "at most 2 keys, not 3"),
        ("severity;month", "not 'severity;month'"),
    ],
)
def test_refusals_name_the_problem(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match="group_by") as refused:
        parse_group_by(text)
    assert reason in str(refused.value)
