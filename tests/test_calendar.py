"""Meetings from iCalendar files and URLs (SPEC.md "The ambassador plan and the open report").

Calendars are real-shaped exports (Outlook with Windows time-zone names, Google with UTC times
and X-WR-TIMEZONE), served by the loopback HTTP server or read from a local file. The counts
are read back as an admin would, from `trnews report` run as a process; the finer points
(exact start times, who is linked) are read from `pipeline.calendars` in-process, the same code
the report and the edition run.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from support.feeds import ics
from support.mail import text_part
from support.servers import FeedServer
from support.site import Site

from pipeline import calendars
from pipeline.config import Config, load_config

OSLO = ZoneInfo("Europe/Oslo")

BASE = """\
[newsletter]
title = "Ambassadørnytt"
sender = "Trondheimsregionen <nyhetsbrev@example.org>"
public_url = "https://nyhetsbrev.example.org"
timezone = "{timezone}"

[[ambassador]]
id = "kari-nordmann"
name = "Kari Nordmann"
email = "kari@example.org"

[[ambassador]]
id = "ola-hansen"
name = "Ola Hansen"
email = "ola@example.org"

[[ambassador]]
id = "siri-berg"
name = "Siri Berg"
email = "Siri.Berg@example.org"
"""


OUTLOOK_TZ = """\
BEGIN:VTIMEZONE
TZID:W. Europe Standard Time
BEGIN:STANDARD
DTSTART:16011028T030000
RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:16010325T020000
RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
END:DAYLIGHT
END:VTIMEZONE"""

WEEKLY = ics(
    # Mondays 09:00 from 6 January 2025, five times; 13 January is cancelled (EXDATE) and
    # 20 January moved to Tuesday 21 January 14:00 (an override without attendees of its own).
    """
UID:ukesmote-2025@example.org
SUMMARY:Ukesmøte i regionrådet
DTSTART;TZID="W. Europe Standard Time":20250106T090000
DTEND;TZID="W. Europe Standard Time":20250106T100000
RRULE:FREQ=WEEKLY;COUNT=5
EXDATE;TZID="W. Europe Standard Time":20250113T090000
ORGANIZER;CN=Sekretariatet:mailto:post@example.org
ATTENDEE;CN=Kari Nordmann;PARTSTAT=ACCEPTED:mailto:KARI@Example.ORG
ATTENDEE;CN=Ola Hansen;PARTSTAT=DECLINED:mailto:ola@example.org
""",
    """
UID:ukesmote-2025@example.org
RECURRENCE-ID;TZID="W. Europe Standard Time":20250120T090000
SUMMARY:Ukesmøte i regionrådet (flyttet)
DTSTART;TZID="W. Europe Standard Time":20250121T140000
DTEND;TZID="W. Europe Standard Time":20250121T150000
""",
    head=OUTLOOK_TZ,
)
WEEKLY_STARTS = [
    datetime(2025, 1, 6, 9, 0, tzinfo=OSLO),
    datetime(2025, 1, 21, 14, 0, tzinfo=OSLO),
    datetime(2025, 1, 27, 9, 0, tzinfo=OSLO),
    datetime(2025, 2, 3, 9, 0, tzinfo=OSLO),
]


def config_with(tmp_path: Path, extra: str = "", timezone: str = "Europe/Oslo") -> Config:
    path = tmp_path / "trnews.toml"
    path.write_text(BASE.format(timezone=timezone) + "\n" + extra, encoding="utf-8")
    return load_config(path)


def year_2025(config: Config) -> calendars.Meetings:
    tz = config.newsletter.tz
    return calendars.meetings_between(
        config, datetime(2025, 1, 1, tzinfo=tz), datetime(2025, 12, 31, 23, 59, tzinfo=tz)
    )


def report_json(site: Site, *args: str) -> dict[str, object]:
    out = site.run("report", "--format", "json", *args).stdout
    data = json.loads(out)
    assert isinstance(data, dict)
    return data


def meetings_of(data: dict[str, object], amb_id: str) -> int:
    ambassadors = data["ambassadors"]
    assert isinstance(ambassadors, list)
    [row] = [a for a in ambassadors if a["id"] == amb_id]
    return int(row["actual"]["meetings"])


def test_a_weekly_series_leaves_out_its_excluded_date_and_counts_the_moved_one_where_it_went(
    tmp_path: Path,
) -> None:
    (tmp_path / "moter.ics").write_text(WEEKLY, encoding="utf-8")
    config = config_with(tmp_path, '[calendar]\nurls = ["moter.ics"]\n')
    found = year_2025(config)
    assert found.problems == ()
    assert [m.start for m in found.meetings] == WEEKLY_STARTS
    moved = found.meetings[1]
    assert moved.title == "Ukesmøte i regionrådet (flyttet)"
    assert moved.end == datetime(2025, 1, 21, 15, 0, tzinfo=OSLO)
    # The override lists nobody, so it keeps the series' people; Ola declined every one.
    assert [m.ambassadors for m in found.meetings] == [("kari-nordmann",)] * 4


@pytest.mark.parametrize("served", ["http", "file"])
def test_the_report_counts_a_served_or_local_weekly_series_exactly(
    served: str, feeds: FeedServer, site: Site
) -> None:
    if served == "http":
        where = feeds.add("/kalender/moter.ics", WEEKLY.encode(), content_type="text/calendar")
    else:
        (site.root / "kalender").mkdir()
        (site.root / "kalender" / "moter.ics").write_text(WEEKLY, encoding="utf-8")
        where = "kalender/moter.ics"
    site.extra_toml = f'[calendar]\nurls = ["{where}"]\n'
    site.ambassadors.append(
        '[[ambassador]]\nid = "kari-nordmann"\nname = "Kari Nordmann"\nemail = "kari@example.org"\n'
    )
    site.ambassadors.append(
        '[[ambassador]]\nid = "ola-hansen"\nname = "Ola Hansen"\nemail = "ola@example.org"\n'
    )
    # 20 January at noon: the meeting moved from 09:00 that day to the 21st has not begun.
    early = report_json(site, "--year", "2025", "--as-of", "2025-01-20T12:00:00+01:00")
    assert meetings_of(early, "kari-nordmann") == 1
    full = report_json(site, "--year", "2025", "--as-of", "2025-12-31T12:00:00+01:00")
    assert meetings_of(full, "kari-nordmann") == 4
    assert meetings_of(full, "ola-hansen") == 0
    assert full["calendar_errors"] == []
    if served == "http":
        [request] = feeds.requests_to("/kalender/moter.ics")[:1]
        assert request.headers["user-agent"].startswith("trnews/")


def test_an_outlook_export_keeps_local_times_on_both_sides_of_daylight_saving(
    tmp_path: Path,
) -> None:
    (tmp_path / "outlook.ics").write_text(
        ics(
            """
UID:040000008200E00074C5B7101A82E0080000000010
SUMMARY:Styremøte
DTSTART;TZID="W. Europe Standard Time":20250310T090000
DTEND;TZID="W. Europe Standard Time":20250310T110000
RRULE:FREQ=MONTHLY;BYMONTHDAY=10;COUNT=2
ATTENDEE;CN="Nordmann, Kari";RSVP=TRUE:mailto:kari@example.org
""",
            head="METHOD:PUBLISH\nX-WR-CALNAME:Kalender\n" + OUTLOOK_TZ,
        ),
        encoding="utf-8",
    )
    config = config_with(tmp_path, '[calendar]\nurls = ["outlook.ics"]\n')
    march, april = year_2025(config).meetings
    # 10 March is winter time (UTC+1), 10 April summer time (UTC+2): 09:00 on the clock both.
    assert march.start.astimezone(UTC) == datetime(2025, 3, 10, 8, 0, tzinfo=UTC)
    assert april.start.astimezone(UTC) == datetime(2025, 4, 10, 7, 0, tzinfo=UTC)
    assert (march.ambassadors, april.ambassadors) == (("kari-nordmann",), ("kari-nordmann",))


GOOGLE_TZ = """\
X-WR-CALNAME:Ambassadører
X-WR-TIMEZONE:Europe/Oslo
BEGIN:VTIMEZONE
TZID:Europe/Oslo
X-LIC-LOCATION:Europe/Oslo
BEGIN:DAYLIGHT
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
TZNAME:CEST
DTSTART:19700329T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
END:DAYLIGHT
BEGIN:STANDARD
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
TZNAME:CET
DTSTART:19701025T030000
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
END:STANDARD
END:VTIMEZONE"""


def test_a_google_export_with_utc_times_and_a_tzid_series_gives_the_right_moments(
    tmp_path: Path,
) -> None:
    (tmp_path / "google.ics").write_text(
        ics(
            """
DTSTART:20250602T070000Z
DTEND:20250602T080000Z
UID:abc123@google.com
ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=ACCEPTED;CN=siri.berg@e
 xample.org;X-NUM-GUESTS=0:mailto:siri.berg@example.org
SUMMARY:Frokostmøte
""",
            """
DTSTART;TZID=Europe/Oslo:20251020T180000
DTEND;TZID=Europe/Oslo:20251020T190000
RRULE:FREQ=WEEKLY;COUNT=2
UID:def456@google.com
SUMMARY:Kveldsmøte
STATUS:CONFIRMED
""",
            """
DTSTART:20250901T100000Z
UID:cancelled@google.com
SUMMARY:Avlyst møte
STATUS:CANCELLED
ATTENDEE:mailto:siri.berg@example.org
""",
            head="CALSCALE:GREGORIAN\nMETHOD:PUBLISH\n" + GOOGLE_TZ,
        ),
        encoding="utf-8",
    )
    config = config_with(tmp_path, '[calendar]\nurls = ["google.ics"]\n')
    found = year_2025(config).meetings
    assert [(m.title, m.start) for m in found] == [
        ("Frokostmøte", datetime(2025, 6, 2, 9, 0, tzinfo=OSLO)),
        # The series crosses the end of summer time on 26 October: 18:00 on the clock both.
        ("Kveldsmøte", datetime(2025, 10, 20, 18, 0, tzinfo=OSLO)),
        ("Kveldsmøte", datetime(2025, 10, 27, 18, 0, tzinfo=OSLO)),
    ]
    assert found[2].start.astimezone(UTC).hour == 17
    # The configured address has capitals; the attendee's has none: still Siri.
    assert found[0].ambassadors == ("siri-berg",)


def test_floating_times_are_read_in_the_newsletter_timezone_and_a_whole_day_starts_at_midnight(
    tmp_path: Path,
) -> None:
    (tmp_path / "lokal.ics").write_text(
        ics(
            "UID:f1\nSUMMARY:Flytende tid\nDTSTART:20250602T090000\nDTEND:20250602T100000",
            "UID:f2\nSUMMARY:Heldagsmøte\nDTSTART;VALUE=DATE:20250603\nDTEND;VALUE=DATE:20250604",
        ),
        encoding="utf-8",
    )
    config = config_with(tmp_path, '[calendar]\nurls = ["lokal.ics"]\n', "America/New_York")
    floating, whole_day = year_2025(config).meetings
    new_york = ZoneInfo("America/New_York")
    assert floating.start == datetime(2025, 6, 2, 9, 0, tzinfo=new_york)
    assert floating.end == datetime(2025, 6, 2, 10, 0, tzinfo=new_york)
    assert whole_day.start == datetime(2025, 6, 3, 0, 0, tzinfo=new_york)
    assert whole_day.end is None


def test_one_meeting_in_a_table_and_in_two_calendars_is_one_meeting_with_everyone_on_it(
    feeds: FeedServer, tmp_path: Path
) -> None:
    event = ics(
        """
UID:felles-1@example.org
SUMMARY:Næringsforum
DTSTART;TZID=Europe/Oslo:20250312T120000
ATTENDEE:mailto:ola@example.org
""",
        head=GOOGLE_TZ,
    )
    url = feeds.add("/felles.ics", event.encode(), content_type="text/calendar")
    (tmp_path / "kopi.ics").write_text(
        event.replace("mailto:ola@", "mailto:siri.berg@"), encoding="utf-8"
    )
    extra = f"""
[calendar]
urls = ["{url}", "kopi.ics"]

[[meeting]]
title = "næringsforum "
start = 2025-03-12T12:00:00+01:00
ambassadors = ["kari-nordmann"]
location = "Trondheim Spektrum"
"""
    config = config_with(tmp_path, extra)
    [meeting] = year_2025(config).meetings
    assert meeting.location == "Trondheim Spektrum"  # the [[meeting]] table wins
    assert meeting.ambassadors == ("kari-nordmann", "ola-hansen", "siri-berg")


def test_a_calendar_that_fails_is_named_with_its_reason_and_the_report_still_counts_the_rest(
    feeds: FeedServer, site: Site
) -> None:
    gone = feeds.add("/borte.ics", b"not here", status=404, content_type="text/plain")
    page = feeds.add("/side.ics", b"<!DOCTYPE html><html>Logg inn</html>", content_type="text/html")
    (site.root / "moter.ics").write_text(WEEKLY, encoding="utf-8")
    site.extra_toml = f'[calendar]\nurls = ["{gone}", "{page}", "mangler.ics", "moter.ics"]\n'
    site.ambassadors.append(
        '[[ambassador]]\nid = "kari-nordmann"\nname = "Kari Nordmann"\nemail = "kari@example.org"\n'
    )
    proc = site.run(
        "report", "--year", "2025", "--as-of", "2025-12-31T12:00:00+01:00", "--format", "json"
    )
    data = json.loads(proc.stdout)
    assert meetings_of(data, "kari-nordmann") == 4
    errors = {e["calendar"]: e["error"] for e in data["calendar_errors"]}
    assert errors[gone].startswith("HTTP 404")
    assert "not an iCalendar file" in errors[page]
    assert errors["mangler.ics"] == "no such file"
    assert "moter.ics" not in errors
    for name in (gone, page, "mangler.ics"):
        assert f"calendar {name} could not be read" in proc.stderr


@pytest.mark.parametrize("since", ["20250101T000000Z", "19900101T000000Z"])
def test_a_runaway_recurrence_is_reported_instead_of_expanded(since: str, tmp_path: Path) -> None:
    # Expanded, a minute-by-minute series is half a million events in 2025, or 18 million
    # steps from 1990 to reach 2025: either would hold up the report and the edition.
    (tmp_path / "lop.ics").write_text(
        ics(f"UID:lop\nSUMMARY:Hvert minutt\nDTSTART:{since}\nRRULE:FREQ=MINUTELY"),
        encoding="utf-8",
    )
    config = config_with(tmp_path, '[calendar]\nurls = ["lop.ics"]\n')
    found = year_2025(config)
    assert found.meetings == ()
    [problem] = found.problems
    assert problem.calendar == "lop.ics"
    assert "runaway recurrence" in problem.error


def test_calendar_meetings_are_listed_under_upcoming_meetings_in_the_edition(
    feeds: FeedServer, site: Site
) -> None:
    soon = (datetime.now(OSLO) + timedelta(days=3)).replace(hour=10, minute=0, second=0)
    later = soon + timedelta(days=60)  # beyond meetings_ahead_days
    stamp = "%Y%m%dT%H%M%S"
    url = feeds.add(
        "/moter.ics",
        ics(
            f"UID:snart\nSUMMARY:Kalendermøte om E6\nDTSTART;TZID=Europe/Oslo:{soon:{stamp}}\n"
            "LOCATION:Rådhuset\nATTENDEE:mailto:kari@example.org",
            f"UID:avlyst\nSUMMARY:Avlyst kalendermøte\nDTSTART;TZID=Europe/Oslo:{soon:{stamp}}\n"
            "STATUS:CANCELLED",
            f"UID:senere\nSUMMARY:Møte om to måneder\nDTSTART;TZID=Europe/Oslo:{later:{stamp}}",
            head=GOOGLE_TZ,
        ).encode(),
        content_type="text/calendar; charset=utf-8",
    )
    site.extra_toml = f'[calendar]\nurls = ["{url}"]\n'
    site.ambassadors.append(
        '[[ambassador]]\nid = "kari-nordmann"\nname = "Kari Nordmann"\nemail = "kari@example.org"\n'
    )
    site.run("preview", "--out", "preview")
    text = (site.root / "preview" / "preview.txt").read_text(encoding="utf-8")
    meetings = text.split("Kommende møter", 1)[1]
    assert "Kalendermøte om E6" in meetings
    assert "Rådhuset" in meetings and "Kari Nordmann" in meetings
    assert "Avlyst kalendermøte" not in text
    assert "Møte om to måneder" not in text


# -- shapes of real exports (tests/data/calendars/, described in tests/data/README.md) --------

CALENDARS = Path(__file__).resolve().parent / "data" / "calendars"
KARI = '[[ambassador]]\nid = "kari-nordmann"\nname = "Kari Nordmann"\nemail = "kari@example.org"\n'
OLA = '[[ambassador]]\nid = "ola-hansen"\nname = "Ola Hansen"\nemail = "ola@example.org"\n'
NOTES_UID = "C1257D3A0048E1F2C1258C3E00456789-Lotus_Notes_Generated"


def export(name: str) -> str:
    return (CALENDARS / name).read_text(encoding="utf-8")


def report_site(site: Site, *files: tuple[str, str]) -> Site:
    """The site with Kari and Ola, and these (name, text) calendars as local files."""
    for name, text in files:
        (site.root / name).write_text(text, encoding="utf-8")
    urls = ", ".join(f'"{name}"' for name, _ in files)
    site.extra_toml = f"[calendar]\nurls = [{urls}]\n"
    site.ambassadors += [KARI, OLA]
    return site


def test_a_this_and_all_future_change_keeps_every_later_meeting_of_the_series(
    site: Site,
) -> None:
    # Lotus Notes: ten Tuesdays at 10:00 from 4 March 2025; from the fifth (1 April) on, every
    # meeting moved to 13:00 with one override, RECURRENCE-ID;RANGE=THISANDFUTURE.
    report_site(site, ("notes.ics", export("notes_this_and_future.ics")))
    data = report_json(site, "--year", "2025", "--as-of", "2025-12-31T12:00:00+01:00")
    assert meetings_of(data, "kari-nordmann") == 10
    assert data["calendar_errors"] == []
    config = load_config(site.config)
    starts = [m.start for m in year_2025(config).meetings]
    first = datetime(2025, 3, 4, 10, 0, tzinfo=OSLO)
    assert starts == [first + timedelta(weeks=n, hours=3 if n >= 4 else 0) for n in range(10)]


def test_a_copy_from_before_the_change_is_the_same_ten_meetings_not_more(
    tmp_path: Path,
) -> None:
    # The live calendar with the change (Kari's) and an export from before it (Ola's): each
    # occurrence is the same meeting in both, found by its UID and the slot it was moved from.
    live = export("notes_this_and_future.ics")
    change = live[live.rindex("BEGIN:VEVENT") : live.index("END:VCALENDAR")]
    before = live.replace(change, "").replace("mailto:kari@", "mailto:ola@")
    assert "THISANDFUTURE" in change and "RRULE" in before and "THISANDFUTURE" not in before
    (tmp_path / "live.ics").write_text(live, encoding="utf-8")
    (tmp_path / "before.ics").write_text(before, encoding="utf-8")
    config = config_with(tmp_path, '[calendar]\nurls = ["live.ics", "before.ics"]\n')
    found = year_2025(config)
    assert len(found.meetings) == 10
    assert {m.ambassadors for m in found.meetings} == {("kari-nordmann", "ola-hansen")}
    assert {m.uid for m in found.meetings} == {NOTES_UID}


def test_an_event_that_cannot_be_read_is_named_and_the_rest_of_the_calendar_still_counts(
    site: Site,
) -> None:
    # A CMS export (plone.app.event) with two good meetings of Kari's and three she is listed
    # on that cannot be read: no DTSTART, two DTSTART lines, an RDATE that is a time of day.
    report_site(site, ("arrangementer.ics", export("plone_broken_events.ics")))
    proc = site.run(
        "report", "--year", "2025", "--as-of", "2025-12-31T12:00:00+01:00", "--format", "json"
    )
    data = json.loads(proc.stdout)
    assert meetings_of(data, "kari-nordmann") == 2
    [problem] = data["calendar_errors"]
    assert problem["calendar"] == "arrangementer.ics"
    assert problem["events_left_out"] == 3
    error = problem["error"]
    assert error.startswith("left out 3 events: ")
    assert (
        'event 2 ("Frokostmøte om E6", UID a8b7c6d5e4f30211fedcba9876543210): '
        "it has no start (DTSTART)" in error
    )
    assert 'event 3 ("Regionrådet", UID noend123): it has 2 DTSTART lines' in error
    assert (
        'event 4 ("Styremøte", UID test-vtime-named-timezone): '
        "its RDATE is a time of day without a date" in error
    )
    assert "unexpected" not in error
    assert f"calendar arrangementer.ics {error}; its other meetings are counted" in proc.stderr
    text = site.run("report", "--year", "2025", "--as-of", "2025-12-31T12:00:00+01:00").stdout
    assert f"Kalenderen arrangementer.ics: {error}. De andre møtene i den er talt med." in text


def test_two_events_sharing_a_uid_are_two_meetings_each_with_its_own_people(
    site: Site,
) -> None:
    # Outlook: a copied meeting keeps the UID of the original. The copy (first in the file, in
    # November) lists nobody; the original (13 March) lists Kari.
    report_site(site, ("outlook.ics", export("outlook_shared_uid.ics")))
    spring = report_json(site, "--year", "2025", "--as-of", "2025-06-30T12:00:00+02:00")
    assert meetings_of(spring, "kari-nordmann") == 1
    config = load_config(site.config)
    found = year_2025(config).meetings
    assert [(m.title, m.start, m.ambassadors) for m in found] == [
        ("Styremøte", datetime(2025, 3, 13, 9, 0, tzinfo=OSLO), ("kari-nordmann",)),
        ("Styremøte (kopi)", datetime(2025, 11, 20, 9, 0, tzinfo=OSLO), ()),
    ]


def test_a_confluence_attendee_with_its_parameters_inside_the_value_is_matched(
    site: Site,
) -> None:
    # Confluence Team Calendars: ATTENDEE:X-CONFLUENCE-USER-KEY=…;CN=…:mailto:Kari@Example.org;
    # Ola's line says PARTSTAT=DECLINED the same way.
    report_site(site, ("confluence.ics", export("confluence_team_calendar.ics")))
    data = report_json(site, "--year", "2025", "--as-of", "2025-12-31T12:00:00+01:00")
    assert meetings_of(data, "kari-nordmann") == 1
    assert meetings_of(data, "ola-hansen") == 0


def test_events_at_one_time_in_one_calendar_stay_apart_and_copies_from_another_merge(
    tmp_path: Path, site: Site
) -> None:
    # Nextcloud: ten bookings without a title at one time, in ten rooms. The same file from a
    # second source is a copy of each: still ten meetings, with everyone on each.
    soon = datetime.now(OSLO).date() + timedelta(days=4)
    rooms = export("nextcloud_untitled_at_one_time.ics").replace("20261201T", f"{soon:%Y%m%d}T")
    report_site(site, ("rom.ics", rooms), ("kopi.ics", rooms.replace("mailto:ola@", "mailto:x@")))
    site.run("subscribers", "add", "leser@example.org")
    site.run("send")
    [message] = site.messages()
    text = text_part(message).split("Kommende møter", 1)[1]
    assert text.count("(uten tittel)") == 10
    assert all(f"Møterom {n}\n" in text for n in range(1, 11))
    found = calendars.meetings_between(
        load_config(site.config),
        datetime.combine(soon, datetime.min.time(), OSLO),
        datetime.combine(soon, datetime.max.time(), OSLO),
    )
    assert len(found.meetings) == 10
    assert [m.ambassadors for m in found.meetings if m.ambassadors] == [
        ("kari-nordmann",),
        ("ola-hansen",),
    ]
    assert len({m.key for m in found.meetings}) == 10


def test_a_series_whose_rule_cannot_be_read_is_named_not_dropped_without_a_word(
    tmp_path: Path,
) -> None:
    # An RRULE with spaces in its BYDAY list, as Microsoft CDO for Exchange wrote it (issue 165
    # of icalendar): recurring-ical-events cannot expand it.
    (tmp_path / "sprint.ics").write_text(
        ics(
            "UID:standup-25\nSUMMARY:Daglig standup\nDTSTART:20250303T080000Z\n"
            "RRULE:FREQ=DAILY;UNTIL=20250314T080000Z;INTERVAL=1;BYDAY=MO, TU, WE, TH, FR\n"
            " ;WKST=SU",
            "UID:demo-25\nSUMMARY:Sprintdemo\nDTSTART:20250314T130000Z\n"
            "ATTENDEE:mailto:kari@example.org",
        ),
        encoding="utf-8",
    )
    config = config_with(tmp_path, '[calendar]\nurls = ["sprint.ics"]\n')
    found = year_2025(config)
    assert [(m.title, m.ambassadors) for m in found.meetings] == [
        ("Sprintdemo", ("kari-nordmann",))
    ]
    [problem] = found.problems
    assert problem.events_left_out == 1
    assert problem.error.startswith(
        'left out event 1 ("Daglig standup", UID standup-25): it cannot be expanded '
        "(BadRuleStringFormat: "
    )


def test_a_copied_meeting_that_cannot_be_expanded_is_named_by_the_uid_it_has(
    tmp_path: Path,
) -> None:
    # An Outlook copy of a series keeps the original's UID; this one also has an RRULE that
    # cannot be expanded (spaces in BYDAY). It is named as the file has it; the original is read.
    (tmp_path / "kopi.ics").write_text(
        ics(
            "UID:040000008200E00074C5B7101A82E008\nSUMMARY:Styremøte\n"
            "DTSTART:20250313T080000Z\nRRULE:FREQ=WEEKLY;COUNT=2\n"
            "ATTENDEE:mailto:kari@example.org",
            "UID:040000008200E00074C5B7101A82E008\nSUMMARY:Styremøte (kopi)\n"
            "DTSTART:20250320T080000Z\nRRULE:FREQ=WEEKLY;COUNT=3;BYDAY=TH, FR",
        ),
        encoding="utf-8",
    )
    config = config_with(tmp_path, '[calendar]\nurls = ["kopi.ics"]\n')
    found = year_2025(config)
    assert [(m.title, m.ambassadors) for m in found.meetings] == [
        ("Styremøte", ("kari-nordmann",))
    ] * 2
    [problem] = found.problems
    assert problem.error.startswith(
        'left out event 2 ("Styremøte (kopi)", UID 040000008200E00074C5B7101A82E008): '
        "it cannot be expanded"
    )
