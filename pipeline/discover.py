"""`trnews check --discover`: find better URLs for the configured feeds, and put them in.

Two things an admin cannot see from the config: a URL that gives a web page where a feed
should be (the page usually names its feed in `<link rel="alternate">`), and a feed that has
moved for good (an unbroken run of 301/308 redirects). Each web feed is fetched once, as
`collect` would fetch it but without validators and without storing anything, and each such
finding becomes a `Suggestion`. With `--fix` the new URLs replace the old ones in the config
file's own text, so its comments and layout stay as the admin wrote them.

A URL put in the config is fetched wherever it points, so neither a page nor a redirect may put
one there that reaches what only this machine or its network can. The fetch sees to it: a
redirect to a non-public address on another host:port is not followed (pipeline.egress), so
the feed fails and names where it pointed; a page naming such a feed fails with the reason
and names no `advertised` feed (pipeline.collect). Neither becomes a suggestion.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .collect import fetch_all
from .config import Config, load_config
from .errors import ConfigError, Problem
from .fetch import Source, user_agent
from .models import FeedResult


@dataclass(frozen=True)
class Suggestion:
    """A better URL for one configured feed URL, and why."""

    old: str
    new: str
    why: str
    keys: tuple[str, ...]
    """The config keys that name the old URL (`ambassador[0].feeds[1].url`)."""


def feed_keys(config: Config) -> dict[str, list[str]]:
    """Every web feed URL of the config, with the keys that name it, in config order."""
    keys: dict[str, list[str]] = {}
    for i, amb in enumerate(config.ambassador):
        for j, feed in enumerate(amb.feeds):
            if not feed.is_local:
                keys.setdefault(feed.url, []).append(f"ambassador[{i}].feeds[{j}].url")
    return keys


def suggestion_for(result: FeedResult, keys: list[str]) -> Suggestion | None:
    """What one fetch says about its URL: a page that names its feed, or a permanent move."""
    if result.advertised and result.advertised != result.url:
        why = "is a web page, not a feed; the page names its feed"
        return Suggestion(result.url, result.advertised, why, tuple(keys))
    if result.final_url and result.final_url != result.url:
        why = "has moved permanently (HTTP 301/308)"
        return Suggestion(result.url, result.final_url, why, tuple(keys))
    return None


def discover(
    config: Config, *, on_result: Callable[[FeedResult], None] | None = None
) -> list[Suggestion]:
    """Fetch every web feed of the config once (storing nothing); a suggestion per URL that
    names a page or has moved, in config order."""
    keys = feed_keys(config)
    found: dict[str, Suggestion] = {}

    def seen(result: FeedResult) -> None:
        suggestion = suggestion_for(result, keys[result.url])
        if suggestion:
            found[result.url] = suggestion
        if on_result:
            on_result(result)

    asyncio.run(
        fetch_all(
            [Source(url) for url in keys],
            config.collect,
            user_agent=user_agent(config),
            now=datetime.now(UTC),
            on_result=seen,
        )
    )
    return [found[url] for url in keys if url in found]


_UNSAFE = re.compile(r"[\"'\\\x00-\x20\x7f]")
"""What a URL written into a TOML string must not hold (quotes, escapes, space, controls)."""


def apply(path: Path, suggestions: list[Suggestion]) -> tuple[int, Path]:
    """Replace each old URL with its new one wherever the config file writes it as a TOML
    string; returns how many were replaced and where the file as it was is kept (`.bak`).

    The new file is checked (loaded as a config) before it replaces the old one, and replaced
    in one rename: a failure leaves the config as it was. ConfigError if the result does not
    load, or a new URL cannot be written as a plain TOML string.
    """
    text = path.read_text(encoding="utf-8")
    replaced = 0
    for s in suggestions:
        if _UNSAFE.search(s.new):
            why = f"cannot write {s.new!r} as a plain TOML string: change it by hand"
            raise ConfigError(path, [Problem(s.keys[0], why)])
        for quote in ('"', "'"):
            old = f"{quote}{s.old}{quote}"
            replaced += text.count(old)
            text = text.replace(old, f'"{s.new}"')
    backup = path.with_name(path.name + ".bak")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        try:
            load_config(Path(tmp))  # the new text must load before it replaces anything
        except ConfigError as e:
            raise ConfigError(path, [Problem("", "with the new URLs:"), *e.problems]) from None
        backup.write_bytes(path.read_bytes())
        Path(tmp).replace(path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return replaced, backup
