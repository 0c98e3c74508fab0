"""The test calendars of icalendar and recurring-ical-events, for tests/test_calendar_corpus.py.

Both projects ship their test suites' calendars in their source distributions on PyPI: about
260 files, real exports (Google, Outlook and Exchange, Apple, Nextcloud, Confluence,
Thunderbird, Lotus Notes, Plone, tzurl.org) and the broken ones their users reported. They are
fetched, not copied into this repository:

- recurring-ical-events is LGPL-3.0-or-later (icalendar BSD-2-Clause): its calendars would
  bring that licence, and the GPL's text it builds on, into an MIT repository's tests;
- the sdists fetched are those of the versions installed, so the test reads the calendars the
  libraries in use are tested with, and moves with them;
- PyPI is already where `make install` comes from, so CI needs nothing new (two sdists, about
  1 MB, fetched once into var/corpus/, where `make clean` removes them).

`python tests/calendar_corpus.py` fetches what is missing (`make test` runs it first and fails
when it cannot); without the files, tests/test_calendar_corpus.py skips and says how to get them.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "var" / "corpus"
PACKAGES = ("icalendar", "recurring-ical-events")


@dataclass(frozen=True)
class CorpusCalendar:
    """One calendar file of the corpus."""

    path: str
    """Its path in the sdist, e.g. `icalendar-7.3.2/src/icalendar/tests/calendars/x.ics`."""
    data: bytes

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def wanted() -> list[str]:
    """The sdists to read, as `name==version` of the versions installed."""
    return [f"{name}=={version(name)}" for name in PACKAGES]


def sdist(requirement: str) -> Path | None:
    """The sdist of `name==version` in the cache, or None."""
    name, _, ver = requirement.partition("==")
    for spelled in (name, name.replace("-", "_")):  # PEP 625 names sdists with underscores
        path = CACHE / f"{spelled}-{ver}.tar.gz"
        if path.is_file():
            return path
    return None


def missing() -> list[str]:
    return [r for r in wanted() if sdist(r) is None]


def fetch() -> None:
    """Download the sdists that are not in the cache yet, with pip, from the package index."""
    needed = missing()
    if not needed:
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    command += ["--no-binary", ":all:", "--dest", str(CACHE), *needed]
    print(f"Fetching the calendar corpus ({', '.join(needed)}) into {CACHE}", flush=True)
    if subprocess.run(command, check=False).returncode != 0:
        raise SystemExit(
            f"could not fetch {', '.join(needed)} from the package index: the calendar corpus "
            "test needs them (run this again with network access to PyPI)"
        )


def calendars() -> list[CorpusCalendar]:
    """Every .ics file in the sdists, ordered by path; [] when an sdist is missing."""
    out = []
    for requirement in wanted():
        path = sdist(requirement)
        if path is None:
            return []
        with tarfile.open(path) as tar:
            for member in tar:
                if member.isfile() and member.name.lower().endswith(".ics"):
                    data = tar.extractfile(member)
                    assert data is not None
                    out.append(CorpusCalendar(member.name, data.read()))
    return sorted(out, key=lambda c: c.path)


if __name__ == "__main__":
    fetch()
