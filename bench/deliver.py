"""How fast trnews delivers an edition to N readers over SMTP, against a bare smtplib loop.

An aiosmtpd server on loopback (in a child process, so that it neither shares the interpreter
lock with the code measured nor counts in its memory) accepts every message. Then, in the same
run, for each N:

- ours: `pipeline.cycle.send(config, store)` with the SMTP transport, on a temporary database
  with N active subscribers and the items of tests/data/ (collected from local files first):
  it builds the edition, renders it once, then builds, sends and records one message per reader;
- baseline: one `smtplib.SMTP` connection sending the same pre-built message (that edition, as
  trnews builds it for one reader) N times with `sendmail`.

Both print messages per second; the ratio is ours / baseline. The peak RSS growth of this process
during trnews's send (resource.getrusage) shows whether memory grows with N.

    .venv/bin/python bench/deliver.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import resource
import smtplib
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from common import Result, child, port_of  # noqa: E402

FEED_FILES = ("blog_wordpress.xml", "blogger_atom.xml", "medium.xml", "substack.xml")


# -- the server, in a child process -----------------------------------------------------------


class Counter:
    """Accepts every message, keeps none, counts them."""

    def __init__(self) -> None:
        self.messages = 0

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.messages += 1
        return "250 OK"


def serve() -> None:
    """Child process: run aiosmtpd on a free port, print it, run until stdin closes, then print
    how many messages arrived."""
    from aiosmtpd.controller import Controller

    with socket.socket() as s:  # Controller(port=0) fails: it probes the port it is given
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = Counter()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    print(port, flush=True)
    sys.stdin.read()
    controller.stop()
    print(handler.messages, flush=True)


@dataclass
class SmtpChild:
    port: int
    received: int = 0


@contextlib.contextmanager
def smtp_server() -> Iterator[SmtpChild]:
    """Start the child SMTP server; after the block, `received` holds the messages it counted."""
    with child(__file__, "--serve") as proc:
        server = SmtpChild(port_of(proc))
        yield server
    assert proc.stdout is not None
    server.received = int(proc.stdout.readline() or 0)


# -- ours and the baseline --------------------------------------------------------------------

CONFIG = """\
[newsletter]
title = "Ambassadørnytt"
sender = "Trondheimsregionen <nyhetsbrev@example.org>"
reply_to = "post@example.org"
public_url = "https://nyhetsbrev.example.org"

[schedule]
send_when_empty = true

[storage]
database = "trnews.db"

[delivery]
transport = "smtp"

[delivery.smtp]
host = "127.0.0.1"
port = {port}
security = "none"

[[ambassador]]
id = "kari-nordmann"
name = "Kari Nordmann"
role = "Prorektor, NTNU"
feeds = [{feeds}]
"""


def make_site(folder: Path, port: int, readers: int) -> Path:
    """A config over local copies of tests/data feeds, its items collected, N readers added."""
    from conftest import feed_bytes

    from pipeline.collect import collect
    from pipeline.config import load_config
    from pipeline.store import Store
    from pipeline.subscribers import add

    for name in FEED_FILES:
        (folder / name).write_bytes(feed_bytes(name))
    feeds = ", ".join(f'{{ url = "{n}", kind = "blog" }}' for n in FEED_FILES)
    path = folder / "trnews.toml"
    path.write_text(CONFIG.format(port=port, feeds=feeds), encoding="utf-8")
    config = load_config(path)
    with Store.open(config.database_path) as store:
        collect(config, store)
        with store.transaction():
            for i in range(readers):
                add(store, f"leser{i}@example.org", f"Leser {i}")
    return path


def time_ours(config_path: Path, readers: int) -> tuple[float, int, bytes]:
    """trnews's send: wall time, peak RSS growth (KiB), and one reader's message as sent."""
    from pipeline.config import load_config
    from pipeline.cycle import send, unsubscribe_url
    from pipeline.deliver import build_message
    from pipeline.render import personalise
    from pipeline.store import Store
    from pipeline.tokens import link_secret

    config = load_config(config_path)
    with Store.open(config.database_path) as store:
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        report = send(config, store)
        seconds = time.perf_counter() - start
        rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
        if report.delivered != readers or report.edition_id is None:
            raise SystemExit(f"bench/deliver.py: trnews delivered {report.delivered} of {readers}")
        url = unsubscribe_url(config, link_secret(config, store), 1)
        content = personalise(store.edition_content(report.edition_id), unsubscribe_url=url)
    msg = build_message(
        config, content, to="leser0@example.org", unsubscribe_url=url, when=datetime.now(UTC)
    )
    return seconds, rss_growth, msg.as_bytes()


def time_baseline(port: int, message: bytes, readers: int) -> float:
    """A bare smtplib loop: the same pre-built message N times over one connection."""
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as conn:
        for i in range(readers):
            conn.sendmail("nyhetsbrev@example.org", [f"leser{i}@example.org"], message)
    return time.perf_counter() - start


def bench(server: SmtpChild, readers: int) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        path = make_site(Path(tmp), server.port, readers)
        ours_s, rss_kib, message = time_ours(path, readers)
    base_s = time_baseline(server.port, message, readers)
    return Result(
        f"deliver to {readers} readers",
        readers / ours_s,
        readers / base_s,
        unit="msg/s",
        note=f"message {len(message) // 1024} KiB; peak RSS +{rss_kib / 1024:.1f} MiB",
    )


def run(quick: bool = False) -> list[Result]:
    """The delivery benchmarks: quick is a smaller run for a first look."""
    logging.basicConfig(level=logging.ERROR)
    sizes = (100,) if quick else (200, 1000)
    with smtp_server() as server:
        results = [bench(server, n) for n in sizes]
    expected = 2 * sum(sizes)
    if server.received != expected:
        raise SystemExit(f"bench/deliver.py: the server got {server.received} of {expected}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    for r in run(args.quick):
        print(
            f"{r.name:<30} ours {r.ours:7.0f} msg/s  baseline {r.baseline:7.0f} msg/s  "
            f"×{r.ratio:.2f}  {r.note}"
        )


if __name__ == "__main__":
    main()
