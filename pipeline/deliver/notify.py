"""Send one message now: a test send, an alert to the admins, a sign-up's confirmation.

Every such message goes through here, so each carries the same headers (From, To, Subject,
Date, Message-ID, Reply-To when configured; a test send the List-* headers of an edition too)
and is signed with `[delivery.dkim]` as an edition's messages are: a message that is not
signed fares worse with the mailbox providers than one that is, whoever it is for.
"""

from __future__ import annotations

import email.policy
import logging
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from types import TracebackType

from ..config import Config
from .connect import make_transport
from .message import make_signer, to_header
from .transports import Transport

logger = logging.getLogger(__name__)


def message(
    config: Config,
    *,
    to: str,
    subject: str,
    text: str,
    html: str | None = None,
    when: datetime | None = None,
) -> EmailMessage:
    """A message trnews writes on its own (an alert, a confirmation): text, and HTML if given.

    `Auto-Submitted` (RFC 3834) keeps vacation replies away; replies by hand go to
    `newsletter.reply_to` when it is set, as an edition's do."""
    nl = config.newsletter
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = nl.sender
    msg["To"] = to_header(to)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when or datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain=nl.sender_address.rpartition("@")[2])
    msg["Auto-Submitted"] = "auto-generated"
    if nl.reply_to:
        msg["Reply-To"] = nl.reply_to
    msg.set_content(text, charset="utf-8")
    if html is not None:
        msg.add_alternative(html, subtype="html", charset="utf-8")
    return msg


class Sender:
    """The configured transport and DKIM signer, for messages sent one at a time.

    The signer is made first: a DKIM key that cannot be used is a ConfigError before anything
    is sent. A transport given is the caller's to close; one made here is closed by `close`.
    """

    def __init__(self, config: Config, transport: Transport | None = None) -> None:
        self.config = config
        self.signer = make_signer(config)
        self.own = transport is None
        self.transport = transport or make_transport(config)

    def send(self, msg: EmailMessage, to: str) -> None:
        """Sign `msg` and hand it to the transport for `to` (the envelope's recipient)."""
        data = msg.as_bytes()
        if self.signer is not None:
            data = self.signer.sign(data)
        self.transport.send(data, self.config.newsletter.sender_address, to)

    def close(self) -> None:
        if self.own:
            self.transport.close()

    def __enter__(self) -> Sender:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
