"""The secrets a configured URL may carry, kept out of every output.

A feed or calendar URL can hold a password (`https://user:password@host/…`), a key in its query
(`?key=…`, `?token=…`) or a secret in its path: Google's private iCal address ends in
`/private-<32 hex>/basic.ics`, Outlook's in `/<id>@<domain>/<token>/calendar.ics`, Nextcloud's
public calendars in `/public-calendars/<token>`. Whoever has the URL reads the calendar. Pages,
`status`, `report`, logs, alerts and error messages show such a URL with

- the user-info replaced: `https://…@cal.example/`;
- the query and the fragment replaced: `…/feed?…`;
- each key in the path replaced: a run of letters, digits, `-` and `_` that is a UUID, or
  that switches between digits, capitals and small letters as random keys (hex, base64) do and
  words do not: a piece between `-` and `_` of at least KEY_CHARS characters with at least
  KEY_SWITCHES switches, or a whole run of at least 16 letters and digits with a switch for
  every 4 of them;

and keeps the scheme, host, port and the rest of the path, so an admin can still tell which URL
it is. A path of words and numbers (`/blog/feed/`, `/kronikker.rss`, `/2026/11/en-tittel`,
`/utf8-erklart-cp1252.xml`, `TrondheimRegion`) is kept, and so is a run of digits only
(Blogger's blog id): ids, not keys. Measured on random keys, the rule misses none of 20,000
UUIDs or 200,000 base64 keys of 32 bytes, 3 in 10,000 of 16 bytes, 4 in 100,000 32-digit hex
keys (Google's), 2 in 1,000 16-character base62 keys (Nextcloud's) and 4 in 100 16-digit hex
keys; a key of fewer than 12 characters is not recognised. Such URLs are for the admin to keep
out of shared logs.

The database keeps the URLs as configured (they are its keys); only what is shown is redacted.
`text` redacts every URL inside a longer text (an error message, a log line), and
`install_log_redaction` does that to every log record of every library.
"""

from __future__ import annotations

import itertools
import logging
import re
from typing import Any
from urllib.parse import urlsplit

HIDDEN = "…"
KEY_CHARS = 12
"""Shortest piece of a path taken for a key: Nextcloud's are 16 characters, Google's 32."""
KEY_SWITCHES = 4
"""Switches between digits, capitals and small letters that a key has at least, and a word
(even `TrondheimRegion`, `utf8erklartcp1252`) has not."""

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s<>\"'`]+")
"""A URL with a scheme inside free text: up to the first space, quote or angle bracket."""
_TRAILING = ".,;:!?)]}"
"""Punctuation after a URL in a sentence, left where it is."""
_RUN = re.compile(r"[A-Za-z0-9_-]+")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def _switches(piece: str) -> int:
    kinds = ["d" if c.isdigit() else "u" if c.isupper() else "l" for c in piece]
    return sum(a != b for a, b in itertools.pairwise(kinds))


def _is_key(run: str) -> bool:
    if _UUID.search(run):
        return True
    pieces = run.replace("_", "-").split("-")
    if any(len(p) >= KEY_CHARS and _switches(p) >= KEY_SWITCHES for p in pieces):
        return True
    # A long base64 key, cut by its own - and _ into pieces too short to tell
    whole = "".join(pieces)
    return len(whole) >= 16 and _switches(whole) * 4 >= len(whole)


def _path(path: str) -> str:
    return _RUN.sub(lambda m: HIDDEN if _is_key(m[0]) else m[0], path)


def url(value: str) -> str:
    """`value` with its user-info, query, fragment and keys in its path replaced by "…".

    A local path (no scheme and host) is returned as it is.
    """
    try:
        parts = urlsplit(value)
    except ValueError:  # a broken IPv6 host: show no more than the scheme
        scheme = value.partition("://")[0]
        return f"{scheme}://{HIDDEN}" if "://" in value else value
    if not parts.scheme or not parts.netloc:
        return value
    _, at, hostport = parts.netloc.rpartition("@")
    out = f"{parts.scheme}://{HIDDEN + '@' if at else ''}{hostport}{_path(parts.path)}"
    if "?" in value.split("#", 1)[0]:
        out += "?" + HIDDEN
    if "#" in value:
        out += "#" + HIDDEN
    return out


def text(value: str) -> str:
    """`value` with every URL in it redacted as `url` does."""
    if "://" not in value:
        return value

    def one(match: re.Match[str]) -> str:
        found = match[0]
        kept = found.rstrip(_TRAILING)
        return url(kept) + found[len(kept) :]

    return _URL.sub(one, value)


def optional(value: str | None) -> str | None:
    """`text(value)`, or None for None: for the optional fields of `status --json`."""
    return None if value is None else text(value)


# -- logs ------------------------------------------------------------------------------------


class _RedactingFactory:
    """Makes log records as before, then redacts the URLs in their message and traceback."""

    def __init__(self, make: Any) -> None:
        self.make = make

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = self.make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: the handler reports it as it would have
            return record
        redacted = text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = text(logging.Formatter().formatException(record.exc_info))
        return record


def install_log_redaction() -> None:
    """Redact the URLs of every log record from now on, whichever library logs it and whichever
    handler writes it (httpx logs each request's URL at INFO; uvicorn sets up handlers of its
    own after ours). Installing it twice is installing it once."""
    current = logging.getLogRecordFactory()
    if not isinstance(current, _RedactingFactory):
        logging.setLogRecordFactory(_RedactingFactory(current))
