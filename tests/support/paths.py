"""Where the tests find the checkout, their data files and the shared feed corpus."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
DATA = ROOT / "tests" / "data"
CORPUS = ROOT.parent / "shared" / "corpus"
