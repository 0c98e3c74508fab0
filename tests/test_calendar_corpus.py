"""The test calendars of icalendar and recurring-ical-events through trnews's calendar reading.

About 260 real exports and the broken files their users reported (see tests/calendar_corpus.py
for where they come from and why they are fetched, not copied). Every calendar must end
cleanly: read, or named as a problem with its reason, never an unexpected error; no meeting
carries a control, bidirectional or noncharacter; and the shapes that trnews once counted
wrong are counted right, against what those projects' own tests expect of the same files.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from calendar_corpus import CorpusCalendar, calendars, wanted
from support.site import Site

from pipeline.calendars import Fetched, meetings_between, parse_calendar
from pipeline.config import Config, load_config
from pipeline.models import Meetings
from pipeline.sanitize import is_clean

WHOLE_CALENDAR_REASONS = ("not an iCalendar file", "not a readable iCalendar file", "more than ")
"""How a calendar that is not read at all is named (see pipeline.calendars)."""
PEOPLE = {"me": "me@example.com", "daniel": "dlatham@apple.com"}
"""Ambassadors with the addresses that attend events in the corpus."""


@pytest.fixture(scope="module")
def corpus() -> list[CorpusCalendar]:
    found = calendars()
    if not found:
        pytest.skip(
            f"the calendar corpus ({', '.join(wanted())} sdists) is not in var/corpus: "
            "`make corpus` (or `make test`) fetches it from PyPI"
        )
    return found


def config_at(folder: Path, names: tuple[str, ...] | list[str] = ()) -> Config:
    folder.mkdir(parents=True, exist_ok=True)
    people = "".join(
        f'[[ambassador]]\nid = "{i}"\nname = "{i.title()}"\nemail = "{e}"\n\n'
        for i, e in PEOPLE.items()
    )
    urls = ", ".join(json.dumps(n) for n in names)
    (folder / "trnews.toml").write_text(
        "[newsletter]\n"
        'title = "Korpus"\n'
        'sender = "Korpus <korpus@example.org>"\n'
        'public_url = "https://korpus.example.org"\n'
        'timezone = "Europe/Oslo"\n\n'
        f"[calendar]\nurls = [{urls}]\n\n{people}",
        encoding="utf-8",
    )
    return load_config(folder / "trnews.toml")


def write_corpus(corpus: list[CorpusCalendar], folder: Path) -> list[str]:
    """The corpus as files under `folder`; their paths relative to it."""
    for c in corpus:
        (folder / c.path).parent.mkdir(parents=True, exist_ok=True)
        (folder / c.path).write_bytes(c.data)
    return [c.path for c in corpus]


def test_every_calendar_is_read_or_named_with_its_reason(
    corpus: list[CorpusCalendar], tmp_path: Path
) -> None:
    assert len(corpus) >= 250
    names = write_corpus(corpus, tmp_path)
    config = config_at(tmp_path, names)
    tz = config.newsletter.tz
    found = meetings_between(
        config, datetime(1990, 1, 1, tzinfo=tz), datetime(2035, 12, 31, 23, 59, tzinfo=tz)
    )
    problems = {p.calendar: p for p in found.problems}
    assert set(problems) <= set(names)
    assert len(problems) == len(found.problems)  # one line per calendar
    for p in found.problems:
        assert "unexpected error" not in p.error, str(p)
        assert is_clean(p.error), str(p)
        if p.events_left_out:  # read, less the events named
            assert p.error.startswith("left out "), str(p)
        else:  # a lone VEVENT or VTIMEZONE, a file icalendar refuses, a series every minute
            assert p.error.startswith(WHOLE_CALENDAR_REASONS), str(p)
    read = [n for n in names if n not in problems or problems[n].events_left_out]
    assert len(read) >= 190  # 194 of the 260 in icalendar 7.3.2 and recurring-ical-events 3.8.2
    assert len(found.meetings) >= 20_000
    for m in found.meetings:
        for text in (m.title, m.location, m.url, m.description, m.uid):
            assert is_clean(text), (m.source, text)


def read_one(
    corpus: list[CorpusCalendar], folder: Path, name: str, start: str, end: str
) -> Meetings:
    """One corpus calendar, read for the UTC window from `start` to `end` (both included)."""
    [c] = [c for c in corpus if c.path.endswith("/" + name)]
    config = config_at(folder)
    return meetings_between(
        config,
        datetime.fromisoformat(start).replace(tzinfo=UTC),
        datetime.fromisoformat(end).replace(tzinfo=UTC),
        calendars=[Fetched(name, calendar=parse_calendar(c.data))],
    )


def test_a_this_and_all_future_change_counts_as_the_upstream_tests_expect(
    corpus: list[CorpusCalendar], tmp_path: Path
) -> None:
    # recurring-ical-events' test_issue_75_range_parameter.py: 13 events in this window, the
    # last of them "EDITED EVENT" (two RANGE=THISANDFUTURE changes of one series).
    found = read_one(
        corpus, tmp_path, "issue_75_range_parameter.ics", "2024-09-01", "2024-09-25T23:59:59"
    )
    assert found.problems == ()
    titles = [m.title for m in found.meetings]
    assert len(titles) == 13
    assert titles[:6] == ["ORIGINAL EVENT"] * 6 and titles[-1] == "EDITED EVENT"


def test_ten_events_at_one_time_in_one_calendar_are_ten_meetings(
    corpus: list[CorpusCalendar], tmp_path: Path
) -> None:
    # A SabreDAV (Nextcloud) export: ten events titled "test1" at 08:00 on 4 March 2019.
    found = read_one(
        corpus, tmp_path, "several_events_at_the_same_time.ics", "2019-03-04", "2019-03-04T23:59"
    )
    assert [(m.title, m.start.astimezone(UTC).hour) for m in found.meetings] == [("test1", 7)] * 10
    assert len({m.key for m in found.meetings}) == 10


@pytest.mark.parametrize(
    ("name", "left_out", "titles"),
    [
        (
            "created_calendar_with_unicode_fields.ics",
            ["event 3 (no SUMMARY or UID): it has no start (DTSTART)"],
            ["åäö", "Non-ASCII Test: ÄÖÜ äöü €"],
        ),
        (
            "america_new_york_forward_reference.ics",
            ['event 1 ("an event with a custom tz name", UID noend123): it has 2 DTSTART lines'],
            [],
        ),
        (
            "multiple_timezones.ics",
            [
                f"event {n} (UID test-vtime-{uid}): its RDATE is a time of day without a date"
                for n, uid in enumerate(["named-timezone", "utc", "floating"], 1)
            ],
            [],
        ),
    ],
)
def test_an_event_that_cannot_be_read_is_named_and_the_others_are_kept(
    corpus: list[CorpusCalendar], tmp_path: Path, name: str, left_out: list[str], titles: list[str]
) -> None:
    found = read_one(corpus, tmp_path, name, "2000-01-01", "2030-12-31")
    assert [m.title for m in found.meetings] == titles
    [problem] = found.problems
    assert problem.events_left_out == len(left_out)
    for said in left_out:
        assert said in problem.error


def test_two_events_sharing_a_uid_keep_their_own_attendees(
    corpus: list[CorpusCalendar], tmp_path: Path
) -> None:
    # icalendar's tutorial: two events made with one UID; only the second lists anyone.
    found = read_one(corpus, tmp_path, "tutorials/example.ics", "2026-03-01", "2026-03-31")
    assert [(m.title, m.ambassadors) for m in found.meetings] == [
        ("Pick up bicycle from the workshop.", ()),
        ("Morning ride with the team.", ("me",)),
    ]


def test_a_confluence_attendee_is_matched_by_its_address(
    corpus: list[CorpusCalendar], tmp_path: Path
) -> None:
    found = read_one(corpus, tmp_path, "issue_61_time_zone_error.ics", "2021-12-01", "2021-12-31")
    assert [(m.title, m.ambassadors) for m in found.meetings] == [("test", ("daniel",))]


def test_the_report_and_an_edition_take_the_corpus(
    corpus: list[CorpusCalendar], site: Site
) -> None:
    # Not recurring-ical-events' 1.6 MB benchmark calendar: read in-process above, here it
    # would only add its seconds of parsing to each process.
    names = write_corpus([c for c in corpus if len(c.data) < 1_000_000], site.root)
    assert len(names) >= len(corpus) - 1
    site.extra_toml = f"[calendar]\nurls = [{', '.join(json.dumps(n) for n in names)}]\n"
    site.ambassadors += [
        f'[[ambassador]]\nid = "{i}"\nname = "{i.title()}"\nemail = "{e}"\n'
        for i, e in PEOPLE.items()
    ]
    proc = site.run(
        "report", "--year", "2021", "--as-of", "2021-12-31T12:00:00+01:00", "--format", "json"
    )
    data = json.loads(proc.stdout)
    errors = data["calendar_errors"]
    assert errors and all(e["error"] and "unexpected" not in e["error"] for e in errors)
    assert {e["calendar"] for e in errors} <= set(names)
    assert "Traceback" not in proc.stderr
    [daniel] = [a for a in data["ambassadors"] if a["id"] == "daniel"]
    assert daniel["actual"]["meetings"] == 1  # the Confluence attendee
    site.run("preview", "--out", "preview")
    text = (site.root / "preview" / "preview.txt").read_text(encoding="utf-8")
    assert "Kommende møter" in text
    assert is_clean(text)
