"""How cheap it is to personalise a rendered edition, against rendering it for each reader.

trnews renders an edition once (Jinja2 → MJML → HTML, and the text part) and fills each
reader's values (the unsubscribe link, the name in the greeting) into the finished HTML and
text with `pipeline.render.personalise`. In the same run, on the largest edition `max_items`
allows (40 items with long titles, excerpts, links and two-ambassador bylines, five meetings,
three items over the cap, a logo):

- render: `Renderer(config).render(plan)` timed over R renders (after a first one, which
  compiles the templates and reads the catalogues, timed on its own);
- ours: `personalise` for N readers, each with their own unsubscribe link and name;
- baseline: rendering the edition once per reader, N × the mean render time. Rendering it
  10,000 times would take minutes and show nothing the R renders do not: the cost per render
  is flat, so it is measured on R renders and scaled to N (the output says so).

The ratio is baseline / ours. The target is personalising at under 1% of re-rendering per
reader, a ratio above 100.

    .venv/bin/python bench/render.py [--quick]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import Result  # noqa: E402

from pipeline.config import Config, load_config  # noqa: E402
from pipeline.models import Credit, EditionPlan, Item, Kind, Meeting  # noqa: E402
from pipeline.render import Renderer, personalise  # noqa: E402

READERS = 10_000
RENDERS = 50
TARGET = 0.01
"""Personalising one reader should cost under 1% of rendering the edition again."""

CONFIG = """\
[newsletter]
title = "Ambassadørnytt"
sender = "Trondheimsregionen <nyhetsbrev@example.org>"
public_url = "https://nyhetsbrev.example.org"
intro = "Her er det siste fra Trondheimsregionens ambassadører: kronikker, blogginnlegg og møter."
logo = "https://www.trondheimsregionen.example/logo.png"
logo_alt = "Trondheimsregionen"
postal_address = "Erling Skakkes gate 14, 7012 Trondheim"
"""


def edition(now: datetime) -> EditionPlan:
    """40 long items (every third a chronicle), 5 meetings, 3 items over the cap."""
    kari = Credit("kari-nordmann", "Kari Nordmann", "Prorektor, NTNU")
    ola = Credit("ola-hansen", "Ola Hansen", "Ordfører i Melhus")
    title = ("Et langt innlegg om samferdsel, skog og næringsliv i regionen " * 4)[:200]
    excerpt = ("Kommunene i Trondheimsregionen samarbeider om areal, transport og næring. " * 5)[
        :300
    ]
    items = tuple(
        Item(
            id=n,
            key=f"https://www.avisa.example/debatt/{n}",
            link=f"https://www.avisa.example/debatt/2026/02/{n}/{'langt-innlegg-' * 6}{n}/",
            title=f"{n}: {title}",
            excerpt=excerpt,
            kind=Kind.CHRONICLE if n % 3 == 0 else Kind.BLOG,
            date=now - timedelta(hours=n),
            first_seen=now - timedelta(hours=n),
            credits=(kari, ola),
        )
        for n in range(1, 44)
    )
    meetings = tuple(
        Meeting(
            key=f"m{n}",
            title=f"Møte {n} i regionrådet",
            start=now + timedelta(days=n),
            end=now + timedelta(days=n, hours=3),
            location="Kulturhuset, Støren",
            url=f"https://www.trondheimsregionen.example/moter/{n}",
            description="Saker: samferdsel, næringsutvikling, areal og klima.",
            credits=(kari, ola),
        )
        for n in range(1, 6)
    )
    return EditionPlan(
        created=now,
        items=items[:40],
        overflow=items[40:],
        meetings=meetings,
        new_meetings=tuple(m.key for m in meetings),
    )


def config(folder: Path) -> Config:
    path = folder / "trnews.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return load_config(path)


def bench(readers: int, renders: int) -> Result:
    """Render once, personalise for `readers`; re-render cost measured on `renders` renders."""
    plan = edition(datetime.now(UTC).replace(microsecond=0))
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config(Path(tmp))
    start = time.perf_counter()
    content = Renderer(cfg).render(plan)  # the first: templates compiled, catalogue read
    first_s = time.perf_counter() - start
    renderer = Renderer(cfg)
    times = []
    for _ in range(renders):
        start = time.perf_counter()
        renderer.render(plan)
        times.append(time.perf_counter() - start)
    render_s = statistics.mean(times)

    base = f"{cfg.newsletter.public_url}/unsubscribe/"
    links = [f"{base}{i}.c2lnbmF0dXJlLW9mLXJlYWRlci1udW1iZXI{i:05d}" for i in range(readers)]
    names = [f"Leser nummer {i}" if i % 4 else "" for i in range(readers)]
    start = time.perf_counter()
    size = 0
    for link, name in zip(links, names, strict=True):
        size += len(personalise(content, unsubscribe_url=link, name=name).html)
    ours_s = time.perf_counter() - start
    if size <= readers * len(content.html) // 2:
        raise SystemExit("bench/render.py: personalise returned less than the edition")

    per_reader = ours_s / readers
    share = per_reader / render_s
    note = (
        f"one render {render_s * 1000:.1f} ms (median {statistics.median(times) * 1000:.1f}, "
        f"first {first_s * 1000:.0f} ms), HTML {len(content.html.encode()) // 1024} KB; "
        f"personalise {per_reader * 1e6:.1f} µs a reader = {share:.3%} of a render "
        f"(target < {TARGET:.0%}: {'met' if share < TARGET else 'MISSED'}); baseline = "
        f"{readers:,} × the mean of {renders} renders, not {readers:,} renders"
    )
    return Result(f"render 40 items, {readers:,} readers", ours_s, render_s * readers, note=note)


def run(quick: bool = False) -> list[Result]:
    """The render benchmark: quick is a smaller run for a first look."""
    logging.basicConfig(level=logging.ERROR)
    return [bench(2_000, 20)] if quick else [bench(READERS, RENDERS)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run")
    args = parser.parse_args()
    for r in run(args.quick):
        print(
            f"{r.name}: personalise {r.ours:.2f} s, re-render {r.baseline:.2f} s "
            f"(estimated), ×{r.ratio:.0f}\n  {r.note}"
        )


if __name__ == "__main__":
    main()
