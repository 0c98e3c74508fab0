"""How fast trnews delivers an edition over SMTP, against a bare smtplib loop, and how much
memory the send takes at 10,000 and 100,000 readers.

The SMTP servers run in child processes, so they neither share the interpreter lock with what
is measured nor count in its memory:

- an aiosmtpd sink that accepts and counts every message (the issue's benchmark);
- the same sink taking 10 ms over each message (asynchronously), as a relay that writes each
  message to disk or forwards it does: where parallel connections pay;
- a raw sink that reads DATA in whole chunks rather than line by line: far cheaper per message
  than aiosmtpd, for the run at 100,000 readers, which measures memory.

For each case:

- ours: `trnews send`'s own code (`pipeline.cycle.send`) in a child process of its own, on a
  temporary database with N active subscribers and the items of tests/data/: it builds and
  freezes the edition, renders it once, then builds, sends and records one message per reader
  over `[delivery.smtp] connections` connections. The child reports its time and the high-water
  mark of its resident memory (ru_maxrss: the whole process, interpreter included).
- baseline: a bare `smtplib` loop on one connection sending the same number of messages of the
  same size (one reader's message as trnews sent it) to the same sink with `sendmail`.
- ceiling: four such bare loops at once, in four processes: what the sink itself can take.
  When trnews comes close to it, the sink is what limits, not trnews.

    .venv/bin/python bench/deliver.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import resource
import smtplib
import socket
import subprocess
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
SENDER = "nyhetsbrev@example.org"
MEMORY_TARGET_MB = 200
LATENCY = 0.01
"""Seconds the slow relay takes over each message."""


# -- the sinks, in child processes ------------------------------------------------------------


class Counter:
    """Accepts every message, keeps none, counts them; with `latency`, takes that long over
    each (asynchronously, so other connections go on meanwhile)."""

    def __init__(self, latency: float = 0.0) -> None:
        self.messages = 0
        self.latency = latency

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        if self.latency:
            await asyncio.sleep(self.latency)
        self.messages += 1
        return "250 OK"


def serve(latency: float = 0.0) -> None:
    """Child process: run aiosmtpd on a free port, print it, run until stdin closes, then print
    how many messages arrived."""
    from aiosmtpd.controller import Controller

    with socket.socket() as s:  # Controller(port=0) fails: it probes the port it is given
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = Counter(latency)
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    print(port, flush=True)
    sys.stdin.read()
    controller.stop()
    print(handler.messages, flush=True)


async def _raw_session(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: list[int]
) -> None:
    """One SMTP session of the raw sink: commands by line, DATA read in whole chunks."""
    writer.write(b"220 sink\r\n")
    buffer = b""
    in_data = False
    while chunk := await reader.read(1 << 16):
        buffer += chunk
        while True:
            if in_data:
                end = buffer.find(b"\r\n.\r\n")
                if end < 0:
                    buffer = buffer[-4:]  # keep what may start the end mark
                    break
                buffer = buffer[end + 5 :]
                in_data = False
                count[0] += 1
                writer.write(b"250 OK\r\n")
                continue
            line, sep, rest = buffer.partition(b"\r\n")
            if not sep:
                break
            buffer = rest
            verb = line[:4].upper()
            if verb == b"DATA":
                in_data = True
                buffer = b"\r\n" + buffer  # the end mark may follow at once
                writer.write(b"354 go on\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                writer.close()
                return
            else:
                writer.write(b"250 OK\r\n")
        await writer.drain()
    writer.close()


def serve_raw() -> None:
    """Child process: the raw sink; prints its port, then how many messages arrived."""

    async def sink() -> None:
        count = [0]
        server = await asyncio.start_server(lambda r, w: _raw_session(r, w, count), "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        server.close()
        print(count[0], flush=True)

    asyncio.run(sink())


@dataclass
class SmtpChild:
    port: int
    received: int = 0


@contextlib.contextmanager
def smtp_server(raw: bool = False, latency: float = 0.0) -> Iterator[SmtpChild]:
    """Start a sink (aiosmtpd, or the raw one); after the block, `received` holds the messages
    it counted."""
    args = ["--serve-raw"] if raw else ["--serve", f"--latency={latency}"]
    with child(__file__, *args) as proc:
        server = SmtpChild(port_of(proc))
        yield server
    assert proc.stdout is not None
    server.received = int(proc.stdout.readline() or 0)


# -- ours: trnews's send in a child process ---------------------------------------------------

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
connections = {connections}

[[ambassador]]
id = "kari-nordmann"
name = "Kari Nordmann"
role = "Prorektor, NTNU"
feeds = [{feeds}]
"""


def make_site(folder: Path, port: int, readers: int, connections: int) -> Path:
    """A config over local copies of tests/data feeds, its items collected, N readers added."""
    from conftest import feed_bytes

    from pipeline.collect import collect
    from pipeline.config import load_config
    from pipeline.models import SubscriberState
    from pipeline.store import Store

    for name in FEED_FILES:
        (folder / name).write_bytes(feed_bytes(name))
    feeds = ", ".join(f'{{ url = "{n}", kind = "blog" }}' for n in FEED_FILES)
    path = folder / "trnews.toml"
    text = CONFIG.format(port=port, feeds=feeds, connections=connections)
    path.write_text(text, encoding="utf-8")
    config = load_config(path)
    now = datetime.now(UTC)
    with Store.open(config.database_path) as store:
        collect(config, store)
        with store.transaction():
            for i in range(readers):
                store.add_subscriber(
                    f"leser{i}@example.org",
                    f"Leser Ødegård {i}" if i % 3 == 0 else f"Leser {i}",
                    state=SubscriberState.ACTIVE,
                    source="bench",
                    now=now,
                )
    return path


def send_child(config_path: Path, sample: Path) -> None:
    """Child process: `trnews send` on this site; print seconds, delivered and peak RSS as JSON,
    and write one reader's message, as sent, to `sample`."""
    logging.basicConfig(level=logging.ERROR)
    from pipeline.config import load_config
    from pipeline.cycle import send
    from pipeline.deliver import MessageTemplate, message_id
    from pipeline.store import Store
    from pipeline.tokens import link_secret, unsubscribe_url

    config = load_config(config_path)
    with Store.open(config.database_path) as store:
        start = time.perf_counter()
        report = send(config, store)
        seconds = time.perf_counter() - start
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert report.edition_id is not None
        secret = link_secret(config, store)
        template = MessageTemplate(config, store.edition_content(report.edition_id))
        sample.write_bytes(
            template.render(
                to="leser1@example.org",
                name="Leser 1",
                msg_id=message_id(secret, report.edition_id, 2, config),
                unsubscribe_url=unsubscribe_url(config, secret, 2),
                when=datetime.now(UTC),
            )
        )
    print(json.dumps({"seconds": seconds, "delivered": report.delivered, "peak_kib": peak_kib}))


@dataclass
class Ours:
    seconds: float
    peak_mib: float
    message: bytes


def time_ours(server: SmtpChild, readers: int, connections: int) -> Ours:
    with tempfile.TemporaryDirectory() as tmp:
        path = make_site(Path(tmp), server.port, readers, connections)
        sample = Path(tmp) / "sample.eml"
        out = subprocess.run(
            [sys.executable, __file__, "--send", str(path), str(sample)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        got = json.loads(out.strip().splitlines()[-1])
        if got["delivered"] != readers:
            raise SystemExit(f"bench/deliver.py: trnews delivered {got['delivered']} of {readers}")
        return Ours(got["seconds"], got["peak_kib"] / 1024, sample.read_bytes())


# -- the baselines ------------------------------------------------------------------------------


def bare_loop(port: int, message: bytes, count: int) -> float:
    """A bare smtplib loop: the same pre-built message `count` times over one connection."""
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as conn:
        for i in range(count):
            conn.sendmail(SENDER, [f"leser{i}@example.org"], message)
    return time.perf_counter() - start


def bare_parallel(port: int, message: bytes, count: int, loops: int = 4) -> float:
    """`loops` bare loops at once in as many processes, `count` messages in all."""
    with tempfile.TemporaryDirectory() as tmp:
        sample = Path(tmp) / "sample.eml"
        sample.write_bytes(message)
        share = [count // loops + (1 if i < count % loops else 0) for i in range(loops)]
        start = time.perf_counter()
        procs = [
            subprocess.Popen([sys.executable, __file__, "--bare", str(port), str(sample), str(n)])
            for n in share
        ]
        if any(p.wait() != 0 for p in procs):
            raise SystemExit("bench/deliver.py: a bare loop failed")
        return time.perf_counter() - start


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Row:
    sink: str
    readers: int
    connections: int
    ours: Ours
    bare: float
    """msg/s of one bare loop to the same sink."""
    ceiling: float | None = None
    """msg/s of four bare loops at once to the same sink."""

    @property
    def rate(self) -> float:
        return self.readers / self.ours.seconds


def sizes(quick: bool) -> tuple[int, int, int]:
    """Readers for the aiosmtpd sink runs, for the slow relay, and for the memory run."""
    return (1000, 300, 10_000) if quick else (10_000, 2000, 100_000)


def measure(quick: bool) -> list[Row]:
    n, slow_n, big_n = sizes(quick)
    rows = []
    with smtp_server() as sink:
        for connections in (1, 4):
            ours = time_ours(sink, n, connections)
            bare = n / bare_loop(sink.port, ours.message, n)
            ceiling = n / bare_parallel(sink.port, ours.message, n)
            rows.append(Row("aiosmtpd sink", n, connections, ours, bare, ceiling))
    check(sink, 3 * 2 * n)
    with smtp_server(latency=LATENCY) as relay:
        bare = 0.0
        for connections in (1, 4):
            ours = time_ours(relay, slow_n, connections)
            bare = bare or slow_n / bare_loop(relay.port, ours.message, slow_n)
            rows.append(Row(f"relay {LATENCY * 1000:.0f} ms/msg", slow_n, connections, ours, bare))
    check(relay, 3 * slow_n)
    with smtp_server(raw=True) as fast:
        ours = time_ours(fast, big_n, 4)
        bare = n / bare_loop(fast.port, ours.message, n)
        rows.append(Row("raw chunk sink", big_n, 4, ours, bare))
    check(fast, big_n + n)
    return rows


def check(server: SmtpChild, expected: int) -> None:
    if server.received != expected:
        raise SystemExit(f"bench/deliver.py: the sink got {server.received} of {expected}")


def results(rows: list[Row]) -> list[Result]:
    out = []
    for r in rows:
        notes = [
            f"{len(r.ours.message) / 1024:.0f} KB messages",
            f"peak RSS of the send process {r.ours.peak_mib:.0f} MB (target < {MEMORY_TARGET_MB})",
        ]
        if r.ceiling:
            notes.append(
                f"4 bare loops at once get {r.ceiling:.0f} msg/s from this sink, ours "
                f"{r.rate / r.ceiling:.0%} of that"
            )
        out.append(
            Result(
                f"deliver {r.readers}, {r.connections} conn., {r.sink}",
                r.rate,
                r.bare,
                unit="msg/s",
                note="; ".join(notes),
            )
        )
    return out


def run(quick: bool = False) -> list[Result]:
    """The delivery benchmarks: quick is a smaller run for a first look."""
    logging.basicConfig(level=logging.ERROR)
    rows = measure(quick)
    run.rows = rows  # type: ignore[attr-defined]  # for main()'s fuller table
    return results(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-raw", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--latency", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--send", nargs=2, metavar=("CONFIG", "SAMPLE"), help=argparse.SUPPRESS)
    parser.add_argument("--bare", nargs=3, metavar=("PORT", "SAMPLE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.latency)
        return
    if args.serve_raw:
        serve_raw()
        return
    if args.send:
        send_child(Path(args.send[0]), Path(args.send[1]))
        return
    if args.bare:
        bare_loop(int(args.bare[0]), Path(args.bare[1]).read_bytes(), int(args.bare[2]))
        return
    run(args.quick)
    rows: list[Row] = run.rows  # type: ignore[attr-defined]
    head = (
        f"{'sink':<18} {'readers':>7} {'conn.':>5} {'ours msg/s':>10} {'bare loop':>9} "
        f"{'ratio':>6} {'4 bare loops':>12} {'peak RSS':>9} {'msg size':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        ceiling = f"{r.ceiling:.0f}" if r.ceiling else "-"
        print(
            f"{r.sink:<18} {r.readers:>7} {r.connections:>5} {r.rate:>10.0f} {r.bare:>9.0f} "
            f"{r.rate / r.bare:>5.2f}x {ceiling:>12} {r.ours.peak_mib:>6.0f} MB "
            f"{len(r.ours.message) / 1024:>5.1f} KB"
        )
    n = sizes(args.quick)[0]
    print(
        "\nbare loop: one smtplib connection sending one pre-built message of the same size to "
        f"the same sink (to the raw sink: {n} messages); 4 bare loops: four at once in four "
        "processes, what the sink itself can take. peak RSS: the whole send process "
        f"(target < {MEMORY_TARGET_MB} MB)."
    )


if __name__ == "__main__":
    main()
