"""Read a JSON Feed (https://jsonfeed.org, versions 1.0 and 1.1) into the entry dicts that
`parse._entry` turns into `models.Entry`, so its items get the very rules RSS and Atom items
get: the same text cleaning, links, dates and keys.

How each item is read:
- link: `url`, else `external_url` (a link post), resolved against the feed's own URL;
- title: plain text, as the spec says (read as an RSS title is);
- excerpt: the first of `summary`, `content_text` and `content_html` that is not blank, each
  read as HTML, as an RSS description is: the spec calls the first two plain text, but Hugo
  templates put `.Summary` (HTML) in them and micro.blog writes HTML into `content_text`;
- date: `date_published`, else `date_modified` (RFC 3339, read by feedparser's date parser);
- authors: 1.1's `authors`, else 1.0's `author`, else the feed's own (1.1 `authors` or 1.0
  `author`) when the item names nobody;
- id: a string, or a number (1.1 asks readers to take a number as its string).

A value of the wrong type (a number for a title, an object for a URL) counts as missing, and an
item that is not an object, or holds none of the fields above, is passed over: one odd item or
field never sinks the feed. A
document that is not JSON, or JSON that is not a JSON Feed, is a FetchError that says which.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin

import feedparser.datetimes

from . import words
from .errors import FetchError

logger = logging.getLogger(__name__)

VERSIONS = ("https://jsonfeed.org/version/", "http://jsonfeed.org/version/")
"""How a JSON Feed's `version` starts (1.0 and 1.1 write https; a few early feeds wrote http)."""
_JSON_TYPES = frozenset({"application/json", "application/feed+json", "text/json"})
_LONGEST_INT = 100
"""Digits an integer may have before it is read as a float: Python refuses to read one of
over 4,300 digits, and no field trnews reads is such a number."""


def _media_type(content_type: str | None) -> str:
    return (content_type or "").partition(";")[0].strip().lower()


def _first_character(body: bytes) -> str:
    """The first character of the document that is not white space (a byte order mark
    skipped), in whichever encoding JSON allows."""
    head = body[:64]
    text = head.decode(json.detect_encoding(head), "ignore")
    return text.lstrip("\ufeff \t\r\n")[:1]


def is_json(body: bytes, content_type: str | None) -> bool:
    """True when the answer is JSON: it starts with `{`, or its content type is JSON and it
    does not start with `<` (a server that labels its XML feed or an HTML page as JSON)."""
    first = _first_character(body)
    if first == "{":
        return True
    media = _media_type(content_type)
    return (media in _JSON_TYPES or media.endswith("+json")) and first != "<"


def _int(digits: str) -> int | float:
    return int(digits) if len(digits) <= _LONGEST_INT else float(digits)


def _load(body: bytes, url: str) -> Any:
    """The JSON document; FetchError if it cannot be read. Bytes that are not valid in the
    document's encoding become U+FFFD rather than failing the feed."""
    text = body.decode(json.detect_encoding(body), "replace")
    try:
        return json.loads(text, parse_int=_int)
    except RecursionError:
        # json's parser recurses per level and stops at the interpreter's recursion limit
        raise FetchError(url, "not a feed: the JSON is nested too deeply") from None
    except json.JSONDecodeError as e:
        where = f"line {e.lineno}, column {e.colno}"
        raise FetchError(url, f"not a feed: JSON error: {e.msg} ({where})") from e


def _str(value: Any) -> str:
    """A string field, or "" when it is missing or of another type."""
    return value if isinstance(value, str) else ""


def _names(value: Any) -> list[str]:
    """The names an `authors` list (1.1) or an `author` object (1.0) gives. A lone object
    where a list belongs, or a bare name, is read too."""
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return []
    names = []
    for author in value:
        name = author.get("name") if isinstance(author, dict) else author
        if isinstance(name, str) and name.strip():
            names.append(name)
    return names


def _authors(holder: dict[str, Any]) -> list[str]:
    """The names an item or a feed gives: 1.1's `authors` when it names anyone, else 1.0's
    `author` (the spec: readers prefer `authors`)."""
    return _names(holder.get("authors")) or _names(holder.get("author"))


def _id(value: Any) -> str:
    if isinstance(value, bool):  # a bool is an int to Python, and no id
        return ""
    if isinstance(value, int | float):
        return str(value)
    return _str(value)


_SHOWN = ("id", "url", "external_url", "title", "summary", "content_text", "content_html")
"""The fields of an item that identify it or give something to show. An item with none of
them is passed over: `{}` is three bytes, and 5 MB of them, read as entries, took two minutes
and 900 MB."""


def _item(item: dict[str, Any], base: str, feed_authors: list[str]) -> dict[str, Any] | None:
    """One item as the entry dict `parse._entry` reads; None for an item with nothing in it."""
    if not any(item.get(field) not in (None, "") for field in _SHOWN):
        return None
    raw: dict[str, Any] = {}
    link = _str(item.get("url")).strip() or _str(item.get("external_url")).strip()
    if link:
        raw["link"] = urljoin(base, link)
    raw["title"] = _str(item.get("title"))
    raw["title_detail"] = {"type": "text/plain"}
    for field in ("summary", "content_text", "content_html"):
        text = _str(item.get(field))
        if text.strip():
            raw["summary"] = text
            raw["summary_detail"] = {"type": "text/html"}
            break
    for field, key in (("date_published", "published"), ("date_modified", "updated")):
        when = _str(item.get(field)).strip()
        if when:
            raw[key] = when
            raw[f"{key}_parsed"] = feedparser.datetimes._parse_date(when)
    ident = _id(item.get("id"))
    if ident:
        raw["id"] = ident
    raw["authors"] = [{"name": n} for n in _authors(item) or feed_authors]
    return raw


def entries(body: bytes, url: str) -> Iterator[dict[str, Any]]:
    """The items of a JSON Feed as entry dicts, in the feed's order; FetchError (at once) if
    the document is not JSON, or is JSON but no JSON Feed. One at a time: a feed of many
    items never has them all as entry dicts at once."""
    doc = _load(body, url)
    version = doc.get("version") if isinstance(doc, dict) else None
    if not isinstance(version, str) or not version.startswith(VERSIONS):
        raise FetchError(
            url, 'not a feed: JSON, but not a JSON Feed (no "version": "https://jsonfeed.org/…")'
        )
    items = doc.get("items")
    if not isinstance(items, list):
        raise FetchError(url, 'not a feed: a JSON Feed without its "items" list')
    return _items(items, url, _authors(doc))


def _items(items: list[Any], url: str, feed_authors: list[str]) -> Iterator[dict[str, Any]]:
    passed_over = 0
    for item in items:
        raw = _item(item, url, feed_authors) if isinstance(item, dict) else None
        if raw is None:
            passed_over += 1
        else:
            yield raw
    if passed_over:
        logger.debug(
            "%s: %s of the JSON Feed passed over (empty or not objects)",
            url,
            words.count(passed_over, "item"),
        )
