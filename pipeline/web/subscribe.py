"""The subscribe form, a sign-up, its confirmation message (sent by a thread of its own and
tried again while the mail server is down) and the confirmation link: SPEC.md "The web
side", double opt-in.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from .. import alerts, tokens
from ..config import Config, check_address
from ..deliver import notify, wire_address
from ..errors import RecipientRefused, TrnewsError, UsageError
from ..models import SubscriberState, inert
from ..sanitize import one_line
from ..store import Confirmation, ConsentText, Store
from .app import Core, _days, client_address, read_form

logger = logging.getLogger("pipeline.web")  # one name for the whole web side, as before

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
MAX_NAME = 100


class Subscribe(Core):
    """The subscribe form, sign-ups and their confirmation."""

    def consent(self) -> ConsentText:
        nl = self.config.newsletter
        text = self.config.web.consent_text or self.t.gettext(
            "I want to receive %(title)s by e-mail, and agree that %(sender)s keeps my address "
            "and name to send it to me until I unsubscribe."
        ) % {"title": nl.title, "sender": nl.sender_name}
        return ConsentText(self.config.web.consent_version, text, nl.language)

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
        fields = await read_form(request)
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


def send_owed_confirmations(config: Config, store: Store) -> int:
    """Try the confirmation messages owed for a while (STALE), such as those a stopped `serve`
    could not send; the scheduler calls it with every collect. Returns how many went."""
    due = datetime.now(UTC) - STALE
    if not store.owed_confirmations(due):
        return 0
    return Subscribe(config).send_owed(store, due)
