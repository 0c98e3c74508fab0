"""Delivery when things go wrong: a mail server that says "try later", refuses, hangs up,
stalls or refuses everything, and a `trnews send` killed or stopped in the middle of a send.

Every case runs `trnews send` as a real process against a real aiosmtpd server on loopback
whose handler (`Faulty`) misbehaves on cue and keeps its own record of what it accepted: the
assertions read that record (who got what, how often, with which Message-ID), `trnews status`
and the CLI's own words, as an admin would.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import json
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from support.mail import add_readers, use_smtp, with_meeting
from support.servers import Pipelining, SilentServer, smtp_server
from support.site import Site, status_editions

from pipeline.models import SubscriberState
from pipeline.store import Store
from pipeline.store import migrations as store_module

STALL = 5.0
"""Seconds a stalling server keeps a client waiting: longer than the clients' timeout below."""
TIMEOUT = 2
"""[delivery.smtp] timeout where a server stalls, so that it costs seconds, not 30; the other
tests keep the default, so that a busy machine never times out a healthy server."""


# -- a server with faults on cue ----------------------------------------------------------------


@dataclass
class Received:
    """One message the server accepted, as its own record keeps it."""

    recipient: str
    message_id: str
    raw: bytes


@dataclass
class Faulty(Pipelining):
    """An aiosmtpd handler that misbehaves on cue, and records what it accepted."""

    soft: dict[str, int] = field(default_factory=dict)
    """Recipient → how many `451` replies it gets before it is accepted."""
    hard: set[str] = field(default_factory=set)
    """Recipients refused for good with `550`."""
    refuse_all: bool = False
    """`554` for every recipient: a relay that does not relay for us."""
    drop_every: int = 0
    """Every Nth message, close the connection instead of answering (nothing accepted)."""
    stall_once: set[str] = field(default_factory=set)
    """Recipients whose first message the server sits on, then does not accept."""
    delay: float = 0.0
    """Seconds to take over each message once it is recorded (a slow relay)."""
    received: list[Received] = field(default_factory=list)
    rcpt_tries: Counter[str] = field(default_factory=Counter)
    data_count: int = 0
    parallel: int = 0
    max_parallel: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self.lock:
            self.rcpt_tries[address] += 1
            if self.refuse_all:
                return "554 5.7.1 Relay access denied"
            if address in self.hard:
                return "550 5.1.1 No such user here"
            if self.soft.get(address, 0) > 0:
                self.soft[address] -= 1
                return "451 4.7.1 Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        [recipient] = envelope.rcpt_tos
        with self.lock:
            self.data_count += 1
            drop = bool(self.drop_every) and self.data_count % self.drop_every == 0
            stall = recipient in self.stall_once
            self.stall_once.discard(recipient)
        if drop:
            assert server.transport is not None
            server.transport.close()
            return "421 4.3.2 Closing"  # never heard: the connection is gone
        if stall:
            await asyncio.sleep(STALL)
            return "451 4.4.2 Timeout"
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        headers = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(raw)
        with self.lock:
            self.received.append(Received(recipient, str(headers["Message-ID"]), raw))
            self.parallel += 1
            self.max_parallel = max(self.max_parallel, self.parallel)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            with self.lock:
                self.parallel -= 1
        return "250 OK"

    def counts(self) -> Counter[str]:
        with self.lock:
            return Counter(r.recipient for r in self.received)

    def message_ids(self, recipient: str) -> set[str]:
        with self.lock:
            return {r.message_id for r in self.received if r.recipient == recipient}


# -- helpers ------------------------------------------------------------------------------------


def readers(n: int) -> list[tuple[str, str]]:
    return [(f"leser{i:03}@example.org", f"Leser {i}") for i in range(n)]


def delivery_keys(site: Site, **keys: Any) -> None:
    """Add keys to the [delivery] table of the site's config (after `use_smtp` wrote it)."""
    text = site.config.read_text(encoding="utf-8")
    lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())
    anchor = 'maildir = "var/outbox"\n'
    assert anchor in text
    site.config.write_text(text.replace(anchor, anchor + lines, 1), encoding="utf-8")


def subscriber_states(site: Site) -> dict[str, str]:
    listed = json.loads(site.run("subscribers", "list", "--json").stdout)
    return {s["email"]: s["state"] for s in listed}


def start_send(site: Site) -> subprocess.Popen[str]:
    """`trnews send` as a separate process, as cron or systemd would start it."""
    return subprocess.Popen(
        site.command("send"),
        cwd=site.root,
        env=site.process_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def rss(*titles: str) -> bytes:
    """A small RSS feed with one item per title, dated yesterday."""
    date = format_datetime(datetime.now(UTC) - timedelta(days=1))
    items = "".join(
        f"<item><title>{escape(t)}</title><link>https://blogg.example.org/{n}</link>"
        f"<pubDate>{date}</pubDate><description>Om {escape(t)}.</description></item>"
        for n, t in enumerate(titles)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Blogg</title>'
        f"<link>https://blogg.example.org</link>{items}</channel></rss>"
    ).encode()


@contextmanager
def faulty_site(site: Site, handler: Faulty, **smtp: Any) -> Iterator[int]:
    """The site's config pointed at a Faulty server on loopback, with these [delivery.smtp] keys."""
    with smtp_server(handler) as port:  # type: ignore[arg-type]
        use_smtp(site, port, **smtp)
        yield port


# -- replies by meaning -------------------------------------------------------------------------


def test_451_is_retried_in_the_same_run_and_550_is_failed_at_once(site: Site) -> None:
    everyone = readers(10)
    greylisted = [everyone[1][0], everyone[6][0]]
    unknown = [everyone[3][0], everyone[8][0]]
    handler = Faulty(soft=dict.fromkeys(greylisted, 2), hard=set(unknown))
    with_meeting(site)
    with faulty_site(site, handler):
        add_readers(site, everyone)
        out = site.run("send").stdout
    assert "8 delivered, 0 deferred, 2 failed" in out
    for address in unknown:
        assert f"{address}: 550 5.1.1 No such user here" in out
        assert handler.rcpt_tries[address] == 1  # a 5xx is never tried again
    for address in greylisted:
        assert handler.rcpt_tries[address] == 3  # two 451s, then accepted, within the run
    assert handler.counts() == {a: 1 for a, _ in everyone if a not in unknown}
    [edition] = status_editions(site)
    assert (edition["delivered"], edition["failed"], edition["deferred"]) == (8, 2, 0)
    assert edition["status"] == "sent"


def test_a_reader_still_deferred_after_retry_hours_counts_as_failed(site: Site) -> None:
    handler = Faulty(soft={"leser000@example.org": 1000})
    with_meeting(site)
    with faulty_site(site, handler):
        delivery_keys(site, retry_hours=0.0005)  # 1.8 seconds
        add_readers(site, readers(2))
        first = site.run("send").stdout
        assert "1 delivered, 1 deferred, 0 failed" in first
        assert "1 reader waits for a later run" in first
        time.sleep(2)
        site.run("send")
    [edition] = status_editions(site)
    assert (edition["delivered"], edition["deferred"], edition["failed"]) == (1, 0, 1)
    # Tried in the first run only (1 + 3 retries): the second run gave up without trying.
    assert handler.rcpt_tries["leser000@example.org"] == 4


def test_a_deferred_reader_is_still_owed_after_a_run_that_found_the_server_down(
    site: Site,
) -> None:
    later = "leser000@example.org"
    handler = Faulty(soft={later: 1000})
    with_meeting(site)
    with faulty_site(site, handler) as port:
        add_readers(site, readers(2))
        assert "1 deferred" in site.run("send").stdout
    use_smtp(site, port)  # nothing listens there now
    down = site.run("send", check=False)
    assert down.returncode == 1, down.stdout + down.stderr
    handler.soft.clear()
    with faulty_site(site, handler):
        out = site.run("send").stdout
    assert "1 delivered, 0 deferred, 0 failed" in out
    assert handler.counts() == {a: 1 for a, _ in readers(2)}


def test_a_relay_saying_try_later_to_everyone_defers_them_and_exits_0(site: Site) -> None:
    everyone = readers(12)
    handler = Faulty(soft={a: 1000 for a, _ in everyone})
    with_meeting(site)
    with faulty_site(site, handler):
        add_readers(site, everyone)
        out = site.run("send").stdout  # exit 0: 4xx means "later", not "never"
        assert "0 delivered, 12 deferred, 0 failed" in out
        assert "12 readers wait for a later run" in out
        handler.soft.clear()
        site.run("send")
    assert handler.counts() == {a: 1 for a, _ in everyone}
    assert set(subscriber_states(site).values()) == {"active"}


def test_bounce_limit_bounces_an_address_refused_in_three_editions_in_a_row(site: Site) -> None:
    gone, flaky, fine = "gone@example.org", "flaky@example.org", "fine@example.org"
    handler = Faulty(hard={gone, flaky})
    site.send_when_empty = True  # every run builds an edition
    with faulty_site(site, handler):
        delivery_keys(site, bounce_limit=3)
        add_readers(site, [(gone, ""), (flaky, ""), (fine, "")])
        site.run("send")
        site.run("send")
        handler.hard.discard(flaky)  # the third edition gets through to flaky: a clean slate
        third = site.run("send").stdout
        assert "now bounced" in third and gone in third
        handler.hard.add(flaky)
        site.run("send")
    assert subscriber_states(site) == {gone: "bounced", flaky: "active", fine: "active"}
    assert handler.rcpt_tries[gone] == 3  # the fourth edition was not sent to it at all
    assert handler.rcpt_tries[flaky] == 4
    assert handler.counts() == {fine: 4, flaky: 1}


# -- the connection misbehaves --------------------------------------------------------------------


@pytest.mark.parametrize("connections", [1, 4])
def test_a_connection_dropped_every_few_messages_loses_and_doubles_nobody(
    site: Site, connections: int
) -> None:
    everyone = readers(30)
    handler = Faulty(drop_every=4)
    with_meeting(site)
    with faulty_site(site, handler, connections=connections):
        add_readers(site, everyone)
        out = site.run("send").stdout
    assert "30 delivered, 0 deferred, 0 failed" in out
    assert handler.data_count >= 30 + 30 // 4  # the drops did happen
    assert handler.counts() == {a: 1 for a, _ in everyone}


def test_a_server_that_stalls_is_timed_out_and_the_run_carries_on(site: Site) -> None:
    everyone = readers(8)
    handler = Faulty(stall_once={everyone[2][0], everyone[5][0]})
    with_meeting(site)
    with faulty_site(site, handler, connections=2, timeout=TIMEOUT):
        add_readers(site, everyone)
        out = site.run("send").stdout
    assert "8 delivered, 0 deferred, 0 failed" in out
    assert not handler.stall_once  # both stalls happened
    assert handler.counts() == {a: 1 for a, _ in everyone}


def test_a_server_that_never_answers_exits_1_and_a_later_run_delivers(site: Site) -> None:
    everyone = readers(5)
    silent = SilentServer()
    with_meeting(site)
    try:
        use_smtp(site, silent.sock.getsockname()[1], timeout=TIMEOUT)
        add_readers(site, everyone)
        down = site.run("send", check=False)
    finally:
        silent.close()
    assert down.returncode == 1, down.stdout + down.stderr
    assert "timed out" in down.stderr and "nothing is lost" in down.stderr
    assert "Traceback" not in down.stderr
    [edition] = status_editions(site)
    assert (edition["delivered"], edition["failed"], edition["owed"]) == (0, 0, 5)

    handler = Faulty()
    with faulty_site(site, handler):
        out = site.run("send").stdout
    assert "Resumed edition 1: 5 delivered" in out
    assert handler.counts() == {a: 1 for a, _ in everyone}


def test_a_server_refusing_everyone_exits_1_marks_nobody_and_a_later_run_delivers(
    site: Site,
) -> None:
    everyone = readers(15)
    handler = Faulty(refuse_all=True)
    with_meeting(site)
    with faulty_site(site, handler):
        add_readers(site, everyone)
        refused = site.run("send", check=False)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "refuse everything" in refused.stderr and "554" in refused.stderr
        assert "nothing is lost" in refused.stderr
        [edition] = status_editions(site)
        assert (edition["failed"], edition["deferred"], edition["owed"]) == (0, 0, 15)
        assert set(subscriber_states(site).values()) == {"active"}

        handler.refuse_all = False
        out = site.run("send").stdout
    assert "Resumed edition 1: 15 delivered, 0 deferred, 0 failed" in out
    assert handler.counts() == {a: 1 for a, _ in everyone}


# -- the run is killed or stopped ---------------------------------------------------------------


def test_sigkill_mid_send_then_a_rerun_loses_nobody_and_sends_the_frozen_edition(
    site: Site,
) -> None:
    everyone = readers(200)
    handler = Faulty(delay=0.05)
    feed = site.root / "kari.xml"
    feed.write_bytes(rss("Frosset innhold"))
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": "kari.xml", "kind": "blog"}])
    with faulty_site(site, handler, connections=4):
        add_readers(site, everyone)
        site.run("collect")
        proc = start_send(site)
        wait_for(lambda: len(handler.received) >= 40, "40 messages")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        killed_at = len(handler.received)
        assert killed_at < len(everyone), "the send finished before the kill"
        [edition] = status_editions(site)
        assert edition["status"] == "sending" and edition["owed"] > 0

        # Meanwhile the ambassador publishes more: the resumed edition must not change.
        feed.write_bytes(rss("Frosset innhold", "Kom etterpå"))
        site.run("collect")
        rerun = site.run("send")
    assert "Resumed edition 1:" in rerun.stdout
    counts = handler.counts()
    assert set(counts) == {a for a, _ in everyone}  # nobody lost
    doubled = [a for a, n in counts.items() if n > 1]
    assert max(counts.values()) <= 2
    assert len(doubled) <= 4  # at most one message per connection was on the wire
    for address in doubled:
        assert len(handler.message_ids(address)) == 1  # a receiver can tell it is the same
    # The ledger knew who was on the wire, and the admin is told.
    on_wire = re.search(r"(\d+) readers? of edition 1 may get it twice", rerun.stderr)
    assert on_wire, rerun.stderr
    assert len(doubled) <= int(on_wire.group(1)) <= 4
    for r in handler.received:
        body = r.raw.decode("ascii")
        assert "Frosset innhold" in body and "Kom etterp" not in body
    [edition] = status_editions(site)
    assert (edition["status"], edition["delivered"], edition["owed"]) == ("sent", 200, 0)


def test_sigterm_mid_send_stops_after_the_messages_in_flight_and_exits_0(site: Site) -> None:
    everyone = readers(200)
    handler = Faulty(delay=0.05)
    with_meeting(site)
    with faulty_site(site, handler, connections=4):
        add_readers(site, everyone)
        proc = start_send(site)
        wait_for(lambda: len(handler.received) >= 20, "20 messages")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=10)
        assert proc.returncode == 0, stdout + stderr
        assert "Stopped by SIGTERM after the messages in flight" in stdout
        owed = status_editions(site)[0]["owed"]
        assert 0 < owed < 200
        assert f"{owed} readers are still owed" in stdout
        assert len(handler.received) == 200 - owed  # every message sent was recorded

        out = site.run("send").stdout
    assert f"Resumed edition 1: {owed} delivered" in out
    assert handler.counts() == {a: 1 for a, _ in everyone}  # a clean stop doubles nobody
    assert 1 < handler.max_parallel <= 4  # `connections` connections sent at once


# -- the ledger's schema ---------------------------------------------------------------------------


def test_a_database_from_before_the_sending_state_keeps_its_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "trnews.db"
    now = datetime(2026, 11, 2, 8, tzinfo=UTC)
    with monkeypatch.context() as m:
        m.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:2])
        with Store.open(db) as old:
            old.add_subscriber("a@example.org", state=SubscriberState.ACTIVE, source="t", now=now)
            # As the trnews of that schema wrote an edition (today's create_edition writes
            # columns later migrations add).
            with old.transaction():
                edition = old.conn.execute(
                    """INSERT INTO editions (created, status, subject, html, text)
                       VALUES (?, 'sending', 's', 'h', 't')""",
                    (now.isoformat(),),
                ).lastrowid
                old.conn.execute(
                    """INSERT INTO deliveries (edition_id, subscriber_id, email, state, updated)
                       SELECT ?, id, email, 'queued', ? FROM subscribers""",
                    (edition, now.isoformat()),
                )
            assert edition is not None
    with Store.open(db) as new:
        [reader] = new.owed(edition)
        assert reader.email == "a@example.org"
        new.mark_sending(edition, reader.subscriber_id, message_id="<m@x>", now=now)
        assert new.queued_count(edition) == 1  # a row left `sending` is still owed
        new.record_delivery(edition, reader.subscriber_id, "sent", now=now, bounce_limit=3)
        assert new.finish_edition_if_done(edition, now)
        assert new.editions()[0].delivered == 1
