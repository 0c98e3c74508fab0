"""Fetch every feed once, concurrently, and store the new articles (httpx + feedparser → items).

Nothing of feedparser's dicts leaves this module: entries come out as `models.Entry`.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import hashlib
import html
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import feedparser
import httpx
import nh3

from . import __version__
from .config import Config
from .errors import FetchError
from .models import PERSONAL_MARK, Entry, FeedOutcome, FeedResult, Kind
from .store import Store

logger = logging.getLogger(__name__)

EXCERPT_CHARS = 300
MAX_BODY_BYTES = 5 * 1024 * 1024
FEED_DEADLINE_S = 30.0
MAX_CONCURRENT = 16
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1"
)

# -- text ------------------------------------------------------------------------------------

_BLOCK_TAG = re.compile(
    r"<(/?(?:p|div|br|li|ul|ol|h[1-6]|tr|td|th|table|blockquote|figure|figcaption|section|"
    r"article|header|footer|pre|hr|dd|dt)\b)",
    re.IGNORECASE,
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]")
_SPACE = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """Plain text on one line: control and bidi characters gone, white space folded."""
    text = unicodedata.normalize("NFC", text).replace(PERSONAL_MARK, "")
    return _SPACE.sub(" ", _CONTROL.sub(" ", text)).strip()


def plain_text(markup: str) -> str:
    """The text of an HTML fragment: tags dropped (scripts and styles with their content)."""
    spaced = _BLOCK_TAG.sub(r" <\1", markup)
    stripped = nh3.clean(spaced, tags=set(), clean_content_tags={"script", "style", "template"})
    return clean_text(html.unescape(stripped))


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
    if parts.port and (scheme, parts.port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{parts.port}"
    path = parts.path.rstrip("/")
    query = urlencode(_split_query(parts.query))
    return urlunsplit((scheme, host, path, query, ""))


# -- parsing ---------------------------------------------------------------------------------

# A DOCTYPE with an internal subset is how entity bombs arrive; no feed needs one.
_DOCTYPE = re.compile(rb"<!DOCTYPE(?:[^\[>]|\[.*?\])*>", re.IGNORECASE | re.DOTALL)
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


def _date(entry: Any, now: datetime) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            with contextlib.suppress(OverflowError, ValueError, TypeError):
                when = datetime.fromtimestamp(calendar.timegm(value), UTC)
                return when if when <= now else None
    return None


def _text_of(detail: Any, value: str) -> str:
    if detail and detail.get("type") == "text/plain":
        return clean_text(value)
    return plain_text(value)


def _entry(raw: Any, feed_url: str, now: datetime) -> Entry:
    link = display_link(raw.get("link", ""))
    title = _text_of(raw.get("title_detail"), raw.get("title", ""))
    body = raw.get("summary", "")
    detail = raw.get("summary_detail")
    if not body and raw.get("content"):
        body = raw["content"][0].get("value", "")
        detail = raw["content"][0]
    excerpt = cut(_text_of(detail, body))
    if link:
        key = normalise_link(link)
    else:
        ident = raw.get("id") or f"{title}\x00{raw.get('published', '')}\x00{excerpt[:80]}"
        key = "urn:trnews:" + hashlib.sha256(f"{feed_url}\x00{ident}".encode()).hexdigest()[:32]
    author = raw.get("author", "") or ", ".join(
        a.get("name", "") for a in raw.get("authors", []) if isinstance(a, dict)
    )
    return Entry(
        link=link,
        key=key,
        title=cut(title, 200),
        excerpt=excerpt,
        published=_date(raw, now),
        author=clean_text(author),
    )


def parse_feed(
    body: bytes, url: str, content_type: str | None = None, *, now: datetime | None = None
) -> tuple[Entry, ...]:
    """Parse a feed's bytes into clean entries; FetchError if it is not a feed at all."""
    now = now or datetime.now(UTC)
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    parsed = feedparser.parse(_DOCTYPE.sub(b"", body, count=1), response_headers=headers)
    if not parsed.get("version") and not parsed.entries:
        if re.search(rb"<html[\s>]", body[:4096], re.IGNORECASE):
            found = advertised_feed(body, url)
            hint = (
                f"; the page names its feed at {found}: put that URL in the config" if found else ""
            )
            raise FetchError(url, f"not a feed: an HTML page{hint}")
        reason = parsed.get("bozo_exception") or "no RSS or Atom content"
        raise FetchError(url, f"not a feed: {reason}")
    seen: set[str] = set()
    entries = []
    for raw in parsed.entries:
        entry = _entry(raw, url, now)
        if entry.key not in seen:
            seen.add(entry.key)
            entries.append(entry)
    return tuple(entries)


def author_matches(author_field: str, name: str) -> bool:
    """True when the entry's author field names this person ("A og B" names both)."""
    hay = clean_text(author_field).casefold()
    needle = re.escape(clean_text(name).casefold())
    return re.search(rf"(?<!\w){needle}(?!\w)", hay) is not None


# -- fetching --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One feed location to fetch, with the validators of its last successful fetch."""

    location: str
    etag: str | None = None
    last_modified: str | None = None

    @property
    def is_local(self) -> bool:
        return urlsplit(self.location).scheme not in ("http", "https")


def _read_local(source: Source, now: datetime) -> FeedResult:
    path = Path(source.location)
    try:
        stat = path.stat()
        stamp = f"{stat.st_mtime_ns}-{stat.st_size}"
        if source.etag == stamp:
            return FeedResult(source.location, not_modified=True, etag=stamp)
        entries = parse_feed(path.read_bytes(), path.absolute().as_uri(), now=now)
    except FileNotFoundError:
        return FeedResult(source.location, error="no such file")
    except OSError as e:
        return FeedResult(source.location, error=f"cannot read: {e.strerror}")
    except FetchError as e:
        return FeedResult(source.location, error=e.reason)
    return FeedResult(source.location, entries=entries, etag=stamp)


async def _fetch_http(client: httpx.AsyncClient, source: Source, now: datetime) -> FeedResult:
    headers = {}
    if source.etag:
        headers["If-None-Match"] = source.etag
    if source.last_modified:
        headers["If-Modified-Since"] = source.last_modified
    url = source.location
    try:
        async with (
            asyncio.timeout(FEED_DEADLINE_S),
            client.stream("GET", url, headers=headers) as r,
        ):
            moved = None
            if any(h.status_code in (301, 308) for h in r.history):
                moved = str(r.url)
            if r.status_code == 304:
                return FeedResult(url, not_modified=True, status=304, final_url=moved)
            if r.status_code >= 400:
                return FeedResult(
                    url,
                    error=f"HTTP {r.status_code} {r.reason_phrase}".strip(),
                    status=r.status_code,
                )
            body = bytearray()
            async for chunk in r.aiter_bytes():
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    return FeedResult(
                        url, error=f"larger than {MAX_BODY_BYTES // 2**20} MB", status=r.status_code
                    )
            entries = await asyncio.to_thread(
                parse_feed, bytes(body), str(r.url), r.headers.get("content-type"), now=now
            )
            return FeedResult(
                url,
                entries=entries,
                status=r.status_code,
                final_url=moved,
                etag=r.headers.get("etag"),
                last_modified=r.headers.get("last-modified"),
            )
    except TimeoutError:
        return FeedResult(url, error=f"no complete answer within {FEED_DEADLINE_S:.0f} s")
    except FetchError as e:
        return FeedResult(url, error=e.reason)
    except httpx.TooManyRedirects:
        return FeedResult(url, error="too many redirects (a loop?)")
    except httpx.TimeoutException as e:
        return FeedResult(url, error=f"timed out ({type(e).__name__})")
    except httpx.HTTPError as e:
        return FeedResult(url, error=f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)


async def fetch_all(
    sources: Iterable[Source],
    *,
    user_agent: str,
    now: datetime,
    on_result: Callable[[FeedResult], None],
) -> None:
    """Fetch every source concurrently; `on_result` is called as each one finishes."""
    limit = asyncio.Semaphore(MAX_CONCURRENT)
    timeout = httpx.Timeout(20.0, connect=10.0, pool=FEED_DEADLINE_S)
    async with httpx.AsyncClient(
        follow_redirects=True,
        max_redirects=5,
        timeout=timeout,
        headers={"User-Agent": user_agent, "Accept": ACCEPT},
    ) as client:

        async def one(source: Source) -> FeedResult:
            async with limit:
                if source.is_local:
                    return await asyncio.to_thread(_read_local, source, now)
                return await _fetch_http(client, source, now)

        for done in asyncio.as_completed([one(s) for s in sources]):
            on_result(await done)


# -- storing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subscription:
    """An ambassador's claim on a feed: which kind its items are, and whose they are."""

    ambassador: str
    kind: Kind
    author: str | None


def subscriptions(config: Config) -> dict[str, list[Subscription]]:
    """Every distinct feed location with the ambassadors who list it."""
    out: dict[str, list[Subscription]] = {}
    for amb in config.ambassador:
        for feed in amb.feeds:
            out.setdefault(config.feed_location(feed), []).append(
                Subscription(amb.id, Kind(feed.kind), feed.author)
            )
    return out


def store_result(
    store: Store, result: FeedResult, subs: list[Subscription], now: datetime
) -> FeedOutcome:
    """Store one feed's entries, credited per the subscriptions; one transaction per feed."""
    ambassadors = tuple(dict.fromkeys(s.ambassador for s in subs))
    new = 0
    with store.transaction():
        store.record_fetch(
            result.url,
            now=now,
            error=result.error,
            status=result.status,
            etag=result.etag,
            last_modified=result.last_modified,
            moved_to=result.final_url,
        )
        for entry in result.entries:
            matched = [
                s for s in subs if s.author is None or author_matches(entry.author, s.author)
            ]
            if not matched:
                continue
            kind = Kind.CHRONICLE if any(s.kind is Kind.CHRONICLE for s in matched) else Kind.BLOG
            credited = dict.fromkeys(s.ambassador for s in matched)
            new += store.store_entry(
                entry, kind=kind, feed_url=result.url, ambassadors=credited, now=now
            )
    return FeedOutcome(
        url=result.url,
        ambassadors=ambassadors,
        new_items=new,
        entries=len(result.entries),
        not_modified=result.not_modified,
        error=result.error,
        moved_to=result.final_url,
    )


def user_agent(config: Config) -> str:
    return f"trnews/{__version__} (+{config.newsletter.public_url})"


def collect(
    config: Config,
    store: Store,
    *,
    now: datetime | None = None,
    on_outcome: Callable[[FeedOutcome], None] | None = None,
) -> list[FeedOutcome]:
    """Fetch every feed of the config once and store new items; one outcome per feed."""
    now = now or datetime.now(UTC)
    subs = subscriptions(config)
    sources = []
    for location in subs:
        etag, last_modified = store.feed_validators(location)
        sources.append(Source(location, etag, last_modified))
    outcomes: list[FeedOutcome] = []

    def stored(result: FeedResult) -> None:
        outcome = store_result(store, result, subs[result.url], now)
        if outcome.ok:
            logger.info(
                "Fetched %s: %d new of %d entries%s",
                outcome.url,
                outcome.new_items,
                outcome.entries,
                " (not modified)" if outcome.not_modified else "",
            )
        else:
            logger.warning("Feed %s failed: %s", outcome.url, outcome.error)
        outcomes.append(outcome)
        if on_outcome:
            on_outcome(outcome)

    asyncio.run(fetch_all(sources, user_agent=user_agent(config), now=now, on_result=stored))
    return outcomes
