"""The fast path for plain RSS 2.0 reads every feed exactly as feedparser does.

`parse._plain_rss` reads the commonest feed shape with ElementTree and feedparser's own value
helpers, because feedparser's element-by-element walk is most of a collect's CPU (bench/collect.py).
A subscriber must never see a difference: the same titles, links, dates, authors and excerpts.
These tests hold the fast path to feedparser on every document that takes it: feedparser's own
test corpus, the project's test feeds, and deterministic mutations of a WordPress feed that reach
for the places the two could part (entities, windows-1252 bytes, mis-decoded UTF-8, relative and
odd links, guids, dates, authors). A feedparser upgrade that changes any of it fails here, not in
a subscriber's inbox.
"""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.paths import CORPUS, DATA

from pipeline.models import Entry
from pipeline.parse import _UTF8_XML, _entry, _feedparser_entries, _plain_rss, prepare

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
URL = "https://blogg.example.org/feed/"


def both_ways(body: bytes, url: str = URL) -> tuple[list[Entry], list[Entry]] | None:
    """The entries of `body` by the fast path and by feedparser, or None when the fast path
    declines the document (it then goes to feedparser whole, so there is nothing to compare)."""
    data, content_type = prepare(body, "application/rss+xml")
    if content_type != _UTF8_XML:
        return None
    fast = _plain_rss(data, url)
    if fast is None:
        return None
    slow, atom = _feedparser_entries(body, data, url, content_type)
    assert not atom
    return (
        [_entry(raw, url, NOW) for raw in fast],
        [_entry(raw, url, NOW, atom=atom) for raw in slow],
    )


def test_the_fast_path_takes_the_feeds_of_the_big_blog_hosts() -> None:
    """The speed-up is real only if the commonest feeds take it: WordPress and Substack do."""
    for name in ("blog_wordpress.xml", "substack.xml"):
        compared = both_ways((DATA / name).read_bytes())
        assert compared is not None, f"{name} no longer takes the fast path"
        fast, slow = compared
        assert fast == slow
        assert fast, f"{name}: no entries read"


def test_every_project_test_feed_reads_the_same_either_way() -> None:
    taken = 0
    for path in sorted(DATA.glob("*.xml")):
        compared = both_ways(path.read_bytes())
        if compared is None:
            continue
        taken += 1
        fast, slow = compared
        assert fast == slow, f"{path.name}: the fast path and feedparser disagree"
    assert taken >= 3


def test_every_corpus_feed_that_takes_the_fast_path_reads_the_same_either_way() -> None:
    path = CORPUS / "feedparser-feeds.jsonl"
    if not path.is_file():
        pytest.skip(f"corpus file {path} is absent (CI has it in ../shared/corpus/)")
    taken, differ = 0, []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        body = base64.b64decode(row["bytes_b64"])
        compared = both_ways(body, "http://127.0.0.1:8097/" + row["source"])
        if compared is None:
            continue
        taken += 1
        fast, slow = compared
        if fast != slow:
            differ.append(row["source"])
    assert not differ, f"the fast path and feedparser disagree on {len(differ)}: {differ[:10]}"
    assert taken >= 50, f"only {taken} corpus feeds took the fast path: is it still reached?"


# -- mutations --------------------------------------------------------------------------------

_PIECES = [
    "Trondheim",
    "&amp;",
    "&lt;b&gt;fet&lt;/b&gt;",
    "<b>fet</b>",
    "&#8217;",
    "&#x2019;",
    "&#128;",
    "&#150;",
    "\u0080",
    "\u0096",
    "Ã¦Ã¸Ã¥",  # UTF-8 read as Latin-1
    "æøå",
    "  ",
    "\t",
    "<![CDATA[<p>i CDATA</p>]]>",
    "<![CDATA[a & b < c]]>",
    "&quot;sitert&quot;",
    "'",
    "\u200b",
    "e\u0301",
    "x@y.no",
    "(Navn)",
    "🙂",
    "/relativ/sti",
    "?utm_source=rss&amp;a=1",
    "#anker",
    "javascript:alert(1)",
    "mailto:a@b.no",
]
_DATES = [
    "Wed, 25 Nov 2026 16:31:12 +0000",
    "Wed, 25 Nov 2026 16:31:12 GMT",
    "25 Nov 2026 16:31:12 +0100",
    "2026-11-25T16:31:12+01:00",
    "Wed, 25 Nov 2026 16:31:12 CET",
    "Wed, 25 Nov 2026",
    "not a date",
    "",
    "Thu, 31 Feb 2026 10:00:00 +0000",
    "Mon, 25 Nov 2030 16:31:12 +0000",
]


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 5)))


def _item(rng: random.Random) -> str:
    parts = []
    if rng.random() < 0.95:
        parts.append(f"<title>{_text(rng)}</title>")
    if rng.random() < 0.9:
        link = rng.choice(
            [
                "https://blogg.example.org/innlegg/",
                "/innlegg/relativ/",
                "innlegg.html",
                "https://blogg.example.org/a?utm_source=rss&amp;utm_medium=rss&amp;x=1",
                "http://BLOGG.example.org:80/Innlegg/",
                "",
                _text(rng),
            ]
        )
        parts.append(f"<link>{link}</link>")
    if rng.random() < 0.8:
        permalink = rng.choice(["", ' isPermaLink="false"', ' isPermaLink="true"'])
        guid = rng.choice(["https://blogg.example.org/?p=7", "/p/7", "tag:x,2026:7", _text(rng)])
        parts.append(f"<guid{permalink}>{guid}</guid>")
    if rng.random() < 0.8:
        parts.append(f"<pubDate>{rng.choice(_DATES)}</pubDate>")
    if rng.random() < 0.7:
        parts.append(f"<description>{_text(rng)}</description>")
    if rng.random() < 0.5:
        parts.append(f"<content:encoded><![CDATA[<p>{_text(rng)}</p>]]></content:encoded>")
    for _ in range(rng.choice([0, 0, 1, 1, 2])):
        tag = rng.choice(["author", "dc:creator"])
        parts.append(f"<{tag}>{rng.choice(['Kari Nordmann', 'Ola', '', _text(rng)])}</{tag}>")
    if rng.random() < 0.3:
        parts.append(f"<category>{_text(rng)}</category>")
    rng.shuffle(parts)
    return "<item>" + "\n".join(parts) + "</item>"


def _feed(rng: random.Random) -> bytes:
    items = "\n".join(_item(rng) for _ in range(rng.randint(1, 4)))
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>Blogg</title>'
        f"<link>https://blogg.example.org</link>{items}</channel></rss>"
    ).encode()


def test_mutated_feeds_read_the_same_either_way() -> None:
    """3,000 seeded feeds with the values most likely to part the two readers."""
    rng = random.Random(20261127)
    taken, differ = 0, []
    for n in range(3000):
        body = _feed(rng)
        compared = both_ways(body)
        if compared is None:
            continue
        taken += 1
        fast, slow = compared
        if fast != slow:
            differ.append((n, body.decode(), fast, slow))
    assert not differ, f"{len(differ)} feeds differ; the first:\n{differ[0]}"
    assert taken >= 1000, f"only {taken} of 3,000 mutated feeds took the fast path"


def test_a_feed_outside_the_shape_goes_to_feedparser_whole() -> None:
    """An element the fast path does not know (here an enclosure child element) must not be
    half-read: the whole feed goes to feedparser."""
    body = Path(DATA / "blog_wordpress.xml").read_bytes()
    odd = body.replace(b"<item>", b"<item><media:thumbnail xmlns:media='urn:m' url='x'/>", 1)
    data, content_type = prepare(odd, "application/rss+xml")
    assert content_type == _UTF8_XML
    assert _plain_rss(data, URL) is None
