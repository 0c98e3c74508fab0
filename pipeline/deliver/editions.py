"""Deliver frozen editions to the readers owed them, in batches, marking each in the store.

`StoreLedger` is the `Ledger` of the pool (pipeline.deliver.pool): it writes each reader's row
as their message goes on the wire and as the server answers.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ..config import Config
from ..errors import RecipientRefused
from ..models import DeliveryState, SendReport, SubscriberState
from ..store import Store
from ..tokens import link_secret, return_path, unsubscribe_url
from .connect import connector
from .message import DkimSigner, MessageTemplate, message_id, wire_address
from .pool import Job, Pool

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called with (done, total) as each reader is settled."""


@dataclass(eq=False)
class _Accepted:
    """A message the server accepted, and the next one going on its connection: to be written
    by whichever thread commits first (`StoreLedger.settled`)."""

    job: Job
    starting: Job | None
    written: bool = False
    error: BaseException | None = None


class StoreLedger:
    """Writes each reader's row as their message goes, for the pool's connection threads.

    The threads share the store's connection, one at a time under `lock`. Each change is
    committed before the connection goes on, so a hard kill loses at most the messages on the
    wire. An accepted message is settled together with the next one marked on its connection,
    and the threads commit as a group: whichever holds the lock writes what all the others
    have handed in meanwhile in one transaction (a commit, not a thread, per message was the
    cost that kept four connections from going faster than one).
    """

    def __init__(
        self,
        config: Config,
        store: Store,
        report: SendReport,
        total: int,
        progress: Progress | None,
    ) -> None:
        self.store = store
        self.report = report
        self.bounce_limit = config.delivery.bounce_limit
        self.total = total
        self.done = 0
        self.progress = progress
        self.lock = threading.Lock()
        self.handed: list[_Accepted] = []
        """Accepted messages waiting for the next commit; under `handing`."""
        self.handing = threading.Lock()

    def starting(self, job: Job) -> None:
        with self.lock:
            self._mark(job)

    def _mark(self, job: Job) -> None:
        """`job`'s row marked `sending` (the lock held): its message goes on the wire next."""
        self.store.mark_sending(
            job.edition_id, job.subscriber_id, message_id=job.message_id, now=_now()
        )

    def settled(
        self, job: Job, refused: RecipientRefused | None, starting: Job | None = None
    ) -> None:
        if refused is None:
            self._accepted(_Accepted(job, starting))
            return
        with self.lock, self.store.transaction():
            if starting is not None:
                self._mark(starting)
            state = DeliveryState.FAILED if refused.permanent else DeliveryState.DEFERRED
            bounced = self.store.record_delivery(
                job.edition_id,
                job.subscriber_id,
                state,
                now=_now(),
                error=f"{refused.code} {refused.reply}",
                bounce_limit=self.bounce_limit,
            )
            if refused.permanent:
                self.report.failed += 1
            else:
                self.report.deferred += 1
            if bounced:
                logger.warning(
                    "%s refused for good in %d editions in a row: now bounced",
                    job.recipient,
                    self.bounce_limit,
                )
            why = f"{refused} (tried {job.tries + 1} times)" if job.tries else str(refused)
            if bounced:
                why += f"; refused in {self.bounce_limit} editions in a row: now bounced"
            if len(self.report.errors) < MAX_REASONS:
                self.report.errors.append(why)
            if refused.permanent and len(self.report.refused) < MAX_REASONS:
                self.report.refused.append(why)
            self._tick()

    def _accepted(self, mine: _Accepted) -> None:
        """Hand in an accepted message and return once it is committed, by this thread or by
        another one that committed it with its own."""
        with self.handing:
            self.handed.append(mine)
        with self.lock:
            if not mine.written:
                with self.handing:
                    batch, self.handed = self.handed, []
                try:
                    self.store.settle_sent(
                        [(a.job.edition_id, a.job.subscriber_id) for a in batch],
                        [
                            (a.starting.edition_id, a.starting.subscriber_id, a.starting.message_id)
                            for a in batch
                            if a.starting is not None
                        ],
                        now=_now(),
                        cleared=[a.job.subscriber_id for a in batch if a.job.bounces],
                    )
                except BaseException as e:
                    for a in batch:
                        a.error = e
                else:
                    self.report.delivered += len(batch)
                    for _ in batch:
                        self._tick()
                finally:
                    for a in batch:
                        a.written = True
        if mine.error is not None:
            raise mine.error

    def skipped(self, edition_id: int, subscriber_id: int, why: str) -> None:
        with self.lock:
            self.store.record_delivery(
                edition_id, subscriber_id, DeliveryState.SKIPPED, now=_now(), error=why
            )
            self._tick()

    def unsendable(self, edition_id: int, subscriber_id: int, address: str, why: str) -> None:
        """A reader this transport cannot reach at all: failed, but not held against the
        address (it is no bounce)."""
        with self.lock:
            self.store.record_delivery(
                edition_id, subscriber_id, DeliveryState.FAILED, now=_now(), error=why
            )
            self.report.failed += 1
            if len(self.report.errors) < MAX_REASONS:
                self.report.errors.append(f"{address}: {why}")
            if len(self.report.refused) < MAX_REASONS:
                self.report.refused.append(f"{address}: {why}")
            self._tick()

    def returned(self, job: Job) -> None:
        with self.lock:
            self.store.unmark_sending(job.edition_id, job.subscriber_id)

    def _tick(self) -> None:
        self.done += 1
        if self.progress:
            self.progress(self.done, self.total)


MAX_REASONS = 5
"""Failure reasons kept for the summary of a run; the ledger has every one."""
NON_ASCII_LOCAL_PART = (
    "not sent: an address with non-ASCII letters before the @ needs SMTPUTF8, which trnews "
    "does not send; ask the reader for another address"
)


def _now() -> datetime:
    return datetime.now(UTC)


def deliver_editions(
    config: Config,
    store: Store,
    editions: list[int],
    report: SendReport,
    *,
    signer: DkimSigner | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Deliver frozen editions to every reader still owed them, over the configured connections.

    The readers are read from the database in batches as the connections take them, never all
    at once; each row is settled as soon as the server answers.
    """
    secret = link_secret(config, store)
    total = sum(store.queued_count(eid) for eid in editions)
    ledger = StoreLedger(config, store, report, total, progress)
    connect, connections = connector(config)
    sender = config.newsletter.sender_address
    pool = Pool(connect, connections, sender, ledger, stop)
    try:
        for edition_id in editions:
            _queue_edition(config, store, edition_id, secret, signer, ledger, pool)
            if pool.halted:
                break
    except BaseException:
        pool.stop.set()
        with contextlib.suppress(Exception):  # the first error is the one to tell
            pool.close()
        raise
    pool.close()  # raises TransportUnavailable if the server could not be used
    for edition_id in editions:
        store.finish_edition_if_done(edition_id, _now())
    logger.info(
        "Delivered %s %s through %s: %d sent, %d deferred, %d failed",
        "edition" if len(editions) == 1 else "editions",
        ", ".join(map(str, editions)),
        config.delivery.transport,
        report.delivered,
        report.deferred,
        report.failed,
    )


def _queue_edition(
    config: Config,
    store: Store,
    edition_id: int,
    secret: str,
    signer: DkimSigner | None,
    ledger: StoreLedger,
    pool: Pool,
) -> None:
    """Hand one edition's owed readers to the pool, one batch from the database at a time."""
    with ledger.lock:
        template = MessageTemplate(config, store.edition_content(edition_id), signer)
    after = 0
    while True:
        with ledger.lock:
            batch = store.owed(edition_id, after=after, limit=BATCH)
        if not batch:
            return
        for r in batch:
            after = r.subscriber_id
            if r.state is not SubscriberState.ACTIVE:
                ledger.skipped(edition_id, r.subscriber_id, f"subscriber is {r.state}")
                continue
            address = wire_address(r.email)
            if address is None:
                ledger.unsendable(edition_id, r.subscriber_id, r.email, NON_ASCII_LOCAL_PART)
                continue
            mid = message_id(secret, edition_id, r.subscriber_id, config)
            data = template.render(
                to=address,
                name=r.name,
                msg_id=mid,
                unsubscribe_url=unsubscribe_url(config, secret, r.subscriber_id),
                when=_now(),
            )
            job = Job(edition_id, r.subscriber_id, address, mid, data, bounces=r.hard_bounces)
            if config.delivery.return_path:
                job.sender = return_path(
                    config.delivery.return_path, secret, edition_id, r.subscriber_id
                )
            if not pool.put(job):
                return


BATCH = 500
"""Readers read from the database at a time."""
