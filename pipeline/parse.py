"""Turn a feed's bytes into clean entries (feedparser → `models.Entry`), safely.

Nothing of feedparser's dicts leaves this module. Parsing is pure (no network, no database):
plain RSS 2.0 is read with ElementTree exactly as feedparser would read it, a JSON Feed by
`jsonfeed` (which feedparser does not read) into the same entry dicts, anything else by
feedparser itself, and `parse_async` runs any of them in worker processes, off the event loop.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import hashlib
import html
import logging
import multiprocessing
import os
import re
import threading
import xml.sax
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit
from xml.etree import ElementTree

import feedparser
import feedparser.datetimes
import feedparser.encodings
import feedparser.html
import feedparser.mixin
import feedparser.namespaces.mediarss
import feedparser.sanitizer
import feedparser.urls
import nh3

from . import jsonfeed
from .errors import FetchError
from .models import Entry, inert
from .sanitize import clean, one_line

logger = logging.getLogger(__name__)

EXCERPT_CHARS = 300


# -- text ------------------------------------------------------------------------------------

_BLOCK_TAG = re.compile(  # where a block tag starts: a space goes there, so words stay apart
    r"(?=</?(?:p|div|br|li|ul|ol|h[1-6]|tr|td|th|table|blockquote|figure|figcaption|section|"
    r"article|header|footer|pre|hr|dd|dt)\b)",
    re.IGNORECASE,
)
_INVISIBLE = re.compile("[\u200b-\u200d\u2060-\u2064\ufeff]")
"""Zero-width characters feeds put between words (and a stray BOM): a space, in feed text."""


def clean_text(text: str) -> str:
    """Plain text on one line, made safe (see pipeline.sanitize): white space folded, and
    zero-width characters taken as spaces."""
    return inert(one_line(_INVISIBLE.sub(" ", text)))


_HIDDEN = frozenset({"script", "style", "template"})
"""Elements whose content is never prose: dropped with their content."""

# Elements an HTML parser reads as raw text: their content would come out as literal markup
# (`<noscript><img src=…></noscript>`, WordPress's lazy-loading fallback, as `<img src=…>`).
# Only their tags go, so that their content is read as markup like any other.
_RAW_TEXT_TAG = re.compile(
    r"</?(?:iframe|noembed|noframes|noscript|plaintext|textarea|xmp)\b"
    r"(?:[^>\"']|\"[^\"]*\"|'[^']*')*>",
    re.IGNORECASE,
)


def _markup(value: str) -> str:
    """An HTML fragment ready for nh3: block tags spaced from their text, raw-text tags gone."""
    return _RAW_TEXT_TAG.sub(" ", _BLOCK_TAG.sub(" ", value))


def plain_text(markup: str) -> str:
    """The text of an HTML fragment: tags dropped (scripts and styles with their content)."""
    stripped = nh3.clean(_markup(markup), tags=set(), clean_content_tags=set(_HIDDEN))
    return clean_text(html.unescape(stripped))


# Inline tags a writer may type in a title as words ("Sterk <b>vekst</b>"): shown as written.
_TITLE_TAGS = {"b", "i", "em", "strong", "u", "s", "small", "sub", "sup", "code", "q", "mark"}


def title_text(value: str) -> str:
    """A title as plain text: typed inline tags such as `<b>` stay as written; scripts, styles,
    images and any other markup are dropped, since no title means them as words."""
    kept = nh3.clean(
        _markup(value),
        tags=_TITLE_TAGS,
        attributes={},
        clean_content_tags=set(_HIDDEN),
        link_rel=None,
    )
    return clean_text(html.unescape(kept))


def cut(text: str, limit: int = EXCERPT_CHARS) -> str:
    """`text` cut to at most `limit` characters at a word boundary, with an ellipsis if cut."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    space = head.rfind(" ")
    if space > limit // 2:
        head = head[:space]
    return head.rstrip(" ,.;:-–—([{") + "…"


# -- links -----------------------------------------------------------------------------------


def _split_query(query: str) -> list[tuple[str, str]]:
    return [
        (k, v)
        for k, v in parse_qsl(query, keep_blank_values=True)
        if not k.lower().startswith("utm_")
    ]


def display_link(url: str) -> str:
    """The link as shown to readers: the feed's link without its `utm_*` parameters."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return ""
    if "utm_" not in parts.query.lower():
        return url
    return urlunsplit(parts._replace(query=urlencode(_split_query(parts.query))))


def normalise_link(url: str) -> str:
    """What identifies an article: scheme and host lower-cased, default port, fragment, `utm_*`
    parameters and a trailing slash dropped."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # a port out of range or not a number: keep what the feed wrote
        port = None
        host = parts.netloc.rpartition("@")[2].lower()
    if port and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    path = parts.path.rstrip("/")
    query = urlencode(_split_query(parts.query))
    return urlunsplit((scheme, host, path, query, ""))


# -- parsing ---------------------------------------------------------------------------------

# A DOCTYPE is how entity bombs and external entities arrive; no feed needs one.
_FIRST_ELEMENT = re.compile(rb"<[A-Za-z_:]")
_PROCESSING_INSTRUCTION = re.compile(rb"<\?.*?\?>", re.DOTALL)
_UTF8_XML = "application/xml; charset=utf-8"
_CHARREF = re.compile(rb"&#(?:[xX]([0-9a-fA-F]+)|([0-9]+));")


def _charref(m: re.Match[bytes]) -> bytes:
    """A numeric character reference, or nothing if it names no character: feedparser's lenient
    parser crashes on `&#xD800;` or `&#x110000;`, losing the whole feed. References to what no
    text may hold go too (a noncharacter, a C0 control but tab and line ends): XML forbids most
    of them, so one would send the whole feed to feedparser's slower lenient parser."""
    digits = m[1] or m[2]
    if len(digits.lstrip(b"0")) > 7:
        return b""
    value = int(digits, 16) if m[1] else int(digits)
    if value >= 0x110000 or 0xD800 <= value <= 0xDFFF:
        return b""
    if value < 0x20 and value not in (0x09, 0x0A, 0x0D):
        return b""
    return b"" if 0xFDD0 <= value <= 0xFDEF or value & 0xFFFE == 0xFFFE else m[0]


_FEED_LINK = re.compile(
    r"<link\b[^>]*\btype=[\"']application/(?:rss|atom)\+xml[\"'][^>]*>", re.IGNORECASE
)
_JSON_FEED_LINK = re.compile(
    r"<link\b[^>]*\btype=[\"']application/feed\+json[\"'][^>]*>", re.IGNORECASE
)
_HREF = re.compile(r"\bhref=[\"']([^\"']+)[\"']", re.IGNORECASE)


def advertised_feed(body: bytes, base: str) -> str | None:
    """The feed an HTML page names in `<link rel="alternate" type="application/rss+xml">`
    (or Atom); else the JSON Feed it names (`application/feed+json`)."""
    head = body[:200_000].decode("utf-8", "replace")
    for pattern in (_FEED_LINK, _JSON_FEED_LINK):
        for tag in pattern.findall(head):
            href = _HREF.search(tag)
            if href:
                return urljoin(base, clean(html.unescape(href.group(1))))
    return None


def prepare(body: bytes, content_type: str | None = None) -> tuple[bytes, str | None]:
    """The document made safe for feedparser, and the content type to parse it with: in UTF-8,
    with nothing before its first element but processing instructions, and without character
    references that name no character.

    Decoded first (as feedparser would) so that no encoding (UTF-16, UTF-7, EBCDIC) hides a
    DOCTYPE; then every DOCTYPE and ENTITY declaration goes, not only the first: feedparser
    keeps the "safe" entities of a DOCTYPE it finds and its lenient parser expands them.
    """
    probe: dict[str, Any] = {}
    headers = {"content-type": content_type} if content_type else {}
    data = feedparser.encodings.convert_to_utf8(headers, body, probe)
    if probe.get("encoding"):
        content_type = _UTF8_XML
    else:  # an encoding feedparser cannot tell: strip what the raw bytes show
        data = body
    if b"&#" in data:
        data = _CHARREF.sub(_charref, data)
    first = _FIRST_ELEMENT.search(data)
    end = first.start() if first else len(data)
    if b"<!" not in data[:end]:
        return data, content_type
    prolog = b"".join(_PROCESSING_INSTRUCTION.findall(data[:end]))
    return prolog + b"\n" + data[end:], content_type


def _date(entry: Any, now: datetime) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        # `in` first: feedparser's `get("updated_parsed")` falls back to the published date
        # with a DeprecationWarning, and the published date was looked at already
        value = entry.get(key) if key in entry else None
        if value:
            with contextlib.suppress(OverflowError, ValueError, TypeError):
                when = datetime.fromtimestamp(calendar.timegm(value), UTC)
                return when if when <= now else None
    return None


def _str(value: Any) -> str:
    """Text from feedparser made safe (pipeline.sanitize.clean): without the lone surrogates a
    `&#xD800;` gives, which nothing downstream (nh3, SQLite, e-mail) can encode, and without
    the controls and noncharacters that make MJML refuse a whole edition."""
    return clean(value) if isinstance(value, str) else ""


def _text_of(detail: Any, value: str) -> str:
    if detail and detail.get("type") == "text/plain":
        return clean_text(value)
    return plain_text(value)


_HTML_TYPES = ("text/html", "application/xhtml+xml")

_FIRST_APPEARED = re.compile(
    r"\s*\b(?:The post|Innlegget)\s.{1,400}?\s"
    r"(?:appeared first on|dukket først opp på|dukka først opp på)\s[^\n]{1,200}?\.?\s*$",
    re.DOTALL,
)
"""The line WordPress SEO plugins end every feed excerpt with ("The post X appeared first on
Y.", "Innlegget X dukket først opp på Y."): it says nothing a reader of the newsletter needs."""


def _title_of(raw: Any, atom: bool) -> str:
    """The entry's title as text. Only Atom declares whether a title is HTML; for RSS feedparser
    guesses, so an RSS title is text whatever it looks like (see `title_text`).

    feedparser's sanitiser is off for the entry's content (see `_feedparser_entries`), but a
    title it takes for HTML still goes through it: a title is short, so this costs little, and
    the words a mangled title shows stay the ones feedparser reads in it.
    """
    value = _str(raw.get("title"))
    detail = raw.get("title_detail")
    kind = detail.get("type") if detail else None
    if kind in _HTML_TYPES and value:
        value = _str(feedparser.sanitizer._sanitize_html(value, "utf-8", kind))
    if atom and kind in _HTML_TYPES:
        return plain_text(value)
    return title_text(value)


def _start_media_description(self: Any, attrs_d: dict[str, str]) -> None:
    self.push_content("media_description", attrs_d, "text/plain", 1)


def _end_media_description(self: Any) -> None:
    self.pop_content("media_description")


# feedparser files a film's <media:description> (YouTube, Vimeo) as the entry's `summary`, or as
# its `content` when a summary came first: a feed giving both its own text and a media
# description would show whichever came first in the document, or the media description over
# an Atom <content>. Kept under a key of its own, it is read only when the entry has no text of
# its own (see `_entry`).
feedparser.namespaces.mediarss.Namespace._start_media_description = _start_media_description
feedparser.namespaces.mediarss.Namespace._end_media_description = _end_media_description


def _entry(raw: Any, feed_url: str, now: datetime, *, atom: bool = False) -> Entry:
    link = display_link(_str(raw.get("link")))
    title = _title_of(raw, atom)
    body = _str(raw.get("summary"))
    detail = raw.get("summary_detail")
    if not body and raw.get("content"):
        body = _str(raw["content"][0].get("value"))
        detail = raw["content"][0]
    if not body and raw.get("media_description"):  # a film with no text but its description
        body = _str(raw["media_description"])
        detail = raw.get("media_description_detail")
    excerpt = cut(_FIRST_APPEARED.sub("", _text_of(detail, body)))
    if link:
        key = normalise_link(link)
    else:
        ident = _str(raw.get("id")) or f"{title}\x00{_str(raw.get('published'))}\x00{excerpt[:80]}"
        key = "urn:trnews:" + hashlib.sha256(f"{feed_url}\x00{ident}".encode()).hexdigest()[:32]
    # Every name the entry gives: feedparser's `author` holds only one of several <author> or
    # <dc:creator> elements, and its split of "mail (Name)" in `authors` can mangle the name.
    names = [_str(raw.get("author"))]
    names += [_str(a.get("name")) for a in raw.get("authors", []) if isinstance(a, dict)]
    author = ", ".join(dict.fromkeys(n for n in names if n))
    return Entry(
        link=link,
        key=key,
        title=cut(title, 200),
        excerpt=excerpt,
        published=_date(raw, now),
        author=clean_text(author),
    )


# -- the fast path: plain RSS 2.0 ---------------------------------------------------------------
#
# feedparser walks a document element by element in Python: ~2 ms per item of a WordPress feed,
# most of a run's CPU. For the common plain RSS 2.0 shape, ElementTree (expat, like feedparser's
# strict parser, building the tree in C) reads the same elements in a tenth of the time, and
# each value goes through the very steps feedparser's `pop()` applies (with its own helpers
# for dates and links), so the entries are the same. Any element, attribute or nesting outside
# that shape sends the whole feed to feedparser. `prepare` has removed every DOCTYPE, so expat
# has no entity to expand; a reference to one is an error, and feedparser then reads the feed.

_CONTENT = "{http://purl.org/rss/1.0/modules/content/}encoded"
_CREATOR = "{http://purl.org/dc/elements/1.1/}creator"
_ITEM_CHILDREN: dict[str, frozenset[str]] = {
    # element: the attributes it may carry (none of them changes a value read here)
    "title": frozenset(),
    "link": frozenset(),
    "description": frozenset(),
    "pubDate": frozenset(),
    "guid": frozenset({"isPermaLink"}),
    "author": frozenset(),
    "category": frozenset({"domain"}),
    "comments": frozenset(),
    "enclosure": frozenset({"url", "length", "type"}),
    _CONTENT: frozenset(),
    _CREATOR: frozenset(),
    "{http://wellformedweb.org/CommentAPI/}commentRss": frozenset(),
    "{http://purl.org/rss/1.0/modules/slash/}comments": frozenset(),
}
_ONCE = frozenset({"title", "link", "description", "pubDate", "guid", _CONTENT})
_ENTRY_TAGS = frozenset({"item", "entry"})
"""Local names that start an entry in feedparser, in any namespace and any case."""
_ENTITY_IN_LINK = re.compile("&([A-Za-z0-9_]+);")
_C1 = re.compile("[\x80-\x9f]")
"""The characters feedparser maps as windows-1252: looked for first, since a translate with a
dict costs 10 µs per KB even when it maps nothing."""


def _fp_value(value: str) -> str:
    """The last steps feedparser's `pop()` takes with an element's (stripped) text: UTF-8 that
    was read as Latin-1 repaired, C1 controls read as windows-1252."""
    if value.isascii():  # most values: neither step can change them
        return value
    with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
        value = value.encode("iso-8859-1").decode("utf-8")
    return value.translate(feedparser.html._cp1252) if _C1.search(value) else value


def _plain_rss(data: bytes, url: str) -> list[dict[str, Any]] | None:
    """The entries of a plain RSS 2.0 document, as feedparser gives them; None if the document
    is not one (not well-formed, or any element outside the shape above)."""
    try:
        root = ElementTree.fromstring(data)  # noqa: S314 (no DOCTYPE left: see above)
    except ElementTree.ParseError:
        return None
    if root.tag != "rss" or root.get("version") != "2.0":
        return None
    channels = [c for c in root if c.tag == "channel"]
    if len(channels) != 1:
        return None
    items = [i for i in channels[0] if i.tag == "item"]
    starts = sum(1 for e in root.iter() if isinstance(e.tag, str) and _local(e.tag) in _ENTRY_TAGS)
    if starts != len(items) or any("base" in _local(k) for e in root.iter() for k in e.attrib):
        return None
    base = url  # feedparser's base at the depth of an item's children (rss, channel, item, link)
    for _ in range(4):
        base = feedparser.urls.make_safe_absolute_uri(base, base) or base
    entries = []
    for item in items:
        raw = _plain_item(item, base)
        if raw is None:
            return None
        entries.append(raw)
    return entries


def _local(tag: str) -> str:
    return tag.rpartition("}")[2].lower()


def _plain_item(item: ElementTree.Element, base: str) -> dict[str, Any] | None:
    """One item as feedparser's entry dict (the keys `_entry` reads), or None if it is outside
    the shape: an element or attribute not listed, a child element, a repeated element."""
    if item.attrib or (item.text and item.text.strip()):
        return None
    raw: dict[str, Any] = {}
    seen: set[str] = set()
    link = guid = None
    permalink = True
    for child in item:
        tag = child.tag
        allowed = _ITEM_CHILDREN.get(tag) if isinstance(tag, str) else None
        if allowed is None or len(child) or not allowed.issuperset(child.attrib):
            return None
        if tag in _ONCE:
            if tag in seen:
                return None
            seen.add(tag)
        text = (child.text or "").strip()
        if tag == "title":
            html_like = feedparser.mixin._FeedParserMixin.looks_like_html(text)
            raw["title"] = _fp_value(text)
            raw["title_detail"] = {"type": "text/html" if html_like else "text/plain"}
        elif tag == "link":
            value = _fp_value(feedparser.urls._urljoin(base, text) if text else "")
            link = _ENTITY_IN_LINK.sub(r"&\g<1>", value.replace("&amp;", "&"))
        elif tag == "guid":
            permalink = child.get("isPermaLink", "true") == "true"
            resolve = permalink and text
            guid = _fp_value(feedparser.urls._urljoin(base, text) if resolve else text)
            raw["id"] = guid
        elif tag == "description":
            raw["summary"] = _fp_value(text)
            raw["summary_detail"] = {"type": "text/html"}
        elif tag == _CONTENT:
            value = _fp_value(text)
            raw["content"] = [{"type": "text/html", "value": value}]
            raw.setdefault("summary", value)
        elif tag == "pubDate":
            raw["published"] = _fp_value(text)
            raw["published_parsed"] = feedparser.datetimes._parse_date(raw["published"])
        elif tag in ("author", _CREATOR):
            value = _fp_value(text)
            if "@" in value:  # feedparser splits "mail (Name)": leave that to it
                return None
            raw["author"] = value
            raw.setdefault("authors", []).append({"name": value} if value else {})
    if link is not None:
        raw["link"] = link
    elif guid is not None and permalink:
        raw["link"] = guid
    return raw


def _parse_problem(exc: object) -> str:
    """Why feedparser found no feed, without its `<unknown>:2:0:` prefix (whose line number
    counts the XML declaration feedparser adds)."""
    if isinstance(exc, xml.sax.SAXParseException):
        return f"XML error: {exc.getMessage()}"
    return str(exc) if exc else "no RSS, Atom or JSON Feed content"


def _feedparser_entries(
    body: bytes, data: bytes, url: str, content_type: str | None
) -> tuple[list[Any], bool]:
    """feedparser's entries for the prepared document, and whether it is Atom; FetchError if
    it is no feed at all.

    feedparser's HTML sanitiser and link resolver are off: they rewrite the entry's HTML,
    which trnews reduces to plain text with nh3 anyway, and they took half of feedparser's time.
    """
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    parsed = feedparser.parse(
        data, response_headers=headers, sanitize_html=False, resolve_relative_uris=False
    )
    if not parsed.get("version") and not parsed.entries:
        if re.search(rb"<html[\s>]", body[:4096], re.IGNORECASE):
            found = advertised_feed(body, url)
            hint = (
                f"; the page names its feed at {found}: put that URL in the config" if found else ""
            )
            raise FetchError(url, f"not a feed: an HTML page{hint}", advertised=found)
        raise FetchError(url, f"not a feed: {_parse_problem(parsed.get('bozo_exception'))}")
    return parsed.entries, str(parsed.get("version", "")).startswith("atom")


def parse_feed(
    body: bytes, url: str, content_type: str | None = None, *, now: datetime | None = None
) -> tuple[Entry, ...]:
    """Parse a feed's bytes (RSS, Atom or JSON Feed) into clean entries; FetchError if it is
    not a feed at all."""
    now = now or datetime.now(UTC)
    if not body.strip():
        raise FetchError(url, "not a feed: the answer is empty")
    if jsonfeed.is_json(body, content_type):
        return _unique(jsonfeed.entries(body, url), url, now)
    data, content_type = prepare(body, content_type)
    raws = _plain_rss(data, url) if content_type == _UTF8_XML else None
    atom = False
    if raws is None:
        raws, atom = _feedparser_entries(body, data, url, content_type)
    return _unique(raws, url, now, atom=atom)


def _unique(
    raws: Iterable[Any], url: str, now: datetime, *, atom: bool = False
) -> tuple[Entry, ...]:
    """The entries of a feed, each article once (by its key), in the feed's order."""
    seen: set[str] = set()
    entries = []
    for raw in raws:
        entry = _entry(raw, url, now, atom=atom)
        if entry.key not in seen:
            seen.add(entry.key)
            entries.append(entry)
    return tuple(entries)


def author_matches(author_field: str, name: str) -> bool:
    """True when the entry's author field names this person ("A og B" names both).

    A hyphen joins names: "Anne-Kari Nordmann" and "Kari Nordmann-Berg" are other people.
    """
    hay = clean_text(author_field).casefold()
    needle = re.escape(clean_text(name).casefold())
    return re.search(rf"(?<![\w-]){needle}(?![\w-])", hay) is not None


# -- the parse seam: threads, then worker processes -------------------------------------------

WORKERS_AFTER = 16
"""Feeds a process parses in threads before it starts worker processes: a run of a few feeds
never pays for their start (about half a second); a larger one parses in threads meanwhile."""

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_warm_up: list[Future[None]] = []
_starting = False
_threads_only = False
_requests = 0


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _ready() -> None:
    """A worker's first task: it is up once it has run it."""


def _start_pool() -> ProcessPoolExecutor | None:
    """Start the worker processes, which stay for the life of this process; None if this
    system cannot run them (no fork server, no shared memory), and parsing stays in threads.

    They come from a fork server that has imported this module once, so a worker costs a fork,
    not an interpreter start; never forked from this process, whose threads may hold locks.
    Starting blocks until the fork server is up (a few tenths of a second): `_workers` has it
    done in a thread of its own. As with every start method but fork, a worker imports the
    main module: a script that calls trnews keeps its work under `if __name__ == "__main__"`
    (the `trnews` command and `python -m pipeline` do).
    """
    global _pool, _starting, _threads_only
    with _lock:
        try:
            if _pool is None and not _threads_only:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload([__name__])
                pool = ProcessPoolExecutor(max_workers=_cpus(), mp_context=context)
                _warm_up[:] = [pool.submit(_ready) for _ in range(_cpus())]
                _pool = pool
        except (OSError, ValueError, RuntimeError) as e:  # RuntimeError: see the docstring
            logger.info("Parsing feeds in threads: no worker processes here (%s)", e)
            _threads_only = True
        finally:
            _starting = False
        return _pool


def start_workers(feeds: int) -> None:
    """Have the worker processes start now, in the background, if `feeds` feeds are about to
    be parsed and that is more than WORKERS_AFTER: a collect that calls this before fetching
    has them up by the time the first answers arrive."""
    global _starting
    if feeds > WORKERS_AFTER and _pool is None and not (_starting or _threads_only):
        _starting = True
        threading.Thread(target=_start_pool, name="trnews-parse-workers", daemon=True).start()


def _workers() -> ProcessPoolExecutor | None:
    """The worker processes once they are up; None while feeds are parsed in threads."""
    global _requests, _threads_only
    _requests += 1
    pool = _pool
    if pool is None:
        start_workers(_requests)
        return None
    if not all(f.done() for f in _warm_up):
        return None
    if any(f.exception() for f in _warm_up):  # they cannot run here: never try again
        logger.info("Parsing feeds in threads: the worker processes did not start")
        _threads_only = True
        _discard(pool)
        return None
    return pool


def _discard(pool: ProcessPoolExecutor) -> None:
    global _pool
    with _lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=True)


def _parse_in_worker(
    body: bytes, url: str, content_type: str | None, now: datetime | None
) -> tuple[Entry, ...] | tuple[str, str | None]:
    """`parse_feed` in a worker; a FetchError comes back as its reason and advertised feed
    (an exception with keyword arguments does not pickle)."""
    try:
        return parse_feed(body, url, content_type, now=now)
    except FetchError as e:
        return (e.reason, e.advertised)


async def parse_async(
    body: bytes, url: str, content_type: str | None = None, *, now: datetime | None = None
) -> tuple[Entry, ...]:
    """`parse_feed` off the event loop: in worker processes, or in a thread until they are up.

    Parsing is CPU work. In a thread it holds the interpreter lock, and each socket or SQLite
    call of the event loop then waits up to 5 ms to get it back: with many feeds that doubles
    a run. Worker processes hold no lock of ours and use every core. A worker that dies (out
    of memory, killed) takes its parses with it: each is tried once more in fresh workers,
    then reported as the feed's failure.
    """
    pool = _workers()
    if pool is None:
        return await asyncio.to_thread(parse_feed, body, url, content_type, now=now)
    loop = asyncio.get_running_loop()
    for _ in range(2):
        try:
            got = await loop.run_in_executor(pool, _parse_in_worker, body, url, content_type, now)
        except BrokenProcessPool:
            _discard(pool)
            pool = await asyncio.to_thread(_start_pool)
            if pool is None:
                break
            continue
        if got and isinstance(got[0], str):
            reason, advertised = got
            raise FetchError(url, str(reason), advertised=advertised)
        return got
    raise FetchError(url, "the feed parser's process stopped on it (out of memory?)")
