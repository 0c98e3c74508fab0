"""Render an edition: Jinja2 → MJML → HTML, and a plain-text part from the same data. No I/O
but reading the templates and the message catalogues.

The edition is rendered once; the few per-reader values (the unsubscribe link, the reader's name
in the greeting) are placeholders filled into the finished HTML and text by `personalise`.

The newsletter's words come from the gettext catalogues (pipeline/templates.py), used in the
templates through Jinja's i18n extension (`{% trans %}`, `_()`) and here through `Formatter`.
"""

from __future__ import annotations

import functools
import gettext
import html
import logging
import re
from dataclasses import dataclass, replace
from datetime import datetime
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import jinja2
from babel.dates import format_date, format_skeleton, format_time
from mjml import mjml2html

from . import tokens
from .config import Config
from .errors import RenderError
from .models import (
    PERSONAL_MARK,
    EditionPlan,
    Item,
    Kind,
    LeftOut,
    Meeting,
    Rendered,
    RenderedEdition,
    inert,
)
from .sanitize import UNSAFE, one_line
from .templates import Escaping, environment, palette, translations

logger = logging.getLogger(__name__)

UNSUBSCRIBE_URL = f"{PERSONAL_MARK}unsubscribe_url@@"
READER_NAME = f"{PERSONAL_MARK}reader_name@@"
"""Where the greeting takes the reader's name: " Kari" (with its space) or nothing."""
GMAIL_CLIP_BYTES = 102 * 1024
GMAIL_STYLE_BYTES = 16 * 1024
"""The Gmail app drops a <style> block larger than this."""


@dataclass(frozen=True)
class Formatter:
    """Words, dates, times and counts in the newsletter's language and time zone."""

    language: str
    tz: ZoneInfo

    @property
    def t(self) -> gettext.GNUTranslations:
        return translations(self.language)

    def date(self, value: datetime) -> str:
        return format_date(value.astimezone(self.tz), "long", locale=self.language)

    def when(self, start: datetime, end: datetime | None) -> str:
        """`torsdag 3. desember 2026 kl. 10:00–14:00` / `Thursday, December 3, 2026, 10:00`."""
        local = start.astimezone(self.tz)
        day = format_date(local, "full", locale=self.language)
        clock = format_time(local, "HH:mm", locale=self.language)
        if end is not None:
            local_end = end.astimezone(self.tz)
            end_clock = format_time(local_end, "HH:mm", locale=self.language)
            if local_end.date() == local.date():
                clock += "–" + end_clock
            else:
                end_day = format_skeleton("MMMd", local_end, locale=self.language)
                # the end as the start is written: "18. des. kl. 15:00", "Dec 18, 15:00"
                clock += " – " + self.t.gettext("%(day)s, %(time)s") % {
                    "day": end_day,
                    "time": end_clock,
                }
        # Translators: a meeting's day ("Thursday, December 3, 2026") and time ("10:00–14:00").
        return self.t.gettext("%(day)s, %(time)s") % {"day": day, "time": clock}

    def join(self, parts: list[str]) -> str:
        """ "A, B and C" in the newsletter's language."""
        if len(parts) < 2:
            return "".join(parts)
        # Translators: the end of a list: "2 chronicles, 3 blog posts" and "2 meetings".
        return self.t.gettext("%(first)s and %(last)s") % {
            "first": ", ".join(parts[:-1]),
            "last": parts[-1],
        }

    def summary(self, plan: EditionPlan) -> str:
        """ "2 kronikker, 3 blogginnlegg og 1 møte": what the edition holds."""
        t = self.t
        shown = (*plan.items, *plan.overflow)
        chronicles = sum(1 for i in shown if i.kind is Kind.CHRONICLE)
        videos = sum(1 for i in shown if i.kind is Kind.VIDEO)
        blogs = len(shown) - chronicles - videos
        meetings = len(plan.meetings)
        parts = []
        if chronicles:
            parts.append(
                t.ngettext("%(num)d chronicle", "%(num)d chronicles", chronicles)
                % {"num": chronicles}
            )
        if blogs:
            parts.append(
                t.ngettext("%(num)d blog post", "%(num)d blog posts", blogs) % {"num": blogs}
            )
        if videos:
            parts.append(t.ngettext("%(num)d video", "%(num)d videos", videos) % {"num": videos})
        if meetings:
            parts.append(
                t.ngettext("%(num)d meeting", "%(num)d meetings", meetings) % {"num": meetings}
            )
        return self.join(parts) or t.gettext("No new posts since the last edition.")


def safe_link(url: str) -> str:
    """An http(s) URL as given, else "": the title is then shown without a link, never as a
    `javascript:` or `data:` link."""
    url = inert(url).strip()
    return url if urlsplit(url).scheme.lower() in ("http", "https") else ""


def _byline(credits: Any) -> str:
    return "; ".join(f"{c.name}, {c.role}" if c.role else c.name for c in credits)


def _item_view(item: Item, fmt: Formatter) -> dict[str, str]:
    return {
        "title": inert(item.title) or fmt.t.gettext("(untitled)"),
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
        "ambassadors": inert(fmt.join([c.name for c in meeting.credits])),
        "url": safe_link(meeting.url),
        "description": inert(meeting.description),
    }


class Renderer:
    """Renders editions with the built-in templates, overridden by the admin's folder if set.

    A file in the admin's folder replaces the built-in one of the same name, whether it is the
    whole `edition.mjml` or one of the partials it includes (`header.mjml`, `item.mjml`,
    `meeting.mjml`, `footer.mjml`, …); `builtin/NAME` always names the built-in one, so an
    override can wrap it rather than copy it.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        nl = config.newsletter
        self.fmt = Formatter(nl.language, nl.tz)
        self.env = environment(config, Escaping.EDITION, keep_trailing_newline=True)
        self.colours = palette(nl.accent)

    def context(self, plan: EditionPlan) -> dict[str, Any]:
        nl = self.config.newsletter
        fmt = self.fmt
        logo = None
        if nl.logo:
            logo = {"src": nl.logo, "alt": inert(nl.logo_alt or ""), "width": nl.logo_width}
        return {
            "lang": nl.language,
            "title": inert(nl.title),
            "intro": inert(nl.intro),
            "date": fmt.date(plan.created),
            "summary": fmt.summary(plan),
            "reader_name": READER_NAME,
            "note": inert(plan.note),
            "lead": _item_view(plan.lead_item, fmt) if plan.lead_item else None,
            "chronicles": [_item_view(i, fmt) for i in plan.chronicles],
            "blog_posts": [_item_view(i, fmt) for i in plan.blog_posts],
            "videos": [_item_view(i, fmt) for i in plan.videos],
            "meetings": [_meeting_view(m, fmt) for m in plan.meetings],
            "more": len(plan.overflow),
            "archive_url": tokens.archive_url(self.config),
            "unsubscribe_url": UNSUBSCRIBE_URL,
            "sender_name": inert(nl.sender_name),
            "sender_address": inert(nl.sender_address),
            "postal_address": inert(nl.postal_address),
            "logo": logo,
            "colours": self.colours,
            "report": plan.report,
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
        except Exception as e:
            # An admin's override naming a value that does not exist, or a filter failing on
            # one value: say where. The deepest template file in the traceback is where it
            # failed (an included partial, or the template itself).
            where = _failing_template(e.__traceback__) or (template.filename or name, None)
            filename, line = where
            raise RenderError(f"template {filename}{f':{line}' if line else ''}: {e}") from e

    def render(self, plan: EditionPlan) -> Rendered:
        """The edition as subject, HTML and text, with placeholders for per-reader values."""
        ctx = self.context(plan)
        try:
            html_part = mjml2html(self._template("edition.mjml", ctx))
        except ValueError as e:
            raise RenderError(f"edition.mjml did not give valid MJML: {e}") from e
        text = self._template("edition.txt", ctx)
        subject = f"{ctx['title']} {ctx['date']}: {ctx['summary']}"
        size = len(html_part.encode())
        if size > GMAIL_CLIP_BYTES:
            logger.warning(
                "The HTML part is %d KB; Gmail clips messages over 102 KB "
                "(lower newsletter.max_items)",
                size // 1024,
            )
        for style in re.findall(r"<style[^>]*>(.*?)</style>", html_part, re.DOTALL):
            if len(style.encode()) > GMAIL_STYLE_BYTES:
                logger.warning(
                    "A <style> block of the HTML part is %d KB; the Gmail app drops blocks "
                    "over 16 KB (check the templates' mj-style)",
                    len(style.encode()) // 1024,
                )
        return Rendered(subject=subject, html=html_part, text=text)

    def render_edition(self, plan: EditionPlan) -> RenderedEdition:
        """The edition, less any item or meeting whose values a template or MJML cannot take.

        One bad value costs its item, never the edition: when the whole fails, the edition is
        rendered without items and meetings, then with each alone, and those that fail alone
        are left out (and logged). If the edition fails even without them, the templates are
        broken for every edition, and that RenderError stands.
        """
        try:
            return RenderedEdition(self.render(plan), plan)
        except RenderError as e:
            if not (plan.items or plan.meetings):
                raise
            whole = e
        bare = replace(plan, items=(), meetings=(), new_meetings=())
        try:
            self.render(bare)
        except RenderError:
            raise whole from None
        left_out = []
        for item in plan.items:
            if why := self._fails(replace(bare, items=(item,)), item):
                left_out.append(LeftOut(why, item=item))
        for meeting in plan.meetings:
            if why := self._fails(replace(bare, meetings=(meeting,)), meeting):
                left_out.append(LeftOut(why, meeting=meeting))
        if not left_out:  # each renders alone, not together: nothing to single out
            raise whole
        out_items = {lo.item.id for lo in left_out if lo.item is not None}
        out_meetings = {lo.meeting.key for lo in left_out if lo.meeting is not None}
        kept = replace(
            plan,
            items=tuple(i for i in plan.items if i.id not in out_items),
            meetings=tuple(m for m in plan.meetings if m.key not in out_meetings),
            new_meetings=tuple(k for k in plan.new_meetings if k not in out_meetings),
        )
        rendered = self.render(kept)
        for lo in left_out:
            logger.warning("Left %s out of the edition", lo)
        return RenderedEdition(rendered, kept, tuple(left_out))

    def _fails(self, alone: EditionPlan, part: Item | Meeting) -> str | None:
        """Why the edition with only this item or meeting cannot be rendered, or None."""
        try:
            self.render(alone)
        except RenderError as e:
            return _why(part, str(e))
        return None


def _why(part: Item | Meeting, error: str) -> str:
    """Why an item or meeting could not be rendered: the character at fault when one of its
    values holds what e-mail cannot carry (stored before trnews took such characters out),
    and what the template or MJML said."""
    if isinstance(part, Item):
        values = {"title": part.title, "link": part.link, "excerpt": part.excerpt}
    else:
        values = {
            "title": part.title,
            "location": part.location,
            "link": part.url,
            "description": part.description,
        }
    for field, value in values.items():
        if found := UNSAFE.search(value):
            return f"its {field} holds U+{ord(found[0]):04X}, which e-mail cannot carry ({error})"
    return error


def _failing_template(tb: TracebackType | None) -> tuple[str, int | None] | None:
    """The template file and line deepest in a traceback: where rendering failed."""
    found = None
    while tb is not None:
        code = tb.tb_frame.f_code
        # Jinja rewrites the traceback so that each template's frame carries the template's
        # own file and line, and marks those frames with this global.
        if "__jinja_exception__" in tb.tb_frame.f_globals:
            found = (code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


_PLACEHOLDER = re.compile("(" + re.escape(PERSONAL_MARK) + r"(?:unsubscribe_url|reader_name)@@)")


@functools.lru_cache(maxsize=8)
def _pieces(finished: str) -> tuple[str, ...]:
    """`finished` cut at its placeholders: text, placeholder, text, …; cut once per edition,
    not once per reader (the strings of one edition are the same objects for every reader)."""
    return tuple(_PLACEHOLDER.split(finished))


def _fill(finished: str, values: dict[str, str]) -> str:
    pieces = _pieces(finished)
    if len(pieces) == 1:
        return finished
    return "".join(values.get(p, p) if i % 2 else p for i, p in enumerate(pieces))


def personalise(rendered: Rendered, *, unsubscribe_url: str, name: str = "") -> Rendered:
    """The rendered edition with one reader's values filled in: the finished HTML and text
    with their placeholders replaced, thousands of times cheaper than rendering again."""
    # One line, made safe, no placeholders: a name is text, whoever typed it (and a name
    # stored by an older trnews may still hold a bidi override).
    name = inert(one_line(name))
    spaced = f" {name}" if name else ""
    return Rendered(
        subject=rendered.subject,
        html=_fill(
            rendered.html,
            {UNSUBSCRIBE_URL: html.escape(unsubscribe_url), READER_NAME: html.escape(spaced)},
        ),
        text=_fill(rendered.text, {UNSUBSCRIBE_URL: unsubscribe_url, READER_NAME: spaced}),
    )


FOOTER_CLASS = "trn-foot"
"""The css-class of the footer section (templates/footer.mjml): the part of a message that
speaks to the one reader it was sent to, which the archive's copy replaces."""
_FOOTER = re.compile(r'<div\b[^>]*\bclass="(?:[^"]*\s)?' + FOOTER_CLASS + r'(?:\s[^"]*)?"[^>]*>')
_DIV = re.compile(r"<div\b|</div\s*>", re.IGNORECASE)


def with_top(finished: str, *, style: str, top: str) -> str:
    """The HTML of a finished message with `style` (CSS) added to its head and `top` first in
    its body: the archive's copy, and the desk's preview of a draft (the message unchanged
    under a bar that says what it is)."""
    page = finished.replace("</head>", f"<style>{style}</style></head>", 1)
    return re.sub(r"<body\b[^>]*>", lambda m: m.group(0) + top, page, count=1)


def archived_copy(finished: str, *, style: str, top: str, footer: str) -> str:
    """The HTML of a sent edition (its placeholders already filled with neutral values) as the
    archive shows it to anyone: `style` (CSS) added to its head, `top` (the site's header and
    navigation) first in its body, and `footer` (what this copy is, how to subscribe) in place
    of the subscriber's footer. Only the web copy: the message itself never changes.

    A template with no footer section (an admin's footer.mjml without its css-class) gets
    `footer` at the end of the body, after its own."""
    page = with_top(finished, style=style, top=top)
    start = _FOOTER.search(page)
    if start is not None:
        depth = 0
        for tag in _DIV.finditer(page, start.end()):
            if not tag.group(0).startswith("</"):
                depth += 1
            elif depth:
                depth -= 1
            else:
                return page[: start.end()] + footer + page[tag.start() :]
    head, found, tail = page.rpartition("</body>")
    return head + footer + found + tail if found else page + footer
