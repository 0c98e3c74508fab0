"""Build each reader's message and hand it to a transport: a Maildir (offline) or SMTP.

An edition's message is encoded once (`MessageTemplate`); per reader only the To, Date and
Message-ID headers and the per-reader values of the body (the unsubscribe link, the name) are
filled in, in bytes. A `Pool` sends the messages over `[delivery.smtp] connections` connections
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

import contextlib
import email.policy
import hashlib
import heapq
import logging
import mailbox
import re
import secrets
import smtplib
import ssl
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email import quoprimime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urlsplit, urlunsplit

from . import words
from .config import Config, SmtpConfig, is_loopback
from .errors import ConfigError, Problem, RecipientRefused, Refused, TransportUnavailable
from .models import PERSONAL_MARK, Rendered
from .render import personalise

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


# -- headers written as they are ----------------------------------------------------------------


class PlainHeader(str):
    """A header value trnews writes itself: printable ASCII, folded only at its own spaces,
    never parsed again nor turned into RFC 2047 encoded words by the email package.

    `email.policy` keeps a value whose `name` is the header's name as it is
    (`EmailPolicy.header_store_parse`) and writes it with its `fold`, so `msg[name] = value`
    stores it untouched. Its text is the header as it goes on the wire.
    """

    name: str

    def __new__(cls, name: str, value: str) -> PlainHeader:
        if not _PRINTABLE.fullmatch(value):
            raise ValueError(f"{name}: {value!r} is not one line of printable ASCII")
        header = super().__new__(cls, value)
        header.name = name
        return header

    def fold(self, *, policy: email.policy.Policy) -> str:
        """`Name: value` and its line end, folded before a word that would take a line past
        MAX_HEADER_LINE; a word longer than a line (a long URL) keeps a line to itself."""
        line = f"{self.name}: {self}"
        if len(line) <= MAX_HEADER_LINE:
            return line + policy.linesep
        first, *words = self.split(" ")
        lines: list[str] = []
        current = line[: len(self.name) + 2 + len(first)]
        for word in words:
            if word and len(current) + 1 + len(word) > MAX_HEADER_LINE:
                lines.append(current)
                current = ""
            current += " " + word
        lines.append(current)
        return policy.linesep.join(lines) + policy.linesep


_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+")
"""A display name that is atoms (RFC 5322 atext) and spaces: written as it is."""
_ENCODED_WORD_START = re.compile(r"=\?+")
_SPECIALS = re.compile(r'[()<>\[\]:;@\\,"]')
"""RFC 5322 specials but the full stop: what one reader or another of a To header takes for
address syntax."""
LONGEST_WORD = 64
"""A longer word of a name is written as encoded words, which can be folded."""
_Q_LITERAL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
"""What RFC 2047 (5.3) lets an encoded word in a display name carry as it is."""
ENCODED_WORD_ROOM = 75 - len("=?utf-8?q??=")
"""Encoded characters in one encoded word, which RFC 2047 caps at 75 characters in all."""


def _encoded_words(text: str) -> list[str]:
    """`text` as UTF-8 "Q" encoded words, none longer than RFC 2047 allows, none splitting a
    character, each cut after a space where one can be (a reader joins encoded words without
    the white space between them)."""
    words: list[str] = []
    pieces: list[str] = []  # the encoded characters of the word being filled
    for char in text:
        piece = "".join(
            chr(b) if b in _Q_LITERAL else "_" if b == 0x20 else f"={b:02X}"
            for b in char.encode("utf-8", "replace")
        )
        while pieces and sum(map(len, pieces)) + len(piece) > ENCODED_WORD_ROOM:
            spaces = [i for i, p in enumerate(pieces) if p == "_"]
            cut = spaces[-1] + 1 if spaces else len(pieces)
            words.append("".join(pieces[:cut]))
            pieces = pieces[cut:]
        pieces.append(piece)
    words.append("".join(pieces))
    return [f"=?utf-8?q?{w}?=" for w in words]


def display_name(name: str) -> str:
    """`name` as the display name of an address header, in printable ASCII; "" for none.

    It must read as one name, never as more addresses, to a strict RFC 5322 reader (an encoded
    word is an atom to it), to a lax one that decodes encoded words first, and to one that
    then splits at every comma, quotes or not. So the header's name loses what would be address
    syntax to any of them: the RFC 5322 specials but the full stop (`Kåri, attacker@evil.
    example` → `Kåri attacker evil.example`) and the `=?` that starts an encoded word. What is
    left is written as atoms, as a quoted string when it holds a full stop, and, where a word
    is not ASCII (or too long for a line), as encoded words. Only the header changes: the
    greeting in the body keeps the name as it was given.
    """
    name = _ENCODED_WORD_START.sub("=", _safe_name(name))
    name = " ".join(_SPECIALS.sub(" ", name).split())
    if name.isascii() and all(len(word) <= LONGEST_WORD for word in name.split(" ")):
        return name if _ATOMS.fullmatch(name) or not name else _quote(name)
    words: list[str] = []
    run: list[str] = []  # words to encode together, spaces and all
    for word in [*name.split(" "), ""]:
        if word and not (_ATOMS.fullmatch(word) and len(word) <= LONGEST_WORD):
            run.append(word)
            continue
        if run:
            words += _encoded_words(" ".join(run))
            run = []
        if word:
            words.append(word)
    return " ".join(words)


def to_header(address: str, name: str = "") -> PlainHeader:
    """The To header of a message to `address`: one mailbox, whatever `name` holds, built from
    the name and the address, never by parsing a formatted string."""
    wire = wire_address(address)
    if wire is None:
        # Only SMTPUTF8 carries a non-ASCII local part, and trnews does not send it: a reader
        # with one is left out before this. Elsewhere (an admin's address for the alerts, to
        # the Maildir) the email package's encoded form keeps the header ASCII, as it did.
        policy = email.policy.SMTP
        folded = policy.header_factory("To", address).fold(policy=policy)
        wire = " ".join(folded.partition(":")[2].split())
    elif not _SIMPLE_ADDRESS.fullmatch(wire):
        wire = Address(addr_spec=wire).addr_spec  # quotes a local part that needs it
    phrase = display_name(name)
    return PlainHeader("To", f"{phrase} <{wire}>" if phrase else wire)


def list_unsubscribe(url: str) -> PlainHeader:
    """List-Unsubscribe (RFC 2369) written plain: mail providers read no encoded word there,
    so it stays `<url>` on a line of its own however long the URL is."""
    return PlainHeader("List-Unsubscribe", f"<{header_url(url)}>")


LIST_UNSUBSCRIBE_POST = PlainHeader("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
"""RFC 8058 one-click unsubscribe, with List-Unsubscribe."""


_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"
"""What a URL in a header keeps as it is, besides letters, digits and `-._`."""


def header_url(url: str) -> str:
    """`url` as a header carries it: printable ASCII without spaces or angle brackets, an
    international host in its IDNA form and any other character percent-encoded."""
    if url.isascii() and quote(url, safe=_URL_SAFE) == url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    with contextlib.suppress(UnicodeError):
        netloc = netloc.encode("idna").decode("ascii")
    return quote(urlunsplit(parts._replace(netloc=netloc)), safe=_URL_SAFE)


def wire_address(address: str) -> str | None:
    """`address` as it can go in an envelope and a To header without SMTPUTF8: a non-ASCII
    domain in its IDNA form (`bø.no` → `xn--b-5ga.no`); None for a non-ASCII local part, which
    only SMTPUTF8 can carry (trnews does not send it)."""
    if address.isascii():
        return address
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        return None
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return None


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
    """One reader's message: multipart/alternative, text first, with every header of SPEC.md.

    The reference for `MessageTemplate`, which gives the same message much faster."""
    nl = config.newsletter
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = nl.sender
    msg["To"] = to_header(to, name)
    msg["Subject"] = _safe_name(content.subject)
    msg["Date"] = format_datetime(when)
    domain = nl.sender_address.rpartition("@")[2]
    msg["Message-ID"] = msg_id or make_msgid(domain=domain)
    msg["List-Id"] = list_id(config)
    msg["List-Unsubscribe"] = list_unsubscribe(unsubscribe_url)
    msg["List-Unsubscribe-Post"] = LIST_UNSUBSCRIBE_POST
    if nl.reply_to:
        msg["Reply-To"] = nl.reply_to
    msg.set_content(content.text, charset="utf-8")
    msg.add_alternative(content.html, subtype="html", charset="utf-8")
    return msg


# -- the message of an edition, encoded once --------------------------------------------------

CRLF = b"\r\n"
SOFT_BREAK = b"=\r\n"
QP_WIDTH = 75
"""Quoted-printable lines of at most 75 characters, so that one more `=` (the soft line break
that joins a filled-in value) keeps them within RFC 2045's 76."""
_PLACEHOLDER = re.compile("(" + re.escape(PERSONAL_MARK) + r"[a-z_]+@@)")
MAX_HEADER_LINE = 78
"""The line length email.policy.SMTP folds headers at."""
_SIMPLE_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")
"""An address whose local part needs no quoting: written as it is."""
_SEPARATOR = "\x00"
"""Joins the placeholders of a probe given to `personalise`; it never survives in a value."""


def _qp(text: str) -> bytes:
    """`text` as UTF-8 quoted-printable, CRLF line ends, lines of at most QP_WIDTH."""
    if not text:
        return b""
    latin = text.encode("utf-8").decode("latin-1")  # what quoprimime encodes: one char a byte
    return quoprimime.body_encode(latin, QP_WIDTH, "\r\n").encode("ascii")


def _lines(text: str) -> str:
    """`text` with its line ends as `set_content` leaves them: `\\n`, and one at the end."""
    lines = re.split(r"\r\n|\r|\n", text)
    if lines[-1] == "":
        lines.pop()  # as str.splitlines: a final line end starts no line of its own
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class _Body:
    """One text part, cut at its placeholders: static pieces encoded once, placeholders kept."""

    pieces: tuple[bytes | str, ...]
    """Encoded static text (bytes) and placeholders (str), in order."""
    probe: str
    """The distinct placeholders joined by _SEPARATOR, for `personalise` to fill."""


def _body(text: str) -> _Body:
    pieces: list[bytes | str] = []
    for i, piece in enumerate(_PLACEHOLDER.split(_lines(text))):
        if i % 2:
            pieces.append(piece)
        elif piece:
            pieces.append(_qp(piece))
    names = list(dict.fromkeys(p for p in pieces if isinstance(p, str)))
    return _Body(tuple(pieces), _SEPARATOR.join(names))


class DkimSigner:
    """Signs each message with the key of `[delivery.dkim]`, by dkimpy: RFC 6376,
    rsa-sha256, relaxed/relaxed, over the exact bytes sent.

    dkimpy does its RSA in Python: about 17 ms a message on one core here, so a list of a
    few thousand readers costs a minute of signing. We keep it for its canonicalisation,
    which is where a hand-made signer goes wrong and mailbox providers stop trusting mail.
    """

    SIGNED = (
        b"from",
        b"to",
        b"subject",
        b"date",
        b"message-id",
        b"list-id",
        b"list-unsubscribe",
        b"list-unsubscribe-post",
        b"reply-to",
        b"mime-version",
        b"content-type",
    )
    """Headers in h= when present: List-Unsubscribe and List-Unsubscribe-Post too, as Gmail
    asks."""

    def __init__(self, config: Config) -> None:
        import dkim.crypto

        cfg = config.delivery.dkim
        assert cfg is not None
        self.domain = cfg.domain.encode("ascii")
        self.selector = cfg.selector.encode("ascii")
        path = config.resolve(cfg.key_file)
        where = "delivery.dkim.key_file"
        try:
            self.key = path.read_bytes()
        except OSError as e:
            problem = Problem(where, f"cannot read {path}: {e.strerror}")
            raise ConfigError(config.path, [problem]) from e
        try:
            dkim.crypto.parse_pem_private_key(self.key)
        except (dkim.crypto.UnparsableKeyError, ValueError, IndexError) as e:
            raise ConfigError(
                config.path,
                [Problem(where, f"{path} is not an RSA private key in PEM format ({e})")],
            ) from e

    def sign(self, data: bytes) -> bytes:
        """`data` with its DKIM-Signature header in front: the signature covers these bytes."""
        import dkim

        head = data.partition(b"\r\n\r\n")[0].lower()
        present = [
            h for h in self.SIGNED if head.startswith(h + b":") or b"\r\n" + h + b":" in head
        ]
        header = dkim.sign(
            data,
            self.selector,
            self.domain,
            self.key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=present,
        )
        return bytes(header) + data


def make_signer(config: Config) -> DkimSigner | None:
    """The DKIM signer of the config, if it has [delivery.dkim]; ConfigError if its key is bad."""
    return DkimSigner(config) if config.delivery.dkim is not None else None


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


class MessageTemplate:
    """One edition's message, encoded once; `render` gives one reader's message as bytes.

    Per reader only To, Date, Message-ID, List-Unsubscribe and the body's placeholders are
    filled in. The values are the ones `build_message(personalise(...))` would give: the
    placeholders are filled by `render.personalise` itself, and each header is written by the
    same code (`to_header`, `list_unsubscribe`) or folded by the same email policy. Both
    parts are quoted-printable (7-bit, lines under 76 characters), so a value joins the
    encoded text with a soft line break, whatever the text around it.
    """

    policy = email.policy.SMTP

    def __init__(self, config: Config, content: Rendered, signer: DkimSigner | None = None) -> None:
        nl = config.newsletter
        self.signer = signer
        self.boundary = "=" * 15 + secrets.token_hex(12) + "=="
        """Starts with "=", which quoted-printable never leaves bare: it cannot occur in a part."""
        self.head = self._fold("From", nl.sender)
        self.subject = self._fold("Subject", _safe_name(content.subject))
        tail = [
            self._fold("List-Id", list_id(config)),
            b"",  # List-Unsubscribe goes here
            self._plain(LIST_UNSUBSCRIBE_POST),
        ]
        if nl.reply_to:
            tail.append(self._fold("Reply-To", nl.reply_to))
        tail += [
            b"MIME-Version: 1.0\r\n",
            self._fold("Content-Type", f'multipart/alternative; boundary="{self.boundary}"'),
            CRLF,
        ]
        self.before_unsubscribe = tail[0]
        self.after_unsubscribe = b"".join(tail[2:])
        delimiter = b"--" + self.boundary.encode() + CRLF
        self.text_head = delimiter + (
            b'Content-Type: text/plain; charset="utf-8"\r\n'
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        )
        # Each part's body ends with a line end of its own; the CRLF before a delimiter
        # belongs to the delimiter (RFC 2046), as the email package writes it too.
        self.html_head = (
            CRLF
            + delimiter
            + (
                b'Content-Type: text/html; charset="utf-8"\r\n'
                b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            )
        )
        self.end = CRLF + b"--" + self.boundary.encode() + b"--" + CRLF
        self.text = _body(content.text)
        self.html = _body(content.html)

    def _fold(self, name: str, value: str | Address) -> bytes:
        folded: str = self.policy.header_factory(name, value).fold(policy=self.policy)
        return folded.encode("ascii")

    def _plain(self, header: PlainHeader) -> bytes:
        return header.fold(policy=self.policy).encode("ascii")

    def _header(self, name: str, value: str) -> bytes:
        """`name: value` as one line when it is short printable ASCII, as the policy would fold
        it; else folded by the policy (a tenth of the time per message goes to this)."""
        line = f"{name}: {value}"
        if len(line) <= MAX_HEADER_LINE and line.isascii() and line.isprintable():
            return line.encode("ascii") + CRLF
        return self._fold(name, value)

    def render(
        self, *, to: str, name: str, msg_id: str, unsubscribe_url: str, when: datetime
    ) -> bytes:
        """One reader's message, as it goes on the wire (CRLF line ends; signed with DKIM)."""
        filled = personalise(
            Rendered(subject="", html=self.html.probe, text=self.text.probe),
            unsubscribe_url=unsubscribe_url,
            name=name,
        )
        out = [
            self.head,
            self._plain(to_header(to, name)),
            self.subject,
            self._header("Date", format_datetime(when)),
            self._header("Message-ID", msg_id),
            self.before_unsubscribe,
            self._plain(list_unsubscribe(unsubscribe_url)),
            self.after_unsubscribe,
            self.text_head,
        ]
        _fill(out, self.text, filled.text)
        out.append(self.html_head)
        _fill(out, self.html, filled.html)
        out.append(self.end)
        data = b"".join(out)
        return self.signer.sign(data) if self.signer else data


def _fill(out: list[bytes], body: _Body, filled: str) -> None:
    """Append `body` to `out` with its placeholders replaced by `filled`'s values (the probe as
    `personalise` returned it), each joined with a soft line break."""
    values = dict(zip(body.probe.split(_SEPARATOR), filled.split(_SEPARATOR), strict=True))
    last = CRLF
    for piece in body.pieces:
        encoded = _qp(values[piece]) if isinstance(piece, str) else piece
        if not encoded:
            continue
        if not last.endswith(CRLF):
            out.append(SOFT_BREAK)
        out.append(encoded)
        last = encoded
    if not last.endswith(CRLF):
        out.append(CRLF)


# -- transports -------------------------------------------------------------------------------


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


# -- many connections at once -----------------------------------------------------------------


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
