"""What a message to the return path is: a bounce (permanent or temporary failure), a complaint,
an auto-reply, or something else; and which addresses it names. No I/O here.

Delivery status notifications (RFC 3464) are read with the standard library's email package,
per recipient (`Action` and `Status`: 5.x.x permanent, 4.x.x temporary, `delayed` no failure);
the older formats of decades of mail servers through `flufl.bounce` (Mailman's detector);
feedback reports (ARF, RFC 5965) are complaints. An auto-reply ("out of office") is told apart
so that it is left alone.
"""

from __future__ import annotations

import email
import email.message
import hashlib
import logging
import re
from dataclasses import dataclass
from email.utils import getaddresses
from enum import StrEnum

from ..sanitize import one_line

logger = logging.getLogger(__name__)
# flufl.bounce runs each of its detectors in turn, and logs one that trips over an odd message
# with a traceback at ERROR before it carries on with the others: no error of the admin's.
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)


class Kind(StrEnum):
    """What one message (or one address it names) is."""

    PERMANENT = "permanent"
    TEMPORARY = "temporary"
    DELAYED = "delayed"
    """A delivery report that reports no failure: delayed (still being tried) or delivered."""
    COMPLAINT = "complaint"
    AUTO_REPLY = "auto-reply"
    UNKNOWN = "not understood"


@dataclass(frozen=True)
class Failure:
    """One address a report names, and what happened to it."""

    address: str
    """As the report gives it ('' when it names none, as a complaint with the address redacted)."""
    kind: Kind
    reason: str
    """One line for the admins: the status and the server's words, or the report's subject."""


@dataclass(frozen=True)
class Report:
    """One message read from the return path's mailbox."""

    kind: Kind
    """The message as a whole: the gravest kind among its failures, or AUTO_REPLY or UNKNOWN."""
    key: str
    """Names the report, so that the same one read again changes nothing: its Message-ID, or
    a hash of its bytes when it has none."""
    failures: tuple[Failure, ...]
    envelope: str
    """Everything in it where the return path's VERP address may show: the addresses it was
    sent to, and the envelope sender of the original message it reports on."""


MAX_REASON = 300
RANK = (Kind.COMPLAINT, Kind.PERMANENT, Kind.TEMPORARY, Kind.DELAYED)

ENVELOPE_HEADERS = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To")
"""The headers of a report that name where it was sent: the VERP address, when it was."""

AUTO_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto(matic)?[- ]?(reply|response|svar)|"
    r"autosvar|automatisk svar|fravær|fraværende|abwesenheit|vacation|away from)",
    re.I,
)


def recognise(raw: bytes) -> Report:
    """Read one message: what it is and which addresses it names."""
    msg = email.message_from_bytes(raw)
    mid = str(msg.get("Message-ID", "")).strip()
    key = f"message-id:{mid}" if mid else "sha256:" + hashlib.sha256(raw).hexdigest()
    envelope = [str(v) for h in ENVELOPE_HEADERS for v in msg.get_all(h, [])]
    original = _original(msg)
    if original is not None:  # the envelope sender of the message reported on
        envelope.append(str(original.get("Return-Path", "")))
    failures = _complaint(msg, original, envelope)
    if failures is None:
        failures = _dsn(msg)
    if not failures:  # no report, or a malformed one that names no failure: the older formats
        failures = _older_formats(msg) or failures
    if failures:
        kind = next(k for k in RANK if any(f.kind is k for f in failures))
    elif failures is not None:  # a delivery report naming no one
        kind = Kind.DELAYED
    elif _auto_reply(msg):
        kind = Kind.AUTO_REPLY
    else:
        kind = Kind.UNKNOWN
    return Report(kind, key, tuple(failures or ()), "\n".join(envelope))


def _complaint(
    msg: email.message.Message, original: email.message.Message | None, envelope: list[str]
) -> list[Failure] | None:
    """The addresses of a feedback report (ARF, RFC 5965), or None if it is none."""
    report = _part(msg, "message/feedback-report")
    if report is None:
        return None
    fields = _blocks(report)
    head = fields[0] if fields else email.message.Message()
    kind = str(head.get("Feedback-Type", "abuse")).strip().lower()
    if kind == "not-spam":
        return []
    envelope.append(str(head.get("Original-Mail-From", "")))
    addresses = [_address(v) for v in head.get_all("Original-Rcpt-To", [])]
    if not addresses and original is not None:
        addresses = [a for _, a in getaddresses([str(v) for v in original.get_all("To", [])])]
    reason = _line(f"complaint ({kind}) from {head.get('Reporting-MTA') or _sender(msg)}")
    return [Failure(a, Kind.COMPLAINT, reason) for a in dict.fromkeys(addresses) if a] or [
        Failure("", Kind.COMPLAINT, reason)
    ]


def _dsn(msg: email.message.Message) -> list[Failure] | None:
    """The recipients a delivery status notification (RFC 3464) reports on, or None if the
    message is none."""
    status = _part(msg, "message/delivery-status")
    if status is None:
        return None
    out: list[Failure] = []
    for block in _blocks(status)[1:]:  # the first block is about the message as a whole
        address = _address(block.get("Original-Recipient") or block.get("Final-Recipient") or "")
        action = str(block.get("Action", "")).strip().lower()
        code = str(block.get("Status", "")).strip()
        if action == "failed":
            kind = Kind.TEMPORARY if code.startswith("4") else Kind.PERMANENT
        elif action == "delayed":
            kind = Kind.DELAYED
        else:
            continue  # delivered, relayed, expanded: no failure
        diagnostic = str(block.get("Diagnostic-Code", "")).partition(";")[2].strip()
        reason = _line(" ".join(p for p in (code, diagnostic) if p) or action)
        out.append(Failure(address, kind, reason))
    return out


def _older_formats(msg: email.message.Message) -> list[Failure] | None:
    """The failures `flufl.bounce` finds in a bounce of an older format, or None."""
    from flufl.bounce import all_failures

    try:
        temporary, permanent = all_failures(msg)
    except Exception as e:  # one odd message must not stop the others
        logger.warning("The bounce detector failed on %s: %s", _named(msg), e)
        return None
    if not temporary and not permanent:
        return None
    text = _text(msg)
    out = []
    for raw, kind in [
        *((a, Kind.PERMANENT) for a in permanent),
        *((a, Kind.TEMPORARY) for a in temporary),
    ]:
        address = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        out.append(Failure(address, kind, _reason(text, address, msg)))
    return sorted(out, key=lambda f: (f.kind, f.address))


def _named(msg: email.message.Message) -> str:
    """A message as a log line names it: its Message-ID, else its sender and subject."""
    if msg.get("Message-ID"):
        return one_line(str(msg["Message-ID"]))[:200]
    if msg.get("From") or msg.get("Subject"):
        return one_line(f"the message from {msg.get('From', '')} ({msg.get('Subject', '')})")[:200]
    return "a message with no Message-ID, From or Subject"


def _auto_reply(msg: email.message.Message) -> bool:
    auto = str(msg.get("Auto-Submitted", "no")).strip().lower()
    if auto != "no" or msg.get("X-Autoreply") or msg.get("X-Autorespond"):
        return True
    if str(msg.get("Precedence", "")).strip().lower() == "auto_reply":
        return True
    return bool(AUTO_SUBJECT.match(str(msg.get("Subject", ""))))


def _part(msg: email.message.Message, content_type: str) -> email.message.Message | None:
    for part in msg.walk():
        if part.get_content_type() == content_type:
            return part
    return None


def _blocks(part: email.message.Message) -> list[email.message.Message]:
    """The header blocks of a delivery-status or feedback-report part, however it was sent."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload:
        return [p for p in payload if isinstance(p, email.message.Message)]
    data = part.get_payload(decode=True)
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(payload)
    chunks = re.split(r"\r?\n\s*\r?\n", text.strip())
    return [email.message_from_string(c.strip() + "\n") for c in chunks if c.strip()]


def _original(msg: email.message.Message) -> email.message.Message | None:
    """The headers of the message a report is about, if it carries them."""
    for part in msg.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner:
                first = inner[0]
                return first if isinstance(first, email.message.Message) else None
        if kind == "text/rfc822-headers":
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                return email.message_from_bytes(data)
    return None


def _address(value: object) -> str:
    """The address of a DSN or ARF field: `rfc822; kari@example.org` → `kari@example.org`."""
    text = str(value)
    if ";" in text:
        text = text.partition(";")[2]
    return text.strip().strip("<>").strip()


def _sender(msg: email.message.Message) -> str:
    return getaddresses([str(msg.get("From", ""))])[0][1] or "an unnamed sender"


def _text(msg: email.message.Message) -> str:
    """The plain text of a message: its first text/plain part, else its first text part with
    the tags taken out."""
    parts = [p for p in msg.walk() if p.get_content_maintype() == "text"]
    parts.sort(key=lambda p: p.get_content_subtype() != "plain")
    for part in parts:
        data = part.get_payload(decode=True)
        if isinstance(data, bytes):
            try:
                text = data.decode(part.get_content_charset() or "latin-1", "replace")
            except LookupError:  # a charset no codec knows: read it as bytes are
                text = data.decode("latin-1")
            return text if part.get_content_subtype() == "plain" else re.sub(r"<[^>]*>", " ", text)
    return ""


def _reason(text: str, address: str, msg: email.message.Message) -> str:
    """What a bounce of an older format says about an address: the first line with an SMTP
    reply or the address in it, else its subject."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if re.search(r"\b[45][0-9][0-9][ -]", line) or re.search(
            r"\b[45]\.[0-9]{1,3}\.[0-9]", line
        ):
            return _line(line)
    for line in lines:
        if address.lower() in line.lower() and len(line) > len(address) + 4:
            return _line(line)
    return _line(str(msg.get("Subject", "")) or "bounced")


def _line(text: str) -> str:
    return one_line(text)[:MAX_REASON]
