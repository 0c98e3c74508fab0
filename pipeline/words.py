"""Counts in English for the log and the command line: "1 item", "2 items", never "2 item(s)".

What an admin reads in the newsletter's language (alerts, `trnews status`) goes through the
gettext catalogues with ngettext instead (pipeline.templates.translations).
"""

from __future__ import annotations


def count(n: int, thing: str, things: str | None = None) -> str:
    """`n` and the noun in the number it takes: count(1, "feed") is "1 feed", count(2, "feed")
    "2 feeds"; give `things` when the plural is not the noun and an s."""
    return f"{n} {thing if n == 1 else things or thing + 's'}"
