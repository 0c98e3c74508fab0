"""The open report: each ambassador's plan, what they have done this year, and the gap.

SPEC.md "The ambassador plan and the open report". For a calendar year in newsletter.timezone:

- **actual**: items dated in that year up to now (the feed's published date, else when trnews
  first saw the item), per kind (chronicles, blog posts, films), counted once per ambassador:
  a co-written chronicle counts for each author. Meetings of that year that have started and
  list the ambassador (a `[[meeting]]` table's `ambassadors`, or a calendar attendee matched
  by e-mail; see pipeline.calendars).
- **expected by now**: the plan times the share of the year gone, rounded to one decimal.
- **totals** add up the rows (a co-written chronicle once per author, as the plans count).
- **messages**: that year's items (credited to an ambassador in the config) that carry each
  message of the bank, by pipeline.library's one definition (`carries`: a keyword as a whole
  word, or as the start of one with `*`). Items are tagged when the report is made, so an
  edited keyword list applies to past items too.
- **counting_since**: when trnews first collected (the database's meta `counting_since`):
  items from before then count only if the feeds still carried them.

Every ambassador is listed, the ones at zero too, ordered by name in the newsletter language's
alphabetical order (bokmål and nynorsk: … X Y Z Æ Ø Å). The report is text, JSON, CSV or an
HTML page with an inline SVG chart (no JavaScript) in which a gap behind the plan and a gap
ahead of it are drawn alike, only on either side of the line.

The region's indicators (SPEC.md "The region's indicators") follow, in config order whatever
their news: every number is pipeline.indicators.compute's, from the values stored; here they are
only put in words, of one weight whether the figure got better or worse, and drawn as a line
chart per indicator (a missing value is a gap in the line, never 0; the target a dashed line).
"""

from __future__ import annotations

import functools
import gettext
import io
import json
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from babel.dates import format_date
from babel.numbers import format_decimal

from . import indicators, redact, spreadsheet
from .calendars import Fetched, meetings_between
from .config import Config
from .indicators import Period
from .library import carries
from .models import CalendarProblem, IndicatorView, Observation
from .report_indicators import (
    indicator_context,
    indicator_json,
    indicator_lines,
    indicator_tables,
)
from .store import Store, parse_iso
from .templates import Escaping, decimal, environment, long_date, translations

KINDS = ("chronicles", "blog_posts", "videos", "meetings")
"""The things an ambassador plans, in the order every format shows them."""
_ITEM_KIND = {"chronicle": "chronicles", "blog": "blog_posts", "video": "videos"}

# -- ordering and the message bank -----------------------------------------------------------

_NORWEGIAN_LAST = {"æ": "\U0010fff0", "ä": "\U0010fff0", "ø": "\U0010fff1", "ö": "\U0010fff1"}
_NORWEGIAN_LAST["å"] = "\U0010fff2"


def sort_key(name: str, language: str) -> tuple[str, str]:
    """How `name` sorts in `language`: bokmål and nynorsk put Æ, Ø, Å after Z (Ä and Ö with
    Æ and Ø, and "Aa" as Å, as Norwegian dictionaries and the CLDR do); accents are ignored.
    English folds Æ to "ae", Ø to "o" and Å to "a"."""
    folded = name.casefold()
    if language in ("nb", "nn"):
        folded = folded.replace("aa", "å")
        chars = [_NORWEGIAN_LAST.get(c) or _base(c) for c in folded]
    else:
        chars = [{"æ": "ae", "ø": "o", "ð": "d", "þ": "th"}.get(c) or _base(c) for c in folded]
    return "".join(chars), name


def _base(char: str) -> str:
    """`char` without its accents (é → e)."""
    return "".join(c for c in unicodedata.normalize("NFD", char) if not unicodedata.combining(c))


# -- the report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One ambassador's line: plan, actual and expected-by-now for each of KINDS."""

    id: str
    name: str
    plan: dict[str, int]
    actual: dict[str, int]
    expected_by_now: dict[str, float]

    def gap(self, kind: str) -> float:
        """Actual minus expected: negative behind the plan, positive ahead of it."""
        return round(self.actual[kind] - self.expected_by_now[kind], 1)


@dataclass(frozen=True)
class MessageRow:
    id: str
    title: str
    items: int


@dataclass(frozen=True)
class Report:
    """The open report for one calendar year, as of one moment."""

    year: int
    as_of: datetime
    """Aware, in newsletter.timezone."""
    share: float
    """The share of the year gone at `as_of`, from 0 to 1."""
    counting_since: datetime | None
    ambassadors: tuple[Row, ...]
    messages: tuple[MessageRow, ...]
    calendar_problems: tuple[CalendarProblem, ...] = ()
    language: str = "nb"
    title: str = ""
    """The newsletter's title."""
    totals: dict[str, dict[str, float]] = field(default_factory=dict)
    indicators: tuple[IndicatorView, ...] = ()
    """The region's indicators, in config order."""

    def as_json(self) -> dict[str, Any]:
        """The report as SPEC.md's `--format json` gives it (plus `share_of_year`,
        `totals.expected_by_now` and `calendar_errors`)."""
        return {
            "year": self.year,
            "as_of": self.as_of.isoformat(timespec="seconds"),
            "share_of_year": round(self.share, 4),
            "counting_since": (
                self.counting_since.astimezone(self.as_of.tzinfo).isoformat(timespec="seconds")
                if self.counting_since
                else None
            ),
            "ambassadors": [
                {
                    "id": r.id,
                    "name": r.name,
                    "plan": dict(r.plan),
                    "actual": dict(r.actual),
                    "expected_by_now": dict(r.expected_by_now),
                }
                for r in self.ambassadors
            ],
            "totals": self.totals,
            "messages": [{"id": m.id, "title": m.title, "items": m.items} for m in self.messages],
            "calendar_errors": [
                {"calendar": p.calendar, "error": p.error, "events_left_out": p.events_left_out}
                for p in self.calendar_problems
            ],
            "indicators": [indicator_json(v) for v in self.indicators],
        }


def year_bounds(year: int, config: Config) -> tuple[datetime, datetime]:
    """The first moment of `year` and of the next, in newsletter.timezone."""
    tz = config.newsletter.tz
    return datetime(year, 1, 1, tzinfo=tz), datetime(year + 1, 1, 1, tzinfo=tz)


def share_of_year(year: int, as_of: datetime, config: Config) -> float:
    """How much of `year` has gone at `as_of`: 0 before it begins, 1 once it is over."""
    start, end = (t.astimezone(UTC) for t in year_bounds(year, config))
    now = min(max(as_of.astimezone(UTC), start), end)
    # In UTC: subtracting two times of one zone ignores a daylight-saving change between them.
    return (now - start).total_seconds() / (end - start).total_seconds()


def _item_counts(store: Store, start: datetime, until: datetime) -> dict[str, dict[str, int]]:
    """Items dated from `start` until (not including) `until`, by ambassador and kind."""
    return {
        ambassador: {_ITEM_KIND[kind]: n for kind, n in kinds.items()}
        for ambassador, kinds in store.item_counts(start, until).items()
    }


def build(
    config: Config,
    *,
    year: int | None = None,
    as_of: datetime | None = None,
    store: Store | None = None,
    calendars: list[Fetched] | None = None,
) -> Report:
    """The report for `year` (default: the year of `as_of`) as of `as_of` (default: now).

    Reads the items from `store` (nothing is written), or from the configured database when it
    exists (none: every item count is 0); fetches the calendars for the meetings, unless
    `calendars` gives them already fetched.
    """
    tz = config.newsletter.tz
    as_of = (as_of or datetime.now(UTC)).astimezone(tz)
    year = year or as_of.year
    start, end = year_bounds(year, config)
    until = min(end, as_of + timedelta(microseconds=1))  # items dated at as_of count
    share = share_of_year(year, as_of, config)

    items: dict[str, dict[str, int]] = {}
    texts: list[tuple[str, str]] = []
    counting_since = None
    own = None
    # No database yet: every indicator without figures, in config order.
    shown = tuple(indicators.compute(i, []) for i in config.indicator)
    if store is None and config.database_path.exists():
        store = own = Store.open(config.database_path)
    try:
        if store is not None:
            shown = tuple(indicators.views(config, store))
            since = store.get_meta("counting_since")
            counting_since = parse_iso(since) if since else None
            if until > start:
                items = _item_counts(store, start, until)
                texts = store.item_texts(start, until, [a.id for a in config.ambassador])
    finally:
        if own is not None:
            own.close()

    meeting_counts: dict[str, int] = {}
    problems: tuple[CalendarProblem, ...] = ()
    if until > start:
        found = meetings_between(
            config, start, until - timedelta(microseconds=1), calendars=calendars
        )
        # Shown on the public /report: a private calendar's URL is its password.
        problems = tuple(
            CalendarProblem(redact.url(p.calendar), redact.text(p.error), p.events_left_out)
            for p in found.problems
        )
        for m in found.meetings:
            for amb_id in m.ambassadors:
                meeting_counts[amb_id] = meeting_counts.get(amb_id, 0) + 1

    rows = []
    for amb in sorted(
        config.ambassador, key=lambda a: sort_key(a.name, config.newsletter.language)
    ):
        plan = {k: getattr(amb.plan, k) for k in KINDS}
        actual = {
            "chronicles": items.get(amb.id, {}).get("chronicles", 0),
            "blog_posts": items.get(amb.id, {}).get("blog_posts", 0),
            "videos": items.get(amb.id, {}).get("videos", 0),
            "meetings": meeting_counts.get(amb.id, 0),
        }
        expected = {k: round(plan[k] * share, 1) for k in KINDS}
        rows.append(Row(amb.id, amb.name, plan, actual, expected))

    messages = tuple(
        MessageRow(m.id, m.title, sum(1 for t, e in texts if carries(m, t, e)))
        for m in config.message
    )
    totals: dict[str, dict[str, float]] = {
        "plan": {k: sum(r.plan[k] for r in rows) for k in KINDS},
        "actual": {k: sum(r.actual[k] for r in rows) for k in KINDS},
        # The rows as printed (rounded), added up: a total that rounds the sum of the plans
        # instead can differ from its own column by a tenth.
        "expected_by_now": {k: round(sum(r.expected_by_now[k] for r in rows), 1) for k in KINDS},
    }
    return Report(
        year=year,
        as_of=as_of,
        share=share,
        counting_since=counting_since,
        ambassadors=tuple(rows),
        messages=messages,
        calendar_problems=problems,
        language=config.newsletter.language,
        title=config.newsletter.title,
        totals=totals,
        indicators=shown,
    )


# -- formats -----------------------------------------------------------------------------------


@functools.cache
def _plain_words(language: str) -> dict[str, str]:
    """The report's words that take no values, by the key the code and report.html use."""
    t = translations(language)
    return {
        # Translators: the three things an ambassador plans, as the report's headings.
        "chronicles": t.pgettext("open report", "Chronicles"),
        "blog_posts": t.pgettext("open report", "Blog posts"),
        "videos": t.pgettext("open report", "Videos"),
        "meetings": t.pgettext("open report", "Meetings"),
        "ambassador": t.pgettext("open report", "Ambassador"),
        # Translators: the report's columns: done, expected by now, planned, and the difference.
        "actual": t.pgettext("open report", "Actual"),
        "expected": t.pgettext("open report", "Expected by now"),
        "plan": t.pgettext("open report", "Plan"),
        "gap": t.pgettext("open report", "Gap"),
        "total": t.pgettext("open report", "Total"),
        "messages": t.pgettext("open report", "Messages"),
        "items": t.pgettext("open report", "Items"),
        "no_messages": t.pgettext("open report", "No messages in the message bank."),
        # Translators: above the chart, left and right of the line where the plan is met.
        "behind": t.pgettext("open report", "behind plan"),
        "ahead": t.pgettext("open report", "ahead of plan"),
        "chart": t.pgettext(
            "open report", "Gap against what the plan expects by now (actual minus expected)"
        ),
        "never": t.pgettext("open report", "Nothing has been collected yet: run 'trnews collect'."),
        # Translators: the heading of the region's statistics in the report and in editions.
        "indicators": t.pgettext("indicators", "The region's indicators"),
        # Translators: a period the source marks missing (suppressed, not yet published).
        "missing": t.pgettext("indicators", "missing"),
        "no_figures": t.pgettext("indicators", "No figures yet."),
        "series": t.pgettext("indicators", "Series"),
        "source": t.pgettext("indicators", "Source"),
    }


@dataclass(frozen=True)
class Words:
    """The report's words, numbers and dates in the newsletter language."""

    language: str

    @property
    def t(self) -> gettext.GNUTranslations:
        return translations(self.language)

    def __getitem__(self, key: str) -> str:
        return _plain_words(self.language)[key]

    def plain(self) -> dict[str, str]:
        """Every word that takes no values, as report.html finds them in `words`."""
        return dict(_plain_words(self.language))

    def title(self, year: int) -> str:
        return self.t.pgettext("open report", "The ambassador plan %(year)s: open report") % {
            "year": year
        }

    def as_of(self, date: str, share: str) -> str:
        return self.t.pgettext(
            "open report", "As of %(date)s, %(share)s of the year has passed."
        ) % {"date": date, "share": share}

    def year_done(self, year: int) -> str:
        return self.t.pgettext("open report", "The year %(year)s is over.") % {"year": year}

    def year_ahead(self, year: int) -> str:
        return self.t.pgettext("open report", "The year %(year)s has not begun.") % {"year": year}

    def since(self, date: str) -> str:
        return self.t.pgettext(
            "open report",
            "Collection began on %(date)s: posts from before then count only if the feed "
            "still carried them.",
        ) % {"date": date}

    def calendar(self, name: str, error: str, *, events_left_out: bool) -> str:
        """Why a calendar's meetings are missing: all of them, or only some events."""
        if events_left_out:
            said = self.t.pgettext(
                "open report", "The calendar %(name)s: %(error)s. Its other meetings are counted."
            )
        else:
            said = self.t.pgettext(
                "open report",
                "The calendar %(name)s could not be read (%(error)s): its meetings are not "
                "counted.",
            )
        return said % {"name": name, "error": error}

    def compact(self, year: int) -> str:
        return self.t.pgettext("open report", "The ambassador plan %(year)s") % {"year": year}

    def compact_note(self, date: str) -> str:
        return self.t.pgettext(
            "open report",
            "Actual / plan for the year, and the gap against what the plan expects by %(date)s.",
        ) % {"date": date}

    def of(self, actual: int, plan: int) -> str:
        # Translators: an ambassador's count against the plan for the year: "3 of 8".
        return self.t.pgettext("open report", "%(actual)s of %(plan)s") % {
            "actual": actual,
            "plan": plan,
        }

    def number(self, value: float) -> str:
        return decimal(value, self.language)

    def gap(self, value: float) -> str:
        """A signed gap, "+0,4" or "−1,6": ahead and behind written alike."""
        sign = "+" if value > 0 else "−" if value < 0 else "±"
        return sign + self.number(abs(value))

    def share(self, value: float) -> str:
        number = decimal(value * 100, self.language)
        return f"{number}%" if self.language == "en" else f"{number}\u00a0%"

    def date(self, value: datetime) -> str:
        return long_date(value, self.language)

    # -- the region's indicators ---------------------------------------------------------------

    def period(self, text: str) -> str:
        """A stored period in words: "2024", "1. kvartal 2024" / "2024 Q1", "januar 2024"."""
        period = Period.parse(text)
        if period.kind == "Q":
            # Translators: a quarter of a year, as in "1. kvartal 2024".
            return self.t.pgettext("indicators", "%(year)s Q%(quarter)s") % {
                "year": period.year,
                "quarter": period.n,
            }
        if period.kind == "M":
            return format_date(date(period.year, period.n, 1), "LLLL y", locale=self.language)
        return str(period.year)

    def amount(self, value: float, decimals: int) -> str:
        """A number without its sign, grouped and with `decimals` decimals: "160 000", "2,1"."""
        pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
        return format_decimal(abs(value), format=pattern, locale=self.language)

    def value(self, value: float | None, view: IndicatorView) -> str:
        """A value with its unit: "2,1%" ("%" without a space), "160 000 personer"; the word
        for missing when there is none."""
        if value is None:
            return self["missing"]
        number = ("−" if value < 0 else "") + self.amount(value, view.decimals)
        return self._with_unit(number, view.unit)

    @staticmethod
    def _with_unit(number: str, unit: str) -> str:
        if not unit:
            return number
        return number + unit if unit == "%" else f"{number}\u00a0{unit}"

    def percent(self, value: float) -> str:
        """A signed percentage of change: "+4,5%", "−4,5%", "±0,0%"."""
        sign = "+" if value > 0 else "−" if value < 0 else "±"
        return f"{sign}{self.amount(value, 1)}%"

    def change(self, view: IndicatorView) -> str:
        """How the latest value stands against the period before, without judging it:
        "0,1 prosentpoeng lavere enn i 2024 (−4,5%)"; what to say when there is nothing to
        compare with."""
        if view.latest is None:
            return self["no_figures"]
        if view.previous is None:
            return self.t.pgettext("indicators", "Only one period so far: no change to show.")
        before = self.period(view.previous.period)
        if view.change is None:
            return self.t.pgettext("indicators", "No value for %(period)s to compare with.") % {
                "period": before
            }
        amount = self.amount(view.change, view.decimals)
        if view.unit == "%":
            # Translators: the change of a figure given in per cent: "0,1 prosentpoeng".
            amount = self.t.pgettext("indicators", "%(amount)s percentage points") % {
                "amount": amount
            }
        else:
            amount = self._with_unit(amount, view.unit)
        if view.change > 0:
            said = self.t.pgettext("indicators", "%(amount)s higher than in %(period)s")
        elif view.change < 0:
            said = self.t.pgettext("indicators", "%(amount)s lower than in %(period)s")
        else:
            said = self.t.pgettext("indicators", "the same as in %(period)s")
        text = said % {"amount": amount, "period": before}
        if view.change_pct is not None:
            text += f" ({self.percent(view.change_pct)})"
        return text

    def direction(self, view: IndicatorView) -> str:
        """Whether that is progress, in words of one weight either way: "bedre enn året før",
        "svakere enn året før", "uendret fra året før" (the quarter, the month before)."""
        if view.direction is None or view.latest is None:
            return ""
        kind = Period.parse(view.latest.period).kind
        t = self.t
        said = {
            ("better", "Y"): t.pgettext("indicators", "better than the year before"),
            ("worse", "Y"): t.pgettext("indicators", "worse than the year before"),
            ("unchanged", "Y"): t.pgettext("indicators", "unchanged from the year before"),
            ("better", "Q"): t.pgettext("indicators", "better than the quarter before"),
            ("worse", "Q"): t.pgettext("indicators", "worse than the quarter before"),
            ("unchanged", "Q"): t.pgettext("indicators", "unchanged from the quarter before"),
            ("better", "M"): t.pgettext("indicators", "better than the month before"),
            ("worse", "M"): t.pgettext("indicators", "worse than the month before"),
            ("unchanged", "M"): t.pgettext("indicators", "unchanged from the month before"),
        }
        return said[(view.direction, kind)]

    def target(self, view: IndicatorView) -> str:
        """ "Mål for 2030: 160 000 personer"; empty without a target."""
        if view.target is None or view.target_year is None:
            return ""
        return self.t.pgettext("indicators", "Target for %(year)s: %(value)s") % {
            "year": view.target_year,
            "value": self.value(view.target, view),
        }

    def on_track(self, view: IndicatorView) -> str:
        """Whether the trend so far reaches the target in time, said as plainly either way."""
        if view.target is None or view.target_year is None:
            return ""
        values = {"year": view.target_year}
        if view.on_track is None:
            return (
                self.t.pgettext(
                    "indicators",
                    "too few periods yet to say whether the %(year)s target is reached",
                )
                % values
            )
        if view.on_track:
            return self.t.pgettext("indicators", "on track for the %(year)s target") % values
        return self.t.pgettext("indicators", "not on track for the %(year)s target") % values

    def revised(self, o: Observation, view: IndicatorView) -> str:
        """ "revidert fra 151 500 personer"; empty unless the value was revised."""
        if o.revised_from is None:
            return ""
        return self.t.pgettext("indicators", "revised from %(value)s") % {
            "value": self.value(o.revised_from, view)
        }

    def failed(self, error: str) -> str:
        return self.t.pgettext(
            "indicators", "the last fetch failed: %(error)s; showing the last good figures"
        ) % {"error": error}

    def indicator_line(self, view: IndicatorView) -> str:
        """The indicator in one line, as an edition closes with it: "Registrert ledighet: 2,1%
        (2025), 0,1 prosentpoeng lavere enn i 2024 (−4,5%): bedre enn året før"."""
        if view.latest is None:
            text = f"{view.title}: {self['no_figures']}"
        else:
            text = (
                f"{view.title}: {self.value(view.latest.value, view)} "
                f"({self.period(view.latest.period)}), {self.change(view)}"
            )
            if view.direction is not None:
                text += f": {self.direction(view)}"
        if view.target is not None:
            text += f"; {self.on_track(view)}"
        if view.error:
            text += f" ({self.failed(view.error)})"
        return text

    def series(self, view: IndicatorView) -> str:
        """The whole series in words, for the chart's title and the text report."""
        return "; ".join(
            f"{self.period(o.period)}: {self.value(o.value, view)}" for o in view.series
        )


def _head(report: Report, words: Words) -> list[str]:
    """The lines under the title: how far the year has come, since when counts run, and
    which calendars are missing."""
    lines = []
    if report.share >= 1:
        lines.append(words.year_done(report.year))
    elif report.share <= 0:
        lines.append(words.year_ahead(report.year))
    else:
        lines.append(words.as_of(words.date(report.as_of), words.share(report.share)))
    if report.counting_since is None:
        lines.append(words["never"])
    else:
        since = report.counting_since.astimezone(report.as_of.tzinfo)
        lines.append(words.since(words.date(since)))
    for p in report.calendar_problems:
        lines.append(words.calendar(p.calendar, p.error, events_left_out=bool(p.events_left_out)))
    return lines


def to_text(report: Report) -> str:
    """The report as plain text: one table per kind, then the messages."""
    words = Words(report.language)
    lines = [words.title(report.year), *_head(report, words), ""]
    names = [r.name for r in report.ambassadors] + [words["total"]]
    width = max(len(n) for n in names) + 2
    columns = [words[c] for c in ("actual", "expected", "plan", "gap")]
    widths = [max(len(c), 7) + 2 for c in columns]
    for kind in KINDS:
        head = words[kind].ljust(width) + "".join(
            c.rjust(w) for c, w in zip(columns, widths, strict=True)
        )
        lines += [head, "-" * len(head)]
        for r in report.ambassadors:
            cells = [
                str(r.actual[kind]),
                words.number(r.expected_by_now[kind]),
                str(r.plan[kind]),
                words.gap(r.gap(kind)),
            ]
            lines.append(
                r.name.ljust(width)
                + "".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))
            )
        t = report.totals
        total_gap = round(t["actual"][kind] - t["expected_by_now"][kind], 1)
        cells = [
            str(t["actual"][kind]),
            words.number(t["expected_by_now"][kind]),
            str(t["plan"][kind]),
            words.gap(total_gap),
        ]
        lines.append(
            words["total"].ljust(width)
            + "".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))
        )
        lines.append("")
    lines.append(words["messages"])
    lines.append("-" * len(words["messages"]))
    if not report.messages:
        lines.append(words["no_messages"])
    title_width = max((len(m.title) for m in report.messages), default=0) + 2
    for m in report.messages:
        lines.append(f"{m.title.ljust(title_width)}{m.items:>5} {words['items'].lower()}")
    if report.indicators:
        lines += ["", words["indicators"], "-" * len(words["indicators"])]
        for view in report.indicators:
            lines += [view.title, *(f"  {line}" for line in indicator_lines(view, words)), ""]
        lines.pop()
    return "\n".join(lines) + "\n"


def to_json(report: Report) -> str:
    return json.dumps(report.as_json(), indent=2, ensure_ascii=False) + "\n"


CSV_HEADER = [
    "year",
    "id",
    "name",
    *(f"{kind}_{what}" for kind in KINDS for what in ("plan", "actual", "expected_by_now")),
]
"""One row per ambassador; totals and messages are in the other formats."""


def to_csv(report: Report, dialect: spreadsheet.Dialect = spreadsheet.PLAIN) -> str:
    out = io.StringIO()
    writer = spreadsheet.Writer(out, dialect)
    writer.writerow(CSV_HEADER)
    for r in report.ambassadors:
        writer.writerow(
            [
                report.year,
                r.id,
                r.name,
                *(
                    v
                    for kind in KINDS
                    for v in (r.plan[kind], r.actual[kind], r.expected_by_now[kind])
                ),
            ]
        )
    if report.indicators:
        indicator_tables(writer, report.indicators)
    return out.getvalue()


# -- HTML ----------------------------------------------------------------------------------

CHART_WIDTH = 640
NAME_WIDTH = 180
"""Room for the names at the left of each chart."""
HALF = 180
"""Pixels from the line to the end of the longest bar, on either side."""
ROW_HEIGHT = 24
BAR_HEIGHT = 14
TOP = 34
"""Room above the bars for "behind plan" and "ahead of plan"."""


def chart(report: Report, kind: str, words: Words) -> dict[str, Any]:
    """One chart's geometry: a bar per ambassador from the "as planned" line, left when behind,
    right when ahead, of one colour and thickness either way, on a scale symmetric about the
    line, so that neither direction looks bigger or louder than the other."""
    centre = NAME_WIDTH + (CHART_WIDTH - NAME_WIDTH) // 2
    biggest = max((abs(r.gap(kind)) for r in report.ambassadors), default=0.0)
    scale = HALF / max(biggest, 1.0)
    bars = []
    for n, r in enumerate(report.ambassadors):
        gap = r.gap(kind)
        length = abs(gap) * scale
        y = TOP + n * ROW_HEIGHT
        x = centre - length if gap < 0 else centre
        bars.append(
            {
                "name": r.name,
                "x": round(x, 1),
                "y": y + (ROW_HEIGHT - BAR_HEIGHT) / 2,
                "width": round(length, 1),
                "height": BAR_HEIGHT,
                "text_y": y + ROW_HEIGHT / 2 + 4,
                "label": words.gap(gap),
                "label_x": round(centre - length - 5 if gap < 0 else centre + length + 5, 1),
                "anchor": "end" if gap < 0 else "start",
                "title": (
                    f"{r.name}: {words['actual'].lower()} {r.actual[kind]}, "
                    f"{words['expected'].lower()} {words.number(r.expected_by_now[kind])}, "
                    f"{words['plan'].lower()} {r.plan[kind]} ({words.gap(gap)})"
                ),
            }
        )
    height = TOP + ROW_HEIGHT * max(len(bars), 1) + 8
    return {
        "kind": words[kind],
        "width": CHART_WIDTH,
        "height": height,
        "centre": centre,
        "name_x": NAME_WIDTH - 10,
        "bars": bars,
        "line_top": TOP - 6,
        "line_bottom": height - 4,
    }


def _cells(words: Words, actual: float, expected: float, plan: float) -> list[str]:
    return [
        str(int(actual)),
        words.number(expected),
        str(int(plan)),
        words.gap(round(actual - expected, 1)),
    ]


def html_context(report: Report) -> dict[str, Any]:
    words = Words(report.language)
    t = report.totals
    return {
        "lang": report.language,
        "newsletter": report.title,
        "title": words.title(report.year),
        "head": _head(report, words),
        "kinds": [words[k] for k in KINDS],
        "columns": [words[c] for c in ("actual", "expected", "plan", "gap")],
        "words": words.plain(),
        "rows": [
            {
                "name": r.name,
                "cells": [
                    c
                    for k in KINDS
                    for c in _cells(words, r.actual[k], r.expected_by_now[k], r.plan[k])
                ],
            }
            for r in report.ambassadors
        ],
        "total": [
            c
            for k in KINDS
            for c in _cells(words, t["actual"][k], t["expected_by_now"][k], t["plan"][k])
        ],
        "charts": [chart(report, k, words) for k in KINDS],
        "messages": report.messages,
        "indicators": [indicator_context(v, words) for v in report.indicators],
    }


def to_html(report: Report, config: Config, site: dict[str, Any] | None = None) -> str:
    """The report as one HTML page with its charts inline: no script, no outside file.

    `site` is the web side's navigation (pipeline/web.py, Web.site) for GET /report; without
    it the page stands alone, to be mailed, published or printed."""
    template = environment(config, Escaping.EVERYTHING).get_template("report.html")
    return template.render({**html_context(report), "site": site})


def render(
    report: Report, fmt: str, config: Config, dialect: spreadsheet.Dialect = spreadsheet.PLAIN
) -> str:
    """The report in `fmt`: "text", "json", "csv" (in `dialect`) or "html"."""
    if fmt == "json":
        return to_json(report)
    if fmt == "csv":
        return to_csv(report, dialect)
    if fmt == "html":
        return to_html(report, config)
    return to_text(report)


# -- the compact table that can close an edition -----------------------------------------------


def compact_context(report: Report) -> dict[str, Any]:
    """What templates/report_compact.{mjml,txt} show: per ambassador "actual of plan" and the
    gap against what the plan expects by now, for each kind, and the totals."""
    words = Words(report.language)

    def line(
        name: str, actual: dict[str, Any], plan: dict[str, Any], expected: dict[str, Any]
    ) -> dict[str, Any]:
        cells = [
            {
                "count": words.of(int(actual[k]), int(plan[k])),
                "gap": words.gap(round(actual[k] - expected[k], 1)),
            }
            for k in KINDS
        ]
        # No-break spaces inside each part: wrapped, the text breaks only between the kinds.
        parts = [f"{words[k]} {c['count']} ({c['gap']})" for k, c in zip(KINDS, cells, strict=True)]
        text = "; ".join(part.replace(" ", "\u00a0") for part in parts)
        return {"name": name, "cells": cells, "line": text}

    t = report.totals
    return {
        "indicators_heading": words["indicators"],
        "indicators": [words.indicator_line(v) for v in report.indicators],
        "heading": words.compact(report.year),
        "note": words.compact_note(words.date(report.as_of)),
        "ambassador": words["ambassador"],
        "kinds": [words[k] for k in KINDS],
        "rows": [line(r.name, r.actual, r.plan, r.expected_by_now) for r in report.ambassadors],
        "total": line(words["total"], t["actual"], t["plan"], t["expected_by_now"]),
    }
