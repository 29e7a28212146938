"""The console's metrics page: MTTA and MTTR by severity and by month, breaches over time.

Figures come from the same queries as `GET /v1/metrics/mttr` (`projections.metrics.mttx`) and
`GET /v1/breaches` (`projections.breaches.breaches`); charts are drawn here, as SVG
(`charts`), each with the table of its numbers below it.
"""

from collections import Counter
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from litestar import get
from litestar.params import QueryParameter
from litestar.response import Template

from events.durations import format_duration
from events.schema import Severity
from projections import breaches, metrics
from projections.groups import GroupBy
from services.api.console.access import page, viewer
from services.api.console.charts import TIME_STEPS, Series, bar_chart
from services.api.state import AnyRequest, reader_of

STATS: Final = (("mean_s", "mean"), ("p50_s", "p50"), ("p90_s", "p90"))


def _bound(text: str | None, field: str, problems: list[str]) -> datetime | None:
    """A `from`/`to` field: a date or a time, UTC unless it says otherwise."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError:
        problems.append(f"{field}: {text!r} is not a date or a time (YYYY-MM-DD)")
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _by_severity(rows: list[dict[str, Any]], metric: str, name: str) -> dict[str, Any]:
    ordered = sorted(rows, key=lambda r: r["group"])
    categories = [r["group"] for r in ordered]
    series = [Series(label, [r[metric][key] for r in ordered]) for key, label in STATS]
    chart = bar_chart(
        f"{name} by severity",
        f"Mean, median and 90th percentile of {name} per severity, detection to "
        f"{'acknowledgement' if metric == 'mtta' else 'resolution'}.",
        categories,
        series,
        format_duration,
        steps=TIME_STEPS,
    )
    return {"chart": chart, "rows": ordered, "metric": metric, "name": name}


def _by_month(rows: list[dict[str, Any]]) -> dict[str, Any]:
    categories = [r["group"] for r in rows]
    series = [
        Series("MTTA mean", [r["mtta"]["mean_s"] for r in rows]),
        Series("MTTR mean", [r["mttr"]["mean_s"] for r in rows]),
    ]
    chart = bar_chart(
        "MTTA and MTTR by month",
        "Mean time to acknowledge and to resolve, per month of declaration (UTC).",
        categories,
        series,
        format_duration,
        steps=TIME_STEPS,
    )
    return {"chart": chart, "rows": rows}


def _breaches_by_month(found: list[dict[str, Any]]) -> dict[str, Any]:
    counted = Counter((b["due_at"].strftime("%Y-%m"), b["kind"]) for b in found)
    months = sorted({month for month, _ in counted})
    kinds = [k for k in breaches.KINDS if any(kind == k for _, kind in counted)]
    series = [Series(kind, [counted.get((m, kind)) for m in months]) for kind in kinds]
    chart = bar_chart(
        "Breaches by month",
        "Policy breaches per month of their missed deadline (UTC), stacked by kind.",
        months,
        series,
        stacked=True,
    )
    table = [{"month": m, "counts": [counted.get((m, k), 0) for k in kinds]} for m in months]
    return {"chart": chart, "kinds": kinds, "rows": table, "total": len(found)}


@get("/console/metrics", include_in_schema=False)
async def metrics_page(
    request: AnyRequest,
    from_: Annotated[str | None, QueryParameter(name="from")] = None,
    to: Annotated[str | None, QueryParameter(name="to")] = None,
) -> Template:
    seen_by = viewer(request)
    reader = reader_of(request)
    problems: list[str] = []
    since, until = _bound(from_, "from", problems), _bound(to, "to", problems)
    teams = reader.policy.teams
    severities = await reader.run(metrics.mttx, [GroupBy.SEVERITY], since, until, teams)
    months = await reader.run(metrics.mttx, [GroupBy.MONTH], since, until, teams)
    found = await reader.run(breaches.breaches, reader.policy, reader.clock())
    if since is not None or until is not None:
        found = [
            b
            for b in found
            if (since is None or b["due_at"] >= since) and (until is None or b["due_at"] < until)
        ]
    context = {
        "mtta": _by_severity(severities, "mtta", "MTTA"),
        "mttr": _by_severity(severities, "mttr", "MTTR"),
        "months": _by_month(months),
        "breaches": _breaches_by_month(found),
        "severities": [s.value for s in Severity],
        "filters": {"from": from_ or "", "to": to or ""},
        "problems": problems,
        "definitions_version": metrics.DEFINITIONS_VERSION,
        "checkpoint": reader.projector.checkpoint,
    }
    return page(request, seen_by, "metrics.html", context, 422 if problems else 200)


ROUTES: Final = [metrics_page]
