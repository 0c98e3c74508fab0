"""The SMTP transport: one connection, its TLS and login, and messages pipelined over it.

How replies are read, as the trusted MTAs do: a 421 at any point is the server going away
(reconnect, nothing is said about the reader); a refused sender or login is `Refused` (the
run stops); a refused recipient or body is that reader's `RecipientRefused` (5xx for good,
4xx for this run).
"""

from __future__ import annotations

import contextlib
import logging
import re
import smtplib
import socket
import ssl
from email.message import EmailMessage
from pathlib import Path

from ..config import SmtpConfig, is_loopback
from ..errors import RecipientRefused, Refused, TransportUnavailable
from .message import CRLF
from .transports import Outcome, Pacer, wire

logger = logging.getLogger(__name__)


NAME_MISMATCH = (62, 64)
"""OpenSSL's verify codes for a certificate made out to another host name or IP address than
the one dialled (X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH)."""

CLOSING = 421
"""RFC 5321 "service not available, closing transmission channel": the server is going away
(a restart, a connection limit), which says nothing about the reader; reconnect and retry."""


class SmtpTransport:
    """One SMTP connection, opened on first use (`send` opens it again once if the server
    hangs up); messages are paced to `max_per_second` (by `pacer`, shared with other
    connections).

    `exchange` is the pool's way in, one round trip a message where the server offers
    PIPELINING: the body of the message whose envelope was accepted and the next message's
    MAIL, RCPT and DATA go in one write, and their replies are read in order. `send` is one
    message on its own (a test send, an alert)."""

    name = "smtp"

    def __init__(
        self, cfg: SmtpConfig, ca_file: Path | None = None, pacer: Pacer | None = None
    ) -> None:
        self.cfg = cfg
        self.ca_file = ca_file
        self.conn: smtplib.SMTP | None = None
        self.pacer = pacer or Pacer(cfg.max_per_second)
        self.pipelining = False
        """The server offers PIPELINING (RFC 2920): a message's commands go in one write."""
        self.open: str | None = None
        """The recipient whose envelope the server accepted last: its body goes next."""
        self.dirty = False
        """An envelope was refused: the server may hold half a transaction; RSET first."""

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
        context = self._tls_context() if cfg.security != "none" else None
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
            conn.ehlo_or_helo_if_needed()  # over implicit TLS, the first EHLO
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
        if conn.sock is not None:  # each write is a whole group: never wait for an ACK
            with contextlib.suppress(OSError):
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pipelining = conn.has_extn("pipelining")
        logger.info(
            "Connected to SMTP server %s (%s%s)",
            self.where,
            cfg.security,
            ", pipelining" if self.pipelining else "",
        )
        return conn

    def _tls_context(self) -> ssl.SSLContext:
        """Made only for a connection that uses TLS: building one reads the system's CAs."""
        try:
            return ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as e:
            raise Refused(f"delivery.smtp.ca_file {self.ca_file}: {e}") from e

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
        data = _stuffed(wire(msg))
        for attempt in (1, 2):
            try:
                ready = self.exchange(None, sender, recipient)
                if ready.envelope is not None:
                    raise ready.envelope
                done = self.exchange(data, sender, None)
                if done.body is not None:
                    raise done.body
                return
            except Refused:
                raise
            except TransportUnavailable as e:
                if attempt == 2:
                    raise
                logger.info("%s; reconnecting", e)

    def exchange(self, body: bytes | None, sender: str, recipient: str | None) -> Outcome:
        """As `Transport.exchange`; `body` goes as it is, so it must be what DATA carries: no
        line starting with a dot (MessageTemplate writes none), CRLF at the end."""
        if self.conn is None:
            if body is not None:
                raise TransportUnavailable(f"SMTP {self.where}: no connection for the message")
            self.conn = self._connect()
        conn = self.conn
        out = Outcome()
        envelope: list[bytes] = []
        if recipient is not None:
            try:
                envelope = self._commands(sender, recipient)
            except RecipientRefused as e:
                out.envelope, recipient = e, None
        known = False  # the body's reply is read
        try:
            if body is not None:
                data = [body, b".\r\n"]
                if self.pipelining:
                    data += envelope
                    envelope = []
                conn.send(b"".join(data))
                out.body = self._body_reply(conn)
                known = True
            if recipient is not None:
                out.envelope = self._envelope(conn, envelope, sender, recipient)
        except (OSError, smtplib.SMTPException, TransportUnavailable) as e:
            self._drop()
            lost = e if isinstance(e, TransportUnavailable) else self._lost(e)
            if not known:
                raise lost from e
            out.lost = lost
        return out

    def _commands(self, sender: str, recipient: str) -> list[bytes]:
        """The next message's envelope, paced: RSET when a refusal left a transaction open."""
        try:
            commands = [b"MAIL FROM:" + _path(sender) + CRLF]
        except ValueError as e:
            raise Refused(f"newsletter.sender: {e}") from e
        try:
            commands.append(b"RCPT TO:" + _path(recipient) + CRLF)
        except ValueError as e:
            raise RecipientRefused(recipient, 553, f"{e} (refused by trnews)") from e
        self.pacer.wait()
        return [b"RSET\r\n"] * self.dirty + [*commands, b"DATA\r\n"]

    def _body_reply(self, conn: smtplib.SMTP) -> RecipientRefused | None:
        """The reply to the end of a body: None if the message was accepted."""
        recipient, self.open = self.open or "", None
        code, reply = conn.getreply()
        if 200 <= code < 300:
            return None
        if code == CLOSING:
            raise _Lost(code, reply)
        return RecipientRefused(recipient, code, _text(reply))

    def _envelope(
        self, conn: smtplib.SMTP, commands: list[bytes], sender: str, recipient: str
    ) -> RecipientRefused | None:
        """Send the envelope (unless it went with the body) and read its replies: None when
        the server waits for the body."""
        pipelined = not commands
        if not pipelined and self.pipelining:
            conn.send(b"".join(commands))
            pipelined = True
        replies = iter(commands)
        if self.dirty:
            if not pipelined:
                conn.send(next(replies))
            self._check(conn.getreply())
            self.dirty = False
        if not pipelined:
            conn.send(next(replies))
        code, reply = self._check(conn.getreply())
        if not 200 <= code < 300:
            raise Refused(f"SMTP {self.where} refused the sender {sender}: {code} {_text(reply)}")
        if not pipelined:
            conn.send(next(replies))
        code, reply = self._check(conn.getreply())
        refused = None
        if not 200 <= code < 300:
            refused = RecipientRefused(recipient, code, _text(reply))
            self.dirty = True
            if not pipelined:
                return refused  # no DATA: the server would only refuse it
        if not pipelined:
            conn.send(next(replies))
        code, reply = self._check(conn.getreply())
        if refused is not None and code == 354:
            # A server that takes DATA with no recipient left (RFC 2920 says it must not)
            # waits for a body: an empty one ends it, and its answer is of no interest.
            conn.send(b".\r\n")
            self._check(conn.getreply())
        if refused is None and code != 354:
            refused = RecipientRefused(recipient, code, _text(reply))
        if refused is not None:
            self.dirty = True
            return refused
        self.open = recipient
        return None

    @staticmethod
    def _check(answer: tuple[int, bytes]) -> tuple[int, bytes]:
        """A reply, unless it says the server is closing the connection."""
        if answer[0] == CLOSING:
            raise _Lost(*answer)
        return answer

    def _lost(self, e: BaseException) -> TransportUnavailable:
        return TransportUnavailable(
            f"SMTP {self.where} dropped the connection: {e or type(e).__name__}"
        )

    def _drop(self) -> None:
        conn, self.conn = self.conn, None
        self.open, self.dirty = None, False
        _close(conn)

    def close(self) -> None:
        if self.conn is not None and self.open is not None:
            # The server waits for a body (the run stopped on an error between two messages):
            # a QUIT would be read as the body's first line, and never answered.
            self._drop()
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


class _Lost(smtplib.SMTPResponseException):
    """A 421 reply: the server is closing the connection, whatever the command was."""


def _path(address: str) -> bytes:
    """`<address>` for MAIL FROM and RCPT TO. ValueError for an address that could break out
    of the command (one `trnews` checked never can)."""
    if not address.isascii() or any(c in address for c in "\r\n<>"):
        raise ValueError(f"{address!r} cannot go in an SMTP envelope")
    return f"<{address}>".encode("ascii")


_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)


def _stuffed(data: bytes) -> bytes:
    """`data` as DATA carries it (RFC 5321 4.5.2): a dot that starts a line doubled, and a line
    end at the end. For a message sent on its own; an edition's messages have no such dot
    (their quoted-printable writes it `=2E`), so the pool's go as they are."""
    if data.startswith(b".") or b"\n." in data:
        data = _LEADING_DOT.sub(b"..", data)
    return data if data.endswith(CRLF) else data + CRLF
