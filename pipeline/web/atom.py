"""What every Atom 1.0 feed of the web side writes the same way: its media type, its dates and
text XML can hold (the archive's feed and the library's)."""

from __future__ import annotations

from datetime import UTC, datetime

ATOM_TYPE = "application/atom+xml; charset=utf-8"


def rfc3339(value: datetime) -> str:
    """An Atom date: UTC, to the second, with a Z."""
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def xml_text(text: str) -> str:
    """`text` without the characters XML 1.0 cannot hold (collect cleans feed text already;
    this keeps one stray character from breaking the whole feed)."""
    return "".join(
        c
        for c in text
        if c in "\t\n\r" or ("\x20" <= c <= "\ud7ff") or ("\ue000" <= c <= "\ufffd") or c > "\uffff"
    )
