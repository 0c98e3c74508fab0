"""Delivering an edition (SPEC.md "Each message" and `trnews send`), end to end through the CLI.

Every message goes through a real aiosmtpd server on loopback (or the Maildir transport) and
is read back as a subscriber's mail client would read it. Servers with STARTTLS, implicit TLS,
AUTH and faults (4xx/5xx replies, a closed port, a server that hangs up mid-run) are
started here with their own `Controller`; certificates come from `trustme`. The CLI runs with
TRNEWS_SECRET=test-secret, so tokens and Message-IDs can be checked with the same secret.
DKIM signatures are checked with dkimpy against a key made here. More faults, and runs killed
mid-send, are in test_delivery_faults.py.
"""

from __future__ import annotations

import email
import email.policy
import re
import sqlite3
import ssl
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Any

import dkim
import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from support.feeds import feed_bytes
from support.mail import (
    DKIM_TOML,
    READERS,
    DkimKey,
    add_readers,
    html_part,
    text_part,
    use_smtp,
    with_meeting,
)
from support.paths import ROOT
from support.servers import SmtpHandler, SmtpServer, free_port, smtp_server
from support.site import Site, status_editions

from pipeline.config import Config, SmtpConfig, load_config
from pipeline.deliver import MessageTemplate, SmtpTransport, build_message, message_id, to_header
from pipeline.errors import Refused
from pipeline.models import Rendered
from pipeline.render import personalise
from pipeline.tokens import verify

SECRET = "test-secret"
PUBLIC_URL = "https://nyhetsbrev.example.org"
UNSUBSCRIBE = re.compile(rf"^<({re.escape(PUBLIC_URL)}/unsubscribe/([^>]+))>$")
ONCE_EACH = ("From", "To", "Subject", "Date", "Message-ID")


# -- helpers ----------------------------------------------------------------------------------


def subscriber_ids(site: Site) -> dict[str, int]:
    """Address → subscriber id, read from the database the CLI wrote."""
    with closing(sqlite3.connect(site.db)) as db:
        return dict(db.execute("SELECT email, id FROM subscribers").fetchall())


def sent_edition(stdout: str) -> int:
    """The edition id from `send`'s summary line ("Sent edition 3: …", "Resumed edition 3: …")."""
    found = re.search(r"(?:Sent|Resumed) edition (\d+):", stdout)
    assert found, stdout
    return int(found.group(1))


def recipients(handler: SmtpHandler) -> Counter[str]:
    """How many messages each envelope recipient got."""
    with handler.lock:
        return Counter(r for env, _ in handler.messages for r in env.rcpt_tos)


def unsubscribe_link(msg: EmailMessage) -> tuple[str, str]:
    """The List-Unsubscribe URL and its token."""
    # A long header may be folded right after the colon; the value is what follows.
    found = UNSUBSCRIBE.match(str(msg["List-Unsubscribe"]).strip())
    assert found, msg["List-Unsubscribe"]
    return found.group(1), found.group(2)


def tampered(token: str) -> list[str]:
    """Forgeries of a token: another reader's id with the same MAC, and a changed MAC."""
    head, _, mac = token.partition(".")
    flipped = ("A" if mac[0] != "A" else "B") + mac[1:]
    return [f"{int(head) + 1}.{mac}", f"{head}.{flipped}", head, f"{head}.", ""]


def assert_well_formed(
    msg: EmailMessage, address: str, subscriber_id: int, edition: int, config: Config
) -> None:
    """One reader's message for this edition, as SPEC.md "Each message" describes it."""
    for name in ONCE_EACH:
        assert len(msg.get_all(name) or []) == 1, f"{name}: {msg.get_all(name)}"
    assert [a for _, a in getaddresses(msg.get_all("To") or [])] == [address]
    assert parseaddr(str(msg["From"])) == ("Trondheimsregionen", "nyhetsbrev@example.org")
    assert str(msg["Reply-To"]) == "post@example.org"
    assert str(msg["List-Id"]) == '"Ambassadørnytt" <ambassadornytt.nyhetsbrev.example.org>'
    assert str(msg["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    assert str(msg["Subject"]).startswith("Ambassadørnytt ")
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert [p.get_content_charset() for p in parts] == ["utf-8", "utf-8"]

    url, token = unsubscribe_link(msg)
    assert verify(SECRET, "unsubscribe", token) == subscriber_id
    for forged in tampered(token):
        assert verify(SECRET, "unsubscribe", forged) is None
    assert verify("another-secret", "unsubscribe", token) is None
    # The visible unsubscribe links are the header's.
    assert f"Meld deg av: {url}\n" in text_part(msg)
    assert f'<a href="{url}"' in html_part(msg)
    # The same edition and reader always give the same Message-ID.
    assert str(msg["Message-ID"]) == message_id(SECRET, edition, subscriber_id, config)


@dataclass
class Tls:
    ca: trustme.CA
    server: ssl.SSLContext

    def write_ca(self, folder: Path) -> str:
        self.ca.cert_pem.write_to_path(str(folder / "ca.pem"))
        return "ca.pem"


@pytest.fixture(scope="module")
def tls() -> Tls:
    """A private CA and a server certificate for 127.0.0.1, as an internal relay would have."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return Tls(ca, context)


# -- one edition through SMTP, read by every test of this block ---------------------------------


@dataclass
class Delivered:
    site: Site
    handler: SmtpHandler
    ids: dict[str, int]
    edition: int
    stdout: str

    def messages_to(self, address: str) -> list[EmailMessage]:
        return [m for env, m in self.handler.messages if address in env.rcpt_tos]


@pytest.fixture(scope="module")
def delivered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Delivered]:
    """An edition with real feed items and a meeting, sent by `trnews send` over SMTP to three
    active readers; a fourth reader unsubscribed before the send."""
    handler = SmtpHandler()
    site = Site(root=tmp_path_factory.mktemp("smtp-site"))
    (site.root / "kari.xml").write_bytes(feed_bytes("blog_wordpress.xml"))
    site.ambassador(
        "kari-nordmann", "Kari Nordmann", "Prorektor, NTNU", [{"url": "kari.xml", "kind": "blog"}]
    )
    with_meeting(site)
    with smtp_server(handler) as port:
        use_smtp(site, port)
        add_readers(site, [*READERS, ("dag@example.org", "Dag Avmeldt")])
        site.run("subscribers", "remove", "dag@example.org")
        site.run("collect")
        out = site.run("send").stdout
        yield Delivered(site, handler, subscriber_ids(site), sent_edition(out), out)


def test_smtp_send_gives_each_active_reader_one_message_to_them_alone(
    delivered: Delivered,
) -> None:
    assert "3 delivered, 0 deferred, 0 failed" in delivered.stdout
    assert recipients(delivered.handler) == {address: 1 for address, _ in READERS}
    for envelope, _ in delivered.handler.messages:
        assert len(envelope.rcpt_tos) == 1  # one RCPT per message: no reader sees another
        assert envelope.mail_from == "nyhetsbrev@example.org"
    assert not delivered.messages_to("dag@example.org")


def test_each_smtp_message_has_the_parts_and_headers_of_the_spec(delivered: Delivered) -> None:
    for address, _ in READERS:
        [msg] = delivered.messages_to(address)
        assert_well_formed(
            msg,
            address,
            delivered.ids[address],
            delivered.edition,
            load_config(delivered.site.config),
        )
        assert "Kommende møter" in text_part(msg)  # the edition itself, not an empty shell
        assert "Blogginnlegg" in text_part(msg)


def test_to_header_carries_the_readers_name(delivered: Delivered) -> None:
    [msg] = delivered.messages_to("bjorn@example.net")
    assert getaddresses([str(msg["To"])]) == [("Bjørn Ødegård", "bjorn@example.net")]


def test_no_message_carries_another_readers_address_or_token(delivered: Delivered) -> None:
    tokens = {}
    for address, _ in READERS:
        [msg] = delivered.messages_to(address)
        tokens[address] = unsubscribe_link(msg)[1]
    for address, _ in READERS:
        [msg] = delivered.messages_to(address)
        readable = "\n".join(
            [*(f"{k}: {v}" for k, v in msg.items()), text_part(msg), html_part(msg)]
        )
        for other, _ in READERS:
            if other != address:
                assert other not in readable
                assert tokens[other] not in readable
        assert "dag@example.org" not in readable


def test_message_ids_differ_between_readers_and_editions(delivered: Delivered) -> None:
    ids = [str(m["Message-ID"]) for _, m in delivered.handler.messages]
    assert len(set(ids)) == len(READERS)
    config = load_config(delivered.site.config)
    reader = delivered.ids["anne@example.org"]
    assert message_id(SECRET, 1, reader, config) == message_id(SECRET, 1, reader, config)
    assert message_id(SECRET, 1, reader, config) != message_id(SECRET, 2, reader, config)
    assert message_id(SECRET, 1, reader, config) != message_id(SECRET, 1, reader + 1, config)


def test_status_counts_the_delivered_edition(delivered: Delivered) -> None:
    [edition] = status_editions(delivered.site)
    assert edition["id"] == delivered.edition
    assert (edition["recipients"], edition["delivered"], edition["failed"]) == (3, 3, 0)
    assert edition["status"] == "sent"


def test_reply_to_is_left_out_when_not_configured(tmp_path: Path) -> None:
    path = tmp_path / "trnews.toml"
    path.write_text(
        '[newsletter]\ntitle = "Ambassadørnytt"\n'
        'sender = "Trondheimsregionen <nyhetsbrev@example.org>"\n'
        f'public_url = "{PUBLIC_URL}"\n',
        encoding="utf-8",
    )
    msg = build_message(
        load_config(path),
        Rendered(subject="Ambassadørnytt", html="<p>Hei</p>", text="Hei"),
        to="anne@example.org",
        unsubscribe_url=f"{PUBLIC_URL}/unsubscribe/1.x",
        when=datetime(2026, 2, 17, 7, tzinfo=UTC),
    )
    assert "Reply-To" not in msg
    assert str(msg["List-Unsubscribe"]) == f"<{PUBLIC_URL}/unsubscribe/1.x>"


# -- the Maildir transport --------------------------------------------------------------------


def test_maildir_transport_writes_one_parseable_file_per_message(site: Site) -> None:
    with_meeting(site)
    add_readers(site, READERS)
    out = site.run("send").stdout
    files = sorted(site.outbox.iterdir())
    assert len(files) == len(READERS)
    ids = subscriber_ids(site)
    by_address = {}
    for msg in site.messages():
        [(_, address)] = getaddresses([str(msg["To"])])
        by_address[address] = msg
    assert set(by_address) == {address for address, _ in READERS}
    for address, msg in by_address.items():
        assert_well_formed(msg, address, ids[address], sent_edition(out), load_config(site.config))


# -- TLS and AUTH -----------------------------------------------------------------------------


def test_starttls_checks_the_certificate_against_ca_file(site: Site, tls: Tls) -> None:
    handler = SmtpHandler()
    with_meeting(site)
    with smtp_server(handler, tls_context=tls.server, require_starttls=True) as port:
        use_smtp(site, port, security="starttls")
        add_readers(site, READERS)
        failed = site.run("send", check=False)
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "certificate" in failed.stderr.lower()
        assert "Traceback" not in failed.stderr
        assert not handler.messages

        use_smtp(site, port, security="starttls", ca_file=tls.write_ca(site.root))
        site.run("send")
    assert recipients(handler) == {address: 1 for address, _ in READERS}


def test_implicit_tls_delivers_with_ca_file(site: Site, tls: Tls) -> None:
    handler = SmtpHandler()
    with_meeting(site)
    with smtp_server(handler, ssl_context=tls.server) as port:
        use_smtp(site, port, security="tls", ca_file=tls.write_ca(site.root))
        add_readers(site, READERS[:2])
        site.run("send")
    assert recipients(handler) == {address: 1 for address, _ in READERS[:2]}


def only_login(user: str, password: str) -> Any:
    """An aiosmtpd authenticator that accepts this one login."""

    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False)

    return authenticate


def test_smtp_login_with_the_password_from_the_named_env_var(site: Site, tls: Tls) -> None:
    handler = SmtpHandler()
    with_meeting(site)
    auth = {"authenticator": only_login("trnews", "riktig-passord"), "auth_required": True}
    with smtp_server(handler, tls_context=tls.server, require_starttls=True, **auth) as port:
        use_smtp(
            site,
            port,
            security="starttls",
            ca_file=tls.write_ca(site.root),
            username="trnews",
            password_env="RELAY_PASSWORD",
        )
        add_readers(site, READERS)
        site.env["RELAY_PASSWORD"] = "feil-passord"
        refused = site.run("send", check=False)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "login" in refused.stderr and "RELAY_PASSWORD" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert not handler.messages

        site.env["RELAY_PASSWORD"] = "riktig-passord"
        site.run("send")
    # Nothing was marked sent by the refused run: everyone gets the edition, once.
    assert recipients(handler) == {address: 1 for address, _ in READERS}


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # the point here
def test_a_login_in_clear_goes_only_to_a_relay_on_this_machine(site: Site) -> None:
    handler = SmtpHandler()
    with_meeting(site)
    auth = {"authenticator": only_login("trnews", "passord"), "auth_required": True}
    with smtp_server(handler, auth_require_tls=False, **auth) as port:
        use_smtp(site, port, username="trnews", password_env="RELAY_PASSWORD")
        site.env["RELAY_PASSWORD"] = "passord"
        add_readers(site, READERS[:1])
        site.run("send")
    assert recipients(handler) == {READERS[0][0]: 1}

    # However the config was made (`check` refuses this one), the transport itself never
    # sends the password in clear to another machine: it refuses before it connects.
    cfg = SmtpConfig.model_construct(
        host="192.0.2.25", port=25, security="none", username="trnews", timeout=1
    )
    with pytest.raises(Refused, match=r"in clear.*delivery\.smtp\.security"):
        SmtpTransport(cfg).send(b"Subject: x\r\n\r\nx\r\n", "a@example.org", "b@example.org")


# -- replies by meaning -----------------------------------------------------------------------


def test_4xx_defers_a_reader_to_the_next_run_and_5xx_fails_for_good(
    site: Site, smtp: SmtpServer
) -> None:
    later, gone, fine = "bjorn@example.net", "cecilie@example.com", "anne@example.org"
    with_meeting(site)
    site.transport = "smtp"
    add_readers(site, READERS)
    smtp.handler.refuse[later] = "451 4.7.1 Greylisted, try again later"
    smtp.handler.refuse[gone] = "550 5.1.1 No such user"
    first = site.run("send").stdout
    assert "1 delivered, 1 deferred, 1 failed" in first
    assert f"{later}: 451" in first and f"{gone}: 550" in first
    assert "1 reader waits for a later run" in first
    assert recipients(smtp.handler) == {fine: 1}

    smtp.handler.refuse.clear()
    site.run("send")
    # The deferred reader now has it; the refused one is never tried again.
    assert recipients(smtp.handler) == {fine: 1, later: 1}
    [edition] = status_editions(site)
    assert (edition["recipients"], edition["delivered"], edition["failed"]) == (3, 2, 1)


def test_max_per_second_spaces_the_messages_as_the_relay_asks(site: Site, smtp: SmtpServer) -> None:
    with_meeting(site)
    add_readers(site, READERS)
    use_smtp(site, smtp.port, max_per_second=10)
    site.run("send")
    arrived = smtp.handler.arrived
    assert len(arrived) == len(READERS)
    # One connection, one message after another: message 0 has arrived before message 1's
    # slot, and the last cannot arrive before that slot plus one interval per message between.
    # So this bound holds however loaded the machine is; without pacing the span is a few ms.
    assert arrived[-1] - arrived[0] >= 0.1 * (len(READERS) - 2)


def test_unreachable_server_exits_1_and_a_later_run_delivers_everyone_once(site: Site) -> None:
    with_meeting(site)
    port = free_port()  # nothing listens here
    use_smtp(site, port)
    add_readers(site, READERS)
    down = site.run("send", check=False)
    assert down.returncode == 1, down.stdout + down.stderr
    assert f"127.0.0.1:{port}" in down.stderr
    assert "nothing is lost" in down.stderr
    assert "Traceback" not in down.stderr

    handler = SmtpHandler()
    with smtp_server(handler, port=port):
        out = site.run("send").stdout
    assert "Resumed edition" in out
    assert recipients(handler) == {address: 1 for address, _ in READERS}
    # The resumed run gives the same Message-IDs the first run would have given.
    config = load_config(site.config)
    ids = subscriber_ids(site)
    for env, msg in handler.messages:
        [address] = env.rcpt_tos
        assert_well_formed(msg, address, ids[address], sent_edition(out), config)


class HangsUp(SmtpHandler):
    """Accepts messages, but once, when `after` have been accepted, ends the session instead
    of accepting the next: with a 421 reply, or by closing the connection without a word."""

    def __init__(self, after: int, how: str) -> None:
        super().__init__()
        self.after = after
        self.how = how
        self.tripped = False

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if not self.tripped and len(self.messages) == self.after:
            self.tripped = True
            if self.how == "close":
                assert server.transport is not None
                server.transport.close()
            return "421 4.3.2 Service shutting down, closing channel"
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.parametrize("how", ["421", "close"])
def test_server_hanging_up_mid_run_skips_no_reader_and_doubles_none(site: Site, how: str) -> None:
    readers = [*READERS, ("dag@example.org", "Dag"), ("eva@example.org", "Eva")]
    handler = HangsUp(after=2, how=how)
    with_meeting(site)
    with smtp_server(handler) as port:
        use_smtp(site, port)
        add_readers(site, readers)
        first = site.run("send", check=False)
        assert first.returncode in (0, 1), first.stdout + first.stderr
        assert handler.tripped
        if first.returncode == 1:  # gave up: the next run carries on
            assert "nothing is lost" in first.stderr
            site.run("send")
    assert recipients(handler) == {address: 1 for address, _ in readers}
    [edition] = status_editions(site)
    assert (edition["recipients"], edition["delivered"], edition["status"]) == (5, 5, "sent")


# -- test sends -------------------------------------------------------------------------------


def test_send_test_goes_only_to_the_given_addresses_and_marks_nothing(
    site: Site, smtp: SmtpServer
) -> None:
    with_meeting(site)
    site.transport = "smtp"
    add_readers(site, READERS[:1])
    site.run("send", "--test", "a@example.org", "b@example.org")
    assert recipients(smtp.handler) == {"a@example.org": 1, "b@example.org": 1}
    for envelope, msg in smtp.handler.messages:
        assert len(envelope.rcpt_tos) == 1
        assert str(msg["Subject"]).startswith("[TEST] Ambassadørnytt ")
        assert "Regionrådet" in text_part(msg)
        _, token = unsubscribe_link(msg)
        assert verify(SECRET, "unsubscribe", token) is None  # names no reader

    smtp.handler.messages.clear()
    out = site.run("send").stdout
    assert "1 delivered" in out
    [(envelope, msg)] = smtp.handler.messages
    assert envelope.rcpt_tos == ["anne@example.org"]
    assert not str(msg["Subject"]).startswith("[TEST]")
    assert "Regionrådet" in text_part(msg)


def test_send_test_refuses_a_malformed_address_naming_it(site: Site, smtp: SmtpServer) -> None:
    with_meeting(site)
    site.transport = "smtp"
    proc = site.run("send", "--test", "a@example.org", "ikke-en-adresse", check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "ikke-en-adresse" in proc.stderr
    assert not smtp.handler.messages


def test_a_failed_test_send_never_advises_the_full_send(site: Site) -> None:
    with_meeting(site)
    site.transport = "smtp"
    site.smtp_port = free_port()  # nothing listens there
    site.run("subscribers", "add", "anne@example.org")
    proc = site.run("send", "--test", "redaksjon@example.org", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "cannot reach SMTP server" in proc.stderr
    # Following the advice must not mail every subscriber.
    assert "run 'trnews send' again" not in proc.stderr
    assert "'trnews send --test redaksjon@example.org' again" in proc.stderr
    assert "no reader was mailed" in proc.stderr


# -- the fast message: each reader's bytes from the edition's, encoded once ----------------------

TRICKY = (
    "Linje med etterfølgende mellomrom   \n"
    ".En linje som starter med punktum\n"
    "From en linje som mbox-lesere frykter\n"
    "Likhetstegn = og =3D og prosent % og tabulator\there\n"
    + "Lang linje med æøå og emoji 🌊 " * 40
    + "\nWindows-linjeslutt\r\nog gammel Mac\rslutt"
)
"""Text that tests an encoder: trailing spaces, dots and `From ` at line starts, `=`, a line far
over 998 bytes, non-ASCII, and every kind of line end."""


def fast_and_reference(
    tmp_path: Path, address: str, name: str
) -> tuple[EmailMessage, EmailMessage, bytes]:
    """One reader's message from MessageTemplate, and from build_message(personalise(...))."""
    path = tmp_path / "trnews.toml"
    path.write_text(
        '[newsletter]\ntitle = "Ambassadørnytt"\n'
        'sender = "Trondheimsregionen <nyhetsbrev@example.org>"\n'
        'reply_to = "post@example.org"\n'
        f'public_url = "{PUBLIC_URL}"\n',
        encoding="utf-8",
    )
    config = load_config(path)
    golden = ROOT / "tests" / "golden"
    content = Rendered(
        subject="Ambassadørnytt 17. februar 2026: 2 kronikker, 3 blogginnlegg og 2 møter",
        html=(golden / "edition.nb.html").read_text(encoding="utf-8") + f"<pre>{TRICKY}</pre>",
        text=(golden / "edition.nb.txt").read_text(encoding="utf-8") + TRICKY,
    )
    url = f"{PUBLIC_URL}/unsubscribe/17.AbCdEfGhIjKlMnOpQrStUv"
    when = datetime(2026, 2, 17, 7, 30, tzinfo=UTC)
    mid = "<trnews.3.17.0123456789ab@example.org>"
    raw = MessageTemplate(config, content).render(
        to=address, name=name, msg_id=mid, unsubscribe_url=url, when=when
    )
    reference = build_message(
        config,
        personalise(content, unsubscribe_url=url, name=name),
        to=address,
        name=name,
        msg_id=mid,
        unsubscribe_url=url,
        when=when,
    )
    parse = email.message_from_bytes
    fast = parse(raw, policy=email.policy.default)
    ref = parse(reference.as_bytes(), policy=email.policy.default)
    return fast, ref, raw  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("address", "name"),
    [
        ("anne@example.org", "Anne Abonnent"),
        ("bjorn@example.net", "Bjørn Ødegård"),
        ("cecilie@example.com", ""),
        ("per@example.org", 'Per "P." O\'Neil, jr. <sjef>'),
        ("kari@example.org", "Kari\tNord\x7fmann @@trnews:unsubscribe_url@@"),
        ("a." * 30 + "z@" + "avdeling." * 8 + "example.org", "Åse Ærlig-Østby " * 12),
        ("ola@xn--b-5ga.no", "Ola i Bø"),
    ],
)
def test_a_fast_message_reads_exactly_as_build_message_writes_it(
    tmp_path: Path, address: str, name: str
) -> None:
    fast, ref, raw = fast_and_reference(tmp_path, address, name)
    assert [(k, str(v)) for k, v in fast.items() if k != "Content-Type"] == [
        (k, str(v)) for k, v in ref.items() if k != "Content-Type"
    ]
    assert fast.get_content_type() == ref.get_content_type() == "multipart/alternative"
    parts = [
        [(p.get_content_type(), p.get_content_charset(), p.get_content()) for p in m.iter_parts()]
        for m in (fast, ref)
    ]
    assert parts[0] == parts[1]
    assert f"Meld deg av: {PUBLIC_URL}/unsubscribe/17." in parts[0][0][2]  # the link filled in
    assert raw.isascii()  # 7-bit: any relay takes it, 8BITMIME or not
    assert max(len(line) for line in raw.split(b"\r\n")) < 998
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF line ends only


def test_non_ascii_addresses_get_it_when_smtp_can_carry_them_and_a_reason_when_not(
    site: Site, smtp: SmtpServer
) -> None:
    with_meeting(site)
    site.transport = "smtp"
    add_readers(site, [("ola@bø.no", "Ola"), ("dåvid@eksempel.no", "Dåvid"), READERS[0]])
    out = site.run("send").stdout
    assert "2 delivered, 0 deferred, 1 failed" in out
    assert "dåvid@eksempel.no: not sent: " in out and "SMTPUTF8" in out
    assert recipients(smtp.handler) == {"ola@xn--b-5ga.no": 1, READERS[0][0]: 1}
    [msg] = [m for env, m in smtp.handler.messages if env.rcpt_tos == ["ola@xn--b-5ga.no"]]
    assert getaddresses([str(msg["To"])]) == [("Ola", "ola@xn--b-5ga.no")]


# -- DKIM -------------------------------------------------------------------------------------


def test_each_message_carries_a_dkim_signature_that_verifies(
    site: Site, smtp: SmtpServer, dkim_key: DkimKey
) -> None:
    (site.root / "dkim.pem").write_bytes(dkim_key.pem)
    site.extra_toml = DKIM_TOML.format(key_file="dkim.pem")
    site.transport = "smtp"
    with_meeting(site)
    add_readers(site, READERS)
    site.run("send")

    asked: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        asked.append(name)
        return dkim_key.txt if name.rstrip(b".") == b"nyhetsbrev._domainkey.example.org" else None

    assert len(smtp.handler.messages) == len(READERS)
    for envelope, msg in smtp.handler.messages:
        raw = envelope.original_content
        assert isinstance(raw, bytes)
        assert dkim.verify(raw, dnsfunc=dns), envelope.rcpt_tos
        tags = dict(
            t.strip().split("=", 1) for t in str(msg["DKIM-Signature"]).split(";") if "=" in t
        )
        assert tags["d"] == "example.org" and tags["s"] == "nyhetsbrev"
        signed = {h.strip().lower() for h in re.sub(r"\s", "", tags["h"]).split(":")}
        assert {"from", "to", "subject", "date", "message-id"} <= signed
        assert {"list-unsubscribe", "list-unsubscribe-post"} <= signed
        # Whoever changes the unsubscribe link on the way breaks the signature.
        forged = raw.replace(b"/unsubscribe/", b"/unsubscribe/x", 1)
        assert forged != raw and not dkim.verify(forged, dnsfunc=dns)
    assert asked  # the verifier did look the key up


@pytest.mark.parametrize("key", ["missing", "the public TXT record"])
def test_check_and_a_test_send_refuse_the_dkim_key_the_send_would_refuse(
    site: Site, smtp: SmtpServer, dkim_key: DkimKey, key: str
) -> None:
    if key != "missing":  # an easy mistake: the DNS record pasted where the private key goes
        (site.root / "dkim.pem").write_bytes(dkim_key.txt)
    site.extra_toml = DKIM_TOML.format(key_file="dkim.pem")
    site.transport = "smtp"
    with_meeting(site)
    checked = site.run("check", check=False)
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert "delivery.dkim.key_file" in checked.stderr
    tested = site.run("send", "--test", "redaksjon@example.org", check=False)
    assert tested.returncode == 2, tested.stdout + tested.stderr
    assert "delivery.dkim.key_file" in tested.stderr
    assert not smtp.handler.messages
    # With the private key in place, both pass.
    (site.root / "dkim.pem").write_bytes(dkim_key.pem)
    site.run("check")
    site.run("send", "--test", "redaksjon@example.org")
    assert len(smtp.handler.messages) == 1


def test_check_warns_of_a_login_without_its_password_and_refuses_a_bad_ca_file(
    site: Site,
) -> None:
    site.transport = "smtp"
    site.write()
    text = site.config.read_text("utf-8").replace(
        'security = "none"',
        'security = "starttls"\nusername = "nyhetsbrev"\npassword_env = "RELAY_PASSWORD"',
    )
    site.config.write_text(text, "utf-8")
    warned = site.run("check")  # a warning, not an error: the service may set it later
    assert "warning: delivery.smtp.username is 'nyhetsbrev' but $RELAY_PASSWORD is not set" in (
        warned.stderr
    )
    site.env["RELAY_PASSWORD"] = "hemmelig"
    assert "warning" not in site.run("check").stderr
    site.config.write_text(text.replace('username = "nyhetsbrev"', 'ca_file = "ca.pem"'), "utf-8")
    bad = site.run("check", check=False)
    assert bad.returncode == 2
    assert "delivery.smtp.ca_file" in bad.stderr and "ca.pem" in bad.stderr


@pytest.mark.parametrize(("key_file", "problem"), [("missing.pem", "cannot read"), ("bad.pem", "")])
def test_a_dkim_key_file_that_cannot_be_used_is_a_config_error(
    site: Site, key_file: str, problem: str
) -> None:
    (site.root / "bad.pem").write_text("-----BEGIN RSA PRIVATE KEY-----\nnope\n", "utf-8")
    site.extra_toml = DKIM_TOML.format(key_file=key_file)
    with_meeting(site)
    add_readers(site, READERS[:1])
    proc = site.run("send", check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "delivery.dkim.key_file" in proc.stderr and key_file in proc.stderr
    assert (problem or "not an RSA private key") in proc.stderr
    assert "Traceback" not in proc.stderr
    assert status_editions(site) == []  # nothing built, nothing sent


# -- hostile names and long links in the headers, read from the bytes on the wire --------------

HOSTILE_NAMES = {
    "kaari@example.org": "Kåri, attacker@evil.example, x",
    "aase@example.org": 'Åse "Kari" <attacker@evil.example>',
    "oyvind@example.org": "Øyvind; attacker@evil.example; (x",
    "gruppe@example.org": "Grøn: attacker@evil.example;",
    "ola@example.org": "Ola, attacker@evil.example",
    "ord@example.org": "=?utf-8?q?Kari=2C_attacker=40evil=2Eexample=2C?= x",
}
"""Reader → a name that tries to add recipients to the To header of their message."""


def raw_headers(raw: bytes) -> list[tuple[str, str]]:
    """The header fields of a message as they are on the wire: names and unfolded values, no
    encoded word decoded."""
    head = raw.replace(b"\r\n", b"\n").partition(b"\n\n")[0].decode("ascii")
    fields = re.split(r"\n(?![ \t])", head)
    return [
        (name, value.replace("\n", "").strip())
        for name, _, value in (f.partition(":") for f in fields)
    ]


def raw_header(raw: bytes, name: str) -> str:
    [value] = [v for n, v in raw_headers(raw) if n.lower() == name.lower()]
    return value


def strict_addresses(value: str) -> list[str]:
    """Every address in an address list as RFC 5322 reads it: quoted strings, comments and
    angle brackets are syntax, an encoded word is only an atom (never decoded), and each
    word with an `@` outside angle brackets is an address too."""
    found: list[str] = []
    i = 0
    while i < len(value):
        char = value[i]
        if char == '"':
            i += 1
            while i < len(value) and value[i] != '"':
                i += 2 if value[i] == "\\" else 1
        elif char == "(":
            depth = 1
            while depth and i + 1 < len(value):
                i += 1
                if value[i] == "\\":
                    i += 1
                else:
                    depth += {"(": 1, ")": -1}.get(value[i], 0)
        elif char == "<":
            end = value.find(">", i)
            found.append(value[i + 1 : end if end >= 0 else len(value)])
            i = end if end >= 0 else len(value)
        elif char == "@":
            start = i
            while start > 0 and value[start - 1] not in ' \t,;:<>()"':
                start -= 1
            end = i
            while end < len(value) and value[end] not in ' \t,;:<>()"':
                end += 1
            found.append(value[start:end])
            i = end - 1
        i += 1
    return found


def lax_addresses(value: str) -> list[str]:
    """The addresses a lax mail client finds: it decodes every encoded word first, then reads
    the list as `strict_addresses` does, as Python's `getaddresses` does, and as one that cuts
    it at every comma, quoted or not, and takes what has an `@` in each piece."""
    decoded = str(make_header(decode_header(value)))
    by_python = [address for _, address in getaddresses([decoded]) if address]
    by_syntax = strict_addresses(decoded)
    by_commas = [
        found.group(1) or found.group(2)
        for piece in decoded.split(",")
        if (found := re.search(r"<([^<>]*)>|([^\s<>\"]+@[^\s<>\"]+)", piece))
    ]
    assert by_python == by_syntax == by_commas, (decoded, by_python, by_syntax, by_commas)
    return by_syntax


def test_a_display_name_never_adds_a_recipient_for_a_strict_or_a_lax_reader(
    site: Site, smtp: SmtpServer
) -> None:
    with_meeting(site)
    site.transport = "smtp"
    for address, name in HOSTILE_NAMES.items():
        site.run("subscribers", "add", address, "--name", name)
    site.run("send")

    assert recipients(smtp.handler) == {address: 1 for address in HOSTILE_NAMES}
    for envelope, msg in smtp.handler.messages:
        [address] = envelope.rcpt_tos
        raw = envelope.original_content
        assert isinstance(raw, bytes)
        to = raw_header(raw, "To")
        assert strict_addresses(to) == [address], to
        assert lax_addresses(to) == [address], to
        # The header drops what would be syntax; the greeting keeps the name as it was given.
        assert f"Hei {HOSTILE_NAMES[address]}!" in text_part(msg)


def test_a_test_send_has_one_recipient_in_to_for_either_reader(
    site: Site, smtp: SmtpServer
) -> None:
    with_meeting(site)
    site.transport = "smtp"
    site.run("send", "--test", "kari@example.org")
    [(envelope, _)] = smtp.handler.messages
    assert isinstance(envelope.original_content, bytes)
    to = raw_header(envelope.original_content, "To")
    assert strict_addresses(to) == lax_addresses(to) == ["kari@example.org"]


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("Anne Abonnent", "Anne Abonnent"),
        ("Bjørn Ødegård", "Bjørn Ødegård"),
        ("Per O. Neil", "Per O. Neil"),
        ("Kari Nordmann-Ås og Ola", "Kari Nordmann-Ås og Ola"),
        ("Nordmann, Kari", "Nordmann Kari"),
        ('Per "P." O\'Neil <sjef>', "Per P. O'Neil sjef"),
        ("Kåri, attacker@evil.example, x", "Kåri attacker evil.example x"),
        ("Åse (NTNU) Ødegård", "Åse NTNU Ødegård"),
        ("=?utf-8?q?Kari?= Ås", "=utf-8?q?Kari?= Ås"),
        ("Ola " + "o" * 90, "Ola " + "o" * 90),
    ],
)
def test_a_name_reads_back_from_the_to_header_as_given_but_for_address_syntax(
    tmp_path: Path, name: str, shown: str
) -> None:
    fast, ref, raw = fast_and_reference(tmp_path, "anne@example.org", name)
    assert fast["To"].addresses == ref["To"].addresses
    # Decoded as RFC 2047 says (Python's address parser puts a space between encoded words).
    decoded = str(make_header(decode_header(raw_header(raw, "To"))))
    assert getaddresses([decoded]) == [(shown, "anne@example.org")]


LONG_PUBLIC_URL = "https://nyhetsbrev.ambassadorene.trondheimsregionen.example.org/" + "a" * 56
assert len(LONG_PUBLIC_URL) == 120


def use_long_public_url(site: Site) -> None:
    site.write()
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace(PUBLIC_URL, LONG_PUBLIC_URL, 1), encoding="utf-8")


def assert_plain_unsubscribe(raw: bytes, subscriber_id: int | None) -> None:
    """List-Unsubscribe is one plain line `<{public_url}/unsubscribe/{token}>` (RFC 2369),
    with List-Unsubscribe-Post beside it; no header is encoded or over 998 octets a line."""
    lines = raw.replace(b"\r\n", b"\n").partition(b"\n\n")[0].split(b"\n")
    assert max(len(line) for line in lines) <= 998
    [line] = [x for x in lines if x.lower().startswith(b"list-unsubscribe:")]
    found = re.fullmatch(
        rb"List-Unsubscribe: <" + re.escape(LONG_PUBLIC_URL.encode()) + rb"/unsubscribe/(\S+)>",
        line,
    )
    assert found, line
    token = found.group(1).decode()
    assert verify(SECRET, "unsubscribe", token) == subscriber_id
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in lines
    for name, value in raw_headers(raw):
        if name.lower().startswith("list-unsubscribe"):
            assert "=?" not in value, (name, value)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    # The visible link is the header's.
    assert f"{LONG_PUBLIC_URL}/unsubscribe/{token}\n" in text_part(msg)  # type: ignore[arg-type]


def test_list_unsubscribe_stays_plain_with_a_long_public_url_and_dkim_still_verifies(
    site: Site, smtp: SmtpServer, dkim_key: DkimKey
) -> None:
    (site.root / "dkim.pem").write_bytes(dkim_key.pem)
    site.extra_toml = DKIM_TOML.format(key_file="dkim.pem")
    site.transport = "smtp"
    with_meeting(site)
    use_long_public_url(site)
    add_readers(site, READERS)
    site.run("send")

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return dkim_key.txt if name.rstrip(b".") == b"nyhetsbrev._domainkey.example.org" else None

    ids = subscriber_ids(site)
    assert len(smtp.handler.messages) == len(READERS)
    for envelope, _ in smtp.handler.messages:
        raw = envelope.original_content
        assert isinstance(raw, bytes)
        assert_plain_unsubscribe(raw, ids[envelope.rcpt_tos[0]])
        assert dkim.verify(raw, dnsfunc=dns), envelope.rcpt_tos

    smtp.handler.messages.clear()
    site.run("send", "--test", "kari@example.org")
    [(envelope, _)] = smtp.handler.messages
    assert isinstance(envelope.original_content, bytes)
    assert_plain_unsubscribe(envelope.original_content, None)  # a test link names no reader
    assert dkim.verify(envelope.original_content, dnsfunc=dns)


def test_list_unsubscribe_stays_plain_with_a_long_public_url_in_the_maildir(site: Site) -> None:
    with_meeting(site)
    use_long_public_url(site)
    add_readers(site, READERS)
    site.run("send")
    ids = subscriber_ids(site)
    files = sorted(site.outbox.iterdir())
    assert len(files) == len(READERS)
    for path in files:
        raw = path.read_bytes()
        [address] = strict_addresses(raw_header(raw, "To"))
        assert_plain_unsubscribe(raw, ids[address])


def test_an_address_only_smtputf8_could_carry_still_gets_an_ascii_to_header() -> None:
    """Readers with one are left out before (see above); an admin's for the alerts is not."""
    folded = to_header("dåvid@eksempel.no").fold(policy=email.policy.SMTP)
    assert folded.isascii() and folded.endswith("\r\n")
    msg = email.message_from_string(folded + "\r\n", policy=email.policy.default)
    assert [a.addr_spec for a in msg["To"].addresses] == ["dåvid@eksempel.no"]
