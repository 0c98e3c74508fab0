"""feedparser's own test corpus through the whole pipeline: every run ends cleanly, every item
reaches the edition, nothing active reaches a message, and no control, noncharacter or bidi
character either.

The corpus (../shared/corpus/, licence beside it) holds every feed of feedparser's test suite,
well-formed and ill-formed, in many encodings, and the hostile and odd HTML snippets of its
sanitiser tests. Where it is absent the tests skip and name the missing file.

The feeds are served by the loopback HTTP server, collected and sent through the CLI into a
Maildir, and the message is read back as a subscriber would read it. What "every item" means is
decided by an oracle that is not trnews's code: feedparser run directly on each feed (see
`expected_from_feed`).
"""

from __future__ import annotations

import base64
import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from xml.sax.saxutils import escape

import feedparser
import pytest
from support.mail import (
    active_content,
    delivered,
    dot_lines,
    html_part,
    text_part,
    unsafe_characters,
)
from support.paths import CORPUS
from support.servers import FeedServer
from support.site import Site

from pipeline.errors import FetchError
from pipeline.parse import parse_feed

FEEDS_FILE = CORPUS / "feedparser-feeds.jsonl"
HTML_FILE = CORPUS / "feedparser-hostile-html.jsonl"

LOOKBACK_DAYS = 36_500
MAX_ITEMS = 10_000
DEFAULT_CONTENT_TYPE = "application/xml"
"""What the corpus feeds are served as, unless their own `Header:` comment names a type."""

# -- the corpus ------------------------------------------------------------------------------


def corpus_rows(path: Path) -> list[dict[str, str]]:
    """The rows of one corpus file; skips the test (naming the file) where it is absent."""
    if not path.is_file():
        pytest.skip(f"corpus file {path} is absent (CI has it in ../shared/corpus/)")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@dataclass(frozen=True)
class CorpusFeed:
    """One feed of the corpus, as the loopback server serves it."""

    source: str
    """Its path in feedparser's test suite, for failure messages."""
    body: bytes
    path: str
    content_type: str
    headers: dict[str, str]


_HEADER_LINE = re.compile(rb"^Header:[ \t]*([A-Za-z-]+):[ \t]*(.*?)[ \t]*$", re.MULTILINE)


def corpus_feeds() -> list[CorpusFeed]:
    """Every corpus feed, each with the HTTP headers its test comment asks for.

    feedparser's test files name the headers their server sends (`Header: Content-type: …`).
    Content-Location is left out: trnews resolves relative links against the URL it fetched
    (LIBRARIES.md), and serving another base would only make the oracle guess which one counts.
    """
    out = []
    for n, row in enumerate(corpus_rows(FEEDS_FILE)):
        body = base64.b64decode(row["bytes_b64"])
        content_type = DEFAULT_CONTENT_TYPE
        headers: dict[str, str] = {}
        comment_end = body.find(b"-->")
        for name, value in _HEADER_LINE.findall(body[: max(comment_end, 0)]):
            key = name.decode("ascii").lower()
            if key == "content-type":
                content_type = value.decode("latin-1")
            elif key != "content-location":
                headers[name.decode("ascii")] = value.decode("latin-1")
        out.append(CorpusFeed(row["source"], body, f"/corpus/{n}.xml", content_type, headers))
    return out


# -- the oracle: feedparser run directly -----------------------------------------------------

# Only a DOCTYPE in the prolog (before the root element) is a declaration; the same characters
# inside an element's CDATA are text. The internal subset `[...]` is where entity bombs live.
_PROLOG_DOCTYPE = re.compile(
    rb"\A((?:\s|<\?.*?\?>|<!--.*?-->)*)<!DOCTYPE\b(?:[^\[>\"']|\"[^\"]*\"|'[^']*'|\[.*?\]\s*)*>",
    re.IGNORECASE | re.DOTALL,
)


def without_doctype(body: bytes) -> bytes:
    """The feed with its prolog's DOCTYPE declaration removed, as trnews promises to parse it."""
    return _PROLOG_DOCTYPE.sub(rb"\1", body, count=1)


def normalise(url: str) -> str:
    """SPEC's link identity: scheme and host case, fragment, `utm_*`, a trailing slash ignored."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if parts.port is not None and (parts.scheme.lower(), parts.port) not in (
        ("http", 80),
        ("https", 443),
    ):
        host += f":{parts.port}"
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not k.lower().startswith("utm_")
    ]
    return urlunsplit((parts.scheme.lower(), host, parts.path.rstrip("/"), urlencode(query), ""))


class _TextOf(HTMLParser):
    """The text of an HTML fragment, without the content of script and style elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "template"):
            self.hidden += 1
        self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "template") and self.hidden:
            self.hidden -= 1
        self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def squeeze(text: str) -> str:
    """Text with every white-space, control and format character removed, for comparison:
    line wrapping, folded spaces and stripped control characters then do not matter."""
    text = unicodedata.normalize("NFC", text)
    return "".join(
        ch for ch in text if not ch.isspace() and unicodedata.category(ch) not in ("Cc", "Cf")
    )


def title_texts(entry: Any) -> tuple[str, ...]:
    """An entry's title as a reader may fairly see it, squeezed: as feedparser gives it, and
    its text without tags (an RSS title's markup may be meant as words or as markup). Empty
    when the title is nothing but markup (an image): then there is no title text to show."""
    title = str(entry.get("title", ""))
    parser = _TextOf()
    parser.feed(title)
    parser.close()
    text = squeeze("".join(parser.parts))
    return (squeeze(title), text) if text else ()


def entry_date(entry: Any) -> datetime | None:
    """The entry's own date as the feed gives it (published, else updated, else created)."""
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            try:
                return datetime(*value[:6], tzinfo=UTC)
            except (ValueError, OverflowError):
                return None
    return None


@dataclass(frozen=True)
class Expected:
    """One corpus entry the edition must show."""

    source: str
    identity: tuple[str, ...]
    """What makes it one article: its normalised http(s) link (shared across feeds, merged on
    purpose, SPEC "What goes into an edition"), else its feed and its id (or raw contents)."""
    link: str = ""
    """Its normalised http(s) link, or empty."""
    titles: tuple[str, ...] = ()
    """Its title, squeezed (see `squeeze`): as given, and as text without tags; empty when it
    has no text."""


@dataclass
class Oracle:
    """What feedparser itself finds in the corpus."""

    not_feeds: set[str] = field(default_factory=set)
    """URLs where feedparser finds neither a feed version nor any entry."""
    entries: list[Expected] = field(default_factory=list)
    too_old: int = 0
    """Entries dated more than `lookback_days` ago: never due (SPEC)."""

    @property
    def articles(self) -> int:
        """How many items the edition must show: one per distinct article."""
        return len({e.identity for e in self.entries})


def expected_from_feed(
    oracle: Oracle, feed: CorpusFeed, url: str, now: datetime, lookback_days: int
) -> None:
    """Add what feedparser finds in one served feed to `oracle`.

    The oracle, independent of trnews's code: feedparser.parse on the bytes as served, with the
    prolog's DOCTYPE removed (trnews removes it to defuse entity bombs) and the headers trnews
    is documented to pass (content-location = the URL fetched, the served content type). A feed
    with no version and no entries is not a feed: trnews may report it FAILED, and only those.
    Every other entry dated within `lookback_days` (or undated) is due. An entry with an http(s)
    link must show that link (normalised); one without must show its title (as given, or its
    text without tags). Every article is counted, those with neither title nor link too: the
    edition shows exactly one item per distinct normalised link (the same article through
    several feeds is merged on purpose) and one per linkless article of a feed (entries of one
    feed sharing an id, or without an id sharing title, date and content, are the same article
    given twice: merged on purpose too).
    """
    parsed = feedparser.parse(
        without_doctype(feed.body),
        response_headers={"content-location": url, "content-type": feed.content_type},
    )
    if not parsed.get("version") and not parsed.entries:
        oracle.not_feeds.add(url)
        return
    horizon = now - timedelta(days=lookback_days)
    for entry in parsed.entries:
        when = entry_date(entry)
        if when is not None and when < horizon:
            oracle.too_old += 1
            continue
        link = str(entry.get("link", "")).strip()
        parts = urlsplit(link)
        if parts.scheme.lower() in ("http", "https") and parts.netloc:
            oracle.entries.append(
                Expected(
                    feed.source, ("link", normalise(link)), normalise(link), title_texts(entry)
                )
            )
            continue
        content = [c.get("value") for c in entry.get("content", [])]
        ident = entry.get("id") or repr(
            (entry.get("title"), entry.get("published"), entry.get("summary"), content)
        )
        oracle.entries.append(Expected(feed.source, ("entry", url, ident), "", title_texts(entry)))


def missing_from_edition(oracle: Oracle, text: str) -> list[str]:
    """The expected entries the edition's text part does not show, one line each."""
    shown_links = {
        normalise(line.strip())
        for line in text.splitlines()
        if line.strip().startswith(("http://", "https://"))
    }
    body = squeeze(text)
    missing = []
    for e in oracle.entries:
        if e.link:
            if e.link not in shown_links:
                missing.append(f"{e.source}: link {e.link} not in the edition")
        elif e.titles and not any(t[:60] in body for t in e.titles):
            missing.append(f"{e.source}: title {e.titles[-1][:60]!r} not in the edition")
    return missing


class _Headings(HTMLParser):
    """Counts the item headings (`<h3>`) of an edition's HTML part."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.count += tag == "h3"


def item_count(html: str) -> int:
    parser = _Headings()
    parser.feed(html)
    parser.close()
    return parser.count


# -- running the corpus through the CLI -----------------------------------------------------


def serve(feeds: FeedServer, corpus: list[CorpusFeed]) -> list[str]:
    return [
        feeds.add(f.path, f.body, content_type=f.content_type, headers=f.headers) for f in corpus
    ]


def one_site(site: Site, urls: list[str], ambassadors: int = 4) -> None:
    """A config with a few ambassadors sharing `urls`; the last one's feeds are chronicles."""
    site.lookback_days = LOOKBACK_DAYS
    site.max_items = MAX_ITEMS
    for a in range(ambassadors):
        kind = "chronicle" if a == ambassadors - 1 else "blog"
        mine = [{"url": u, "kind": kind} for u in urls[a::ambassadors]]
        site.ambassador(f"ambassador-{a}", f"Ambassadør {a}", "Korpus", mine)
    site.write()


def collect_lines(stdout: str) -> dict[str, str]:
    """The collect output's feed lines, by URL: `ok …` or `FAILED …`."""
    out = {}
    for line in stdout.splitlines():
        m = re.match(r"(ok|FAILED)\s+(\S+) \(", line)
        if m:
            out[m[2]] = line
    return out


def the_message(site: Site) -> EmailMessage:
    messages = site.messages()
    assert len(messages) == 1, f"expected one message in the Maildir, found {len(messages)}"
    return messages[0]


def test_every_corpus_feed_parses_or_is_refused_with_a_fetch_error() -> None:
    """The fast smoke check: parse_feed on every corpus feed returns entries or says why not."""
    corpus = corpus_feeds()
    refused = 0
    for feed in corpus:
        url = f"http://127.0.0.1:8097{feed.path}"
        try:
            parse_feed(feed.body, url, feed.content_type)
        except FetchError as e:
            refused += 1
            assert e.reason, f"{feed.source}: refused without a reason"
        except Exception as e:
            pytest.fail(f"{feed.source}: parse_feed raised {type(e).__name__}: {e}")
    assert refused < len(corpus) // 10, f"{refused} of {len(corpus)} corpus feeds refused"


def test_every_corpus_entry_reaches_the_edition(feeds: FeedServer, site: Site) -> None:
    """All 1,768 corpus feeds on one site: collect and send exit 0, every feed gets an ok or
    FAILED line (FAILED only where feedparser finds no feed), and the one message shows every
    entry feedparser finds (see `expected_from_feed` for the oracle)."""
    corpus = corpus_feeds()
    urls = serve(feeds, corpus)
    one_site(site, urls)
    now = datetime.now(UTC)
    oracle = Oracle()
    for feed, url in zip(corpus, urls, strict=True):
        expected_from_feed(oracle, feed, url, now, LOOKBACK_DAYS)

    collected = site.run("collect")
    assert "Traceback" not in collected.stdout + collected.stderr, collected.stderr[-3000:]
    lines = collect_lines(collected.stdout)
    assert set(lines) == set(urls), f"{len(set(urls) - set(lines))} feeds got no line"
    failed = {url: line for url, line in lines.items() if line.startswith("FAILED")}
    for line in failed.values():
        assert re.search(r"\): \S", line), f"FAILED without a reason: {line}"
    wrongly_failed = {u: line for u, line in failed.items() if u not in oracle.not_feeds}
    assert not wrongly_failed, "feeds feedparser reads were FAILED:\n" + "\n".join(
        wrongly_failed.values()
    )

    site.run("subscribers", "add", "korpus@example.org")
    sent = site.run("send")
    assert "1 delivered" in sent.stdout, sent.stdout
    msg = the_message(site)
    text, html = text_part(msg), html_part(msg)
    unsafe = unsafe_characters(delivered(site)[0])
    assert not unsafe, f"characters no reader should get are in the message: {set(unsafe)}"
    assert not dot_lines(site), "a line of the message starts with a dot"

    missing = missing_from_edition(oracle, text)
    assert not missing, f"{len(missing)} entries missing:\n" + "\n".join(missing[:40])
    assert item_count(html) == oracle.articles, (
        f"the edition shows {item_count(html)} items; feedparser finds {oracle.articles} "
        f"distinct articles in the corpus ({len(oracle.entries)} due entries)"
    )


def test_the_oracle_notices_a_missing_entry() -> None:
    """The feed oracle can fail: an edition text without one expected link or title is caught."""
    oracle = Oracle(
        entries=[
            Expected("a.xml", ("link", "http://example.com/a"), "http://example.com/a"),
            Expected("b.xml", ("entry", "b", "1"), "", (squeeze("Tittel uten lenke"),)),
        ]
    )
    full = "Tittel uten\nlenke\nhttp://EXAMPLE.com/a/?utm_source=x#top\n"
    assert missing_from_edition(oracle, full) == []
    assert len(missing_from_edition(oracle, "Tittel uten lenke\n")) == 1
    assert len(missing_from_edition(oracle, "http://example.com/a\n")) == 1


def test_the_oracle_removes_only_the_prolog_doctype() -> None:
    """The oracle parses what trnews should: the prolog's DOCTYPE gone, CDATA text kept."""
    feed = b'<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY a "x">]>\n<rss><i>]]></i></rss>'
    assert without_doctype(feed) == b'<?xml version="1.0"?>\n\n<rss><i>]]></i></rss>'
    cdata = b"<rss><item><description><![CDATA[ <!DOCTYPE ]]></description></item></rss>"
    assert without_doctype(cdata) == cdata


# -- hostile HTML ----------------------------------------------------------------------------


def hostile_feed(snippets: list[tuple[int, dict[str, str]]], when: datetime) -> bytes:
    """An RSS feed with one item per snippet: the snippet as its HTML description, and as its
    title for every third one; each item has a unique safe link."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<rss version="2.0"><channel><title>Fiendtlig korpus</title>',
        "<link>https://fiendtlig.example.org/</link><description>Korpus</description>",
    ]
    for n, row in snippets:
        title = row["html"] if n % 3 == 0 else f"Utdrag {n}: {row['description'][:60]}"
        link = snippet_link(n)
        out.append(
            f"<item><title>{escape(title)}</title><link>{link}</link>"
            f'<guid isPermaLink="true">{link}</guid>'
            f"<pubDate>{format_datetime(when)}</pubDate>"
            f"<description>{escape(row['html'])}</description></item>"
        )
    out.append("</channel></rss>")
    return "\n".join(out).encode("utf-8")


def snippet_link(n: int) -> str:
    return f"https://fiendtlig.example.org/utdrag/{n}"


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.update(v or "" for k, v in attrs if k == "href")


def hrefs(html: str) -> set[str]:
    parser = _Hrefs()
    parser.feed(html)
    parser.close()
    return parser.hrefs


def test_no_hostile_snippet_puts_anything_active_into_the_message(
    feeds: FeedServer, site: Site
) -> None:
    """All 843 hostile snippets as item descriptions (a third also as titles), in four feeds:
    the message's HTML carries nothing that runs, loads or submits, every snippet's item is in
    the edition, and the text part has no raw `<script`."""
    rows = corpus_rows(HTML_FILE)
    when = datetime.now(UTC) - timedelta(hours=6)
    numbered = list(enumerate(rows))
    urls = [feeds.add(f"/fiendtlig/{k}.xml", hostile_feed(numbered[k::4], when)) for k in range(4)]
    site.max_items = MAX_ITEMS
    site.ambassador(
        "kari-nordmann", "Kari Nordmann", "Prorektor", [{"url": u, "kind": "blog"} for u in urls]
    )
    site.run("collect")
    site.run("subscribers", "add", "leser@example.org")
    site.run("send")
    msg = the_message(site)
    html, text = html_part(msg), text_part(msg)
    unsafe = unsafe_characters(delivered(site)[0])
    assert not unsafe, f"characters no reader should get are in the message: {set(unsafe)}"
    assert not dot_lines(site), "a line of the message starts with a dot"

    found = active_content(html)
    assert not found, f"{len(found)} active things in the HTML part:\n" + "\n".join(found[:40])
    links, text_lines = hrefs(html), {line.strip() for line in text.splitlines()}
    lost = [n for n in range(len(rows)) if snippet_link(n) not in links]
    assert not lost, f"{len(lost)} snippets' items missing from the HTML, e.g. {rows[lost[0]]}"
    lost = [n for n in range(len(rows)) if snippet_link(n) not in text_lines]
    assert not lost, f"{len(lost)} snippets' items missing from the text, e.g. {rows[lost[0]]}"
    raw = [line for line in text.splitlines() if "<script" in line.lower()]
    assert not raw, "raw <script in the text part:\n" + "\n".join(raw[:20])


def test_the_active_content_finder_spots_each_kind() -> None:
    """The hostile test can fail: each kind of active content is found, harmless markup is not."""
    harmless = (
        '<html><head><meta http-equiv="X-UA-Compatible" content="IE=edge">'
        '<style type="text/css">p{margin:0}</style></head><body>'
        '<a href="https://example.org/" style="color:#003a70">ok</a><p>tekst</p></body></html>'
    )
    assert active_content(harmless) == []
    bad = [
        "<script>alert(1)</script>",
        '<iframe src="https://evil.example/"></iframe>',
        '<object data="x.swf"></object>',
        '<embed src="x.swf">',
        '<form action="https://evil.example/"></form>',
        '<input name="p">',
        '<base href="https://evil.example/">',
        '<meta http-equiv="Refresh" content="0;url=https://evil.example/">',
        '<link rel="stylesheet" href="https://evil.example/x.css">',
        '<img src="https://example.org/x.png" onerror="alert(1)">',
        '<a href=" java&#x09;script:alert(1)">x</a>',
        '<a href="VBScript:msgbox(1)">x</a>',
        '<a href="data:text/html;base64,PHNjcmlwdD4=">x</a>',
        '<p style="width: expression(alert(1))">x</p>',
        '<p style="background: URL (https://evil.example/x.png)">x</p>',
        "<style>@import 'https://evil.example/x.css';</style>",
    ]
    for snippet in bad:
        doc = f"<html><head></head><body>{snippet}</body></html>"
        assert active_content(doc), f"not found: {snippet}"
