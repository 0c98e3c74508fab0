"""Send many messages at once over a pool of connections, and tell a `Ledger` how each went.

A `Pool` sends the messages over `[delivery.smtp] connections` connections
at once, each in a thread of its own, and tells a `Ledger` about each message as it goes: about
to go on the wire, settled (accepted or refused), or back in the queue.

How replies are taken (as the trusted MTAs do):
- 4xx for a reader: tried again in the same run after RETRY_DELAYS, then left deferred.
- 5xx for a reader: refused for good at once, never retried.
- A dropped connection, a 421 or a timeout: reconnect (RECONNECT_DELAYS) and carry on; a
  connection that cannot be made again is given up, and the run fails when none is left.
- A login, TLS or sender refusal (`Refused`), or REFUSE_ALL refusals for good before any
  message was accepted: the server refuses us as a whole; the run stops at once and nobody is
  marked.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .. import words
from ..errors import RecipientRefused, Refused, TransportUnavailable
from .transports import Outcome, Transport

logger = logging.getLogger(__name__)

RETRY_DELAYS = (0.5, 1.0, 2.0)
"""Seconds before each new try of a reader the server asked to wait (4xx), within one run;
after the last, the reader is deferred to a later run."""
RECONNECT_DELAYS = (0.0, 0.5, 1.0)
"""Seconds before each new connection after one failed or was lost (at once the first time: a
server may close an idle connection); then the connection is given up."""
REFUSE_ALL = 10
"""Refusals for good (5xx) before any message was accepted that mean the server refuses
everything (a relay that does not know us, a blocked sender), not that these readers are bad."""


@dataclass
class Job:
    """One reader's message, from the queue to the wire."""

    edition_id: int
    subscriber_id: int
    recipient: str
    message_id: str
    data: bytes
    """The message as MessageTemplate.render writes it: ready for DATA as it is."""
    tries: int = 0
    """4xx replies so far in this run."""
    bounces: int = 0
    """The reader's editions in a row refused for good, which a delivery clears."""
    sender: str | None = None
    """The envelope sender of this message (VERP, `delivery.return_path`); None: the pool's."""


class Ledger(Protocol):
    """What the pool tells as each message goes; called from the connections' threads."""

    def starting(self, job: Job) -> None:
        """The message is about to go on the wire."""

    def settled(
        self, job: Job, refused: RecipientRefused | None, starting: Job | None = None
    ) -> None:
        """The server accepted the message (None) or refused it for good or for this run; and,
        in the same write, `starting` is about to go on the wire."""

    def returned(self, job: Job) -> None:
        """The message was not accepted and the reader is owed it still (a later run sends it)."""


class Pool:
    """`connections` threads, each with a transport of its own, sending the jobs `put` to it.

    Each connection keeps one message in hand between round trips: its envelope accepted and
    marked as going, its body sent with the next message's envelope (`Transport.exchange`), so
    a message costs one round trip where the server pipelines, and one ledger write that
    settles it and marks the next. After a hard kill, only the messages marked may arrive
    twice: at most one a connection, with the same Message-ID.

    The queue holds at most two jobs per connection, so memory stays flat however many readers
    there are; `put` wakes one connection and a connection taking a job wakes the producer.
    `close` waits for every job to be settled, or for the pool to stop (the `stop` event, a
    server that refuses us) and hands back what was not sent; then it raises the reason the
    pool failed, if it did.
    """

    def __init__(
        self,
        connect: Callable[[], Transport],
        connections: int,
        sender: str,
        ledger: Ledger,
        stop: threading.Event | None = None,
    ) -> None:
        self.connect = connect
        self.sender = sender
        self.ledger = ledger
        self.stop = stop or threading.Event()
        self.lock = threading.Lock()
        self.ready = threading.Condition(self.lock)
        """Connections wait here for a job."""
        self.room = threading.Condition(self.lock)
        """The producer waits here for room in the queue."""
        self.fresh: deque[Job] = deque()
        self.later: list[tuple[float, int, Job]] = []
        """Jobs to try again (4xx, a lost connection) at a monotonic time: a heap."""
        self.seq = 0
        self.size = 2 * connections
        self.closing = False
        self.busy = 0
        """Jobs taken by a connection and not yet settled or put back."""
        self.alive = connections
        self.accepted = 0
        self.refusals = 0
        self.held: list[tuple[Job, RecipientRefused]] = []
        """Refusals before any message was accepted: settled once one is, or handed back if the
        server turns out to refuse everything."""
        self.failure: BaseException | None = None
        self.threads = [
            threading.Thread(target=self._run, name=f"trnews-send-{n}", daemon=True)
            for n in range(connections)
        ]
        for t in self.threads:
            t.start()

    @property
    def halted(self) -> bool:
        return self.failure is not None or self.stop.is_set()

    def put(self, job: Job) -> bool:
        """Queue a job, waiting while the queue is full; False if the pool has stopped."""
        with self.lock:
            while len(self.fresh) >= self.size and not self.halted:
                self.room.wait(0.1)
            if self.halted:
                return False
            self.fresh.append(job)
            self.ready.notify()
            return True

    def close(self) -> None:
        """No more jobs: wait for the connections to finish, hand back what was not sent, and
        raise why the pool failed, if it did."""
        with self.lock:
            self.closing = True
            self.ready.notify_all()
        for t in self.threads:
            while t.is_alive():
                t.join(0.2)  # a short join keeps the main thread answering signals
        left = [*self.fresh, *(job for _, _, job in self.later)]
        self.fresh.clear()
        self.later.clear()
        held, self.held = self.held, []
        if self.failure is None and not self.stop.is_set():
            for job, refused in held:  # too few to say the server refuses everything
                self.ledger.settled(job, refused)
        else:
            left += [job for job, _ in held]
        for job in left:
            self.ledger.returned(job)
        if self.failure is not None:
            raise self.failure

    def _take(self, wait: bool) -> Job | None:
        """The next job; None when there is none to take now (`wait` False) or will be none."""
        with self.lock:
            while True:
                if self.halted:
                    return None
                now = time.monotonic()
                if self.later and self.later[0][0] <= now:
                    self.busy += 1
                    return heapq.heappop(self.later)[2]
                if self.fresh:
                    self.busy += 1
                    self.room.notify()
                    return self.fresh.popleft()
                if not wait or (self.closing and not self.later and not self.busy):
                    return None
                self.ready.wait(min(self.later[0][0] - now, 0.1) if self.later else 0.1)

    def _release(self) -> None:
        """One job less in hand (the lock held): the last one at closing ends the waits."""
        self.busy -= 1
        if self.closing and not self.busy:
            self.ready.notify_all()

    def _again(self, job: Job, at: float) -> None:
        """Put a job back, to be tried at `at` by any connection."""
        with self.lock:
            self.seq += 1
            heapq.heappush(self.later, (at, self.seq, job))
            self._release()
            self.ready.notify()

    def _run(self) -> None:
        transport: Transport | None = None
        pending: Job | None = None
        """The message whose envelope the server accepted: its body goes next."""
        failures = 0
        try:
            while True:
                job = self._take(wait=pending is None)
                if job is None and pending is None:
                    return
                if transport is None:
                    transport = self.connect()
                try:
                    out = transport.exchange(
                        pending.data if pending else None,
                        (job.sender or self.sender) if job else self.sender,
                        job.recipient if job else None,
                    )
                except TransportUnavailable as e:
                    if pending is not None:  # its body may have arrived: it is sent again
                        self.ledger.returned(pending)
                        self._again(pending, time.monotonic())
                    if job is not None:
                        self._again(job, time.monotonic())
                    pending = None
                    failures += 1
                    if not self._connect_again(e, failures):
                        return
                    continue
                pending = self._settle(pending, job, out)
                if out.lost is None:
                    failures = 0
                else:
                    failures += 1
                    if not self._connect_again(out.lost, failures):
                        return
        except BaseException as e:  # a bug or the database: stop everything, say why
            with self.lock:
                self.failure = self.failure or e
                self.ready.notify_all()
                self.room.notify_all()
        finally:
            if transport is not None:
                transport.close()

    def _settle(self, done: Job | None, job: Job | None, out: Outcome) -> Job | None:
        """Tell the ledger how an exchange went; the job whose body goes next, if any."""
        going = job if job is not None and out.envelope is None and out.lost is None else None
        if done is not None and out.body is None:
            self.ledger.settled(done, None, going)  # one write: settled, and the next marked
            self._accepted()
        else:
            if done is not None and out.body is not None:
                self._refused(done, out.body)
            if going is not None:
                self.ledger.starting(going)
        if job is not None and going is None:
            if out.envelope is not None:
                self._refused(job, out.envelope)
            else:  # the connection went before the envelope's answer: nothing was sent
                self._again(job, time.monotonic())
        return going

    def _connect_again(self, e: TransportUnavailable, failures: int) -> bool:
        """After a lost connection: False if the connection is to be given up, else True once
        it is time to make it again (at once the first time)."""
        if isinstance(e, Refused) or failures > len(RECONNECT_DELAYS):
            self._give_up(e)
            return False
        logger.info("%s; connecting again", e)
        self.stop.wait(RECONNECT_DELAYS[failures - 1])
        return True

    def _accepted(self) -> None:
        with self.lock:
            self.accepted += 1
            held, self.held = self.held, []
            self._release()
        for job, refused in held:
            self.ledger.settled(job, refused)

    def _refused(self, job: Job, e: RecipientRefused) -> None:
        settle = False
        returned: list[tuple[Job, RecipientRefused]] = []
        with self.lock:
            doubtful = self.accepted == 0
            if doubtful and e.permanent:
                # Only refusals for good: a relay that says "try later" to everyone (a full
                # queue, a rate limit) defers the readers, as 4xx means.
                self.refusals += 1
            if not e.permanent and job.tries < len(RETRY_DELAYS):
                self.seq += 1
                at = time.monotonic() + RETRY_DELAYS[job.tries]
                job.tries += 1
                heapq.heappush(self.later, (at, self.seq, job))
            elif doubtful:
                self.held.append((job, e))
            else:
                settle = True
            if doubtful and self.refusals >= REFUSE_ALL and self.failure is None:
                self.failure = Refused(
                    f"the mail server refused the first {self.refusals} messages and accepted "
                    f"none (last: {e.code} {e.reply}); it seems to refuse everything from us: "
                    "check the sender address and what the relay allows"
                )
                returned, self.held = self.held, []
                self.ready.notify_all()
                self.room.notify_all()
            self._release()
        if settle:
            self.ledger.settled(job, e)
        for held, _ in returned:
            self.ledger.returned(held)

    def _give_up(self, e: TransportUnavailable) -> None:
        with self.lock:
            self.alive -= 1
            if isinstance(e, Refused) or self.alive == 0:
                self.failure = self.failure or e
                self.ready.notify_all()
                self.room.notify_all()
            else:
                logger.warning("%s; going on with %s", e, words.count(self.alive, "connection"))
