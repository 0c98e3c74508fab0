"""What goes on the wire to an SMTP server, read as the server reads it: the commands of each
message, when they arrive, and the bytes of DATA before any unstuffing.

The server here is a plain socket server on loopback that speaks just enough SMTP and notes,
for every reply it is about to give, whether the client has already sent more. A client that
pipelines (RFC 2920) sends a message's body and the next message's MAIL, RCPT and DATA in one
go, before the server answers the body; a client must never do that to a server that does
not offer PIPELINING.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any
from xml.sax.saxutils import escape

from support.mail import add_readers, text_part, use_smtp
from support.site import Site, status_editions

WAIT = 5.0
"""Seconds the server waits for a pipelining client's next command before it answers: far
longer than the client needs, so a slow machine cannot make a pipelined command look late."""
GLANCE = 0.05
"""Seconds the server looks for bytes sent too early to a server without PIPELINING: any seen
is a client that does not wait; a short glance can miss one, never invent one."""


@dataclass
class Wire:
    """What the server saw."""

    pipelining: bool
    messages: list[bytes] = field(default_factory=list)
    """Each message's DATA as it came, dot-stuffed, without the final `.` line."""
    early: list[str] = field(default_factory=list)
    """Each command (or end of a body) after which the client sent more before the reply."""
    replies: int = 0
    refuse: set[bytes] = field(default_factory=set)
    """Recipients refused at RCPT with 550."""
    lax: bool = False
    """Answer DATA with 354 even when every recipient was refused, as RFC 2920 says a server
    must not; the body that follows is thrown away with a 554."""
    orphans: int = 0
    """Bodies sent after a DATA with no recipient."""


def _serve(conn: socket.socket, wire: Wire) -> None:
    buffer = b""

    def more(timeout: float) -> bool:
        """Bytes beyond the buffer arrive within `timeout` (read into the buffer)."""
        nonlocal buffer
        if buffer:
            return True
        ready, _, _ = select.select([conn], [], [], timeout)
        if not ready:
            return False
        chunk = conn.recv(1 << 16)
        buffer += chunk
        return bool(chunk)

    def reply(after: str, text: bytes, *, expect_next: bool = True) -> None:
        if wire.pipelining:
            if expect_next and more(WAIT):
                wire.early.append(after)
        elif more(GLANCE):
            wire.early.append(after)
        conn.sendall(text)
        wire.replies += 1

    def line() -> bytes | None:
        nonlocal buffer
        while b"\r\n" not in buffer:
            chunk = conn.recv(1 << 16)
            if not chunk:
                return None
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n")
        return head

    conn.sendall(b"220 wire.example.org ESMTP\r\n")
    recipients = 0
    while (command := line()) is not None:
        verb = command[:4].upper()
        if verb == b"EHLO":
            offer = b"250-PIPELINING\r\n" if wire.pipelining else b""
            conn.sendall(b"250-wire.example.org\r\n" + offer + b"250 8BITMIME\r\n")
        elif verb == b"QUIT":
            conn.sendall(b"221 bye\r\n")
            return
        elif verb == b"RCPT" and command[8:].strip(b"<>") in wire.refuse:
            reply("RCPT", b"550 5.1.1 no such user\r\n")
        elif verb == b"DATA" and not recipients and not wire.lax:
            reply("DATA", b"554 5.5.1 no valid recipients\r\n")
        elif verb == b"DATA":
            reply("DATA", b"354 go on\r\n", expect_next=False)  # the body waits for this
            body = []
            while (data := line()) != b".":
                if data is None:
                    return
                body.append(data)
            if not recipients:
                wire.orphans += 1
                reply("end of DATA", b"554 5.5.1 no valid recipients\r\n")
                continue
            wire.messages.append(b"\r\n".join(body) + b"\r\n")
            recipients = 0
            reply("end of DATA", b"250 2.0.0 accepted\r\n", expect_next=wire.pipelining)
        else:
            if verb in (b"MAIL", b"RSET"):
                recipients = 0
            elif verb == b"RCPT":
                recipients += 1
            reply(verb.decode(), b"250 OK\r\n")


@contextmanager
def wire_server(*, pipelining: bool, **faults: Any) -> Iterator[tuple[int, Wire]]:
    """The recording server on a free loopback port, one connection at a time."""
    wire = Wire(pipelining, **faults)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            ready, _, _ = select.select([sock], [], [], 0.1)
            if ready:
                conn, _ = sock.accept()
                with conn:
                    _serve(conn, wire)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], wire
    finally:
        stop.set()
        thread.join(timeout=WAIT * 2)
        sock.close()


def rss(*items: tuple[str, str]) -> bytes:
    date = format_datetime(datetime.now(UTC) - timedelta(days=1))
    body = "".join(
        f"<item><title>{escape(t)}</title><link>https://blogg.example.org/{n}</link>"
        f"<pubDate>{date}</pubDate><description>{escape(d)}</description></item>"
        for n, (t, d) in enumerate(items)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Blogg</title>'
        f"<link>https://blogg.example.org</link>{body}</channel></rss>"
    ).encode()


def sent_to(site: Site, port: int, readers: int, *items: tuple[str, str]) -> None:
    (site.root / "kari.xml").write_bytes(rss(*items or [("Næringsliv i regionen", "Om jobber.")]))
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": "kari.xml", "kind": "blog"}])
    use_smtp(site, port, connections=1)
    add_readers(site, [(f"leser{i:02}@example.org", f"Leser {i}") for i in range(readers)])
    site.run("collect")
    site.run("send")


def test_a_server_offering_pipelining_gets_the_next_envelope_with_each_body(site: Site) -> None:
    with wire_server(pipelining=True) as (port, wire):
        sent_to(site, port, 12)
    assert len(wire.messages) == 12
    [edition] = status_editions(site)
    assert (edition["status"], edition["delivered"]) == ("sent", 12)
    # Every body but the last went with the next message's commands: one round trip each.
    assert wire.early.count("end of DATA") == 11, wire.early
    # And each envelope went as one group: MAIL and RCPT were there before their replies.
    assert wire.early.count("MAIL") == 12 and wire.early.count("RCPT") == 12


def test_a_server_without_pipelining_never_gets_a_command_before_its_reply(site: Site) -> None:
    with wire_server(pipelining=False) as (port, wire):
        sent_to(site, port, 5)
    assert len(wire.messages) == 5
    assert wire.early == []
    [edition] = status_editions(site)
    assert (edition["status"], edition["delivered"]) == ("sent", 5)


def test_a_line_starting_with_a_dot_arrives_whole_and_needs_no_stuffing(site: Site) -> None:
    items = [
        (".NET-dagen i Trondheim", "Første linje.\n.Andre linje starter med punktum."),
        ("..", "."),
    ]
    with wire_server(pipelining=True) as (port, wire):
        sent_to(site, port, 2, *items)
    assert len(wire.messages) == 2
    for raw in wire.messages:
        # No line of the message starts with a dot, so there was nothing to stuff: the
        # bytes on the wire are the message itself.
        assert not raw.startswith(b".") and b"\n." not in raw
        msg = message_from_bytes(raw, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        lines = text_part(msg).splitlines()
        assert ".NET-dagen i Trondheim" in lines
        assert ".Andre linje starter med punktum." in " ".join(lines)
        assert b"=2ENET-dagen" in raw  # quoted-printable, which every reader decodes


def test_a_server_taking_data_after_refusing_the_recipient_is_not_left_waiting(
    site: Site,
) -> None:
    refused = b"leser03@example.org"
    with wire_server(pipelining=True, refuse={refused}, lax=True) as (port, wire):
        sent_to(site, port, 8)
    # The refused reader's DATA was answered 354 all the same: trnews ended that empty body at
    # once and went on, instead of sending the next commands into it.
    assert wire.orphans == 1
    assert len(wire.messages) == 7
    [edition] = status_editions(site)
    assert (edition["delivered"], edition["failed"]) == (7, 1)
