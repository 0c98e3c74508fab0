"""What reading the region's indicators costs: the JSON-stat reader against `json.loads` alone.

On SSB-shaped datasets (a `Region` dimension summed, one statistic, a time dimension), in
this process:

- **ours**: `pipeline.jsonstat.read(data, sum_over="Region")`: decode, parse, check every
  dimension, add up the municipalities, read each period;
- **baseline**: `json.loads` of the same bytes: the floor under any reader of the format.

Sizes: a typical answer (356 municipalities × 25 years, 8,900 cells) and SSB's largest
(800,000 cells: 3,200 regions × 250 months). Median of R runs each. The ratio is
baseline / ours: how much of the parse the reading adds.

    .venv/bin/python bench/indicators.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import Result  # noqa: E402

from pipeline.jsonstat import read  # noqa: E402


def dataset(regions: int, periods: list[str]) -> bytes:
    """A json-stat2 answer shaped as SSB's PxWebApi 2.0 gives it, every tenth cell of the last
    region suppressed (status "..", value null)."""
    codes = [f"K{n:04d}" for n in range(regions)]
    values: list[Any] = []
    status: dict[str, str] = {}
    for r in range(regions):
        for t in range(len(periods)):
            cell = r * len(periods) + t
            if r == regions - 1 and t % 10 == 0:
                values.append(None)
                status[str(cell)] = ".."
            else:
                values.append(1000 + r + t * 3)
    doc = {
        "version": "2.0",
        "class": "dataset",
        "label": "bench",
        "id": ["Region", "ContentsCode", "Tid"],
        "size": [regions, 1, len(periods)],
        "role": {"time": ["Tid"], "metric": ["ContentsCode"], "geo": ["Region"]},
        "dimension": {
            "Region": {
                "category": {
                    "index": {c: i for i, c in enumerate(codes)},
                    "label": {c: f"Kommune {c}" for c in codes},
                }
            },
            "ContentsCode": {
                "category": {
                    "index": {"Syss": 0},
                    "label": {"Syss": "Sysselsatte"},
                    "unit": {"Syss": {"base": "personer", "decimals": 0}},
                }
            },
            "Tid": {"category": {"index": {p: i for i, p in enumerate(periods)}}},
        },
        "value": values,
        "status": status,
    }
    return json.dumps(doc, ensure_ascii=False).encode()


def timed(fn: Any, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(quick: bool) -> list[Result]:
    runs = 3 if quick else 9
    years = [str(y) for y in range(2000, 2025)]
    months = [f"{y}M{m:02d}" for y in range(2005, 2026) for m in range(1, 13)][:250]
    cases = [("356 municipalities × 25 years", dataset(356, years))]
    if not quick:
        cases.append(("3,200 regions × 250 months (SSB's largest)", dataset(3_200, months)))
    rows = []
    for name, data in cases:
        cells = len(json.loads(data)["value"])
        ours = timed(lambda data=data: read(data, sum_over="Region"), runs)
        baseline = timed(lambda data=data: json.loads(data), runs)
        rows.append(
            Result(
                f"indicators: read JSON-stat, {name}",
                ours,
                baseline,
                note=f"{cells:,} cells, {len(data) // 1024:,} KB; baseline json.loads; "
                f"median of {runs}",
            )
        )
        print(f"{name}: read {ours * 1000:.1f} ms, json.loads {baseline * 1000:.1f} ms")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)


if __name__ == "__main__":
    main()
