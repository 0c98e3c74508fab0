"""The subscriber's side on the web (`trnews serve`): SPEC.md "The web side".

Routes, relative to newsletter.public_url:

    GET  /                     the subscribe form (e-mail, optional name, consent checkbox)
    POST /subscribe            a sign-up: the same answer whatever the address
    GET  /confirm/{token}      follows the confirmation message's link: the reader is active
    GET  /unsubscribe/{token}  a page with a button; a GET never unsubscribes
    POST /unsubscribe/{token}  unsubscribes at once (RFC 8058 one-click too): 200, no redirect
    GET  /unsubscribe          "use the link in your message" (an admin's template may put
                               the unsubscribe link outside the footer an archived copy drops)
    GET  /archive              the editions readers have, newest first
    GET  /archive/{id}         one edition as sent, with nothing personal in it: the site's
                               navigation on top, a visitor's footer in place of the reader's
    GET  /archive.atom         the same as an Atom feed
    GET  /report               the open report (pipeline/report.py's HTML page), with the
                               site's navigation as on every public page (web/nav.html)
    GET  /healthz              200 and a small JSON body while the database answers, else 503

How it keeps people safe:
- Double opt-in: a sign-up is `pending` until its link is followed; the link is signed with
  the secret and a nonce of that sign-up, so it confirms that sign-up (its name, its consent)
  and nothing a later one said. At most one confirmation message per mailbox per hour (however
  the address is spelt: store.mailbox), and at most `[web] client_limit` sign-ups per client
  (an IPv4 address or an IPv6 /64) per `client_window_minutes`, so the form cannot be used to
  flood someone's inbox. The message is sent after the answer, which never waits for the mail
  server, and the answer's words are the same for every address: it does not tell whether an
  address is subscribed. A message the server does not take stays owed in the database and
  is tried again (CONFIRM_RETRY_DELAYS, then at each start and by the scheduler); the admins
  hear of an outage once (alerts.confirmations_unsent).
- A token that is malformed, forged, names no one or is spelt otherwise than it was made gets
  404 and changes nothing; so does an id of more than 18 digits.
- Every answer carries a strict Content-Security-Policy (`default-src 'none'`, styles only by
  the hash of each style the page holds, `form-action 'self'`, `frame-ancestors 'none'`,
  `base-uri 'none'`), `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer` and
  `X-Frame-Options: DENY`. No page has a script; no answer sets a cookie.
- POST /subscribe refuses a browser's cross-site post (its Origin names another site, or its
  Sec-Fetch-Site says cross-site); a post that says neither is accepted, and the one-click
  unsubscribe never asks for either (mail providers send none).

What it computes on demand (the open report, the archive's list, Atom feed and editions) is
built by one request at a time and kept (`OnDemand`): the others wait for that build, or get
the last page built while it runs, and builds run on threads of their own (`BUILDERS`), so a
report waiting on a slow calendar never holds up the other routes. A client that leaves in the
middle of its request is one INFO line.

Each worker thread keeps its own database connection (SQLite connections are not shared
between threads); the config is read once, at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import ipaddress
import logging
import signal
import threading
import time
from base64 import b64encode
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape, quoteattr

import anyio
from babel.dates import format_date
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import alerts, tokens
from .config import Config, check_address, load_config
from .deliver import notify, wire_address
from .errors import RecipientRefused, TrnewsError, UsageError
from .models import SubscriberState, inert
from .render import archived_copy, personalise
from .sanitize import one_line
from .store import Confirmation, ConsentText, Store
from .templates import Escaping, environment, palette, translations

logger = logging.getLogger(__name__)
T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")

FORM = "web:/"
"""The form a consent record names: the subscribe page at the root of public_url."""
RESEND_AFTER = timedelta(hours=1)
"""At most one confirmation message per mailbox (store.mailbox) in this time."""
CONFIRM_RETRY_DELAYS = (5.0, 20.0, 60.0, 120.0, 300.0)
"""Seconds before each new try of a confirmation message that could not go (the mail server
down, a 4xx reply): six tries over about eight minutes; after those, the next when `serve`
starts again or the scheduler collects (`send_owed_confirmations`)."""
CONFIRM_ALERT_AFTER = 2
"""Failed tries of one confirmation message before the admins are alerted: a mail server that
is down for a moment is no outage."""
CONFIRM_POLL = 2.0
"""Seconds between looks for confirmation messages whose next try is due."""
STALE = timedelta(minutes=15)
"""How long a confirmation owed waits before the scheduler tries it: a running `serve` has
tried it by then (its longest wait is five minutes)."""
MAX_FORM_BYTES = 8 * 1024
MAX_NAME = 100

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
ARCHIVE_KEPT = 64
"""Archived editions kept ready to serve, in memory."""
ARCHIVE_FRESH = 60.0
"""Seconds the archive's list and Atom feed are served as built before one rebuild: an edition
sent since shows within about this time."""
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


# -- the application -------------------------------------------------------------------------


class Web:
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
        self.report_page = OnDemand(
            "the open report", self._report, fresh_for=config.web.report_cache_minutes * 60
        )
        self.archive_page = OnDemand("the archive", self._archive, fresh_for=ARCHIVE_FRESH)
        self.atom_feed = OnDemand("the archive's feed", self._atom, fresh_for=ARCHIVE_FRESH)
        self.archived = OnDemand(
            "an archived edition", self._edition, fresh_for=None, kept=ARCHIVE_KEPT
        )
        """Archived editions as served (their HTML and CSP), by id: frozen, so kept."""
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

    def consent(self) -> ConsentText:
        nl = self.config.newsletter
        text = self.config.web.consent_text or self.t.gettext(
            "I want to receive %(title)s by e-mail, and agree that %(sender)s keeps my address "
            "and name to send it to me until I unsubscribe."
        ) % {"title": nl.title, "sender": nl.sender_name}
        return ConsentText(self.config.web.consent_version, text, nl.language)

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

    # -- the subscribe form ----------------------------------------------------------------

    def form(
        self, status: int = 200, *, error: str = "", email: str = "", name: str = ""
    ) -> HTMLResponse:
        consent = self.consent()
        return self.page(
            "subscribe.html",
            status,
            current="subscribe",
            page_title=self.t.gettext("Subscribe"),
            consent_text=consent.text,
            consent_version=consent.version,
            error=error,
            email=email,
            name=name,
        )

    async def home(self, request: Request) -> Response:
        if self.front is None:  # the same page for everyone: rendered once
            self.front = self.form()
        return HTMLResponse(self.front.body, headers=dict(self.front.headers))

    def cross_site(self, request: Request) -> bool:
        """True for a browser's post from another site, which the form never is.

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

    async def subscribe(self, request: Request) -> Response:
        t = self.t
        if self.cross_site(request):
            return self.message(
                t.gettext("Sign up on our own page"),
                t.gettext("This form can only be sent from the newsletter's own page."),
                status=403,
                link=(f"{self.base}/", t.gettext("Go to the front page")),
            )
        client = client_address(
            request.client.host if request.client else None,
            request.headers.get("x-forwarded-for"),
            self.trusted,
        )
        if not self.limit.allow(client):
            minutes = _days(self.config.web.client_window_minutes)
            return self.message(
                t.gettext("Too many sign-ups"),
                t.gettext(
                    "Too many sign-ups have come from your network. Try again in %(minutes)s "
                    "minutes."
                )
                % {"minutes": minutes},
                status=429,
                link=(f"{self.base}/", t.gettext("Go to the front page")),
            )
        fields = await _read_form(request)
        if fields is None:
            return self.form(400, error=t.gettext("The form could not be read. Try again."))
        raw_email = fields.get("email", "")[:320]
        name = inert(one_line(fields.get("name", "")))[:MAX_NAME]
        try:
            address = check_address(raw_email)
        except UsageError:
            error = t.gettext("Write a whole e-mail address, like kari@example.org.")
            return self.form(400, error=error, email=raw_email, name=name)
        if not fields.get("consent"):
            error = t.gettext("Tick the box to agree, or we cannot send you the newsletter.")
            return self.form(400, error=error, email=address, name=name)
        consent = self.consent()

        def sign_up(store: Store) -> Confirmation | None:
            self.purge(store)
            return store.sign_up(
                address,
                name,
                consent,
                form=FORM,
                now=datetime.now(UTC),
                resend_after=RESEND_AFTER,
            )

        confirmation = await self.db(sign_up)
        # Sent by the thread of `send_confirmations`, after the answer: never waits on the
        # mail server, and tried again while the server is down.
        task = BackgroundTask(self.wake.set) if confirmation else None
        # The same answer for every address: whether one was sent is nobody's business here.
        response = self.message(
            t.gettext("Check your e-mail"),
            t.gettext(
                "If the address can be signed up, a message with a link is on its way to it. "
                "Follow the link to confirm: nothing is sent to you before that."
            ),
            t.gettext("No message? Look in the spam folder, or try again in an hour."),
            link=(f"{self.base}/archive", t.gettext("Read past editions meanwhile")),
        )
        response.background = task
        return response

    def confirmation_message(self, c: Confirmation, to: str, now: datetime) -> EmailMessage:
        nl = self.config.newsletter
        subject = self.t.gettext("Confirm your subscription to %(title)s") % {"title": nl.title}
        values = {
            **self.common,
            "subject": subject,
            "address": c.email,
            "confirm_url": tokens.confirm_url(self.config, self.secret, c.subscriber_id, c.nonce),
        }
        text = self.env.get_template("web/confirm.txt").render(values)
        html = self.env.get_template("web/confirm_email.html").render(values)
        return notify.message(self.config, to=to, subject=subject, text=text, html=html, when=now)

    def send_confirmation(self, c: Confirmation) -> None:
        """Send the confirmation message of a sign-up; raises TrnewsError if it cannot go."""
        to = wire_address(c.email)
        if to is None:
            raise UsageError(f"{c.email}: a non-ASCII local part needs SMTPUTF8")
        with notify.Sender(self.config) as sender:
            sender.send(self.confirmation_message(c, to, datetime.now(UTC)), to)

    def send_owed(self, store: Store, due: datetime, *, max_tries: int | None = None) -> int:
        """Try each confirmation message owed whose try is due by `due`; returns how many went.

        One that fails is tried again after the next of CONFIRM_RETRY_DELAYS (never, when the
        address can never get it); the admins hear of an outage once, when a message has
        failed CONFIRM_ALERT_AFTER times, and get that alert as soon as a message goes."""
        sent = 0
        for c in store.owed_confirmations(due, max_tries=max_tries):
            if self.stopping.is_set():
                break
            now = datetime.now(UTC)
            try:
                self.send_confirmation(c)
            except TrnewsError as e:
                never = isinstance(e, UsageError) or (
                    isinstance(e, RecipientRefused) and e.permanent
                )
                tries = c.tries + 1
                delay = CONFIRM_RETRY_DELAYS[min(tries, len(CONFIRM_RETRY_DELAYS)) - 1]
                retry = None if never else now + timedelta(seconds=delay)
                store.confirmation_failed(c.consent_id, str(e), retry)
                if not never:
                    logger.warning(
                        "The confirmation message to %s could not be sent (try %d): %s",
                        c.email,
                        tries,
                        e,
                    )
                else:
                    logger.warning("The confirmation message to %s cannot be sent: %s", c.email, e)
                if tries == CONFIRM_ALERT_AFTER and not never:
                    alerts.confirmations_unsent(self.config, store, now)
                    alerts.flush(self.config, store)
                continue
            store.confirmation_sent(c.consent_id, now)
            sent += 1
            logger.info("Sent a confirmation message to %s", c.email)
            alerts.flush(self.config, store)  # an alert held up by the same outage
        return sent

    def send_confirmations(self) -> None:
        """The thread that sends every confirmation message owed, until `stopping` is set.

        At start every message still owed is tried again (a restart is a new round of
        tries); then each sign-up (`wake`) and each retry when it falls due."""
        with Store.open(self.config.database_path) as store:
            store.retry_confirmations(datetime.now(UTC))
            limit = len(CONFIRM_RETRY_DELAYS) + 1
            while not self.stopping.is_set():
                try:
                    self.send_owed(store, datetime.now(UTC), max_tries=limit)
                except TrnewsError as e:  # the database: said, and tried again
                    logger.warning("Could not send the confirmation messages owed: %s", e)
                self.wake.wait(CONFIRM_POLL)
                self.wake.clear()

    async def confirm(self, request: Request) -> Response:
        token = request.path_params["token"]
        t = self.t

        def confirm(store: Store) -> str:
            subscriber_id = tokens.claimed_id(token)
            if subscriber_id is None:
                return "unknown"
            for c in store.consents(subscriber_id):
                if tokens.verify(self.secret, f"confirm:{c.nonce}", token) != subscriber_id:
                    continue
                if c.withdrawn is not None:
                    return "unknown"  # unsubscribed since: an old link never signs up again
                if c.confirmed is not None:
                    sub = store.subscriber_by_id(subscriber_id)
                    active = sub is not None and sub.state is SubscriberState.ACTIVE
                    return "already" if active else "unknown"
                store.confirm(c.id, now=datetime.now(UTC))
                return "confirmed"
            return "unknown"

        outcome = await self.db(confirm)
        if outcome == "unknown":
            return self.not_found()
        return self.message(
            t.gettext("You are subscribed"),
            t.gettext("Thank you! %(title)s comes to your inbox from the next edition on.")
            % {"title": self.config.newsletter.title},
            t.gettext("Every newsletter has a link at the bottom to unsubscribe with one click."),
            link=(f"{self.base}/archive", t.gettext("Read past editions")),
        )

    # -- unsubscribing ---------------------------------------------------------------------

    async def unsubscribe(self, request: Request) -> Response:
        token = request.path_params["token"]
        t = self.t
        subscriber_id = tokens.verify(self.secret, "unsubscribe", token)
        post = request.method == "POST"

        def act(store: Store) -> bool:
            if subscriber_id is None or store.subscriber_by_id(subscriber_id) is None:
                return False
            if post:
                with self.writing:
                    store.unsubscribe(subscriber_id, now=datetime.now(UTC))
                logger.info("Subscriber %d unsubscribed through the web", subscriber_id)
            return True

        if not await self.db(act):
            return self.not_found()
        if post:  # RFC 8058: 200, never a redirect, whatever the body
            return self.message(
                t.gettext("You are unsubscribed"),
                t.gettext("You will get no more messages from %(title)s.")
                % {"title": self.config.newsletter.title},
                link=(f"{self.base}/", t.gettext("Changed your mind? Subscribe again")),
            )
        return self.page(
            "unsubscribe.html",
            page_title=t.gettext("Unsubscribe"),
            action=f"{self.base}/unsubscribe/{token}",
        )

    async def unsubscribe_help(self, request: Request) -> Response:
        t = self.t
        return self.message(
            t.gettext("Unsubscribe"),
            t.gettext(
                "Use the unsubscribe link at the bottom of a newsletter you received: each "
                "reader's message has a link of its own. Copies in the archive have none."
            ),
            link=(f"{self.base}/archive", t.gettext("Past editions")),
        )

    # -- the archive -----------------------------------------------------------------------

    def _date(self, value: datetime) -> str:
        nl = self.config.newsletter
        return format_date(value.astimezone(nl.tz), "long", locale=nl.language)

    async def archive(self, request: Request) -> Response:
        page = await self.archive_page.get(None)
        assert page is not None
        return _kept(page)

    async def _archive(self, _: None) -> tuple[str, str]:
        def build(store: Store) -> tuple[str, str]:
            editions = store.published_editions()
            page = self.render(
                "archive.html",
                current="archive",
                page_title=self.t.gettext("Past editions"),
                editions=[
                    {
                        "id": e.id,
                        "subject": inert(e.subject),
                        "date": self._date(e.created),
                        "iso": e.created.isoformat(),
                    }
                    for e in editions
                ],
            )
            return page, content_security_policy(page)

        return await self.db(build, limiter=self.builders)

    async def edition(self, request: Request) -> Response:
        edition_id = tokens.url_id(request.path_params["id"])
        served = None if edition_id is None else await self.archived.get(edition_id)
        if served is None:
            return self.not_found()
        return _kept(served)

    async def _edition(self, edition_id: int) -> tuple[str, str] | None:
        def build(store: Store) -> tuple[str, str] | None:
            found = store.published_edition(edition_id)
            if found is None:
                return None
            # The per-reader parts filled with neutral values: no name, and an unsubscribe
            # link to a page that says to use one's own message; then the site's navigation
            # on top and a footer for a visitor in place of the subscriber's.
            neutral = personalise(
                found[1], unsubscribe_url=tokens.neutral_unsubscribe_url(self.config)
            )
            page = archived_copy(
                neutral.html,
                style=self.render("nav.css", width="600px"),
                top=self.render("nav.html"),
                footer=self.render("archived_footer.html"),
            )
            return page, content_security_policy(page, self.img_src)

        return await self.db(build, limiter=self.builders)

    async def atom(self, request: Request) -> Response:
        feed = await self.atom_feed.get(None)
        assert feed is not None
        return Response(
            feed,
            media_type="application/atom+xml; charset=utf-8",
            headers={"Cache-Control": ARCHIVE_CACHE},
        )

    async def _atom(self, _: None) -> str:
        editions = await self.db(lambda store: store.published_editions(), limiter=self.builders)
        nl = self.config.newsletter
        host = urlsplit(nl.public_url).hostname or "localhost"
        updated = editions[0].created if editions else datetime.now(UTC)
        lines = [
            '<?xml version="1.0" encoding="utf-8"?>',
            f'<feed xmlns="http://www.w3.org/2005/Atom" xml:lang={quoteattr(nl.language)}>',
            f"  <id>{escape(tokens.archive_url(self.config))}</id>",
            f"  <title>{escape(nl.title)}</title>",
            f"  <updated>{_rfc3339(updated)}</updated>",
            f"  <author><name>{escape(nl.sender_name)}</name></author>",
            f'  <link rel="self" type="application/atom+xml" '
            f"href={quoteattr(tokens.archive_feed_url(self.config))}/>",
            '  <link rel="alternate" type="text/html" '
            f"href={quoteattr(tokens.archive_url(self.config))}/>",
        ]
        for e in editions:
            url = tokens.archive_url(self.config, e.id)
            # A tag URI: the same for this edition forever, even if public_url moves.
            entry_id = f"tag:{host},{e.created.astimezone(UTC).date().isoformat()}:edition-{e.id}"
            lines += [
                "  <entry>",
                f"    <id>{escape(entry_id)}</id>",
                f"    <title>{escape(inert(e.subject))}</title>",
                f"    <updated>{_rfc3339(e.created)}</updated>",
                f"    <published>{_rfc3339(e.created)}</published>",
                f'    <link rel="alternate" type="text/html" href={quoteattr(url)}/>',
                f"    <summary>{escape(inert(e.subject))}</summary>",
                "  </entry>",
            ]
        lines.append("</feed>\n")
        return "\n".join(lines)

    # -- the open report and health --------------------------------------------------------

    async def report(self, request: Request) -> Response:
        page = await self.report_page.get(None)
        assert page is not None
        return _kept(page)

    async def _report(self, _: None) -> tuple[str, str]:
        from . import report as report_stage

        def build(store: Store) -> tuple[str, str]:
            built = report_stage.build(self.config, store=store)
            page = report_stage.to_html(built, self.config, site=self.site("report"))
            return page, content_security_policy(page)

        return await self.db(build, limiter=self.builders)

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


async def _read_form(request: Request) -> dict[str, str] | None:
    """The fields of a urlencoded form of at most MAX_FORM_BYTES, or None."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
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


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _days(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def _stopped(signum: int, _frame: object) -> None:
    logger.info("Stopped by %s", signal.Signals(signum).name)


def send_owed_confirmations(config: Config, store: Store) -> int:
    """Try the confirmation messages owed for a while (STALE), such as those a stopped `serve`
    could not send; the scheduler calls it with every collect. Returns how many went."""
    due = datetime.now(UTC) - STALE
    if not store.owed_confirmations(due):
        return 0
    return Web(config).send_owed(store, due)


def make_app(config_path: Path | str) -> Starlette:
    """The web application for the config file at `config_path` (read now, once)."""
    web = Web(load_config(config_path))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        sender = threading.Thread(target=web.send_confirmations, name="confirmations", daemon=True)
        sender.start()
        try:
            yield
        finally:
            web.stopping.set()
            web.wake.set()
            await anyio.to_thread.run_sync(sender.join, 10)

    routes = [
        Route("/", web.home, methods=["GET"]),
        Route("/subscribe", web.subscribe, methods=["POST"]),
        Route("/confirm/{token}", web.confirm, methods=["GET"]),
        Route("/unsubscribe", web.unsubscribe_help, methods=["GET"]),
        Route("/unsubscribe/{token}", web.unsubscribe, methods=["GET", "POST"]),
        Route("/archive", web.archive, methods=["GET"]),
        Route("/archive.atom", web.atom, methods=["GET"]),
        Route("/archive/{id}", web.edition, methods=["GET"]),
        Route("/report", web.report, methods=["GET"]),
        Route("/healthz", web.healthz, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={
            HTTPException: web.http_error,
            ClientDisconnect: web.client_left,
            Exception: web.server_error,
        },
    )


def serve(config_path: Path | str, host: str, port: int) -> None:
    """Run the web side until SIGTERM or Ctrl-C (uvicorn finishes the requests in flight)."""
    import uvicorn

    app = make_app(config_path)
    # uvicorn stops gracefully on SIGTERM and SIGINT, then raises the signal again for the
    # handler that was there before it; this one lets the process end with exit 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stopped)
    uvicorn.run(
        app,
        host=host,
        port=port,
        # X-Forwarded-For is read by trnews itself, only from [web] trusted_proxies.
        proxy_headers=False,
        server_header=False,
        # Request lines hold unsubscribe and confirmation tokens: not written to any log.
        access_log=False,
        log_level="info",
    )


__all__ = ["content_security_policy", "make_app", "serve"]
