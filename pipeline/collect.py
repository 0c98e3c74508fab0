"""Fetch every feed once, concurrently and politely, and store the new articles
(pipeline.fetch → parse → store).

How a feed is fetched (deadline, retries, Retry-After, the size cap, the redirect rule) is
pipeline.fetch's; what this module adds for feeds:

- At most `collect.per_host` requests are in flight to one host (host:port of the configured
  URL) and `collect.concurrency` in all.
- A 410 Gone marks the feed gone: it is not fetched again (unless `collect --retry-gone`).
- Parsing runs off the event loop, after the feed's connection slots are released.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from . import egress, library, redact
from .config import CollectConfig, Config
from .errors import FetchError
from .fetch import ACCEPT_ENCODING, Body, Source, fetch_http, host_clients, host_of, user_agent
from .models import FeedOutcome, FeedResult, Kind
from .store import FeedHealth, Store

logger = logging.getLogger(__name__)

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/rdf+xml;q=0.9, application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.9, "
    "*/*;q=0.1"
)
"""RSS, Atom and JSON Feed first; the generic XML and JSON types a feed may be served as next."""


# -- fetching --------------------------------------------------------------------------------


def _read_local(source: Source, now: datetime) -> FeedResult:
    path = Path(source.location)
    try:
        stat = path.stat()
        stamp = f"{stat.st_mtime_ns}-{stat.st_size}"
        if source.etag == stamp:
            return FeedResult(source.location, not_modified=True, etag=stamp)
        from .parse import parse_feed

        entries = parse_feed(path.read_bytes(), path.absolute().as_uri(), now=now)
    except FileNotFoundError:
        return FeedResult(source.location, error="no such file")
    except OSError as e:
        return FeedResult(source.location, error=f"cannot read: {e.strerror}")
    except FetchError as e:
        return FeedResult(source.location, error=e.reason)
    return FeedResult(source.location, entries=entries, etag=stamp)


async def _parse(url: str, body: Body, now: datetime) -> FeedResult:
    from .parse import parse_async

    try:
        entries = await parse_async(body.data, body.base, body.content_type, now=now)
    except FetchError as e:
        reason, advertised = e.reason, e.advertised
        refused = await egress.refusal(advertised, url) if advertised else None
        if advertised and refused:
            # An admin told "put that URL in the config" would make trnews fetch it wherever
            # it points: a page must not lead them to a non-public address.
            where = redact.url(advertised)
            reason = f"not a feed: an HTML page naming a feed at {where}, not suggested: {refused}"
            advertised = None
        return FeedResult(
            url,
            error=reason,
            status=body.status,
            final_url=body.moved_to,
            attempts=body.attempts,
            advertised=advertised,
        )
    return FeedResult(
        url,
        entries=entries,
        status=body.status,
        final_url=body.moved_to,
        etag=body.etag,
        last_modified=body.last_modified,
        attempts=body.attempts,
    )


async def fetch_all(
    sources: Iterable[Source],
    settings: CollectConfig,
    *,
    user_agent: str,
    now: datetime,
    on_result: Callable[[FeedResult], None],
    stop: threading.Event | None = None,
) -> None:
    """Fetch every source concurrently; `on_result` is called as each one finishes. Setting
    `stop` ends the run soon after, leaving the feeds not yet done for the next one."""
    sources = list(sources)
    in_flight = asyncio.Semaphore(settings.concurrency)
    hosts: dict[str, asyncio.Semaphore] = {}
    headers = {"User-Agent": user_agent, "Accept": ACCEPT, "Accept-Encoding": ACCEPT_ENCODING}
    async with host_clients(settings, headers) as client_for:

        async def one(source: Source) -> FeedResult:
            try:
                if source.is_local:
                    async with in_flight:
                        return await asyncio.to_thread(_read_local, source, now)
                # The host's slot first: a feed waiting for a busy host holds no global slot.
                name = host_of(source.location)
                host = hosts.setdefault(name, asyncio.Semaphore(settings.per_host))
                async with host, in_flight:
                    got = await fetch_http(client_for(source.location), source, settings)
                if isinstance(got, FeedResult):
                    return got
                # Workers start with the first body, while it parses in a thread: a run of
                # 304s (nothing to parse) starts none, nor loads the parsers (feedparser and
                # ours), which load while the first requests are on their way.
                from .parse import start_workers

                start_workers(len(sources))
                return await _parse(source.location, got, now)
            except Exception as e:  # a bug met on one feed must not stop the others
                logger.debug("Unexpected error on %s", source.location, exc_info=True)
                return FeedResult(
                    source.location,
                    error=f"unexpected error ({type(e).__name__}: {e}); please report it",
                )

        tasks = [asyncio.create_task(one(s)) for s in sources]
        # A feed without validators answers with a body: when many will, the workers start
        # now, behind the first requests, and are up when the bodies arrive.
        bodies = sum(1 for s in sources if not (s.is_local or s.etag or s.last_modified))
        if bodies > EARLY_WORKERS:
            from .parse import start_workers

            asyncio.get_running_loop().call_soon(start_workers, bodies)
        watcher = asyncio.create_task(_cancel_on(stop, tasks)) if stop is not None else None
        try:
            for done in asyncio.as_completed(tasks):
                try:
                    result = await done
                except asyncio.CancelledError:
                    if stop is not None and stop.is_set():
                        break  # stopped: the feeds not yet done are left for the next run
                    raise
                on_result(result)
        finally:
            for t in (*tasks, *([watcher] if watcher else [])):
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


EARLY_WORKERS = 16
"""Feeds without validators (each answers with a body) above which a run starts its parse
workers with its requests rather than with its first body: a first run of 120 feeds from 30
hosts took 1.4 s instead of 2.2 (bench/collect.py --processes), its bodies parsed in the
workers instead of in threads that hold the interpreter lock. Below it, loading the parsers
before the first request would cost more than it saves."""


async def _cancel_on(stop: threading.Event, tasks: list[asyncio.Task[FeedResult]]) -> None:
    """Cancel `tasks` soon after `stop` is set (SIGTERM): a feed's deadline can be 30 s."""
    while not stop.is_set():
        await asyncio.sleep(STOP_POLL)
    for t in tasks:
        t.cancel()


STOP_POLL = 0.1
"""Seconds between looks at the stop flag while feeds are fetched."""


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


def _matched(subs: list[Subscription], author: str) -> list[Subscription]:
    """The subscriptions an entry by `author` belongs to (the parsers are loaded by now: the
    entry came from them)."""
    from .parse import author_matches

    return [s for s in subs if s.author is None or author_matches(author, s.author)]


def store_result(
    store: Store, result: FeedResult, subs: list[Subscription], now: datetime
) -> FeedOutcome:
    """Store one feed's entries, credited per the subscriptions; one transaction per feed."""
    ambassadors = tuple(dict.fromkeys(s.ambassador for s in subs))
    new = 0
    gone_since = None
    with store.transaction():
        store.record_fetch(
            result.url,
            now=now,
            error=result.error,
            status=result.status,
            etag=result.etag,
            last_modified=result.last_modified,
            moved_to=result.final_url,
            retry_after=result.retry_after,
        )
        if result.status == 410:
            health = store.feed(result.url)
            gone_since = health.gone_since if health else now
        for entry in result.entries:
            matched = _matched(subs, entry.author)
            if not matched:
                continue
            kind = max((s.kind for s in matched), key=lambda k: k.rank)
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
        status=result.status,
        attempts=result.attempts,
        gone_since=gone_since,
        wait_until=result.retry_after,
    )


def not_fetched(
    health: FeedHealth | None, subs: list[Subscription], now: datetime, *, retry_gone: bool
) -> FeedOutcome | None:
    """The outcome of a feed left alone this run (gone, or asked to wait), else None."""
    if health is None:
        return None
    ambassadors = tuple(dict.fromkeys(s.ambassador for s in subs))
    if health.gone_since is not None and not retry_gone:
        return FeedOutcome(
            health.url,
            ambassadors,
            error="HTTP 410 Gone",
            status=410,
            gone_since=health.gone_since,
            skipped=True,
        )
    if health.retry_after is not None and health.retry_after > now:
        return FeedOutcome(
            health.url,
            ambassadors,
            error=health.last_error,
            status=health.last_status,
            wait_until=health.retry_after,
            skipped=True,
        )
    return None


def collect(
    config: Config,
    store: Store,
    *,
    now: datetime | None = None,
    on_outcome: Callable[[FeedOutcome], None] | None = None,
    retry_gone: bool = False,
    stop: threading.Event | None = None,
) -> list[FeedOutcome]:
    """Fetch every feed of the config once and store new items; one outcome per feed.

    A feed marked gone (410) is not fetched unless `retry_gone`; one whose server asked to
    wait (Retry-After) is not fetched before that time. Both still get an outcome. Setting
    `stop` (SIGTERM) ends the run within a fraction of a second: the feeds already stored
    stay stored, the others get no outcome and are fetched by the next run. The items stored
    are then tagged with their messages (pipeline.library).
    """
    now = now or datetime.now(UTC)
    subs = subscriptions(config)
    health = store.feed_health()
    outcomes: list[FeedOutcome] = []

    def report(outcome: FeedOutcome) -> None:
        state = outcome.state
        if state in ("ok", "not modified"):
            logger.info(
                "Fetched %s: %d new of %d entries%s",
                outcome.url,
                outcome.new_items,
                outcome.entries,
                " (not modified)" if outcome.not_modified else "",
            )
        elif outcome.skipped:
            logger.info("Not fetching %s: %s (%s)", outcome.url, state, outcome.error)
        else:
            logger.warning("Feed %s failed: %s", outcome.url, outcome.error)
        outcomes.append(outcome)
        if on_outcome:
            on_outcome(outcome)

    sources = []
    for location, feed_subs in subs.items():
        h = health.get(location)
        skipped = not_fetched(h, feed_subs, now, retry_gone=retry_gone)
        if skipped is not None:
            report(skipped)
        else:
            sources.append(Source(location, h.etag if h else None, h.last_modified if h else None))

    def stored(result: FeedResult) -> None:
        report(store_result(store, result, subs[result.url], now))

    asyncio.run(
        fetch_all(
            sources,
            config.collect,
            user_agent=user_agent(config),
            now=now,
            on_result=stored,
            stop=stop,
        )
    )
    library.tag(store, config)  # the messages of the items just stored, for the library
    return outcomes
