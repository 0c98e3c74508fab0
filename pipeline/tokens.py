"""Signed tokens for per-reader links, and every public URL trnews writes (in messages, feeds
and pages that leave the site): a token names a subscriber and cannot be guessed or forged."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

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


def desk_token(secret: str, draft_id: int, nonce: str, editor: int, address: str) -> str:
    """The link of one editor (their place, from 1, in the draft's list, and their address) to
    one draft: `{draft}.{editor}.{mac}`. The draft's random nonce is signed too, so a link of
    another database's draft with the same number is no link here, and an address that left
    the list, or another in its place, makes the link die with it."""
    mac = _mac(secret, f"desk:{nonce}:{editor}:{address.lower()}", draft_id)
    return f"{draft_id}.{editor}.{_b64(mac)}"


def desk_claim(token: str) -> tuple[int, int] | None:
    """The (draft id, editor number) a desk token claims, before it is verified; None when it
    does not have a desk token's shape (an unsubscribe token does not)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    draft_id, editor = url_id(parts[0]), url_id(parts[1])
    if draft_id is None or editor is None:
        return None
    return draft_id, editor


def desk_verify(
    secret: str, token: str, draft_id: int, nonce: str, editor: int, address: str
) -> bool:
    """Whether `token` is the one `desk_token` makes for this editor and draft."""
    expected = desk_token(secret, draft_id, nonce, editor, address)
    return hmac.compare_digest(token.encode(), expected.encode())


VERP_MAC_BYTES = 10
"""A return path's MAC: 16 characters of base32, short enough for any local part."""


def return_path(return_to: str, secret: str, edition_id: int, subscriber_id: int) -> str:
    """The envelope sender of one reader's copy of one edition (VERP): `local+TOKEN@domain` of
    the configured return path, TOKEN `{edition}-{subscriber}-{mac}`. Lower case only, as some
    servers fold the case of the address they bounce to."""
    local, _, domain = return_to.rpartition("@")
    mac = _mac(secret, f"return-path:{edition_id}", subscriber_id)[:VERP_MAC_BYTES]
    code = base64.b32encode(mac).decode().rstrip("=").lower()
    return f"{local}+{edition_id}-{subscriber_id}-{code}@{domain}"


VERP = re.compile(
    r"([^\s<>@\"+:;,()]+)\+([0-9]{1,18})-([0-9]{1,18})-([a-z2-7]{16})@([^\s<>\"'();,]+)", re.I
)


def return_path_claim(return_to: str, secret: str, text: str) -> tuple[int, int] | None:
    """The (edition, subscriber) a VERP address of ours anywhere in `text` names, once its MAC
    is verified; None if there is none (or only forged ones)."""
    local, _, domain = return_to.lower().rpartition("@")
    for m in VERP.finditer(text):
        if m[1].lower() != local or m[5].lower().rstrip(".") != domain:
            continue
        edition_id, subscriber_id = url_id(m[2]), url_id(m[3])
        if edition_id is None or subscriber_id is None:
            continue
        expected = return_path(return_to, secret, edition_id, subscriber_id)
        if hmac.compare_digest(m[0].lower().encode(), expected.lower().encode()):
            return edition_id, subscriber_id
    return None


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


def desk_url(
    config: Config, secret: str, draft_id: int, nonce: str, editor: int, address: str
) -> str:
    """One editor's page for one draft: the draft, and a control for each of the desk's
    actions; it dies when the edition is sent."""
    token = desk_token(secret, draft_id, nonce, editor, address)
    return f"{config.newsletter.public_url}/desk/{token}"


def archive_url(config: Config, edition_id: int | None = None) -> str:
    """The archive of past editions, or one edition in it."""
    base = f"{config.newsletter.public_url}/archive"
    return base if edition_id is None else f"{base}/{edition_id}"


def archive_feed_url(config: Config) -> str:
    """The archive as an Atom feed."""
    return f"{config.newsletter.public_url}/archive.atom"
