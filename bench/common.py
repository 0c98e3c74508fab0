"""What the benchmarks share: the table row, and servers run in a child process."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class Result:
    """One line of the benchmark table.

    `ratio` is how many times better trnews does than the baseline: baseline / ours for a time
    (unit "s"), ours / baseline for a rate (any other unit). Above 1, trnews is faster.
    """

    name: str
    ours: float
    baseline: float
    unit: str = "s"
    note: str = ""

    @property
    def ratio(self) -> float:
        better, worse = (
            (self.baseline, self.ours) if self.unit == "s" else (self.ours, self.baseline)
        )
        return better / worse if worse else float("inf")


@contextlib.contextmanager
def child(script: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """Run `script ARGS` as a server in a child process, so its work does not share our GIL.

    The child prints its port on its first line and stops when its stdin closes; what it prints
    after that can still be read once the block ends.
    """
    proc = subprocess.Popen(
        [sys.executable, script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        yield proc
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(timeout=10)


def port_of(proc: subprocess.Popen[str]) -> int:
    assert proc.stdout is not None
    return int(proc.stdout.readline())


SITE_FEEDS = ("blog_wordpress.xml", "blogger_atom.xml", "medium.xml", "substack.xml")
SITE_CONFIG = """\
[newsletter]
title = "Ambassadørnytt"
sender = "Trondheimsregionen <nyhetsbrev@example.org>"
public_url = "https://nyhetsbrev.example.org"
lookback_days = 36500
{extra}
[storage]
database = "var/trnews.db"

[delivery]
transport = "maildir"
maildir = "var/outbox"

[[ambassador]]
id = "kari"
name = "Kari Nordmann"
feeds = [{feeds}]
"""


def maildir_site(folder: Path, readers: int, extra: str = "") -> Path:
    """A site in `folder` over local copies of tests/data feeds (nothing collected yet), with
    N active readers and the Maildir transport; `extra` is more TOML for the file. Returns the
    config file. Needs tests/ on sys.path."""
    from support.feeds import feed_bytes

    from pipeline.config import load_config
    from pipeline.models import SubscriberState
    from pipeline.store import Store

    folder.mkdir(parents=True, exist_ok=True)
    for name in SITE_FEEDS:
        (folder / name).write_bytes(feed_bytes(name))
    feeds = ", ".join(f'{{ url = "{n}", kind = "blog" }}' for n in SITE_FEEDS)
    path = folder / "trnews.toml"
    path.write_text(SITE_CONFIG.format(feeds=feeds, extra=extra), encoding="utf-8")
    config = load_config(path)
    now = datetime.now(UTC)
    with Store.open(config.database_path) as store, store.transaction():
        for i in range(readers):
            store.add_subscriber(
                f"leser{i}@example.org",
                f"Leser {i}",
                state=SubscriberState.ACTIVE,
                source="bench",
                now=now,
            )
    return path


class TreeMemory:
    """Samples the high-water mark (VmHWM) of a process and of all its descendants, from
    /proc, until stopped: children that exit are not waited for by us, so their peak is
    only visible while they live.

    Never wait4's ru_maxrss: on Linux the high-water mark survives exec, so a child started
    once the benchmark's own process has grown reports at least that size."""

    def __init__(self, pid: int, every: float = 0.02) -> None:
        self.pid = pid
        self.every = every
        self.peaks: dict[int, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            for pid in self._tree():
                with contextlib.suppress(OSError, ValueError):
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            self.peaks[pid] = max(self.peaks.get(pid, 0), int(line.split()[1]))
            self.stop.wait(self.every)

    def _tree(self) -> list[int]:
        return self.descendants(self.pid)

    @staticmethod
    def descendants(root: int) -> list[int]:
        """`root` and every process below it, from /proc/PID/task/TID/children."""
        out, todo = [], [root]
        while todo:
            pid = todo.pop()
            out.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                with contextlib.suppress(OSError):
                    todo += [int(p) for p in task.read_text().split()]
        return out

    def close(self) -> dict[int, int]:
        """Stop sampling; the peak of each process seen, in KiB."""
        self.stop.set()
        self.thread.join()
        return self.peaks
