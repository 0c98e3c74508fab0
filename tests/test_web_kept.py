"""Pages `trnews serve` keeps ready, over real HTTP: they are right after another process
changes what they show, and the same for every reader.

The archive's list, its Atom feed and the open report are kept until the database changes
(pipeline/web/app.py `Changes`): an edition published, or items collected, by the CLI in
another process show without a restart. The unsubscribe pages are rendered once: the one-click
POST still unsubscribes, and every reader gets the same page, in the newsletter's language.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import feedparser
import httpx
import pytest
from support.feeds import NOW, Post, rss
from support.site import Site
from support.web import SECRET, WebServer, add_reader, states

from pipeline import tokens
from pipeline.store import Store

SOON = 10.0
"""Seconds a page may take to show a change: far less than any time a page was kept before
(60 s for the archive, report_cache_minutes for the report)."""


def eventually(look: Callable[[], bool], what: str) -> None:
    """Ask `look` until it says yes, or fail after SOON seconds."""
    deadline = time.monotonic() + SOON
    while not look():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {SOON:.0f} s")
        time.sleep(0.05)


def posts(n: int) -> bytes:
    return rss(
        *(
            Post(f"Innlegg nummer {i}", f"https://blogg.example.org/{i}", NOW - timedelta(hours=i))
            for i in range(n)
        )
    )


def blog_posts_in_report(page: str) -> int:
    """Kari's blog posts this year, as the report's chart of blog posts says."""
    chart = page.split("<h2>Blogginnlegg</h2>", 1)[1]
    found = re.search(r"<title>Kari Nordmann: faktisk (\d+)", chart)
    assert found, chart[:2000]
    return int(found.group(1))


@pytest.fixture
def site(tmp_path: Path) -> Site:
    """A site with one edition sent to one reader."""
    site = Site(root=tmp_path)
    (tmp_path / "blog.xml").write_bytes(posts(1))
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": "blog.xml", "kind": "blog"}])
    site.write()
    site.run("subscribers", "add", "anne@example.org")
    site.run("collect")
    site.run("send")
    return site


@pytest.fixture
def server(site: Site) -> Iterator[WebServer]:
    server = WebServer.start(site)
    yield server
    server.stop()


def test_an_edition_published_by_another_process_shows_at_once_in_the_archive_and_its_feed(
    site: Site, server: WebServer
) -> None:
    before = httpx.get(server.url("/archive.atom"))
    assert len(feedparser.parse(before.content).entries) == 1
    assert len(re.findall(r'<a href="/archive/\d+">', httpx.get(server.url("/archive")).text)) == 1

    (site.root / "blog.xml").write_bytes(posts(3))
    site.run("collect")
    site.run("send")  # another process, while the server runs and keeps its pages

    with Store.open(site.db) as store:
        editions = store.editions()
    assert len(editions) == 2
    eventually(
        lambda: len(feedparser.parse(httpx.get(server.url("/archive.atom")).content).entries) == 2,
        "the feed lists the new edition",
    )
    feed = httpx.get(server.url("/archive.atom"))
    entries = feedparser.parse(feed.content).entries
    assert [e.title for e in entries] == [e.subject for e in editions]  # newest first
    assert feed.headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert feed.headers["cache-control"] == "public, max-age=300"
    assert feed.headers["content-security-policy"].startswith("default-src 'none'")
    # The list is kept by the same mark: it shows the edition as soon as the feed does.
    page = httpx.get(server.url("/archive"))
    links = re.findall(r'<a href="/archive/(\d+)">([^<]+)</a>', page.text)
    assert [int(i) for i, _ in links] == [e.id for e in editions]
    assert page.headers["cache-control"] == "public, max-age=300"
    assert "style-src 'sha256-" in page.headers["content-security-policy"]
    new = httpx.get(server.url(f"/archive/{editions[0].id}"))
    assert new.status_code == 200 and "Innlegg nummer 2" in new.text


def test_items_collected_by_another_process_show_at_once_in_the_report(
    site: Site, server: WebServer
) -> None:
    assert blog_posts_in_report(httpx.get(server.url("/report")).text) == 1

    (site.root / "blog.xml").write_bytes(posts(3))
    site.run("collect")

    eventually(
        lambda: blog_posts_in_report(httpx.get(server.url("/report")).text) == 3,
        "the report counts the items collected",
    )
    page = httpx.get(server.url("/report"))
    assert page.headers["cache-control"] == "public, max-age=300"
    assert "style-src 'sha256-" in page.headers["content-security-policy"]


def test_what_this_server_writes_itself_leaves_the_kept_pages_right(
    site: Site, server: WebServer
) -> None:
    """An unsubscribe through the server changes the database but nothing the archive shows:
    the archive still lists the edition, and a later edition still shows."""
    reader = add_reader(site, "bjorn@example.org")
    url = server.url(f"/unsubscribe/{tokens.sign(SECRET, 'unsubscribe', reader)}")
    assert httpx.post(url, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert len(feedparser.parse(httpx.get(server.url("/archive.atom")).content).entries) == 1
    assert len(re.findall(r'<a href="/archive/\d+">', httpx.get(server.url("/archive")).text)) == 1

    (site.root / "blog.xml").write_bytes(posts(2))
    site.run("collect")
    site.run("send")

    eventually(
        lambda: (
            len(re.findall(r'<a href="/archive/\d+">', httpx.get(server.url("/archive")).text)) == 2
        ),
        "the archive lists the new edition",
    )


WORDS = {
    "nb": ("Du er meldt av", "Meld deg av", "Denne lenken virker ikke"),
    "nn": ("Du er meld av", "Meld deg av", "Denne lenkja verkar ikkje"),
    "en": ("You are unsubscribed", "Unsubscribe", "This link does not work"),
}


@pytest.mark.parametrize("language", sorted(WORDS))
def test_the_one_click_post_unsubscribes_and_every_reader_gets_the_same_page(
    tmp_path: Path, language: str
) -> None:
    site = Site(root=tmp_path, language=language)
    site.write()
    readers = {a: add_reader(site, a) for a in ("anne@example.org", "bjorn@example.org")}
    server = WebServer.start(site)
    try:
        answers = []
        for address, reader in readers.items():
            token = tokens.sign(SECRET, "unsubscribe", reader)
            button = httpx.get(server.url(f"/unsubscribe/{token}"))
            assert button.status_code == 200
            assert f'<form method="post" action="/unsubscribe/{token}">' in button.text
            assert WORDS[language][1] in button.text
            assert states(site)[address] == "active"  # a GET never unsubscribes

            answer = httpx.post(
                server.url(f"/unsubscribe/{token}"), data={"List-Unsubscribe": "One-Click"}
            )

            assert answer.status_code == 200
            assert WORDS[language][0] in answer.text
            assert "set-cookie" not in answer.headers and "location" not in answer.headers
            assert states(site)[address] == "unsubscribed"
            answers.append(answer)
        first, second = answers
        assert first.content == second.content
        assert dict(first.headers) == dict(second.headers) | {"date": first.headers["date"]}
        assert "style-src 'sha256-" in first.headers["content-security-policy"]

        forged = tokens.sign("another secret", "unsubscribe", readers["anne@example.org"])
        for token in (forged, "garbage", tokens.sign(SECRET, "unsubscribe", 999_999)):
            for method in ("GET", "POST"):
                bad = httpx.request(method, server.url(f"/unsubscribe/{token}"))
                assert bad.status_code == 404, (method, token)
                assert WORDS[language][2] in bad.text
    finally:
        server.stop()
