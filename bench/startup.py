"""What a command costs before it works: `trnews collect`'s first request, its imports, and the
peak memory of `subscribers export --json`. Whole processes, start-up included.

    .venv/bin/python bench/startup.py            # all three
    .venv/bin/python bench/startup.py --imports  # the import time of `trnews collect`, by package

- **first request**: from just before Popen to the arrival of the first request at a loopback
  server (in this process), for `trnews collect` over 3 feeds and for a bare script
  (`import httpx, feedparser`; get the first feed; parse it). Median of 5 runs; target: ours
  within 2x of the bare script.
- **imports**: `python -X importtime -m pipeline collect`, self times summed by top-level
  package (what `-X importtime` counts runs slower than a plain start: compare runs of this).
- **export RSS**: peak RSS (VmHWM, sampled) of `trnews subscribers export --json` of N readers,
  beside the CSV export of the same readers; target under 100 MB at 100,000.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from common import SITE_CONFIG, Result, TreeMemory, maildir_site  # noqa: E402

FEED = (HERE.parent / "tests" / "data" / "blog_wordpress.xml").read_bytes()
BARE = """
import sys, httpx, feedparser
feedparser.parse(httpx.get(sys.argv[1]).content)
"""


class FirstRequest:
    """A loopback feed server noting when each request arrives (time.monotonic: one clock for
    every process of this machine)."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.arrivals.append(time.monotonic())
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("Content-Length", str(len(FEED)))
                self.end_headers()
                self.wfile.write(FEED)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def first_after(self, command: list[str], cwd: Path) -> float:
        """Seconds from just before starting `command` to the first request it makes."""
        self.arrivals.clear()
        start = time.monotonic()
        subprocess.run(command, cwd=cwd, check=True, capture_output=True, env=_env())
        return min(self.arrivals) - start


def _env() -> dict[str, str]:
    return {**os.environ, "TRNEWS_SECRET": "bench-secret"}


def _collect_site(folder: Path, url: str) -> Path:
    feeds = ", ".join(f'{{ url = "{url}/{i}.xml", kind = "blog" }}' for i in range(3))
    path = folder / "trnews.toml"
    path.write_text(SITE_CONFIG.format(feeds=feeds, extra=""), encoding="utf-8")
    return path


def first_request(runs: int) -> Result:
    server = FirstRequest()
    ours, bare = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = _collect_site(folder, server.url)
        for _ in range(runs):
            for db in folder.glob("var/trnews.db*"):
                db.unlink()
            cmd = [sys.executable, "-m", "pipeline", "-c", str(config), "collect"]
            ours.append(server.first_after(cmd, folder))
            bare.append(
                server.first_after([sys.executable, "-c", BARE, server.url + "/0.xml"], folder)
            )
    return Result(
        "collect: start to first request (3 feeds)",
        statistics.median(ours),
        statistics.median(bare),
        note=f"median of {runs}; baseline: a bare httpx + feedparser script; target ratio >= 0.5",
    )


def import_times() -> tuple[float, list[tuple[str, float]]]:
    """`trnews collect`'s import time in ms, in all and by top-level package."""
    server = FirstRequest()
    with tempfile.TemporaryDirectory() as tmp:
        config = _collect_site(Path(tmp), server.url)
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "pipeline", "-c", str(config), "collect"],
            cwd=tmp,
            capture_output=True,
            text=True,
            env=_env(),
            check=True,
        )
    by_package: collections.Counter[str] = collections.Counter()
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if m:
            by_package[m.group(2).split(".")[0]] += int(m.group(1)) / 1000
    return sum(by_package.values()), by_package.most_common(15)


def _peak_mb(command: list[str], cwd: Path) -> float:
    with open(os.devnull, "wb") as out:
        proc = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.DEVNULL, env=_env())
        memory = TreeMemory(proc.pid)
        status = proc.wait()
        peak = memory.close().get(proc.pid, 0)
    assert status == 0, command
    return peak / 1024


def export_rss(readers: int) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = maildir_site(folder, readers)
        base = [sys.executable, "-m", "pipeline", "-c", str(config), "subscribers", "export"]
        json_mb = _peak_mb([*base, "--json"], folder)
        csv_mb = _peak_mb(base, folder)
    return Result(
        f"export --json {readers:,} readers, peak RSS",
        json_mb,
        csv_mb,
        unit="MB",
        note="baseline: the CSV export of the same readers; ratio near 1 is good; "
        "target under 100 MB at 100,000",
    )


def run(quick: bool) -> list[Result]:
    total, top = import_times()
    print(f"import time of `trnews collect` (-X importtime): {total:.0f} ms")
    print("  " + ", ".join(f"{name} {ms:.0f}" for name, ms in top))
    rows = [first_request(3 if quick else 7), export_rss(10_000 if quick else 100_000)]
    for r in rows:
        print(f"{r.name}: ours {r.ours:.3f}, baseline {r.baseline:.3f} ({r.unit})")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imports", action="store_true", help="only the import time, by package")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.imports:
        total, top = import_times()
        print(f"import time of `trnews collect` (-X importtime): {total:.0f} ms")
        for name, ms in top:
            print(f"  {ms:7.1f} ms  {name}")
        return
    run(args.quick)


if __name__ == "__main__":
    main()
