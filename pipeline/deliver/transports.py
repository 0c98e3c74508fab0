"""The transports a message goes out by: a Maildir (offline) or SMTP, paced and with TLS hints.

`Transport` is the small interface both keep; `connector` opens the configured one.
"""

from __future__ import annotations

import contextlib
import email.policy
import logging
import mailbox
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from ..config import Config, SmtpConfig, is_loopback
from ..errors import ConfigError, Problem, RecipientRefused, Refused, TransportUnavailable
from .message import CRLF, make_signer

logger = logging.getLogger(__name__)


class Transport(Protocol):
    """Where messages go. `send` raises RecipientRefused for one reader, TransportUnavailable
    when nothing can be sent now (`Refused` when trying again cannot help)."""

    name: str

    def send(self, msg: EmailMessage | bytes, sender: str, recipient: str) -> None: ...

    def close(self) -> None: ...


def _wire(msg: EmailMessage | bytes) -> bytes:
    return msg if isinstance(msg, bytes) else msg.as_bytes(policy=email.policy.SMTP)


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

    def send(self, msg: EmailMessage | bytes, sender: str, recipient: str) -> None:
        try:
            # A Maildir is a local file: LF line ends, as mail readers expect there.
            self.box.add(_wire(msg).replace(CRLF, b"\n"))
        except OSError as e:
            raise TransportUnavailable(f"cannot write to the Maildir {self.path}: {e}") from e

    def close(self) -> None:
        self.box.close()


NAME_MISMATCH = (62, 64)
"""OpenSSL's verify codes for a certificate made out to another host name or IP address than
the one dialled (X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH)."""

CLOSING = 421
"""RFC 5321 "service not available, closing transmission channel": the server is going away
(a restart, a connection limit), which says nothing about the reader; reconnect and retry."""


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


class SmtpTransport:
    """One SMTP connection, opened on first use and reopened once if the server hangs up;
    messages are paced to `max_per_second` (by `pacer`, shared with other connections)."""

    name = "smtp"

    def __init__(
        self, cfg: SmtpConfig, ca_file: Path | None = None, pacer: Pacer | None = None
    ) -> None:
        self.cfg = cfg
        self.ca_file = ca_file
        self.conn: smtplib.SMTP | None = None
        self.pacer = pacer or Pacer(cfg.max_per_second)

    @property
    def where(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    def _connect(self) -> smtplib.SMTP:
        cfg = self.cfg
        if cfg.username and cfg.security == "none" and not is_loopback(cfg.host):
            # `check` refuses such a config already; this holds however the config was made.
            raise Refused(
                f"SMTP {self.where}: will not send the password of {cfg.username!r} in clear; "
                'set delivery.smtp.security = "starttls" or "tls"'
            )
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as e:
            raise Refused(f"delivery.smtp.ca_file {self.ca_file}: {e}") from e
        conn: smtplib.SMTP | None = None
        try:
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
            _close(conn)
            raise Refused(
                f"SMTP {self.where} refused the login of {cfg.username!r}: {_reply(e)}; "
                f"check delivery.smtp.username and ${cfg.password_env}"
            ) from e
        except smtplib.SMTPNotSupportedError as e:
            _close(conn)
            raise Refused(
                f"SMTP {self.where}: {e}; set delivery.smtp.security to match the server"
            ) from e
        except ssl.SSLError as e:
            _close(conn)
            refused = Refused(f"SMTP {self.where}: TLS failed: {e}")
            refused.hint = self._tls_hint(e)
            raise refused from e
        except smtplib.SMTPServerDisconnected as e:
            _close(conn)
            unavailable = TransportUnavailable(f"cannot reach SMTP server {self.where}: {e}")
            if conn is None and cfg.security != "tls":
                # Connected, but no greeting came: a server on an implicit-TLS port waits for
                # our TLS handshake as we wait for its "220".
                unavailable.hint = (
                    f"the server on port {cfg.port} sent no SMTP greeting; if it expects TLS "
                    'from the start (port 465 usually does), set delivery.smtp.security = "tls"'
                    ' (or use port 587 with "starttls")'
                )
            raise unavailable from e
        except (smtplib.SMTPException, OSError) as e:
            _close(conn)
            raise TransportUnavailable(f"cannot reach SMTP server {self.where}: {e}") from e
        logger.info("Connected to SMTP server %s (%s)", self.where, cfg.security)
        return conn

    def _tls_hint(self, e: ssl.SSLError) -> str | None:
        """The setting that fixes a failed TLS handshake, when the error tells which."""
        cfg = self.cfg
        if isinstance(e, ssl.SSLCertVerificationError):
            if e.verify_code in NAME_MISMATCH:
                return (
                    f"the certificate of the SMTP server is not made out to {cfg.host!r}: set "
                    "delivery.smtp.host to a name the certificate carries (not an IP address or "
                    "an alias)"
                )
            if self.ca_file is None:
                return (
                    f"the certificate of {cfg.host} is not signed by a CA this machine trusts: "
                    "if the relay uses an internal CA, set delivery.smtp.ca_file to your CA's "
                    "PEM file"
                )
            return (
                f"the certificate of {cfg.host} is not signed by the CA in "
                f"delivery.smtp.ca_file ({self.ca_file}): give it the CA that signed the "
                "server's certificate"
            )
        if e.reason == "WRONG_VERSION_NUMBER" and cfg.security == "tls":
            return (
                f"the server on port {cfg.port} speaks plain SMTP first: set "
                'delivery.smtp.security = "starttls" (or use port 465 for "tls")'
            )
        return None

    def send(self, msg: EmailMessage | bytes, sender: str, recipient: str) -> None:
        data = _wire(msg)
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = self._connect()
            lost: Exception
            self.pacer.wait()
            try:
                self.conn.sendmail(sender, [recipient], data)
                return
            except smtplib.SMTPRecipientsRefused as e:
                code, reply = e.recipients.get(recipient, (550, b"refused"))
                if code != CLOSING:
                    raise RecipientRefused(recipient, code, _text(reply)) from e
                lost = e
            except smtplib.SMTPSenderRefused as e:
                if e.smtp_code != CLOSING:
                    self._drop()
                    raise Refused(
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
                    f"SMTP {self.where} dropped the connection: {lost or type(lost).__name__}"
                ) from lost
            logger.info("SMTP %s: %s; reconnecting", self.where, lost or type(lost).__name__)

    def _drop(self) -> None:
        conn, self.conn = self.conn, None
        _close(conn)

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.quit()
            except (smtplib.SMTPException, OSError):
                pass
            finally:
                self._drop()


def _close(conn: smtplib.SMTP | None) -> None:
    if conn is not None:
        with contextlib.suppress(OSError):
            conn.close()


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _reply(e: smtplib.SMTPResponseException) -> str:
    return f"{e.smtp_code} {_text(e.smtp_error)}"


def connector(config: Config) -> tuple[Callable[[], Transport], int]:
    """How to open one connection of the configured transport, and how many to open at once."""
    if config.delivery.transport == "smtp":
        smtp = config.delivery.smtp
        ca = config.resolve(smtp.ca_file) if smtp.ca_file else None
        pacer = Pacer(smtp.max_per_second)
        return (lambda: SmtpTransport(smtp, ca, pacer)), smtp.connections
    path = config.maildir_path
    return (lambda: MaildirTransport(path)), 1


def make_transport(config: Config) -> Transport:
    """One connection of the transport the config names."""
    return connector(config)[0]()


PROBE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: probe\r\n\r\nprobe\r\n"


def check_setup(config: Config) -> list[str]:
    """What `trnews check` verifies of delivery beyond the file's own keys, as the send will
    meet it: the DKIM key reads and signs, the CA file reads (ConfigError if not, exit 2);
    and warnings for what a service may still set before the send (the SMTP password)."""
    signer = make_signer(config)
    if signer is not None:
        import dkim

        try:
            signer.sign(PROBE)
        except dkim.DKIMException as e:  # a key that parses but cannot sign (too short, …)
            path = config.resolve(config.delivery.dkim.key_file) if config.delivery.dkim else ""
            problem = Problem("delivery.dkim.key_file", f"{path} cannot sign: {e}")
            raise ConfigError(config.path, [problem]) from e
    if config.delivery.transport != "smtp":
        return []
    smtp = config.delivery.smtp
    if smtp.ca_file is not None:
        ca = config.resolve(smtp.ca_file)
        try:
            ssl.create_default_context(cafile=ca)
        except (OSError, ssl.SSLError) as e:
            problem = Problem("delivery.smtp.ca_file", f"{ca} is not a readable PEM file ({e})")
            raise ConfigError(config.path, [problem]) from e
    warnings = []
    if smtp.username and not smtp.password:
        warnings.append(
            f"delivery.smtp.username is {smtp.username!r} but ${smtp.password_env} is not set "
            "here: the send cannot log in unless the service that runs it sets it"
        )
    return warnings
