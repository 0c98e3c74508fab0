"""Fetches never reach where the admin did not point them (pipeline.egress).

The attack: a feed (or a calendar) that answers `302 → http://127.0.0.1:OTHERPORT/admin/…`
made trnews fetch what only its own machine could reach; the answer became an item, was mailed
to every subscriber and shown in the archive. The same redirect could point at a cloud's
metadata service or any host of the office network.

Two loopback HTTP servers on two ports stand for the internet (the `feeds` server, port A,
where the admin pointed trnews) and for the inside (a second server, port B, holding a feed, a
calendar and a page with a secret). The CLI runs as a process, as an admin runs it. Public
addresses cannot be reached from here: where a test needs one, it gives the backend a resolver
answer and records where the backend connects, one level below our code (httpcore's backend).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from ipaddress import ip_address
from typing import Any
from zoneinfo import ZoneInfo

import httpcore
import pytest
from support.feeds import Post, ics, rss
from support.mail import html_part, text_part
from support.servers import FeedServer
from support.site import Site, collect_line, feed_status, stored_items

from pipeline import egress

OSLO = ZoneInfo("Europe/Oslo")
SECRET = "Internt-hemmelig-innhold"
READER = "leser@example.org"


@pytest.fixture
def inside() -> Iterator[FeedServer]:
    """A second loopback server on another port: what only this machine reaches."""
    with FeedServer() as server:
        yield server


def every_message(site: Site) -> str:
    """Both parts of every message in the outbox, decoded, as one text."""
    return "\n".join(text_part(m) + html_part(m) for m in site.messages())


# -- feeds -----------------------------------------------------------------------------------


def test_a_redirect_to_another_port_of_this_machine_is_not_followed_and_nothing_is_published(
    feeds: FeedServer, inside: FeedServer, site: Site
) -> None:
    inside.add("/admin/feed.xml", rss(Post(SECRET, "https://intern.example.org/hemmelig")))
    inside.add("/eget.xml", rss(Post("Fra en adresse admin valgte", "https://b.example/eget")))
    to_ip = feeds.add("/ip.xml", status=302, redirect=inside.url("/admin/feed.xml"))
    by_name = feeds.add(
        "/navn.xml", status=301, redirect=f"http://localhost:{inside.port}/admin/feed.xml"
    )
    feeds.add("/ny.xml", rss(Post("Flyttet innen verten", "https://a.example/ny")))
    same_host = feeds.add("/gammel.xml", status=302, redirect="/ny.xml")
    configured = inside.url("/eget.xml")  # the admin pointed here: fetched as it is
    site.ambassador(
        "kari-nordmann",
        "Kari Nordmann",
        "",
        [{"url": u, "kind": "blog"} for u in (to_ip, by_name, same_host, configured)],
    )
    site.run("subscribers", "add", READER)

    out = site.run("collect").stdout

    line = collect_line(out, to_ip)
    assert line.startswith("FAILED"), line
    assert f"redirected to {inside.url('/admin/feed.xml')}: not followed" in line, line
    assert "127.0.0.1 is a loopback address on another host:port" in line, line
    line = collect_line(out, by_name)
    assert line.startswith("FAILED"), line
    assert f"redirected to http://localhost:{inside.port}/admin/feed.xml: not followed" in line
    assert "a loopback address" in line, line
    assert collect_line(out, same_host).startswith("ok"), out
    assert collect_line(out, configured).startswith("ok"), out
    assert inside.requests_to("/admin/feed.xml") == [], "the inside was never asked"
    status = feed_status(site)
    assert status[to_ip]["ok"] is False and "not followed" in status[to_ip]["last_error"]
    assert SECRET not in stored_items(site.config)

    site.run("send")
    sent = every_message(site)
    assert "Flyttet innen verten" in sent and "Fra en adresse admin valgte" in sent
    assert SECRET not in sent
    with site.db.open("rb") as db:
        assert SECRET.encode() not in db.read(), "the archive is built from the database"


def test_a_redirect_that_stays_on_the_configured_host_and_port_may_reach_loopback(
    feeds: FeedServer, site: Site
) -> None:
    # The feed server is itself on loopback: staying on its host:port is where the admin
    # pointed trnews, so a relative and an absolute redirect there are followed.
    feeds.add("/b.xml", rss(Post("Etter to hopp", "https://a.example/b")))
    feeds.add("/a.xml", status=301, redirect=feeds.url("/b.xml"))
    start = feeds.add("/start.xml", status=302, redirect="/a.xml")
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": start, "kind": "blog"}])
    line = collect_line(site.run("collect").stdout, start)
    assert line.startswith("ok") and "1 new item" in line, line


# -- calendars -------------------------------------------------------------------------------


def test_a_calendar_redirected_to_another_port_of_this_machine_is_named_and_never_read(
    feeds: FeedServer, inside: FeedServer, site: Site
) -> None:
    soon = (datetime.now(OSLO) + timedelta(days=3)).replace(hour=10, minute=0, second=0)
    stamp = f"{soon:%Y%m%dT%H%M%S}"

    def calendar(title: str) -> bytes:
        event = f"UID:{title}\nSUMMARY:{title}\nDTSTART;TZID=Europe/Oslo:{stamp}"
        return ics(event).encode()

    inside.add("/admin/kalender.ics", calendar(SECRET), content_type="text/calendar")
    redirected = feeds.add("/kalender.ics", status=302, redirect=inside.url("/admin/kalender.ics"))
    feeds.add("/ny.ics", calendar("Åpent møte"), content_type="text/calendar")
    same_host = feeds.add("/gammel.ics", status=301, redirect="/ny.ics")
    site.extra_toml = f'[calendar]\nurls = ["{redirected}", "{same_host}"]\n'
    site.meeting(f'title = "Regionrådet"\nstart = {soon.isoformat(timespec="seconds")}')
    site.run("subscribers", "add", READER)

    proc = site.run("report", "--format", "json")
    errors = {e["calendar"]: e["error"] for e in json.loads(proc.stdout)["calendar_errors"]}
    assert list(errors) == [redirected]
    assert f"redirected to {inside.url('/admin/kalender.ics')}: not followed" in errors[redirected]
    assert f"calendar {redirected} could not be read" in proc.stderr
    text = site.run("report").stdout
    assert redirected in text and "not followed" in text

    site.run("send")
    sent = every_message(site)
    assert "Regionrådet" in sent and "Åpent møte" in sent
    assert SECRET not in sent
    assert inside.requests_to("/admin/kalender.ics") == []


# -- check --discover ------------------------------------------------------------------------


def test_discover_neither_suggests_nor_writes_a_url_on_another_port_of_this_machine(
    feeds: FeedServer, inside: FeedServer, site: Site
) -> None:
    inside.add("/feed", rss(Post(SECRET, "https://intern.example.org/hemmelig")))
    page = feeds.add(
        "/",
        (
            '<!DOCTYPE html><html><head><link rel="alternate" type="application/rss+xml" '
            f'href="{inside.url("/feed")}"></head><body>Blogg</body></html>'
        ).encode(),
        content_type="text/html; charset=utf-8",
    )
    moved = feeds.add("/gammel.xml", status=301, redirect=inside.url("/feed"))
    site.ambassador(
        "kari-nordmann",
        "Kari Nordmann",
        "",
        [{"url": page, "kind": "blog"}, {"url": moved, "kind": "chronicle"}],
    )
    before = site.write().read_text(encoding="utf-8")

    out = site.run("check", "--discover", "--fix").stdout

    assert (
        f"ambassador[0].feeds[0].url: {page} fails (not a feed: an HTML page naming a feed at "
        f"{inside.url('/feed')}, not suggested: 127.0.0.1 is a loopback address"
    ) in out, out
    assert f"ambassador[0].feeds[1].url: {moved} fails (redirected to" in out, out
    assert "not followed" in out
    assert "No better URL found" in out and "Replaced" not in out
    assert site.config.read_text(encoding="utf-8") == before
    assert not site.config.with_name("trnews.toml.bak").exists()
    line = collect_line(site.run("collect").stdout, page)
    assert "not suggested" in line and "put that URL in the config" not in line, line
    assert inside.requests_to("/feed") == []


# -- the policy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::7f00:1", "reserved"),  # IPv4-compatible 127.0.0.1 (deprecated)
        ("64:ff9b::a01:203", "private"),  # NAT64 of 10.1.2.3
        ("2002:c0a8:101::1", "private"),  # 6to4 of 192.168.1.1
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "unique-local"),
        ("fd12:3456::1", "unique-local"),
        ("fe80::1", "link-local"),
        ("fec0::1", "site-local"),
        ("224.0.0.1", "multicast"),
        ("239.1.1.1", "multicast"),
        ("ff02::1", "multicast"),
        ("100.64.0.1", "shared (carrier-grade NAT)"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("127.0.0.2", "loopback"),
        ("::1", "loopback"),
        ("240.0.0.1", "private"),
        ("192.0.2.1", "private"),  # documentation
        ("2001:db8::1", "private"),  # documentation
    ],
)
def test_non_public_addresses_are_named_for_what_they_are(address: str, kind: str) -> None:
    assert egress.why_not_public(ip_address(address)) == kind
    assert not egress.is_public(ip_address(address))


@pytest.mark.parametrize(
    "address",
    ["93.184.215.14", "8.8.8.8", "2606:4700::1", "::ffff:93.184.215.14", "2002:5db8:d70e::1"],
)
def test_public_addresses_pass(address: str) -> None:
    assert egress.is_public(ip_address(address)), egress.why_not_public(ip_address(address))


# -- resolve once, connect to what was checked -----------------------------------------------


class Recorder(httpcore.AsyncNetworkBackend):
    """httpcore's side of the connection: records where it is asked to connect and the name
    TLS is started for, and connects nowhere (public addresses cannot be reached from here)."""

    def __init__(self) -> None:
        self.connects: list[tuple[str, int]] = []
        self.tls_names: list[str | None] = []

    async def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        self.connects.append((host, port))
        return Stream(self)


class Stream(httpcore.AsyncNetworkStream):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        self.recorder.tls_names.append(server_hostname)
        raise httpcore.ConnectError("recorded; no TLS peer here")

    async def aclose(self) -> None:
        pass


class Answers:
    """A resolver that gives its answers in turn, and counts the lookups."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[egress.IPAddress]:
        self.asked.append((host, port))
        return [ip_address(a) for a in self.answers.pop(0)]


def connect(backend: egress.GuardedBackend, host: str, port: int) -> None:
    asyncio.run(backend.connect_tcp(host, port, timeout=5))


def test_the_backend_connects_to_the_address_it_checked_not_to_a_new_lookup() -> None:
    # "localhost" would resolve to loopback if the name were looked up again at connect time:
    # the backend must connect to the public address the check saw, and look up once.
    inner, resolver = Recorder(), Answers(["93.184.215.14"], ["127.0.0.1"])
    backend = egress.GuardedBackend(("feeds.example.org", 443), resolver=resolver, inner=inner)
    connect(backend, "localhost", 8080)
    assert inner.connects == [("93.184.215.14", 8080)]
    assert resolver.asked == [("localhost", 8080)]


def test_tls_checks_the_name_while_tcp_goes_to_the_checked_address() -> None:
    # httpcore's own pool, as httpx runs it: the certificate and SNI are for the name.
    inner = Recorder()
    backend = egress.GuardedBackend(
        ("feeds.example.org", 443), resolver=Answers(["2606:4700::1"]), inner=inner
    )

    async def fetch() -> None:
        async with httpcore.AsyncConnectionPool(network_backend=backend) as pool:
            await pool.request("GET", "https://kalender.example.net:8443/moter.ics")

    with pytest.raises(httpcore.ConnectError, match="recorded"):
        asyncio.run(fetch())
    assert inner.connects == [("2606:4700::1", 8443)]
    assert inner.tls_names == ["kalender.example.net"]


def test_a_name_with_any_non_public_address_is_refused_and_never_connected() -> None:
    inner = Recorder()
    for answer in (["127.0.0.1"], ["93.184.215.14", "10.0.0.5"], ["::ffff:169.254.169.254"]):
        backend = egress.GuardedBackend(
            ("feeds.example.org", 443), resolver=Answers(answer), inner=inner
        )
        with pytest.raises(egress.NotPublic, match="address on another host:port"):
            connect(backend, "rebind.example", 80)
    assert inner.connects == []


def test_the_configured_host_and_port_are_connected_as_named_without_a_check() -> None:
    inner, resolver = Recorder(), Answers()
    backend = egress.GuardedBackend(("127.0.0.1", 8080), resolver=resolver, inner=inner)
    connect(backend, "127.0.0.1", 8080)
    assert inner.connects == [("127.0.0.1", 8080)] and resolver.asked == []
    with pytest.raises(egress.NotPublic):  # the same host on another port is elsewhere
        connect(egress.GuardedBackend(("127.0.0.1", 8080), inner=inner), "127.0.0.1", 8081)
