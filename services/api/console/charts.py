"""Bar charts as SVG, rendered on the server (pure: numbers in, markup out).

Each chart is an `<svg role="img">` named by its `<title>` and described by its `<desc>`,
and each bar carries its own `<title>` (series, category, value), which screen readers and
tooltips read. Bars are grouped (one per series, side by side) or stacked. Colours are
presentation attributes, not inline styles, so the console's Content-Security-Policy holds;
the SVG scales to its container (`viewBox`).
"""

import html
import itertools
import math
import re
from collections.abc import Callable, Sequence
from typing import Final, NamedTuple

from markupsafe import Markup

# Distinguishable, and readable on white (Okabe-Ito, without yellow).
PALETTE: Final = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#56b4e9", "#e69f00", "#000000")
# Round steps for a time axis, in seconds: 1 s ... 1 week.
TIME_STEPS: Final = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
                     21600, 43200, 86400, 172800, 604800)  # fmt: skip
_WIDTH: Final = 640
_HEIGHT: Final = 260
_LEFT: Final = 64
_RIGHT: Final = 12
_TOP: Final = 12
_BOTTOM: Final = 48
_TICKS: Final = 4
_BAR_AT_MOST: Final = 40.0
_ids = itertools.count(1)


class Series(NamedTuple):
    name: str
    values: Sequence[float | None]  # one per category; None: no value (no bar)


def _step(top: float, steps: Sequence[float] | None) -> float:
    """The smallest round step that covers `top` in `_TICKS` ticks."""
    rough = top / _TICKS
    if steps:
        return next((s for s in steps if s >= rough), steps[-1] * math.ceil(rough / steps[-1]))
    magnitude = 10.0 ** math.floor(math.log10(rough))
    return next(m * magnitude for m in (1.0, 2.0, 5.0, 10.0) if m * magnitude >= rough)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "chart"


def bar_chart(
    title: str,
    description: str,
    categories: Sequence[str],
    series: Sequence[Series],
    label: Callable[[float], str] = lambda v: f"{v:g}",
    *,
    stacked: bool = False,
    steps: Sequence[float] | None = None,
) -> Markup:
    """An SVG bar chart; `label` writes a value (axis and bar titles), `steps` are the round
    values the axis may step by (`TIME_STEPS` for durations; 1-2-5 by default)."""
    chart_id = f"{_slug(title)}-{next(_ids)}"
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM
    columns = [[v or 0.0 for v in s.values] for s in series]
    if stacked:
        top = max((sum(c) for c in zip(*columns, strict=True)), default=0.0)
    else:
        top = max((v for c in columns for v in c), default=0.0)
    step = _step(top, steps) if top > 0 else 1.0
    ceiling = step * max(1, math.ceil(top / step))

    def y(value: float) -> float:
        return _TOP + plot_h - plot_h * value / ceiling

    e = html.escape
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
        f'role="img" aria-labelledby="{chart_id}-t {chart_id}-d" font-family="system-ui, '
        f'sans-serif" font-size="11">',
        f'<title id="{chart_id}-t">{e(title)}</title>',
        f'<desc id="{chart_id}-d">{e(description)}</desc>',
    ]
    for n in range(math.ceil(ceiling / step) + 1):
        value = n * step
        parts.append(
            f'<line x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            f'stroke="#e3e6ec"/><text x="{_LEFT - 6}" y="{y(value) + 4:.1f}" '
            f'text-anchor="end" fill="#4b5563">{e(label(value))}</text>'
        )
    slot = plot_w / max(1, len(categories))
    bars = 1 if stacked else max(1, len(series))
    bar_w = min(slot * 0.8 / bars, _BAR_AT_MOST)
    for i, category in enumerate(categories):
        x0 = _LEFT + slot * i + (slot - bar_w * bars) / 2
        base = 0.0
        for j, s in enumerate(series):
            amount = s.values[i]
            if amount is None:
                continue
            low, high = (base, base + amount) if stacked else (0.0, amount)
            x = x0 if stacked else x0 + bar_w * j
            parts.append(
                f'<rect x="{x:.1f}" y="{y(high):.1f}" width="{bar_w:.1f}" '
                f'height="{max(0.0, y(low) - y(high)):.1f}" fill="{PALETTE[j % len(PALETTE)]}">'
                f"<title>{e(s.name)}, {e(category)}: {e(label(amount))}</title></rect>"
            )
            base = high if stacked else base
        middle = _LEFT + slot * (i + 0.5)
        parts.append(
            f'<text x="{middle:.1f}" y="{_TOP + plot_h + 16}" text-anchor="middle" '
            f'fill="#1d2330">{e(category)}</text>'
        )
    x = float(_LEFT)
    for j, s in enumerate(series):
        parts.append(
            f'<rect x="{x:.1f}" y="{_HEIGHT - 16}" width="10" height="10" '
            f'fill="{PALETTE[j % len(PALETTE)]}"/><text x="{x + 14:.1f}" y="{_HEIGHT - 7}" '
            f'fill="#1d2330">{e(s.name)}</text>'
        )
        x += 24 + 7 * len(s.name)
    if not categories:
        parts.append(
            f'<text x="{_WIDTH / 2}" y="{_TOP + plot_h / 2}" text-anchor="middle" '
            f'fill="#6b7280">no data yet</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
