"""The web console's pure parts: SVG charts, timeline details, sessions, form times, Markdown."""

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.api.console import markdown, timeline
from services.api.console.charts import TIME_STEPS, Series, bar_chart
from services.api.console.forms import moment
from services.api.console.sessions import IDLE_S, LIFETIME_S, MAX_SESSIONS, Sessions
from services.auth import Principal, Role
from services.errors import ServiceError

RESPONDER = Principal("ana", Role.RESPONDER)


def _bars(svg: str) -> list[tuple[float, float, str]]:
    """(y, height, title) of each bar."""
    found = re.findall(
        r'<rect x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)" fill="[^"]+">'
        r"<title>([^<]*)</title>",
        svg,
    )
    return [(float(y), float(h), title) for y, h, title in found]


def test_a_chart_is_named_described_and_escaped() -> None:
    svg = str(bar_chart("MTTA <by> severity", 'Mean & "p90"', ["P1"], [Series("mean", [60.0])]))
    assert svg.startswith("<svg ") and svg.endswith("</svg>")
    assert 'role="img"' in svg
    ids = re.search(r'aria-labelledby="([^ "]+) ([^"]+)"', svg)
    assert ids is not None
    assert f'<title id="{ids.group(1)}">MTTA &lt;by&gt; severity</title>' in svg
    assert f'<desc id="{ids.group(2)}">Mean &amp; &quot;p90&quot;</desc>' in svg
    assert "style=" not in svg  # presentation attributes only: the console's CSP holds


def test_grouped_bars_scale_to_a_round_axis_and_skip_missing_values() -> None:
    series = [Series("mean", [300.0, None]), Series("p90", [900.0, 600.0])]
    svg = str(bar_chart("t", "d", ["P1", "P2"], series, lambda v: f"{v:g}s", steps=TIME_STEPS))
    bars = _bars(svg)
    assert [title for *_, title in bars] == ["mean, P1: 300s", "p90, P1: 900s", "p90, P2: 600s"]
    heights = [height for _, height, _ in bars]
    assert heights[1] == pytest.approx(3 * heights[0], abs=0.2)
    # 900 s in 4 steps: 300 s is the round step, the axis ends at 900 s.
    assert ">900s</text>" in svg and ">1200s</text>" not in svg


def test_stacked_bars_add_up() -> None:
    series = [Series("ack", [1.0, 2.0]), Series("resolution", [3.0, None])]
    svg = str(bar_chart("Breaches", "d", ["2026-01", "2026-02"], series, stacked=True))
    (y1, h1, _), (y2, h2, _), (_, h3, _) = _bars(svg)
    assert y2 + h2 == pytest.approx(y1, abs=0.2)  # resolution sits on ack
    assert h1 + h2 == pytest.approx(4 * h1, abs=0.3)
    assert h3 == pytest.approx(2 * h1, abs=0.2)


def test_an_empty_chart_says_so() -> None:
    assert "no data yet" in str(bar_chart("t", "d", [], []))


def test_details_show_what_an_event_says_typed_for_the_page() -> None:
    body = {
        "type": "comms.sent",
        "event_id": "e1",
        "actor": "ana",
        "hash": "ab",
        "audience": "internal",
        "message": "line 1\nline 2",
        "next_update_at": "2026-01-02T10:00:00Z",
        "channel": None,
        "template": "",
        "automated": False,
        "uri": "https://example.com",
        "impact": {"regions": ["eu"], "data_loss": None, "security": True},
        "services": ["checkout"],
    }
    assert timeline.details(body) == [
        timeline.Detail("audience", "internal", "text"),
        timeline.Detail("message", "line 1\nline 2", "message"),
        timeline.Detail("next update at", "2026-01-02T10:00:00Z", "time"),
        timeline.Detail("automated", "no", "text"),
        timeline.Detail("uri", "https://example.com", "link"),
        timeline.Detail("impact", {"regions": ["eu"], "security": "yes"}, "map"),
        timeline.Detail("services", ["checkout"], "list"),
    ]


def _row(
    seq: int, kind: str, event_id: str, retracted: bool = False, **body: object
) -> dict[str, Any]:
    return {
        "seq": seq,
        "type": kind,
        "event_id": event_id,
        "actor": "ana",
        "retracted": retracted,
        "body": dict(body),
    }


def test_corrections_and_retractions_sit_next_to_their_event() -> None:
    rows = [
        _row(1, "incident.note_added", "n1", text="db is fine"),
        _row(2, "mitigation.started", "m1", True, mitigation_id="a", action="rollback"),
        _row(
            3,
            "event.corrected",
            "c1",
            target_event_id="n1",
            corrected_text="db is not fine",
            reason="misread",
        ),
        _row(4, "event.retracted", "r1", target_event_id="m1", reason="never ran"),
        _row(5, "mitigation.started", "m2", mitigation_id="b", action="restart"),
        _row(6, "mitigation.started", "m3", mitigation_id="c", action="scale"),
        _row(7, "mitigation.completed", "m4", mitigation_id="c", outcome="succeeded"),
    ]
    shown = timeline.entries(rows)
    (correction,) = shown[0]["amendments"]
    assert (correction["type"], correction["seq"]) == ("event.corrected", 3)
    assert [d.label for d in correction["details"]] == ["corrected text", "reason"]
    (retraction,) = shown[1]["amendments"]
    assert retraction["type"] == "event.retracted"
    assert shown[2]["amendments"] == []
    running = timeline.open_mitigations(rows)
    assert [m["mitigation_id"] for m in running] == ["b"]  # a retracted, c completed


def test_sessions_end_when_idle_too_long_or_too_old_or_signed_out() -> None:
    now = [0.0]
    sessions = Sessions(clock=lambda: now[0])
    session_id, session = sessions.start(RESPONDER)
    assert session_id not in session.csrf and len(session_id) >= 40
    assert sessions.get(session_id) == session
    assert sessions.get("forged") is None and sessions.get(None) is None
    now[0] = IDLE_S / 2
    assert sessions.get(session_id) is not None  # a request restarts the idle clock
    now[0] += IDLE_S - 1  # longer than IDLE_S since the start, not since the last request
    assert now[0] < LIFETIME_S and sessions.get(session_id) is not None
    now[0] = LIFETIME_S + 1
    assert sessions.get(session_id) is None  # a shift is over, however busy
    idle, _ = sessions.start(RESPONDER)
    now[0] += IDLE_S + 1
    assert sessions.get(idle) is None
    other, _ = sessions.start(RESPONDER)
    sessions.end(other)
    assert sessions.get(other) is None and len(sessions) == 0


def test_sessions_are_bounded_oldest_dropped_first() -> None:
    sessions = Sessions()
    first, _ = sessions.start(None)
    for _ in range(MAX_SESSIONS):
        sessions.start(None)
    assert len(sessions) == MAX_SESSIONS and sessions.get(first) is None


def test_csrf_tokens_match_only_themselves() -> None:
    _, session = Sessions().start(RESPONDER)
    assert session.csrf_matches(session.csrf)
    assert not session.csrf_matches(None) and not session.csrf_matches(session.csrf[:-1])


NOW = datetime(2026, 1, 2, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("30m", NOW + timedelta(minutes=30)),
        ("1h30m", NOW + timedelta(minutes=90)),
        ("2026-01-02 11:00", datetime(2026, 1, 2, 11, 0, tzinfo=UTC)),  # the page's UTC
        ("2026-01-02T11:00:00Z", datetime(2026, 1, 2, 11, 0, tzinfo=UTC)),
        ("2026-01-02T20:00:00+09:00", datetime(2026, 1, 2, 11, 0, tzinfo=UTC)),
    ],
)
def test_a_time_typed_in_a_form(typed: str, meant: datetime) -> None:
    assert moment(typed, NOW, "next_update_at") == meant


def test_a_form_time_that_is_neither_names_its_field() -> None:
    with pytest.raises(ServiceError) as refused:
        moment("soon", NOW, "next_update_at")
    assert refused.value.field == "next_update_at"


def test_markdown_is_rendered_without_raw_html_or_script_links() -> None:
    html = markdown.html(
        "# Title\n\n| a | b |\n|---|---|\n| x<br>y | <img src=x onerror=alert(1)> |\n\n"
        "[click](javascript:alert(2)) [ok](https://example.com)\n"
    )
    assert "<h1>Title</h1>" in html and "<table>" in html
    assert "x<br>y" in html  # the draft's line breaks in cells
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert 'href="javascript' not in html and '<a href="https://example.com">ok</a>' in html
