"""Fetching feeds the way the real web needs it (issue "Collection that survives the real web"):
per-host and global limits, kept-alive connections, compression, retries, Retry-After, 410 Gone,
the per-feed deadline, and the feed health an admin reads in `trnews collect` and `trnews status`.

Feeds are served over loopback HTTP and `trnews collect` runs as a process. Where the shared
`feeds` server cannot express a case, a small server of this module does: `ScriptedServer`
answers a path from a script (fail the first request, then answer), records every request
with the connection it came on, and counts the requests in flight; `SilentServer` accepts
connections and never answers. Host addresses 127.0.0.1 and 127.0.0.2 (all of 127.0.0.0/8 is
loopback on Linux) make two hosts for the per-host limit.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import brotli
import pytest
from support.feeds import Post, one_ambassador, rss
from support.servers import FeedServer, LoopbackHTTP, QuietHandler
from support.site import Site, collect_line, feed_status, run_measured, stored_items

from pipeline import redact
from pipeline.fetch import WAIT_AT_MOST, retry_after
from pipeline.store import Store
from pipeline.store import migrations as store_module

OSLO = ZoneInfo("Europe/Oslo")


def summary(stdout: str) -> str:
    """The last line of `trnews collect`."""
    return stdout.splitlines()[-1]


def to_the_minute(when: datetime) -> datetime:
    """`when` rounded up to the minute, as collect lines show a time to wait for."""
    rounded = when.replace(second=0, microsecond=0)
    return rounded if rounded == when else rounded + timedelta(minutes=1)


def local_time(text: str) -> datetime:
    """A time as collect lines print it ("2026-11-28 16:04 CET"), read back in Europe/Oslo."""
    found = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d) CES?T", text)
    assert found, f"no local time in {text!r}"
    return datetime.strptime(found[1], "%Y-%m-%d %H:%M").replace(tzinfo=OSLO)


# -- servers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One answer of a script."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (to keep the request in flight)."""
    drop: bool = False
    """Close the connection without answering: a connection error for the client."""


@dataclass(frozen=True)
class Seen:
    path: str
    headers: dict[str, str]
    connection: tuple[str, int]
    """The client's address and port: the same for requests on one kept-alive connection."""
    at: float
    """time.monotonic() when the request arrived."""


class Gauge:
    """Counts requests in flight and remembers the most at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


class ScriptedServer(LoopbackHTTP):
    """A loopback HTTP server answering each path from a script: the first request gets the
    first step, the next the second, and the last step answers every request after that."""

    def __init__(self, host: str = "127.0.0.1", *, shared: Gauge | None = None) -> None:
        self.scripts: dict[str, list[Step]] = {}
        self.served: dict[str, int] = {}
        self.seen: list[Seen] = []
        self.in_flight = Gauge()
        gauges = [self.in_flight, *([shared] if shared else [])]
        server = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                for gauge in gauges:
                    gauge.enter()
                try:
                    step = self._next_step()
                finally:
                    # No longer in flight once the answer starts to go: the client may have it
                    # and send its next request before this thread runs again (under load it did).
                    for gauge in gauges:
                        gauge.leave()
                self._write(step)

            def _next_step(self) -> Step:
                headers = {k.lower(): v for k, v in self.headers.items()}
                server.seen.append(Seen(self.path, headers, self.client_address, time.monotonic()))
                script = server.scripts.get(self.path, [Step(404, b"not found")])
                n = server.served.get(self.path, 0)
                server.served[self.path] = n + 1
                step = script[min(n, len(script) - 1)]
                time.sleep(step.delay)
                return step

            def _write(self, step: Step) -> None:
                if step.drop:
                    self.close_connection = True
                    return
                self.send_response(step.status)
                self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
                self.send_header("Content-Length", str(len(step.body)))
                for k, v in step.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(step.body)

        super().__init__(Handler, host)

    def script(self, path: str, *steps: Step) -> str:
        """Answer `path` with these steps in turn; returns its URL."""
        self.scripts[path] = list(steps)
        return self.url(path)

    def requests_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    yield server
    server.close()


def feed(title: str) -> bytes:
    """An RSS feed with one post, dated yesterday, linked by its title."""
    return rss(Post(title, "https://kari.example.org/" + re.sub(r"\W+", "-", title.lower())))


# -- limits, connections, compression ---------------------------------------------------------


@dataclass(frozen=True)
class InFlight:
    """The most requests in flight at once: to each host, and in all."""

    first_host: int
    second_host: int
    everywhere: int


def collect_from_two_hosts(site: Site, collect_toml: str) -> InFlight:
    """Six slow feeds on each of 127.0.0.1 and 127.0.0.2, collected with this [collect]."""
    everywhere = Gauge()
    first = ScriptedServer("127.0.0.1", shared=everywhere)
    second = ScriptedServer("127.0.0.2", shared=everywhere)
    try:
        urls = [
            server.script(f"/blogg{n}.xml", Step(body=feed(f"{server.host} {n}"), delay=0.3))
            for server in (first, second)
            for n in range(6)
        ]
        site.extra_toml = "[collect]\n" + collect_toml
        one_ambassador(site, *urls)
        out = site.run("collect").stdout
    finally:
        first.close()
        second.close()
    assert summary(out).startswith("Collected 12 feeds: 12 new items; 12 ok,"), out
    return InFlight(first.in_flight.most, second.in_flight.most, everywhere.most)


def test_each_host_gets_at_most_per_host_requests_at_once_counted_apart(site: Site) -> None:
    seen = collect_from_two_hosts(site, "per_host = 2\nconcurrency = 10")
    # Two at once to each host, and the two hosts at the same time: four in all.
    assert seen == InFlight(first_host=2, second_host=2, everywhere=4)


def test_all_hosts_together_get_at_most_concurrency_requests_at_once(site: Site) -> None:
    seen = collect_from_two_hosts(site, "per_host = 6\nconcurrency = 3")
    assert seen.everywhere == 3
    assert seen.first_host <= 3 and seen.second_host <= 3


def test_feeds_on_one_host_share_one_kept_alive_connection(
    site: Site, scripted: ScriptedServer
) -> None:
    urls = [scripted.script(f"/feed{n}.xml", Step(body=feed(f"Innlegg {n}"))) for n in range(4)]
    site.extra_toml = "[collect]\nper_host = 1"
    one_ambassador(site, *urls)
    site.run("collect")
    assert len(scripted.seen) == 4
    assert len({s.connection for s in scripted.seen}) == 1


def test_brotli_gzip_and_deflate_bodies_are_asked_for_and_read(
    feeds: FeedServer, site: Site
) -> None:
    body = feed
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    urls = {
        feeds.add(
            "/br.xml",
            brotli.compress(body("Komprimert med br")),
            headers={"Content-Encoding": "br"},
        ): "Komprimert med br",
        feeds.add(
            "/gzip.xml",
            gzip.compress(body("Komprimert med gzip")),
            headers={"Content-Encoding": "gzip"},
        ): "Komprimert med gzip",
        feeds.add(
            "/zlib.xml",
            zlib.compress(body("Komprimert med zlib")),
            headers={"Content-Encoding": "deflate"},
        ): "Komprimert med zlib",
        feeds.add(
            "/deflate.xml",
            raw_deflate.compress(body("Komprimert med deflate")) + raw_deflate.flush(),
            headers={"Content-Encoding": "deflate"},
        ): "Komprimert med deflate",
    }
    unasked = feeds.add("/zstd.xml", b"(\xb5/\xfd not really", headers={"Content-Encoding": "zstd"})
    one_ambassador(site, *urls, unasked)
    out = site.run("collect").stdout
    for url in urls:
        assert "1 new item" in collect_line(out, url)
    assert set(stored_items(site.config)) == set(urls.values())
    asked = feeds.requests_to("/br.xml")[0].headers["accept-encoding"]
    assert {"br", "gzip"} <= {coding.strip() for coding in asked.split(",")}
    line = collect_line(out, unasked)
    assert line.startswith("FAILED") and "compressed as 'zstd'" in line, line


def test_a_brotli_bomb_stops_at_the_size_cap_without_filling_memory(
    feeds: FeedServer, site: Site
) -> None:
    # 1 GiB of zeros in under 2 KB: decompressed whole, one network chunk would take 1 GiB.
    packer = brotli.Compressor(quality=5)
    zeros = bytes(2**20)
    bomb = b"".join(
        [packer.process(b"<rss version='2.0'><channel>")]
        + [packer.process(zeros) for _ in range(1024)]
        + [packer.finish()]
    )
    url = feeds.add("/bombe.xml", bomb, headers={"Content-Encoding": "br"})
    good = feeds.add_file("/god.xml", "medium.xml")
    alone = Site(root=site.root / "alone", smtp_port=site.smtp_port)
    alone.root.mkdir()
    one_ambassador(alone, good)
    baseline = run_measured(alone, "collect").peak_mb  # the same process without the bomb
    one_ambassador(site, url, good)
    run = run_measured(site, "collect")
    assert run.returncode == 0, run.stderr
    out, peak_mb = run.stdout, run.peak_mb
    assert "larger than 5 MB: not read further" in collect_line(out, url)
    assert "1 new item" in collect_line(out, good)
    # Read whole, the bomb would add 1 GiB; stopped at the cap, far less.
    assert peak_mb < baseline + 200, f"collect peaked at {peak_mb:.0f} MB ({baseline:.0f} without)"


# -- retries within the run -------------------------------------------------------------------


def test_a_feed_that_fails_once_is_tried_again_and_read_in_the_same_run(
    site: Site, scripted: ScriptedServer
) -> None:
    first_answers = {
        "/brudd.xml": Step(drop=True),
        "/500.xml": Step(500),
        "/502.xml": Step(502),
        "/503.xml": Step(503),
        "/504.xml": Step(504),
        "/408.xml": Step(408),
    }
    urls = {
        path: scripted.script(path, first, Step(body=feed(f"Etter feil {path}")))
        for path, first in first_answers.items()
    }
    one_ambassador(site, *urls.values())
    out = site.run("collect").stdout
    for path, url in urls.items():
        line = collect_line(out, url)
        assert line.startswith("ok") and "1 new item" in line and "(on try 2)" in line, line
        assert len(scripted.requests_to(path)) == 2, path
    assert summary(out) == (
        "Collected 6 feeds: 6 new items; 6 ok, 0 not modified, 0 gone, 0 failed."
    )
    status = feed_status(site)
    assert all(status[url]["ok"] and status[url]["last_status"] == 200 for url in urls.values())


def test_a_feed_that_keeps_failing_is_retried_exactly_retries_times_and_reported_once(
    site: Site, scripted: ScriptedServer
) -> None:
    site.extra_toml = "[collect]\nretries = 1"
    always = scripted.script("/alltid-502.xml", Step(502, b"Bad gateway"))
    refused = {
        code: scripted.script(f"/{code}.xml", Step(code, b"nei"), Step(body=feed(f"Aldri {code}")))
        for code in (400, 401, 403, 404)
    }
    one_ambassador(site, always, *refused.values())
    out = site.run("collect").stdout
    assert len(scripted.requests_to("/alltid-502.xml")) == 2  # the first try and one retry
    line = collect_line(out, always)
    assert line.startswith("FAILED") and "HTTP 502 Bad Gateway (tried 2 times)" in line, line
    for code, url in refused.items():
        assert len(scripted.requests_to(f"/{code}.xml")) == 1, code  # a 4xx is not asked again
        assert collect_line(out, url).startswith(f"FAILED  {url} (kari-nordmann): HTTP {code} ")
    assert summary(out).endswith("; 0 ok, 0 not modified, 0 gone, 5 failed.")
    status = feed_status(site)
    assert status[always]["consecutive_failures"] == 1
    assert status[always]["last_status"] == 502
    assert status[always]["last_error"] == "HTTP 502 Bad Gateway"


# -- Retry-After ------------------------------------------------------------------------------


def test_a_short_retry_after_is_waited_out_within_the_run(
    site: Site, scripted: ScriptedServer
) -> None:
    urls = {
        code: scripted.script(
            f"/{code}.xml",
            Step(code, b"vent litt", headers={"Retry-After": "1"}),
            Step(body=feed(f"Etter {code}")),
        )
        for code in (429, 503)
    }
    one_ambassador(site, *urls.values())
    out = site.run("collect").stdout
    for code, url in urls.items():
        assert "1 new item" in collect_line(out, url)
        first, again = scripted.requests_to(f"/{code}.xml")
        assert again.at - first.at >= 0.95, "asked again before the second it asked us to wait"
    assert set(stored_items(site.config)) == {"Etter 429", "Etter 503"}


def test_a_long_retry_after_keeps_the_feed_unasked_until_then(
    site: Site, scripted: ScriptedServer
) -> None:
    later = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    seconds = scripted.script("/429.xml", Step(429, b"for mange", headers={"Retry-After": "3600"}))
    dated = scripted.script(
        "/503.xml",
        Step(503, b"vedlikehold", headers={"Retry-After": format_datetime(later, usegmt=True)}),
    )
    good = scripted.script("/god.xml", Step(body=feed("Alt vel")))
    one_ambassador(site, seconds, dated, good)
    before = datetime.now(UTC)
    out = site.run("collect").stdout
    after = datetime.now(UTC)

    line = collect_line(out, seconds)
    assert line.startswith("FAILED") and "HTTP 429 Too Many Requests" in line, line
    assert "; asks to wait until " in line and "not fetched before then" in line, line
    shown = local_time(line)
    assert before + timedelta(seconds=3600 - 60) <= shown <= after + timedelta(seconds=3660)
    assert local_time(collect_line(out, dated)) == to_the_minute(later)
    assert len(scripted.requests_to("/429.xml")) == 1  # an hour does not fit in the deadline
    status = feed_status(site)
    asked = datetime.fromisoformat(status[seconds]["retry_after"])
    assert before + timedelta(seconds=3599) <= asked <= after + timedelta(seconds=3601)
    assert datetime.fromisoformat(status[dated]["retry_after"]) == later
    assert status[seconds]["ok"] is False and status[seconds]["last_status"] == 429

    again = site.run("collect").stdout
    assert len(scripted.requests_to("/429.xml")) == 1
    assert len(scripted.requests_to("/503.xml")) == 1
    assert len(scripted.requests_to("/god.xml")) == 2
    for url in (seconds, dated):
        line = collect_line(again, url)
        assert line.startswith("WAITING") and "its server asked to wait until" in line, line
    assert local_time(collect_line(again, seconds)) == shown
    assert summary(again) == (
        "Collected 3 feeds: 0 new items; 1 ok, 0 not modified, 0 gone, 2 waiting, 0 failed."
    )


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", timedelta(seconds=120)),
        (" 0 ", timedelta(0)),
        ("Sat, 28 Nov 2026 12:00:00 GMT", timedelta(hours=2)),
        ("Sat, 28 Nov 2026 09:00:00 GMT", timedelta(0)),  # in the past: now
        ("99999999999999", WAIT_AT_MOST),
        ("864000", WAIT_AT_MOST),
        ("-5", None),
        ("snart", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates_and_is_never_past_a_day(
    header: str | None, expected: timedelta | None
) -> None:
    now = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    when = retry_after(header, now)
    assert (when - now if when else None) == expected


# -- 410 Gone ---------------------------------------------------------------------------------


def test_a_gone_feed_says_so_and_is_not_fetched_again(site: Site, scripted: ScriptedServer) -> None:
    gone = scripted.script("/borte.xml", Step(410, b"Gone"))
    one_ambassador(site, gone)
    first = site.run("collect").stdout
    line = collect_line(first, gone)
    assert line.startswith("FAILED") and "HTTP 410 Gone" in line, line
    assert "remove it from the config" in line
    status = feed_status(site)[gone]
    assert status["gone"] is True and status["ok"] is False and status["last_status"] == 410
    today = datetime.fromisoformat(status["gone_since"]).astimezone(OSLO).date().isoformat()

    second = site.run("collect").stdout
    assert len(scripted.requests_to("/borte.xml")) == 1
    assert collect_line(second, gone) == (
        f"GONE    {gone} (kari-nordmann): gone since {today} (HTTP 410), not fetched any more: "
        "remove it from the config"
    )
    assert (
        summary(second) == "Collected 1 feed: 0 new items; 0 ok, 0 not modified, 1 gone, 0 failed."
    )

    # Another URL is another feed, even on the same server
    site.ambassadors.clear()
    moved = scripted.script("/borte.xml?ny=1", Step(body=feed("Ny adresse")))
    one_ambassador(site, moved)
    site.write()
    shown = redact.url(moved)  # its query is not shown
    assert "1 new item" in collect_line(site.run("collect").stdout, shown)

    # Should the feed come back, --retry-gone asks it again, and it is no longer gone
    site.ambassadors.clear()
    one_ambassador(site, gone)
    site.write()
    scripted.script("/borte.xml", Step(body=feed("Tilbake")))
    assert "GONE" in collect_line(site.run("collect").stdout, gone)
    back = site.run("collect", "--retry-gone").stdout
    assert "1 new item" in collect_line(back, gone)
    status = feed_status(site)[gone]
    assert status["gone"] is False and status["ok"] is True and status["gone_since"] is None


# -- feed health in collect and status --------------------------------------------------------


def test_status_lists_failing_then_gone_then_moved_then_ok_feeds(
    feeds: FeedServer, site: Site
) -> None:
    healthy = feeds.add("/helse/ok.xml", feed("Frisk"), etag='"1"')
    feeds.add("/helse/ny.xml", feed("Flyttet"), etag='"2"')
    moved = feeds.add("/helse/gammel.xml", status=301, redirect=feeds.url("/helse/ny.xml"))
    gone = feeds.add("/helse/borte.xml", b"Gone", status=410)
    failing = feeds.url("/helse/finnes-ikke.xml")
    one_ambassador(site, healthy, moved, gone, failing)
    first = site.run("collect").stdout
    assert summary(first) == (
        "Collected 4 feeds: 2 new items; 2 ok, 0 not modified, 0 gone, 2 failed."
    )
    second = site.run("collect").stdout
    assert summary(second) == (
        "Collected 4 feeds: 0 new items; 0 ok, 2 not modified, 1 gone, 1 failed."
    )

    text = site.run("status").stdout
    assert "Strømmer: 1 feiler, 1 borte, 1 flyttet, 1 ok" in text
    lines = [line for line in text.splitlines() if " http://" in line]
    assert [line.split()[:2] for line in lines] == [
        ["FEILER", failing],
        ["BORTE", gone],
        ["FLYTTET", moved],
        ["ok", healthy],
    ]
    assert "2 feil på rad" in lines[0] and "HTTP 404 Not Found" in lines[0]
    assert "fjern den fra konfigurasjonen" in lines[1]
    assert (
        f"flyttet for godt til {feeds.url('/helse/ny.xml')}: oppdater konfigurasjonen" in lines[2]
    )

    data = json.loads(site.run("status", "--json").stdout)
    by_url = {f["url"]: f for f in data["feeds"]}
    assert list(by_url) == [healthy, moved, gone, failing]  # JSON keeps the config's order
    for f in data["feeds"]:
        assert {
            "url",
            "ambassador",
            "ok",
            "last_success",
            "last_status",
            "consecutive_failures",
            "last_error",
            "gone",
            "moved_to",
        } <= set(f)
        assert f["ambassador"] == "kari-nordmann"
    assert (by_url[healthy]["ok"], by_url[healthy]["last_status"]) == (True, 304)
    assert by_url[moved]["moved_to"] == feeds.url("/helse/ny.xml")
    assert (by_url[gone]["gone"], by_url[gone]["last_success"]) == (True, None)
    expected = {
        "ok": False,
        "last_status": 404,
        "consecutive_failures": 2,
        "last_error": "HTTP 404 Not Found",
        "gone": False,
        "moved_to": None,
    }
    assert {k: by_url[failing][k] for k in expected} == expected


def test_relative_links_resolve_against_the_url_after_redirects(
    feeds: FeedServer, site: Site
) -> None:
    feeds.add("/b/feed.xml", rss(Post("Relativt innlegg", "post/1")))
    start = feeds.add("/a", status=302, redirect="/b/feed.xml")
    one_ambassador(site, start)
    site.run("collect")
    [(item, _)] = stored_items(site.config).values()
    assert item.link == feeds.url("/b/post/1")


# -- the database ------------------------------------------------------------------------------


def test_a_database_from_before_feed_health_is_upgraded_and_keeps_its_feeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "trnews.db"
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    with monkeypatch.context() as m:  # the schema as the previous release left it
        m.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:1])
        with Store.open(path) as old:
            old.conn.execute(
                "INSERT INTO feeds (url, etag, last_attempt, last_success, last_status)"
                " VALUES (?, ?, ?, ?, 200)",
                ("https://kari.example.org/feed/", '"v1"', now.isoformat(), now.isoformat()),
            )
    with Store.open(path) as store:
        health = store.feed("https://kari.example.org/feed/")
        assert health is not None
        assert (health.etag, health.last_success, health.gone_since) == ('"v1"', now, None)
        store.record_fetch(
            "https://kari.example.org/feed/", now=now, error="HTTP 410 Gone", status=410
        )
        health = store.feed("https://kari.example.org/feed/")
        assert health is not None and health.gone_since == now
