"""Polite HTTP: how trnews fetches anything from the web (feeds, calendars, and the
indicator sources to come), and what a remote host can and cannot make it do.

- Each configured URL's host:port has an httpx client of its own that keeps its connections
  alive and reuses them (`host_clients`).
- A redirect to another host:port is followed only to a public address (pipeline.egress): a
  document cannot make trnews fetch, and publish, what only this machine or its network can
  reach.
- Each URL has one deadline (`collect.timeout`) covering its connects, redirects, retries,
  waits and every byte of its body, so a server that hangs or drips cannot stall the run.
- The body is decompressed here (gzip, deflate, brotli), never past `collect.max_size_mb`:
  a compression bomb stops at the cap instead of filling memory.
- Connection errors, 408, 429 and 5xx answers (500, 502, 503, 504) are tried again up to
  `collect.retries` times, after 0.5 s, 1 s, … (with jitter), within the deadline. A 429 or 503
  with a Retry-After that fits in the deadline (and is at most WAIT_IN_RUN) is waited out; a
  longer one is recorded, and the URL is not asked again before then.

The feed collector (pipeline.collect) adds what is particular to feeds: the per-host and
overall limits on requests in flight, parsing, and storing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import ssl
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Protocol
from urllib.parse import urlsplit

import brotli  # type: ignore[import-untyped]
import httpx

from . import __version__, egress, redact
from .config import CollectConfig, Config
from .errors import FetchError
from .models import FeedResult
from .sanitize import one_line

logger = logging.getLogger(__name__)

ACCEPT_ENCODING = "gzip, deflate, br"
"""Exactly the codings `_decoder` can decompress under the size cap."""

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""Answers worth asking again within the run; any other 4xx says the request itself is wrong."""
BACKOFF = 0.5
"""Seconds before the first retry; each next one waits twice as long, give or take a quarter."""
WAIT_IN_RUN = 10.0
"""A Retry-After at most this many seconds, that fits in the feed's deadline, is waited out."""
WAIT_AT_MOST = timedelta(days=1)
"""A longer Retry-After is cut to this: no answer can silence a feed for longer."""
CONNECT_TIMEOUT = 10.0
"""Seconds to wait for a connection (within the feed's deadline)."""
READ_TIMEOUT = 20.0
"""Seconds a server may stay silent mid-answer (within the feed's deadline)."""
SPARE = 1.0
"""Seconds of the deadline a retry must leave for the request itself, or it is not worth it."""
MAX_REDIRECTS = 5
"""Redirects followed for one request: a longer chain is a loop, or a trap."""


@dataclass(frozen=True)
class Source:
    """One feed location to fetch, with the validators of its last successful fetch."""

    location: str
    etag: str | None = None
    last_modified: str | None = None

    @property
    def is_local(self) -> bool:
        return urlsplit(self.location).scheme not in ("http", "https")


def _size(n: int) -> str:
    for unit, scale in (("MB", 2**20), ("KB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def host_of(url: str) -> str:
    """`host:port` of a URL: what the per-host limit counts (many feeds share one host)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # a port out of range: the request fails, whatever slot it waits for
        port = None
    port = port or (443 if parts.scheme.lower() == "https" else 80)
    return f"{(parts.hostname or '').lower()}:{port}"


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


def retry_after(value: str | None, now: datetime) -> datetime | None:
    """When a Retry-After header (seconds, or an HTTP date) asks us to come back; None if it
    is missing or unreadable. Never earlier than `now`, never later than WAIT_AT_MOST."""
    if not value:
        return None
    value = value.strip()
    latest = now + WAIT_AT_MOST
    if value.isascii() and value.isdigit():
        seconds = int(value) if len(value) <= 9 else None
        return latest if seconds is None else min(now + timedelta(seconds=seconds), latest)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT; "-0000" parses as naive
        when = when.replace(tzinfo=UTC)
    return min(max(when, now), latest)


def _os_reason(exc: BaseException | None) -> str | None:
    """The operating system's words ("Connection refused") deepest in an exception chain, or
    what TLS said."""
    reason = None
    for _ in range(10):
        if exc is None:
            break
        if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
            continue
        if isinstance(exc, ssl.SSLCertVerificationError):
            # An OSError whose errno is OpenSSL's, not the system's (1 would read "Operation
            # not permitted").
            return f"the certificate is not trusted ({exc.verify_message})"
        if isinstance(exc, ssl.SSLError):
            return f"TLS failed ({exc.reason or exc})"
        if isinstance(exc, OSError) and isinstance(exc.errno, int) and exc.errno > 0:
            reason = os.strerror(exc.errno)  # asyncio's own strerror is "Connect call failed …"
        elif isinstance(exc, OSError) and exc.strerror:
            reason = exc.strerror  # e.g. a resolver error, whose errno is negative
        exc = exc.__cause__ or exc.__context__
    return reason


# -- the body, decompressed under the cap ----------------------------------------------------


class _Decoder(Protocol):
    def decode(self, data: bytes, limit: int) -> bytes:
        """Decompress `data`, stopping soon after `limit` bytes of output (the cap's rest)."""
        ...


class _Identity:
    def decode(self, data: bytes, limit: int) -> bytes:
        return data


class _Inflate:
    """gzip, or deflate in either of the forms servers send (zlib-wrapped or raw)."""

    def __init__(self, *, gzip: bool) -> None:
        self.gzip = gzip
        self.started = False
        self.inflater = zlib.decompressobj(zlib.MAX_WBITS | 16 if gzip else zlib.MAX_WBITS)

    def decode(self, data: bytes, limit: int) -> bytes:
        if not data:
            return b""
        try:
            out = self.inflater.decompress(data, limit)
        except zlib.error:
            if self.gzip or self.started:
                raise
            self.inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            out = self.inflater.decompress(data, limit)
        self.started = True
        return out


class _Brotli:
    def __init__(self) -> None:
        self.decompressor = brotli.Decompressor()

    def decode(self, data: bytes, limit: int) -> bytes:
        out: bytes = self.decompressor.process(data, output_buffer_limit=limit)
        # Output held back by the limit must be drained before more input is accepted.
        while len(out) < limit and not self.decompressor.can_accept_more_data():
            out += self.decompressor.process(b"", output_buffer_limit=limit - len(out))
        return out


def _decoder(url: str, content_encoding: str) -> _Decoder:
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return _Identity()
    if codings in (["gzip"], ["x-gzip"]):
        return _Inflate(gzip=True)
    if codings == ["deflate"]:
        return _Inflate(gzip=False)
    if codings == ["br"]:
        return _Brotli()
    raise FetchError(url, f"compressed as {content_encoding!r}, which trnews did not ask for")


async def _read_body(url: str, response: httpx.Response, cap: int) -> bytes:
    """The whole body, decompressed; FetchError once it grows past `cap` bytes.

    httpx would decompress each network chunk whole, and 64 KB of brotli can hold gigabytes,
    so decompression happens here with a bound on its output.
    """
    decoder = _decoder(url, response.headers.get("content-encoding", ""))
    body = bytearray()
    try:
        async for chunk in response.aiter_raw():
            body += decoder.decode(chunk, cap - len(body) + 1)
            if len(body) > cap:
                raise FetchError(url, f"larger than {_size(cap)}: not read further")
    except (zlib.error, brotli.error) as e:
        raise FetchError(url, f"the compressed answer is corrupt ({e})") from e
    return bytes(body)


# -- one feed: requests, retries, the deadline --------------------------------------------------


@dataclass(frozen=True)
class Body:
    """A feed's answer, read in full; parsed once the feed's connection slots are free."""

    data: bytes
    base: str
    """The final URL after redirects: relative links resolve against it."""
    content_type: str | None
    status: int
    etag: str | None
    last_modified: str | None
    moved_to: str | None
    attempts: int = 1


@dataclass(frozen=True)
class _Try:
    """What one request gave, and whether another request within the run may do better."""

    got: Body | FeedResult
    retry: bool = False
    wait_until: datetime | None = None
    """The answer's Retry-After, for a 429 or 503."""


async def _request(client: httpx.AsyncClient, source: Source, cap: int) -> _Try:
    """One GET of the feed (redirects followed), conditional on what the last fetch gave."""
    url = source.location
    headers = {}
    if source.etag:
        headers["If-None-Match"] = source.etag
    if source.last_modified:
        headers["If-Modified-Since"] = source.last_modified
    try:
        async with client.stream("GET", url, headers=headers) as r:
            moved = moved_to(r)
            if r.status_code == 304:
                return _Try(FeedResult(url, not_modified=True, status=304, final_url=moved))
            if r.status_code >= 400:
                # the reason phrase is the server's own words: made safe for status and logs
                error = one_line(f"HTTP {r.status_code} {r.reason_phrase}")
                wait = None
                if r.status_code in (429, 503):
                    wait = retry_after(r.headers.get("retry-after"), datetime.now(UTC))
                return _Try(
                    FeedResult(url, error=error, status=r.status_code),
                    retry=r.status_code in RETRY_STATUSES,
                    wait_until=wait,
                )
            try:
                data = await _read_body(url, r, cap)
            except FetchError as e:
                return _Try(FeedResult(url, error=e.reason, status=r.status_code))
            return _Try(
                Body(
                    data=data,
                    base=str(r.url),
                    content_type=r.headers.get("content-type"),
                    status=r.status_code,
                    etag=r.headers.get("etag"),
                    last_modified=r.headers.get("last-modified"),
                    moved_to=moved,
                )
            )
    except httpx.TooManyRedirects:
        return _Try(FeedResult(url, error="too many redirects (a loop?)"))
    except egress.NotPublic as e:
        where = redact.url(str(e.request.url))
        return _Try(FeedResult(url, error=f"redirected to {where}: not followed, as {e}"))
    except httpx.ConnectError as e:
        reason = _os_reason(e) or str(e) or "no connection"
        return _Try(FeedResult(url, error=f"cannot connect: {reason}"), retry=True)
    except httpx.ConnectTimeout:
        error = f"cannot connect: no answer within {CONNECT_TIMEOUT:g} s"
        return _Try(FeedResult(url, error=error), retry=True)
    except httpx.ReadTimeout:
        return _Try(FeedResult(url, error=f"the server sent nothing for {READ_TIMEOUT:g} s"))
    except (httpx.NetworkError, httpx.RemoteProtocolError) as e:
        # A connection dropped mid-answer (or a kept-alive one the server had closed): worth
        # another try.
        reason = _os_reason(e) or str(e).rstrip(".") or "closed by the server"
        return _Try(FeedResult(url, error=f"connection broken: {reason}"), retry=True)
    except httpx.HTTPError as e:
        return _Try(FeedResult(url, error=str(e) or type(e).__name__))


def _pause(t: _Try, tries: int, settings: CollectConfig, left: float) -> float | None:
    """Seconds to wait before trying again, or None when this answer is final."""
    if not t.retry or tries > settings.retries:
        return None
    if t.wait_until is not None:
        wait = max(0.0, (t.wait_until - datetime.now(UTC)).total_seconds())
        return wait if wait <= WAIT_IN_RUN and wait + SPARE <= left else None
    delay = BACKOFF * 2 ** (tries - 1) * random.uniform(0.75, 1.25)
    return delay if delay + SPARE <= left else None


async def fetch_http(
    client: httpx.AsyncClient, source: Source, settings: CollectConfig
) -> Body | FeedResult:
    """The feed's body, or why there is none, after at most `retries` retries, all within the
    feed's deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.timeout
    tries = 0
    try:
        async with asyncio.timeout_at(deadline):
            while True:
                tries += 1
                t = await _request(client, source, settings.max_bytes)
                pause = _pause(t, tries, settings, deadline - loop.time())
                if pause is None:
                    break
                logger.info("Retrying %s in %.1f s: %s", source.location, pause, _why(t))
                await asyncio.sleep(pause)
    except TimeoutError:
        error = f"no complete answer within {settings.timeout:g} s"
        return FeedResult(source.location, error=error, attempts=tries)
    if isinstance(t.got, Body):
        return replace(t.got, attempts=tries)
    return replace(t.got, attempts=tries, retry_after=t.wait_until)


def _why(t: _Try) -> str:
    return (t.got.error or "") if isinstance(t.got, FeedResult) else f"HTTP {t.got.status}"


@contextlib.asynccontextmanager
async def host_clients(
    settings: CollectConfig, headers: dict[str, str]
) -> AsyncIterator[Callable[[str], httpx.AsyncClient]]:
    """`client_for(url)`: the httpx client of a configured URL's host:port, one per host:port,
    made when first needed and closed on the way out.

    Each follows redirects to its own host:port, where the admin pointed it, and elsewhere to
    public addresses only (pipeline.egress). A client per host also keeps httpcore's pool
    cheap: it looks at each of its connections for every request it places, and one pool for
    hundreds of hosts made that a third of a 200-feed run (bench/collect.py --profile).
    """
    timeout = httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT, pool=settings.timeout)
    # The callers' semaphores bound the connections; a pool only keeps the idle ones for reuse.
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=settings.per_host)
    tls: ssl.SSLContext | None = None  # one for every client
    clients: dict[str, httpx.AsyncClient] = {}
    async with contextlib.AsyncExitStack() as stack:

        def client_for(url: str) -> httpx.AsyncClient:
            nonlocal tls
            name = host_of(url)
            if name not in clients:
                tls = tls or egress.tls_context()
                clients[name] = egress.client(
                    url,
                    tls=tls,
                    limits=limits,
                    timeout=timeout,
                    headers=headers,
                    max_redirects=MAX_REDIRECTS,
                )
                stack.push_async_callback(clients[name].aclose)
            return clients[name]

        yield client_for


async def fetch_documents(
    urls: list[str], settings: CollectConfig, *, user_agent: str, accept: str
) -> list[bytes | str]:
    """Other documents (calendars) fetched with a feed's care: the same deadline, retries,
    size cap, decompression and redirect rule. Each URL's bytes, or why it could not be had,
    in order."""
    headers = {"User-Agent": user_agent, "Accept": accept, "Accept-Encoding": ACCEPT_ENCODING}
    async with host_clients(settings, headers) as client_for:

        async def one(url: str) -> bytes | str:
            try:
                got = await fetch_http(client_for(url), Source(url), settings)
            except Exception as e:  # a bug met on one document must not stop the others
                logger.debug("Unexpected error on %s", url, exc_info=True)
                return f"unexpected error ({type(e).__name__}: {e}); please report it"
            if isinstance(got, Body):
                return got.data
            tried = f" (tried {got.attempts} times)" if got.attempts > 1 else ""
            return f"{got.error or 'no answer'}{tried}"

        return list(await asyncio.gather(*(one(u) for u in urls)))


def user_agent(config: Config) -> str:
    return f"trnews/{__version__} (+{config.newsletter.public_url})"
