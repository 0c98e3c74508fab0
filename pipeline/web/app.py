"""What every request of the web side needs: the security headers and each page's
Content-Security-Policy, who is asking and the per-client limit, the values built on demand
(`OnDemand`), and `Core`: the config, the link secret, the templates, page rendering, the
database, health and error answers. Each area of the site (subscribe.py, unsubscribe.py,
archive.py, report.py) builds on `Core`; server.py puts them together.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import logging
import threading
import time
from base64 import b64encode
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs, urlsplit

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import tokens
from ..config import Config
from ..errors import TrnewsError
from ..models import inert
from ..store import Store
from ..templates import Escaping, environment, palette, translations

logger = logging.getLogger("pipeline.web")  # one name for the whole web side, as before
T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")

BASE_CSP = "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
SECURITY_HEADERS = {
    "Content-Security-Policy": BASE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""On every answer, unless the answer sets its own (a page's CSP with its style hashes, the
archive's Cache-Control)."""
ARCHIVE_CACHE = "public, max-age=300"
CHANGES_EVERY = 0.1
"""Seconds between two looks at whether the database has changed (`Changes`): what another
process publishes shows within about this time."""
MAX_FORM_BYTES = 8 * 1024
"""The largest form body read (the subscribe form, the desk's): more is refused unread."""
BUILDERS = 4
"""Threads that build pages on demand (the report, the archive), apart from those that serve
requests, so that a slow build never holds up a request for anything else."""


# -- the Content-Security-Policy of a page --------------------------------------------------


class _Styles(HTMLParser):
    """Collects the text of every <style> element and every style attribute of a page, as a
    browser reads them (attribute values with their character references resolved)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[str] = []
        self.attributes: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "style" and value is not None:
                self.attributes.append(value)
        if tag == "style":
            self._in_style = True
            self.elements.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.elements[-1] += data


def _sha256(text: str) -> str:
    # Browsers hash the text after normalising line ends to LF, as their parser reads it.
    digest = hashlib.sha256(text.replace("\r\n", "\n").replace("\r", "\n").encode()).digest()
    return f"'sha256-{b64encode(digest).decode()}'"


@functools.lru_cache(maxsize=256)
def content_security_policy(page: str, img_src: str = "") -> str:
    """A strict policy for `page`: nothing loads or runs but the styles it holds, each allowed
    by its hash (style attributes too, through 'unsafe-hashes': only those exact values).

    Cached by the page's text: most pages are the same for every request, and parsing an
    archived edition for its styles costs more than serving it."""
    styles = _Styles()
    styles.feed(page)
    styles.close()
    hashes = sorted({_sha256(s) for s in styles.elements})
    attribute_hashes = sorted({_sha256(s) for s in styles.attributes})
    parts = ["default-src 'none'"]
    if hashes or attribute_hashes:
        extra = ["'unsafe-hashes'", *attribute_hashes] if attribute_hashes else []
        parts.append("style-src " + " ".join([*hashes, *extra]))
    if img_src:
        parts.append(f"img-src {img_src}")
    parts += ["form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'"]
    return "; ".join(parts)


class SecurityHeaders:
    """ASGI middleware: SECURITY_HEADERS on every answer that does not set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if "set-cookie" in headers:  # nothing here ever sets one
                    del headers["set-cookie"]
            await send(message)

        await self.app(scope, receive, with_headers)


# -- who is asking ---------------------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(peer: str | None, forwarded_for: str | None, trusted: list[Network]) -> str:
    """The client a request comes from: the peer, or, when the peer is a trusted proxy, the
    nearest address in X-Forwarded-For that is not one (a client can write the header itself,
    so entries left of the first untrusted one are never believed)."""
    current = peer or "unknown"
    if not forwarded_for or not _in(current, trusted):
        return current
    for entry in reversed([e.strip() for e in forwarded_for.split(",")]):
        if not _in(entry, trusted):
            try:
                return str(ipaddress.ip_address(entry))
            except ValueError:
                return current  # garbage in the header: count the proxy's own address
        current = entry
    return current


def _in(address: str, networks: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in n for n in networks)


def client_network(address: str) -> str:
    """What the per-client limit counts as one client: an IPv4 address, or the /64 an IPv6
    address is in (a home or a phone is given a whole /64, and may use any address in it)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class ClientLimit:
    """At most `limit` events per client (`client_network`) in a sliding window of `window`
    seconds, in memory: kept in this process only, so no client address is ever written to
    disk."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.hits: dict[str, deque[float]] = {}
        self.lock = threading.Lock()

    def allow(self, client: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        client = client_network(client)
        with self.lock:
            if len(self.hits) > 10_000:  # forget clients whose window has passed
                self.hits = {c: q for c, q in self.hits.items() if q and q[-1] > now - self.window}
            seen = self.hits.setdefault(client, deque())
            while seen and seen[0] <= now - self.window:
                seen.popleft()
            if len(seen) >= self.limit:
                return False
            seen.append(now)
            return True


# -- what is computed on demand ------------------------------------------------------------


class OnDemand(Generic[K, V]):
    """Values computed on demand and kept (the open report, the archive's pages), each built
    by one computation at a time.

    A request for a value never built waits, with every other request for it, on the one
    computation (single-flight). A value older than `fresh_for` seconds is served all the same
    while one rebuild runs behind it (stale-while-revalidate); with `fresh_for` None it is kept
    as built (an archived edition never changes). A computation runs as a task of its own, so
    a client that leaves cancels nothing others wait for. None (nothing there) is never kept.
    At most `kept` values are held; the one built longest ago goes first.
    """

    def __init__(
        self,
        what: str,
        compute: Callable[[K], Awaitable[V | None]],
        *,
        fresh_for: float | None,
        kept: int = 1,
    ) -> None:
        self.what = what
        """What the values are, for the log: "the open report"."""
        self.compute = compute
        self.fresh_for = fresh_for
        self.kept = kept
        self.values: OrderedDict[K, tuple[float, V]] = OrderedDict()
        """Each value with the time.monotonic() its computation began."""
        self.running: dict[K, asyncio.Task[V | None]] = {}

    async def get(self, key: K) -> V | None:
        held = self.values.get(key)
        if held is None:
            return await asyncio.shield(self._start(key))
        began, value = held
        if self.fresh_for is not None and time.monotonic() - began >= self.fresh_for:
            self._start(key)
        return value

    def _start(self, key: K) -> asyncio.Task[V | None]:
        task = self.running.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._run(key))
            task.add_done_callback(_seen)
            self.running[key] = task
        return task

    async def _run(self, key: K) -> V | None:
        began = time.monotonic()
        try:
            value = await self.compute(key)
        except Exception as e:
            held = self.values.get(key)
            if held is None:
                raise  # to the requests waiting for it
            logger.warning(
                "%s could not be rebuilt (%s); the last one built is served meanwhile",
                self.what.capitalize(),
                e,
                exc_info=not isinstance(e, TrnewsError),
            )
            return held[1]
        finally:
            del self.running[key]
        if value is not None:
            self.values[key] = (began, value)
            self.values.move_to_end(key)
            while len(self.values) > self.kept:
                self.values.popitem(last=False)
        return value


def _seen(task: asyncio.Task[Any]) -> None:
    # Every request waiting for a failed computation may have left: its error was answered
    # (a 500) or nobody's, never "exception was never retrieved" in the log.
    if not task.cancelled():
        task.exception()


class Changes:
    """What the pages kept ready were built from, looked up on the event loop without a
    thread: each kept page is keyed by its mark (`mark`), so a page whose mark has moved is
    built again before it is served, and one whose mark has not is served as kept.

    The database is written by other processes (`trnews send` publishes an edition, `collect`
    stores items): the server notices without a restart, and without a query on every
    request. At most every `every` seconds it reads SQLite's `PRAGMA data_version` on a
    connection of its own: microseconds, from the WAL index in shared memory, and a new value
    whenever any other connection has committed. Only then is a mark asked again, on that
    connection (one small query, when a page that needs it is asked for). A stat of the
    database file would not do: in WAL mode a commit writes the -wal file only, and a
    checkpoint may leave its size and time as they were.
    """

    def __init__(self, store: Store, every: float = CHANGES_EVERY) -> None:
        self.store = store
        """A connection used only on the event loop, in autocommit: it never holds a read
        transaction (nor the WAL) open between two looks."""
        self.every = every
        self.looked = -float("inf")
        self.data_version: int | None = None
        self.generation = 0
        """Counts the changes of data_version seen."""
        self.marks: dict[str, tuple[int, Any]] = {}
        """Each mark asked for, with the generation it was asked in."""

    def mark(self, what: str, ask: Callable[[Store], Any]) -> Any:
        """The mark `ask` gives, asked again only if the database has changed since; if the
        database does not answer, the last mark (the pages built from it are served)."""
        now = time.monotonic()
        if now - self.looked >= self.every:
            self.looked = now
            try:
                version = self.store.data_version()
            except TrnewsError as e:
                logger.warning("Cannot tell whether the database has changed: %s", e)
            else:
                if version != self.data_version:
                    self.data_version = version
                    self.generation += 1
        held = self.marks.get(what)
        if held is not None and held[0] == self.generation:
            return held[1]
        try:
            value = ask(self.store)
        except TrnewsError as e:
            if held is None:
                raise
            logger.warning("Cannot tell whether %s has changed: %s", what, e)
            return held[1]
        self.marks[what] = (self.generation, value)
        return value


# -- what every request needs ------------------------------------------------------------------


class Core:
    """What every request needs: the config, the link secret, the templates, the limits."""

    def __init__(self, config: Config) -> None:
        self.config = config
        nl = config.newsletter
        self.public_url = nl.public_url
        self.base = urlsplit(nl.public_url).path.rstrip("/")
        """Links on pages are written from public_url's path, so they hold behind a proxy
        that serves trnews under a prefix."""
        self.origin = _origin(nl.public_url)
        self.t = translations(nl.language)
        self.env = environment(config, Escaping.WEB)
        self.limit = ClientLimit(config.web.client_limit, config.web.client_window_minutes * 60)
        self.trusted = [ipaddress.ip_network(n, strict=False) for n in config.web.trusted_proxies]
        self.img_src = _origin(nl.logo) if nl.logo else ""
        self.front: HTMLResponse | None = None
        self.builders = anyio.CapacityLimiter(BUILDERS)
        self.wake = threading.Event()
        """Set when a confirmation message is owed now (a sign-up), to send it at once."""
        self.stopping = threading.Event()
        self._local = threading.local()
        self.writing = threading.Lock()
        """Writes from the server's threads take turns here rather than in SQLite's busy
        handler, which sleeps in steps of milliseconds (a quarter more one-click POSTs a
        second in bench/web.py)."""
        with Store.open(config.database_path) as store:
            self.secret = tokens.link_secret(config, store)
            self.purge(store)
        self.changes = Changes(Store.open(config.database_path))
        self.common = {
            "lang": nl.language,
            "title": inert(nl.title),
            "base": self.base,
            "colours": palette(nl.accent),
            "sender_name": inert(nl.sender_name),
            "sender_address": inert(nl.sender_address),
            "postal_address": inert(nl.postal_address),
            "feed_url": f"{self.base}/archive.atom",
            "purge_days": _days(config.web.purge_pending_days),
        }

    # -- helpers ---------------------------------------------------------------------------

    def site(self, current: str = "") -> dict[str, Any]:
        """What web/nav.html shows on every public page: the site's links, with their words in
        the newsletter's language, and `current`, the key of the page they are on."""
        t = self.t
        return {
            "home": f"{self.base}/",
            "title": inert(self.config.newsletter.title),
            "label": t.gettext("The newsletter's pages"),
            "links": [
                {"key": "subscribe", "href": f"{self.base}/", "text": t.gettext("Subscribe")},
                {
                    "key": "archive",
                    "href": f"{self.base}/archive",
                    "text": t.gettext("Past editions"),
                },
                {
                    "key": "report",
                    "href": f"{self.base}/report",
                    "text": t.gettext("The ambassador plan"),
                },
                {"key": "library", "href": f"{self.base}/library", "text": t.gettext("Library")},
            ],
            "colours": self.common["colours"],
            "current": current,
        }

    def render(self, template: str, current: str = "", **values: Any) -> str:
        return self.env.get_template(f"web/{template}").render(
            {**self.common, "site": self.site(current), **values}
        )

    def page(
        self, template: str, status: int = 200, current: str = "", **values: Any
    ) -> HTMLResponse:
        page = self.render(template, current, **values)
        return HTMLResponse(
            page, status, headers={"Content-Security-Policy": content_security_policy(page)}
        )

    def message(
        self,
        title: str,
        *paragraphs: str,
        status: int = 200,
        link: tuple[str, str] | None = None,
    ) -> HTMLResponse:
        return self.page("message.html", status, page_title=title, paragraphs=paragraphs, link=link)

    def not_found(self) -> HTMLResponse:
        t = self.t
        return self.message(
            t.gettext("This link does not work"),
            t.gettext(
                "The address is not complete, or the link is no longer valid. Copy the whole "
                "link from the message, or use the link in a newer message."
            ),
            status=404,
            link=(f"{self.base}/", t.gettext("Go to the front page")),
        )

    async def db(
        self, work: Callable[[Store], T], *, limiter: anyio.CapacityLimiter | None = None
    ) -> T:
        """Run `work` in a worker thread, with that thread's own database connection; in one of
        the threads `limiter` allows, or else one of those that serve requests.

        SQLite connections are not shared between threads; each worker thread keeps one open
        rather than opening the database (and checking its migrations) for every request."""

        def run() -> T:
            store: Store | None = getattr(self._local, "store", None)
            if store is None:
                store = self._local.store = Store.open(self.config.database_path)
            return work(store)

        return await anyio.to_thread.run_sync(run, limiter=limiter)

    def purge(self, store: Store) -> None:
        days = self.config.web.purge_pending_days
        store.purge_pending(datetime.now(UTC) - timedelta(days=days))

    def cross_site(self, request: Request) -> bool:
        """True for a browser's post from another site, which none of our forms is.

        With Referrer-Policy: no-referrer a browser sends `Origin: null` from our own page, so
        Sec-Fetch-Site (sent by every current browser, whatever the referrer policy) decides
        then; a client that sends neither (curl, an old browser) is let through: the form
        sets no cookie and holds nothing a forged post could steal.
        """
        origin = request.headers.get("origin")
        if origin not in (None, "null") and origin not in (
            self.origin,
            _origin(str(request.base_url)),
        ):
            return True
        return request.headers.get("sec-fetch-site") in ("cross-site", "same-site")

    # -- health and errors -----------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        def ping() -> None:
            # A connection of its own: a kept one would still answer for a deleted file.
            with Store.open(self.config.database_path) as store:
                store.ping()

        try:
            await run_in_threadpool(ping)
        except TrnewsError as e:
            logger.warning("Health check: %s", e)
            return JSONResponse({"status": "unavailable", "database": "not answering"}, 503)
        return JSONResponse({"status": "ok", "database": "ok"})

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return self.not_found()
        return PlainTextResponse(exc.detail, exc.status_code, headers=exc.headers)

    async def client_left(self, request: Request, exc: Exception) -> Response:
        # Anyone can promise a body and leave: worth a line, not a traceback at ERROR.
        route = getattr(request.scope.get("route"), "path", "?")
        logger.info(
            "A client went away before its request was read whole (%s %s); nothing was done",
            request.method,
            route,
        )
        return Response(status_code=400)  # nobody is there to read it

    async def server_error(self, request: Request, exc: Exception) -> Response:
        # Outside the middleware: the headers go on here.
        return PlainTextResponse("Internal Server Error", 500, headers=SECURITY_HEADERS)


async def read_form(request: Request, limit: int = MAX_FORM_BYTES) -> dict[str, str] | None:
    """The fields of a urlencoded form of at most `limit` bytes, or None."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return None
    return {k: v[0] for k, v in fields.items()}


def _kept(page: tuple[str, str]) -> HTMLResponse:
    """An answer with a page kept by OnDemand: its HTML and its Content-Security-Policy."""
    html, policy = page
    return HTMLResponse(
        html, headers={"Content-Security-Policy": policy, "Cache-Control": ARCHIVE_CACHE}
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _days(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)
