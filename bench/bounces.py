"""How fast `trnews bounces` reads a Maildir of bounces, against a bare parsing loop.

- **ours**: `trnews bounces` as a process over N bounce messages (the real-world shapes of
  tests/data/bounces/, each about its own reader of N), recognising, matching, recording each
  and moving it to cur/.
- **baseline**: a bare loop of `email.message_from_bytes` over the same files, in this process:
  the floor under any reader of these messages.

With `--corpus DIR` (a folder of bounce messages, such as the 117 in flufl.bounce's sdist:
`pip download flufl.bounce --no-binary :all:`), it prints instead how often what trnews
finds permanent agrees with what Mailman's detector (`flufl.bounce.scan_message`) finds.

    .venv/bin/python bench/bounces.py [--quick] [--corpus DIR]
"""

from __future__ import annotations

import argparse
import email
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from common import Result  # noqa: E402
from support.mail import add_readers  # noqa: E402
from support.site import Site  # noqa: E402

from pipeline.bounces import Kind, recognise  # noqa: E402

SHAPES = ["postfix.eml", "exim.eml", "qmail.eml", "exchange.eml", "yahoo.eml", "gmail-dsn.eml"]


def bounces(n: int) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        site = Site(root=Path(tmp), extra_toml='\n[bounces]\nmaildir = "var/bounces"\n')
        site.write()
        readers = [(f"reader{i}@example.com", "") for i in range(n)]
        add_readers(site, readers)
        box = site.root / "var" / "bounces"
        for sub in ("new", "cur", "tmp"):
            (box / sub).mkdir(parents=True, exist_ok=True)
        data = ROOT / "tests" / "data" / "bounces"
        files = []
        for i, (address, _) in enumerate(readers):
            raw = (data / SHAPES[i % len(SHAPES)]).read_bytes()
            raw = raw.replace(b"@@ADDRESS@@", address.encode())
            raw = raw.replace(b"@@TO@@", b"bounces@nyhetsbrev.example.org")
            raw = raw.replace(b"@@MID@@", f"r{i}@mx.example.net".encode())
            path = box / "new" / f"{i}.M{i}P1.mx"
            path.write_bytes(raw)
            files.append(raw)
        started = time.perf_counter()
        for raw in files:
            email.message_from_bytes(raw)
        baseline = time.perf_counter() - started
        started = time.perf_counter()
        out = site.run("bounces").stdout
        ours = time.perf_counter() - started
        print(out.splitlines()[-1])
    return Result(f"bounces: {n} messages read (process)", ours, baseline)


def corpus(folder: Path) -> None:
    """How often trnews's permanent failures agree with Mailman's detector, message by message."""
    from flufl.bounce import scan_message

    same = differ = 0
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix not in (".txt", ".eml", ""):
            continue
        raw = path.read_bytes()
        theirs = {
            a.decode("utf-8", "replace").lower()
            for a in scan_message(email.message_from_bytes(raw))
        }
        report = recognise(raw)
        ours = {f.address.lower() for f in report.failures if f.kind is Kind.PERMANENT}
        if ours == theirs:
            same += 1
        else:
            differ += 1
            print(f"  {path.name}: trnews {sorted(ours)} ({report.kind}), Mailman {sorted(theirs)}")
    print(f"{same} of {same + differ} messages agree with Mailman's detector; {differ} differ")


def run(quick: bool) -> list[Result]:
    row = bounces(200 if quick else 1000)
    print(f"{row.name}: ours {row.ours:.3f}, baseline {row.baseline:.3f} ({row.unit})")
    return [row]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--corpus", type=Path, help="compare with Mailman's detector instead")
    args = parser.parse_args()
    if args.corpus:
        corpus(args.corpus)
        return
    run(args.quick)


if __name__ == "__main__":
    main()
