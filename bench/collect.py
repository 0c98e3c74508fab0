"""How fast trnews collects N slow feeds, against rss2email's loop and against feedparser's floor.

A loopback HTTP server (asyncio, in a child process, so that it shares neither our interpreter
lock nor our memory) serves N WordPress-shaped feeds of 20 items (1-2 KB of HTML each), spread
over HOSTS addresses 127.0.0.1-127.0.0.50 so that trnews's per-host limit does not serialise
them. Every answer comes after LATENCY (250 ms); ETag and Last-Modified are honoured with 304.
In the same run:

- (a) loop: one `httpx.Client`, then `GET` + `feedparser.parse` per feed, one after another
  (what rss2email does);
- (b) trnews: `pipeline.collect.collect(config, store)` in a process of its own (timed after
  its imports), first run, fresh database;
- (c) trnews again: every feed answers 304 Not Modified to the validators stored;
- (d) floor: LATENCY + the time `feedparser.parse` takes on the same N bodies from memory, here;
- CLI: `trnews collect` as a process on a fresh database, with a 60 MB feed and the quadratic
  entity blowup (tests/data/entity_bomb.xml) added: its wall time (start-up included) and the
  peak resident memory of it and the processes it starts (its parse workers).

Targets at N = 200 (issue 3): a/b >= 20, b/d <= 1.5, c/b <= 0.5, peak RSS < 250 MB.

And whole processes, start-up included (issue 17): `trnews collect` over 120 feeds from 30 hosts
on a fresh database, then again (every feed 304), against the sequential loop as a script of its
own; targets: loop / trnews >= 20, the 304 run <= 0.5x the first.

    .venv/bin/python bench/collect.py                 # N = 50, 200, 1000
    .venv/bin/python bench/collect.py --sizes 200     # one size
    .venv/bin/python bench/collect.py --sizes 200 --concurrency 64
    .venv/bin/python bench/collect.py --profile 200   # where trnews's time goes
    .venv/bin/python bench/collect.py --processes     # only the 120-feed whole-process case
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import logging
import os
import pstats
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import feedparser
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Result, TreeMemory, child, port_of

ROOT = Path(__file__).resolve().parent.parent
BOMB = ROOT / "tests" / "data" / "entity_bomb.xml"

SIZES = (50, 200, 1000)
HOSTS = 50
LATENCY = 0.25
ENTRIES = 20
BIG_MB = 60
LAST_MODIFIED = "Wed, 25 Nov 2026 16:31:12 GMT"
TARGETS = {"a/b": 20.0, "b/d": 1.5, "c/b": 0.5, "rss_mb": 250.0}
"""At N = 200: at least 20x the loop, within 1.5x the floor, a 304 run at most half the first,
and the CLI's peak memory under 250 MB."""


# -- the feeds --------------------------------------------------------------------------------

_TEXT = """
regionen forskning samarbeid næringsliv kommunen Trondheim Malvik Stjørdal Melhus Skaun Orkland
Gauldal bedriftene arbeidsplasser boliger transport jernbanen havna energi hydrogen studentene
universitetet NTNU SINTEF innovasjon gründere kapital vekst utvikling planen høringen vedtaket
styret møtet ambassadørene kronikken debatten fremtiden bærekraft klima naturen friluftsliv
kulturen festivalen idretten skolen barnehagen helse og i på for med
"""
WORDS = _TEXT.split()


def _sentence(rng: random.Random) -> str:
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 16)))
    return words[0].upper() + words[1:] + rng.choice(".....?!")


def _paragraph(rng: random.Random, host: str, slug: str) -> str:
    words = " ".join(_sentence(rng) for _ in range(rng.randint(2, 4))).split(" ")
    kind = rng.random()
    if kind < 0.25:  # a link inside the text
        link = f'<a href="https://{host}/{slug}/se-ogsa/">{" ".join(words[3:6])}</a>'
        words = [*words[:3], link, *words[6:]]
    elif kind < 0.4:
        words = ["<strong>" + " ".join(words[:4]) + "</strong>", *words[4:]]
    return "<p>" + " ".join(words) + "</p>"


def feed_body(i: int, now: datetime) -> bytes:
    """Feed number `i`: WordPress's RSS 2.0 with ENTRIES items, each with an excerpt
    (`description`) and 1-2 KB of HTML (`content:encoded`), the same bytes in every process."""
    rng = random.Random(i)
    host = f"blogg{i}.example.org"
    items = []
    for k in range(ENTRIES):
        slug = f"innlegg-{i}-{k}"
        title = _sentence(rng).rstrip(".?!")[:72]
        when = now - timedelta(hours=7 * k + rng.randint(1, 6))
        size = rng.randint(1000, 2000)
        parts: list[str] = []
        while sum(len(p) for p in parts) < size - 250:
            parts.append(_paragraph(rng, host, slug))
            if rng.random() < 0.15:
                parts.append(
                    f'<figure class="wp-block-image size-large"><img decoding="async" '
                    f'width="1024" height="576" src="https://{host}/wp-content/uploads/'
                    f'{slug}-{len(parts)}.jpg" alt="" class="wp-image-{k}"/></figure>'
                )
        footer = (
            f'<p>Innlegget <a rel="nofollow" href="https://{host}/{slug}/">{title}</a> dukket '
            f'først opp på <a rel="nofollow" href="https://{host}">Blogg {i}</a>.</p>\n'
        )
        first = parts[0].removeprefix("<p>").removesuffix("</p>")
        excerpt = f"<p>{first[:250]} [&#8230;]</p>\n{footer}"
        content = "\n\n\n\n".join(parts)
        items.append(
            f"""	<item>
		<title>{title}</title>
		<link>https://{host}/{slug}/?utm_source=rss&#038;utm_medium=rss&#038;utm_campaign={slug}</link>
					<comments>https://{host}/{slug}/#respond</comments>

		<dc:creator><![CDATA[Ambassadør {i}]]></dc:creator>
		<pubDate>{format_datetime(when)}</pubDate>
		<category><![CDATA[{rng.choice(WORDS).capitalize()}]]></category>
		<guid isPermaLink="false">https://{host}/?p={1000 + k}</guid>

					<description><![CDATA[{excerpt}]]></description>
										<content:encoded><![CDATA[{content}
{footer}]]></content:encoded>

					<wfw:commentRss>https://{host}/{slug}/feed/</wfw:commentRss>
			<slash:comments>{rng.randint(0, 9)}</slash:comments>
			</item>
"""
        )
    return f"""<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"
	xmlns:content="http://purl.org/rss/1.0/modules/content/"
	xmlns:wfw="http://wellformedweb.org/CommentAPI/"
	xmlns:dc="http://purl.org/dc/elements/1.1/"
	xmlns:atom="http://www.w3.org/2005/Atom"
	xmlns:sy="http://purl.org/rss/1.0/modules/syndication/"
	xmlns:slash="http://purl.org/rss/1.0/modules/slash/"
	>

<channel>
	<title>Blogg {i}</title>
	<atom:link href="https://{host}/feed/" rel="self" type="application/rss+xml" />
	<link>https://{host}</link>
	<description>Ambassadør for Trondheimsregionen</description>
	<lastBuildDate>{format_datetime(now)}</lastBuildDate>
	<language>nb-NO</language>
	<sy:updatePeriod>
	hourly	</sy:updatePeriod>
	<sy:updateFrequency>
	1	</sy:updateFrequency>
	<generator>https://wordpress.org/?v=6.8.3</generator>
{"".join(items)}</channel>
</rss>
""".encode()


def big_body(now: datetime) -> bytes:
    """A BIG_MB feed: feed 0's items over and over (a site that puts its whole archive in it)."""
    one = feed_body(0, now)
    head, rest = one.split(b"<item>", 1)
    items, tail = rest.rsplit(b"</item>", 1)
    item = b"<item>" + items + b"</item>"
    copies = BIG_MB * 2**20 // len(item) + 1
    return head + item * copies + tail


def feed_path(i: int) -> str:
    return f"/feed/{i}.xml"


def feed_url(port: int, i: int, hosts: int = HOSTS) -> str:
    """Feed `i` lives on address 127.0.0.(1 + i % hosts): `hosts` hosts share the N feeds."""
    return f"http://127.0.0.{1 + i % hosts}:{port}{feed_path(i)}"


def moment() -> datetime:
    """The run's "now", to the minute, so the server child builds the very same bytes."""
    return datetime.now(UTC).replace(second=0, microsecond=0)


# -- the server, in a child process -----------------------------------------------------------


@dataclass(frozen=True)
class Route:
    body: bytes
    etag: str


def _head(status: str, fields: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in fields.items()), "", ""]
    return "\r\n".join(lines).encode("latin-1")


async def _connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, routes: dict[str, Route]
) -> None:
    """Answer the requests of one kept-alive connection, each after LATENCY."""
    try:
        while True:
            try:
                request = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            lines = request.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            await asyncio.sleep(LATENCY)
            route = routes.get(path)
            if route is None:
                writer.write(_head("404 Not Found", {"Content-Length": "0"}))
            elif headers.get("if-none-match") == route.etag or (
                "if-none-match" not in headers and headers.get("if-modified-since") == LAST_MODIFIED
            ):
                writer.write(_head("304 Not Modified", {"ETag": route.etag}))
            else:
                fields = {
                    "Content-Type": "application/rss+xml; charset=UTF-8",
                    "Content-Length": str(len(route.body)),
                    "ETag": route.etag,
                    "Last-Modified": LAST_MODIFIED,
                }
                writer.write(_head("200 OK", fields))
                view = memoryview(route.body)
                for start in range(0, len(view), 2**18):
                    writer.write(view[start : start + 2**18])
                    await writer.drain()
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                return
    except ConnectionError:
        pass  # the client stopped reading (the body cap): nothing to answer any more
    finally:
        writer.close()


def _listeners(hosts: int) -> list[socket.socket]:
    """One listening socket per address 127.0.0.1 … 127.0.0.`hosts`, all on one port."""
    for _ in range(20):
        socks = []
        try:
            first = socket.create_server(("127.0.0.1", 0), backlog=1024)
            socks.append(first)
            port = first.getsockname()[1]
            for x in range(2, hosts + 1):
                socks.append(socket.create_server((f"127.0.0.{x}", port), backlog=1024))
            return socks
        except OSError:  # another program took the port on one of the addresses: try another
            for s in socks:
                s.close()
    raise SystemExit("bench/collect.py: no port free on every loopback address")


async def _serve(n: int, now: datetime, hosts: int) -> None:
    routes = {feed_path(i): Route(feed_body(i, now), f'"v1-{i}"') for i in range(n)}
    routes["/hostile/big.xml"] = Route(big_body(now), '"big"')
    routes["/hostile/bomb.xml"] = Route(BOMB.read_bytes(), '"bomb"')
    servers = []
    for sock in _listeners(hosts):
        servers.append(
            await asyncio.start_server(lambda r, w: _connection(r, w, routes), sock=sock)
        )
    print(servers[0].sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for server in servers:
        server.close()


@contextlib.contextmanager
def feed_server(n: int, now: datetime, hosts: int = HOSTS) -> Iterator[int]:
    """Start the child server for N feeds on `hosts` loopback addresses; yields its port;
    stops the child afterwards."""
    with child(__file__, "--serve", str(n), now.isoformat(), str(hosts)) as proc:
        yield port_of(proc)


# -- trnews -----------------------------------------------------------------------------------

CONFIG = """\
[newsletter]
title = "Benk"
sender = "Benk <benk@example.org>"
public_url = "https://benk.example.org"
lookback_days = 30

[storage]
database = "trnews.db"
"""
COLLECT = ""
"""A `[collect]` section for the config (`--concurrency`); empty: trnews's defaults."""


def write_config(folder: Path, urls: list[str], per_ambassador: int = 5) -> Path:
    """A config with one ambassador per `per_ambassador` feeds, and COLLECT."""
    lines = [CONFIG, COLLECT]
    for a, start in enumerate(range(0, len(urls), per_ambassador)):
        feeds = ", ".join(
            f'{{ url = "{u}", kind = "blog" }}' for u in urls[start : start + per_ambassador]
        )
        lines.append(
            f'[[ambassador]]\nid = "amb-{a}"\nname = "Ambassadør {a}"\nfeeds = [{feeds}]\n'
        )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "trnews.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def time_trnews(config_path: Path, n: int) -> tuple[float, float]:
    """Wall time of trnews's collect, the first run then the 304 run, in a process of its own
    (its imports done before the clock starts), so that no N inherits another's warm state."""
    out = subprocess.run(
        [sys.executable, __file__, "--trnews", str(config_path), str(n)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return float(out[-2]), float(out[-1])


def _trnews(config_path: Path, n: int) -> None:
    """Child process: time both collect runs in-process, print the two times."""
    from pipeline.collect import collect
    from pipeline.config import load_config
    from pipeline.store import Store

    logging.basicConfig(level=logging.ERROR)
    config = load_config(config_path)
    with Store.open(config.database_path) as store:
        start = time.perf_counter()
        first = collect(config, store)
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        second = collect(config, store)
        second_s = time.perf_counter() - start
    failed = [o for o in first + second if not o.ok]
    if failed:
        raise SystemExit(f"bench/collect.py: {len(failed)} feeds failed, e.g. {failed[0]}")
    stored = sum(o.new_items for o in first)
    if stored != n * ENTRIES:
        raise SystemExit(f"bench/collect.py: trnews stored {stored} items, not {n * ENTRIES}")
    if not all(o.not_modified for o in second):
        raise SystemExit("bench/collect.py: the second run was not all 304 Not Modified")
    print(first_s, second_s)


@dataclass(frozen=True)
class CliRun:
    seconds: float
    peak_rss_mb: float
    """The high-water marks of the collect process and of every process it started (the
    parse workers and their fork server), added up: an upper bound of their peak together,
    since their peaks need not coincide and pages they share count once in each."""
    main_rss_mb: float
    """The collect process's own high-water mark."""
    processes: int


def time_cli(folder: Path, urls: list[str], port: int, n: int) -> CliRun:
    """`trnews collect` as a process on a fresh database, the hostile pair added to the feeds."""
    hostile = [f"http://127.0.0.1:{port}/hostile/{name}.xml" for name in ("big", "bomb")]
    config = write_config(folder, [*urls, *hostile])
    log = folder / "collect.log"
    with log.open("wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "-c", str(config), "collect"],
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        memory = TreeMemory(proc.pid)
        status = proc.wait()
        seconds = time.perf_counter() - start
        peaks = memory.close()
    text = log.read_text(encoding="utf-8", errors="replace")
    if status != 0:
        raise SystemExit(f"bench/collect.py: trnews collect exited {status}:\n{text}")
    failed = [line for line in text.splitlines() if "FAILED" in line]
    bomb = [line for line in text.splitlines() if "bomb.xml" in line]
    if len(failed) != 1 or "big.xml" not in failed[0] or f"Collected {n + 2} feeds" not in text:
        raise SystemExit(f"bench/collect.py: expected only the 60 MB feed to fail:\n{text}")
    if len(bomb) != 1 or "(1 in feed)" not in bomb[0]:
        raise SystemExit(f"bench/collect.py: expected the entity bomb's one item:\n{text}")
    return CliRun(seconds, sum(peaks.values()) / 1024, peaks.get(proc.pid, 0) / 1024, len(peaks))


# -- the loop and the floor -------------------------------------------------------------------


def time_loop(urls: list[str]) -> float:
    """rss2email's way: one feed after another, GET then feedparser.parse (one kept-alive
    client: `httpx.get` per URL would build an SSL context each time and flatter trnews)."""
    start = time.perf_counter()
    with httpx.Client() as client:
        for url in urls:
            r = client.get(url)
            r.raise_for_status()
            if len(feedparser.parse(r.content).entries) != ENTRIES:
                raise SystemExit(f"bench/collect.py: the loop parsed {url} short")
    return time.perf_counter() - start


def time_floor(bodies: list[bytes]) -> float:
    """One feed's latency plus feedparser's own time for every body, from memory."""
    start = time.perf_counter()
    for body in bodies:
        feedparser.parse(body)
    return LATENCY + time.perf_counter() - start


# -- one size, the table ----------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    n: int
    loop: float
    first: float
    again: float
    floor: float
    cli: CliRun
    load: tuple[float, float]
    """The 1-minute load average before and after: what else the CPUs were doing."""

    @property
    def ratios(self) -> dict[str, float]:
        return {
            "a/b": self.loop / self.first,
            "b/d": self.first / self.floor,
            "c/b": self.again / self.first,
            "rss_mb": self.cli.peak_rss_mb,
        }


def measure(n: int) -> Row:
    now = moment()
    load = os.getloadavg()[0]
    with feed_server(n, now) as port, tempfile.TemporaryDirectory() as tmp:
        urls = [feed_url(port, i) for i in range(n)]
        first, again = time_trnews(write_config(Path(tmp) / "inproc", urls), n)
        cli = time_cli(Path(tmp) / "cli", urls, port, n)
        loop = time_loop(urls)
    floor = time_floor([feed_body(i, now) for i in range(n)])
    return Row(n, loop, first, again, floor, cli, (load, os.getloadavg()[0]))


def met(name: str, value: float) -> str:
    good = value >= TARGETS[name] if name == "a/b" else value <= TARGETS[name]
    return "met" if good else "NOT met"


def table(rows: list[Row]) -> str:
    header = (
        f"{'N':>5}  {'(a) loop':>9}  {'(b) trnews':>10}  {'(c) 304':>8}  {'(d) floor':>9}  "
        f"{'a/b':>6}  {'b/d':>5}  {'c/b':>5}  {'CLI':>7}  {'peak RSS':>8}  {'load':>9}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        q = r.ratios
        lines.append(
            f"{r.n:>5}  {r.loop:>7.2f} s  {r.first:>8.2f} s  {r.again:>6.2f} s  {r.floor:>7.2f} s"
            f"  {q['a/b']:>5.1f}x  {q['b/d']:>5.2f}  {q['c/b']:>5.2f}  {r.cli.seconds:>5.2f} s"
            f"  {r.cli.peak_rss_mb:>5.0f} MB  {r.load[0]:>4.1f}-{r.load[1]:<4.1f}"
        )
    for r in rows:
        if r.n == 200:
            q = r.ratios
            lines.append(
                f"\ntargets at N = 200: a/b {q['a/b']:.1f} >= 20 {met('a/b', q['a/b'])}; "
                f"b/d {q['b/d']:.2f} <= 1.5 {met('b/d', q['b/d'])}; "
                f"c/b {q['c/b']:.2f} <= 0.5 {met('c/b', q['c/b'])}; "
                f"peak RSS {q['rss_mb']:.0f} MB < 250 {met('rss_mb', q['rss_mb'])}"
            )
    return "\n".join(line.rstrip() for line in lines)


def results(rows: list[Row]) -> list[Result]:
    """The rows for bench/run.py's table: ratio = the comparison's time / trnews's."""
    out = []
    for r in rows:
        out += [
            Result(f"collect {r.n} feeds vs the loop (a/b)", r.first, r.loop),
            Result(f"collect {r.n} feeds vs the floor (d/b)", r.first, r.floor),
            Result(
                f"collect {r.n} feeds, 304 run (b/c)",
                r.again,
                r.first,
                note=f"CLI {r.cli.seconds:.2f} s, peak RSS {r.cli.peak_rss_mb:.0f} MB "
                f"with the {BIG_MB} MB feed and the entity bomb",
            ),
        ]
    return out


def run(quick: bool = False, sizes: tuple[int, ...] = SIZES) -> list[Result]:
    """The collect benchmark for each N (quick: N = 50 only); prints its own table too."""
    logging.basicConfig(level=logging.ERROR)
    rows = []
    for n in (50,) if quick else sizes:
        rows.append(measure(n))
    print(
        f"collect: N feeds x {ENTRIES} items over {HOSTS} loopback hosts, {LATENCY * 1000:.0f} ms "
        "per answer\n"
    )
    print(table(rows), end="\n\n", flush=True)
    out = results(rows)
    if quick:  # its sequential loop alone takes half a minute
        print(f"(the {PROCESS_FEEDS}-feed whole-process case is left out of --quick)\n")
    else:
        out += whole_processes()
    return out


# -- whole processes: the admin's run, start-up included ------------------------------------

PROCESS_FEEDS = 120
PROCESS_HOSTS = 30
PROCESS_TARGETS = {"loop/first": 20.0, "again/first": 0.5}
"""Issue 17: 120 feeds at 250 ms from 30 hosts, `trnews collect` at least 20x a sequential
loop, and its all-304 run at most half its first; whole processes, start-up included."""

LOOP = """
import sys, httpx, feedparser
entries, urls = int(sys.argv[1]), sys.argv[2:]
with httpx.Client() as client:
    for url in urls:
        r = client.get(url)
        r.raise_for_status()
        assert len(feedparser.parse(r.content).entries) == entries, url
"""
"""The sequential loop as a script: one feed after another, GET then feedparser.parse."""


@dataclass(frozen=True)
class ProcessRow:
    n: int
    hosts: int
    loop: float
    first: float
    again: float
    load: tuple[float, float]


def _wall(command: list[str], cwd: Path) -> tuple[float, str]:
    """Seconds from just before starting `command` to its exit, and what it printed."""
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(
            f"bench/collect.py: {command[:4]} exited {proc.returncode}:\n{proc.stderr}"
        )
    return seconds, proc.stdout


def measure_processes(n: int = PROCESS_FEEDS, hosts: int = PROCESS_HOSTS) -> ProcessRow:
    """`trnews collect` as a process on a fresh database, then again (every feed 304), and the
    sequential loop as a process of its own, over the same N feeds from `hosts` hosts."""
    now = moment()
    load = os.getloadavg()[0]
    with feed_server(n, now, hosts) as port, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        urls = [feed_url(port, i, hosts) for i in range(n)]
        config = write_config(folder, urls)
        collect = [sys.executable, "-m", "pipeline", "-c", str(config), "collect"]
        first, out = _wall(collect, folder)
        if f"Collected {n} feeds: {n * ENTRIES} new items; {n} ok" not in out:
            raise SystemExit(f"bench/collect.py: the first run did not store every item:\n{out}")
        again, out = _wall(collect, folder)
        if f"0 ok, {n} not modified" not in out:
            raise SystemExit(f"bench/collect.py: the second run was not all 304:\n{out}")
        loop, _ = _wall([sys.executable, "-c", LOOP, str(ENTRIES), *urls], folder)
    return ProcessRow(n, hosts, loop, first, again, (load, os.getloadavg()[0]))


def process_table(r: ProcessRow) -> str:
    loop_ratio, again_ratio = r.loop / r.first, r.again / r.first
    ok = {
        "loop/first": loop_ratio >= PROCESS_TARGETS["loop/first"],
        "again/first": again_ratio <= PROCESS_TARGETS["again/first"],
    }
    return (
        f"collect, whole processes: {r.n} feeds from {r.hosts} hosts, "
        f"{LATENCY * 1000:.0f} ms per answer, load {r.load[0]:.1f}-{r.load[1]:.1f}\n"
        f"  sequential loop {r.loop:.2f} s; trnews collect {r.first:.2f} s "
        f"(x{loop_ratio:.1f}, target >= 20: {'met' if ok['loop/first'] else 'NOT met'}); "
        f"all-304 run {r.again:.2f} s ({again_ratio:.2f} of the first, target <= 0.5: "
        f"{'met' if ok['again/first'] else 'NOT met'})"
    )


def process_results(r: ProcessRow) -> list[Result]:
    return [
        Result(
            f"collect {r.n} feeds / {r.hosts} hosts, processes, vs the loop",
            r.first,
            r.loop,
            note="whole processes, start-up included; baseline: httpx + feedparser one feed "
            "after another; target ratio >= 20",
        ),
        Result(
            f"collect {r.n} feeds / {r.hosts} hosts, processes, 304 run",
            r.again,
            r.first,
            note="baseline: the first run of the same process; target ratio >= 2 "
            "(the 304 run at most half the first)",
        ),
    ]


def whole_processes() -> list[Result]:
    row = measure_processes()
    print(process_table(row), end="\n\n", flush=True)
    return process_results(row)


# -- the profile ------------------------------------------------------------------------------


def profile(n: int, top: int = 25) -> None:
    """Where trnews's time goes for N feeds: the CPU of each process, the event-loop thread's
    profile, then the parse's.

    cProfile sees only the thread it runs in, so the parse (which trnews runs in worker
    processes, or in threads until they are up) is profiled on its own over the same N
    bodies, as `parse_feed`.
    """
    from pipeline.collect import collect
    from pipeline.config import load_config
    from pipeline.parse import parse_feed
    from pipeline.store import Store

    now = moment()
    with feed_server(n, now) as port, tempfile.TemporaryDirectory() as tmp:
        config = load_config(write_config(Path(tmp), [feed_url(port, i) for i in range(n)]))
        with Store.open(config.database_path) as store:
            cpu = resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            prof = cProfile.Profile()
            prof.enable()
            collect(config, store)
            prof.disable()
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_SELF)
            helpers = _helper_cpu()
    used = after.ru_utime - cpu.ru_utime + after.ru_stime - cpu.ru_stime
    print(
        f"collect {n} feeds under cProfile: {wall:.2f} s wall; CPU: {used:.2f} s in this "
        f"process (all threads), {helpers:.2f} s in the processes it started (parse workers)"
    )
    print(_stats(prof, top, "the event-loop thread"))
    bodies = [feed_body(i, now) for i in range(n)]
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.enable()
    for i, body in enumerate(bodies):
        parse_feed(body, f"https://blogg{i}.example.org/feed/", "application/rss+xml", now=now)
    prof.disable()
    print(f"parse_feed on the {n} bodies: {time.perf_counter() - start:.2f} s under cProfile")
    print(_stats(prof, top, "the parse"))


def _helper_cpu() -> float:
    """CPU seconds of this process's descendants but the feed server, read from /proc while
    they live (trnews's parse workers stay until this process exits)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in TreeMemory.descendants(os.getpid())[1:]:
        with contextlib.suppress(OSError, ValueError, IndexError):
            if b"--serve" in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def _stats(prof: cProfile.Profile, top: int, title: str) -> str:
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).strip_dirs()
    print(f"--- {title}: by own time", file=out)
    stats.sort_stats("tottime").print_stats(top)
    print(f"--- {title}: by cumulative time", file=out)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 50 only")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="the Ns")
    parser.add_argument("--profile", type=int, metavar="N", help="profile trnews for N feeds")
    parser.add_argument(
        "--concurrency", type=int, help="set [collect] concurrency (default: trnews's own)"
    )
    parser.add_argument(
        "--processes",
        action="store_true",
        help=f"only the whole-process case: {PROCESS_FEEDS} feeds from {PROCESS_HOSTS} hosts",
    )
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--trnews", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.concurrency:
        global COLLECT
        COLLECT = f"[collect]\nconcurrency = {args.concurrency}\n"
    if args.trnews:
        _trnews(Path(args.trnews[0]), int(args.trnews[1]))
    elif args.serve:
        n, now, hosts = args.serve
        asyncio.run(_serve(int(n), datetime.fromisoformat(now), int(hosts)))
    elif args.profile:
        profile(args.profile)
    elif args.processes:
        whole_processes()
    else:
        run(args.quick, tuple(args.sizes))


if __name__ == "__main__":
    main()
