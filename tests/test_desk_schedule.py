"""The scheduler with the editorial desk, on a controllable clock: the draft made `draft_hours`
before each send, a send the editors hold up, and the edition sent after a late approval.

As in test_schedule.py, `Scheduler.run_job` and `Scheduler.watch_desk` (what APScheduler's
fires and the desk watch run) are called at moments a fake clock names, with the real database,
the real feeds over loopback and the Maildir; the editors act through `pipeline.desk.act` on
that database, as the desk page does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from email.message import EmailMessage

import pytest

from pipeline import desk
from pipeline.schedule import STATE_KEY, Scheduler
from pipeline.store import Store
from tests.support.mail import ADMIN
from tests.test_schedule import FakeClock, oslo, scheduler

EDITORS = ("ed1@example.org", "ed2@example.org")
READERS = ("a@example.org", "b@example.org")


def desk_site(site, feeds, mode: str):  # type: ignore[no-untyped-def]
    """A site with one blog, two readers, an admin and two editors in `mode`."""
    url = feeds.add_file("/kari.xml", "blog_wordpress.xml")
    site.ambassador("kari", "Kari Nordmann", "Prorektor", feeds=[{"url": url, "kind": "blog"}])
    site.language = "en"
    site.lookback_days = 36_500  # the fixture's posts stay new on the fake clock's dates
    site.extra_toml = (
        f'[alerts]\nto = ["{ADMIN}"]\n\n'
        f'[editorial]\nmode = "{mode}"\neditors = {json.dumps(list(EDITORS))}\n'
        "draft_hours = 4\n"
    )
    site.write()
    for address in READERS:
        site.run("subscribers", "add", address)
    return site


@pytest.fixture
def approve_site(site, feeds, monkeypatch) -> Iterator:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TRNEWS_SECRET", "test-secret")
    yield desk_site(site, feeds, "approve")


@pytest.fixture
def review_site(site, feeds, monkeypatch) -> Iterator:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TRNEWS_SECRET", "test-secret")
    yield desk_site(site, feeds, "review")


def to(site, *addresses: str) -> list[EmailMessage]:  # type: ignore[no-untyped-def]
    return [m for m in site.messages() if str(m["To"]) in addresses]


def alerts(site) -> list[EmailMessage]:  # type: ignore[no-untyped-def]
    """The messages to the admin and the editors but the drafts themselves."""
    return [m for m in to(site, ADMIN, *EDITORS) if not str(m["Subject"]).startswith("[Draft]")]


def editions(site) -> list[int]:  # type: ignore[no-untyped-def]
    with Store.open(site.db) as store:
        return sorted(e.id for e in store.editions())


def act(site, verb: str, by: str, at: datetime) -> None:  # type: ignore[no-untyped-def]
    """An editor's action, as the desk page does it."""
    with Store.open(site.db) as store:
        draft = store.current_draft()
        assert draft is not None
        desk.act(store, draft, verb, by=by, now=at)


def last_run(site, job: str = "send"):  # type: ignore[no-untyped-def]
    with Store.open(site.db) as store:
        return store.last_runs()[job]


def run_of(site, slot: str):  # type: ignore[no-untyped-def]
    with Store.open(site.db) as store:
        return store.run_of("send", slot)


def through_the_first_send(site):  # type: ignore[no-untyped-def]
    """A scheduler on a fake clock that has run the draft (Mon 30 Nov 04:00, draft_hours 4)
    and the send (08:00) of the first week; the clock stands just after the send."""
    clock = FakeClock(oslo(2026, 11, 29, 12))
    s = scheduler(site, clock)
    clock.at(oslo(2026, 11, 30, 4, 0, 5))
    s.run_job("draft")
    clock.at(oslo(2026, 11, 30, 8, 0, 1))
    s.run_job("send")
    return s, clock


def test_the_draft_is_made_and_mailed_draft_hours_before_the_send(approve_site) -> None:  # type: ignore[no-untyped-def]
    site = approve_site
    clock = FakeClock(oslo(2026, 11, 29, 12))
    s = scheduler(site, clock)
    s._write_state()
    with Store.open(site.db) as store:
        state = json.loads(store.get_meta(STATE_KEY) or "{}")
    assert state["next_draft"] == "2026-11-30T04:00:00+01:00"
    clock.at(oslo(2026, 11, 30, 3, 59))
    s.run_job("draft")
    with Store.open(site.db) as store:
        assert store.current_draft() is None, "no draft before send − draft_hours"
    assert to(site, *EDITORS) == []
    clock.at(oslo(2026, 11, 30, 4, 0, 5))
    s.run_job("draft")
    s.run_job("draft")  # a doubled fire: one draft, one mail each
    mails = to(site, *EDITORS)
    assert sorted(str(m["To"]) for m in mails) == sorted(EDITORS)
    assert all("/desk/" in m.get_body(("plain",)).get_content() for m in mails)  # type: ignore[union-attr]
    with Store.open(site.db) as store:
        draft = store.current_draft()
        assert draft is not None and draft.items
        assert draft.send_at == oslo(2026, 11, 30, 8)
    run = last_run(site, "draft")
    assert run.outcome == "ok"
    assert "Made draft 1 for the send of Mon 30 Nov 08:00 and mailed it to 2 editors" in (
        run.detail or ""
    )
    assert to(site, *READERS) == [] and editions(site) == []


def test_approve_mode_waits_tells_once_and_sends_after_a_late_approval(approve_site) -> None:  # type: ignore[no-untyped-def]
    site = approve_site
    s, clock = through_the_first_send(site)
    assert editions(site) == [] and to(site, *READERS) == []
    told = alerts(site)
    assert sorted(str(m["To"]) for m in told) == sorted([ADMIN, *EDITORS])
    for m in told:
        assert "awaits approval" in str(m["Subject"])
        body = m.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "ed1@example.org, ed2@example.org" in body  # who to ask
        assert ("/desk/" in body) == (str(m["To"]) in EDITORS)
        assert "failed" not in str(m["Subject"]).lower()
    run = last_run(site)
    assert run.slot == "2026-11-30T08:00" and run.outcome == "waiting"
    assert "awaits approval" in (run.detail or "")
    # Later ticks and a doubled fire: no edition, and nobody is told again.
    clock.at(oslo(2026, 11, 30, 8, 0, 40))
    s.run_job("send")
    s.watch_desk()
    clock.at(oslo(2026, 11, 30, 9, 15))
    s.watch_desk()
    assert len(alerts(site)) == len(told)
    assert editions(site) == []
    status = site.run("status").stdout
    assert "waiting" in status
    # An editor approves on the desk page; the next tick, under a minute later, sends it.
    act(site, "approve", "ed2@example.org", oslo(2026, 11, 30, 9, 30))
    clock.at(oslo(2026, 11, 30, 9, 30, 40))
    s.watch_desk()
    assert editions(site) == [1]
    assert sorted(str(m["To"]) for m in to(site, *READERS)) == sorted(READERS)
    run = run_of(site, "2026-11-30T08:00")
    assert run is not None and run.outcome == "ok"
    assert (
        "sent the edition held since the send of Mon 30 Nov 08:00 after ed2@example.org "
        "approved it" in (run.detail or "")
    )
    # Never twice: more ticks, the slot fired again.
    clock.at(oslo(2026, 11, 30, 9, 31, 10))
    s.watch_desk()
    s.run_job("send")
    assert editions(site) == [1] and len(to(site, *READERS)) == 2
    assert "sent the edition held" in site.run("status").stdout


def test_an_approval_after_the_next_slot_is_sent_by_that_slot(approve_site) -> None:  # type: ignore[no-untyped-def]
    site = approve_site
    s, clock = through_the_first_send(site)
    assert run_of(site, "2026-11-30T08:00").outcome == "waiting"
    # Approved while the scheduler was down; it is back just after the next send's time.
    act(site, "approve", "ed1@example.org", oslo(2026, 12, 6, 20))
    clock.at(oslo(2026, 12, 7, 8, 0, 2))
    s = scheduler(site, clock)
    s.watch_desk()  # the next send has come: it is that send's to make
    assert editions(site) == []
    s.run_job("send")
    s.watch_desk()
    assert editions(site) == [1] and len(to(site, *READERS)) == 2
    assert "edition 1 sent" in (run_of(site, "2026-12-07T08:00").detail or "")
    assert run_of(site, "2026-11-30T08:00").outcome == "waiting"


def test_review_mode_sends_an_untouched_draft_and_waits_for_a_held_one(review_site) -> None:  # type: ignore[no-untyped-def]
    site = review_site
    s, clock = through_the_first_send(site)
    assert editions(site) == [1] and len(to(site, *READERS)) == 2
    assert to(site, ADMIN) == []
    # The next week an editor holds the draft: the send waits, everyone is told it is held.
    site.send_when_empty = True  # the feed has nothing newer: an edition all the same
    site.write()
    s.watch()
    clock.at(oslo(2026, 12, 7, 4, 0, 5))
    s.run_job("draft")
    act(site, "hold", "ed1@example.org", oslo(2026, 12, 7, 6))
    clock.at(oslo(2026, 12, 7, 8, 0, 1))
    s.run_job("send")
    assert editions(site) == [1]
    held = [m for m in alerts(site) if "is held" in str(m["Subject"])]
    assert sorted(str(m["To"]) for m in held) == sorted([ADMIN, *EDITORS])
    assert "ed1@example.org held it" in held[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert last_run(site).outcome == "waiting"
    act(site, "approve", "ed2@example.org", oslo(2026, 12, 7, 10))
    clock.at(oslo(2026, 12, 7, 10, 0, 50))
    s.watch_desk()
    s.watch_desk()
    assert editions(site) == [1, 2] and len(to(site, *READERS)) == 4
    assert "after ed2@example.org approved it" in (run_of(site, "2026-12-07T08:00").detail or "")


def test_a_live_edit_turning_the_desk_on_makes_no_draft_for_a_passed_time(approve_site) -> None:  # type: ignore[no-untyped-def]
    site = approve_site
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace('mode = "approve"', 'mode = "auto"'), encoding="utf-8")
    clock = FakeClock(oslo(2026, 11, 30, 4, 30))
    s: Scheduler = scheduler(site, clock)
    s.run_job("draft")
    site.config.write_text(text, encoding="utf-8")  # at 04:30 the desk is turned on
    s.watch()
    assert s.config.editorial.mode == "approve"
    s.run_job("draft")
    with Store.open(site.db) as store:
        assert store.current_draft() is None, "04:00 passed before the desk was on"
    clock.at(oslo(2026, 12, 7, 4, 0, 3))
    s.run_job("draft")
    with Store.open(site.db) as store:
        assert store.current_draft() is not None
