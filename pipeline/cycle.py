"""The jobs: build and send an edition, preview it, test it, report status.

The CLI and the scheduler both call these; neither has a copy of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from . import collect as collect_stage
from .config import Config
from .deliver import Transport, build_message, make_transport, message_id
from .edition import plan_edition
from .errors import RecipientRefused
from .models import DeliveryState, EditionPlan, FeedOutcome, Rendered, SendReport, SubscriberState
from .render import Renderer, personalise
from .store import Store
from .tokens import link_secret, sign

logger = logging.getLogger(__name__)

DEFERRED_RETRY_HOURS = 48
Progress = Callable[[int, int], None]
"""Called with (done, total) as each reader is settled."""


def unsubscribe_url(config: Config, secret: str, subscriber_id: int) -> str:
    token = sign(secret, "unsubscribe", subscriber_id)
    return f"{config.newsletter.public_url}/unsubscribe/{token}"


def preview_unsubscribe_url(config: Config) -> str:
    """Where the unsubscribe link of a preview or test message points: a token that names no one."""
    return f"{config.newsletter.public_url}/unsubscribe/preview"


@dataclass(frozen=True)
class Draft:
    """What `send` would deliver now: a frozen edition being resumed, or a new one."""

    rendered: Rendered
    plan: EditionPlan | None
    """None when the draft is an unfinished edition being resumed (its content is frozen)."""
    edition_id: int | None = None


def draft(config: Config, store: Store, now: datetime) -> Draft:
    """The edition `send` would deliver now, without storing anything."""
    unfinished = store.unfinished_edition()
    if unfinished is not None:
        return Draft(store.edition_content(unfinished), None, unfinished)
    plan = plan_edition(config, store, now)
    return Draft(Renderer(config).render(plan), plan)


def preview(config: Config, store: Store, out_dir: Path, *, now: datetime | None = None) -> Draft:
    """Write `preview.html` and `preview.txt` of the edition `send` would send now; mark nothing."""
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
    """Send the would-be edition to these addresses only; mark nothing, build nothing."""
    now = now or datetime.now(UTC)
    d = draft(config, store, now)
    content = personalise(d.rendered, unsubscribe_url=preview_unsubscribe_url(config))
    content = Rendered(subject=f"[TEST] {content.subject}", html=content.html, text=content.text)
    own = transport or make_transport(config)
    try:
        for address in addresses:
            msg = build_message(
                config,
                content,
                to=address,
                when=now,
                unsubscribe_url=preview_unsubscribe_url(config),
            )
            own.send(msg, config.newsletter.sender_address, address)
            logger.info("Sent a test message to %s", address)
    finally:
        if transport is None:
            own.close()
    return d


def send(
    config: Config,
    store: Store,
    *,
    now: datetime | None = None,
    transport: Transport | None = None,
    progress: Progress | None = None,
) -> SendReport:
    """Build the next edition (or resume the unfinished one) and deliver it to every reader owed it.

    Readers deferred by a 4xx reply in the last 48 hours are tried again first. A transport
    that cannot be reached raises TransportUnavailable; every reader not yet settled stays
    queued, and the next run carries on.
    """
    now = now or datetime.now(UTC)
    report = SendReport()
    retry = store.requeue_deferred(since=now - timedelta(hours=DEFERRED_RETRY_HOURS), now=now)
    edition_id = store.unfinished_edition()
    if edition_id is not None:
        report.resumed = True
        logger.info("Resuming edition %d", edition_id)
    else:
        edition_id = _build(config, store, now, report)
    editions = list(dict.fromkeys([*retry, *([edition_id] if edition_id is not None else [])]))
    if not editions:
        return report
    report.edition_id = editions[-1]
    own = transport or make_transport(config)
    try:
        for eid in editions:
            deliver_edition(config, store, eid, own, report, now=now, progress=progress)
    finally:
        report.remaining = sum(store.queued_count(eid) for eid in editions)
        if transport is None:
            own.close()
    return report


def _build(config: Config, store: Store, now: datetime, report: SendReport) -> int | None:
    """Freeze a new edition and queue its readers; None (with the reason) if there is none."""
    plan = plan_edition(config, store, now)
    if not plan.has_news and not config.schedule.send_when_empty:
        report.reason = "nothing new since the last edition"
        return None
    if not store.subscriber_counts()[SubscriberState.ACTIVE]:
        report.reason = "no active subscribers (add one with 'trnews subscribers add EMAIL')"
        return None
    rendered = Renderer(config).render(plan)
    edition_id, recipients = store.create_edition(
        created=now,
        rendered=rendered,
        shown=[i.id for i in plan.items],
        overflow=[i.id for i in plan.overflow],
        meetings=[m.key for m in plan.meetings],
    )
    logger.info(
        "Built edition %d: %d items, %d meetings, %d recipients",
        edition_id,
        len(plan.items) + len(plan.overflow),
        len(plan.meetings),
        recipients,
    )
    return edition_id


def deliver_edition(
    config: Config,
    store: Store,
    edition_id: int,
    transport: Transport,
    report: SendReport,
    *,
    now: datetime,
    progress: Progress | None = None,
) -> None:
    """Deliver one frozen edition to every reader still queued for it, settling each row at once."""
    secret = link_secret(config, store)
    content = store.edition_content(edition_id)
    total = store.queued_count(edition_id)
    sender = config.newsletter.sender_address
    for done, r in enumerate(store.queued_recipients(edition_id), start=1):
        if r.state is not SubscriberState.ACTIVE:
            store.record_delivery(
                edition_id,
                r.subscriber_id,
                DeliveryState.SKIPPED,
                now=now,
                error=f"subscriber is {r.state}",
            )
        else:
            url = unsubscribe_url(config, secret, r.subscriber_id)
            mid = message_id(secret, edition_id, r.subscriber_id, config)
            msg = build_message(
                config,
                personalise(content, unsubscribe_url=url),
                to=r.email,
                name=r.name,
                msg_id=mid,
                unsubscribe_url=url,
                when=datetime.now(UTC),
            )
            try:
                transport.send(msg, sender, r.email)
            except RecipientRefused as e:
                state = DeliveryState.FAILED if e.permanent else DeliveryState.DEFERRED
                store.record_delivery(
                    edition_id,
                    r.subscriber_id,
                    state,
                    now=now,
                    message_id=mid,
                    error=f"{e.code} {e.reply}",
                )
                if e.permanent:
                    report.failed += 1
                else:
                    report.deferred += 1
                if len(report.errors) < 5:
                    report.errors.append(str(e))
            else:
                store.record_delivery(
                    edition_id, r.subscriber_id, DeliveryState.SENT, now=now, message_id=mid
                )
                report.delivered += 1
        if progress:
            progress(done, total)
    store.finish_edition_if_done(edition_id, datetime.now(UTC))
    logger.info(
        "Delivered edition %d through %s: %d sent, %d deferred, %d failed",
        edition_id,
        transport.name,
        report.delivered,
        report.deferred,
        report.failed,
    )


def collect(
    config: Config,
    store: Store,
    *,
    on_outcome: Callable[[FeedOutcome], None] | None = None,
    retry_gone: bool = False,
) -> list[FeedOutcome]:
    """Fetch every feed once and store the new items (gone feeds too, with `retry_gone`)."""
    return collect_stage.collect(config, store, on_outcome=on_outcome, retry_gone=retry_gone)


def status(config: Config | None, store: Store) -> dict[str, Any]:
    """What `trnews status --json` prints: feed health, editions, subscribers, scheduler.

    With a config, every configured feed is listed in config order (one never fetched has
    `ok: null`); without one (the file is broken), every feed the database knows. `gone` is
    true from a feed's first 410 answer until it answers anything else; `retry_after` is when
    its server asked to be fetched again (429 or 503 with Retry-After), if it did.
    """
    health = store.feed_health()
    owners: dict[str, str | None]
    if config is not None:
        owners = {
            location: ", ".join(dict.fromkeys(s.ambassador for s in subs))
            for location, subs in collect_stage.subscriptions(config).items()
        }
    else:
        owners = dict.fromkeys(health)
    feeds = []
    for location, ambassador in owners.items():
        h = health.get(location)
        fetched = h is not None and h.last_attempt is not None
        feeds.append(
            {
                "url": location,
                "ambassador": ambassador,
                "ok": h.consecutive_failures == 0 if h is not None and fetched else None,
                "last_attempt": _iso(h.last_attempt) if h else None,
                "last_success": _iso(h.last_success) if h else None,
                "last_status": h.last_status if h else None,
                "consecutive_failures": h.consecutive_failures if h else 0,
                "last_error": h.last_error if h else None,
                "gone": h is not None and h.gone_since is not None,
                "gone_since": _iso(h.gone_since) if h else None,
                "moved_to": h.moved_to if h else None,
                "retry_after": _iso(h.retry_after) if h else None,
            }
        )
    return {
        "next_collect": None,
        "next_send": None,
        "scheduler_pid": None,
        "database": str(store.path),
        "items": store.item_count(),
        "feeds": feeds,
        "editions": [
            {
                "id": e.id,
                "created": _iso(e.created),
                "status": str(e.status),
                "subject": e.subject,
                "items": e.items,
                "recipients": e.recipients,
                "delivered": e.delivered,
                "failed": e.failed,
                "deferred": e.deferred,
            }
            for e in store.editions()
        ],
        "subscribers": store.subscriber_counts(),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
