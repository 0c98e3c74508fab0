"""Feeds for the loopback feed server: the files of tests/data with their dates moved, and
feeds, calendars and ambassadors built in a test."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from xml.sax.saxutils import escape

from pipeline.demo import days_since_anchor, shift_dates
from support.paths import DATA
from support.site import Site


def feed_bytes(name: str) -> bytes:
    """A feed file from tests/data with its dates moved so its newest entry is yesterday."""
    return shift_dates((DATA / name).read_bytes(), days_since_anchor())


NOW = datetime.now(UTC)

YESTERDAY = NOW - timedelta(days=1)


@dataclass(frozen=True)
class Post:
    title: str
    link: str
    date: datetime | None = YESTERDAY
    html: str = ""
    """The description as HTML (default: a one-line paragraph about the title)."""
    author: str = "Kari Nordmann"


def rss(*posts: Post) -> bytes:
    """A WordPress-shaped RSS 2.0 feed with these posts."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">',
        "<channel><title>Blogg</title><link>https://blogg.example.org</link>",
        "<description>En blogg</description>",
    ]
    for post in posts:
        out.append(f"<item><title>{escape(post.title)}</title><link>{escape(post.link)}</link>")
        out.append(f"<dc:creator><![CDATA[{post.author}]]></dc:creator>")
        if post.date is not None:
            out.append(f"<pubDate>{format_datetime(post.date)}</pubDate>")
        body = post.html or f"<p>Om {escape(post.title)}.</p>"
        out.append(f"<description><![CDATA[{body}]]></description></item>")
    out.append("</channel></rss>")
    return "\n".join(out).encode()


def ics(*events: str, head: str = "") -> str:
    """A VCALENDAR holding these VEVENT bodies (and `head`: time zones, X- properties)."""
    out = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//trnews tests//NONSGML//EN"]
    if head:
        out.append(head.strip())
    for body in events:
        out += ["BEGIN:VEVENT", body.strip(), "END:VEVENT"]
    out.append("END:VCALENDAR")
    return "\r\n".join("\n".join(out).splitlines()) + "\r\n"


def one_ambassador(site: Site, *urls: str) -> None:
    site.ambassador(
        "kari-nordmann", "Kari Nordmann", "Prorektor", [{"url": u, "kind": "blog"} for u in urls]
    )
