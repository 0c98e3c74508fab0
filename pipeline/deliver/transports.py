"""What a transport is, and the offline one: a Maildir.

A `Transport` takes messages one at a time (`send`, for a test send or an alert) or as a
stream (`exchange`, for the pool: one message's body and the next one's envelope at once, so
that SMTP can pipeline them). `pipeline.deliver.smtp` has the SMTP transport and
`pipeline.deliver.connect` opens the configured one.
"""

from __future__ import annotations

import email.policy
import mailbox
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from ..errors import RecipientRefused, TransportUnavailable
from .message import CRLF


@dataclass
class Outcome:
    """What one `exchange` came to.

    `body`: the reply to the message whose body was sent: None if accepted. `envelope`: the
    reply to the next message's envelope: None if the server is ready for its body. `lost`: the
    connection went away after the body's reply was read (it is known) but before the
    envelope's was (the next message was not sent, and the connection must be made again).
    """

    body: RecipientRefused | None = None
    envelope: RecipientRefused | None = None
    lost: TransportUnavailable | None = None


class Transport(Protocol):
    """Where messages go. `send` and `exchange` raise TransportUnavailable when nothing can be
    sent now (`Refused` when trying again cannot help); `send` raises RecipientRefused for one
    reader."""

    name: str

    def send(self, msg: EmailMessage | bytes, sender: str, recipient: str) -> None: ...

    def exchange(self, body: bytes | None, sender: str, recipient: str | None) -> Outcome:
        """Send the body of the message whose envelope was accepted last (if any), then the
        envelope of the next one, from `sender` to `recipient` (if any). The body is as
        `MessageTemplate` writes it: CRLF line ends, and no line starting with a dot."""
        ...

    def close(self) -> None: ...


def wire(msg: EmailMessage | bytes) -> bytes:
    """The message as bytes with CRLF line ends, as SMTP carries it."""
    return msg if isinstance(msg, bytes) else msg.as_bytes(policy=email.policy.SMTP)


class MaildirTransport:
    """Writes each message as one file in `{maildir}/new/`: offline, for demos and review."""

    name = "maildir"

    def __init__(self, path: Path, return_path: bool = False) -> None:
        self.path = path
        self.return_path = return_path
        """Write each message's envelope sender as its Return-Path header, as a mailbox's
        final delivery does (`delivery.return_path`)."""
        self.envelope = ""
        """The sender of the envelope `exchange` took last: its body comes next."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)  # Maildir creates only the last folder
            self.box = mailbox.Maildir(path, create=True)
        except OSError as e:
            raise TransportUnavailable(f"cannot use the Maildir {path}: {e}") from e

    def send(self, msg: EmailMessage | bytes, sender: str, recipient: str) -> None:
        try:
            # A Maildir is a local file: LF line ends, as mail readers expect there.
            self.box.add(wire(msg).replace(CRLF, b"\n"))
        except OSError as e:
            raise TransportUnavailable(f"cannot write to the Maildir {self.path}: {e}") from e

    def exchange(self, body: bytes | None, sender: str, recipient: str | None) -> Outcome:
        if body is not None:
            data = wire(body)
            if self.return_path and self.envelope:
                data = b"Return-Path: <" + self.envelope.encode() + b">" + CRLF + data
            self.send(data, self.envelope, "")
        self.envelope = sender if recipient is not None else ""
        return Outcome()  # a Maildir takes every envelope

    def close(self) -> None:
        self.box.close()


class Pacer:
    """Spaces calls at most `per_second` a second (0: no limit), as a relay's limit asks; one
    pacer is shared by every connection, so the limit holds for all of them together."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1 / per_second if per_second > 0 else 0.0
        self.next_at = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            at = max(now, self.next_at)
            self.next_at = at + self.interval
        if at > now:
            time.sleep(at - now)
