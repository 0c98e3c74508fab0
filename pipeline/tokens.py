"""Signed tokens for per-reader links: they name a subscriber and cannot be guessed or forged."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from .config import Config
from .store import Store

MAC_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, purpose: str, subscriber_id: int) -> bytes:
    msg = f"{purpose}:{subscriber_id}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).digest()[:MAC_BYTES]


def sign(secret: str, purpose: str, subscriber_id: int) -> str:
    """A token for `purpose` naming this subscriber; it never expires, so links in editions
    already sent keep working. Purposes: "unsubscribe", and "confirm:{nonce}" with the nonce of
    one sign-up, so a confirmation link confirms that sign-up and no later one."""
    return f"{subscriber_id}.{_b64(_mac(secret, purpose, subscriber_id))}"


def verify(secret: str, purpose: str, token: str) -> int | None:
    """The subscriber id a token names, or None if it is malformed or forged."""
    head, sep, mac = token.partition(".")
    if not sep or not (head.isascii() and head.isdigit()) or len(head) > 18:
        return None
    try:
        given = _unb64(mac)
    except ValueError:
        return None
    subscriber_id = int(head)
    return (
        subscriber_id if hmac.compare_digest(given, _mac(secret, purpose, subscriber_id)) else None
    )


def claimed_id(token: str) -> int | None:
    """The subscriber id a token claims to name, before it is verified: the consent records of
    that subscriber hold the nonce a confirmation token is signed with."""
    head = token.partition(".")[0]
    return int(head) if head.isascii() and head.isdigit() and len(head) <= 18 else None


def link_secret(config: Config, store: Store) -> str:
    """The key that signs links: from the environment variable the config names, else the
    database's own (made once, then kept)."""
    return os.environ.get(config.newsletter.secret_env) or store.secret()
