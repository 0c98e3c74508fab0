"""Readers, meetings, alerts and DKIM for a site, and messages read back as a reader's mail
client reads them."""

from __future__ import annotations

import csv
import email
import email.policy
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage, Message
from html.parser import HTMLParser

from support.site import Site


def html_part(msg: EmailMessage) -> str:
    part = msg.get_body(("html",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def text_part(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


@dataclass
class DkimKey:
    pem: bytes
    txt: bytes
    """The DNS TXT record that publishes the public key."""

    def dns(self, name: bytes, timeout: int = 5) -> bytes | None:
        """dkimpy's `dnsfunc`: this key's record at `nyhetsbrev._domainkey.example.org`."""
        return self.txt if name.rstrip(b".") == b"nyhetsbrev._domainkey.example.org" else None


DKIM_TOML = """\
[delivery.dkim]
domain = "example.org"
selector = "nyhetsbrev"
key_file = "{key_file}"
"""


def paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]


def section(text: str, heading: str) -> str:
    """The part of the text part under `heading`, up to the next heading or the footer."""
    after = text.split(f"\n{heading}\n{'=' * len(heading)}\n", 1)[1]
    return re.split(r"\n[^\n]+\n=+\n|\n-- \n", after, maxsplit=1)[0]


READERS = [
    ("anne@example.org", "Anne Abonnent"),
    ("bjorn@example.net", "Bjørn Ødegård"),
    ("cecilie@example.com", ""),
]


def soon(days: int = 7) -> str:
    """A TOML datetime `days` from now: a meeting in the window is news enough for an edition."""
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0).isoformat()


def with_meeting(site: Site) -> None:
    site.meeting(f'title = "Regionrådet"\nstart = {soon()}\nlocation = "Kulturhuset, Støren"')


def add_readers(site: Site, readers: list[tuple[str, str]]) -> None:
    """Import readers from a CSV file, as an admin would (one CLI run for all of them)."""
    path = site.root / "readers.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["email", "name"])
        out.writerows(readers)
    site.run("subscribers", "import", str(path))


def use_smtp(site: Site, port: int, **smtp: str | float) -> None:
    """Write the site's config for the SMTP server on `port` with these [delivery.smtp] keys."""
    site.transport = "smtp"
    site.smtp_port = port
    site.write()
    keys = "".join(f"{k} = {json.dumps(v)}\n" for k, v in {"security": "none", **smtp}.items())
    text = site.config.read_text(encoding="utf-8")
    assert 'security = "none"\n' in text
    site.config.write_text(text.replace('security = "none"\n', keys, 1), encoding="utf-8")


ADMIN = "admin@example.org"


def alerts_config(site: Site, *, to: Iterable[str] = (ADMIN,), feed_failures: int = 3) -> None:
    """Give the site an `[alerts]` section, and no retries within a run: a failing feed then
    costs one request, not three with backoff."""
    site.extra_toml = (
        f"[alerts]\nto = {json.dumps(list(to))}\nfeed_failures = {feed_failures}\n\n"
        "[collect]\nretries = 0\n"
    )
    site.write()


def to_admins(site: Site, admins: tuple[str, ...] = (ADMIN,)) -> list[EmailMessage]:
    """The alerts in the Maildir outbox, oldest first: the messages addressed to an admin."""
    return [m for m in site.messages() if str(m["To"]) in admins]


def unsafe_characters(text: str) -> list[str]:
    """Every character in `text` that no reader should get, as `U+XXXX`: controls but tab and
    line ends, noncharacters, lone surrogates, bidi marks, embeddings, overrides and isolates.
    Told by Unicode's own categories, not by trnews's code."""
    found = []
    for ch in text:
        cp = ord(ch)
        control = unicodedata.category(ch) == "Cc" and ch not in "\t\n\r"
        nonchar = 0xFDD0 <= cp <= 0xFDEF or cp & 0xFFFE == 0xFFFE
        surrogate = 0xD800 <= cp <= 0xDFFF
        bidi = cp in (0x061C, 0x200E, 0x200F) or 0x202A <= cp <= 0x202E or 0x2066 <= cp <= 0x2069
        if control or nonchar or surrogate or bidi:
            found.append(f"U+{cp:04X}")
    return found


def decoded(raw: bytes) -> str:
    """A message file as a reader's program shows it: every header and every part, decoded."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    out = [f"{k}: {v}" for k, v in msg.items()]
    for part in msg.walk():
        if isinstance(part, Message) and not part.is_multipart():
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            out.append(payload.decode(part.get_content_charset() or "ascii"))
    return "\n".join(out)


def delivered(site: Site) -> list[str]:
    """Every message in the site's Maildir, decoded, oldest first."""
    files = sorted(site.outbox.iterdir(), key=lambda p: p.stat().st_mtime_ns)
    return [decoded(p.read_bytes()) for p in files]


def dot_lines(site: Site) -> list[bytes]:
    """Lines of the site's sent messages, as written, that start with a dot: SMTP would have
    to stuff them (RFC 5321 4.5.2); trnews writes none, so that every message goes as it is."""
    return [
        line
        for path in site.outbox.iterdir()
        for line in path.read_bytes().splitlines()
        if line.startswith(b".")
    ]


ACTIVE_TAGS = {
    "script",
    "iframe",
    "frame",
    "frameset",
    "object",
    "embed",
    "applet",
    "form",
    "input",
    "button",
    "select",
    "textarea",
    "base",
}

BAD_SCHEMES = ("javascript:", "vbscript:", "data:")

URL_ATTRIBUTES = {
    "href",
    "src",
    "action",
    "formaction",
    "background",
    "poster",
    "lowsrc",
    "dynsrc",
    "xlink:href",
    "srcset",
}


class ActiveContent(HTMLParser):
    """Lists everything in an HTML document that could run, load or submit something."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self.in_head = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._check(tag, attrs)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._check(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "head":
            self.in_head = False

    def _check(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "head":
            self.in_head = True
        values = {name: value or "" for name, value in attrs}
        here = f"<{tag} {' '.join(f'{k}={v!r}' for k, v in attrs)}>"
        if tag in ACTIVE_TAGS:
            self.found.append(f"element: {here}")
        if tag == "meta" and values.get("http-equiv", "").strip().lower() == "refresh":
            self.found.append(f"meta refresh: {here}")
        if tag == "link" and ("stylesheet" in values.get("rel", "").lower() or not self.in_head):
            self.found.append(f"external stylesheet or link: {here}")
        if tag == "style" and not self.in_head:
            self.found.append(f"style element outside the head: {here}")
        for name, value in values.items():
            if name.startswith("on"):
                self.found.append(f"event handler {name}: {here}")
            if name in URL_ATTRIBUTES:
                plain = "".join(ch for ch in value if ch.isprintable() and not ch.isspace())
                if plain.lower().startswith(BAD_SCHEMES):
                    self.found.append(f"{name} with an unsafe scheme: {here}")
            if name == "style":
                css = "".join(value.split()).lower().replace("\\", "")
                if "expression(" in css or "url(" in css:
                    self.found.append(f"style that loads or runs: {here}")


def active_content(html: str) -> list[str]:
    finder = ActiveContent()
    finder.feed(html)
    finder.close()
    return finder.found
