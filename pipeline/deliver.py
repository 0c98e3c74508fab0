"""Build each reader's message and hand it to a transport: a Maildir (offline) or SMTP."""

from __future__ import annotations

import email.policy
import hashlib
import logging
import mailbox
import re
import smtplib
import ssl
import time
import unicodedata
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from .config import Config, SmtpConfig
from .errors import RecipientRefused, TransportUnavailable
from .models import Rendered

logger = logging.getLogger(__name__)


def _slug(text: str) -> str:
    table: dict[str, str | int | None] = {"æ": "ae", "ø": "o", "å": "a"}
    text = text.lower().translate(str.maketrans(table))
    ascii_ = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_).strip("-") or "newsletter"


def list_id(config: Config) -> str:
    """RFC 2919 List-Id: `"Title" <title-slug.host-of-public-url>`."""
    host = urlsplit(config.newsletter.public_url).hostname or "localhost"
    return f"{_quote(config.newsletter.title)} <{_slug(config.newsletter.title)}.{host}>"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def message_id(secret: str, edition_id: int, subscriber_id: int, config: Config) -> str:
    """The same Message-ID for the same edition and reader, so a resend can be recognised."""
    domain = config.newsletter.sender_address.rpartition("@")[2]
    tag = hashlib.sha256(f"{secret}:{edition_id}:{subscriber_id}".encode()).hexdigest()[:12]
    return f"<trnews.{edition_id}.{subscriber_id}.{tag}@{domain}>"


def _safe_name(name: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f]", " ", name).strip()


def build_message(
    config: Config,
    content: Rendered,
    *,
    to: str,
    name: str = "",
    msg_id: str | None = None,
    unsubscribe_url: str,
    when: datetime,
) -> EmailMessage:
    """One reader's message: multipart/alternative, text first, with every header of SPEC.md."""
    nl = config.newsletter
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = nl.sender
    msg["To"] = formataddr((_safe_name(name), to)) if name else Address(addr_spec=to)
    msg["Subject"] = _safe_name(content.subject)
    msg["Date"] = format_datetime(when)
    domain = nl.sender_address.rpartition("@")[2]
    msg["Message-ID"] = msg_id or make_msgid(domain=domain)
    msg["List-Id"] = list_id(config)
    msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if nl.reply_to:
        msg["Reply-To"] = nl.reply_to
    msg.set_content(content.text, charset="utf-8")
    msg.add_alternative(content.html, subtype="html", charset="utf-8")
    return msg


class Transport(Protocol):
    """Where messages go. `send` raises RecipientRefused for one reader, TransportUnavailable
    when nothing can be sent now."""

    name: str

    def send(self, msg: EmailMessage, sender: str, recipient: str) -> None: ...

    def close(self) -> None: ...


class MaildirTransport:
    """Writes each message as one file in `{maildir}/new/`: offline, for demos and review."""

    name = "maildir"

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)  # Maildir creates only the last folder
            self.box = mailbox.Maildir(path, create=True)
        except OSError as e:
            raise TransportUnavailable(f"cannot use the Maildir {path}: {e}") from e

    def send(self, msg: EmailMessage, sender: str, recipient: str) -> None:
        try:
            # A Maildir is a local file: LF line ends, as mail readers expect there.
            self.box.add(msg.as_bytes(policy=msg.policy.clone(linesep="\n")))
        except OSError as e:
            raise TransportUnavailable(f"cannot write to the Maildir {self.path}: {e}") from e

    def close(self) -> None:
        self.box.close()


CLOSING = 421
"""RFC 5321 "service not available, closing transmission channel": the server is going away
(a restart, a connection limit), which says nothing about the reader; reconnect and retry."""


class Pacer:
    """Spaces calls at most `per_second` a second (0: no limit), as a relay's limit asks."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1 / per_second if per_second > 0 else 0.0
        self.next_at = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        if self.next_at > now:
            time.sleep(self.next_at - now)
        self.next_at = max(now, self.next_at) + self.interval


class SmtpTransport:
    """One SMTP connection, opened on first use and reopened once if the server hangs up;
    messages are paced to `max_per_second`."""

    name = "smtp"

    def __init__(self, cfg: SmtpConfig, ca_file: Path | None = None) -> None:
        self.cfg = cfg
        self.ca_file = ca_file
        self.conn: smtplib.SMTP | None = None
        self.pacer = Pacer(cfg.max_per_second)

    @property
    def where(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    def _connect(self) -> smtplib.SMTP:
        cfg = self.cfg
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as e:
            raise TransportUnavailable(f"delivery.smtp.ca_file {self.ca_file}: {e}") from e
        try:
            conn: smtplib.SMTP
            if cfg.security == "tls":
                conn = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=context)
            else:
                conn = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
                conn.ehlo()
                if cfg.security == "starttls":
                    conn.starttls(context=context)
                    conn.ehlo()
            if cfg.username:
                conn.login(cfg.username, cfg.password)
        except smtplib.SMTPAuthenticationError as e:
            raise TransportUnavailable(
                f"SMTP {self.where} refused the login of {cfg.username!r}: {_reply(e)}; "
                f"check delivery.smtp.username and ${cfg.password_env}"
            ) from e
        except smtplib.SMTPNotSupportedError as e:
            raise TransportUnavailable(
                f"SMTP {self.where}: {e}; set delivery.smtp.security to match the server"
            ) from e
        except ssl.SSLError as e:
            raise TransportUnavailable(f"SMTP {self.where}: TLS failed: {e}") from e
        except (smtplib.SMTPException, OSError) as e:
            raise TransportUnavailable(f"cannot reach SMTP server {self.where}: {e}") from e
        logger.info("Connected to SMTP server %s (%s)", self.where, cfg.security)
        return conn

    def send(self, msg: EmailMessage, sender: str, recipient: str) -> None:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = self._connect()
            lost: Exception
            self.pacer.wait()
            try:
                self.conn.send_message(msg, from_addr=sender, to_addrs=[recipient])
                return
            except smtplib.SMTPRecipientsRefused as e:
                code, reply = e.recipients.get(recipient, (550, b"refused"))
                if code != CLOSING:
                    raise RecipientRefused(recipient, code, _text(reply)) from e
                lost = e
            except smtplib.SMTPSenderRefused as e:
                if e.smtp_code != CLOSING:
                    self._drop()
                    raise TransportUnavailable(
                        f"SMTP {self.where} refused the sender {sender}: {_reply(e)}"
                    ) from e
                lost = e
            except smtplib.SMTPDataError as e:
                if e.smtp_code != CLOSING:
                    raise RecipientRefused(recipient, e.smtp_code, _text(e.smtp_error)) from e
                lost = e
            except (
                TimeoutError,
                ConnectionError,
                smtplib.SMTPServerDisconnected,
                smtplib.SMTPResponseException,
            ) as e:
                lost = e
            self._drop()
            if attempt == 2:
                raise TransportUnavailable(
                    f"SMTP {self.where} dropped the connection: {lost}"
                ) from lost
            logger.info("SMTP %s: %s; reconnecting", self.where, lost)

    def _drop(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.quit()
            except (smtplib.SMTPException, OSError):
                pass
            finally:
                self._drop()


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _reply(e: smtplib.SMTPResponseException) -> str:
    return f"{e.smtp_code} {_text(e.smtp_error)}"


def make_transport(config: Config) -> Transport:
    """The transport the config names."""
    if config.delivery.transport == "smtp":
        ca = config.delivery.smtp.ca_file
        return SmtpTransport(config.delivery.smtp, config.resolve(ca) if ca else None)
    return MaildirTransport(config.maildir_path)
