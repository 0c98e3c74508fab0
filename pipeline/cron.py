"""5-field cron lines read as cron reads them, into APScheduler triggers.

APScheduler's `CronTrigger.from_crontab` differs from cron in two ways an admin would never
guess (its issue 286): it numbers weekdays from Monday = 0 where cron has Sunday = 0 (so
`0 8 * * 1` would run on Tuesdays, and `7` is refused), and when both the day of the month and
the weekday are restricted it wants both where cron takes either (`0 8 1 * mon` is the 1st of
the month and every Monday). Here the weekday field is translated into day names, and a line
restricting both days becomes two triggers whose fire times are merged.

The time rules of `trnews run` live here too: `WallClock` reads a line as wall-clock times in the
newsletter's zone (one slot per wall-clock time, whatever DST does), and `decide` says which
slot is due now, with the one rule for late and missed slots (`GRACE`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
"""Cron's weekday numbers, 0 to 6 (7 is Sunday again), as names APScheduler reads rightly."""
GRACE = timedelta(hours=1)
"""A slot missed by at most this much (the machine was down, a long job ran) is still run."""
SLOT_FORMAT = "%Y-%m-%dT%H:%M"
MINUTE = timedelta(minutes=1)


def triggers(line: str, tz: tzinfo) -> list[CronTrigger]:
    """The triggers of a 5-field cron line in `tz`; ValueError says what is wrong."""
    fields = line.split()
    if len(fields) != 5:
        raise ValueError(f"{line!r} is not a 5-field cron line like '0 8 * * mon'")
    minute, hour, day, month, weekday = fields
    try:
        days = ",".join(DAY_NAMES[n] for n in sorted(weekdays(weekday)))
        if not day.startswith("*") and not weekday.startswith("*"):
            # cron runs on either day: the day of the month, or the weekday
            return [
                CronTrigger(minute=minute, hour=hour, day=day, month=month, timezone=tz),
                CronTrigger(minute=minute, hour=hour, month=month, day_of_week=days, timezone=tz),
            ]
        return [
            CronTrigger(
                minute=minute, hour=hour, day=day, month=month, day_of_week=days, timezone=tz
            )
        ]
    except ValueError as e:
        raise ValueError(f"{line!r} is not a valid cron line: {e}") from e


def weekdays(field: str) -> set[int]:
    """The weekday field's days as cron numbers 0 (Sunday) to 6; ValueError if malformed."""
    out: set[int] = set()
    for part in field.lower().split(","):
        span, _, step_text = part.partition("/")
        step = _number(step_text, field) if step_text else 1
        if step < 1:
            raise ValueError(f"weekday field {field!r}: a step must be at least 1")
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            a, _, b = span.partition("-")
            first, last = _day(a, field), _day(b, field)
            if last == 0 and first > 0:
                last = 7  # `5-7` and `fri-sun` end on Sunday
            if first > last:
                raise ValueError(f"weekday field {field!r}: the range {span!r} runs backwards")
        else:
            first = _day(span, field)
            last = 6 if step_text else first
        out.update(n % 7 for n in range(first, last + 1, step))
    return out


def _day(text: str, field: str) -> int:
    if text in DAY_NAMES:
        return DAY_NAMES.index(text)
    n = _number(text, field)
    if not 0 <= n <= 7:
        raise ValueError(f"weekday field {field!r}: {n} is not a day (0 to 7, or sun to sat)")
    return n


def _number(text: str, field: str) -> int:
    if not text.isdigit():
        raise ValueError(f"weekday field {field!r}: {text!r} is not a day number or name")
    return int(text)


# -- time ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """One time a cron line names: its wall-clock time, and the instant it falls due."""

    wall: datetime
    """Naive, in the newsletter's zone."""
    at: datetime
    """Aware, UTC: when it runs."""

    @property
    def key(self) -> str:
        return self.wall.strftime(SLOT_FORMAT)


class WallClock(BaseTrigger):  # type: ignore[misc]
    """A 5-field cron line read as wall-clock times in `tz`, one run per wall-clock time.

    The line's times are found by APScheduler's CronTrigger (as `cron.triggers` builds them,
    with cron's own weekday numbers) over naive wall-clock time (read as if in UTC, which has
    no DST), then each is placed in `tz`: an ambiguous time (the autumn
    night) at its first occurrence; a time that does not exist (the spring night) at the
    moment the clocks jump. Slot instants therefore never go backwards.
    """

    def __init__(self, line: str, tz: ZoneInfo) -> None:
        self.line = line
        self.tz = tz
        self._crons = triggers(line, UTC)

    def __repr__(self) -> str:
        return f"WallClock({self.line!r}, {self.tz.key!r})"

    def wall_of(self, instant: datetime) -> datetime:
        return instant.astimezone(self.tz).replace(tzinfo=None)

    def instant_of(self, wall: datetime) -> datetime:
        """When `wall` happens in the zone: its first occurrence, or the end of the gap."""
        first = wall.replace(tzinfo=self.tz, fold=0).astimezone(UTC)
        if self.wall_of(first) == wall:
            return first
        # In a gap, fold=0 reads the time with the offset from before the jump (which puts it
        # after the jump) and fold=1 with the offset after (before the jump): the jump lies
        # between; find its minute.
        t = wall.replace(tzinfo=self.tz, fold=1).astimezone(UTC)
        after = first.astimezone(self.tz).utcoffset()
        while t.astimezone(self.tz).utcoffset() != after and t < first:
            t += MINUTE
        return t

    def slot_after(self, wall: datetime) -> Slot | None:
        """The first slot whose wall-clock time is later than `wall`."""
        start = (wall + timedelta(seconds=1)).replace(tzinfo=UTC)
        fires = [t for c in self._crons if (t := c.get_next_fire_time(None, start))]
        if not fires:
            return None
        w = min(fires).replace(tzinfo=None)
        return Slot(w, self.instant_of(w))

    def slots(self, after: datetime, until: datetime) -> Iterator[Slot]:
        """The slots that fall due after the instant `after`, up to and including `until`."""
        # A slot moved to the end of a spring gap has a wall-clock time up to the gap's length
        # before its instant: start looking early enough to find it.
        slot = self.slot_after(self.wall_of(after) - timedelta(hours=3))
        while slot is not None and slot.at <= until:
            if slot.at > after:
                yield slot
            slot = self.slot_after(slot.wall)

    def next_slot(self, now: datetime, after_wall: datetime | None = None) -> Slot | None:
        """The first slot due at or after `now` (and later than `after_wall`, if given)."""
        start = self.wall_of(now) - timedelta(hours=3)
        if after_wall is not None:
            start = max(start, after_wall)
        slot = self.slot_after(start)
        while slot is not None and slot.at < now:
            slot = self.slot_after(slot.wall)
        return slot

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        """APScheduler's question: when to fire next (never twice for one wall-clock time)."""
        after = self.wall_of(previous_fire_time) if previous_fire_time else None
        slot = self.next_slot(now, after)
        return slot.at if slot else None


class Ahead(WallClock):
    """A cron line's slots, each `ahead` earlier: the desk's draft before each send.

    A slot keeps the wall-clock time of the send it prepares (its key names that send); only
    the instant it falls due moves. The DST rules are the send's own."""

    def __init__(self, line: str, tz: ZoneInfo, ahead: timedelta) -> None:
        super().__init__(line, tz)
        self.ahead = ahead

    def __repr__(self) -> str:
        return f"Ahead({self.line!r}, {self.tz.key!r}, {self.ahead})"

    def instant_of(self, wall: datetime) -> datetime:
        return super().instant_of(wall) - self.ahead

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        after = self.wall_of(previous_fire_time + self.ahead) if previous_fire_time else None
        slot = self.next_slot(now, after)
        return slot.at if slot else None


@dataclass(frozen=True)
class Decision:
    """What a job does at one moment: run a slot, skip it (too late), or nothing."""

    run: Slot | None = None
    """The slot to run now."""
    late: Slot | None = None
    """The latest slot, missed by more than GRACE: recorded as skipped, not run."""
    missed: int = 0
    """Earlier slots that were missed and are skipped (never run in a burst)."""
    first_missed: Slot | None = None


MAX_COUNTED = 100_000
"""Missed slots counted at most, for the log line after a long time down."""


def decide(trigger: WallClock, since: datetime, now: datetime) -> Decision:
    """Which slot of `trigger` is due at `now`, counting only slots after the instant `since`
    (the last slot handled, or when the line took effect).

    The latest due slot runs if at most GRACE late; every earlier one is skipped. A latest slot
    later than that is skipped too, and says so.
    """
    latest: Slot | None = None
    first: Slot | None = None
    count = 0
    for slot in trigger.slots(since, now):
        first = first or slot
        latest = slot
        count += 1
        if count >= MAX_COUNTED:
            break
    if latest is None:
        return Decision()
    earlier = count - 1
    if now - latest.at <= GRACE:
        return Decision(run=latest, missed=earlier, first_missed=first if earlier else None)
    return Decision(late=latest, missed=earlier, first_missed=first if earlier else None)
