"""pipeline.sanitize: what text from outside loses, and what it keeps."""

from __future__ import annotations

import unicodedata

import pytest

from pipeline.sanitize import CONTROL, LINE_BREAK, UNSAFE, clean, is_clean, one_line

NONCHARACTERS = [chr(c) for c in range(0xFDD0, 0xFDF0)] + [
    chr(plane * 0x10000 + low) for plane in range(17) for low in (0xFFFE, 0xFFFF)
]
BIDI = [
    "\u061c",
    "\u200e",
    "\u200f",
    *map(chr, range(0x202A, 0x202F)),
    *map(chr, range(0x2066, 0x206A)),
]
CONTROLS = [chr(c) for c in (*range(0x00, 0x09), 0x0E, 0x1B, 0x1F, 0x7F, *range(0x80, 0x85), 0x9F)]


def test_every_noncharacter_control_and_bidi_character_is_taken_out() -> None:
    for ch in NONCHARACTERS + BIDI + CONTROLS + ["\ud800", "\udfff"]:
        assert clean(f"a{ch}b") == "ab", f"U+{ord(ch):04X}"
        assert one_line(f"a {ch}b") == "a b", f"U+{ord(ch):04X}"
        assert not is_clean(f"a{ch}b"), f"U+{ord(ch):04X}"


def test_nothing_else_is_taken_out() -> None:
    """Every assigned character outside the three groups is kept: letters of every script,
    emoji with their joiners, combining marks, the soft hyphen, the private use area."""
    taken = {ord(ch) for ch in NONCHARACTERS + BIDI + CONTROLS}
    taken |= {*range(0x00, 0x20), *range(0x7F, 0xA0), *range(0xD800, 0xE000)}
    kept = [
        chr(c)
        for c in range(0x110000)
        if c not in taken and unicodedata.category(chr(c)) != "Cn" and not chr(c).isspace()
    ]
    text = "".join(kept)
    assert UNSAFE.search(text) is None
    assert is_clean(text)
    assert clean(text) == unicodedata.normalize("NFC", text)


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("Linje en\r\nlinje to\rlinje tre", "Linje en\nlinje to\nlinje tre"),
        ("Fra Word\x0bneste linje\x0cny side", "Fra Word\nneste linje\nny side"),
        ("NEL\x85LS\u2028PS\u2029slutt", "NEL\nLS\nPS\nslutt"),
        ("\ttab og\nlinjeskift blir", "\ttab og\nlinjeskift blir"),
        ("A\u030ase", "Åse"),  # NFC
        ("👩\u200d💻 Kåre", "👩\u200d💻 Kåre"),  # a zero-width joiner in an emoji is kept
        ("Trondheim", "Trondheim"),
    ],
)
def test_line_breaks_become_newlines_and_the_rest_is_kept_in_nfc(text: str, cleaned: str) -> None:
    assert clean(text) == cleaned


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("  Kari \r\n Nordmann\t ", "Kari Nordmann"),
        ("Kari\u202e Nordmann\u2066", "Kari Nordmann"),
        ("Styret \ufffemøtes\uffff i \x1bMalvik\x07", "Styret møtes i Malvik"),
        ("Ord\x0bfra Word", "Ord fra Word"),
        ("", ""),
    ],
)
def test_one_line_folds_white_space_and_takes_out_the_same(text: str, line: str) -> None:
    assert one_line(text) == line


def test_control_finds_what_a_header_value_must_not_hold() -> None:
    for bad in ("a\nb", "a\rb", "a\tb", "a\x00b", "a\x1bb", "a\x85b", "a\u2028b", "a\u2029b"):
        assert CONTROL.search(bad), repr(bad)
    assert CONTROL.search("Ambassadørnytt – «Trøndelag» 2026") is None


def test_line_break_finds_every_line_break_and_nothing_else() -> None:
    for bad in ("\n", "\r", "\x0b", "\x0c", "\x85", "\u2028", "\u2029"):
        assert LINE_BREAK.search(f"a{bad}b"), repr(bad)
    assert LINE_BREAK.search("Kari\t\x1b\u202eNordmann") is None
