"""Shared fixtures: a real HTTP server for feeds, a real SMTP server, the CLI as a process, a
DKIM key and Chromium. What they are built of lives in tests/support/.

Feed files under tests/data/ are dated around 26 November 2026; `feed_bytes` moves their dates
by whole days so that 26 November 2026 is always yesterday (see pipeline/demo.py).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from support.browser import launch_chromium
from support.mail import DkimKey
from support.servers import FeedServer, SilentServer, SmtpHandler, SmtpServer, free_port
from support.site import Site

# -- HTTP ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    yield server
    server.close()


@pytest.fixture
def feeds(_feed_server: FeedServer) -> Iterator[FeedServer]:
    """The loopback feed server, with no routes registered."""
    _feed_server.reset()
    yield _feed_server
    _feed_server.reset()


# -- a host that hangs ----------------------------------------------------------------------


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


# -- SMTP ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _smtp_server() -> Iterator[SmtpServer]:
    handler = SmtpHandler()
    port = free_port()  # Controller(port=0) fails: it probes the port it was given
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield SmtpServer(handler, port)
    controller.stop()


@pytest.fixture
def smtp(_smtp_server: SmtpServer) -> Iterator[SmtpServer]:
    """The loopback SMTP server, with no messages and no faults."""
    _smtp_server.handler.messages.clear()
    _smtp_server.handler.arrived.clear()
    _smtp_server.handler.refuse.clear()
    yield _smtp_server
    _smtp_server.handler.messages.clear()
    _smtp_server.handler.refuse.clear()


# -- config and CLI --------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path, _smtp_server: SmtpServer) -> Site:
    """An empty working folder with a config writer and the CLI."""
    return Site(root=tmp_path, smtp_port=_smtp_server.port)


# -- DKIM ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dkim_key() -> DkimKey:
    """A 2048-bit RSA key for `[delivery.dkim]` (DKIM_TOML), made once."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption())
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return DkimKey(pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der))


# -- Chromium -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium through Playwright, one per test module; skips, naming the package,
    when either is missing."""
    yield from launch_chromium()
