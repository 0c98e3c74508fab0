"""The secrets a configured URL may carry, kept out of every output.

A feed or calendar URL can hold a password (`https://user:password@host/…`), a key in its query
(`?key=…`, `?token=…`) or a secret in its path: Google's private iCal address ends in
`/private-<32 hex>/basic.ics`, Outlook's in `/<id>@<domain>/<token>/calendar.ics`, Nextcloud's
public calendars in `/public-calendars/<token>`. Whoever has the URL reads the calendar. Pages,
`status`, `report`, logs, alerts and error messages show such a URL with

- the user-info replaced: `https://…@cal.example/`;
- the query and the fragment replaced: `…/feed?…`;
- each token-like run in the path replaced: a run of letters, digits, `-` and `_` of at least
  TOKEN_CHARS characters that mixes letters and digits, or upper and lower case (a hex or
  base64 key, a UUID), as `…`;

and keeps the scheme, host, port and the rest of the path, so an admin can still tell which URL
it is. A path of words (`/blog/feed/`, `/kronikker.rss`, `/2026/11/en-lang-tittel`) is kept, and
so is a run of digits only (Blogger's blog id): ids, not keys. A key shorter than TOKEN_CHARS in
the path is not recognised: such a URL is for the admin to keep out of logs.

The database keeps the URLs as configured (they are its keys); only what is shown is redacted.
`text` redacts every URL inside a longer text (an error message, a log line), and
`install_log_redaction` does that to every log record of every library.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlsplit

HIDDEN = "…"
TOKEN_CHARS = 16
"""Shortest path run taken for a key: Nextcloud's tokens are 16 characters, Google's 32."""

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s<>\"'`]+")
"""A URL with a scheme inside free text: up to the first space, quote or angle bracket."""
_TRAILING = ".,;:!?)]}"
"""Punctuation after a URL in a sentence, left where it is."""
_RUN = re.compile(rf"[A-Za-z0-9_-]{{{TOKEN_CHARS},}}")


def _tokenlike(run: str) -> bool:
    has_digit = any(c.isdigit() for c in run)
    has_letter = any(c.isalpha() for c in run)
    mixed_case = any(c.isupper() for c in run) and any(c.islower() for c in run)
    return (has_digit and has_letter) or mixed_case


def _path(path: str) -> str:
    return _RUN.sub(lambda m: HIDDEN if _tokenlike(m[0]) else m[0], path)


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
