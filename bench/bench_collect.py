"""How fast trnews collects N feeds from slow servers, against a plain sequential loop.

A loopback HTTP server (tests/conftest.py's FeedServer, run in a child process so that it does
not share the interpreter lock with the code measured) serves N real-shaped feeds: the files of
tests/data/, each under its own path with its links moved to a host of its own, each answering
after a fixed per-feed delay drawn from DELAY_MS (a slow blog host). Then, in the same run:

- ours: `pipeline.collect.collect(config, store)` on a fresh temporary config and database;
- baseline: a sequential loop of `httpx` GET + `feedparser.parse(body)` over the same URLs.

Both are timed again on a second pass, where every feed answers 304 Not Modified to a
conditional request (ours sends the ETag it stored; the baseline sends the same ETag by hand).

    .venv/bin/python bench/bench_collect.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import random
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import feedparser
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from common import Result, child, port_of  # noqa: E402

FEED_FILES = ("blog_wordpress.xml", "blogger_atom.xml", "medium.xml", "substack.xml")
CHRONICLE_FILE = "avis_shared.xml"
DELAY_MS = (50, 150)
SEED = 2026


def delays(n: int, delay_ms: tuple[int, int]) -> list[float]:
    """Each feed's answer delay in seconds: the same list in the server and in the report."""
    rng = random.Random(SEED)
    return [rng.uniform(*delay_ms) / 1000 for _ in range(n)]


def feed_body(i: int) -> tuple[bytes, str]:
    """Feed number `i`: a tests/data file, dates moved to now, links on a host of its own."""
    from conftest import feed_bytes

    name = CHRONICLE_FILE if i % 5 == 4 else FEED_FILES[i % 4]
    body = re.sub(rb"(https?://)", rb"\1n%d." % i, feed_bytes(name))
    return body, ("chronicle" if name == CHRONICLE_FILE else "blog")


# -- the server, in a child process -----------------------------------------------------------


def serve(n: int, delay_ms: tuple[int, int]) -> None:
    """Child process: serve N feeds, print the port, run until stdin closes."""
    import http.server

    from conftest import FeedServer

    # Behave like a production server, so that what is measured is the client: a listen
    # backlog of 5 (the socketserver default) drops the SYNs of a burst of 16 connections,
    # which then wait 1 s to retry; and headers and body written apart, with Nagle on, wait
    # for the client's delayed ACK (40 ms) on every answer.
    http.server.ThreadingHTTPServer.request_queue_size = 128
    http.server.BaseHTTPRequestHandler.disable_nagle_algorithm = True
    server = FeedServer()
    for i, delay in enumerate(delays(n, delay_ms)):
        body, _ = feed_body(i)
        server.add(f"/feed/{i}.xml", body, delay=delay, etag=f'"v1-{i}"')
    print(server.port, flush=True)
    sys.stdin.read()
    server.close()


@contextlib.contextmanager
def feed_server(n: int, delay_ms: tuple[int, int]) -> Iterator[list[str]]:
    """Start the child server; yields the N feed URLs; stops the child afterwards."""
    with child(__file__, "--serve", str(n), str(delay_ms[0]), str(delay_ms[1])) as proc:
        port = port_of(proc)
        yield [f"http://127.0.0.1:{port}/feed/{i}.xml" for i in range(n)]


# -- ours and the baseline --------------------------------------------------------------------

CONFIG = """\
[newsletter]
title = "Benk"
sender = "Benk <benk@example.org>"
public_url = "https://benk.example.org"
lookback_days = 30

[storage]
database = "trnews.db"
"""


def write_config(folder: Path, urls: list[str], per_ambassador: int = 5) -> Path:
    """A config with one ambassador per `per_ambassador` feeds."""
    lines = [CONFIG]
    for a, start in enumerate(range(0, len(urls), per_ambassador)):
        feeds = ", ".join(
            f'{{ url = "{u}", kind = "{feed_body(start + k)[1]}" }}'
            for k, u in enumerate(urls[start : start + per_ambassador])
        )
        lines.append(
            f'[[ambassador]]\nid = "amb-{a}"\nname = "Ambassadør {a}"\nfeeds = [{feeds}]\n'
        )
    path = folder / "trnews.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def time_ours(config_path: Path) -> tuple[float, float, int]:
    """Wall time of trnews's collect, first pass and 304 pass; and the new items stored."""
    from pipeline.collect import collect
    from pipeline.config import load_config
    from pipeline.store import Store

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
        raise SystemExit(f"bench_collect: {len(failed)} feeds failed, e.g. {failed[0]}")
    if not all(o.not_modified for o in second):
        raise SystemExit("bench_collect: the second pass was not all 304 Not Modified")
    return first_s, second_s, sum(o.new_items for o in first)


def time_baseline(urls: list[str]) -> tuple[float, float, int]:
    """Wall time of a sequential GET + feedparser.parse loop, first pass and 304 pass.

    One `httpx.Client` for the loop (keep-alive, as a careful script would): module-level
    `httpx.get` builds a client, and so an SSL context (~0.1 s here), for every URL.
    """
    start = time.perf_counter()
    entries = 0
    etags = []
    with httpx.Client() as client:
        for url in urls:
            r = client.get(url)
            r.raise_for_status()
            entries += len(feedparser.parse(r.content).entries)
            etags.append(r.headers.get("etag", ""))
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    with httpx.Client() as client:
        for url, etag in zip(urls, etags, strict=True):
            r = client.get(url, headers={"If-None-Match": etag})
            if r.status_code != 304:
                raise SystemExit(f"bench_collect: baseline second pass got {r.status_code}")
    second_s = time.perf_counter() - start
    return first_s, second_s, entries


def bench(n: int, delay_ms: tuple[int, int]) -> list[Result]:
    """Both passes for N feeds with this delay range; the baseline runs against the same server."""
    label = f"collect {n} feeds, {delay_ms[0]}-{delay_ms[1]} ms"
    with feed_server(n, delay_ms) as urls, tempfile.TemporaryDirectory() as tmp:
        ours_first, ours_304, items = time_ours(write_config(Path(tmp), urls))
        base_first, base_304, entries = time_baseline(urls)
    return [
        Result(label, ours_first, base_first, note=f"{items} items stored, {entries} parsed"),
        Result(f"{label}, 304 pass", ours_304, base_304),
    ]


def run(quick: bool = False) -> list[Result]:
    """The collect benchmarks: quick is a smaller run for a first look."""
    logging.basicConfig(level=logging.ERROR)
    if quick:
        return bench(30, DELAY_MS)
    return [*bench(50, DELAY_MS), *bench(200, DELAY_MS), *bench(200, (0, 0))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run")
    parser.add_argument("--serve", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], (args.serve[1], args.serve[2]))
        return
    for r in run(args.quick):
        print(f"{r.name:<44} ours {r.ours:7.2f} s  baseline {r.baseline:7.2f} s  ×{r.ratio:.1f}")


if __name__ == "__main__":
    main()
