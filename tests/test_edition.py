"""What goes into an edition (SPEC.md), end to end: collect and send through the CLI.

Feeds are served by the loopback HTTP server and change between runs the way real feeds do;
editions land in a Maildir and are read back as a subscriber would read them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from xml.sax.saxutils import escape

from support.mail import html_part, text_part
from support.servers import FeedServer, free_port
from support.site import Site

NOW = datetime.now(UTC)


def rss(*items: tuple[str, str, datetime | None], author: str = "Kari Nordmann") -> bytes:
    """A WordPress-shaped RSS 2.0 feed with these (title, link, date) items."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">',
        "<channel><title>Blogg</title><link>https://blogg.example.org</link>",
        "<description>En blogg</description><generator>https://wordpress.org/?v=6.6</generator>",
    ]
    for title, link, date in items:
        out.append(f"<item><title>{escape(title)}</title><link>{escape(link)}</link>")
        out.append(f"<dc:creator><![CDATA[{author}]]></dc:creator>")
        if date is not None:
            out.append(f"<pubDate>{format_datetime(date)}</pubDate>")
        out.append(f"<description><![CDATA[<p>Om {escape(title)}.</p>]]></description></item>")
    out.append("</channel></rss>")
    return "\n".join(out).encode()


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def one_reader(site: Site) -> None:
    site.run("subscribers", "add", "leser@example.org", "--name", "Anne Abonnent")


def test_first_edition_holds_recent_items_but_never_the_old_backlog(
    feeds: FeedServer, site: Site
) -> None:
    url = feeds.add(
        "/kari.xml",
        rss(
            ("Fersk tekst", "https://blogg.example.org/fersk", ago(2)),
            ("Nesten en måned", "https://blogg.example.org/nesten", ago(29)),
            ("Gammel tekst", "https://blogg.example.org/gammel", ago(45)),
            ("Fjorårets tekst", "https://blogg.example.org/fjor", ago(400)),
        ),
    )
    site.ambassador(
        "kari-nordmann", "Kari Nordmann", "Prorektor, NTNU", [{"url": url, "kind": "blog"}]
    )
    one_reader(site)
    site.run("collect")
    out = site.run("send").stdout
    assert "1 delivered" in out
    [msg] = site.messages()
    text = text_part(msg)
    assert "Fersk tekst" in text and "Nesten en måned" in text
    assert "Gammel tekst" not in text and "Fjorårets tekst" not in text
    assert "Kari Nordmann, Prorektor, NTNU" in text


def test_second_send_with_nothing_new_sends_nothing_then_a_new_item_goes_out_alone(
    feeds: FeedServer, site: Site
) -> None:
    first = ("Første innlegg", "https://blogg.example.org/1", ago(3))
    url = feeds.add("/kari.xml", rss(first))
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": url, "kind": "blog"}])
    one_reader(site)
    site.run("collect")
    site.run("send")
    assert len(site.messages()) == 1

    site.run("collect")
    again = site.run("send")
    assert "nothing new" in again.stdout
    assert len(site.messages()) == 1, "a second send with nothing new must send nothing"

    # The ambassador publishes again; the feed now carries both posts.
    feeds.add(
        "/kari.xml",
        rss(first, ("Andre innlegg", "https://blogg.example.org/2", NOW - timedelta(minutes=5))),
    )
    site.run("collect")
    site.run("send")
    messages = site.messages()
    assert len(messages) == 2
    text = text_part(messages[1])
    assert "Andre innlegg" in text
    assert "Første innlegg" not in text, "an item is sent once only"


def test_an_item_collected_late_but_dated_before_the_last_edition_still_goes_out(
    feeds: FeedServer, site: Site
) -> None:
    """Its date is before the previous edition, but trnews first saw it after: it is due."""
    url = feeds.add("/kari.xml", rss(("Først", "https://blogg.example.org/1", ago(5))))
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": url, "kind": "blog"}])
    one_reader(site)
    site.run("collect")
    site.run("send")
    # The blog back-dates a post to four days ago; trnews sees it only now.
    feeds.add(
        "/kari.xml",
        rss(
            ("Først", "https://blogg.example.org/1", ago(5)),
            ("Tilbakedatert", "https://blogg.example.org/2", ago(4)),
        ),
    )
    site.run("collect")
    site.run("send")
    assert "Tilbakedatert" in text_part(site.messages()[-1])


def test_a_newly_added_feed_brings_only_its_last_lookback_days(
    feeds: FeedServer, site: Site
) -> None:
    kari = feeds.add("/kari.xml", rss(("Kari skriver", "https://kari.example.org/1", ago(1))))
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": kari, "kind": "blog"}])
    one_reader(site)
    site.run("collect")
    site.run("send")

    ola = feeds.add(
        "/ola.xml",
        rss(
            ("Ola nylig", "https://ola.example.org/nylig", ago(10)),
            *[
                (f"Ola arkiv {n}", f"https://ola.example.org/arkiv/{n}", ago(40 + n * 30))
                for n in range(12)
            ],
            author="Ola Hansen",
        ),
    )
    site.ambassador("ola-hansen", "Ola Hansen", "Ordfører", [{"url": ola, "kind": "blog"}])
    site.write()
    site.run("collect")
    site.run("send")
    text = text_part(site.messages()[-1])
    assert "Ola nylig" in text, (
        "a new feed's recent items are due even though dated before the last edition"
    )
    assert "Ola arkiv" not in text, "a new feed's backlog is never sent"
    assert "Kari skriver" not in text


def test_a_cross_posted_chronicle_appears_once_as_a_chronicle_for_every_author(
    feeds: FeedServer, site: Site
) -> None:
    avis = feeds.add_file("/avis.xml", "avis_shared.xml", content_type="application/rss+xml")
    blog = feeds.add_file("/kari.xml", "blog_wordpress.xml")
    site.ambassador(
        "kari-nordmann",
        "Kari Nordmann",
        "Prorektor",
        [
            {"url": blog, "kind": "blog"},
            {"url": avis, "kind": "chronicle", "author": "Kari Nordmann"},
        ],
    )
    site.ambassador(
        "ola-hansen",
        "Ola Hansen",
        "Ordfører",
        [
            {"url": avis, "kind": "chronicle", "author": "Ola Hansen"},
        ],
    )
    one_reader(site)
    site.run("collect")
    site.run("send")
    msg = site.messages()[-1]
    text = text_part(msg)
    chronicles = text.partition("Blogginnlegg")[0]
    link = "https://www.avisa.example/debatt/kronikk-om-trondheimsregionen"
    assert text.lower().count(link.lower()) == 1, "one item for the article both feeds carry"
    assert link.lower() in chronicles.lower(), "the copy from the newspaper makes it a chronicle"
    assert "utm_" not in text and "utm_" not in html_part(msg)
    # The co-written chronicle names both ambassadors; other writers' pieces are not ours.
    assert "Kari Nordmann, Prorektor; Ola Hansen, Ordfører" in chronicles.replace("\n", " ")
    assert "Per Person" not in text and "Lise Leser" not in text


def test_meetings_in_the_window_are_listed_soonest_first_and_a_new_meeting_alone_is_news(
    feeds: FeedServer, site: Site
) -> None:
    url = feeds.add("/kari.xml", rss(("Innlegg", "https://blogg.example.org/1", ago(1))))
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": url, "kind": "blog"}])

    def at(days: int) -> str:
        return (NOW + timedelta(days=days)).replace(microsecond=0).isoformat()

    site.meeting(f'title = "Senere møte"\nstart = {at(20)}\nambassadors = ["kari-nordmann"]')
    site.meeting(f'title = "Snart møte"\nstart = {at(2)}\nlocation = "Støren"')
    site.meeting(f'title = "Langt fram"\nstart = {at(45)}')
    site.meeting(f'title = "Forbi"\nstart = {at(-2)}')
    one_reader(site)
    site.run("collect")
    site.run("send")
    text = text_part(site.messages()[-1])
    _, _, meetings = text.partition("Kommende møter")
    assert meetings.index("Snart møte") < meetings.index("Senere møte")
    assert "Langt fram" not in text and "Forbi" not in text
    assert "Støren" in meetings and "Kari Nordmann" in meetings

    # Nothing new: the same meetings are no news.
    assert "nothing new" in site.run("send").stdout
    # A meeting added to the config is news on its own, and the edition lists every upcoming one.
    site.meeting(f'title = "Nytt møte"\nstart = {at(5)}')
    site.write()
    site.run("send")
    latest = text_part(site.messages()[-1])
    assert len(site.messages()) == 2
    assert "Nytt møte" in latest and "Snart møte" in latest
    assert "Innlegg\n" not in latest


def test_send_when_empty_sends_an_edition_without_news(feeds: FeedServer, site: Site) -> None:
    url = feeds.add("/kari.xml", rss())
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": url, "kind": "blog"}])
    site.send_when_empty = True
    one_reader(site)
    site.run("collect")
    site.run("send")
    [msg] = site.messages()
    assert "Ingen nye innlegg" in text_part(msg)


def test_max_items_caps_the_edition_and_says_how_many_more(feeds: FeedServer, site: Site) -> None:
    url = feeds.add(
        "/kari.xml",
        rss(
            *[
                (f"Innlegg nummer {n}", f"https://blogg.example.org/{n}", ago(1 + n / 10))
                for n in range(7)
            ]
        ),
    )
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": url, "kind": "blog"}])
    site.max_items = 5
    one_reader(site)
    site.run("collect")
    site.run("send")
    text = text_part(site.messages()[-1])
    assert sum(f"Innlegg nummer {n}\n" in text for n in range(7)) == 5
    assert "Innlegg nummer 0" in text, "the newest items are the ones shown"
    assert "og 2 innlegg til" in text
    assert "https://nyhetsbrev.example.org/archive" in text
    # The two left out were part of that edition: they do not come back in the next one.
    site.run("collect")
    assert "nothing new" in site.run("send").stdout


def test_english_edition_has_english_headings_and_dates(feeds: FeedServer, site: Site) -> None:
    avis = feeds.add_file("/avis.xml", "avis_shared.xml")
    blog = feeds.add_file("/kari.xml", "blog_wordpress.xml")
    site.language = "en"
    site.ambassador(
        "kari-nordmann",
        "Kari Nordmann",
        "",
        [
            {"url": blog, "kind": "blog"},
            {"url": avis, "kind": "chronicle", "author": "Kari Nordmann"},
        ],
    )
    one_reader(site)
    site.run("collect")
    site.run("send")
    text = text_part(site.messages()[-1])
    assert text.index("Chronicles") < text.index("Blog posts")
    yesterday = NOW - timedelta(days=1)
    assert f"{yesterday:%B} " in text
    assert "Kronikker" not in text


def test_without_subscribers_no_edition_is_built_and_items_stay_due(
    feeds: FeedServer, site: Site
) -> None:
    url = feeds.add("/kari.xml", rss(("Venter", "https://blogg.example.org/1", ago(1))))
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": url, "kind": "blog"}])
    site.run("collect")
    out = site.run("send").stdout
    assert "no active subscribers" in out
    one_reader(site)
    site.run("send")
    assert "Venter" in text_part(site.messages()[-1])


def test_items_of_an_ambassador_removed_from_the_config_are_not_sent(
    feeds: FeedServer, site: Site
) -> None:
    kari = feeds.add("/kari.xml", rss(("Kari", "https://kari.example.org/1", ago(1))))
    ola = feeds.add(
        "/ola.xml", rss(("Ola", "https://ola.example.org/1", ago(1)), author="Ola Hansen")
    )
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": kari, "kind": "blog"}])
    site.ambassador("ola-hansen", "Ola Hansen", "", [{"url": ola, "kind": "blog"}])
    one_reader(site)
    site.run("collect")
    site.ambassadors.pop()
    site.write()
    site.run("send")
    text = text_part(site.messages()[-1])
    assert "Kari" in text and "Ola Hansen" not in text


def test_a_resumed_send_delivers_the_frozen_edition_even_if_feeds_changed(
    feeds: FeedServer, site: Site, smtp: object
) -> None:
    url = feeds.add("/kari.xml", rss(("Frosset innhold", "https://blogg.example.org/1", ago(1))))
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": url, "kind": "blog"}])
    site.transport = "smtp"
    real_port = site.smtp_port
    site.smtp_port = free_port()  # nothing listens here: the mail server is down
    for n in range(3):
        site.run("subscribers", "add", f"leser{n}@example.org")
    site.run("collect")
    down = site.run("send", check=False)
    assert down.returncode == 1
    assert "nothing is lost" in down.stderr
    status = json.loads(site.run("status", "--json").stdout)
    [edition] = status["editions"]
    assert (
        edition["status"] == "sending" and edition["recipients"] == 3 and edition["delivered"] == 0
    )

    # Meanwhile the ambassador publishes more; the frozen edition must not change.
    feeds.add(
        "/kari.xml",
        rss(
            ("Frosset innhold", "https://blogg.example.org/1", ago(1)),
            ("Kom etterpå", "https://blogg.example.org/2", NOW),
        ),
    )
    site.run("collect")
    site.smtp_port = real_port
    site.write()
    out = site.run("send").stdout
    assert "Resumed edition 1: 3 delivered" in out
    received = smtp.handler.by_recipient()  # type: ignore[attr-defined]
    assert sorted(received) == [f"leser{n}@example.org" for n in range(3)]
    for msg in received.values():
        text = text_part(msg)
        assert "Frosset innhold" in text and "Kom etterpå" not in text
    # The newer item goes out in the next edition.
    site.run("send")
    assert "Kom etterpå" in text_part(smtp.handler.messages[-1][1])  # type: ignore[attr-defined]
