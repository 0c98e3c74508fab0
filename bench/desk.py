"""What the editorial desk costs the admin's commands: whole CLI processes, start-up included.

On one site (the tests' sample feeds, N active readers, the Maildir transport, two editors):

- **draft**: `trnews draft` (plan the edition, store the draft, render it, mail each editor)
  against `trnews preview` of the same edition in the same run (plan and render it, write two
  files): what the draft adds to what the admin already runs. Median of R runs each.
- **send from the desk**: `trnews send` of an approved draft (`[editorial] mode = "approve"`)
  against `trnews send` of the same edition with no desk (`mode = "auto"`), each on its own
  copy of the same database, N readers. Median of R runs each.

- **the desk page**: `GET /desk/{token}` (built for each request: never kept, `no-store`)
  against `GET /archive/1` (an edition the site keeps ready) on the same `trnews serve`, and
  an editor's `POST /desk/{token}` (leave an item out; answered 303) against the one-click
  unsubscribe `POST` (N readers, each once), 16 concurrent clients (bench/web.py's `hammer`).

The ratio is baseline / ours for times (1 means the desk costs nothing; 0.9 means it takes 10%
longer) and ours / baseline for rates (req/s).

    .venv/bin/python bench/desk.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from common import Result, maildir_site  # noqa: E402
from web import Load, free_port, hammer, server  # noqa: E402

EDITORIAL = '[editorial]\nmode = "{mode}"\neditors = ["red@example.org", "ed2@example.org"]\n'


def trnews(config: Path, *args: str) -> float:
    """Seconds one `trnews -c CONFIG ARGS` process takes, from Popen to its exit."""
    start = time.perf_counter()
    trnews_out(config, *args)
    return time.perf_counter() - start


def use_mode(config: Path, mode: str) -> None:
    """Set `[editorial] mode` in the site's config."""
    text = config.read_text(encoding="utf-8")
    config.write_text(re.sub(r'(?m)^mode = ".*"$', f'mode = "{mode}"', text), encoding="utf-8")


def run(quick: bool) -> list[Result]:
    readers = 200 if quick else 2_000
    repeat = 3 if quick else 7
    with tempfile.TemporaryDirectory(prefix="trnews-bench-desk-") as tmp:
        root = Path(tmp)
        config = maildir_site(root / "site", readers, EDITORIAL.format(mode="approve"))
        trnews(config, "collect")
        var = config.parent / "var"
        pristine = root / "pristine.db"
        trnews(config, "backup", str(pristine))  # with what the WAL holds

        previews, drafts = [], []
        for _ in range(repeat):
            previews.append(trnews(config, "preview", "--out", str(root / "preview")))
            drafts.append(trnews(config, "draft"))
        rows = [
            Result(
                "desk: trnews draft (2 editors)",
                statistics.median(drafts),
                statistics.median(previews),
                note=f"baseline: trnews preview of the same edition; median of {repeat}",
            )
        ]

        auto, desk = [], []
        for _ in range(repeat):
            for mode, times in (("auto", auto), ("approve", desk)):
                shutil.rmtree(var / "outbox", ignore_errors=True)
                for suffix in ("", "-wal", "-shm"):
                    (var / f"trnews.db{suffix}").unlink(missing_ok=True)
                shutil.copy(pristine, var / "trnews.db")
                use_mode(config, mode)
                if mode == "approve":
                    trnews(config, "draft")
                    trnews(config, "desk", "approve")
                times.append(trnews(config, "send"))
        rows.append(
            Result(
                f"desk: send of an approved draft, {readers:,} readers",
                statistics.median(desk),
                statistics.median(auto),
                note=f"baseline: the same send with mode auto; median of {repeat}",
            )
        )
    rows += desk_web(quick)
    for r in rows:
        print(f"{r.name}: ours {r.ours:.3f}, baseline {r.baseline:.3f} ({r.unit})")
    return rows


def desk_web(quick: bool) -> list[Result]:
    """The desk page and an editor's action against the archive and the one-click POST."""
    from pipeline.tokens import sign

    gets = 300 if quick else 2_000
    with tempfile.TemporaryDirectory(prefix="trnews-bench-desk-web-") as tmp:
        folder = Path(tmp)
        config = maildir_site(folder, gets, EDITORIAL.format(mode="auto"))
        text = config.read_text(encoding="utf-8")
        feeds = re.search(r"^feeds = \[(.*)\]$", text, re.M)
        assert feeds is not None
        first = feeds.group(1).partition("}, ")[0]
        # The archived edition from one feed; the draft from the others, collected after it.
        config.write_text(text.replace(feeds.group(1), first + "}"), encoding="utf-8")
        trnews(config, "collect")
        trnews(config, "send")
        config.write_text(text, encoding="utf-8")
        use_mode(config, "approve")
        trnews(config, "collect")
        out = trnews_out(config, "draft")
        token = re.findall(r"/desk/(\S+)", out)[0]
        item = re.findall(r'"id": (\d+)', trnews_out(config, "desk", "--json"))[0]
        secret = "bench-secret"
        tokens = [sign(secret, "unsubscribe", i) for i in range(1, gets + 1)]
        port = str(free_port())
        command = [sys.executable, "-m", "pipeline", "-c", str(config), "serve", "--port", port]
        with server(command, folder) as base:
            page = asyncio.run(hammer(base, [("GET", f"/desk/{token}")] * gets))
            archive = asyncio.run(hammer(base, [("GET", "/archive/1")] * gets))
            action = asyncio.run(
                hammer(
                    base,
                    [("POST", f"/desk/{token}")] * gets,
                    body=f"action=drop&item={item}".encode(),
                )
            )
            one_click = asyncio.run(hammer(base, [("POST", f"/unsubscribe/{t}") for t in tokens]))

    def latency(ours: Load, theirs: Load) -> str:
        return (
            f"p50/p99 ours {ours.p50:.1f}/{ours.p99:.1f} ms, "
            f"baseline {theirs.p50:.1f}/{theirs.p99:.1f} ms"
        )

    return [
        Result(
            "desk: GET /desk/{token}",
            page.rate,
            archive.rate,
            unit="req/s",
            note=f"baseline: GET /archive/1; {gets} requests; {latency(page, archive)}",
        ),
        Result(
            "desk: an editor's POST",
            action.rate,
            one_click.rate,
            unit="req/s",
            note=f"baseline: the one-click POST; {gets} requests; {latency(action, one_click)}",
        ),
    ]


def trnews_out(config: Path, *args: str) -> str:
    """What one `trnews -c CONFIG ARGS` process prints; its error output if it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "-c", str(config), *args],
        capture_output=True,
        text=True,
        env={"TRNEWS_SECRET": "bench-secret", "PATH": "/usr/bin:/bin"},
    )
    if proc.returncode:
        raise SystemExit(f"trnews {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)


if __name__ == "__main__":
    main()
