"""The region's indicators in the open report's formats (pipeline/report.py): the JSON object,
the text lines, the CSV tables, and the HTML page's words and line chart per indicator.

Every number is pipeline.indicators.compute's; here it is only written out, in words of one
weight whether the figure got better or worse (the words come from report.Words).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from . import spreadsheet
from .indicators import Period
from .models import IndicatorView, Observation


class Words(Protocol):
    """The words this module writes with: pipeline.report.Words."""

    def __getitem__(self, key: str) -> str: ...
    def period(self, text: str) -> str: ...
    def value(self, value: float | None, view: IndicatorView) -> str: ...
    def change(self, view: IndicatorView) -> str: ...
    def direction(self, view: IndicatorView) -> str: ...
    def target(self, view: IndicatorView) -> str: ...
    def on_track(self, view: IndicatorView) -> str: ...
    def revised(self, o: Observation, view: IndicatorView) -> str: ...
    def failed(self, error: str) -> str: ...
    def series(self, view: IndicatorView) -> str: ...


def indicator_json(view: IndicatorView) -> dict[str, Any]:
    """One indicator as SPEC.md's `--format json` gives it: values as published (null when
    missing, never 0), `change` and `change_pct` as pipeline.indicators computes them."""

    def point(o: Observation | None) -> dict[str, Any] | None:
        return None if o is None else {"period": o.period, "value": o.value}

    return {
        "id": view.id,
        "title": view.title,
        "unit": view.unit,
        "better": view.better,
        "latest": point(view.latest),
        "previous": point(view.previous),
        "change": view.change,
        "change_pct": view.change_pct,
        "direction": view.direction,
        "target": view.target,
        "target_year": view.target_year,
        "on_track": view.on_track,
        "series": [
            {"period": o.period, "value": o.value, "revised_from": o.revised_from}
            for o in view.series
        ],
        "error": view.error,
    }


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def indicator_lines(view: IndicatorView, words: Words) -> list[str]:
    """What the text report says about one indicator, a line each: the latest value, its change
    and whether that is progress, the target, revisions, a failing source, the series."""
    lines = []
    if view.latest is not None:
        latest = f"{words.value(view.latest.value, view)} ({words.period(view.latest.period)})"
        if view.latest.revised_from is not None:
            latest += f", {words.revised(view.latest, view)}"
        lines.append(latest)
    change = words.change(view)
    if view.direction is not None:
        change += f": {words.direction(view)}"
    lines.append(_capital(change))
    if view.target is not None:
        lines.append(f"{words.target(view)}: {words.on_track(view)}")
    for o in view.series:
        if o.revised_from is not None and (view.latest is None or o.period != view.latest.period):
            lines.append(
                f"{words.period(o.period)}: {words.value(o.value, view)}, {words.revised(o, view)}"
            )
    if view.error:
        lines.append(_capital(words.failed(view.error)))
    if view.series:
        lines.append(f"{words['series']}: {words.series(view)}")
    if view.source:
        lines.append(f"{words['source']}: {view.source}")
    return lines


def indicator_tables(writer: spreadsheet.Writer, views: Iterable[IndicatorView]) -> None:
    """The CSV report's two indicator tables, each after an empty row, as a spreadsheet shows
    them: one row per indicator with what the report says, then every period as published.
    Empty cells are nulls (a missing value is empty, never 0)."""
    views = list(views)
    writer.writerow([])
    writer.writerow(INDICATOR_CSV_HEADER)
    for v in views:
        writer.writerow(_blank(c) for c in _indicator_row(v))
    writer.writerow([])
    writer.writerow(SERIES_CSV_HEADER)
    for v in views:
        for o in v.series:
            writer.writerow(_blank(c) for c in (v.id, o.period, o.value, o.revised_from))


INDICATOR_CSV_HEADER = [
    "indicator",
    "title",
    "unit",
    "better",
    "latest_period",
    "latest_value",
    "previous_period",
    "previous_value",
    "change",
    "change_pct",
    "direction",
    "target",
    "target_year",
    "on_track",
    "error",
]
"""The second table of the CSV report: one row per indicator, in config order."""
SERIES_CSV_HEADER = ["indicator", "period", "value", "revised_from"]
"""The third: every stored period of each indicator, oldest first."""


def _indicator_row(v: IndicatorView) -> list[object]:
    return [
        v.id,
        v.title,
        v.unit,
        v.better,
        v.latest.period if v.latest else None,
        v.latest.value if v.latest else None,
        v.previous.period if v.previous else None,
        v.previous.value if v.previous else None,
        v.change,
        v.change_pct,
        v.direction,
        v.target,
        v.target_year,
        None if v.on_track is None else str(v.on_track).lower(),
        v.error,
    ]


def _blank(value: object) -> object:
    """A null as an empty cell (never 0)."""
    return "" if value is None else value


LINE_WIDTH = 640
LINE_HEIGHT = 190
LINE_LEFT = 120
"""Room left of the plot for the first value's label; the last value's is on the right."""
LINE_RIGHT = 120
LINE_TOP = 24
LINE_BOTTOM = 34
"""Room under the plot for the first and last periods."""


def indicator_chart(view: IndicatorView, words: Words) -> dict[str, Any]:
    """One indicator's line chart: a point per period with a value, joined to the period before
    when that has one, so that a missing value is a gap in the line (never drawn as 0); the
    target as a dashed line across the plot. Periods are placed by time, not by position in the
    list. One colour and one thickness whichever way the figures go."""
    valued = [(Period.parse(o.period), o.value) for o in view.series if o.value is not None]
    chart: dict[str, Any] = {
        "width": LINE_WIDTH,
        "height": LINE_HEIGHT,
        "left": LINE_LEFT,
        "right": LINE_WIDTH - LINE_RIGHT,
        "top": LINE_TOP,
        "bottom": LINE_HEIGHT - LINE_BOTTOM,
        "title": f"{view.title}: {words.series(view) or words['no_figures']}",
        "segments": [],
        "points": [],
        "labels": [],
        "target": None,
    }
    if not valued:
        return chart
    periods = [Period.parse(o.period) for o in view.series]
    first, last = periods[0].index, periods[-1].index
    numbers = [v for _, v in valued] + ([view.target] if view.target is not None else [])
    low, high = min(numbers), max(numbers)
    pad = (high - low) * 0.1 or abs(high) * 0.1 or 1.0
    low, high = low - pad, high + pad
    right: float = chart["right"]
    bottom: float = chart["bottom"]

    def x(period: Period) -> float:
        if last == first:
            return (LINE_LEFT + right) / 2
        return round(LINE_LEFT + (period.index - first) / (last - first) * (right - LINE_LEFT), 1)

    def y(value: float) -> float:
        return round(bottom - (value - low) / (high - low) * (bottom - LINE_TOP), 1)

    segment: list[str] = []
    before: Period | None = None
    for period, o in zip(periods, view.series, strict=True):
        if o.value is None or (before is not None and period.index != before.index + 1):
            if len(segment) > 1:
                chart["segments"].append(" ".join(segment))
            segment = []
        if o.value is not None:
            segment.append(f"{x(period)},{y(o.value)}")
            chart["points"].append(
                {
                    "x": x(period),
                    "y": y(o.value),
                    "title": f"{words.period(o.period)}: {words.value(o.value, view)}",
                }
            )
        before = period
    if len(segment) > 1:
        chart["segments"].append(" ".join(segment))
    (p0, v0), (p1, v1) = valued[0], valued[-1]
    chart["labels"] = [
        {"x": x(p0) - 8, "y": y(v0) + 4, "anchor": "end", "text": words.value(v0, view)},
        {"x": x(p1) + 8, "y": y(v1) + 4, "anchor": "start", "text": words.value(v1, view)},
    ]
    if len(valued) == 1:
        chart["labels"].pop()
    axis_y = chart["bottom"] + 20
    chart["periods"] = [
        {"x": x(periods[0]), "y": axis_y, "text": words.period(str(periods[0]))},
        {"x": x(periods[-1]), "y": axis_y, "text": words.period(str(periods[-1]))},
    ]
    if first == last:
        chart["periods"].pop()
    if view.target is not None:
        chart["target"] = {"y": y(view.target), "text": words.target(view)}
    return chart


def indicator_context(view: IndicatorView, words: Words) -> dict[str, Any]:
    """What report.html shows of one indicator: every sentence already in words."""
    latest = view.latest
    return {
        "id": view.id,
        "title": view.title,
        "value": words.value(latest.value, view) if latest else "",
        "period": words.period(latest.period) if latest else "",
        "revised": words.revised(latest, view) if latest else "",
        "change": _capital(words.change(view)),
        "direction": words.direction(view),
        "target": words.target(view),
        "on_track": words.on_track(view),
        "revisions": [
            f"{words.period(o.period)}: {words.value(o.value, view)}, {words.revised(o, view)}"
            for o in view.series
            if o.revised_from is not None and (latest is None or o.period != latest.period)
        ],
        "error": _capital(words.failed(view.error)) if view.error else "",
        "source": view.source,
        "chart": indicator_chart(view, words),
    }
