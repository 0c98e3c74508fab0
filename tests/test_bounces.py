"""Bounces and complaints that come back later (SPEC.md), through the CLI as a process: real-world
bounce messages in a Maildir, the VERP return path through a real SMTP server on loopback, an
IMAP server over TLS on loopback, a report read twice, and bounce_limit across editions."""

from __future__ import annotations

import email
import json
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest
import trustme
from support.imap import ImapFolder, imap_server
from support.mail import add_readers, alerts_config, to_admins, use_smtp
from support.servers import SmtpServer
from support.site import Site

from pipeline.models import ConsentText
from pipeline.store import Store

DATA = Path(__file__).parent / "data" / "bounces"
RETURN_PATH = "bounces@nyhetsbrev.example.org"
_ids = count(1)


def bounce(name: str, address: str, to: str = RETURN_PATH, envelope: str | None = None) -> bytes:
    """A real-world-shaped report from tests/data/bounces about `address`, sent to `to`."""
    data = (DATA / name).read_bytes()
    for key, value in {
        "@@ADDRESS@@": address,
        "@@TO@@": to,
        "@@ENVELOPE@@": envelope or to,
        "@@MID@@": f"report.{next(_ids)}.{name}@mx.example.net",
    }.items():
        data = data.replace(key.encode(), value.encode())
    return data


def drop(site: Site, data: bytes) -> Path:
    """Deliver a message to the bounces' Maildir, as the mail server would."""
    box = site.root / "var" / "bounces"
    for sub in ("new", "cur", "tmp"):
        (box / sub).mkdir(parents=True, exist_ok=True)
    path = box / "new" / f"1700000000.M{next(_ids)}P1.mx"
    path.write_bytes(data)
    return path


def bounces_site(site: Site, *, return_path: bool = True, bounce_limit: int = 3) -> None:
    """The site's config with a [bounces] Maildir, delivery.return_path and bounce_limit."""
    site.send_when_empty = True  # every send builds an edition
    if "[bounces]" not in site.extra_toml:
        site.extra_toml += '\n[bounces]\nmaildir = "var/bounces"\n'
    site.write()
    keys = f"bounce_limit = {bounce_limit}\n"
    if return_path:
        keys += f'return_path = "{RETURN_PATH}"\n'
    text = site.config.read_text(encoding="utf-8")
    anchor = 'maildir = "var/outbox"\n'
    site.config.write_text(text.replace(anchor, anchor + keys, 1), encoding="utf-8")
    for sub in ("new", "cur", "tmp"):
        (site.root / "var" / "bounces" / sub).mkdir(parents=True, exist_ok=True)


def listed(site: Site) -> dict[str, dict[str, Any]]:
    return {s["email"]: s for s in json.loads(site.run("subscribers", "list", "--json").stdout)}


def return_paths(site: Site) -> dict[str, str]:
    """Each reader's Return-Path in the outbox (the maildir transport writes the envelope
    sender there), emptied for the next send."""
    out = {}
    for path in sorted(site.outbox.iterdir()):
        msg = email.message_from_bytes(path.read_bytes())
        if msg["Return-Path"]:
            out[email.utils.parseaddr(msg["To"])[1]] = msg["Return-Path"].strip("<>")
        path.unlink()
    return out


def bounce_lines(stdout: str) -> dict[str, str]:
    """`trnews bounces` output: each line by the address it is about."""
    lines = {}
    for line in stdout.splitlines()[:-1]:
        address = line.split()[1].rstrip(":")
        lines[address] = line
    return lines


# -- real-world reports in a Maildir ------------------------------------------------------------

SHAPES = {
    "postfix.eml": "permanent",
    "exim.eml": "permanent",
    "qmail.eml": "permanent",
    "exchange.eml": "permanent",
    "yahoo.eml": "permanent",
    "gmail-dsn.eml": "permanent",
    "mailbox-full-dsn.eml": "temporary",
    "delayed-dsn.eml": "delayed",
    "arf.eml": "complaint",
}


def test_real_world_bounces_are_recognised_matched_by_address_and_marked_read(site: Site) -> None:
    bounces_site(site, return_path=False)
    readers = {name: f"{name.partition('.')[0]}@example.com" for name in SHAPES}
    add_readers(site, [(a, "") for a in readers.values()] + [("ola@example.com", "")])
    site.run("send")
    dropped = {name: drop(site, bounce(name, readers[name])) for name in SHAPES}
    auto = drop(site, bounce("auto-reply.eml", "kari@example.com"))
    reply = drop(site, bounce("reply.eml", "ola@example.com"))

    out = site.run("bounces").stdout

    lines = bounce_lines(out)
    for name, kind in SHAPES.items():
        assert lines[readers[name]].startswith(kind), (name, out)
        assert f"reader {readers[name]}" in lines[readers[name]], out
        assert not dropped[name].exists()  # moved to cur/ with the seen flag, not deleted
    cur = sorted(p.name for p in (site.root / "var" / "bounces" / "cur").iterdir())
    assert len(cur) == len(SHAPES) and all(n.endswith(":2,S") for n in cur)
    assert auto.exists() and reply.exists()  # left where they were, for a person to read
    assert "1 auto-reply and 1 not understood" in out.splitlines()[-1]
    assert "550 5.1.1" in lines[readers["postfix.eml"]]  # the server's words, for the admins
    states = listed(site)
    assert states[readers["arf.eml"]]["state"] == "unsubscribed"
    for name, kind in SHAPES.items():
        reader = states[readers[name]]
        assert reader["bounces"] == (1 if kind == "permanent" else 0), name
        if kind in ("permanent", "temporary"):
            assert reader["last_bounce"]["kind"] == kind
            assert reader["last_bounce"]["time"].startswith(str(datetime.now(UTC).year))
        elif kind != "complaint":
            assert reader["last_bounce"] is None
        if kind != "complaint":
            assert reader["state"] == "active", name  # one edition is not bounce_limit
    status = json.loads(site.run("status", "--json").stdout)
    assert status["bounces"] == {"permanent": 6, "temporary": 1, "delayed": 1, "complaint": 1}


def test_a_bounce_in_a_charset_no_codec_knows_is_read_and_the_others_too(site: Site) -> None:
    """A mail server may name any charset; one nobody knows must not stop the read."""
    bounces_site(site, return_path=False)
    add_readers(site, [("kari@example.com", ""), ("ola@example.com", "")])
    site.run("send")
    odd = bounce("qmail.eml", "kari@example.com")
    odd = odd.replace(b"Subject:", b'Content-Type: text/plain; charset="x-nonsense"\nSubject:', 1)
    drop(site, odd)
    drop(site, bounce("postfix.eml", "ola@example.com"))
    out = site.run("bounces").stdout
    lines = bounce_lines(out)
    assert lines["kari@example.com"].startswith("permanent"), out
    assert lines["ola@example.com"].startswith("permanent"), out


def test_the_same_report_read_again_changes_nothing(site: Site) -> None:
    bounces_site(site, return_path=False, bounce_limit=2)
    add_readers(site, [("kari@example.com", "")])
    site.run("send")
    report = bounce("gmail-dsn.eml", "kari@example.com")
    first = drop(site, report)
    site.run("bounces")
    drop(site, report)  # the same report again, as a restored backup or a second copy would
    out = site.run("bounces").stdout
    assert "read before" in out
    assert not first.exists()
    reader = listed(site)["kari@example.com"]
    assert reader["bounces"] == 1 and reader["state"] == "active"


# -- VERP ---------------------------------------------------------------------------------------


def test_verp_round_trip_through_a_real_smtp_server(site: Site, smtp: SmtpServer) -> None:
    bounces_site(site)
    use_smtp(site, smtp.port)
    site.send_when_empty = True
    bounces_site(site)  # use_smtp wrote the file anew
    add_readers(site, [("kari@example.com", ""), ("ola@example.com", "")])
    site.run("send")
    senders = {env.rcpt_tos[0]: env.mail_from for env, _ in smtp.handler.messages}
    assert set(senders) == {"kari@example.com", "ola@example.com"}
    for sender in senders.values():
        assert sender.startswith("bounces+") and sender.endswith("@nyhetsbrev.example.org")
    assert senders["kari@example.com"] != senders["ola@example.com"]
    # Kari's mail was forwarded to an address trnews never knew; that one bounced.
    drop(site, bounce("postfix.eml", "kari.old@forwarded.example", senders["kari@example.com"]))
    forged = senders["ola@example.com"].replace("bounces+", "bounces+9")  # another edition
    drop(site, bounce("exim.eml", "ola@example.com", forged))

    out = site.run("bounces").stdout

    lines = bounce_lines(out)
    assert "reader kari@example.com" in lines["kari.old@forwarded.example"]
    assert listed(site)["kari@example.com"]["bounces"] == 1
    # The forged return path names no one; the failed address alone still finds Ola.
    assert "reader ola@example.com" in lines["ola@example.com"]


def test_a_forged_complaint_unsubscribes_nobody_when_a_return_path_is_set(site: Site) -> None:
    bounces_site(site)
    add_readers(site, [("kari@example.com", "")])
    site.run("send")
    drop(site, bounce("arf.eml", "kari@example.com", envelope=RETURN_PATH))  # no signed token
    out = site.run("bounces").stdout
    assert "no reader" in out
    assert listed(site)["kari@example.com"]["state"] == "active"


# -- bounce_limit ---------------------------------------------------------------------------------


def test_bounce_limit_counts_editions_in_a_row_and_a_delivered_edition_resets_it(
    site: Site,
) -> None:
    bounces_site(site, bounce_limit=2)
    gone, flaky = "gone@example.com", "flaky@example.com"
    add_readers(site, [(gone, ""), (flaky, "")])

    site.run("send")  # edition 1: both bounce later
    paths = return_paths(site)
    drop(site, bounce("gmail-dsn.eml", gone, paths[gone]))
    drop(site, bounce("postfix.eml", flaky, paths[flaky]))
    site.run("bounces")
    assert {a: r["bounces"] for a, r in listed(site).items()} == {gone: 1, flaky: 1}

    site.run("send")  # edition 2: only gone bounces; flaky's got through
    paths = return_paths(site)
    drop(site, bounce("exim.eml", gone, paths[gone]))
    out = site.run("bounces").stdout
    assert "now bounced" in bounce_lines(out)[gone]
    states = listed(site)
    assert states[gone]["state"] == "bounced"
    assert states[flaky]["state"] == "active" and states[flaky]["bounces"] == 0

    site.run("send")  # edition 3: not sent to gone; flaky bounces once: one in a row
    paths = return_paths(site)
    assert set(paths) == {flaky}
    drop(site, bounce("qmail.eml", flaky, paths[flaky]))
    site.run("bounces")
    states = listed(site)
    assert states[flaky]["state"] == "active" and states[flaky]["bounces"] == 1


# -- complaints, alerts, status -------------------------------------------------------------------


def test_a_complaint_unsubscribes_at_once_is_in_the_consent_history_and_alerts_once(
    site: Site,
) -> None:
    alerts_config(site)
    bounces_site(site)
    now = datetime.now(UTC)
    with Store.open(site.db) as store:  # a reader who signed up and confirmed on the web
        signed = store.sign_up(
            "kari@example.com",
            "Kari",
            ConsentText("1", "Jeg vil ha nyhetsbrevet.", "nb"),
            form="web:/",
            now=now,
            resend_after=timedelta(hours=1),
        )
        assert signed is not None
        store.confirm(signed.consent_id, now=now)
    site.run("send")
    paths = return_paths(site)
    drop(site, bounce("arf.eml", "kari@example.com", envelope=paths["kari@example.com"]))

    out = site.run("bounces").stdout

    assert "complaint" in out and "unsubscribed" in out
    assert listed(site)["kari@example.com"]["state"] == "unsubscribed"
    person = json.loads(site.run("subscribers", "export", "--json", "kari@example.com").stdout)
    assert person["consents"][0]["withdrawn"] is not None
    assert person["consents"][0]["withdrawn_by"] == "complaint"
    assert person["bounces"][0]["kind"] == "complaint"
    alerts = to_admins(site)
    assert len(alerts) == 1 and "1 klage" in str(alerts[0]["Subject"])
    assert "kari@example.com" in alerts[0].get_content()
    site.run("bounces")  # nothing new: no second alert
    assert len(to_admins(site)) == 1
    assert "varige feil, 0 midlertidige, 1 klage\n" in site.run("status").stdout  # not "klager"


# -- IMAP over TLS ------------------------------------------------------------------------------


@pytest.fixture
def imap_tls(tmp_path: Path) -> Iterator[tuple[ssl.SSLContext, Path]]:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "imap-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    yield context, ca_file


def imap_site(site: Site, port: int, ca_file: Path | None) -> None:
    """The site's config with an IMAP [bounces] mailbox on `port` and a return path."""
    ca = f'ca_file = "{ca_file}"\n' if ca_file else ""
    site.send_when_empty = True
    site.extra_toml = (
        f'\n[bounces.imap]\nhost = "127.0.0.1"\nport = {port}\nusername = "bounces"\n{ca}'
    )
    site.write()
    text = site.config.read_text(encoding="utf-8")
    anchor = 'maildir = "var/outbox"\n'
    text = text.replace(anchor, anchor + f'return_path = "{RETURN_PATH}"\n', 1)
    site.config.write_text(text, encoding="utf-8")


def test_imap_over_tls_reads_the_unseen_and_flags_the_handled_seen(
    site: Site, imap_tls: tuple[ssl.SSLContext, Path]
) -> None:
    context, ca_file = imap_tls
    folder = ImapFolder("bounces", "s3cret passord")
    with imap_server(folder, context) as port:
        imap_site(site, port, ca_file)
        site.env["TRNEWS_IMAP_PASSWORD"] = "s3cret passord"
        add_readers(site, [("kari@example.com", ""), ("ola@example.com", "")])
        site.run("send")
        paths = return_paths(site)
        dsn = folder.add(bounce("gmail-dsn.eml", "kari@example.com", paths["kari@example.com"]))
        reply = folder.add(bounce("reply.eml", "ola@example.com"))

        out = site.run("bounces").stdout

        assert "reader kari@example.com" in out
        assert folder.messages[dsn].seen and not folder.messages[reply].seen
        assert listed(site)["kari@example.com"]["bounces"] == 1

        site.env["TRNEWS_IMAP_PASSWORD"] = "wrong"
        failed = site.run("bounces", check=False)
        assert failed.returncode == 1
        assert "cannot log in to the IMAP folder INBOX of bounces at 127.0.0.1" in failed.stderr
        assert "wrong" not in failed.stderr


def test_a_mailbox_that_cannot_be_reached_never_stops_collect(
    site: Site, imap_tls: tuple[ssl.SSLContext, Path]
) -> None:
    context, _ = imap_tls
    folder = ImapFolder("bounces", "pw")
    with imap_server(folder, context) as port:
        imap_site(site, port, None)  # the test CA is not trusted: TLS fails
        out = site.run("collect")
        assert "Bounces not read: cannot reach the IMAP folder INBOX" in out.stderr
        assert "CERTIFICATE_VERIFY_FAILED" in out.stderr
        failed = site.run("bounces", check=False)
        assert failed.returncode == 1 and failed.stderr.count("\n") == 1
