"""The jobs: build and send an edition, preview it, test it, report status.

The CLI and the scheduler both call these; neither has a copy of its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from . import alerts, words
from .config import Config
from .errors import (
    AwaitingEditors,
    MailboxUnavailable,
    StoreError,
    TransportUnavailable,
    TrnewsError,
    UsageError,
)
from .models import (
    EditionPlan,
    FeedOutcome,
    IndicatorOutcome,
    LeftOut,
    Rendered,
    SendReport,
    SubscriberState,
)
from .store import Store

if TYPE_CHECKING:
    from .bounces import BounceRun, Handled
    from .deliver import Progress, Transport

# The edition's stages (templates, delivery, calendars) are imported by the jobs that use them:
# `collect` loads none of them.

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Draft:
    """What `send` would deliver now: a frozen edition being resumed, or a new one."""

    rendered: Rendered
    plan: EditionPlan | None
    """None when the draft is an unfinished edition being resumed (its content is frozen)."""
    edition_id: int | None = None
    left_out: tuple[LeftOut, ...] = ()
    """What a template or MJML could not take: left out (see Renderer.render_edition)."""


def draft(config: Config, store: Store, now: datetime) -> Draft:
    """The edition `send` would deliver now, without storing anything."""
    from .edition import plan_edition
    from .render import Renderer

    unfinished = store.unfinished_edition()
    if unfinished is not None:
        return Draft(store.edition_content(unfinished), None, unfinished)
    if config.editorial.active and (current := store.current_draft()) is not None:
        from . import desk  # the desk's draft, with the editors' choices

        built = desk.render(config, store, current, now)
        return Draft(built.rendered, built.plan, left_out=built.left_out)
    built = Renderer(config).render_edition(plan_edition(config, store, now))
    return Draft(built.rendered, built.plan, left_out=built.left_out)


def preview(config: Config, store: Store, out_dir: Path, *, now: datetime | None = None) -> Draft:
    """Write `preview.html` and `preview.txt` of the edition `send` would send now; mark nothing."""
    from .render import personalise
    from .tokens import preview_unsubscribe_url

    d = draft(config, store, now or datetime.now(UTC))
    personal = personalise(d.rendered, unsubscribe_url=preview_unsubscribe_url(config))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "preview.html").write_text(personal.html, encoding="utf-8")
    (out_dir / "preview.txt").write_text(personal.text, encoding="utf-8")
    logger.info("Wrote the preview to %s", out_dir)
    return d


def send_test(
    config: Config,
    store: Store,
    addresses: Iterable[str],
    *,
    now: datetime | None = None,
    transport: Transport | None = None,
) -> Draft:
    """Send the would-be edition to these addresses only; mark nothing, build nothing. The
    messages are signed with DKIM as the edition's are, so they fare as theirs will."""
    from .deliver import NON_ASCII_LOCAL_PART, build_message, notify, wire_address
    from .render import personalise
    from .tokens import preview_unsubscribe_url

    now = now or datetime.now(UTC)
    with notify.Sender(config, transport) as sender:  # a bad DKIM key fails before the draft
        d = draft(config, store, now)
        content = personalise(d.rendered, unsubscribe_url=preview_unsubscribe_url(config))
        content = Rendered(
            subject=f"[TEST] {content.subject}", html=content.html, text=content.text
        )
        sendable = []
        for address in addresses:
            wire = wire_address(address)
            if wire is None:
                raise UsageError(f"{address}: {NON_ASCII_LOCAL_PART}")
            sendable.append(wire)
        for address in sendable:
            msg = build_message(
                config,
                content,
                to=address,
                when=now,
                unsubscribe_url=preview_unsubscribe_url(config),
            )
            sender.send(msg, address)
            logger.info("Sent a test message to %s", address)
    return d


def send(
    config: Config,
    store: Store,
    *,
    now: datetime | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    build: bool = True,
    retry_wait: timedelta = timedelta(0),
) -> SendReport:
    """Build the next edition (or resume the unfinished one) and deliver it to every reader owed it.

    Readers deferred by a 4xx reply within the last `[delivery] retry_hours` are tried again
    first, once `retry_wait` has passed since their last try; older ones count as failed. A
    transport that cannot be reached, or that refuses us as a whole, raises
    TransportUnavailable: every reader not yet settled stays owed, and the next run carries
    on. Setting `stop` (SIGTERM, Ctrl-C) stops after the messages in flight; the report's
    `remaining` says how many readers are still owed. With `build` false, only what is owed
    already is delivered (the scheduler's collect runs carry on an interrupted send so).

    The admins are alerted (`[alerts]`) once when an edition's send fails or ends with
    readers refused for good.
    """
    now = now or datetime.now(UTC)
    try:
        report = _send(config, store, now, progress, stop, build, retry_wait)
    except TransportUnavailable as e:
        # Not flushed now: the alert would go to the server that just failed; it goes with
        # the next job instead.
        owed = store.owed_counts()
        alerts.send_unavailable(config, store, max(owed) if owed else None, str(e), now)
        raise
    alerts.after_send(config, store, report, now)
    alerts.flush(config, store)
    return report


def send_job(
    config: Config,
    store: Store,
    *,
    slot: str | None = None,
    collect_first: Callable[[], object] | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> SendReport | None:
    """The send job, whichever door runs it: the scheduler's slots and `trnews send`.

    `collect_first` is run before anything is sent (the scheduler's collect run: a scheduled
    send always collects first); None when `stop` was set meanwhile, before sending. A send
    that fails before it can finish is alerted (`[alerts]`) under `slot` (the minute it was
    due; now, by default) and raised: one the mail server stopped by `send` itself, any other
    (a broken template, a DKIM key) here.
    """
    from .cron import SLOT_FORMAT

    now = now or datetime.now(UTC)
    if collect_first is not None:
        collect_first()
        if stop is not None and stop.is_set():
            return None
    try:
        return send(config, store, now=now, progress=progress, stop=stop)
    except (TransportUnavailable, StoreError):
        # The mail server: `send` alerted it. The database: an alert is recorded there, so
        # it could not be; the error says to retry, and the next run that can write alerts.
        raise
    except TrnewsError as e:
        if isinstance(e, AwaitingEditors):
            # Not a failed send: by hand the error says what the draft waits for; the
            # scheduler tells the editors and waits (schedule.py).
            raise
        key = slot or now.astimezone(config.newsletter.tz).strftime(SLOT_FORMAT)
        try:
            alerts.send_error(config, store, key, str(e), now, scheduled=slot is not None)
            alerts.flush(config, store)
        except TrnewsError as alert_error:  # never hide the send's own error behind it
            logger.warning("could not alert the failed send: %s", alert_error)
        raise


def _send(
    config: Config,
    store: Store,
    now: datetime,
    progress: Progress | None,
    stop: threading.Event | None,
    build: bool,
    retry_wait: timedelta,
) -> SendReport:
    from .deliver import deliver_editions, make_signer

    report = SendReport()
    signer = make_signer(config)  # a bad DKIM key is a config error before anything is built
    since = now - timedelta(hours=config.delivery.retry_hours)
    store.requeue_deferred(since=since, now=now, tried_before=now - retry_wait)
    edition_id = store.unfinished_edition()
    if edition_id is not None:
        report.resumed = True
        logger.info("Resuming edition %d", edition_id)
        if doubtful := store.on_the_wire(edition_id):
            logger.warning(
                "%s of edition %d may get it twice: their message was on the wire when the last "
                "run was killed; it goes again with the same Message-ID, so mail programs can "
                "tell",
                words.count(doubtful, "reader"),
                edition_id,
            )
    elif build:
        edition_id = _build(config, store, now, report)
    # Every edition that still owes someone: the deferred readers queued again just now, and
    # readers of a finished edition that a stopped or failed run left queued.
    editions = sorted(
        set(store.owed_counts()) | ({edition_id} if edition_id is not None else set())
    )
    if not editions:
        return report
    report.edition_id = editions[-1]
    try:
        deliver_editions(
            config, store, editions, report, signer=signer, progress=progress, stop=stop
        )
    finally:
        report.remaining = sum(store.queued_count(eid) for eid in editions)
    return report


def _build(config: Config, store: Store, now: datetime, report: SendReport) -> int | None:
    """Freeze a new edition and queue its readers; None (with the reason) if there is none.

    With the editorial desk, the edition is the desk's draft with the editors' choices: a
    draft is made (and mailed to the editors) first if there is none, and one the editors
    have not cleared for sending raises AwaitingEditors (see desk.gate)."""
    from .edition import plan_edition
    from .render import Renderer

    desk_draft = None
    if config.editorial.active:
        from . import desk

        desk_draft = store.current_draft()
        if desk_draft is None:
            desk_draft = desk.make_draft(config, store, now)
            if desk_draft is not None:
                logger.warning(
                    "No draft was made before this send (the scheduler makes one "
                    "[editorial] draft_hours before each send; 'trnews draft' makes one now): "
                    "made draft %d and mailed it to the editors",
                    desk_draft.id,
                )
                desk.mail_editors(config, store, desk_draft, now)
        if desk_draft is None:
            report.reason = "nothing new since the last edition"
            return None
        desk.gate(config, desk_draft)
        plan = desk.edition_plan(config, store, desk_draft, now)
    else:
        plan = plan_edition(config, store, now)
    if not plan.has_news and not config.schedule.send_when_empty:
        report.reason = (
            "nothing to send: the editors left out every item of the draft"
            if desk_draft is not None and desk_draft.items
            else "nothing new since the last edition"
        )
        return None
    if not store.subscriber_counts()[SubscriberState.ACTIVE]:
        report.reason = "no active subscribers (add one with 'trnews subscribers add EMAIL')"
        return None
    built = Renderer(config).render_edition(plan)
    plan = built.plan
    report.left_out = list(built.left_out)
    # A left-out item is recorded, so that no later edition tries it again.
    left_out = [(lo.item.id, lo.reason) for lo in built.left_out if lo.item is not None]
    if not plan.has_news and not config.schedule.send_when_empty:
        store.leave_out(left_out, edition_id=None, now=now)
        report.reason = (
            "nothing new since the last edition: what was new could not be shown and was "
            "left out (see 'trnews status')"
        )
        return None
    with store.transaction():
        edition_id, recipients = store.create_edition(
            created=now,
            rendered=built.rendered,
            shown=[i.id for i in plan.items],
            overflow=[i.id for i in plan.overflow],
            meetings=[m.key for m in plan.meetings],
            left_out=left_out,
            cutoff=desk_draft.built if desk_draft is not None else None,
        )
        if desk_draft is not None:
            store.mark_draft_sent(desk_draft.id, edition_id, now=now)
    logger.info(
        "Built edition %d: %s, %s, %s",
        edition_id,
        words.count(len(plan.items) + len(plan.overflow), "item"),
        words.count(len(plan.meetings), "meeting"),
        words.count(recipients, "recipient"),
    )
    return edition_id


def collect(
    config: Config,
    store: Store,
    *,
    on_outcome: Callable[[FeedOutcome], None] | None = None,
    on_indicator: Callable[[IndicatorOutcome], None] | None = None,
    retry_gone: bool = False,
    stop: threading.Event | None = None,
) -> list[FeedOutcome]:
    """Fetch every feed once and store the new items (gone feeds too, with `retry_gone`);
    then each indicator source that is due (pipeline.indicator_sources).

    The admins are alerted (`[alerts]`) once when a feed or an indicator source has failed
    `feed_failures` runs in a row, and once when it works again. Setting `stop` ends the run
    early (see collect_stage.collect), before the indicator sources."""
    from . import collect as collect_stage  # httpx and the parsers: not for a send alone
    from . import indicator_sources

    now = datetime.now(UTC)
    outcomes = collect_stage.collect(
        config, store, now=now, on_outcome=on_outcome, retry_gone=retry_gone, stop=stop
    )
    if stop is None or not stop.is_set():
        indicator_sources.collect(config, store, now=now, on_outcome=on_indicator)
    alerts.after_collect(config, store, now)
    alerts.after_indicators(config, store, now)
    if config.bounces is not None and (stop is None or not stop.is_set()):
        try:
            _read_bounces(config, store)
        except MailboxUnavailable as e:  # named, and never in the way of collect or send
            logger.warning("Bounces not read: %s; collect goes on", e)
    alerts.flush(config, store)
    return outcomes


def read_bounces(
    config: Config, store: Store, *, on_handled: Callable[[Handled], None] | None = None
) -> BounceRun:
    """Read the `[bounces]` mailbox once and act on what came back (pipeline.bounces); the
    admins are alerted once to any complaint and to a wave of permanent failures."""
    run = _read_bounces(config, store, on_handled=on_handled)
    alerts.flush(config, store)
    return run


def _read_bounces(
    config: Config, store: Store, *, on_handled: Callable[[Handled], None] | None = None
) -> BounceRun:
    """The read and its alerts queued, for the caller to send with the others."""
    from . import bounces

    now = datetime.now(UTC)
    run = bounces.read(config, store, now=now, on_handled=on_handled)
    alerts.after_bounces(config, store, run, now)
    return run
