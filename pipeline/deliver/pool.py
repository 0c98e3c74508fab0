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
from .transports import Transport

logger = logging.getLogger(__name__)

RETRY_DELAYS = (0.5, 1.0, 2.0)
"""Seconds before each new try of a reader the server asked to wait (4xx), within one run;
after the last, the reader is deferred to a later run."""
RECONNECT_DELAYS = (0.5, 1.0)
"""Seconds before each new connection after one failed or was lost; then the connection is
given up."""
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
    tries: int = 0
    """4xx replies so far in this run."""


class Ledger(Protocol):
    """What the pool tells as each message goes; called from the connections' threads."""

    def starting(self, job: Job) -> None:
        """The message is about to go on the wire."""

    def settled(self, job: Job, refused: RecipientRefused | None) -> None:
        """The server accepted the message (None) or refused it for good or for this run."""

    def returned(self, job: Job) -> None:
        """The message was not accepted and the reader is owed it still (a later run sends it)."""


class Pool:
    """`connections` threads, each with a transport of its own, sending the jobs `put` to it.

    The queue holds at most two jobs per connection, so memory stays flat however many readers
    there are. `close` waits for every job to be settled, or for the pool to stop (the `stop`
    event, a server that refuses us) and hands back what was not sent; then it raises the
    reason the pool failed, if it did.
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
        self.cond = threading.Condition()
        self.fresh: deque[Job] = deque()
        self.later: list[tuple[float, int, Job]] = []
        """Jobs to try again (4xx) at a monotonic time: a heap."""
        self.seq = 0
        self.room = 2 * connections
        self.closing = False
        self.busy = 0
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
        with self.cond:
            while len(self.fresh) >= self.room and not self.halted:
                self.cond.wait(0.1)
            if self.halted:
                return False
            self.fresh.append(job)
            self.cond.notify_all()
            return True

    def close(self) -> None:
        """No more jobs: wait for the connections to finish, hand back what was not sent, and
        raise why the pool failed, if it did."""
        with self.cond:
            self.closing = True
            self.cond.notify_all()
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

    def _take(self) -> Job | None:
        with self.cond:
            while True:
                if self.halted:
                    return None
                now = time.monotonic()
                if self.later and self.later[0][0] <= now:
                    self.busy += 1
                    return heapq.heappop(self.later)[2]
                if self.fresh:
                    self.busy += 1
                    self.cond.notify_all()  # room for the producer
                    return self.fresh.popleft()
                if self.closing and not self.later and not self.busy:
                    return None
                wait = self.later[0][0] - now if self.later else 0.1
                self.cond.wait(min(wait, 0.1))

    def _done(self, retry_at: float | None = None, job: Job | None = None) -> None:
        """A connection is through with a job; `retry_at` puts it back to be tried then."""
        with self.cond:
            if job is not None and retry_at is not None:
                self.seq += 1
                heapq.heappush(self.later, (retry_at, self.seq, job))
            self.busy -= 1
            self.cond.notify_all()

    def _run(self) -> None:
        transport: Transport | None = None
        failures = 0
        try:
            while (job := self._take()) is not None:
                if transport is None:
                    transport = self.connect()
                self.ledger.starting(job)
                try:
                    transport.send(job.data, self.sender, job.recipient)
                except RecipientRefused as e:
                    failures = 0
                    self._refused(job, e)
                except TransportUnavailable as e:
                    self.ledger.returned(job)
                    self._done(time.monotonic(), job)
                    failures += 1
                    if isinstance(e, Refused) or failures > len(RECONNECT_DELAYS):
                        self._give_up(e)
                        return
                    logger.info("%s; connecting again", e)
                    self.stop.wait(RECONNECT_DELAYS[failures - 1])
                else:
                    failures = 0
                    self.ledger.settled(job, None)
                    self._accepted()
        except BaseException as e:  # a bug or the database: stop everything, say why
            with self.cond:
                self.failure = self.failure or e
                self.cond.notify_all()
        finally:
            if transport is not None:
                transport.close()

    def _accepted(self) -> None:
        with self.cond:
            self.accepted += 1
            held, self.held = self.held, []
            self.busy -= 1
            self.cond.notify_all()
        for job, refused in held:
            self.ledger.settled(job, refused)

    def _refused(self, job: Job, e: RecipientRefused) -> None:
        settle = False
        returned: list[tuple[Job, RecipientRefused]] = []
        with self.cond:
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
            self.busy -= 1
            self.cond.notify_all()
        if settle:
            self.ledger.settled(job, e)
        for held, _ in returned:
            self.ledger.returned(held)

    def _give_up(self, e: TransportUnavailable) -> None:
        with self.cond:
            self.alive -= 1
            if isinstance(e, Refused) or self.alive == 0:
                self.failure = self.failure or e
            else:
                logger.warning("%s; going on with %s", e, words.count(self.alive, "connection"))
            self.cond.notify_all()
