"""Text from outside made safe once, where it enters: feeds, calendars, forms, CSV files, config.

What goes, wherever the text came from:
- C0 and C1 control characters other than tab and newline (ESC, BEL, NUL, …): a terminal
  runs them, and mjml-python refuses a whole document that holds one;
- Unicode noncharacters (U+FDD0–U+FDEF, and U+xFFFE, U+xFFFF of every plane), which
  mjml-python refuses too, and lone surrogates, which no encoder can write;
- bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069) and the
  directional marks (U+200E, U+200F, U+061C): they make text read in another order than it is
  written ("Trojan Source"), so a name or a title could show words that are not there.

Every line break becomes a newline: CRLF and a lone CR, and the vertical tab, form feed, NEL,
LINE SEPARATOR and PARAGRAPH SEPARATOR (a vertical tab is how Word writes a manual line break,
so text pasted from it keeps its lines). Everything else is kept, in NFC.

`one_line` also folds every run of white space, newlines included, to one space: for names,
titles and whatever else is shown on one line. A value that reaches a mail header
is refused rather than repaired when it holds a line break or a control character (`CONTROL`):
that is how headers are smuggled in, and the one who wrote it should hear so.
"""

from __future__ import annotations

import re
import unicodedata

_BMP_UNSAFE = (
    "\x00-\x08\x0b-\x1f\x7f-\x9f"  # C0 but tab and newline (CR is handled before), DEL, C1
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidi marks, embeddings, overrides, isolates
    "\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff"  # lone surrogates, noncharacters
)
_ASTRAL_NONCHARACTERS = "".join(
    f"{chr(plane * 0x10000 + 0xFFFE)}{chr(plane * 0x10000 + 0xFFFF)}" for plane in range(1, 17)
)
UNSAFE = re.compile(f"[{_BMP_UNSAFE}{_ASTRAL_NONCHARACTERS}]")
"""Every character `clean` removes."""
# UNSAFE is slow to search: the regex engine compares each character with its 32 characters
# beyond U+FFFF one by one (2 ms for 8 KB of text). _SUSPECT finds every character of UNSAFE
# and every other one from U+1FFFE on (rare: CJK extensions, private use), which `_unsafe`
# then tells apart, in a tenth of the time.
_SUSPECT = re.compile(f"[{_BMP_UNSAFE}\U0001fffe-\U0010ffff]")
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
"""Control characters (tab and newline too) and line breaks: what a header value must not hold."""
LINE_BREAK = re.compile("[\n\r\x0b\x0c\x85\u2028\u2029]")
"""Every character that breaks a line."""
_BREAK = re.compile("\r\n?|[\x0b\x0c\x85\u2028\u2029]")
"""The line breaks `clean` turns into newlines."""
_SPACE = re.compile(r"\s+")


def _unsafe(ch: str) -> bool:
    """Whether a character `_SUSPECT` found is one of UNSAFE."""
    return ch <= "\uffff" or ord(ch) & 0xFFFE == 0xFFFE


def _kept(m: re.Match[str]) -> str:
    return "" if _unsafe(m[0]) else m[0]


def clean(text: str) -> str:
    """`text` without the characters of UNSAFE, its line breaks newlines, in NFC."""
    if text.isascii() and text.isprintable():  # most values: nothing to do
        return text
    if _SUSPECT.search(text) or "\u2028" in text or "\u2029" in text:
        text = _SUSPECT.sub(_kept, _BREAK.sub("\n", text))
    return unicodedata.normalize("NFC", text)


def one_line(text: str) -> str:
    """`clean(text)` on one line: every run of white space (newlines too) one space, trimmed."""
    return _SPACE.sub(" ", clean(text)).strip()


def is_clean(text: str) -> bool:
    """True when `clean` would leave `text` as it is (but for its line ends and NFC)."""
    return not any(_unsafe(m[0]) for m in _SUSPECT.finditer(text))
