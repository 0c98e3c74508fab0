"""JSON Feed (jsonfeed.org, 1.0 and 1.1) is read into the same entries as RSS and Atom.

The end-to-end cases (the fixtures of Hugo, micro.blog and a 1.0 generator through `trnews
collect` and `send`, the hostile feed, the unreadable documents) are in test_collect.py; these
hold the reader to the spec's details directly, where a table says more than a feed server.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from support.feeds import feed_bytes

from pipeline.errors import FetchError
from pipeline.models import Entry
from pipeline.parse import cut, parse_feed

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
URL = "https://blogg.example.org/feed.json"


def entries(*items: Any, content_type: str | None = None, **feed: Any) -> tuple[Entry, ...]:
    doc = {"version": "https://jsonfeed.org/version/1.1", "title": "Blogg", **feed}
    doc["items"] = list(items)
    return parse_feed(json.dumps(doc).encode(), URL, content_type, now=NOW)


def one(item: dict[str, Any], **feed: Any) -> Entry:
    [entry] = entries({"id": "1", **item}, **feed)
    return entry


def test_version_1_0_and_1_1_of_the_same_feed_give_the_same_entries() -> None:
    """1.1 renamed `author` (an object) to `authors` (a list); a 1.0 feed reads the same."""
    v11 = json.loads(feed_bytes("jsonfeed_1_0.json"))
    v11["version"] = "https://jsonfeed.org/version/1.1"
    v11["authors"] = [v11.pop("author")]
    for item in v11["items"]:
        if "author" in item:
            item["authors"] = [item.pop("author")]
    v10 = parse_feed(feed_bytes("jsonfeed_1_0.json"), URL, now=NOW)
    assert parse_feed(json.dumps(v11).encode(), URL, now=NOW) == v10
    assert [e.author for e in v10] == ["Ola Hansen", "Per Person", *["Ola Hansen"] * 3]


@pytest.mark.parametrize(
    ("item", "feed", "author"),
    [
        (
            {"authors": [{"name": "Kari Nordmann"}, {"name": "Ola Hansen"}]},
            {},
            "Kari Nordmann, Ola Hansen",
        ),
        (
            {"author": {"name": "Kari Nordmann"}},
            {"authors": [{"name": "Redaksjonen"}]},
            "Kari Nordmann",
        ),
        ({}, {"authors": [{"name": "Redaksjonen"}]}, "Redaksjonen"),
        ({}, {"author": {"name": "Redaksjonen"}}, "Redaksjonen"),
        # 1.1 wins over 1.0 when an item carries both; an author with no name names no one
        ({"authors": [{"name": "Ny"}], "author": {"name": "Gammel"}}, {}, "Ny"),
        ({"authors": [{"url": "https://kari.example.org/"}]}, {"authors": [{"name": "R"}]}, "R"),
        # wrong shapes, read where the meaning is plain, else as nobody
        ({"authors": {"name": "Kari Nordmann"}}, {}, "Kari Nordmann"),
        ({"author": "Kari Nordmann"}, {}, "Kari Nordmann"),
        ({"authors": [{"name": 7}, None, "Ola Hansen"]}, {}, "Ola Hansen"),
        ({"authors": 7}, {"authors": "Redaksjonen"}, "Redaksjonen"),
    ],
)
def test_authors(item: dict[str, Any], feed: dict[str, Any], author: str) -> None:
    assert one(item, **feed).author == author


@pytest.mark.parametrize(
    ("item", "link", "key"),
    [
        (
            {
                "url": "https://blogg.example.org/a/?utm_source=x",
                "external_url": "https://x.example/",
            },
            "https://blogg.example.org/a/",
            "https://blogg.example.org/a",
        ),
        (
            {"external_url": "https://avis.example/kronikk"},
            "https://avis.example/kronikk",
            "https://avis.example/kronikk",
        ),
        (
            {"url": "/2026/11/innlegg/"},
            "https://blogg.example.org/2026/11/innlegg/",
            "https://blogg.example.org/2026/11/innlegg",
        ),
        ({"url": "javascript:alert(1)"}, "", None),
        ({"url": " JavaScript:alert(1)"}, "", None),
        ({"url": "data:text/html,x", "external_url": "vbscript:x"}, "", None),
        ({"url": ["https://blogg.example.org/a"]}, "", None),
    ],
)
def test_links_and_keys(item: dict[str, Any], link: str, key: str | None) -> None:
    entry = one({"title": "T", **item})
    assert entry.link == link
    if key is not None:
        assert entry.key == key
    else:  # no link: the key comes from the item's id, never from a refused link
        assert entry.key.startswith("urn:trnews:")


def test_an_item_without_a_link_is_known_by_its_id_which_may_be_a_number() -> None:
    by_string = one({"id": "42", "title": "Første"})
    by_number = one({"id": 42, "title": "Andre"})
    assert by_string.key == by_number.key, "1.1: a number id is read as its string"
    assert one({"id": "43", "title": "Første"}).key != by_string.key
    assert one({"id": True, "title": "T"}).key != by_string.key


@pytest.mark.parametrize(
    ("item", "excerpt"),
    [
        (
            {"summary": "Kort.", "content_text": "Lang tekst.", "content_html": "<p>HTML</p>"},
            "Kort.",
        ),
        (
            {"summary": "  ", "content_text": "Lang tekst.", "content_html": "<p>HTML</p>"},
            "Lang tekst.",
        ),
        (
            {"content_html": "<p>Første.</p><p>Andre &amp; <b>tredje</b>.</p>"},
            "Første. Andre & tredje.",
        ),
        # Hugo's .Summary and micro.blog's content_text carry HTML where the spec says text
        ({"summary": "<p>Fra <strong>Hugo</strong></p>"}, "Fra Hugo"),
        ({"content_text": '<p>Fra micro.blog</p>\n\n<p><img src="x.jpg"></p>'}, "Fra micro.blog"),
        ({"content_html": "<script>alert(1)</script><style>p{}</style>Trygt"}, "Trygt"),
        ({"summary": 5, "content_text": None, "content_html": "<p>Reserve</p>"}, "Reserve"),
        ({"content_html": "ord " * 200}, cut(("ord " * 200).strip())),  # at most 300
    ],
)
def test_excerpts(item: dict[str, Any], excerpt: str) -> None:
    assert one(item).excerpt == excerpt


@pytest.mark.parametrize(
    ("item", "published"),
    [
        ({"date_published": "2026-11-26T10:00:00+01:00"}, datetime(2026, 11, 26, 9, tzinfo=UTC)),
        ({"date_published": "2026-11-26T10:00:00.123Z"}, datetime(2026, 11, 26, 10, tzinfo=UTC)),
        ({"date_modified": "2026-11-25T08:00:00Z"}, datetime(2026, 11, 25, 8, tzinfo=UTC)),
        (
            {"date_published": "2026-11-20T08:00:00Z", "date_modified": "2026-11-25T08:00:00Z"},
            datetime(2026, 11, 20, 8, tzinfo=UTC),
        ),
        ({"date_published": (NOW + timedelta(days=2)).isoformat()}, None),
        ({"date_published": "i går"}, None),
        ({"date_published": 1764150000}, None),
        ({}, None),
    ],
)
def test_dates(item: dict[str, Any], published: datetime | None) -> None:
    assert one(item).published == published


def test_a_title_is_text_and_anything_else_than_text_is_no_title() -> None:
    assert one({"title": "Sterk <b>vekst</b> &amp; mer<script>x()</script>"}).title == (
        "Sterk <b>vekst</b> & mer"
    )
    assert one({"title": 2026}).title == ""
    assert one({"title": "\u202eSnudd\u0000 tittel\u001b"}).title == "Snudd tittel"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/feed+json", None),
        ("application/json; charset=utf-8", None),
        ("text/plain", None),  # only the document says what it is
        ("application/rss+xml", None),
        (None, None),
        ("application/feed+json", "\ufeff"),  # a UTF-8 byte order mark
        ("application/feed+json", "utf-16"),  # any encoding JSON allows
    ],
)
def test_a_json_feed_is_recognised_by_its_type_or_by_itself(
    content_type: str | None, body: str | None
) -> None:
    doc = json.dumps(
        {"version": "https://jsonfeed.org/version/1", "items": [{"id": "1", "title": "Hei"}]}
    )
    data = doc.encode("utf-16") if body == "utf-16" else ((body or "") + "\n " + doc).encode()
    assert [e.title for e in parse_feed(data, URL, content_type, now=NOW)] == ["Hei"]


def test_xml_or_html_labelled_as_json_is_read_as_what_it_is() -> None:
    rss = feed_bytes("substack.xml")
    assert parse_feed(rss, URL, "application/json", now=NOW) == parse_feed(rss, URL, now=NOW)
    with pytest.raises(FetchError, match="not a feed: an HTML page"):
        parse_feed(b"<!DOCTYPE html><html><body>Hei</body></html>", URL, "application/json")


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (
            b'{"version": "https://jsonfeed.org/version/1.1", "items": [',
            None,
            "not a feed: JSON error: Expecting value (line 1, column 59)",
        ),
        (b"[]", "application/json", 'not a feed: JSON, but not a JSON Feed (no "version"'),
        (b'{"items": []}', None, 'not a feed: JSON, but not a JSON Feed (no "version"'),
        (
            b'{"version": "1.1", "items": []}',
            None,
            'not a feed: JSON, but not a JSON Feed (no "version"',
        ),
        (
            b'{"version": "https://jsonfeed.org/version/1.1"}',
            None,
            'not a feed: a JSON Feed without its "items" list',
        ),
        (
            b'{"version": "https://jsonfeed.org/version/1.1", "items": {}}',
            None,
            'not a feed: a JSON Feed without its "items" list',
        ),
        (
            b'{"version": "https://jsonfeed.org/version/1.1", "items": '
            + b"[" * 50_000
            + b"]" * 50_000
            + b"}",
            None,
            "not a feed: the JSON is nested too deeply",
        ),
        (b'{"a": ' * 50_000, None, "not a feed: the JSON is nested too deeply"),
        (
            b"nonsense",
            "application/feed+json",
            "not a feed: JSON error: Expecting value (line 1, column 1)",
        ),
    ],
)
def test_a_document_that_is_no_readable_json_feed_is_a_fetch_error(
    body: bytes, content_type: str | None, reason: str
) -> None:
    with pytest.raises(FetchError) as e:
        parse_feed(body, URL, content_type)
    assert e.value.reason.startswith(reason), e.value.reason
    assert e.value.url == URL


def test_numbers_too_long_for_python_and_odd_items_do_not_sink_the_feed() -> None:
    """Items that are no objects, or objects with nothing to show (`{}`), are passed over."""
    body = (
        b'{"version": "https://jsonfeed.org/version/1.1", "_x": ' + b"9" * 5000 + b", "
        b'"items": [7, "tekst", null, [], {}, {"tags": ["tom"]}, {"id": '
        + b"1"
        * 5000
        + b', "title": "Lang id"},'
        b' {"id": "2", "title": "Vanlig"}]}'
    )
    got = parse_feed(body, URL, now=NOW)
    assert [e.title for e in got] == ["Lang id", "Vanlig"]
    assert got[0].key != got[1].key
