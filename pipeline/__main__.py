"""`python -m pipeline` is the `trnews` command."""

from __future__ import annotations

from .cli import main

main()
