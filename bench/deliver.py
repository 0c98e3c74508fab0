"""How fast `trnews send` delivers the demo's edition over SMTP, against bare smtplib loops, and
how much memory the send takes up to 100,000 readers.

The receiver is Postfix's `smtp-sink` (a C program that takes messages and throws them away,
announcing PIPELINING), started afresh for each measurement on a loopback port with its
running counter (`-c`) written to a file, so that the messages it took are counted exactly. It
is far faster than any Python client, so what is measured is the client. Without it (Debian:
`apt-get install postfix`) those cases are skipped.

The message is the demo's own edition (44-49 KB): the site `make demo` builds from
config/trnews.toml and its bundled feeds (pipeline/demo.py), collected offline, its delivery
switched to smtp on the sink's port (`security = "none"`), N active readers added straight into
its SQLite store. In the same run, to the same sink, with the same bytes:

- ours: `trnews -v -c CONFIG send` as a whole process, start-up included (wall time from the
  start of the process to its exit), with `[delivery.smtp] connections` 1, 4 and 8; afterwards
  the store must show every reader delivered and the sink must have counted exactly N. Beside
  it, the in-process rate: from the log line "Built edition" to "Delivered edition". Peak RSS:
  the send process's high-water mark (VmHWM, sampled from /proc).
- bare loop: one reader's message exactly as trnews wrote it (taken from a Maildir send of the
  same site), sent N times by a bare smtplib loop on one connection, as a whole process
  (`python bench/deliver.py --bare ...`, start-up included);
- four bare loops: four such processes at once, N messages in all: the practical ceiling of a
  Python client on this machine.

Targets (issue 17): ours >= 1.5x one bare loop and >= 0.9x four bare loops; the peak RSS flat
up to 100,000 readers. A slow relay (aiosmtpd taking 10 ms over each message) shows what
parallel connections are for: 1 against 4 connections.

    .venv/bin/python bench/deliver.py [--quick]
    .venv/bin/python bench/deliver.py --readers 5000 --connections 4   # one case
    .venv/bin/python bench/deliver.py --profile 5000                   # where the time goes
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Result, TreeMemory, child, port_of

ROOT = Path(__file__).resolve().parent.parent
TRNEWS = Path(sys.executable).with_name("trnews")
SENDER = "nyhetsbrev@trondheimsregionen.example"
LATENCY = 0.01
"""Seconds the slow relay takes over each message."""
BARE_LOOPS = 4
TARGET_BARE = 1.5
TARGET_FOUR = 0.9
FLAT = 0.15
"""How much the peak RSS may grow from the smallest N to the largest and still count as flat."""
SKIPPED = "skipped: Postfix's smtp-sink not found; apt-get install postfix"


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]
    connections: tuple[int, ...]
    big: int | None
    """Readers of the memory run (4 connections), or None."""
    relay: int | None
    """Readers of the slow-relay runs, or None."""


def plan(quick: bool) -> Plan:
    if quick:
        return Plan((2000,), (1, 4, 8), 10_000, 300)
    return Plan((5000, 20_000), (1, 4, 8), 100_000, 2000)


# -- the receivers ------------------------------------------------------------------------------


def smtp_sink_path() -> str | None:
    return shutil.which("smtp-sink") or next(
        (p for p in ("/usr/sbin/smtp-sink", "/usr/bin/smtp-sink") if os.access(p, os.X_OK)), None
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Sink:
    port: int
    received: int = -1
    """Messages the sink took (its `-c` counter), known once it has stopped."""


@contextlib.contextmanager
def smtp_sink(folder: Path) -> Iterator[Sink]:
    """Postfix's smtp-sink on a free loopback port; after the block, `received` is its count.

    `-c` writes "sess=S quit=Q mesg=M" to stdout, ended by a carriage return, each time a
    session ends, a QUIT is read or a message's "." is: a few dozen bytes a message, to a file.
    """
    exe = smtp_sink_path()
    assert exe is not None
    port = free_port()
    counter = folder / f"smtp-sink-{port}.out"
    user = ["-u", "nobody"] if os.geteuid() == 0 else []  # it refuses to run as root
    with counter.open("wb") as out:
        proc = subprocess.Popen(
            [exe, "-c", "-4", *user, f"127.0.0.1:{port}", "256"],
            stdout=out,
            stderr=subprocess.PIPE,
        )
    try:
        wait_listening(port, proc)
        sink = Sink(port)
        yield sink
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    counts = re.findall(rb"mesg=(\d+)", counter.read_bytes())
    sink.received = int(counts[-1]) if counts else 0
    if proc.returncode not in (0, -signal.SIGTERM):
        raise SystemExit(f"bench/deliver.py: smtp-sink failed: {err.decode(errors='replace')}")


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    """Wait until the sink accepts connections (its sessions counter then counts this one)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise SystemExit(f"bench/deliver.py: smtp-sink did not start: {err.strip()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.02)
    raise SystemExit(f"bench/deliver.py: smtp-sink did not listen on port {port}")


class Counter:
    """aiosmtpd handler of the slow relay: takes `latency` over each message (asynchronously, so
    other connections go on meanwhile), keeps none, counts them."""

    def __init__(self, latency: float) -> None:
        self.messages = 0
        self.latency = latency

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        await asyncio.sleep(self.latency)
        self.messages += 1
        return "250 OK"


def serve_relay(latency: float) -> None:
    """Child process: aiosmtpd on a free port; prints it, runs until stdin closes, then prints
    how many messages arrived."""
    from aiosmtpd.controller import Controller

    port = free_port()  # Controller(port=0) fails: it probes the port it is given
    handler = Counter(latency)
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    print(port, flush=True)
    sys.stdin.read()
    controller.stop()
    print(handler.messages, flush=True)


@contextlib.contextmanager
def slow_relay() -> Iterator[Sink]:
    with child(__file__, "--serve-relay") as proc:
        sink = Sink(port_of(proc))
        yield sink
    assert proc.stdout is not None
    sink.received = int(proc.stdout.readline() or 0)


# -- the site -----------------------------------------------------------------------------------


class Site:
    """The demo site (pipeline/demo.py), collected once; `case()` copies it with N readers."""

    def __init__(self, folder: Path) -> None:
        from pipeline.demo import prepare

        self.folder = folder
        base = folder / "base"
        base.mkdir()
        for part in ("config", "examples"):
            (base / part).symlink_to(ROOT / part)
        self.demo = prepare(base).parent
        cli(self.demo / "trnews.toml", "collect")
        self.cases = 0
        self.message = self._one_message()

    def case(self, readers: int, smtp: tuple[int, int] | None) -> Path:
        """A copy of the collected site with N active readers; `smtp` = (port, connections)
        switches its delivery to that server, else it stays a Maildir in ../outbox."""
        self.cases += 1
        demo = self.folder / f"case{self.cases}" / "demo"
        shutil.copytree(self.demo, demo)
        config = demo / "trnews.toml"
        if smtp is not None:
            text = config.read_text(encoding="utf-8")
            port, connections = smtp
            for pattern, value in (
                (r'^transport = "maildir"', 'transport = "smtp"'),
                (r"^host = .*$", 'host = "127.0.0.1"'),
                (r"^port = .*$", f"port = {port}"),
                (r"^security = .*$", 'security = "none"'),
                (r"^connections = .*$", f"connections = {connections}"),
            ):
                text, found = re.subn(pattern, value, text, flags=re.M)
                if found != 1:
                    raise SystemExit(f"config/trnews.toml: no one line {pattern}; update me")
            config.write_text(text, encoding="utf-8")
        add_readers(demo / "trnews.db", readers)
        return config

    def _one_message(self) -> bytes:
        """One reader's message exactly as `trnews send` writes it (Maildir, then CRLF)."""
        config = self.case(1, None)
        cli(config, "send")
        (path,) = (config.parent.parent / "outbox" / "new").iterdir()
        return path.read_bytes().replace(b"\n", b"\r\n")


def cli(config: Path, *args: str) -> None:
    done = subprocess.run([TRNEWS, "-c", str(config), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench/deliver.py: trnews {' '.join(args)} failed:\n{done.stderr}")


def add_readers(database: Path, readers: int) -> None:
    """N active subscribers, straight into the store in one transaction."""
    now = datetime.now(UTC).isoformat()
    with contextlib.closing(sqlite3.connect(database)) as db, db:
        db.executemany(
            "INSERT INTO subscribers (email, name, state, source, created, updated) "
            "VALUES (?, ?, 'active', 'bench', ?, ?)",
            (
                (
                    f"leser{i}@example.org",
                    f"Leser Ødegård {i}" if i % 3 == 0 else f"Leser {i}",
                    now,
                    now,
                )
                for i in range(readers)
            ),
        )


def delivered(config: Path) -> tuple[int, str]:
    """Readers the newest edition was delivered to, and its status, as the store says."""
    from pipeline.config import load_config
    from pipeline.store import Store

    with Store.open(load_config(config).database_path) as store:
        (edition,) = store.editions(limit=1)
    return edition.delivered, edition.status.value


# -- ours ---------------------------------------------------------------------------------------


@dataclass
class Ours:
    seconds: float
    """Wall time of the whole `trnews send` process."""
    inside: float | None
    """From the log line "Built edition" to "Delivered edition"."""
    peak_mib: float


LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO \S+: (Built|Delivered) ", re.M)


def time_ours(site: Site, sink: Sink, readers: int, connections: int) -> Ours:
    """`trnews send` as a whole process to `sink`; checks the store afterwards."""
    config = site.case(readers, (sink.port, connections))
    out = config.parent / "send.out"
    with out.open("wb") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [TRNEWS, "-v", "-c", str(config), "send"], stdout=log, stderr=subprocess.STDOUT
        )
        timer = threading.Timer(max(600.0, readers / 20), proc.kill)
        timer.start()
        memory = TreeMemory(proc.pid)
        proc.wait()
        seconds = time.perf_counter() - start
        timer.cancel()
        peak = memory.close().get(proc.pid, 0)
    text = out.read_text(encoding="utf-8", errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"bench/deliver.py: trnews send exited {proc.returncode}:\n{text}")
    got, state = delivered(config)
    if got != readers or state != "sent":
        raise SystemExit(f"bench/deliver.py: the store shows {got} of {readers} sent ({state})")
    stamps = {
        m[2]: datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f") for m in LOG_TIME.finditer(text)
    }
    inside = (
        (stamps["Delivered"] - stamps["Built"]).total_seconds()
        if {"Built", "Delivered"} <= stamps.keys()
        else None
    )
    return Ours(seconds, inside, peak / 1024)


# -- the baselines ------------------------------------------------------------------------------


def bare_loop(port: int, message: bytes, count: int) -> None:
    """A bare smtplib loop: the same message `count` times over one connection."""
    with smtplib.SMTP("127.0.0.1", port) as conn:
        for i in range(count):
            conn.sendmail(SENDER, [f"leser{i}@example.org"], message)


def bare_processes(folder: Path, port: int, message: bytes, count: int, loops: int) -> float:
    """`loops` bare loops at once, each a whole process, `count` messages in all: seconds from
    starting the first to the exit of the last."""
    sample = folder / "message.eml"
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
    bare: float | None = None
    """msg/s of one bare loop to the same kind of sink."""
    four: float | None = None
    """msg/s of four bare loops at once."""
    bare_readers: int | None = None
    """N of the bare runs, when not this row's."""
    load: tuple[float, float] = field(default=(0.0, 0.0))

    @property
    def rate(self) -> float:
        return self.readers / self.ours.seconds

    @property
    def inside(self) -> float | None:
        return self.readers / self.ours.inside if self.ours.inside else None


def check(sink: Sink, expected: int) -> None:
    if sink.received != expected:
        raise SystemExit(f"bench/deliver.py: the sink counted {sink.received} of {expected}")


def measure_sink(
    site: Site, folder: Path, readers: int, connections: tuple[int, ...], bare: bool = True
) -> list[Row]:
    """Ours at each connection count, then one and four bare loops, each to a fresh smtp-sink."""
    rows = []
    for c in connections:
        load = os.getloadavg()[0]
        with smtp_sink(folder) as sink:
            ours = time_ours(site, sink, readers, c)
        check(sink, readers)
        rows.append(Row("smtp-sink", readers, c, ours, load=(load, os.getloadavg()[0])))
    if bare:
        rates = []
        for loops in (1, BARE_LOOPS):
            with smtp_sink(folder) as sink:
                rates.append(
                    readers / bare_processes(folder, sink.port, site.message, readers, loops)
                )
            check(sink, readers)
        for row in rows:
            row.bare, row.four = rates
    return rows


def measure(quick: bool, folder: Path, site: Site) -> list[Row]:
    p = plan(quick)
    rows: list[Row] = []
    if smtp_sink_path() is None:
        print(SKIPPED)
    else:
        for n in p.sizes:
            rows += measure_sink(site, folder, n, p.connections)
        if p.big:
            (big,) = measure_sink(site, folder, p.big, (4,), bare=False)
            last = rows[-1]  # a bare loop's rate does not depend on N: the largest N's
            big.bare, big.four, big.bare_readers = last.bare, last.four, last.readers
            rows.append(big)
    if p.relay:
        rows += measure_relay(site, folder, p.relay)
    return rows


def measure_relay(site: Site, folder: Path, readers: int) -> list[Row]:
    rows = []
    with slow_relay() as relay:
        for c in (1, 4):
            load = os.getloadavg()[0]
            ours = time_ours(site, relay, readers, c)
            rows.append(Row("relay 10 ms", readers, c, ours, load=(load, os.getloadavg()[0])))
        bare = readers / bare_processes(folder, relay.port, site.message, readers, 1)
    check(relay, 3 * readers)
    for row in rows:
        row.bare = bare
    return rows


def mb(value: float | None) -> str:
    return f"{value:.0f}" if value is not None else "-"


def table(rows: list[Row], message: bytes) -> str:
    head = (
        f"{'sink':<11} {'readers':>7} {'conn.':>5} {'ours msg/s':>10} {'in-proc.':>8} "
        f"{'bare loop':>9} {'ratio':>6} {'4 bare loops':>12} {'ratio':>6} {'peak RSS':>8} "
        f"{'load':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        ratio = f"{r.rate / r.bare:.2f}x" if r.bare else "-"
        four = f"{r.rate / r.four:.2f}x" if r.four else "-"
        star = "*" if r.bare_readers else ""
        lines.append(
            f"{r.sink:<11} {r.readers:>7} {r.connections:>5} {r.rate:>10.0f} {mb(r.inside):>8} "
            f"{mb(r.bare) + star:>9} {ratio:>6} {mb(r.four) + star:>12} {four:>6} "
            f"{r.ours.peak_mib:>5.0f} MB {r.load[0]:>3.1f}-{r.load[1]:.1f}"
        )
    lines.append("")
    lines.append(
        f"message {len(message) / 1024:.1f} KB (the demo's edition, one reader's, as trnews "
        "wrote it). ours: `trnews send` as a process, start-up included; in-proc.: from "
        '"Built edition" to "Delivered edition" in its log. bare loop: one smtplib process on one '
        "connection; 4 bare loops: four at once. peak RSS: the send process."
    )
    if any(r.bare_readers for r in rows):
        lines.append(
            "*: the bare loops measured at the largest N before it (their rate does not depend "
            "on N)."
        )
    lines.append(targets(rows))
    return "\n".join(lines)


def targets(rows: list[Row]) -> str:
    sink = [r for r in rows if r.sink == "smtp-sink"]
    if not sink:
        return "targets: not checked (no smtp-sink)"
    said = []
    for n in sorted({r.readers for r in sink if r.bare_readers is None}):
        best = max((r for r in sink if r.readers == n and r.bare), key=lambda r: r.rate)
        assert best.bare and best.four
        bare, four = best.rate / best.bare, best.rate / best.four
        said.append(
            f"at {n} readers (best: {best.connections} conn.): ours/bare {bare:.2f} >= "
            f"{TARGET_BARE} {met(bare >= TARGET_BARE)}, ours/4 bare {four:.2f} >= {TARGET_FOUR} "
            f"{met(four >= TARGET_FOUR)}"
        )
    four_conn = sorted((r for r in sink if r.connections == 4), key=lambda r: r.readers)
    if len(four_conn) > 1:
        low, high = four_conn[0], four_conn[-1]
        grew = high.ours.peak_mib / low.ours.peak_mib - 1
        said.append(
            f"memory: {high.ours.peak_mib:.0f} MB at {high.readers} readers against "
            f"{low.ours.peak_mib:.0f} MB at {low.readers} ({grew:+.0%}, flat within "
            f"{FLAT:.0%}) {met(grew <= FLAT)}"
        )
    return "targets: " + "; ".join(said)


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def results(rows: list[Row]) -> list[Result]:
    out = []
    for r in rows:
        notes = [f"peak RSS {r.ours.peak_mib:.0f} MB"]
        if r.inside:
            notes.append(f"in-process {r.inside:.0f} msg/s")
        if r.four:
            notes.append(f"4 bare loops {r.four:.0f} msg/s, ours ×{r.rate / r.four:.2f}")
        if r.bare_readers:
            notes.append(f"bare loops at {r.bare_readers} readers")
        out.append(
            Result(
                f"deliver {r.readers}, {r.connections} conn., {r.sink}",
                r.rate,
                r.bare or 0.0,
                unit="msg/s",
                note="; ".join(notes),
            )
        )
    return out


def run(quick: bool = False) -> list[Result]:
    """The delivery benchmarks, with their own table; quick is a smaller run for a first look."""
    with tempfile.TemporaryDirectory(prefix="trnews-deliver-") as tmp:
        folder = Path(tmp)
        site = Site(folder)
        rows = measure(quick, folder, site)
    print(table(rows, site.message), flush=True)
    return results(rows)


def single(readers: int, connections: int) -> None:
    """One case: ours at N readers and C connections, one and four bare loops."""
    if smtp_sink_path() is None:
        raise SystemExit(SKIPPED)
    with tempfile.TemporaryDirectory(prefix="trnews-deliver-") as tmp:
        folder = Path(tmp)
        site = Site(folder)
        rows = measure_sink(site, folder, readers, (connections,))
    print(table(rows, site.message))


def profile(readers: int, top: int = 30) -> None:
    """`trnews send` in this process under cProfile (every thread), 4 connections."""
    import cProfile
    import pstats

    if smtp_sink_path() is None:
        raise SystemExit(SKIPPED)
    import pipeline.cycle
    import pipeline.deliver  # noqa: F401  # imported before, so the profile is the send's work
    from pipeline.cli import cli as trnews

    profiles: list[cProfile.Profile] = []
    thread_run = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:
        p = cProfile.Profile()
        profiles.append(p)
        p.enable()
        try:
            thread_run(self)
        finally:
            p.disable()

    with tempfile.TemporaryDirectory(prefix="trnews-deliver-") as tmp:
        folder = Path(tmp)
        site = Site(folder)
        with smtp_sink(folder) as sink:
            config = site.case(readers, (sink.port, 4))
            main_profile = cProfile.Profile()
            threading.Thread.run = profiled_run  # type: ignore[method-assign]
            start = time.perf_counter()
            main_profile.enable()
            try:
                trnews.main(["-c", str(config), "send"], prog_name="trnews", standalone_mode=False)
            finally:
                main_profile.disable()
                threading.Thread.run = thread_run  # type: ignore[method-assign]
            seconds = time.perf_counter() - start
        check(sink, readers)
        got, _ = delivered(config)
    print(
        f"\n{readers} readers, 4 connections, in this process under cProfile: {seconds:.2f} s, "
        f"{readers / seconds:.0f} msg/s; {got} delivered; {len(profiles)} threads profiled"
    )
    stats = pstats.Stats(main_profile)
    for p in profiles:
        stats.add(p)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run")
    parser.add_argument("--readers", type=int, metavar="N", help="one case: N readers")
    parser.add_argument("--connections", type=int, default=4, metavar="C", help="with --readers")
    parser.add_argument("--profile", type=int, metavar="N", help="profile a send to N readers")
    parser.add_argument("--serve-relay", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bare", nargs=3, metavar=("PORT", "MESSAGE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        bare_loop(int(args.bare[0]), Path(args.bare[1]).read_bytes(), int(args.bare[2]))
    elif args.serve_relay:
        serve_relay(LATENCY)
    elif args.profile:
        profile(args.profile)
    elif args.readers:
        single(args.readers, args.connections)
    else:
        run(args.quick)


if __name__ == "__main__":
    main()
