"""A TLS setting that does not match the relay is named with its fix (`trnews send`, `send --test`).

Each test starts a real aiosmtpd server on loopback with a certificate from a private CA made
here (`trustme`), configures trnews the wrong way an admin would, and reads what the real CLI
prints: the setting to change and how, not only OpenSSL's reason.
"""

from __future__ import annotations

import ssl

import pytest
import trustme
from support.mail import READERS, add_readers, use_smtp, with_meeting
from support.servers import SmtpHandler, smtp_server
from support.site import Site


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


def write_ca(ca: trustme.CA, site: Site) -> str:
    ca.cert_pem.write_to_path(str(site.root / "ca.pem"))
    return "ca.pem"


def failed_test_send(site: Site) -> str:
    """`trnews send --test` against the configured server; its stderr, checked to be one error
    with hints and no traceback."""
    result = site.run("send", "--test", "redaksjon@example.org", check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def test_tls_against_a_starttls_port_says_to_use_starttls(site: Site, ca: trustme.CA) -> None:
    handler = SmtpHandler()
    with_meeting(site)
    context = server_context(ca, "127.0.0.1")
    with smtp_server(handler, tls_context=context, require_starttls=True) as port:
        use_smtp(site, port, security="tls", ca_file=write_ca(ca, site))
        stderr = failed_test_send(site)
        assert "WRONG_VERSION_NUMBER" in stderr
        assert f"the server on port {port} speaks plain SMTP first" in stderr
        assert 'set delivery.smtp.security = "starttls"' in stderr
        assert "the test was not sent" in stderr  # the test send's own advice stays

        use_smtp(site, port, security="starttls", ca_file=write_ca(ca, site))
        site.run("send", "--test", "redaksjon@example.org")
    assert [env.rcpt_tos for env, _ in handler.messages] == [["redaksjon@example.org"]]


def test_starttls_against_an_implicit_tls_port_says_to_use_tls(site: Site, ca: trustme.CA) -> None:
    handler = SmtpHandler()
    with_meeting(site)
    context = server_context(ca, "127.0.0.1")
    with smtp_server(handler, ssl_context=context) as port:
        # The server waits for our handshake as we wait for its greeting: a short timeout.
        use_smtp(site, port, security="starttls", ca_file=write_ca(ca, site), timeout=1)
        stderr = failed_test_send(site)
        assert f"the server on port {port} sent no SMTP greeting" in stderr
        assert 'set delivery.smtp.security = "tls"' in stderr

        use_smtp(site, port, security="tls", ca_file=write_ca(ca, site))
        site.run("send", "--test", "redaksjon@example.org")
    assert len(handler.messages) == 1


def test_an_internal_ca_without_ca_file_names_the_host_and_ca_file(
    site: Site, ca: trustme.CA
) -> None:
    handler = SmtpHandler()
    with_meeting(site)
    add_readers(site, READERS[:1])
    context = server_context(ca, "127.0.0.1")
    with smtp_server(handler, tls_context=context, require_starttls=True) as port:
        use_smtp(site, port, security="starttls")
        result = site.run("send", check=False)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "CERTIFICATE_VERIFY_FAILED" in result.stderr
        assert "the certificate of 127.0.0.1 is not signed by a CA this machine trusts" in (
            result.stderr
        )
        assert "set delivery.smtp.ca_file to your CA's PEM file" in result.stderr
        assert not handler.messages

        use_smtp(site, port, security="starttls", ca_file=write_ca(ca, site))
        site.run("send")
    assert len(handler.messages) == 1


def test_a_certificate_for_another_name_says_so(site: Site, ca: trustme.CA) -> None:
    handler = SmtpHandler()
    with_meeting(site)
    # Made out to the relay's name only, while the config dials its IP address.
    context = server_context(ca, "relay.example.org")
    with smtp_server(handler, tls_context=context, require_starttls=True) as port:
        use_smtp(site, port, security="starttls", ca_file=write_ca(ca, site))
        stderr = failed_test_send(site)
        assert "certificate of the SMTP server is not made out to '127.0.0.1'" in stderr
        assert "set delivery.smtp.host to a name the certificate carries" in stderr
    assert not handler.messages
