"""Signed tokens for per-reader links, and every public URL trnews writes (in messages, feeds
and pages that leave the site): a token names a subscriber and cannot be guessed or forged."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from .config import Config
from .store import Store

MAC_BYTES = 16
MAX_ID_DIGITS = 18
"""Every SQLite integer id has at most 19 digits; 18 keep clear of its limit."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _mac(secret: str, purpose: str, subscriber_id: int) -> bytes:
    msg = f"{purpose}:{subscriber_id}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).digest()[:MAC_BYTES]


def sign(secret: str, purpose: str, subscriber_id: int) -> str:
    """A token for `purpose` naming this subscriber; it never expires, so links in editions
    already sent keep working. Purposes: "unsubscribe", and "confirm:{nonce}" with the nonce of
    one sign-up, so a confirmation link confirms that sign-up and no later one."""
    return f"{subscriber_id}.{_b64(_mac(secret, purpose, subscriber_id))}"


def verify(secret: str, purpose: str, token: str) -> int | None:
    """The subscriber id a token names, or None if it is malformed or forged.

    Only the one spelling `sign` makes is taken (no leading zeros in the id; no padding, other
    alphabet or padding bits set in the MAC): a link has one spelling, so a variant of it never
    slips past something that knows the link by its text, such as a proxy's deny list."""
    subscriber_id = claimed_id(token)
    if subscriber_id is None:
        return None
    expected = sign(secret, purpose, subscriber_id)
    return subscriber_id if hmac.compare_digest(token.encode(), expected.encode()) else None


def claimed_id(token: str) -> int | None:
    """The subscriber id a token claims to name, before it is verified: the consent records of
    that subscriber hold the nonce a confirmation token is signed with."""
    return url_id(token.partition(".")[0])


def url_id(text: str) -> int | None:
    """A row id as written in a link (a token's head, an archived edition's number): digits
    with no leading zero, at most 18 of them (SQLite's integers); None for anything else."""
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_ID_DIGITS:
        return None
    if text.startswith("0"):
        return None
    return int(text)


def link_secret(config: Config, store: Store) -> str:
    """The key that signs links: from the environment variable the config names, else the
    database's own (made once, then kept)."""
    return os.environ.get(config.newsletter.secret_env) or store.secret()


# -- public URLs, all relative to newsletter.public_url ----------------------------------------


def unsubscribe_url(config: Config, secret: str, subscriber_id: int) -> str:
    """A reader's own unsubscribe link, as their messages carry it."""
    token = sign(secret, "unsubscribe", subscriber_id)
    return f"{config.newsletter.public_url}/unsubscribe/{token}"


def preview_unsubscribe_url(config: Config) -> str:
    """Where the unsubscribe link of a preview or test message points: a token that names no one."""
    return f"{config.newsletter.public_url}/unsubscribe/preview"


def neutral_unsubscribe_url(config: Config) -> str:
    """The unsubscribe page that names no one ("use the link in your message"): the archive's
    copy of an edition links there."""
    return f"{config.newsletter.public_url}/unsubscribe"


def confirm_url(config: Config, secret: str, subscriber_id: int, nonce: str) -> str:
    """The link of a sign-up's confirmation message: it confirms that sign-up and no later one."""
    token = sign(secret, f"confirm:{nonce}", subscriber_id)
    return f"{config.newsletter.public_url}/confirm/{token}"


def archive_url(config: Config, edition_id: int | None = None) -> str:
    """The archive of past editions, or one edition in it."""
    base = f"{config.newsletter.public_url}/archive"
    return base if edition_id is None else f"{base}/{edition_id}"


def archive_feed_url(config: Config) -> str:
    """The archive as an Atom feed."""
    return f"{config.newsletter.public_url}/archive.atom"
