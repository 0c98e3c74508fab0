"""The library and the message bank on the web (SPEC.md "The library and the message bank"),
through a real `trnews serve` over loopback.

One site (`lib`) collects, with the real CLI, a blog of 51 posts (50 of them "Notat N"), a
newspaper's chronicles (one from 2020, Norwegian letters, hostile markup from feedparser's
own test corpus) and a YouTube channel's films, for three ambassadors (one with markup in
the name), with a message bank of two messages. Every page is then asked as a reader, an
ambassador or a journalist would, with httpx, feedparser and Chromium.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

import feedparser
import httpx
import pytest
from support.browser import SCREENSHOTS
from support.feeds import NOW, Post, rss
from support.site import Site
from support.web import WebServer

CORPUS = Path("/work/shared/corpus/feedparser-hostile-html.jsonl")
HOSTILE_FALLBACK = [
    "safe<script type=\"text/javascript\">location.href='http:/'+'/example.com/';</script> x",
    '<img src="http://www.ragingplatypus.com/i/cam-full.jpg" onerror="location.href=1;" />',
]


def _hostile() -> list[str]:
    """A few of feedparser's own hostile test entries (script, onerror, javascript: links)."""
    if not CORPUS.exists():
        return HOSTILE_FALLBACK
    found = []
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        html = json.loads(line)["html"]
        if re.search(r"<script|onerror=|javascript:|<iframe", html, re.I) and len(html) < 400:
            found.append(html)
    return found[:6] or HOSTILE_FALLBACK


HOSTILE = _hostile()
THIS_YEAR = datetime.now(UTC).year


def youtube(*films: tuple[str, str, str, datetime]) -> bytes:
    """A YouTube channel feed (Atom with yt: and media:group) with these films (title, link,
    description, date)."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<feed xmlns:yt="http://www.youtube.com/xml/schemas/2015" '
        'xmlns:media="http://search.yahoo.com/mrss/" xmlns="http://www.w3.org/2005/Atom">',
        "<title>Trondheimsregionen</title>",
        '<link rel="alternate" href="https://www.youtube.com/channel/UCabc"/>',
        "<id>yt:channel:UCabc</id>",
    ]
    for n, (title, link, text, date) in enumerate(films):
        out += [
            f"<entry><id>yt:video:v{n}</id><yt:videoId>v{n}</yt:videoId>",
            f"<title>{escape(title)}</title>",
            f'<link rel="alternate" href="{escape(link)}"/>',
            f"<published>{date.isoformat()}</published><updated>{date.isoformat()}</updated>",
            f"<media:group><media:title>{escape(title)}</media:title>",
            f'<media:thumbnail url="https://i.ytimg.com/vi/v{n}/hqdefault.jpg"/>',
            f"<media:description>{escape(text)}</media:description></media:group></entry>",
        ]
    out.append("</feed>")
    return "\n".join(out).encode()


BLOG = [
    Post(f"Notat {n}", f"https://blogg.example.org/notat-{n}", NOW - timedelta(hours=n + 2))
    for n in range(1, 51)
] + [
    Post(
        "Næringslivet i Trondheim vokser",
        "https://blogg.example.org/naeringslivet",
        NOW - timedelta(hours=1),
        html="<p>Bedriftene melder om flere arbeidsplasser.</p>",
    )
]
CHRONICLES = [
    Post(
        "Arbeidsplasser i distriktet",
        "https://avis.example.org/arbeidsplasser",
        NOW - timedelta(days=3),
        author="Ola",
    ),
    Post("Kvål og får om høsten", "https://avis.example.org/kvaal", NOW - timedelta(days=4)),
    Post("Far til fire", "https://avis.example.org/far", NOW - timedelta(days=5)),
    Post(
        "Gammelt om klima",
        "https://avis.example.org/2020",
        datetime(2020, 6, 1, 12, tzinfo=UTC),
    ),
    Post("Lenke som er skript", "javascript:alert(1)", NOW - timedelta(days=6)),
] + [
    Post(
        f"Fiendtlig {n} {html}", f"https://avis.example.org/h{n}", NOW - timedelta(days=7 + n), html
    )
    for n, html in enumerate(HOSTILE)
]
FILMS = [
    (
        "Ny næringsutvikling på Tiller",
        "https://www.youtube.com/watch?v=v0",
        "En film om næringsutvikling.",
        NOW - timedelta(days=2),
    ),
    ("Båtliv i fjorden", "https://www.youtube.com/watch?v=v1", "Sommer.", NOW - timedelta(days=9)),
]
MESSAGES = """
[[message]]
id = "naering"
title = "Best på næringsutvikling"
summary = "Regionen skaper arbeidsplasser som varer."
arguments = ["Flere bedrifter etablerer seg her.", "Universitetet gir <b>kompetanse</b>."]
keywords = ["næringsutvikling", "næringsliv*", "arbeidsplasser"]

[[message]]
id = "klima"
title = "Grønn region <script>alert(1)</script>"
keywords = ["klimakutt"]
"""


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    root = tmp_path_factory.mktemp("library")
    site = Site(root=root)
    (root / "blog.xml").write_bytes(rss(*BLOG))
    (root / "avis.xml").write_bytes(rss(*CHRONICLES))
    (root / "films.xml").write_bytes(youtube(*FILMS))
    site.ambassadors.append(
        '[[ambassador]]\nid = "kari-nordmann"\nname = "Kari Nordmann"\nrole = "Prorektor"\n'
        'feeds = [{ url = "blog.xml", kind = "blog" }]\n'
        "plan = { blog_posts = 60, chronicles = 2 }\n"
    )
    site.ambassador(
        "ola-hansen",
        "Ola <img src=x onerror=alert(1)> Hansen",
        "Rådgiver",
        [{"url": "avis.xml", "kind": "chronicle"}],
    )
    site.ambassador("ase-odegard", "Åse Ødegård", "", [{"url": "films.xml", "kind": "video"}])
    soon = (NOW + timedelta(days=5)).replace(microsecond=0).isoformat()
    site.meeting(
        f'title = "Møte med <i>næringslivet</i>"\nstart = {soon}\nlocation = "Rådhuset"\n'
        'ambassadors = ["kari-nordmann"]'
    )
    site.extra_toml = MESSAGES
    site.write()
    site.run("collect")
    server = WebServer.start(site)
    yield server
    server.stop()


# -- reading pages ------------------------------------------------------------------------------


class Page(HTMLParser):
    """What a reader sees of a page: the library's items, links, every tag and attribute."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.items: list[dict[str, Any]] = []
        self.text: list[str] = []
        self._in_item = 0
        self._in_h2 = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "ol" and a.get("class") == "library":
            self._in_item = 1
        elif tag == "li" and self._in_item:
            self.items.append({"title": "", "link": None, "links": []})
        elif tag == "h2" and self._in_item and self.items:
            self._in_h2 = True
        elif tag == "a" and self._in_item and self.items:
            self.items[-1]["links"].append(a.get("href"))
            if self._in_h2:
                self.items[-1]["link"] = a.get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag == "ol":
            self._in_item = 0
        elif tag == "h2":
            self._in_h2 = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_h2 and self.items:
            self.items[-1]["title"] += data

    @property
    def titles(self) -> list[str]:
        return [i["title"].strip() for i in self.items]

    def link(self, rel: str) -> str | None:
        return next((a.get("href") for t, a in self.tags if t == "a" and a.get("rel") == rel), None)


def get(lib: WebServer, path: str) -> httpx.Response:
    return httpx.get(lib.url(path), timeout=30)


def page(lib: WebServer, path: str) -> Page:
    answer = get(lib, path)
    assert answer.status_code == 200, (path, answer.status_code)
    return Page(answer.text)


def every_title(lib: WebServer, path: str) -> list[str]:
    """The titles on every page of a list, following its "older" links."""
    titles: list[str] = []
    next_path: str | None = path
    while next_path:
        shown = page(lib, next_path)
        titles += shown.titles
        next_path = shown.link("next")
    return titles


def count_line(html: str) -> str:
    m = re.search(r'<p class="count">([^<]*)</p>', html)
    assert m, "no count on the page"
    return m.group(1)


def hostile_titles() -> list[str]:
    return [t for t in (p.title for p in CHRONICLES) if t.startswith("Fiendtlig")]


# -- the library --------------------------------------------------------------------------------


def test_the_library_lists_every_item_newest_first_50_a_page_linking_to_the_original(
    lib: WebServer,
) -> None:
    first = page(lib, "/library")
    total = len(BLOG) + len(CHRONICLES) + len(FILMS)

    assert f"{total} saker" in "".join(first.text)
    assert len(first.items) == 50
    assert first.items[0]["title"].strip() == "Næringslivet i Trondheim vokser"
    assert first.items[0]["link"] == "https://blogg.example.org/naeringslivet"
    assert first.items[1]["title"].strip() == "Notat 1"  # then by date, newest first
    assert first.link("prev") is None
    assert first.link("next") == "/library?page=2"
    everything = every_title(lib, "/library")
    assert len(everything) == total == len(set(everything))
    assert everything[-1] == "Gammelt om klima"
    # each item shows its kind, ambassadors (to their page) and messages (to theirs)
    top = first.items[0]["links"]
    assert "/ambassadors/kari-nordmann" in top and "/messages/naering" in top


def test_a_link_that_is_not_http_is_shown_as_a_title_without_a_link(lib: WebServer) -> None:
    shown = page(lib, "/library?ambassador=ola-hansen")
    [item] = [i for i in shown.items if i["title"].strip() == "Lenke som er skript"]
    assert item["link"] is None
    assert not any((a.get("href") or "").lower().startswith("javascript") for _, a in shown.tags)


FILTERS = {
    "kind=video": ["Ny næringsutvikling på Tiller", "Båtliv i fjorden"],
    "kind=chronicle&year=2020": ["Gammelt om klima"],
    "year=2020": ["Gammelt om klima"],
    "message=naering": [
        "Næringslivet i Trondheim vokser",
        "Ny næringsutvikling på Tiller",
        "Arbeidsplasser i distriktet",
    ],
    "message=naering&kind=video": ["Ny næringsutvikling på Tiller"],
    "message=naering&ambassador=kari-nordmann": ["Næringslivet i Trondheim vokser"],
    "ambassador=ase-odegard": ["Ny næringsutvikling på Tiller", "Båtliv i fjorden"],
    "ambassador=kari-nordmann&q=notat+1": ["Notat 1"] + [f"Notat {n}" for n in range(10, 20)],
    f"q=n%C3%A6ring&year={THIS_YEAR}&kind=blog": ["Næringslivet i Trondheim vokser"],
    "message=klima": [],
    "kind=video&ambassador=kari-nordmann": [],
    "message=&ambassador=&kind=&year=&q=&kind=video": [
        "Ny næringsutvikling på Tiller",
        "Båtliv i fjorden",
    ],
}


@pytest.mark.parametrize("query", list(FILTERS))
def test_each_filter_and_their_combinations_find_what_they_say(lib: WebServer, query: str) -> None:
    expected = FILTERS[query]
    if query.startswith("ambassador=kari-nordmann&q=notat"):
        expected = sorted(expected, key=lambda t: int(t.split()[1]))
    assert every_title(lib, f"/library?{query}") == expected
    html = get(lib, f"/library?{query}").text
    assert count_line(html).startswith(f"{len(expected)} ")


def test_the_form_shows_the_filters_in_force_and_the_pages_keep_them(lib: WebServer) -> None:
    html = get(lib, f"/library?kind=blog&ambassador=kari-nordmann&year={THIS_YEAR}").text
    assert '<option value="blog" selected>' in html
    assert '<option value="kari-nordmann" selected>' in html
    assert (
        f'name="year" type="number" inputmode="numeric" min="1990" max="2999" value="{THIS_YEAR}"'
        in html
    )
    assert '<form class="search" method="get" action="/library"' in html
    nxt = Page(html).link("next")
    assert nxt is not None
    assert parse_qs(urlsplit(nxt).query) == {
        "ambassador": ["kari-nordmann"],
        "kind": ["blog"],
        "year": [str(THIS_YEAR)],
        "page": ["2"],
    }
    second = page(lib, nxt)
    assert second.titles == ["Notat 50"]
    assert second.link("prev") == nxt.replace("&page=2", "")
    searched = get(lib, "/library?q=%22n%C3%A6ring+%3Cb%3E").text
    assert 'name="q" type="text" value="&#34;næring &lt;b&gt;"' in searched


SEARCHES = {
    "nær": {"Næringslivet i Trondheim vokser", "Ny næringsutvikling på Tiller"},
    "NÆRINGSLIVET": {"Næringslivet i Trondheim vokser"},
    "trondheim næringsliv": {"Næringslivet i Trondheim vokser"},
    "vokser NÆRING": {"Næringslivet i Trondheim vokser"},
    "kvål": {"Kvål og får om høsten"},
    "får": {"Kvål og får om høsten"},
    "far": {"Far til fire"},  # never "får": å is a letter of its own
    "båtliv": {"Båtliv i fjorden"},
    "batliv": set(),
    "arbeidsplasser": {"Næringslivet i Trondheim vokser", "Arbeidsplasser i distriktet"},
}


@pytest.mark.parametrize("q", list(SEARCHES))
def test_search_finds_word_starts_in_any_order_and_case_with_norwegian_letters(
    lib: WebServer, q: str
) -> None:
    found = every_title(lib, "/library?" + httpx.QueryParams({"q": q}).__str__())
    assert set(found) == SEARCHES[q]


HOSTILE_QUERIES = [
    '"',
    '"næring',
    "AND",
    "næring AND",
    "*",
    "NEAR(",
    "NEAR(næring trondheim",
    "\x00",
    "næring\x00",
    "'); DROP TABLE items;--",
    "^næring",
    "næring:",
    "title:næring",
    "(((",
    "x" * 5000,
    "næring " * 300,
    "\ud7ff\ufffd",
]


FINDS_NAERING = {'"næring', "næring\x00", "^næring", "næring:", "næring " * 300}


@pytest.mark.parametrize("q", HOSTILE_QUERIES, ids=range(len(HOSTILE_QUERIES)))
def test_a_query_fts5_would_refuse_is_searched_as_plain_words(lib: WebServer, q: str) -> None:
    answer = httpx.get(lib.url("/library"), params={"q": q}, timeout=30)

    assert answer.status_code == 200
    assert "<script" not in answer.text
    if q in FINDS_NAERING:  # its only words are "næring"
        assert "Næringslivet i Trondheim vokser" in Page(answer.text).titles
    feed = httpx.get(lib.url("/library.atom"), params={"q": q}, timeout=30)
    assert feed.status_code == 200
    assert not feedparser.parse(feed.content).bozo


def test_a_raw_percent_00_and_broken_percent_escapes_are_plain_words(lib: WebServer) -> None:
    for raw in ("q=%00", "q=n%C3%A6ring%00", "q=%", "q=%ZZ", "q=%C3"):
        assert get(lib, f"/library?{raw}").status_code == 200, raw


# -- pages and their edges -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "good"),
    [
        ("/library?page=0", "/library?page=1"),
        ("/library?page=-1", "/library?page=2"),
        ("/library?page=x", "/library?page="),
        ("/library?page=1.5", "/library?page=2"),
        ("/library?page=99999999999", "/library?page=2"),
        ("/library?page=3", "/library?page=2"),  # 58 items: two pages
        ("/library?kind=blog&q=notat&page=2", "/library?kind=blog&q=notat&page=1"),  # exactly 50
        (
            "/library?ambassador=kari-nordmann&kind=blog&page=3",  # 51: two pages
            "/library?ambassador=kari-nordmann&kind=blog&page=2",
        ),
        ("/library?message=nope", "/library?message=klima"),
        ("/library?ambassador=nope", "/library?ambassador=ola-hansen"),
        ("/library?kind=podcast", "/library?kind=video"),
        ("/library?year=20x", "/library?year=2020"),
        ("/library?year=99999", "/library?year=1999"),
        ("/library?year=9999", "/library?year=2020"),  # no datetime ends year 9999
        ("/library.atom?year=0000", "/library.atom?year=2020"),  # nor is there a year 0
        ("/library.atom?kind=podcast", "/library.atom?kind=chronicle"),
        ("/messages/nope", "/messages/klima"),
        ("/messages/nope.atom", "/messages/klima.atom"),
        ("/messages/naering?page=9", "/messages/naering?page=1"),
        ("/ambassadors/nope", "/ambassadors/ase-odegard"),
        ("/ambassadors/nope.atom", "/ambassadors/ase-odegard.atom"),
        ("/ambassadors/kari-nordmann?page=3", "/ambassadors/kari-nordmann?page=2"),
        ("/ambassadors/%3Cscript%3E", "/ambassadors/ola-hansen"),
    ],
)
def test_an_unknown_id_filter_or_page_is_404(lib: WebServer, path: str, good: str) -> None:
    assert get(lib, good).status_code == 200, good
    answer = get(lib, path)
    assert answer.status_code == 404
    assert "Denne lenken virker ikke" in answer.text
    assert "<script" not in answer.text


def test_exactly_50_items_are_one_page_and_51_are_two(lib: WebServer) -> None:
    fifty = page(lib, "/library?kind=blog&q=notat")
    assert len(fifty.items) == 50 and fifty.link("next") is None and fifty.link("prev") is None

    fifty_one = page(lib, "/library?ambassador=kari-nordmann&kind=blog")
    assert len(fifty_one.items) == 50
    assert fifty_one.link("next") == "/library?ambassador=kari-nordmann&kind=blog&page=2"
    last = page(lib, "/library?ambassador=kari-nordmann&kind=blog&page=2")
    assert last.titles == ["Notat 50"]
    assert last.link("prev") == "/library?ambassador=kari-nordmann&kind=blog"
    assert last.link("next") is None


def test_a_search_that_finds_nothing_is_one_empty_page(lib: WebServer) -> None:
    answer = get(lib, "/library?q=finnesikke")
    assert answer.status_code == 200
    assert count_line(answer.text).startswith("0 ")
    assert Page(answer.text).items == []


# -- the message bank --------------------------------------------------------------------------


def test_the_message_bank_shows_each_message_with_its_arguments_and_newest_examples(
    lib: WebServer,
) -> None:
    answer = get(lib, "/messages")
    assert answer.status_code == 200
    html = answer.text
    assert "Best på næringsutvikling" in html
    assert "Regionen skaper arbeidsplasser som varer." in html
    assert "Flere bedrifter etablerer seg her." in html
    assert "Universitetet gir &lt;b&gt;kompetanse&lt;/b&gt;." in html
    assert "3 eksempler" in html and "0 eksempler" in html
    assert "Grønn region &lt;script&gt;" in html
    assert 'href="/messages/naering"' in html
    assert 'href="https://blogg.example.org/naeringslivet"' in html


def test_a_message_has_all_its_examples_and_a_feed(lib: WebServer) -> None:
    shown = page(lib, "/messages/naering")
    assert shown.titles == FILTERS["message=naering"]
    text = "".join(shown.text)
    assert "Regionen skaper arbeidsplasser som varer." in text
    assert "Universitetet gir <b>kompetanse</b>." in text  # as text, not markup
    assert not any(t == "b" for t, _ in shown.tags)

    feed = feedparser.parse(get(lib, "/messages/naering.atom").content)
    assert not feed.bozo
    assert [e.title for e in feed.entries] == FILTERS["message=naering"]
    assert feed.entries[0].link == "https://blogg.example.org/naeringslivet"


# -- an ambassador -------------------------------------------------------------------------------


def test_an_ambassador_page_shows_role_meetings_plan_against_actual_and_items(
    lib: WebServer,
) -> None:
    answer = get(lib, "/ambassadors/kari-nordmann")
    assert answer.status_code == 200
    html = answer.text
    shown = Page(html)
    assert "<h1>Kari Nordmann</h1>" in html and "Prorektor" in html
    assert "Møte med &lt;i&gt;næringslivet&lt;/i&gt;" in html and "Rådhuset" in html
    # this year's plan against actual, the open report's words and numbers
    row = re.search(r"<th scope=\"row\">Blogginnlegg</th>(.*?)</tr>", html, re.S)
    assert row, html
    cells = re.findall(r"<td>([^<]*)</td>", row.group(1))
    assert cells[0] == "51" and cells[2] == "60"
    assert len(shown.items) == 50 and shown.link("next") == "/ambassadors/kari-nordmann?page=2"
    assert page(lib, "/ambassadors/kari-nordmann?page=2").titles == ["Notat 50"]
    other = get(lib, "/ambassadors/ase-odegard").text
    assert "Ingen møter" in other or "Ingen planlagte" in other


def test_the_ambassador_feed_is_atom_with_links_to_the_original(lib: WebServer) -> None:
    feed = feedparser.parse(get(lib, "/ambassadors/ase-odegard.atom").content)
    assert not feed.bozo
    assert feed.version == "atom10"
    assert [(e.title, e.link) for e in feed.entries] == [(f[0], f[1]) for f in FILMS]
    assert feed.entries[0].authors[0].name == "Åse Ødegård"
    assert [t.term for t in feed.entries[0].tags] == ["naering"]


def test_the_library_feed_keeps_the_filters(lib: WebServer) -> None:
    answer = get(lib, "/library.atom?kind=video")
    assert answer.headers["content-type"].startswith("application/atom+xml")
    feed = feedparser.parse(answer.content)
    assert not feed.bozo
    assert [e.link for e in feed.entries] == [f[1] for f in FILMS]
    everything = feedparser.parse(get(lib, "/library.atom").content)
    assert len(everything.entries) == 50
    assert len({e.id for e in everything.entries}) == 50
    html = get(lib, "/library?kind=video").text
    assert 'href="/library.atom?kind=video"' in html


# -- hostile text --------------------------------------------------------------------------------

PAGES = [
    "/library",
    "/library?ambassador=ola-hansen",
    "/messages",
    "/messages/naering",
    "/messages/klima",
    "/ambassadors/ola-hansen",
    "/ambassadors/kari-nordmann",
    "/library?q=fiendtlig",
]


@pytest.mark.parametrize("path", PAGES)
def test_hostile_titles_excerpts_and_names_are_inert_on_every_page(
    lib: WebServer, path: str
) -> None:
    answer = get(lib, path)
    assert answer.status_code == 200
    shown = Page(answer.text)
    for tag, attrs in shown.tags:
        assert tag not in ("script", "img", "iframe", "object", "embed", "base", "svg")
        assert tag != "meta" or "http-equiv" not in attrs
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        for name in ("href", "src", "action"):
            value = (attrs.get(name) or "").strip().lower()
            assert not value.startswith(("javascript:", "data:", "vbscript:")), (tag, attrs)
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert "'unsafe-inline'" not in policy
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["referrer-policy"] == "no-referrer"


def test_the_hostile_entries_are_listed_as_text(lib: WebServer) -> None:
    shown = page(lib, "/library?q=fiendtlig")
    assert len(shown.items) == len(hostile_titles())
    assert "Ola <img src=x onerror=alert(1)> Hansen" in "".join(shown.text)


# -- the site --------------------------------------------------------------------------------


def test_the_front_page_archive_and_nav_link_to_the_library(lib: WebServer) -> None:
    for path in ("/", "/archive", "/report", "/library"):
        html = get(lib, path).text
        assert re.search(r'<nav[^>]*>.*href="/library"[^>]*>Biblioteket</a>', html, re.S), path
    assert 'aria-current="page">Biblioteket' in get(lib, "/library").text
    assert re.search(r'<main>.*href="/library"', get(lib, "/").text, re.S)
    assert re.search(r'<main>.*href="/library"', get(lib, "/archive").text, re.S)


@pytest.fixture
def films(tmp_path: Path) -> Iterator[WebServer]:
    """A site of its own (the test changes it): one ambassador's films."""
    site = Site(root=tmp_path)
    (tmp_path / "films.xml").write_bytes(youtube(*FILMS))
    site.ambassador("ase-odegard", "Åse Ødegård", "", [{"url": "films.xml", "kind": "video"}])
    site.extra_toml = MESSAGES
    site.write()
    site.run("collect")
    server = WebServer.start(site)
    yield server
    server.stop()


def test_a_new_item_and_its_tags_show_without_a_restart(films: WebServer) -> None:
    lib = films
    before = every_title(lib, "/library?message=naering")
    assert before == ["Ny næringsutvikling på Tiller"]
    assert "1 eksempel" in get(lib, "/messages").text  # built and kept
    site = lib.site
    (site.root / "films.xml").write_bytes(
        youtube(
            ("Nye arbeidsplasser på Orkanger", "https://www.youtube.com/watch?v=v9", "", NOW),
            *FILMS,
        )
    )
    site.run("collect")

    after = every_title(lib, "/library?message=naering")
    assert after == ["Nye arbeidsplasser på Orkanger", *before]
    assert "2 eksempler" in get(lib, "/messages").text
    feed = feedparser.parse(get(lib, "/ambassadors/ase-odegard.atom").content)
    assert feed.entries[0].link == "https://www.youtube.com/watch?v=v9"


# -- a browser -----------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [375, 1024])
def test_the_pages_fit_a_phone_and_a_desktop_with_no_script_and_no_csp_violation(
    lib: WebServer, chromium: Any, width: int
) -> None:
    context = chromium.new_context(
        viewport={"width": width, "height": 800}, java_script_enabled=False
    )
    problems: list[str] = []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for path in [*PAGES, "/library?kind=video&year=" + str(THIS_YEAR)]:
        tab = context.new_page()
        tab.on(
            "console",
            lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
        )
        answer = tab.goto(lib.url(path))
        assert answer is not None and answer.status == 200, path
        name = re.sub(r"\W+", "-", path).strip("-")
        tab.screenshot(path=SCREENSHOTS / f"library-{name}-{width}.png", full_page=True)
        assert tab.evaluate("() => document.scrollingElement.scrollWidth") <= width, path
        tab.close()
    # the search form works without script: choose, submit, land on the filtered list
    tab = context.new_page()
    tab.goto(lib.url("/library"))
    tab.fill("#q", "næring")
    tab.select_option("#kind", "video")
    tab.get_by_role("button", name="Søk").click()
    tab.wait_for_load_state()
    assert "kind=video" in tab.url
    assert tab.locator("ol.library h2").all_inner_texts() == ["Ny næringsutvikling på Tiller"]
    context.close()
    assert problems == []
