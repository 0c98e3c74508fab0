"""The region's indicators (HP 6.5): periods, and every number the report says about them.

"Embarrassingly accurate": each figure is computed from the values as they were published and
stored, and compared period with period, never by position in a list:

- **latest**: the latest period with a value. A missing value (suppressed, not yet published)
  is missing, never 0.
- **previous**: the period just before `latest` (the year before a year, the quarter before a
  quarter, the month before a month), whether or not it has a value.
- **change**: latest − previous, rounded to the indicator's decimals; **change_pct**: change
  as a percentage of |previous|, rounded to one decimal; both None when the previous period
  has no value (or, for the percentage, when it is 0).
- **direction**: "better" when the change goes the way `better` names, "worse" when it goes
  the other way, "unchanged" when it is 0 at the shown decimals.
- **on_track**: the average change per year from the first period with a value to the latest,
  continued from the end of the latest period to the end of `target_year`, reaches the target
  (at or above it for "higher", at or below for "lower"). None without a target, or with fewer
  than two periods with values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from . import redact
from .config import Config, IndicatorConfig
from .models import IndicatorView, Observation
from .store import Store

PeriodKind = Literal["Y", "Q", "M"]

_PERIOD = re.compile(
    r"^\s*(?P<year>\d{4})\s*(?:(?P<q>[KQ])\s*(?P<quarter>[1-4])|(?P<m>M)\s*(?P<month>\d{1,2}))?\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True, order=True)
class Period:
    """A year, a quarter or a month. Periods of one kind order and step as time does."""

    year: int
    kind: PeriodKind
    n: int
    """The quarter (1–4) or month (1–12); 0 for a year."""

    @classmethod
    def parse(cls, text: str) -> Period:
        """ "2024", "2024K1" (SSB's quarters), "2024Q1", "2024M01" or "2024M1"; a ValueError
        names anything else."""
        m = _PERIOD.match(text)
        if m is None:
            raise ValueError(
                f"{text!r} is not a period: write a year (2024), a quarter (2024K1 or 2024Q1) "
                "or a month (2024M01)"
            )
        year = int(m["year"])
        if m["quarter"]:
            return cls(year, "Q", int(m["quarter"]))
        if m["month"]:
            month = int(m["month"])
            if not 1 <= month <= 12:
                raise ValueError(f"{text!r}: a month is 01 to 12")
            return cls(year, "M", month)
        return cls(year, "Y", 0)

    def __str__(self) -> str:
        """The stored spelling: "2024", "2024K1", "2024M01"."""
        if self.kind == "Q":
            return f"{self.year}K{self.n}"
        if self.kind == "M":
            return f"{self.year}M{self.n:02d}"
        return str(self.year)

    @property
    def per_year(self) -> int:
        return {"Y": 1, "Q": 4, "M": 12}[self.kind]

    @property
    def index(self) -> int:
        """A running number: consecutive periods of one kind differ by 1."""
        return self.year * self.per_year + max(self.n - 1, 0)

    def before(self) -> Period:
        """The period just before this one."""
        if self.kind == "Y":
            return Period(self.year - 1, "Y", 0)
        if self.n > 1:
            return Period(self.year, self.kind, self.n - 1)
        return Period(self.year - 1, self.kind, self.per_year)

    @property
    def end(self) -> float:
        """When the period ends, in years (2024 ends at 2025.0; 2024K1 at 2024.25)."""
        if self.kind == "Y":
            return float(self.year + 1)
        return self.year + self.n / self.per_year


def normalise(text: str) -> str:
    """A period as stored ("2024K1" for "2024Q1"); a ValueError for anything else."""
    return str(Period.parse(text))


def compute(
    indicator: IndicatorConfig,
    series: list[Observation],
    *,
    unit: str = "",
    decimals: int | None = None,
    error: str | None = None,
    source: str = "",
) -> IndicatorView:
    """What the report says about one indicator, from its stored series (any order). `unit`
    and `decimals` are the dataset's, used where the config gives none."""
    places = indicator.decimals if indicator.decimals is not None else (decimals or 0)
    dated = sorted(((Period.parse(o.period), o) for o in series), key=lambda p: p[0].index)
    kinds = {p.kind for p, _ in dated}
    if len(kinds) > 1:  # mixed years and quarters: compare only the finest kind
        finest = max(kinds, key=lambda k: {"Y": 1, "Q": 4, "M": 12}[k])
        dated = [(p, o) for p, o in dated if p.kind == finest]
    by_period = {p: o for p, o in dated}
    valued = [(p, o) for p, o in dated if o.value is not None]
    latest = valued[-1] if valued else None
    previous: tuple[Period, Observation] | None = None
    change = change_pct = None
    direction = None
    if latest is not None:
        before = latest[0].before()
        if dated and dated[0][0] <= before:  # an earlier period exists (stored or not)
            previous = (before, by_period.get(before, Observation(str(before), None)))
        if previous is not None and previous[1].value is not None:
            assert latest[1].value is not None
            change = round(latest[1].value - previous[1].value, places)
            if previous[1].value != 0:
                change_pct = round(change / abs(previous[1].value) * 100, 1)
            if change == 0:
                direction = "unchanged"
            else:
                up = change > 0
                direction = "better" if up == (indicator.better == "higher") else "worse"
    return IndicatorView(
        id=indicator.id,
        title=indicator.title,
        unit=indicator.unit if indicator.unit is not None else unit,
        better=indicator.better,
        decimals=places,
        latest=latest[1] if latest else None,
        previous=previous[1] if previous else None,
        change=change,
        change_pct=change_pct,
        direction=direction,
        target=indicator.target,
        target_year=indicator.target_year,
        on_track=_on_track(indicator, valued),
        series=tuple(o for _, o in dated),
        error=error,
        source=source,
    )


def _on_track(indicator: IndicatorConfig, valued: list[tuple[Period, Observation]]) -> bool | None:
    if indicator.target is None or indicator.target_year is None or len(valued) < 2:
        return None
    (first, a), (last, b) = valued[0], valued[-1]
    assert a.value is not None and b.value is not None
    rate = (b.value - a.value) / (last.end - first.end)
    left = max(indicator.target_year + 1 - last.end, 0.0)
    projected = b.value + rate * left
    if indicator.better == "higher":
        return projected >= indicator.target
    return projected <= indicator.target


def views(config: Config, store: Store) -> list[IndicatorView]:
    """Every configured indicator as the report shows it, in config order (never sorted by how
    good the news is): from the values stored, with the last fetch's error when it failed."""
    out = []
    for indicator in config.indicator:
        state = store.indicator_source(indicator.id)
        failing = state is not None and state.consecutive_failures > 0
        out.append(
            compute(
                indicator,
                store.indicator_series(indicator.id),
                unit=state.unit if state else "",
                decimals=state.decimals if state else None,
                error=redact.text(state.last_error)
                if failing and state and state.last_error
                else None,
                source=redact.url(indicator.source) if not indicator.is_local else "",
            )
        )
    return out
