"""5-field cron lines read as cron reads them, into APScheduler triggers.

APScheduler's `CronTrigger.from_crontab` differs from cron in two ways an admin would never
guess (its issue 286): it numbers weekdays from Monday = 0 where cron has Sunday = 0 (so
`0 8 * * 1` would run on Tuesdays, and `7` is refused), and when both the day of the month and
the weekday are restricted it wants both where cron takes either (`0 8 1 * mon` is the 1st of
the month and every Monday). Here the weekday field is translated into day names, and a line
restricting both days becomes two triggers whose fire times are merged.
"""

from __future__ import annotations

from datetime import tzinfo

from apscheduler.triggers.cron import CronTrigger

DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
"""Cron's weekday numbers, 0 to 6 (7 is Sunday again), as names APScheduler reads rightly."""


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
