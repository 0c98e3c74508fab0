"""Feeds are parsed in worker processes once a run is large; a worker that dies costs no feed.

A collect of more than `parse.WORKERS_AFTER` feeds parses them in worker processes (see
`parse.parse_async`). A worker can die under a feed (the kernel's out-of-memory killer, an admin's
`kill`): the feed it held is parsed again in fresh workers, and the run goes on.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor

import pytest
from support.feeds import feed_bytes

from pipeline import parse
from pipeline.errors import FetchError
from pipeline.models import Entry

URL = "https://kari.example.org/feed/"


def running_pool() -> ProcessPoolExecutor:
    """The worker processes, started as a large collect starts them, once they are up."""
    parse.start_workers(parse.WORKERS_AFTER + 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pool = parse._workers()
        if pool is not None:
            return pool
        time.sleep(0.05)
    pytest.fail("the parse workers did not start within a minute")


def test_a_large_run_parses_in_worker_processes_and_gets_the_same_entries() -> None:
    body = feed_bytes("blog_wordpress.xml")
    pool = running_pool()
    workers = set(pool._processes)  # the pids of the workers, to see that they did the work
    assert workers and os.getpid() not in workers
    entries = asyncio.run(parse.parse_async(body, URL, "application/rss+xml"))
    assert entries == parse.parse_feed(body, URL, "application/rss+xml")
    with pytest.raises(FetchError, match="not a feed: an HTML page"):
        asyncio.run(parse.parse_async(b"<html><body>Hei</body></html>", URL, "text/html"))


def test_a_worker_killed_mid_run_costs_no_feed() -> None:
    body = feed_bytes("blog_wordpress.xml")
    pool = running_pool()
    for pid in list(pool._processes):
        os.kill(pid, signal.SIGKILL)

    async def many() -> list[tuple[Entry, ...]]:
        return await asyncio.gather(
            *(parse.parse_async(body, URL, "application/rss+xml") for _ in range(8))
        )

    results = asyncio.run(many())
    expected = parse.parse_feed(body, URL, "application/rss+xml")
    assert all(r == expected for r in results)
    assert running_pool() is not pool, "the broken pool should have been replaced"


def test_a_json_feed_parses_in_worker_processes_and_its_errors_come_back_as_fetch_errors() -> None:
    body = feed_bytes("jsonfeed_hugo.json")
    running_pool()
    entries = asyncio.run(parse.parse_async(body, URL, "application/feed+json"))
    assert entries == parse.parse_feed(body, URL, "application/feed+json")
    assert [e.author for e in entries][:2] == ["Kari Nordmann", "Kari Nordmann, Ola Hansen"]
    deep = b'{"version": "https://jsonfeed.org/version/1.1", "items": ' + b"[" * 100_000
    with pytest.raises(FetchError, match="not a feed: the JSON is nested too deeply"):
        asyncio.run(parse.parse_async(deep, URL, "application/feed+json"))
    with pytest.raises(FetchError, match="not a feed: JSON, but not a JSON Feed"):
        asyncio.run(parse.parse_async(b'{"error": "rest_no_route"}', URL, "application/json"))
