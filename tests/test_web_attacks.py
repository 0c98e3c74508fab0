"""The web side attacked as an outsider would, over real HTTP against a real `trnews serve`.

Each test is one attack that worked once: a second sign-up renaming a pending one, a burst of
`/report` requests behind a slow calendar, the sign-up limits dodged with `+tags`, Gmail's dots
and the many addresses of one IPv6 /64, other spellings of a token, an absurd edition id, a
client that leaves in the middle of its body. Helpers come from tests/test_web.py.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import pytest
from support.servers import FeedServer
from support.site import Site
from support.web import (
    SECRET,
    WebServer,
    add_reader,
    confirm_link,
    database,
    states,
    subscribe,
    wait_for_messages,
)

from pipeline import tokens
from pipeline.store import Store


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """A site with no edition yet, behind a proxy on loopback that the server trusts."""
    site = Site(root=tmp_path_factory.mktemp("web-attacks"))
    site.extra_toml = '[web]\ntrusted_proxies = ["127.0.0.1"]\n'
    site.ambassador("kari-nordmann", "Kari Nordmann")
    server = WebServer.start(site, "-v")
    yield server
    server.stop()


def consent_records(site: Site, address: str) -> list[dict[str, object]]:
    """The consent records of an address, oldest first, as `subscribers export --json` shows
    them (read in-process)."""
    with Store.open(site.db) as store:
        held = store.person(address)
    assert held is not None
    return list(held["consents"])


def log_after(server: WebServer, mark: int) -> str:
    return server.log()[mark:]


# -- a pending sign-up belongs to its link ---------------------------------------------------


def test_a_second_sign_up_of_the_address_cannot_rename_the_first(server: WebServer) -> None:
    """Kari signs up; Mallory signs up her address under another name; Kari's own link makes
    her active as Kari, and her consent record is as she gave it."""
    site = server.site
    address = "kari.rename@example.org"
    first_answer = subscribe(server, address, "Kari")
    [msg] = wait_for_messages(site, address)
    [kari] = consent_records(site, address)

    second_answer = subscribe(server, address, "Mallory")

    assert second_answer.content == first_answer.content  # the same page for everyone
    assert consent_records(site, address)[0] == kari
    with Store.open(site.db) as store:
        pending = store.subscriber(address)
    assert pending is not None and pending.name == "Kari"

    confirmed = httpx.get(server.local(confirm_link(msg)))

    assert confirmed.status_code == 200
    with Store.open(site.db) as store:
        active = store.subscriber(address)
    assert active is not None
    assert (active.state.value, active.name) == ("active", "Kari")
    record = consent_records(site, address)[0]
    assert record["confirmed"]
    assert {**record, "confirmed": None} == kari
    assert "Mallory" not in str(database(site))


# -- the limits on sign-ups --------------------------------------------------------------------


def test_plus_tags_and_dots_of_one_gmail_mailbox_get_one_confirmation_an_hour(
    server: WebServer,
) -> None:
    site = server.site
    spellings = [
        "tove.nordmann@gmail.com",
        "tove.nordmann+nyhetsbrev@gmail.com",
        "tovenordmann+1@gmail.com",
        "T.O.V.E.Nordmann@googlemail.com",
        "Tove.Nordmann+2@GMAIL.com",
    ]

    answers = [subscribe(server, address) for address in spellings]
    subscribe(server, "tove+annen@example.org")  # another mailbox...
    subscribe(server, "tove@example.org")  # ...the same one again, without its tag
    subscribe(server, "t.ove@example.org")  # dots count outside Gmail: a third mailbox

    assert len({a.content for a in answers}) == 1
    wait_for_messages(site, "t.ove@example.org")
    sent_to = [str(m["To"]).casefold() for m in site.messages()]
    assert len([to for to in sent_to if to in {s.casefold() for s in spellings}]) == 1
    assert sent_to.count("tove+annen@example.org") == 1
    assert sent_to.count("tove@example.org") == 0
    assert sent_to.count("t.ove@example.org") == 1


def test_the_addresses_of_one_ipv6_64_are_one_client(server: WebServer) -> None:
    """An IPv6 client has a whole /64 to pick from: it counts as one client."""

    def from_address(client: str, i: int) -> httpx.Response:
        return httpx.post(
            server.url("/subscribe"),
            data={"email": f"v6-{i}@example.org", "consent": "1"},
            headers={"X-Forwarded-For": client},
        )

    answers = [from_address(f"2001:db8:14:1::{i:x}", i) for i in range(1, 6)]
    answers.append(from_address("2001:db8:14:1:ffff:ffff:ffff:fffe", 6))
    other = from_address("2001:db8:14:2::1", 7)

    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert "v6-6@example.org" not in states(server.site)
    assert other.status_code == 200


# -- tokens, ids, bodies ---------------------------------------------------------------------

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def other_spellings(token: str) -> list[str]:
    """Strings a lenient reader would take for the same token: the id with leading zeros, the
    MAC with nonzero padding bits, with padding, with the standard alphabet's '+'."""
    head, _, mac = token.partition(".")
    last = B64.index(mac[-1])
    found = [
        f"0{head}.{mac}",
        f"00{head}.{mac}",
        f"{head}.{mac[:-1]}{B64[last ^ 1]}",
        f"{head}.{mac[:-1]}{B64[last ^ 15]}",
        f"{head}.{mac}==",
        f"{head}.{mac.replace('-', '+')}",
    ]
    return [s for s in found if s != token]


def test_other_spellings_of_a_token_get_404_and_change_nothing(server: WebServer) -> None:
    site = server.site
    reader = add_reader(site, "stavemaate@example.org")
    subscribe(server, "stavemaate-ny@example.org")
    [msg] = wait_for_messages(site, "stavemaate-ny@example.org")
    confirm = confirm_link(msg).rpartition("/")[2]
    unsubscribe = tokens.sign(SECRET, "unsubscribe", reader)
    before = database(site)

    answers = [
        httpx.post(server.url(f"/unsubscribe/{s}"), data={"List-Unsubscribe": "One-Click"})
        for s in other_spellings(unsubscribe)
    ] + [httpx.get(server.url(f"/confirm/{s}")) for s in other_spellings(confirm)]

    assert {a.status_code for a in answers} == {404}
    assert database(site) == before
    assert states(site)["stavemaate@example.org"] == "active"
    assert states(site)["stavemaate-ny@example.org"] == "pending"
    # The token as it was made still works.
    assert httpx.get(server.url(f"/confirm/{confirm}")).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/archive/" + "9" * 5000,
        "/archive/" + "1" * 40,
        "/archive/9223372036854775808",
        "/archive/01",
        "/confirm/" + "9" * 5000 + ".AAAAAAAAAAAAAAAAAAAAAA",
        "/unsubscribe/" + "9" * 5000 + ".AAAAAAAAAAAAAAAAAAAAAA",
    ],
    ids=["5000-digits", "40-digits", "past-int64", "leading-zero", "confirm", "unsubscribe"],
)
def test_an_absurd_id_is_404_without_a_traceback(server: WebServer, path: str) -> None:
    mark = len(server.log())

    answer = httpx.get(server.url(path))

    assert answer.status_code == 404
    assert "Denne lenken virker ikke" in answer.text
    assert httpx.get(server.url("/healthz")).status_code == 200
    assert "Traceback" not in log_after(server, mark)


def test_a_client_that_leaves_in_the_middle_of_its_body_is_one_info_line(
    server: WebServer,
) -> None:
    """Anyone can open a connection, promise a body and leave: that fills no log."""
    mark = len(server.log())
    head = (
        "POST /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n"
    )
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port)) as conn:
            conn.sendall(head.encode() + b"email=halv%40example.org&cons")
        # ...and the client is gone, with 971 bytes of its body never sent.

    def left() -> list[str]:
        return [line for line in log_after(server, mark).splitlines() if "went away" in line]

    deadline = time.monotonic() + 10
    while len(left()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert httpx.get(server.url("/healthz")).status_code == 200
    assert len(left()) == 3, log_after(server, mark)
    assert all(" INFO pipeline.web: " in line for line in left())
    assert "Traceback" not in log_after(server, mark)
    assert "ERROR" not in log_after(server, mark)
    assert "halv@example.org" not in states(server.site)


# -- /report: one build at a time, and it never stalls the other routes --------------------------

CALENDAR = """\
BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//trnews tests//EN\r
BEGIN:VEVENT\r
UID:regionradet-{year}@example.org\r
DTSTAMP:{year}0101T090000Z\r
DTSTART:{year}0102T090000Z\r
DTEND:{year}0102T110000Z\r
SUMMARY:Regionrådet\r
ATTENDEE:mailto:kari@example.org\r
END:VEVENT\r
END:VCALENDAR\r
"""


def calendar_site(site: Site, feeds: FeedServer, extra: str = "") -> str:
    """A site whose report reads one calendar from the feed server; returns its path there."""
    path = "/kalender.ics"
    site.ambassadors.append(
        '[[ambassador]]\nid = "kari-nordmann"\nname = "Kari Nordmann"\n'
        'email = "kari@example.org"\nplan = { meetings = 6 }\n'
    )
    site.extra_toml = f'[calendar]\nurls = ["{feeds.url(path)}"]\n{extra}'
    return path


def serve_calendar(feeds: FeedServer, path: str, gate: threading.Event | None = None) -> None:
    body = CALENDAR.format(year=datetime.now(UTC).year).encode()
    feeds.add(path, body, content_type="text/calendar; charset=utf-8", gate=gate)


def wait_for_fetches(feeds: FeedServer, path: str, count: int) -> None:
    deadline = time.monotonic() + 30
    while len(feeds.requests_to(path)) < count:
        assert time.monotonic() < deadline, (
            f"the calendar was fetched {len(feeds.requests_to(path))} times"
        )
        time.sleep(0.02)


def test_45_concurrent_reports_fetch_the_calendar_once_and_the_archive_answers_meanwhile(
    site: Site, feeds: FeedServer
) -> None:
    path = calendar_site(site, feeds)
    slow = threading.Event()
    serve_calendar(feeds, path, gate=slow)
    server = WebServer.start(site)
    try:
        with ThreadPoolExecutor(45) as pool:
            reports = [pool.submit(httpx.get, server.url("/report"), timeout=60) for _ in range(45)]
            wait_for_fetches(feeds, path, 1)  # the report's build is under way...
            meanwhile: list[object] = []
            try:
                for other in ("/archive", "/archive/1", "/archive.atom", "/", "/healthz"):
                    meanwhile.append(httpx.get(server.url(other), timeout=10).status_code)
            except httpx.TimeoutException as e:  # held up behind the report
                meanwhile.append(repr(e))
            in_flight = not slow.is_set() and not any(r.done() for r in reports)
            slow.set()  # ...and only now does the calendar answer
            answers = [r.result() for r in reports]
    finally:
        slow.set()
        server.stop()

    assert meanwhile == [200, 404, 200, 200, 200]
    assert in_flight  # they were answered while the report was still being built
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    assert "Kari Nordmann" in answers[0].text
    assert len(feeds.requests_to(path)) == 1


def test_an_expired_report_is_served_as_it_was_while_one_rebuild_runs(
    site: Site, feeds: FeedServer
) -> None:
    """With `report_cache_minutes = 0` every request finds the report expired: it gets the last
    one built at once, and one rebuild at a time runs behind it."""
    path = calendar_site(site, feeds, "[web]\nreport_cache_minutes = 0\n")
    feeds.add(path, b"gone", status=404, content_type="text/plain")
    server = WebServer.start(site)
    slow = threading.Event()
    try:
        first = httpx.get(server.url("/report"), timeout=30)
        assert first.status_code == 200
        assert "kunne ikke leses" in first.text  # the calendar is missing from this one
        wait_for_fetches(feeds, path, 1)
        serve_calendar(feeds, path, gate=slow)

        with ThreadPoolExecutor(10) as pool:
            expired = httpx.get(server.url("/report"), timeout=10)  # starts the rebuild
            wait_for_fetches(feeds, path, 2)
            meanwhile = list(
                pool.map(lambda _: httpx.get(server.url("/report"), timeout=10), range(10))
            )
        fetches_while_slow = len(feeds.requests_to(path))
        slow.set()

        deadline = time.monotonic() + 30
        latest = expired
        while "kunne ikke leses" in latest.text and time.monotonic() < deadline:
            time.sleep(0.05)
            latest = httpx.get(server.url("/report"), timeout=10)
    finally:
        slow.set()
        server.stop()

    assert expired.content == first.content  # the old page, at once
    assert [m.content for m in meanwhile] == [first.content] * 10
    assert fetches_while_slow == 2  # one build, then one rebuild: never one per request
    assert "kunne ikke leses" not in latest.text  # the rebuilt page, once it was done
