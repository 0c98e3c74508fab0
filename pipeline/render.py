"""Render an edition: Jinja2 → MJML → HTML, and a plain-text part from the same data. No I/O.

The edition is rendered once; the few per-reader values (the unsubscribe link) are placeholders
filled into the finished HTML and text by `personalise`.
"""

from __future__ import annotations

import logging
import textwrap
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import jinja2
from babel.dates import format_date, format_datetime, format_time
from mjml import mjml2html

from .config import Config
from .errors import RenderError
from .models import PERSONAL_MARK, EditionPlan, Item, Meeting, Rendered, inert

logger = logging.getLogger(__name__)

UNSUBSCRIBE_URL = f"{PERSONAL_MARK}unsubscribe_url@@"
GMAIL_CLIP_BYTES = 102 * 1024
TEXT_WIDTH = 72


def builtin_templates() -> Path:
    """The built-in templates: inside the installed package, or `templates/` of a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "edition.mjml").is_file():
            return candidate
    raise RenderError(f"the built-in templates are missing (looked in {here / 'templates'})")


LABELS: dict[str, dict[str, str]] = {
    "nb": {
        "chronicles": "Kronikker",
        "blog_posts": "Blogginnlegg",
        "meetings": "Kommende møter",
        "unsubscribe": "Meld deg av",
        "archive": "Tidligere utgaver",
        "why": "Du får dette nyhetsbrevet fordi du abonnerer på {title} fra {sender}.",
        "more": "… og {n} innlegg til. Les alle i arkivet.",
        "nothing": "Ingen nye innlegg siden forrige utgave.",
        "untitled": "(uten tittel)",
        "and": "og",
        "chronicle_one": "kronikk",
        "chronicle_many": "kronikker",
        "blog_one": "blogginnlegg",
        "blog_many": "blogginnlegg",
        "meeting_one": "møte",
        "meeting_many": "møter",
        "time_prefix": "kl.",
        "unsubscribe_text": "Meld deg av med ett klikk",
    },
    "en": {
        "chronicles": "Chronicles",
        "blog_posts": "Blog posts",
        "meetings": "Upcoming meetings",
        "unsubscribe": "Unsubscribe",
        "archive": "Past editions",
        "why": "You receive this newsletter because you subscribe to {title} from {sender}.",
        "more": "… and {n} more posts. Read them all in the archive.",
        "nothing": "No new posts since the last edition.",
        "untitled": "(untitled)",
        "and": "and",
        "chronicle_one": "chronicle",
        "chronicle_many": "chronicles",
        "blog_one": "blog post",
        "blog_many": "blog posts",
        "meeting_one": "meeting",
        "meeting_many": "meetings",
        "time_prefix": "",
        "unsubscribe_text": "Unsubscribe with one click",
    },
}


@dataclass(frozen=True)
class Formatter:
    """Dates, times and counts in the newsletter's language and time zone."""

    language: str
    tz: ZoneInfo

    @property
    def labels(self) -> dict[str, str]:
        return LABELS[self.language]

    def date(self, value: datetime) -> str:
        return format_date(value.astimezone(self.tz), "long", locale=self.language)

    def when(self, start: datetime, end: datetime | None) -> str:
        """`torsdag 3. desember 2026 kl. 10:00–14:00` / `Thursday, December 3, 2026 10:00–14:00`."""
        local = start.astimezone(self.tz)
        day = format_date(local, "full", locale=self.language)
        clock = format_time(local, "HH:mm", locale=self.language)
        if end is not None:
            local_end = end.astimezone(self.tz)
            if local_end.date() == local.date():
                clock += "–" + format_time(local_end, "HH:mm", locale=self.language)
            else:
                clock += " – " + format_datetime(
                    local_end,
                    "d. MMM HH:mm" if self.language == "nb" else "MMM d HH:mm",
                    locale=self.language,
                )
        prefix = self.labels["time_prefix"]
        return f"{day} {prefix} {clock}" if prefix else f"{day}, {clock}"

    def count(self, n: int, what: str) -> str:
        return f"{n} {self.labels[what + ('_one' if n == 1 else '_many')]}"

    def summary(self, plan: EditionPlan) -> str:
        """ "2 kronikker, 3 blogginnlegg og 1 møte": what the edition holds."""
        parts = []
        chronicles = len(plan.chronicles) + sum(1 for i in plan.overflow if i.kind == "chronicle")
        blogs = len(plan.items) + len(plan.overflow) - chronicles
        if chronicles:
            parts.append(self.count(chronicles, "chronicle"))
        if blogs:
            parts.append(self.count(blogs, "blog"))
        if plan.meetings:
            parts.append(self.count(len(plan.meetings), "meeting"))
        if len(parts) > 1:
            return ", ".join(parts[:-1]) + f" {self.labels['and']} " + parts[-1]
        return parts[0] if parts else self.labels["nothing"]


def safe_link(url: str) -> str:
    """An http(s) URL as given, else "": the title is then shown without a link, never as a
    `javascript:` or `data:` link."""
    url = inert(url).strip()
    return url if urlsplit(url).scheme.lower() in ("http", "https") else ""


def _byline(credits: Any) -> str:
    return "; ".join(f"{c.name}, {c.role}" if c.role else c.name for c in credits)


def _item_view(item: Item, fmt: Formatter) -> dict[str, str]:
    return {
        "title": inert(item.title) or fmt.labels["untitled"],
        "link": safe_link(item.link),
        "byline": inert(_byline(item.credits)),
        "date": fmt.date(item.date),
        "excerpt": inert(item.excerpt),
    }


def _meeting_view(meeting: Meeting, fmt: Formatter) -> dict[str, str]:
    return {
        "title": inert(meeting.title),
        "when": fmt.when(meeting.start, meeting.end),
        "location": inert(meeting.location),
        "byline": inert(", ".join(c.name for c in meeting.credits)),
        "url": safe_link(meeting.url),
        "description": inert(meeting.description),
    }


def _template_line(tb: TracebackType | None, filename: str | None) -> int | None:
    """The line of the template where rendering failed: Jinja puts the template's own file
    and line into the traceback."""
    line = None
    while tb is not None and filename:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _wrap(text: str, width: int = TEXT_WIDTH, indent: str = "") -> str:
    return textwrap.fill(
        text,
        width=width,
        initial_indent=indent,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


class Renderer:
    """Renders editions with the built-in templates, overridden by the admin's folder if set."""

    def __init__(self, config: Config) -> None:
        self.config = config
        nl = config.newsletter
        self.fmt = Formatter(nl.language, nl.tz)
        loaders: list[jinja2.BaseLoader] = []
        custom = config.templates_path
        if custom is not None:
            if not custom.is_dir():
                raise RenderError(f"newsletter.templates: {custom} is not a folder")
            loaders.append(jinja2.FileSystemLoader(custom))
        loaders.append(jinja2.FileSystemLoader(builtin_templates()))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("mjml", "html"), default_for_string=True
            ),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.env.filters["wrap"] = _wrap

    def context(self, plan: EditionPlan) -> dict[str, Any]:
        nl = self.config.newsletter
        fmt = self.fmt
        summary = fmt.summary(plan)
        return {
            "lang": nl.language,
            "labels": fmt.labels,
            "title": inert(nl.title),
            "intro": inert(nl.intro),
            "date": fmt.date(plan.created),
            "summary": summary,
            "chronicles": [_item_view(i, fmt) for i in plan.chronicles],
            "blog_posts": [_item_view(i, fmt) for i in plan.blog_posts],
            "meetings": [_meeting_view(m, fmt) for m in plan.meetings],
            "more": len(plan.overflow),
            "archive_url": f"{nl.public_url}/archive",
            "unsubscribe_url": UNSUBSCRIBE_URL,
            "sender": inert(nl.sender),
            "why": inert(fmt.labels["why"].format(title=nl.title, sender=nl.sender_address)),
        }

    def _template(self, name: str, ctx: dict[str, Any]) -> str:
        try:
            template = self.env.get_template(name)
        except jinja2.TemplateSyntaxError as e:
            raise RenderError(f"template {e.filename}:{e.lineno}: {e.message}") from e
        except jinja2.TemplateError as e:
            raise RenderError(f"template {name}: {e}") from e
        try:
            return template.render(ctx)
        except jinja2.TemplateSyntaxError as e:  # in a template it includes
            raise RenderError(f"template {e.filename}:{e.lineno}: {e.message}") from e
        except jinja2.TemplateError as e:
            # An admin's override naming a value that does not exist: say where.
            line = _template_line(e.__traceback__, template.filename)
            where = f"{template.filename}:{line}" if line else (template.filename or name)
            raise RenderError(f"template {where}: {e}") from e

    def render(self, plan: EditionPlan) -> Rendered:
        """The edition as subject, HTML and text, with placeholders for per-reader values."""
        ctx = self.context(plan)
        try:
            html = mjml2html(self._template("edition.mjml", ctx))
        except ValueError as e:
            raise RenderError(f"edition.mjml did not give valid MJML: {e}") from e
        text = self._template("edition.txt", ctx)
        subject = f"{ctx['title']} {ctx['date']}: {ctx['summary']}"
        size = len(html.encode())
        if size > GMAIL_CLIP_BYTES:
            logger.warning(
                "The HTML part is %d KB; Gmail clips messages over 102 KB "
                "(lower newsletter.max_items)",
                size // 1024,
            )
        return Rendered(subject=subject, html=html, text=text)


def personalise(rendered: Rendered, *, unsubscribe_url: str) -> Rendered:
    """The rendered edition with one reader's values filled in."""
    return Rendered(
        subject=rendered.subject,
        html=rendered.html.replace(UNSUBSCRIBE_URL, unsubscribe_url),
        text=rendered.text.replace(UNSUBSCRIBE_URL, unsubscribe_url),
    )
