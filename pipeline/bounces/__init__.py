"""Bounces and complaints that come back later: read the return path's mailbox once, match each
report to a reader, and act on it (SPEC.md, "Bounces and complaints that come back later").

- `recognise`: what a message is (DSN, older bounce formats, ARF complaint, auto-reply);
- `mailboxes`: the Maildir or IMAP folder it is read from, and marked in;
- here: matching (by the signed VERP address, else by the failed address) and the effects,
  which the store applies (`Store.record_bounce`): a permanent failure counts as a refusal for
  good at delivery does, a complaint unsubscribes at once, and a report read again does nothing.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..config import Config
from ..store import Store
from ..tokens import link_secret, return_path_claim
from .mailboxes import Letter, Mailbox, open_mailbox
from .recognise import Failure, Kind, Report, recognise

logger = logging.getLogger(__name__)

__all__ = ["BounceRun", "Handled", "Kind", "Report", "read", "recognise"]


@dataclass(frozen=True)
class Handled:
    """One address of one report, as `trnews bounces` prints it."""

    kind: Kind
    address: str
    reader: str | None
    """The reader it was matched to (their address), or None."""
    reason: str
    effect: str = ""
    """What it did beyond being recorded: "now bounced", "unsubscribed", "read before"."""

    def line(self) -> str:
        who = f"reader {self.reader}" if self.reader else "no reader"
        effect = f"; {self.effect}" if self.effect else ""
        return f"{self.kind:<10} {self.address or '(no address)'}: {who}: {self.reason}{effect}"


@dataclass
class BounceRun:
    """What one read of the mailbox came to."""

    mailbox: str
    handled: list[Handled] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    """Messages by kind (a report naming several addresses counts as its gravest), and
    "read before" for reports already recorded."""
    first_id: int = 0
    """The last bounce row before this run: the rows after it are this run's."""

    def summary(self) -> str:
        c = self.counts
        messages = sum(n for k, n in c.items() if k != "read before")
        parts = [
            f"{c[Kind.PERMANENT]} permanent",
            f"{c[Kind.TEMPORARY]} temporary",
            f"{c[Kind.DELAYED]} delayed or no failure",
            f"{c[Kind.COMPLAINT]} {'complaint' if c[Kind.COMPLAINT] == 1 else 'complaints'}",
            f"{c[Kind.AUTO_REPLY]} auto-{'reply' if c[Kind.AUTO_REPLY] == 1 else 'replies'} "
            "and "
            f"{c[Kind.UNKNOWN]} not understood (left where they were)",
        ]
        before = (
            f"; {c['read before']} read before (nothing done again)" if c["read before"] else ""
        )
        noun = "message" if messages == 1 else "messages"
        return f"Read {messages} new {noun} in {self.mailbox}: " + ", ".join(parts) + before


def read(
    config: Config,
    store: Store,
    *,
    now: datetime | None = None,
    on_handled: Callable[[Handled], None] | None = None,
) -> BounceRun:
    """Read the new messages of the `[bounces]` mailbox once and act on each bounce and
    complaint; MailboxUnavailable if it cannot be reached or read."""
    now = now or datetime.now(UTC)
    box = open_mailbox(config)
    run = BounceRun(box.name, first_id=store.last_bounce_id())
    secret = link_secret(config, store)
    try:
        for letter in box.new():
            _one(config, store, box, letter, secret, now, run, on_handled)
    finally:
        box.close()
    logger.info("%s", run.summary())
    return run


def _one(
    config: Config,
    store: Store,
    box: Mailbox,
    letter: Letter,
    secret: str,
    now: datetime,
    run: BounceRun,
    on_handled: Callable[[Handled], None] | None,
) -> None:
    try:
        report = recognise(letter.data)
    except Exception as e:  # text from anyone: one message must never stop the others
        logger.warning(
            "Could not read message %s in %s: %s; left where it is", letter.id, box.name, e
        )
        run.counts[Kind.UNKNOWN] += 1
        return
    if report.kind in (Kind.AUTO_REPLY, Kind.UNKNOWN):
        run.counts[report.kind] += 1
        return  # a person's reply, or something else: for a person to read
    claim = None
    if config.delivery.return_path:
        claim = return_path_claim(config.delivery.return_path, secret, report.envelope)
    repeated = False
    for failure in report.failures or (Failure("", report.kind, "no address named"),):
        handled = _act(config, store, report, failure, claim, now)
        repeated = repeated or handled.effect == "read before"
        run.handled.append(handled)
        if on_handled:
            on_handled(handled)
    run.counts["read before" if repeated else report.kind] += 1
    box.handled(letter)


def _act(
    config: Config,
    store: Store,
    report: Report,
    failure: Failure,
    claim: tuple[int, int] | None,
    now: datetime,
) -> Handled:
    """Match one address of a report to a reader and record it; what it did."""
    reader = None
    edition_id = None
    if claim is not None:
        edition_id, subscriber_id = claim
        reader = store.subscriber_by_id(subscriber_id)
    elif failure.kind is Kind.COMPLAINT and config.delivery.return_path:
        # With a return path, a complaint must carry our signed address to unsubscribe anyone:
        # anybody can write a complaint naming any reader.
        reader = None
    elif failure.address:
        reader = store.subscriber_by_address(failure.address)
    effect = store.record_bounce(
        report=report.key,
        kind=failure.kind.value,
        address=failure.address,
        reason=failure.reason,
        subscriber_id=reader.id if reader else None,
        edition_id=edition_id if reader else None,
        now=now,
        bounce_limit=config.delivery.bounce_limit,
    )
    if not effect.new:
        said = "read before"
    elif effect.bounced:
        said = f"refused in {config.delivery.bounce_limit} editions in a row: now bounced"
    elif effect.unsubscribed:
        said = "unsubscribed"
    else:
        said = ""
    if effect.new and reader is not None and failure.kind is not Kind.DELAYED:
        logger.info("%s for %s: %s", failure.kind, reader.email, failure.reason)
    return Handled(
        failure.kind, failure.address, reader.email if reader else None, failure.reason, said
    )
