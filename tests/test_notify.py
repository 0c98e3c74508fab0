"""One message sent now (pipeline.deliver.notify): a test send and an alert to the admins are
signed with `[delivery.dkim]` and carry the newsletter's Reply-To, as an edition's messages do.

Each case runs the CLI as a process against the loopback SMTP server, and checks the bytes it
received with dkimpy against the test's public key (served by a `dnsfunc`: no public DNS here).
The confirmation of a web sign-up is checked the same way in test_web.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dkim
from support.mail import DKIM_TOML, DkimKey
from support.servers import SmtpServer
from support.site import Site

ADMIN = "admin@example.org"
REPLY_TO = "post@example.org"
"""The Reply-To of conftest's config."""


def signed_site(site: Site, dkim_key: DkimKey, extra: str = "") -> None:
    (site.root / "dkim.pem").write_bytes(dkim_key.pem)
    site.extra_toml = DKIM_TOML.format(key_file="dkim.pem") + extra
    site.transport = "smtp"
    start = (datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0).isoformat()
    site.meeting(f'title = "Regionrådet"\nstart = {start}')


def received(smtp: SmtpServer, address: str) -> list[bytes]:
    """The bytes the SMTP server accepted for `address`, as they came."""
    with smtp.handler.lock:
        raw = [env.original_content for env, _ in smtp.handler.messages if address in env.rcpt_tos]
    assert all(isinstance(r, bytes) for r in raw)
    return [r for r in raw if isinstance(r, bytes)]


def test_a_test_send_is_signed_with_dkim_and_carries_reply_to(
    site: Site, smtp: SmtpServer, dkim_key: DkimKey
) -> None:
    signed_site(site, dkim_key)
    site.run("send", "--test", "redaksjon@example.org")
    [raw] = received(smtp, "redaksjon@example.org")
    assert dkim.verify(raw, dnsfunc=dkim_key.dns)
    assert f"\r\nReply-To: {REPLY_TO}\r\n".encode() in raw.partition(b"\r\n\r\n")[0]


def test_an_alert_to_the_admins_is_signed_with_dkim_and_carries_reply_to(
    site: Site, smtp: SmtpServer, dkim_key: DkimKey
) -> None:
    signed_site(site, dkim_key, f'\n[alerts]\nto = ["{ADMIN}"]\n')
    site.run("subscribers", "add", "borte@example.org")
    smtp.handler.refuse["borte@example.org"] = "550 5.1.1 no such user"
    site.run("send")  # the reader refused for good is reported to the admin
    [raw] = received(smtp, ADMIN)
    head = raw.partition(b"\r\n\r\n")[0]
    assert b"\r\nAuto-Submitted: auto-generated\r\n" in head  # it is the alert
    assert dkim.verify(raw, dnsfunc=dkim_key.dns)
    assert f"\r\nReply-To: {REPLY_TO}\r\n".encode() in head
    # Whoever changes the alert on the way breaks the signature.
    forged = raw.replace(b"borte@example.org", b"borte@example.net")
    assert forged != raw and not dkim.verify(forged, dnsfunc=dkim_key.dns)
