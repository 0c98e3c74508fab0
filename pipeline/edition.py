"""Choose what the next edition holds: the due items and the upcoming meetings."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from .calendars import Fetched, fetch_calendars, meetings_between
from .config import Config
from .models import Credit, EditionPlan, Item, Meeting
from .store import Store


def credits_for(config: Config, ids: list[str]) -> tuple[Credit, ...]:
    """The ambassadors with these ids, in config order; ids no longer in the config are left out."""
    order = {a.id: n for n, a in enumerate(config.ambassador)}
    by_id = config.ambassador_by_id()
    return tuple(
        Credit(by_id[i].id, by_id[i].name, by_id[i].role)
        for i in sorted((i for i in ids if i in by_id), key=order.__getitem__)
    )


def upcoming_meetings(
    config: Config, now: datetime, *, calendars: list[Fetched] | None = None
) -> list[Meeting]:
    """Meetings starting from now until `meetings_ahead_days` ahead, soonest first: the
    `[[meeting]]` tables and the calendars, without duplicates (a calendar that cannot be read
    is logged and left out; see pipeline.calendars)."""
    horizon = now + timedelta(days=config.newsletter.meetings_ahead_days)
    return [
        Meeting(
            key=m.key,
            title=m.title,
            start=m.start,
            end=m.end,
            location=m.location,
            url=m.url,
            description=m.description,
            credits=credits_for(config, list(m.ambassadors)),
        )
        for m in meetings_between(config, now, horizon, calendars=calendars).meetings
    ]


def due_items(config: Config, store: Store, now: datetime) -> list[Item]:
    """Items due now, newest first (see SPEC: in no earlier edition, within `lookback_days`,
    and dated or first seen after the previous edition was built)."""
    since = now - timedelta(days=config.newsletter.lookback_days)
    previous = store.last_edition_created()
    out = []
    for item, ids in store.due_items(since=since, previous=previous):
        credits = credits_for(config, ids)
        if credits:  # an item whose every ambassador has left the config is not theirs to report
            out.append(replace(item, credits=credits))
    return out


def plan_edition(config: Config, store: Store, now: datetime) -> EditionPlan:
    """What an edition built now would hold."""
    items = due_items(config, store, now)
    cap = config.newsletter.max_items
    fetched = fetch_calendars(config)  # once, for the meetings and the report
    meetings = upcoming_meetings(config, now, calendars=fetched)
    listed = store.listed_meetings()
    report = None
    if config.report.in_newsletter:
        from .report import build, compact_context  # the report loads only when shown

        report = compact_context(build(config, as_of=now, store=store, calendars=fetched))
    return EditionPlan(
        created=now,
        items=tuple(items[:cap]),
        overflow=tuple(items[cap:]),
        meetings=tuple(meetings),
        new_meetings=tuple(m.key for m in meetings if m.key not in listed),
        previous=store.last_edition_created(),
        report=report,
    )
