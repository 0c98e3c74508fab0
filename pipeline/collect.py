"""Fetch every feed once, concurrently, and store the new articles (httpx → parse → store)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from . import __version__
from .config import CollectConfig, Config
from .errors import FetchError
from .models import FeedOutcome, FeedResult, Kind
from .parse import author_matches, parse_async, parse_feed
from .store import Store

logger = logging.getLogger(__name__)

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1"
)


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


def _size(n: int) -> str:
    for unit, scale in (("MB", 2**20), ("KB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def moved_to(response: httpx.Response) -> str | None:
    """Where a permanent redirect of the requested URL points, or None.

    Only an unbroken run of 301/308 from the first answer moves the feed; a temporary hop ends
    it, since the URL before that hop is where the feed lives for now.
    """
    hops = [*response.history, response]
    moved = None
    for hop, following in itertools.pairwise(hops):
        if hop.status_code not in (301, 308):
            break
        moved = str(following.url)
    return moved


def _os_reason(exc: BaseException | None) -> str | None:
    """The operating system's words ("Connection refused") deepest in an exception chain."""
    reason = None
    for _ in range(10):
        if exc is None:
            break
        if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
            continue
        if isinstance(exc, OSError) and isinstance(exc.errno, int) and exc.errno > 0:
            reason = os.strerror(exc.errno)  # asyncio's own strerror is "Connect call failed …"
        elif isinstance(exc, OSError) and exc.strerror:
            reason = exc.strerror  # e.g. a resolver error, whose errno is negative
        exc = exc.__cause__ or exc.__context__
    return reason


async def _fetch_http(
    client: httpx.AsyncClient, source: Source, settings: CollectConfig, now: datetime
) -> FeedResult:
    headers = {}
    if source.etag:
        headers["If-None-Match"] = source.etag
    if source.last_modified:
        headers["If-Modified-Since"] = source.last_modified
    url = source.location
    try:
        async with (
            asyncio.timeout(settings.timeout),
            client.stream("GET", url, headers=headers) as r,
        ):
            moved = moved_to(r)
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
                if len(body) > settings.max_bytes:
                    return FeedResult(
                        url,
                        error=f"larger than {_size(settings.max_bytes)}: not read further",
                        status=r.status_code,
                    )
            entries = await parse_async(
                bytes(body), str(r.url), r.headers.get("content-type"), now=now
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
        return FeedResult(url, error=f"no complete answer within {settings.timeout:g} s")
    except FetchError as e:
        return FeedResult(url, error=e.reason)
    except httpx.TooManyRedirects:
        return FeedResult(url, error="too many redirects (a loop?)")
    except httpx.TimeoutException as e:
        return FeedResult(url, error=f"timed out ({type(e).__name__})")
    except httpx.ConnectError as e:
        reason = _os_reason(e) or str(e) or type(e).__name__
        return FeedResult(url, error=f"cannot connect: {reason}")
    except httpx.HTTPError as e:
        return FeedResult(url, error=f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)


async def fetch_all(
    sources: Iterable[Source],
    settings: CollectConfig,
    *,
    user_agent: str,
    now: datetime,
    on_result: Callable[[FeedResult], None],
) -> None:
    """Fetch every source concurrently; `on_result` is called as each one finishes."""
    limit = asyncio.Semaphore(settings.concurrency)
    timeout = httpx.Timeout(20.0, connect=10.0, pool=settings.timeout)
    async with httpx.AsyncClient(
        follow_redirects=True,
        max_redirects=5,
        timeout=timeout,
        headers={"User-Agent": user_agent, "Accept": ACCEPT},
    ) as client:

        async def one(source: Source) -> FeedResult:
            async with limit:
                try:
                    if source.is_local:
                        return await asyncio.to_thread(_read_local, source, now)
                    return await _fetch_http(client, source, settings, now)
                except Exception as e:  # a bug met on one feed must not stop the others
                    logger.debug("Unexpected error on %s", source.location, exc_info=True)
                    return FeedResult(
                        source.location,
                        error=f"unexpected error ({type(e).__name__}: {e}); please report it",
                    )

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

    asyncio.run(
        fetch_all(sources, config.collect, user_agent=user_agent(config), now=now, on_result=stored)
    )
    return outcomes
