"""How fast `trnews serve` answers, against a bare uvicorn app serving the same bytes.

- **ours**: `trnews serve` in a child process, on a database with one sent edition (the items
  of tests/data/) and N active readers.
- **baseline**: the floor under any web side written with the same stack: a Starlette app
  under uvicorn (one worker, the same settings) that answers each route with bytes held in
  memory: the same archived edition, the same front page, a one-line answer to the POST. It
  opens no database, checks no token and computes no policy.

Each is asked the same requests by 16 concurrent httpx clients in this process:
`GET /archive/1` (the archived edition, about 20 KB), `GET /` (the subscribe page),
`GET /archive.atom` (the archive's feed) and the RFC 8058 one-click
`POST /unsubscribe/{token}`, each of N readers once (ours unsubscribes them all, each in a
transaction of its own). The ratio is ours / baseline in requests per second: how much of the
stack's own speed our work leaves. The median and 99th percentile latency of each are printed
beside it.

The library (SPEC.md "The library and the message bank") is measured on the same server with
20,000 more items (credited to three ambassadors, a message bank of three messages), against
ours' own `GET /archive/1` in the same run: `GET /library` (the first page, kept once built),
one two-word search `GET /library?q=...` asked again and again (kept too), and distinct
two-word searches, each asked once (each built: the full-text query, the count, the page).
A cold search is also timed in-process (`pipeline.library.find`, no server, no cache).

    .venv/bin/python bench/web.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from common import Result, maildir_site  # noqa: E402

CONCURRENCY = 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env() -> dict[str, str]:
    return {**os.environ, "TRNEWS_SECRET": "bench-secret", "PYTHONPATH": str(ROOT)}


LIBRARY_ITEMS = 20_000
BANK = """
[[ambassador]]
id = "ola"
name = "Ola Hansen"
role = "Rådgiver"

[[ambassador]]
id = "aase"
name = "Åse Ødegård"
role = "Forsker"

[[message]]
id = "naering"
title = "Best på næringsutvikling"
summary = "Regionen skaper arbeidsplasser som varer."
arguments = ["Flere bedrifter etablerer seg her.", "Universitetet gir kompetanse."]
keywords = ["næringsutvikling", "næringsliv*", "arbeidsplasser"]

[[message]]
id = "kunnskap"
title = "Kunnskapsregionen"
keywords = ["universitet*", "forskning"]

[[message]]
id = "klima"
title = "Grønn omstilling"
keywords = ["klima*", "fornybar"]
"""
WORDS = [
    "næringslivet",
    "arbeidsplasser",
    "universitetet",
    "forskning",
    "klimakutt",
    "fornybar",
    "kommunen",
    "havbruk",
    "samferdsel",
    "boliger",
    "skole",
    "helse",
    "kultur",
    "idrett",
    "turisme",
    "eksport",
    "innovasjon",
    "gründer",
    "teknologi",
    "energi",
    "fjorden",
    "byen",
    "regionen",
    "satsing",
    "midler",
    "vekst",
    "framtid",
    "ungdom",
    "kompetanse",
    "samarbeid",
]
SEARCH = "næringslivet regionen"


def make_site(folder: Path, readers: int) -> tuple[Path, list[str]]:
    """A site with one edition sent to N readers and a library of LIBRARY_ITEMS more items;
    the config and each reader's token."""
    from pipeline import cycle, library
    from pipeline.config import load_config
    from pipeline.store import Store
    from pipeline.tokens import link_secret, sign

    path = maildir_site(folder, readers, extra=BANK)
    os.environ["TRNEWS_SECRET"] = "bench-secret"
    config = load_config(path)
    with Store.open(config.database_path) as store:
        cycle.collect(config, store)
        report = cycle.send(config, store)
        assert report.delivered == readers, report
        secret = link_secret(config, store)
        ids = [s.id for s in store.subscribers()]
        fill_library(store, LIBRARY_ITEMS)
        library.tag(store, config)
    return path, [sign(secret, "unsubscribe", i) for i in ids]


def fill_library(store: Any, count: int) -> None:
    """`count` items of varied words over the last five years, through the store (so the
    full-text index follows), credited to one or two of the three ambassadors."""
    from pipeline.models import Entry, Kind

    rng = random.Random(20)
    now = datetime.now(UTC)
    kinds = [Kind.BLOG] * 6 + [Kind.CHRONICLE] * 3 + [Kind.VIDEO]
    with store.transaction():
        for n in range(count):
            title = " ".join(rng.choices(WORDS, k=6)).capitalize()
            link = f"https://blogg.example.org/{n}"
            entry = Entry(
                link=link,
                key=link,
                title=title,
                excerpt=" ".join(rng.choices(WORDS, k=40)),
                published=now - timedelta(hours=n * 2),
                author="",
            )
            people = rng.sample(["kari", "ola", "aase"], rng.choice([1, 1, 1, 2]))
            store.store_entry(
                entry, kind=rng.choice(kinds), feed_url="bench", ambassadors=people, now=now
            )


def cold_search(config_path: Path, repeat: int = 20) -> float:
    """Milliseconds of one two-word search in-process, on a connection of its own: the
    full-text query, the count and the first page, nothing kept."""
    from pipeline import library
    from pipeline.config import load_config
    from pipeline.store import Store

    config = load_config(config_path)
    rng = random.Random(2)
    with Store.open(config.database_path) as store:
        began = time.perf_counter()
        for _ in range(repeat):
            q = " ".join(rng.sample(WORDS, 2))
            library.find(store, config, library.Filters(q=q))
        return (time.perf_counter() - began) / repeat * 1000


BASELINE_APP = """
import sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

edition = open(sys.argv[2], encoding="utf-8").read()
front = open(sys.argv[3], encoding="utf-8").read()
feed = open(sys.argv[4], "rb").read()

async def archived(request):
    return HTMLResponse(edition)

async def home(request):
    return HTMLResponse(front)

async def atom(request):
    return Response(feed, media_type="application/atom+xml; charset=utf-8")

async def unsubscribe(request):
    await request.body()
    return PlainTextResponse("unsubscribed")

app = Starlette(routes=[
    Route("/archive/{id:int}", archived),
    Route("/", home),
    Route("/archive.atom", atom),
    Route("/unsubscribe/{token}", unsubscribe, methods=["POST"]),
])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=False,
            server_header=False, proxy_headers=False, log_level="warning")
"""


@contextmanager
def server(command: list[str], cwd: Path) -> Iterator[str]:
    """A server process; yields its base URL once it answers."""
    port = command[command.index("--port") + 1] if "--port" in command else command[2]
    proc = subprocess.Popen(
        command, cwd=cwd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(base + "/", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@dataclass(frozen=True)
class Load:
    """What one run of requests measured."""

    rate: float
    """Requests a second, over the whole run."""
    p50: float
    """Median latency, in milliseconds."""
    p99: float
    """99th percentile latency, in milliseconds."""


async def hammer(
    base: str, requests: list[tuple[str, str]], *, body: bytes = b"List-Unsubscribe=One-Click"
) -> Load:
    """Requests per second and latency for `requests` (method, path), over CONCURRENCY
    kept-alive connections; a POST sends `body` as a form. Each answer must be 200, or 303 (a
    form's post/redirect/get). A few lines of asyncio rather than httpx: the client must cost
    far less than the servers measured, or it is the client that is measured."""
    host, port = base.removeprefix("http://").split(":")
    queue = list(reversed(requests))
    latencies: list[float] = []

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while queue:
                method, path = queue.pop()
                sent = time.perf_counter()
                if method == "POST":
                    head = (
                        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
                        "Content-Type: application/x-www-form-urlencoded\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n"
                    )
                    writer.write(head.encode() + body)
                else:
                    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                headers = await reader.readuntil(b"\r\n\r\n")
                status = int(headers.split(b" ", 2)[1])
                assert status in (200, 303), (path, status)
                length = 0
                for line in headers.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - sent)
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(CONCURRENCY)))
    rate = len(requests) / (time.perf_counter() - start)
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)] * 1000
    return Load(rate, p50, p99)


ROUTES = ("archive", "front", "atom", "unsubscribe")
LIBRARY_ROUTES = ("library", "search", "searches")


def load(base: str, gets: int, tokens: list[str]) -> dict[str, Load]:
    """Each route measured in turn against the server at `base`."""
    return {
        "archive": asyncio.run(hammer(base, [("GET", "/archive/1")] * gets)),
        "front": asyncio.run(hammer(base, [("GET", "/")] * gets)),
        "atom": asyncio.run(hammer(base, [("GET", "/archive.atom")] * gets)),
        "unsubscribe": asyncio.run(hammer(base, [("POST", f"/unsubscribe/{t}") for t in tokens])),
    }


def distinct_searches(most: int) -> list[str]:
    """Up to `most` distinct two-word searches (there are about a thousand pairs of WORDS)."""
    rng = random.Random(7)
    pairs = [" ".join(rng.sample(WORDS, 2)) for _ in range(most * 3)]
    return list(dict.fromkeys(pairs))[:most]


def load_library(base: str, gets: int) -> dict[str, Load]:
    """The library's pages against the server at `base`: the first page, one search asked
    `gets` times, and `gets` distinct two-word searches each asked once."""
    searches = [("GET", f"/library?q={quote(q)}") for q in distinct_searches(gets)]
    return {
        "library": asyncio.run(hammer(base, [("GET", "/library")] * gets)),
        "search": asyncio.run(hammer(base, [("GET", f"/library?q={quote(SEARCH)}")] * gets)),
        "searches": asyncio.run(hammer(base, searches)),
    }


def run(quick: bool = False) -> list[Result]:
    readers = 300 if quick else 2000
    gets = 300 if quick else 2000
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config, tokens = make_site(folder, readers)
        port = str(free_port())
        with server(
            [sys.executable, "-m", "pipeline", "-c", str(config), "serve", "--port", port],
            folder,
        ) as base:
            edition = httpx.get(base + "/archive/1").text
            front = httpx.get(base + "/").text
            feed = httpx.get(base + "/archive.atom").content
            (folder / "edition.html").write_text(edition, encoding="utf-8")
            (folder / "front.html").write_text(front, encoding="utf-8")
            (folder / "feed.atom").write_bytes(feed)
            ours = load(base, gets, tokens)
            ours |= load_library(base, gets)
        script = folder / "baseline.py"
        script.write_text(BASELINE_APP, encoding="utf-8")
        port = str(free_port())
        files = [str(folder / n) for n in ("edition.html", "front.html", "feed.atom")]
        with server([sys.executable, str(script), port, *files], folder) as base:
            baseline = load(base, gets, tokens)
        cold = cold_search(config)
    size = len(edition.encode()) // 1024
    notes = {
        "archive": f"GET /archive/1 ({size} KB), {gets} requests",
        "front": f"GET / (the subscribe page), {gets} requests",
        "atom": f"GET /archive.atom ({len(feed)} bytes), {gets} requests",
        "unsubscribe": f"one-click POST, {readers} readers each unsubscribed once",
    }
    rows = []
    for name in ROUTES:
        o, b = ours[name], baseline[name]
        latency = f"p50/p99 ours {o.p50:.1f}/{o.p99:.1f} ms, baseline {b.p50:.1f}/{b.p99:.1f} ms"
        rows.append(
            Result(f"web {name}", o.rate, b.rate, unit="req/s", note=f"{notes[name]}; {latency}")
        )
        print(
            f"  {name}: ours {o.rate:.0f} req/s, baseline {b.rate:.0f}, "
            f"×{o.rate / b.rate:.2f}; {latency}"
        )
    archive = ours["archive"]
    notes |= {
        "library": f"GET /library, first page of {LIBRARY_ITEMS:,} items, {gets} requests",
        "search": f"GET /library?q={SEARCH} (kept once built), {gets} requests",
        "searches": f"{len(distinct_searches(gets))} distinct two-word searches, each built",
    }
    for name in LIBRARY_ROUTES:
        o = ours[name]
        latency = f"p50/p99 {o.p50:.1f}/{o.p99:.1f} ms"
        rows.append(
            Result(
                f"web {name} vs archive",
                o.rate,
                archive.rate,
                unit="req/s",
                note=f"{notes[name]}; against GET /archive/1 of the same server; {latency}",
            )
        )
        print(
            f"  {name}: {o.rate:.0f} req/s, GET /archive/1 {archive.rate:.0f}, "
            f"×{o.rate / archive.rate:.2f}; {latency}"
        )
    print(f"  a cold two-word search over {LIBRARY_ITEMS:,} items in-process: {cold:.1f} ms")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)


if __name__ == "__main__":
    main()
