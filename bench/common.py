"""What the benchmarks share: the table row, and servers run in a child process."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass


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
