"""Set up the offline demo: the example config, feeds and indicators, with the feeds' dates moved
up to today.

The bundled feeds and meetings are dated around 26 November 2026. So that `make demo` shows a
full edition on any later day, this writes a copy of them to `var/demo/` with every date moved
by the same number of whole days, so that 26 November 2026 becomes yesterday.

    python -m pipeline.demo [REPO]   # writes REPO/var/demo/trnews.toml and prints its path
"""

from __future__ import annotations

import re
import shutil
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ANCHOR = date(2026, 11, 27)
"""The day the bundled data treats as today: its newest item is from the day before."""

_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
_RFC822 = re.compile(
    rb"\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{1,2}) ("
    + "|".join(_MONTHS).encode()
    + rb") (\d{4})\b"
)
_ISO = re.compile(rb"\b(\d{4})-(\d{2})-(\d{2})(?=[T ]\d{2}:\d{2}|\b)")


def days_since_anchor(today: date | None = None) -> int:
    return ((today or datetime.now(UTC).date()) - ANCHOR).days


def shift_dates(data: bytes, days: int) -> bytes:
    """Move every RFC 822 (`Thu, 26 Nov 2026`) and ISO 8601 (`2026-11-26`) date in `data` by
    `days` whole days, keeping times and offsets, and fixing weekdays."""
    if days == 0:
        return data

    def rfc822(m: re.Match[bytes]) -> bytes:
        d = date(int(m[3]), _MONTHS.index(m[2].decode()) + 1, int(m[1])) + timedelta(days=days)
        return f"{_DAYS[d.weekday()]}, {d.day:02d} {_MONTHS[d.month - 1]} {d.year}".encode()

    def iso(m: re.Match[bytes]) -> bytes:
        d = date(int(m[1]), int(m[2]), int(m[3])) + timedelta(days=days)
        return d.isoformat().encode()

    return _ISO.sub(iso, _RFC822.sub(rfc822, data))


def prepare(repo: Path, today: date | None = None) -> Path:
    """Write `var/demo/` (config, feeds, indicators) from `config/trnews.toml` and `examples/`."""
    days = days_since_anchor(today)
    out = repo / "var" / "demo"
    if out.exists():
        shutil.rmtree(out)
    (out / "feeds").mkdir(parents=True)
    for feed in sorted((repo / "examples" / "feeds").iterdir()):
        (out / "feeds" / feed.name).write_bytes(shift_dates(feed.read_bytes(), days))
    # The indicators are statistics of past years and quarters: copied as they are.
    shutil.copytree(repo / "examples" / "indicators", out / "indicators")
    text = (repo / "config" / "trnews.toml").read_text(encoding="utf-8")
    replacements = {
        '"../examples/feeds/': '"feeds/',
        '"../examples/indicators/': '"indicators/',
        'database = "../var/trnews.db"': 'database = "trnews.db"',
        'maildir = "../var/outbox"': 'maildir = "../outbox"',
    }
    for old, new in replacements.items():
        if old not in text:
            raise SystemExit(
                f"config/trnews.toml no longer contains {old!r}; update pipeline/demo.py"
            )
        text = text.replace(old, new)
    header = (
        "# Written by `make demo` from config/trnews.toml, with every date moved by "
        f"{days} days so the bundled example is fresh. Edit config/trnews.toml, not this.\n"
    )
    config = out / "trnews.toml"
    config.write_bytes(header.encode() + shift_dates(text.encode(), days))
    return config


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()
    print(prepare(root))
