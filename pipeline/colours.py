"""Colour maths for the accent colour: WCAG 2 contrast, and a shade that has enough of it."""

from __future__ import annotations

DEFAULT_ACCENT = "#003a70"
"""Trondheimsregionen's dark blue."""
MIN_CONTRAST = 4.5
"""WCAG 2 AA for normal text: what links and the header's white text need against white."""


def _channel(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _rgb(colour: str) -> tuple[int, int, int]:
    h = colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def contrast_ratio(a: str, b: str) -> float:
    """The WCAG 2 contrast ratio of two `#rrggbb` colours, from 1 (none) to 21 (black/white)."""
    la, lb = (
        0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(bl)
        for r, g, bl in (_rgb(a), _rgb(b))
    )
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


def mix_until_contrast(colour: str, towards: str, against: str, ratio: float) -> str:
    """`colour` mixed with `towards` in steps of 5% until it has `ratio` against `against`."""
    start, end = _rgb(colour), _rgb(towards)
    for step in range(21):
        f = step / 20
        mixed = "#" + "".join(
            f"{round(s + (e - s) * f):02x}" for s, e in zip(start, end, strict=True)
        )
        if contrast_ratio(mixed, against) >= ratio:
            return mixed
    return towards
