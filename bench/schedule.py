"""What `trnews run` costs and how fast it answers, each against a baseline run alongside.

- **A scheduled send** against the CLI: the same edition (the items of tests/data/, N readers,
  the Maildir transport) sent once by `trnews collect && trnews send` as two processes (the
  baseline: what a cron job does), and once by `trnews run` making up a send slot missed 5
  minutes before it started (ours: start, lock, collect, send, until the log line that says the
  send is done). Around ×1: the scheduler adds nothing to the work.
- **Idle cost**: the CPU time a `trnews run` with nothing due uses over a minute (its 2-second
  config watch and APScheduler's wake-ups), against a Python process sleeping as long; and its
  resident memory.
- **A config edit taken up**: seconds from saving a new send line to the scheduler's log line
  naming it, over several edits, against the config watch's period (2 s), the bound it
  promises.
- **SIGTERM in a send**: seconds from SIGTERM, sent while the scheduler delivers to N readers,
  to its exit 0, against the 10 seconds SPEC.md allows.

    .venv/bin/python bench/schedule.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from common import Result, maildir_site  # noqa: E402

OSLO = ZoneInfo("Europe/Oslo")


def make_site(folder: Path, readers: int, *, send: str, collect: str = "0 3 1 1 *") -> Path:
    """A Maildir site with N readers and these cron lines (the collect line fires never, by
    default: only the send's own collect runs)."""
    return maildir_site(folder, readers, f'\n[schedule]\ncollect = "{collect}"\nsend = "{send}"\n')


def trnews(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", "-c", str(config), *args]


def env() -> dict[str, str]:
    return {**os.environ, "TRNEWS_SECRET": "bench-secret", "PYTHONPATH": str(ROOT)}


def slot_minutes_ago(minutes: int) -> tuple[str, datetime]:
    """A daily cron line whose latest slot was `minutes` ago in Oslo time, and that slot."""
    at = (datetime.now(OSLO) - timedelta(minutes=minutes)).replace(second=0, microsecond=0)
    return f"{at.minute} {at.hour} * * *", at


def note_line(config: Path, job: str, line: str, since: datetime) -> None:
    """Record that `line` took effect at `since`, as a scheduler that ran then would have."""
    from pipeline.store import Store, iso

    db = config.parent / "var" / "trnews.db"
    with Store.open(db) as store:
        value = {"line": line, "timezone": "Europe/Oslo", "since": iso(since)}
        store.set_meta(f"schedule.{job}", json.dumps(value))


@contextmanager
def scheduler(config: Path) -> Iterator[tuple[subprocess.Popen[str], list[tuple[float, str]]]]:
    """`trnews run` as a process; its stdout lines, each with when it was read."""
    proc = subprocess.Popen(
        trnews(config, "run"),
        cwd=config.parent,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.perf_counter(), line.rstrip()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(timeout=5)


def wait_for(lines: list[tuple[float, str]], pattern: str, timeout: float = 120) -> float:
    """When a line matching `pattern` was read."""
    deadline = time.perf_counter() + timeout
    rx = re.compile(pattern)
    while time.perf_counter() < deadline:
        for at, line in list(lines):
            if rx.search(line):
                return at
        time.sleep(0.01)
    raise SystemExit(
        f"no line matching {pattern!r} within {timeout} s:\n" + "\n".join(line for _, line in lines)
    )


def count_messages(config: Path) -> int:
    box = config.parent / "var" / "outbox" / "new"
    return len(list(box.iterdir())) if box.exists() else 0


def scheduled_send(readers: int) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        line, _ = slot_minutes_ago(5)
        cli = make_site(Path(tmp) / "cli", readers, send=line)
        start = time.perf_counter()
        for args in (("collect",), ("send",)):
            subprocess.run(
                trnews(cli, *args), cwd=cli.parent, env=env(), check=True, capture_output=True
            )
        baseline = time.perf_counter() - start
        assert count_messages(cli) == readers

        ours_site = make_site(Path(tmp) / "run", readers, send=line)
        note_line(ours_site, "send", line, datetime.now(UTC) - timedelta(hours=1))
        start = time.perf_counter()
        with scheduler(ours_site) as (_, lines):
            done = wait_for(lines, r"The send of .*: ok: .*edition 1 sent")
        ours = done - start
        assert count_messages(ours_site) == readers, count_messages(ours_site)
    return Result(
        f"scheduled send, {readers:,} readers",
        ours,
        baseline,
        note="`trnews run` making up a send slot (start, lock, collect, send) against "
        "`trnews collect && trnews send` on the same site",
    )


def idle(seconds: float) -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        config = make_site(Path(tmp), 1, send="0 8 1 1 *")
        with scheduler(config) as (proc, lines):
            wait_for(lines, r"Scheduler started")
            time.sleep(2)  # past the start-up work
            before = _cpu(proc.pid)
            time.sleep(seconds)
            used = _cpu(proc.pid) - before
            rss_mb = _rss_mb(proc.pid)
    # A process that only sleeps is charged nothing; the least the kernel can charge is a tick.
    tick = 1 / os.sysconf("SC_CLK_TCK")
    return [
        Result(
            f"idle CPU over {seconds:.0f} s",
            used,
            tick,
            note=f"CPU seconds of an idle `trnews run` (config watch every 2 s) against one "
            f"clock tick ({tick:.2f} s, a sleeping process's floor): "
            f"{100 * used / seconds:.3f} % of one core; resident memory {rss_mb:.0f} MB",
        )
    ]


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def reload(edits: int) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        config = make_site(Path(tmp), 1, send="0 8 * * mon")
        waits = []
        with scheduler(config) as (_, lines):
            wait_for(lines, r"Scheduler started")
            for i in range(edits):
                hour = 5 + i
                text = config.read_text(encoding="utf-8")
                text = re.sub(r'send = "[^"]*"', f'send = "0 {hour} * * mon"', text)
                # Land at varied points of the watch's 2 s period: after a detection, the
                # next look is due 2 s later.
                time.sleep((0.3 + 0.45 * i) % 2.0)
                saved = time.perf_counter()
                config.write_text(text, encoding="utf-8")
                seen = wait_for(lines, rf"send schedule is now '0 {hour} \* \* mon'")
                waits.append(seen - saved)
    waits.sort()
    return Result(
        f"config edit taken up ({edits} edits)",
        max(waits),
        2.0,
        note=f"slowest of {edits} edits against the 2 s watch period; median "
        f"{waits[len(waits) // 2]:.2f} s, fastest {waits[0]:.2f} s",
    )


def sigterm(readers: int) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        line, _ = slot_minutes_ago(5)
        config = make_site(Path(tmp), readers, send=line)
        note_line(config, "send", line, datetime.now(UTC) - timedelta(hours=1))
        with scheduler(config) as (proc, lines):
            wait_for(lines, r"Built edition 1")
            time.sleep(0.5)
            sent = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
            exited = time.perf_counter() - sent
        delivered = count_messages(config)
        assert code == 0, code
    return Result(
        "SIGTERM in a send to exit",
        exited,
        10.0,
        note=f"exit {code} after {delivered:,} of {readers:,} messages; the rest stay owed; "
        "against the 10 s SPEC.md allows",
    )


def run(quick: bool = False) -> list[Result]:
    readers = 500 if quick else 5_000
    rows = [scheduled_send(readers)]
    rows += idle(10 if quick else 60)
    rows.append(reload(3 if quick else 10))
    rows.append(sigterm(readers))
    for r in rows:
        print(f"  {r.name}: ours {r.ours:.2f} {r.unit}, baseline {r.baseline:.2f}, ×{r.ratio:.2f}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    run(args.quick)


if __name__ == "__main__":
    main()
