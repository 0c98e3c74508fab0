"""Build each reader's message: its headers, its body encoded once, its DKIM signature.

An edition's message is encoded once (`MessageTemplate`); per reader only the To, Date and
Message-ID headers and the per-reader values of the body (the unsubscribe link, the name) are
filled in, in bytes. `build_message` is the reference it is checked against.
"""

from __future__ import annotations

import contextlib
import email.policy
import hashlib
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from email import quoprimime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from urllib.parse import quote, urlsplit, urlunsplit

from ..config import Config
from ..errors import ConfigError, Problem
from ..models import PERSONAL_MARK, Rendered
from ..render import personalise


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
    encoded = quoprimime.body_encode(latin, QP_WIDTH, "\r\n").encode("ascii")
    return _dots_encoded(encoded) if encoded.startswith(b".") or b"\n." in encoded else encoded


def _dots_encoded(encoded: bytes) -> bytes:
    """Quoted-printable `encoded` with a dot that starts a line written `=2E`, breaking a line
    that grows past QP_WIDTH with a soft line break. No line of a message then starts with a
    dot, so SMTP's dot-stuffing (RFC 5321 4.5.2) has nothing to do for any reader: the body is
    ready for the wire once per edition, not searched and copied once per message."""
    lines = []
    for line in encoded.split(CRLF):
        while line.startswith(b"."):
            line = b"=2E" + line[1:]
            if len(line) <= QP_WIDTH:
                break
            cut = QP_WIDTH - 1  # room for the "=" of the soft line break
            escape = line.rfind(b"=", cut - 2, cut)
            if escape >= 0:  # never split an =XX
                cut = escape
            lines.append(line[:cut] + b"=")
            line = line[cut:]
        lines.append(line)
    return CRLF.join(lines)


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
        self.date: tuple[int | None, bytes] = (None, b"")

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

    def _date(self, when: datetime) -> bytes:
        """The Date header: the same for every message of one second, so written once a
        second (a date is whole seconds)."""
        second = int(when.timestamp())
        if self.date[0] != second:
            self.date = (second, self._header("Date", format_datetime(when)))
        return self.date[1]

    def render(
        self, *, to: str, name: str, msg_id: str, unsubscribe_url: str, when: datetime
    ) -> bytes:
        """One reader's message, as it goes on the wire: CRLF line ends, no line starting with
        a dot (SMTP carries it as it is), signed with DKIM."""
        filled = personalise(
            Rendered(subject="", html=self.html.probe, text=self.text.probe),
            unsubscribe_url=unsubscribe_url,
            name=name,
        )
        out = [
            self.head,
            self._plain(to_header(to, name)),
            self.subject,
            self._date(when),
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
