"""Run the trnews benchmarks and print one table: each against a baseline measured in this run.

    .venv/bin/python bench/run.py            # the full run (`make bench`), about 13 minutes
    .venv/bin/python bench/run.py --quick    # a smaller run, about a minute
    .venv/bin/python bench/run.py --only deliver

Speed is measured here, never asserted in tests. Read the ratio column: above 1, trnews is
faster than the plain baseline by that factor; below 1, slower. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bounces
import collect
import deliver
import desk
import indicators
import render
import schedule
import startup
import web
from common import Result

BENCHES = {
    "bounces": bounces.run,
    "collect": collect.run,
    "deliver": deliver.run,
    "desk": desk.run,
    "indicators": indicators.run,
    "render": render.run,
    "schedule": schedule.run,
    "startup": startup.run,
    "web": web.run,
}


def figure(value: float, unit: str) -> str:
    return f"{value:.2f} s" if unit == "s" else f"{value:.0f} {unit}"


def table(rows: list[Result]) -> str:
    header = ("benchmark", "ours", "baseline", "ratio")
    cells = [
        (r.name, figure(r.ours, r.unit), figure(r.baseline, r.unit), f"×{r.ratio:.2f}")
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(4)]
    lines = []
    for n, c in enumerate([header, *cells]):
        lines.append(
            "  ".join(
                c[i].ljust(widths[i]) if i == 0 else c[i].rjust(widths[i]) for i in range(4)
            ).rstrip()
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    notes = [f"  {r.name}: {r.note}" for r in rows if r.note]
    return "\n".join(lines + (["", "notes:", *notes] if notes else []))


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the trnews benchmarks.")
    parser.add_argument("--quick", action="store_true", help="a smaller run, for a first look")
    parser.add_argument("--only", choices=sorted(BENCHES), action="append", help="run only this")
    args = parser.parse_args()
    chosen = args.only or list(BENCHES)
    print(
        f"trnews benchmarks{' (quick)' if args.quick else ''}: Python "
        f"{platform.python_version()}, {platform.machine()}, {platform_cpus()} CPUs"
    )
    print(
        "ratio: the compared time / ours for collect, ours msg/s / baseline msg/s for deliver, "
        "re-render time / personalise time for render, CLI time / scheduler time (or the "
        "bound SPEC.md promises / ours) for schedule, ours req/s / bare uvicorn req/s for web "
        "(the library's pages / the archive page of the same server), the command or page "
        "without the desk / with it for desk, json.loads / our JSON-stat reader for "
        "indicators, a bare parsing loop / trnews bounces for bounces;"
    )
    print("above 1 trnews is faster than the baseline.\n")
    rows: list[Result] = []
    start = time.perf_counter()
    for name in chosen:
        rows.extend(BENCHES[name](args.quick))
    print(table(rows))
    print(f"\n({time.perf_counter() - start:.0f} s in all)")


def platform_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    main()
