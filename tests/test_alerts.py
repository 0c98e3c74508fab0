"""Alerts to the admins (`[alerts]`): one message when feeds start failing, one when they work
again, one when a send fails or ends with readers refused for good; never one per run.

Every case runs `trnews collect` and `trnews send` as real processes against a real SQLite
file, with feeds on the loopback HTTP server (a feed fails on cue: status 500, then recovers)
and mail going to a Maildir (alerts land next to the editions: they are told apart by their
To) or to the loopback aiosmtpd server, which can refuse an address on cue. The assertions
read what the admins and the readers receive, and what the CLI prints.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

from support.mail import ADMIN, alerts_config, to_admins
from support.servers import FeedServer, SmtpServer, free_port
from support.site import Site

from pipeline.models import SubscriberState
from pipeline.store import Store

TITLE = "Ambassadørnytt"
"""The newsletter's title in conftest's config: every alert's Subject starts with it."""
SENDER = ("Trondheimsregionen", "nyhetsbrev@example.org")
NO_SUCH_USER = "550 5.1.1 no such user"


# -- helpers ------------------------------------------------------------------------------------


def failing(feeds: FeedServer, path: str, status: int = 500) -> str:
    """Serve an error at `path`; returns the feed's URL."""
    return feeds.add(path, b"server trouble", status=status, content_type="text/plain")


def working(feeds: FeedServer, path: str) -> str:
    """Serve a real blog feed at `path` (the same URL again, if it was failing)."""
    return feeds.add_file(path, "blog_wordpress.xml")


def soon(days: int = 7) -> str:
    """A TOML datetime `days` from now: a meeting in the window is news enough for an edition."""
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0).isoformat()


def add_readers(site: Site, *addresses: str) -> None:
    """Add active readers straight into the site's database, as `trnews subscribers add`
    would (a CLI run costs more than this test's point)."""
    with Store.open(site.db) as store:
        for address in addresses:
            store.add_subscriber(
                address, state=SubscriberState.ACTIVE, source="admin", now=datetime.now(UTC)
            )


def received_by(smtp: SmtpServer, address: str) -> list[EmailMessage]:
    """What the loopback SMTP server accepted for `address`, oldest first."""
    with smtp.handler.lock:
        return [msg for env, msg in smtp.handler.messages if address in env.rcpt_tos]


def body(msg: EmailMessage) -> str:
    return str(msg.get_content()).replace("\r\n", "\n")


def collect(site: Site, times: int = 1) -> None:
    for _ in range(times):
        site.run("collect")


# -- feeds failing and recovering ---------------------------------------------------------------


def test_a_failing_feed_is_reported_once_after_three_runs_and_once_when_it_works_again(
    site: Site, feeds: FeedServer
) -> None:
    broken = failing(feeds, "/kari.xml")
    healthy = feeds.add_file("/ola.xml", "blogger_atom.xml")
    site.ambassador("kari-nordmann", "Kari Nordmann", feeds=[{"url": broken, "kind": "blog"}])
    site.ambassador("ola-hansen", "Ola Hansen", feeds=[{"url": healthy, "kind": "blog"}])
    alerts_config(site, feed_failures=3)

    collect(site, 2)
    assert to_admins(site) == []  # two failures in a row are not yet worth an admin's time

    collect(site)
    [alert] = to_admins(site)
    assert str(alert["Subject"]) == f"[{TITLE}] 1 strøm feiler"
    text = body(alert)
    assert f"- {broken} (Kari Nordmann)" in text  # the URL and whose feed it is
    assert "3 feil på rad, har aldri virket" in text
    assert "siste feil: HTTP 500 Internal Server Error" in text
    assert healthy not in text

    collect(site, 2)
    assert len(to_admins(site)) == 1  # still failing: no news for the admins

    working(feeds, "/kari.xml")
    collect(site)
    alerts = to_admins(site)
    assert len(alerts) == 2
    assert str(alerts[1]["Subject"]) == f"[{TITLE}] 1 strøm virker igjen"
    assert f"Virker igjen:\n- {broken} (Kari Nordmann)" in body(alerts[1])

    # A new episode: failing again is news again, counted from the recovery.
    failing(feeds, "/kari.xml", status=502)
    collect(site, 2)
    assert len(to_admins(site)) == 2
    collect(site)
    alerts = to_admins(site)
    assert len(alerts) == 3
    assert str(alerts[2]["Subject"]) == f"[{TITLE}] 1 strøm feiler"
    text = body(alerts[2])
    assert f"- {broken} (Kari Nordmann)" in text
    assert "3 feil på rad, virket sist " in text
    assert "siste feil: HTTP 502 Bad Gateway" in text


def test_feeds_crossing_the_threshold_in_one_run_make_one_message_that_lists_them_all(
    site: Site, feeds: FeedServer
) -> None:
    kari_blog = failing(feeds, "/kari-blogg.xml", status=500)
    kari_other = failing(feeds, "/kari-gammel.xml", status=404)
    ola = failing(feeds, "/ola.xml", status=403)
    siri = working(feeds, "/siri.xml")
    site.ambassador(
        "kari-nordmann",
        "Kari Nordmann",
        feeds=[{"url": kari_blog, "kind": "blog"}, {"url": kari_other, "kind": "blog"}],
    )
    site.ambassador("ola-hansen", "Ola Hansen", feeds=[{"url": ola, "kind": "blog"}])
    site.ambassador("siri-berg", "Siri Berg", feeds=[{"url": siri, "kind": "blog"}])
    alerts_config(site, feed_failures=2)

    collect(site)
    assert to_admins(site) == []
    failing(feeds, "/siri.xml")  # Siri's feed fails from now on: one failure after this run
    collect(site)
    [alert] = to_admins(site)
    assert str(alert["Subject"]) == f"[{TITLE}] 3 strømmer feiler"
    text = body(alert)
    assert f"- {kari_blog} (Kari Nordmann)" in text
    assert f"- {kari_other} (Kari Nordmann)" in text
    assert f"- {ola} (Ola Hansen)" in text
    assert "HTTP 500 Internal Server Error" in text
    assert "HTTP 404 Not Found" in text
    assert "HTTP 403 Forbidden" in text
    assert siri not in text  # one failure is below the threshold

    # One run where two recover and another crosses the threshold: still one message.
    working(feeds, "/kari-blogg.xml")
    working(feeds, "/ola.xml")
    collect(site)
    alerts = to_admins(site)
    assert len(alerts) == 2
    assert str(alerts[1]["Subject"]) == f"[{TITLE}] 1 strøm feiler og 2 strømmer virker igjen"
    failing_part, _, recovered_part = body(alerts[1]).partition("Virker igjen:")
    assert f"- {siri} (Siri Berg)" in failing_part
    assert kari_blog in recovered_part
    assert ola in recovered_part
    assert kari_other not in body(alerts[1])  # still failing, and the admins know it already


def test_without_alert_recipients_alerts_are_only_logged_and_the_outbox_has_only_editions(
    site: Site, feeds: FeedServer
) -> None:
    broken = failing(feeds, "/kari.xml")
    healthy = working(feeds, "/ola.xml")
    site.ambassador("kari-nordmann", "Kari Nordmann", feeds=[{"url": broken, "kind": "blog"}])
    site.ambassador("ola-hansen", "Ola Hansen", feeds=[{"url": healthy, "kind": "blog"}])
    site.extra_toml = "[alerts]\nfeed_failures = 1\n\n[collect]\nretries = 0\n"  # no `to`
    site.write()
    add_readers(site, "leser@example.org")

    collected = site.run("collect")
    assert f"Alert: feed {broken} is failing" in collected.stderr  # the admin still sees it
    sent = site.run("send")
    assert "Sent edition 1: 1 delivered, 0 deferred, 0 failed." in sent.stdout

    [edition] = site.messages()  # the edition, and nothing addressed to anyone else
    assert [a for _, a in getaddresses(edition.get_all("To") or [])] == ["leser@example.org"]
    assert edition["Auto-Submitted"] is None
    assert "Traceback" not in collected.stderr + sent.stderr


# -- sends that fail ----------------------------------------------------------------------------


def test_a_send_the_mail_server_stops_is_reported_once_with_the_next_job(
    site: Site, smtp: SmtpServer
) -> None:
    site.transport = "smtp"
    dead = free_port()  # nobody listens here: the mail server is down
    site.smtp_port = dead
    site.meeting(f'title = "Regionrådet"\nstart = {soon()}')
    alerts_config(site)
    add_readers(site, "kari@example.org", "ola@example.org")

    first = site.run("send", check=False)
    assert first.returncode == 1
    assert "cannot reach SMTP server" in first.stderr
    second = site.run("send", check=False)  # the same edition, still owed, fails again
    assert second.returncode == 1

    # The server is still down: the alert cannot go, the collect is not the worse for it.
    down = site.run("collect")
    assert "Could not send the alert" in down.stderr
    assert "Utsendingen av utgave 1 feilet" in down.stderr

    site.smtp_port = smtp.port  # the server is back
    site.write()
    site.run("collect")
    [alert] = received_by(smtp, ADMIN)
    assert str(alert["Subject"]) == f"[{TITLE}] Utsendingen av utgave 1 feilet"
    assert f"cannot reach SMTP server 127.0.0.1:{dead}" in body(alert)
    assert received_by(smtp, "kari@example.org") == []  # a collect sends no edition

    resumed = site.run("send")
    assert "edition 1: 2 delivered, 0 deferred, 0 failed." in resumed.stdout
    assert len(received_by(smtp, "kari@example.org")) == 1
    assert len(received_by(smtp, ADMIN)) == 1  # the outage was told once, and only once


def test_readers_refused_for_good_are_reported_once_per_edition(
    site: Site, smtp: SmtpServer
) -> None:
    site.transport = "smtp"
    site.meeting(f'title = "Regionrådet"\nstart = {soon()}')
    alerts_config(site)
    add_readers(site, "kari@example.org", "borte@example.org", "senere@example.org")
    smtp.handler.refuse["borte@example.org"] = NO_SUCH_USER
    smtp.handler.refuse["senere@example.org"] = "451 4.7.1 Try again later"

    first = site.run("send")
    assert "Sent edition 1: 1 delivered, 1 deferred, 1 failed." in first.stdout
    [alert] = received_by(smtp, ADMIN)
    assert str(alert["Subject"]) == f"[{TITLE}] Utgave 1: 1 leser kunne ikke nås"
    text = body(alert)
    assert f"- borte@example.org: {NO_SUCH_USER}" in text

    # The next run tries the deferred reader again, who is now refused for good too: the
    # admins already know that edition 1 lost readers.
    smtp.handler.refuse["senere@example.org"] = NO_SUCH_USER
    second = site.run("send")
    assert "edition 1: 0 delivered, 0 deferred, 1 failed." in second.stdout
    assert len(received_by(smtp, ADMIN)) == 1

    # The alert lists the readers lost for good; one deferred by the first run was not lost
    # then (the next run may get through), so listing it there tells the admins a falsehood.
    reasons = text.partition("The first reasons:")[2].partition("\n\n")[0]
    assert "senere@example.org" not in reasons


# -- admins' own addresses refused ----------------------------------------------------------------


def test_an_admin_address_refused_for_good_is_logged_and_does_not_hold_up_later_alerts(
    site: Site, feeds: FeedServer, smtp: SmtpServer
) -> None:
    site.transport = "smtp"
    broken = failing(feeds, "/kari.xml")
    site.ambassador("kari-nordmann", "Kari Nordmann", feeds=[{"url": broken, "kind": "blog"}])
    alerts_config(site, to=[ADMIN, "gammel-admin@example.org"], feed_failures=1)
    smtp.handler.refuse["gammel-admin@example.org"] = NO_SUCH_USER

    first = site.run("collect")
    assert "gammel-admin@example.org" in first.stderr
    assert NO_SUCH_USER in first.stderr
    [alert] = received_by(smtp, ADMIN)
    assert str(alert["Subject"]) == f"[{TITLE}] 1 strøm feiler"
    [(envelope, _)] = smtp.handler.messages
    assert envelope.mail_from == SENDER[1]
    assert envelope.rcpt_tos == [ADMIN]

    working(feeds, "/kari.xml")
    site.run("collect")
    alerts = received_by(smtp, ADMIN)
    # The refused alert was settled, not retried: the next alert goes, the first not twice.
    assert [str(a["Subject"]) for a in alerts] == [
        f"[{TITLE}] 1 strøm feiler",
        f"[{TITLE}] 1 strøm virker igjen",
    ]


def test_an_admin_refused_first_in_the_list_does_not_keep_the_alert_from_the_next_admin(
    site: Site, feeds: FeedServer, smtp: SmtpServer
) -> None:
    site.transport = "smtp"
    broken = failing(feeds, "/kari.xml")
    site.ambassador("kari-nordmann", "Kari Nordmann", feeds=[{"url": broken, "kind": "blog"}])
    alerts_config(site, to=["gammel-admin@example.org", ADMIN], feed_failures=1)
    smtp.handler.refuse["gammel-admin@example.org"] = NO_SUCH_USER

    site.run("collect")
    [alert] = received_by(smtp, ADMIN)
    assert str(alert["Subject"]) == f"[{TITLE}] 1 strøm feiler"


def test_an_alert_an_admin_server_asks_to_retry_later_goes_with_the_next_job(
    site: Site, feeds: FeedServer, smtp: SmtpServer
) -> None:
    site.transport = "smtp"
    broken = failing(feeds, "/kari.xml")
    site.ambassador("kari-nordmann", "Kari Nordmann", feeds=[{"url": broken, "kind": "blog"}])
    alerts_config(site, feed_failures=1)
    # Greylisting: a first message from an unknown sender gets "try later", a retry gets in.
    smtp.handler.refuse[ADMIN] = "451 4.7.1 Greylisted, please try again later"

    site.run("collect")
    assert received_by(smtp, ADMIN) == []
    del smtp.handler.refuse[ADMIN]
    site.run("collect")  # still failing: no new alert, but the one queued goes now
    [alert] = received_by(smtp, ADMIN)
    assert str(alert["Subject"]) == f"[{TITLE}] 1 strøm feiler"


# -- the message itself ---------------------------------------------------------------------------


def test_an_alert_is_a_plain_utf8_message_from_the_sender_to_the_admins_marked_automatic(
    site: Site, feeds: FeedServer
) -> None:
    broken = failing(feeds, "/kari.xml")
    site.ambassador("kari-nordmann", "Kari Nordmann", feeds=[{"url": broken, "kind": "blog"}])
    admins = [ADMIN, "redaksjon@example.org"]
    alerts_config(site, to=admins, feed_failures=1)

    before = datetime.now(UTC).replace(microsecond=0)
    site.run("collect")
    after = datetime.now(UTC)
    copies = to_admins(site, tuple(admins))
    # One copy per admin, each addressed to that admin alone and settled on its own (one
    # admin's server refusing or deferring never holds up the other's copy).
    assert sorted(str(m["To"]) for m in copies) == sorted(admins)
    msg = copies[0]
    for name in ("From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted"):
        assert len(msg.get_all(name) or []) == 1, f"{name}: {msg.get_all(name)}"
    assert parseaddr(str(msg["From"])) == SENDER
    assert str(msg["Subject"]) == f"[{TITLE}] 1 strøm feiler"  # non-ASCII title intact
    assert str(msg["Auto-Submitted"]) == "auto-generated"  # RFC 3834: no vacation replies
    assert before <= parsedate_to_datetime(str(msg["Date"])) <= after
    assert re.fullmatch(r"<[^<>@\s]+@example\.org>", str(msg["Message-ID"]))
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"
    assert broken in body(msg)
    assert msg["List-Unsubscribe"] is None  # not a newsletter: nothing to unsubscribe from


def test_an_alert_speaks_the_newsletters_language_with_real_plurals(
    site: Site, feeds: FeedServer
) -> None:
    """A nynorsk newsletter's admins read nynorsk, and "1 feed", never "1 feed(s)", in English."""
    broken = failing(feeds, "/kari.xml", status=500)
    site.ambassador("kari-nordmann", "Kari Nordmann", feeds=[{"url": broken, "kind": "blog"}])
    site.language = "nn"
    alerts_config(site, feed_failures=1)
    collect(site)
    [alert] = to_admins(site)
    assert str(alert["Subject"]) == f"[{TITLE}] 1 straum feilar"
    assert "1 feil på rad, har aldri verka" in body(alert)
    assert "siste feil: HTTP 500 Internal Server Error" in body(alert)

    site.language = "en"
    working(feeds, "/kari.xml")
    alerts_config(site, feed_failures=1)
    collect(site)
    alerts = to_admins(site)
    assert str(alerts[1]["Subject"]) == f"[{TITLE}] 1 feed working again"
    assert "(s)" not in str(alerts[1]["Subject"]) + body(alerts[1])


def test_a_send_from_the_command_line_that_cannot_start_is_alerted_as_a_scheduled_one(
    site: Site,
) -> None:
    """One send job for both doors: `trnews send` failing before any message (here an admin's
    footer template that MJML refuses) tells the admins as the scheduler's send does."""
    site.meeting(f'title = "Regionrådet"\nstart = {soon()}')
    alerts_config(site)
    add_readers(site, "kari@example.org")
    (site.root / "maler").mkdir()
    (site.root / "maler" / "footer.mjml").write_text("<mj-section>\x1b</mj-section>\n", "utf-8")
    config = site.config.read_text("utf-8")
    site.config.write_text(config.replace("max_items", 'templates = "maler"\nmax_items', 1))

    failed = site.run("send", check=False)

    assert failed.returncode == 1
    assert "did not give valid MJML" in failed.stderr
    assert [m for m in site.messages() if str(m["To"]) != ADMIN] == []  # no reader mailed
    [alert] = to_admins(site)
    assert str(alert["Subject"]) == f"[{TITLE}] Utsendingen feilet"  # not "the scheduled"
    assert "Utsendingen som ble startet" in body(alert)
    assert "did not give valid MJML" in body(alert)
