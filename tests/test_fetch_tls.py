"""Feeds over https: certificates checked against the authorities the admin's environment names
(SSL_CERT_FILE, else SSL_CERT_DIR, else certifi's bundle), read only once a handshake needs them,
through the real CLI against a loopback https server with a private CA."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import certifi
import pytest
import trustme
from support.feeds import Post, one_ambassador, rss
from support.servers import FeedServer
from support.site import Site


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def https_feeds(ca: trustme.CA) -> Iterator[FeedServer]:
    """A feed server on https://127.0.0.1 with a certificate from the private CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with FeedServer(tls=context) as server:
        yield server


def feed_line(stdout: str, url: str) -> str:
    [line] = [line for line in stdout.splitlines() if url in line]
    return line


def test_an_https_feed_is_read_with_the_authorities_of_ssl_cert_file(
    site: Site, https_feeds: FeedServer, ca: trustme.CA
) -> None:
    url = https_feeds.add("/feed.xml", rss(Post("Sikker blogg", "https://blogg.example.org/1")))
    assert url.startswith("https://")
    ca.cert_pem.write_to_path(str(site.root / "ca.pem"))
    site.env["SSL_CERT_FILE"] = str(site.root / "ca.pem")
    one_ambassador(site, url)
    line = feed_line(site.run("collect").stdout, url)
    assert line.startswith("ok") and "1 new item" in line, line


def test_an_https_feed_whose_certificate_no_trusted_authority_signed_fails(
    site: Site, https_feeds: FeedServer
) -> None:
    url = https_feeds.add("/feed.xml", rss(Post("Falsk blogg", "https://blogg.example.org/1")))
    site.env["SSL_CERT_FILE"] = certifi.where()  # the public authorities: not the private CA
    one_ambassador(site, url)
    line = feed_line(site.run("collect").stdout, url)
    assert line.startswith("FAILED") and "certificate" in line.lower(), line
    assert not https_feeds.requests_to("/feed.xml")  # nothing was asked over an unchecked line
