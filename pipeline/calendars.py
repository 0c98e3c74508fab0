"""Meetings from iCalendar files and URLs, joined with the `[[meeting]]` tables of the config.

- Recurring events are expanded (RRULE, RDATE), excluded dates (EXDATE) are left out, and a
  moved or changed occurrence (an override with RECURRENCE-ID) replaces the one it overrides;
  one for "this and all future" (RANGE=THISANDFUTURE) moves every later one too, each still its
  own occurrence: `recurring-ical-events` does this, `icalendar` reads the file. Two events
  sharing a UID, neither with a RECURRENCE-ID, are two events, not a series and its override.
- Time zones are kept: a TZID with its VTIMEZONE (Outlook's "W. Europe Standard Time" too), UTC
  times with Google's X-WR-TIMEZONE, and floating times, which are read in newsletter.timezone.
  An all-day event starts at midnight, like a bare date in a `[[meeting]]` table.
- An attendee (or the organizer) whose address is an ambassador's `email` links the meeting to
  that ambassador; the address is compared without regard to case, and an attendee who declined
  is not linked. Parameters written inside the value (Confluence: `ATTENDEE:X-…;CN=…:mailto:…`)
  count too. An override that lists no attendees keeps those of its series.
- Cancelled events (STATUS:CANCELLED) are left out.
- An event that cannot be read (no DTSTART, two of them, a time of day where a date belongs, a
  rule that cannot be expanded) is left out and named, with why, on its calendar's problem
  line; the calendar's other events are read.
- No duplicates across sources: the same occurrence (same UID and RECURRENCE-ID) from two
  calendars, or two meetings from two sources (the `[[meeting]]` tables, each calendar) with the
  same start and the same title (case and spacing aside), are one meeting, a `[[meeting]]` table
  winning over a calendar; the ambassadors of both are kept. Events of one calendar are never
  merged with each other (see `merge`).
- URLs are fetched as feeds are (pipeline.collect: one deadline per calendar, retries, the size
  cap, decompression under the cap). A calendar that cannot be fetched or read is reported by
  name and reason and never stops the others, the report or the edition.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .config import Config, meeting_end, meeting_start
from .models import CalendarProblem, Meetings, PlannedMeeting
from .sanitize import one_line

if TYPE_CHECKING:
    import icalendar

# icalendar, recurring-ical-events and the fetching code load only when there is a calendar to
# read: an edition with [[meeting]] tables alone never needs them.

logger = logging.getLogger(__name__)

ACCEPT = "text/calendar, application/calendar+json;q=0.5, */*;q=0.1"
MAX_OCCURRENCES = 5_000
"""More events than this in the window is a runaway recurrence (FREQ=MINUTELY), not a plan:
the calendar is reported and not read, rather than stalling the run (expanding takes about
0.2 ms an event)."""
MAX_STEPS = 40_000
"""Steps through one series from its first occurrence to the window's end, at most: a series
every minute since 1990 is refused in a second, not expanded for minutes; a daily one
since 1920 still passes."""
DESCRIPTION_CHARS = 300
"""Calendar descriptions carry whole invitations (Teams links, dial-in numbers): cut like an
item's excerpt."""
_MAILTO = re.compile("mailto:", re.IGNORECASE)
UNTITLED = {"nb": "(uten tittel)", "nn": "(utan tittel)", "en": "(untitled)"}


@dataclass
class Fetched:
    """One configured calendar: its parsed file, or why there is none."""

    name: str
    calendar: icalendar.Calendar | None = None
    error: str | None = None


def meeting_key(title: str, start: datetime) -> str:
    raw = f"{title}\x00{start.isoformat()}".encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def _same(title: str) -> str:
    return " ".join(title.split()).casefold()


# -- fetching ------------------------------------------------------------------------------


def location(config: Config, name: str) -> str:
    """What to fetch for a configured calendar: its URL, or its path against the config file."""
    if urlsplit(name).scheme in ("http", "https"):
        return name
    return str(config.resolve(name))


def _read_file(path: Path, cap: int) -> bytes | str:
    try:
        if path.stat().st_size > cap:
            return f"larger than {cap // 2**20} MB: not read"
        return path.read_bytes()
    except FileNotFoundError:
        return "no such file"
    except OSError as e:
        return f"cannot read: {e.strerror}"


async def _fetch_all(config: Config, names: list[str]) -> list[bytes | str]:
    """Each calendar's bytes, or the reason it could not be had, in the order given."""
    from .fetch import fetch_documents, user_agent

    settings = config.collect
    wheres = [location(config, name) for name in names]
    web = [w for w in wheres if urlsplit(w).scheme in ("http", "https")]
    fetched = dict(
        zip(
            web,
            await fetch_documents(web, settings, user_agent=user_agent(config), accept=ACCEPT),
            strict=True,
        )
    )
    out: list[bytes | str] = []
    for where in wheres:
        got = fetched.get(where)
        if got is None:
            got = await asyncio.to_thread(_read_file, Path(where), settings.max_bytes)
        if isinstance(got, bytes):
            logger.info("Read the calendar %s (%d bytes)", where, len(got))
        out.append(got)
    return out


def parse_calendar(data: bytes) -> icalendar.Calendar:
    """The calendar in `data`; ValueError saying why when it is not one."""
    import icalendar

    text = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not text[:15].upper().startswith(b"BEGIN:VCALENDAR"):
        head = text[:40].decode("utf-8", "replace").split("\n")[0].strip()
        raise ValueError(f"not an iCalendar file (it begins {head!r})")
    try:
        return icalendar.Calendar.from_ical(text)
    except Exception as e:  # icalendar raises ValueError, KeyError, … on a broken file
        raise ValueError(f"not a readable iCalendar file ({e})") from e


def fetch_calendars(config: Config) -> list[Fetched]:
    """Fetch and parse every configured calendar once; a failure is kept with its reason."""
    names = list(dict.fromkeys(config.calendar.urls))
    if not names:
        return []
    out = []
    for name, got in zip(names, asyncio.run(_fetch_all(config, names)), strict=True):
        if isinstance(got, str):
            out.append(Fetched(name, error=got))
            continue
        try:
            out.append(Fetched(name, calendar=parse_calendar(got)))
        except ValueError as e:
            out.append(Fetched(name, error=str(e)))
    return out


# -- reading events --------------------------------------------------------------------------


def _moment(value: Any, config: Config) -> datetime:
    """A DTSTART/DTEND value as an aware datetime: a date is midnight, a floating time is in
    newsletter.timezone."""
    tz = config.newsletter.tz
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime.combine(value, time(), tz)
    moment: datetime = value
    return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment.astimezone(tz)


def _split_person(value: Any) -> tuple[str, dict[str, str]]:
    """An ATTENDEE's or ORGANIZER's address (casefolded) and its parameters.

    Confluence writes the parameters inside the value (`ATTENDEE:X-CONFLUENCE-USER-KEY=…;
    CN=…;CUTYPE=INDIVIDUAL:mailto:a@b`): the address is what follows the last `mailto:`, and
    the parameters before it count as if written where they belong."""
    text = str(value).strip()
    params = {str(k).upper(): str(v) for k, v in getattr(value, "params", {}).items()}
    last = next(reversed(list(_MAILTO.finditer(text))), None)
    if last is not None:
        inside, text = text[: last.start()], text[last.end() :]
        for part in inside.rstrip(":").split(";"):
            name, eq, param = part.partition("=")
            if eq:
                params.setdefault(name.strip().upper(), param.strip().strip('"'))
    return text.strip().casefold(), params


def _people(event: Any) -> list[Any]:
    found = event.get("ATTENDEE")
    people = list(found) if isinstance(found, list) else ([found] if found else [])
    if event.get("ORGANIZER"):
        people.append(event.get("ORGANIZER"))
    return people


def _ambassadors(people: Iterable[Any], by_email: dict[str, str]) -> tuple[str, ...]:
    ids = []
    for person in people:
        address, params = _split_person(person)
        if params.get("PARTSTAT", "").upper() == "DECLINED":
            continue  # asked, said no: not at the meeting
        amb = by_email.get(address)
        if amb:
            ids.append(amb)
    return tuple(dict.fromkeys(ids))


def _text(value: Any) -> str:
    """A text property of an event on one line, made safe (see pipeline.sanitize)."""
    return one_line(str(value)) if value else ""


def _excerpt(value: Any) -> str:
    text = _text(value)
    if len(text) <= DESCRIPTION_CHARS:
        return text
    cut = text[:DESCRIPTION_CHARS].rsplit(" ", 1)[0]
    return cut.rstrip(" ,.;:") + " …"


def _check_size(calendar: icalendar.Calendar, start: datetime, end: datetime) -> None:
    """ValueError if the calendar's series would give more than MAX_OCCURRENCES events in the
    window, or take more than MAX_STEPS to reach its end. Counted lazily with dateutil before
    `recurring-ical-events` expands them, which it does all at once."""
    from dateutil.rrule import rrulestr  # type: ignore[import-untyped]

    total = 0
    for vevent in calendar.walk("VEVENT"):
        component: Any = vevent  # icalendar types a property as any of its 30 value types
        rules = component.get("RRULE")
        if rules is None or "DTSTART" not in component:
            continue
        first = component["DTSTART"].dt
        if not isinstance(first, datetime):
            first = datetime.combine(first, time())
        lo, hi = (start, end) if first.tzinfo else (_naive(start), _naive(end))
        for rule in rules if isinstance(rules, list) else [rules]:
            try:
                series = rrulestr(rule.to_ical().decode(), dtstart=first)
            except (ValueError, TypeError):
                continue  # recurring-ical-events reads it or skips it as a bad series
            for step, moment in enumerate(series):
                if moment > hi:
                    break
                total += moment >= lo
                if step >= MAX_STEPS or total > MAX_OCCURRENCES:
                    raise ValueError(
                        f"more than {MAX_OCCURRENCES} events up to {end:%Y-%m-%d} "
                        f"(a runaway recurrence in {_text(component.get('SUMMARY'))!r}?): not read"
                    )


def _naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None)


@dataclass
class _Readable:
    """A calendar's events as recurring-ical-events can expand them, and the ones left out."""

    calendar: icalendar.Calendar
    """The calendar with only its readable VEVENTs, each series under a UID of its own."""
    events: list[tuple[int, Any]]
    """Those VEVENTs, each with its place among the file's VEVENTs (for naming it)."""
    uids: dict[str, str]
    """The UID given to an event that shares its UID with another, to the UID it has."""
    left_out: list[str]
    """Each event left out, named, with why."""


def _name(event: Any, place: int, uids: dict[str, str] | None = None) -> str:
    """An event as a problem line names it: its place in the file, its SUMMARY and UID (as
    written: `uids` maps a UID given to an event that shared one back)."""
    said = []
    if event.get("SUMMARY"):
        said.append(f'"{_text(event.get("SUMMARY"))[:60]}"')
    if event.get("UID"):
        uid = str(event.get("UID"))
        said.append(f"UID {_text((uids or {}).get(uid, uid))[:100]}")
    return f"event {place} ({', '.join(said) or 'no SUMMARY or UID'})"


def _flaw(event: Any) -> str | None:
    """Why this VEVENT cannot be read, or None: a start missing or given twice, a value that
    is not a date or time (recurring-ical-events raises for the whole calendar on some of
    these, and drops the event without a word on others)."""
    if "DTSTART" not in event:
        return "it has no start (DTSTART)"
    for name in ("DTSTART", "DTEND", "DURATION", "RECURRENCE-ID", "RDATE", "EXDATE"):
        lines = event.get(name)
        listed = name in ("RDATE", "EXDATE")  # a list of values, on one line or several
        if lines is None:
            continue
        if isinstance(lines, list) and not listed:
            return f"it has {len(lines)} {name} lines"
        for line in lines if isinstance(lines, list) else [lines]:
            try:
                values = [one.dt for one in line.dts] if listed else [line.dt]
            except Exception:  # icalendar keeps a value it cannot parse and raises when read
                what = "a duration" if name == "DURATION" else "a date or time"
                return f"its {name} {_text(line)[:40]!r} is not {what}"
            for value in values:
                if isinstance(value, tuple):  # a PERIOD: its start counts
                    value = value[0]
                if name == "DURATION":
                    if not isinstance(value, timedelta):
                        return "its DURATION is not a duration"
                elif isinstance(value, time):
                    return f"its {name} is a time of day without a date"
                elif not isinstance(value, date):  # a datetime is a date too
                    return f"its {name} is not a date or time"
    return None


def _sequence(event: Any) -> int:
    try:
        return int(event.get("SEQUENCE", 0))
    except (TypeError, ValueError):
        return 0


def _readable(calendar: icalendar.Calendar) -> _Readable:
    """The calendar's VEVENTs as recurring-ical-events reads them right.

    - An event it cannot read is left out and named (see `_flaw`): it costs only itself, not
      the calendar's other events.
    - Two events sharing a UID, neither with a RECURRENCE-ID, are two events (Outlook's copied
      meetings keep the UID of the original), not a series and its change, of which
      recurring-ical-events would keep one: each but the first (or but the one that recurs,
      which owns the changes) gets a UID of its own. One with a lower SEQUENCE than another is
      an older copy of the same event (RFC 5545) and is dropped.
    """
    import icalendar

    left_out: list[str] = []
    events: list[tuple[int, Any]] = []
    vevents = [c for c in calendar.subcomponents if c.name == "VEVENT"]
    for place, event in enumerate(vevents, 1):
        flaw = _flaw(event)
        if flaw is None:
            events.append((place, event))
        else:
            left_out.append(f"{_name(event, place)}: {flaw}")
    cores: dict[str, list[Any]] = {}
    for _, event in events:
        if "RECURRENCE-ID" not in event and event.get("UID"):
            cores.setdefault(str(event["UID"]), []).append(event)
    uids: dict[str, str] = {}
    instead: dict[int, Any] = {}
    """id() of an event that shares its UID: its copy with a UID of its own, or None (older)."""
    for uid, same in cores.items():
        if len(same) < 2:
            continue
        newest = max(_sequence(e) for e in same)
        instead.update((id(e), None) for e in same if _sequence(e) < newest)
        current = [e for e in same if _sequence(e) == newest]
        owner = next((e for e in current if "RRULE" in e or "RDATE" in e), current[0])
        for n, event in enumerate((e for e in current if e is not owner), 1):
            copy = event.copy()
            copy["UID"] = icalendar.vText(f"{uid}\x00{n}")
            uids[str(copy["UID"])] = uid
            instead[id(event)] = copy
    if not left_out and not instead:
        return _Readable(calendar, events, {}, [])
    events = [
        (place, instead.get(id(event), event))
        for place, event in events
        if instead.get(id(event), event) is not None
    ]
    kept = icalendar.Calendar()
    kept.update(calendar)  # its properties: X-WR-TIMEZONE says how to read UTC times
    for component in calendar.subcomponents:
        if component.name != "VEVENT":
            kept.add_component(component)
    for _, event in events:
        kept.add_component(event)
    return _Readable(kept, events, uids, left_out)


def _expand(readable: _Readable, start: datetime, end: datetime) -> list[Any]:
    """The occurrences of the readable events between `start` and `end`. Should
    recurring-ical-events still fail on one series, each is expanded on its own, and only the
    one that fails is left out (and named)."""
    import icalendar
    import recurring_ical_events  # type: ignore[import-untyped]

    window = (start, end + timedelta(seconds=1))
    try:
        query = recurring_ical_events.of(readable.calendar)
        return list(query.between(*window))
    except Exception:
        logger.debug("Expanding series one by one after an error", exc_info=True)
    others = [c for c in readable.calendar.subcomponents if c.name != "VEVENT"]
    series: dict[str, list[tuple[int, Any]]] = {}
    for place, event in readable.events:
        series.setdefault(str(event.get("UID", f"\x00{place}")), []).append((place, event))
    out: list[Any] = []
    for events in series.values():
        alone = icalendar.Calendar()
        alone.update(readable.calendar)
        for component in [*others, *(event for _, event in events)]:
            alone.add_component(component)
        try:
            query = recurring_ical_events.of(alone)
            out += query.between(*window)
        except Exception as e:
            place, first = events[0]
            why = _text(f"{type(e).__name__}: {e}")[:200]
            name = _name(first, place, readable.uids)
            readable.left_out.append(f"{name}: it cannot be expanded ({why})")
    return out


LEFT_OUT_NAMED = 3
"""Events named on a calendar's problem line; more are counted."""


def _left_out_line(left_out: list[str]) -> str:
    if len(left_out) == 1:
        return f"left out {left_out[0]}"
    named = "; ".join(left_out[:LEFT_OUT_NAMED])
    more = len(left_out) - LEFT_OUT_NAMED
    return f"left out {len(left_out)} events: {named}" + (f"; and {more} more" if more > 0 else "")


def read_events(
    fetched: Fetched, config: Config, start: datetime, end: datetime
) -> tuple[list[PlannedMeeting], list[str]]:
    """The calendar's meetings starting from `start` until `end` (both included), and the
    events it left out, each named with why; ValueError for a runaway series."""
    assert fetched.calendar is not None
    readable = _readable(fetched.calendar)
    _check_size(readable.calendar, start, end)
    by_email = {a.email.casefold(): a.id for a in config.ambassador if a.email}
    # An override (a moved occurrence) that lists nobody keeps the people of its series. One
    # for "this and all future" (RANGE=THISANDFUTURE) also moves each later occurrence by as
    # much as it moved its own, and recurring-ical-events gives them all its RECURRENCE-ID.
    series_people: dict[str, list[Any]] = {}
    overrides: set[tuple[str, datetime]] = set()
    moved_by: dict[tuple[str, datetime], timedelta] = {}
    for _, component in readable.events:
        uid = str(component.get("UID", ""))
        rid = component.get("RECURRENCE-ID")
        if rid is None:
            series_people.setdefault(uid, _people(component))
            continue
        was = _moment(rid.dt, config)
        overrides.add((uid, was))
        if str(rid.params.get("RANGE", "")).upper() == "THISANDFUTURE":
            moved_by[(uid, was)] = _moment(component["DTSTART"].dt, config) - was
    untitled = UNTITLED.get(config.newsletter.language, UNTITLED["en"])
    out = []
    for event in _expand(readable, start, end):
        if str(event.get("STATUS", "")).upper() == "CANCELLED":
            continue
        begins = _moment(event["DTSTART"].dt, config)
        if not start <= begins <= end:
            continue  # began before the window and is still going on
        all_day = not isinstance(event["DTSTART"].dt, datetime)
        ends = None
        if event.get("DTEND") is not None and not all_day:
            ends = _moment(event["DTEND"].dt, config)
        elif event.get("DURATION") is not None and not all_day:
            ends = begins + event["DURATION"].dt
        uid = str(event.get("UID", ""))
        rid = event.get("RECURRENCE-ID")
        occurrence = _moment(rid.dt, config) if rid is not None else begins
        people = _people(event)
        if not people and (uid, occurrence) in overrides:
            people = series_people.get(uid, [])
        if (uid, occurrence) in moved_by:
            occurrence = begins - moved_by[(uid, occurrence)]  # where it was before the change
        title = _text(event.get("SUMMARY")) or untitled
        out.append(
            PlannedMeeting(
                key=meeting_key(title, begins),
                title=title,
                start=begins,
                end=ends if ends is not None and ends > begins else None,
                location=_text(event.get("LOCATION")),
                url=_text(event.get("URL")),
                description=_excerpt(event.get("DESCRIPTION")),
                ambassadors=_ambassadors(people, by_email),
                uid=readable.uids.get(uid, uid),
                occurrence=occurrence,
                source=fetched.name,
            )
        )
    return out, readable.left_out


# -- joining ---------------------------------------------------------------------------------


def config_meetings(config: Config, start: datetime, end: datetime) -> list[PlannedMeeting]:
    """The `[[meeting]]` tables starting from `start` until `end` (both included)."""
    out = []
    for m in config.meeting:
        begins = meeting_start(m, config)
        if start <= begins <= end:
            out.append(
                PlannedMeeting(
                    key=m.key,
                    title=m.title,
                    start=begins,
                    end=meeting_end(m, config),
                    location=m.location,
                    url=m.url or "",
                    description=m.description,
                    ambassadors=tuple(m.ambassadors),
                )
            )
    return out


def merge(meetings: Iterable[PlannedMeeting]) -> list[PlannedMeeting]:
    """One meeting per occurrence, soonest first.

    Copies of one meeting from different sources (the `[[meeting]]` tables, each calendar) are
    one: the same UID and occurrence, or the same start and title (case and spacing aside). The
    first copy is kept and gains the ambassadors of the others; each kept meeting takes at most
    one copy from each other source. Within one calendar nothing is merged: its events are
    told apart by their UIDs, and two of them at one time with one title (or none) are two
    meetings. `[[meeting]]` tables are told apart by their title and start, their identity.
    """
    kept: list[PlannedMeeting] = []
    sources: list[set[str]] = []
    """The sources whose copies each kept meeting holds."""
    index: dict[tuple[object, ...], list[int]] = {}
    """Kept meetings by UID and occurrence, and by start and title."""

    def copy_of(m: PlannedMeeting, keys: list[tuple[object, ...]]) -> int | None:
        for key in keys:
            for at in index.get(key, []):
                if m.source not in sources[at] or not m.source:
                    return at
        return None

    for m in meetings:
        keys: list[tuple[object, ...]] = [("start", m.start, _same(m.title))]
        if m.uid:
            keys.insert(0, ("uid", m.uid, m.occurrence or m.start))
        at = copy_of(m, keys)
        if at is None:
            at = len(kept)
            kept.append(m)
            sources.append(set())
        else:
            first = kept[at]
            kept[at] = replace(
                first, ambassadors=tuple(dict.fromkeys((*first.ambassadors, *m.ambassadors)))
            )
        sources[at].add(m.source)
        for key in keys:
            if at not in index.setdefault(key, []):
                index[key].append(at)
    return _unique_keys(sorted(kept, key=lambda m: (m.start, m.title)))


def _unique_keys(meetings: list[PlannedMeeting]) -> list[PlannedMeeting]:
    """The meetings, each with a key of its own: the second of two calendar events with one
    title and start gets a key from its UID too (editions record which meetings they listed
    by key)."""
    seen: set[str] = set()
    out = []
    for m in meetings:
        key, n = m.key, 0
        while key in seen:
            n += 1
            key = meeting_key(f"{m.title}\x00{m.uid}\x00{m.occurrence}\x00{n}", m.start)
        seen.add(key)
        out.append(m if key == m.key else replace(m, key=key))
    return out


def meetings_between(
    config: Config,
    start: datetime,
    end: datetime,
    *,
    calendars: list[Fetched] | None = None,
) -> Meetings:
    """Every meeting starting from `start` until `end`: the `[[meeting]]` tables and the
    calendars (fetched now unless given), without duplicates, soonest first."""
    if calendars is None:
        calendars = fetch_calendars(config)
    found = config_meetings(config, start, end)
    problems = []
    for fetched in calendars:
        if fetched.error is None:
            try:
                meetings, left_out = read_events(fetched, config, start, end)
            except ValueError as e:
                fetched = replace(fetched, error=str(e))
            except Exception as e:  # a bug met on one calendar must not stop the others
                logger.debug("Unexpected error reading %s", fetched.name, exc_info=True)
                fetched = replace(fetched, error=f"unexpected error ({type(e).__name__}: {e})")
            else:
                found += meetings
                if left_out:
                    line = _left_out_line(left_out)
                    logger.warning("Calendar %s %s; its other events are read", fetched.name, line)
                    problems.append(CalendarProblem(fetched.name, line, len(left_out)))
        if fetched.error is not None:
            logger.warning("Calendar %s could not be read: %s", fetched.name, fetched.error)
            problems.append(CalendarProblem(fetched.name, fetched.error))
    return Meetings(tuple(merge(found)), tuple(problems))


__all__ = [
    "CalendarProblem",
    "Fetched",
    "Meetings",
    "PlannedMeeting",
    "fetch_calendars",
    "meetings_between",
    "merge",
    "parse_calendar",
]
