"""Turn a feed's bytes into clean entries (feedparser → `models.Entry`), safely.

Nothing of feedparser's dicts leaves this module. Everything here is pure: no network, no
database, so it can run off the event loop or in another process.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import hashlib
import html
import re
import unicodedata
import xml.sax
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import feedparser
import feedparser.encodings
import nh3

from .errors import FetchError
from .models import Entry, inert

EXCERPT_CHARS = 300


# -- text ------------------------------------------------------------------------------------

_BLOCK_TAG = re.compile(
    r"<(/?(?:p|div|br|li|ul|ol|h[1-6]|tr|td|th|table|blockquote|figure|figcaption|section|"
    r"article|header|footer|pre|hr|dd|dt)\b)",
    re.IGNORECASE,
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]")
_SPACE = re.compile(r"\s+")
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """Plain text on one line: control and bidi characters gone, white space folded."""
    text = _SPACE.sub(" ", _CONTROL.sub(" ", unicodedata.normalize("NFC", text))).strip()
    return inert(text)


def plain_text(markup: str) -> str:
    """The text of an HTML fragment: tags dropped (scripts and styles with their content)."""
    spaced = _BLOCK_TAG.sub(r" <\1", markup)
    stripped = nh3.clean(spaced, tags=set(), clean_content_tags={"script", "style", "template"})
    return clean_text(html.unescape(stripped))


# Inline tags a writer may type in a title as words ("Sterk <b>vekst</b>"): shown as written.
_TITLE_TAGS = {"b", "i", "em", "strong", "u", "s", "small", "sub", "sup", "code", "q", "mark"}


def title_text(value: str) -> str:
    """A title as plain text: typed inline tags such as `<b>` stay as written; scripts, styles,
    images and any other markup are dropped, since no title means them as words."""
    spaced = _BLOCK_TAG.sub(r" <\1", value)
    kept = nh3.clean(
        spaced,
        tags=_TITLE_TAGS,
        attributes={},
        clean_content_tags={"script", "style", "template"},
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
    parser crashes on `&#xD800;` or `&#x110000;`, losing the whole feed."""
    digits = m[1] or m[2]
    if len(digits.lstrip(b"0")) > 7:
        return b""
    value = int(digits, 16) if m[1] else int(digits)
    return m[0] if value < 0x110000 and not 0xD800 <= value <= 0xDFFF else b""


_FEED_LINK = re.compile(
    r"<link\b[^>]*\btype=[\"']application/(?:rss|atom)\+xml[\"'][^>]*>", re.IGNORECASE
)
_HREF = re.compile(r"\bhref=[\"']([^\"']+)[\"']", re.IGNORECASE)


def advertised_feed(body: bytes, base: str) -> str | None:
    """The feed an HTML page names in `<link rel="alternate" type="application/rss+xml">`."""
    head = body[:200_000].decode("utf-8", "replace")
    for tag in _FEED_LINK.findall(head):
        href = _HREF.search(tag)
        if href:
            return urljoin(base, html.unescape(href.group(1)))
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
        value = entry.get(key)
        if value:
            with contextlib.suppress(OverflowError, ValueError, TypeError):
                when = datetime.fromtimestamp(calendar.timegm(value), UTC)
                return when if when <= now else None
    return None


def _str(value: Any) -> str:
    """Text from feedparser without the lone surrogates a `&#xD800;` gives: nothing downstream
    (nh3, SQLite, e-mail) can encode them, and one such entry must not sink its feed."""
    return _SURROGATE.sub("", value) if isinstance(value, str) else ""


def _text_of(detail: Any, value: str) -> str:
    if detail and detail.get("type") == "text/plain":
        return clean_text(value)
    return plain_text(value)


def _title_of(raw: Any, atom: bool) -> str:
    """The entry's title as text. Only Atom declares whether a title is HTML; for RSS feedparser
    guesses, so an RSS title is text whatever it looks like (see `title_text`)."""
    value = _str(raw.get("title"))
    detail = raw.get("title_detail")
    if atom and detail and detail.get("type") in ("text/html", "application/xhtml+xml"):
        return plain_text(value)
    return title_text(value)


def _entry(raw: Any, feed_url: str, now: datetime, *, atom: bool = False) -> Entry:
    link = display_link(_str(raw.get("link")))
    title = _title_of(raw, atom)
    body = _str(raw.get("summary"))
    detail = raw.get("summary_detail")
    if not body and raw.get("content"):
        body = _str(raw["content"][0].get("value"))
        detail = raw["content"][0]
    excerpt = cut(_text_of(detail, body))
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


def _parse_problem(exc: object) -> str:
    """Why feedparser found no feed, without its `<unknown>:2:0:` prefix (whose line number
    counts the XML declaration feedparser adds)."""
    if isinstance(exc, xml.sax.SAXParseException):
        return f"XML error: {exc.getMessage()}"
    return str(exc) if exc else "no RSS or Atom content"


def parse_feed(
    body: bytes, url: str, content_type: str | None = None, *, now: datetime | None = None
) -> tuple[Entry, ...]:
    """Parse a feed's bytes into clean entries; FetchError if it is not a feed at all."""
    now = now or datetime.now(UTC)
    if not body.strip():
        raise FetchError(url, "not a feed: the answer is empty")
    data, content_type = prepare(body, content_type)
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    parsed = feedparser.parse(data, response_headers=headers)
    if not parsed.get("version") and not parsed.entries:
        if re.search(rb"<html[\s>]", body[:4096], re.IGNORECASE):
            found = advertised_feed(body, url)
            hint = (
                f"; the page names its feed at {found}: put that URL in the config" if found else ""
            )
            raise FetchError(url, f"not a feed: an HTML page{hint}")
        raise FetchError(url, f"not a feed: {_parse_problem(parsed.get('bozo_exception'))}")
    atom = str(parsed.get("version", "")).startswith("atom")
    seen: set[str] = set()
    entries = []
    for raw in parsed.entries:
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


async def parse_async(
    body: bytes, url: str, content_type: str | None = None, *, now: datetime | None = None
) -> tuple[Entry, ...]:
    """`parse_feed` off the event loop: parsing is CPU work and must not stall the fetches."""
    return await asyncio.to_thread(parse_feed, body, url, content_type, now=now)
