"""events.durations: one grammar for durations written by people, one way to show them."""

import pytest

from events.durations import format_duration, parse_duration

MIN, HOUR, DAY, WEEK = 60.0, 3600.0, 86400.0, 604800.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        # The configuration's forms (INCIDENTS_RETENTION, INCIDENTS_DUPLICATE_WINDOW, CLI).
        ("90d", 90 * DAY),
        ("12h", 12 * HOUR),
        ("30m", 30 * MIN),
        ("45s", 45.0),
        ("500ms", 0.5),
        ("2w", 2 * WEEK),
        ("1h30m", 90 * MIN),
        ("1.5h", 90 * MIN),
        ("120", 120.0),
        ("0.25", 0.25),
        (" 2M ", 2 * MIN),
        ("0", 0.0),
        # The policy files' forms.
        ("5m", 5 * MIN),
        ("2h", 2 * HOUR),
        ("5d", 5 * DAY),
        ("90s", 90.0),
        ("300", 300.0),
        ("15 min", 15 * MIN),
        ("1w", WEEK),
        (" 2H ", 2 * HOUR),
        # Their union: "min" anywhere, unit words after a space, any case, any units in a row.
        ("15min", 15 * MIN),
        ("500 ms", 0.5),
        ("15 MIN", 15 * MIN),
        ("1h30min", 90 * MIN),
        ("1d2h3m4s", DAY + 2 * HOUR + 3 * MIN + 4),
        ("1w1d", WEEK + DAY),
        ("0d", 0.0),
    ],
)
def test_parses(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "d",
        "m5",
        "h1",
        "5x",
        "5 parsecs",
        "1h 30x",
        "5 m",  # a lone letter after a space is not taken for a unit
        "1h 30m",  # no space between parts
        "5mins",
        "-5s",
        "-5m",
        "-5",
        "+5",
        "5m-",
        "1e3",
        ".5",
        "5.",
        "1_000",
        "nan",
        "inf",
        "9" * 400,
        "9" * 400 + "s",
    ],
)
def test_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_error_names_the_text() -> None:
    with pytest.raises(ValueError, match=r"not a duration: 'ninety days'"):
        parse_duration("ninety days")
    with pytest.raises(ValueError, match="out of range"):
        parse_duration("9" * 400)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (3 * DAY + 4 * HOUR + 5 * MIN, "3d 04h"),
        (HOUR + 5 * MIN + 59, "1h 05m"),
        (5 * MIN + 3, "5m 03s"),
        (42, "42s"),
        (42.9, "42s"),
        (0, "0s"),
        (MIN, "1m 00s"),
        (DAY, "1d 00h"),
        (100 * DAY, "100d 00h"),
        (-90, "-1m 30s"),
        (-42, "-42s"),
    ],
)
def test_formats(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["90d", "12h", "1h30m", "5m", "42s"])
def test_formatting_a_parsed_duration_reads_back(text: str) -> None:
    assert parse_duration(format_duration(parse_duration(text)).replace(" ", "")) == parse_duration(
        text
    )
