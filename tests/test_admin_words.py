"""What the admin reads from `trnews status` and from a command's warnings.

`status` speaks the newsletter's language, counts with real plurals and shows every time in
the newsletter's zone, named once; `status --json` stays machine output (ISO times, UTC as
stored). A warning logged while a command runs is one line in the voice of the command's
errors, not a raw logging line. Each runs the real CLI against a real SQLite file.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from support.mail import add_readers, with_meeting
from support.servers import FeedServer, free_port
from support.site import Site

from pipeline.store import Store

OSLO = ZoneInfo("Europe/Oslo")


def test_status_shows_one_zone_per_line_in_the_newsletters_language(site: Site) -> None:
    with_meeting(site)
    add_readers(site, [("kari@example.org", "Kari")])
    site.run("send")
    # The scheduler's record of a send: its slot on Oslo's clock, started at an instant.
    started = datetime(2026, 12, 2, 18, 20, 5, tzinfo=UTC)
    with Store.open(site.db) as store:
        store.claim_run("send", "2026-12-02T19:20", due=started, now=started)
        store.finish_run("send", "2026-12-02T19:20", now=started, outcome="ok", detail="")

    text = site.run("status").stdout
    assert "UTC" not in text
    assert text.splitlines()[0] == "Tidene er i Europe/Oslo."
    # The slot and the start on the same clock: 18:20 UTC is 19:20 in Oslo in December.
    assert "siste utsending: 2026-12-02 19:20, ok (startet 2026-12-02 19:20)" in text
    [edition] = json.loads(site.run("status", "--json").stdout)["editions"]
    created = datetime.fromisoformat(edition["created"])
    assert created.utcoffset() == UTC.utcoffset(None)  # the JSON keeps the stored UTC time
    assert f"#{edition['id']:<4} {created.astimezone(OSLO):%Y-%m-%d %H:%M}  sendt" in text
    assert "1 aktive" in text
    assert "(s)" not in text

    site.language = "en"
    site.write()
    text = site.run("status").stdout
    assert text.splitlines()[0] == "Times are in Europe/Oslo."
    assert "last send: 2026-12-02 19:20, ok (started 2026-12-02 19:20)" in text
    assert "Editions:" in text and "1/1 delivered" in text


def test_status_counts_with_real_plurals(site: Site, feeds: FeedServer) -> None:
    broken = feeds.add("/borte.xml", b"", status=500)
    site.ambassador("kari-nordmann", "Kari Nordmann", feeds=[{"url": broken, "kind": "blog"}])
    site.language = "en"
    site.extra_toml = "[collect]\nretries = 0\n"
    site.write()
    site.run("collect")
    text = site.run("status").stdout
    assert "1 failure in a row" in text
    assert "(0 items)" in text
    assert "(s)" not in text


def test_a_warning_during_a_command_is_one_clean_line(site: Site, feeds: FeedServer) -> None:
    """A feed failing past the threshold makes an alert; the mail server is down, so the alert
    cannot go: both are warnings, each shown as one line, with no logging noise."""
    broken = feeds.add("/borte.xml", b"", status=500)
    site.ambassador("kari-nordmann", "Kari Nordmann", feeds=[{"url": broken, "kind": "blog"}])
    site.transport = "smtp"
    site.smtp_port = free_port()  # nobody listens: the alert stays queued
    site.extra_toml = (
        '[alerts]\nto = ["drift@example.org"]\nfeed_failures = 1\n\n[collect]\nretries = 0\n'
    )
    site.write()
    collected = site.run("collect")
    lines = collected.stderr.splitlines()
    assert lines, collected.stderr
    assert all(line.startswith("trnews: warning: ") for line in lines), collected.stderr
    assert any("Could not send the alert" in line for line in lines)
    assert "WARNING" not in collected.stderr and "pipeline." not in collected.stderr
