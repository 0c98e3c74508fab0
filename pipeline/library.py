"""The library and the message bank (SPEC.md "The library and the message bank"; HP 7.3, 8.3).

- **Which items carry a message** (`carries`): one of its keywords is in the item's title or
  excerpt as a whole word, in any case; a keyword ending in `*` also matches the longer words
  it begins ("næringsliv*" matches "næringslivet"). The report's counts and the library's tags
  use this one definition. The items that carry a message are its examples.
- **Tags** (`tag`): the messages of each item are kept in the database, so that the library
  can filter 20,000 items by message in one query. Every item collected is tagged once; when
  the message bank's keywords change, every item is tagged again, so an edited keyword list
  applies to past items too. Collect tags after storing; the CLI and the web side tag before
  they read (nothing to do, two small queries, when nothing changed).
- **Search** (`match`): each word of the query must begin a word of the title or excerpt, in
  any order, case ignored; æ, ø and å are letters of their own ("far" never finds "får"). Only
  the words of the query are used, each quoted, so nothing a reader types is FTS5 syntax: a
  stray quote, `AND`, `NEAR(` or `*` alone is searched as plain words, never an error.
- **Filters** (`Filters.parse`): `message`, `ambassador` and `kind` must name what the config
  knows, `year` and `page` must be numbers; anything else is `UnknownFilter` (exit 2 on the
  CLI, 404 on the web side). The year is the calendar year in `newsletter.timezone`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from .config import Config, MessageConfig
from .errors import UnknownFilter
from .models import Kind, LibraryItem
from .store import Query

if TYPE_CHECKING:
    from .store import Store

PAGE_SIZE = 50
"""Items on one page of the library."""
MAX_QUERY = 200
"""Characters of a search read; the rest is ignored."""
MAX_WORDS = 10
"""Words of a search used; the rest are ignored."""

_WORD = re.compile(r"[^\W_]+")
"""A word as the full-text index splits them (unicode61): letters and digits."""


# -- which items carry a message ---------------------------------------------------------------


def keyword_pattern(keywords: Iterable[str]) -> re.Pattern[str]:
    """One pattern matching any of the keywords as a whole word (or phrase), in any case; a
    keyword ending in `*` matches the words it begins too."""
    parts = []
    for keyword in keywords:
        prefix = keyword.endswith("*")
        words = keyword.rstrip("*").split()
        body = r"\s+".join(re.escape(w) for w in words)
        parts.append(rf"(?<!\w){body}" + (r"\w*" if prefix else r"(?!\w)"))
    return re.compile("|".join(parts), re.IGNORECASE)


def carries(message: MessageConfig, title: str, excerpt: str) -> bool:
    """True when an item with this title and excerpt carries the message."""
    pattern = keyword_pattern(message.keywords)
    return bool(pattern.search(title) or pattern.search(excerpt))


def bank_mark(messages: Iterable[MessageConfig]) -> str:
    """What the tags depend on: each message's id and keywords (not its title or words)."""
    bank = [[m.id, m.keywords] for m in messages]
    return hashlib.sha256(json.dumps(bank, ensure_ascii=False).encode()).hexdigest()[:16]


def tag(store: Store, config: Config) -> int:
    """Record the messages of every item not yet tagged, and of every item when the message
    bank's keywords changed since the last time; returns how many items were tagged."""
    mark = bank_mark(config.message)
    if store.get_meta("message_bank") == mark and not store.has_untagged():
        return 0  # the common case, read without taking the write lock
    patterns = [(m.id, keyword_pattern(m.keywords)) for m in config.message]
    with store.transaction():
        if store.get_meta("message_bank") != mark:
            store.untag_all()
            store.set_meta("message_bank", mark)
        items = store.untagged_items()
        if items:
            store.save_tags(
                (item_id for item_id, _, _ in items),
                (
                    (message_id, item_id)
                    for item_id, title, excerpt in items
                    for message_id, pattern in patterns
                    if pattern.search(title) or pattern.search(excerpt)
                ),
            )
    return len(items)


# -- search and filters ------------------------------------------------------------------------


def words(text: str) -> list[str]:
    """The words of a search, as the full-text index reads them: composed, lower-case."""
    text = unicodedata.normalize("NFC", text[:MAX_QUERY]).casefold()
    return _WORD.findall(text)[:MAX_WORDS]


def match(text: str) -> str:
    """The FTS5 query for a reader's search: every word, quoted, as the start of a word.
    Empty when the search has no words (then it filters nothing)."""
    return " ".join(f'"{w}"*' for w in words(text))


@dataclass(frozen=True)
class Filters:
    """What a reader asked of the library: each part optional, all of them must hold."""

    q: str = ""
    message: str | None = None
    ambassador: str | None = None
    kind: Kind | None = None
    year: int | None = None

    @classmethod
    def parse(cls, config: Config, params: Mapping[str, str]) -> Filters:
        """The filters of a query string or the CLI's options, checked against the config;
        an empty value is no filter. Unknown parameters are ignored (the web's `page`)."""

        def value(name: str) -> str | None:
            raw = (params.get(name) or "").strip()
            return raw or None

        message, ambassador = value("message"), value("ambassador")
        if message is not None and message not in {m.id for m in config.message}:
            unknown = UnknownFilter(f"no message {message!r} in the message bank")
            ids = ", ".join(m.id for m in config.message)
            unknown.hint = (
                f"the message bank's ids: {ids}" if ids else "the config has no [[message]]"
            )
            raise unknown
        if ambassador is not None and ambassador not in config.ambassador_by_id():
            unknown = UnknownFilter(f"no ambassador {ambassador!r} in the config")
            unknown.hint = "the ambassadors' ids: " + ", ".join(a.id for a in config.ambassador)
            raise unknown
        kind = value("kind")
        if kind is not None and kind not in {k.value for k in Kind}:
            choices = ", ".join(k.value for k in Kind)
            raise UnknownFilter(f"no kind {kind!r}: use one of {choices}")
        year = value("year")
        if year is not None and not (
            year.isascii() and year.isdigit() and len(year) == 4 and 1900 <= int(year) <= 2200
        ):
            raise UnknownFilter(f"{year!r} is not a year like 2026")
        return cls(
            q=(params.get("q") or "").strip()[:MAX_QUERY],
            message=message,
            ambassador=ambassador,
            kind=Kind(kind) if kind else None,
            year=int(year) if year else None,
        )

    def query(self, config: Config) -> Query:
        start = until = None
        if self.year is not None:
            tz = config.newsletter.tz
            start = datetime(self.year, 1, 1, tzinfo=tz)
            until = datetime(self.year + 1, 1, 1, tzinfo=tz)
        return Query(
            match=match(self.q),
            message=self.message,
            ambassador=self.ambassador,
            kind=self.kind,
            start=start,
            until=until,
        )

    def params(self) -> dict[str, str]:
        """The filters as query-string parameters (for links to other pages and the feed)."""
        out = {
            "q": self.q,
            "message": self.message or "",
            "ambassador": self.ambassador or "",
            "kind": self.kind.value if self.kind else "",
            "year": str(self.year) if self.year else "",
        }
        return {k: v for k, v in out.items() if v}


def page_number(raw: str | None) -> int:
    """`?page=N` as a number from 1; absent is 1. Anything else is UnknownFilter."""
    if raw is None or raw == "":
        return 1
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6 or int(raw) < 1:
        raise UnknownFilter(f"{raw!r} is not a page number")
    return int(raw)


@dataclass(frozen=True)
class Found:
    """One page of the library."""

    items: tuple[LibraryItem, ...]
    total: int
    """Items found in all, on every page."""
    page: int
    pages: int
    """Pages in all (1 when nothing is found)."""


def find(
    store: Store, config: Config, filters: Filters, *, page: int = 1, size: int = PAGE_SIZE
) -> Found:
    """Page `page` of the items `filters` find, newest first. A page past the last is
    UnknownFilter, except the first (an empty library has one empty page)."""
    items, total = store.library_items(filters.query(config), limit=size, offset=(page - 1) * size)
    pages = max(1, math.ceil(total / size))
    if page > pages:
        raise UnknownFilter(f"page {page} is past the last page, {pages}")
    return Found(tuple(items), total, page, pages)
