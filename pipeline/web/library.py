"""The library and the message bank on the web (SPEC.md "The library and the message bank"):
`/library` (filters, search, pages), `/messages`, `/messages/{id}`, `/ambassadors/{id}`, and
an Atom feed of each list. What is found, and how, is pipeline.library's; here it is only
shown.

Pages are kept like the archive's: each by the library's mark (`Store.library_mark`, through
`Changes`: a new item, credit, kind or tag in any process builds them again) and what the
request asked; an ambassador's first page, which shows meetings from the calendars and this
year's plan, is built again after `report_cache_minutes` too. Items are tagged before each
build (`library_stage.tag`: nothing to write when nothing changed).

The message bank is the config's, read once when `trnews serve` starts. A collect run with an
edited bank tags every item again; the server then leaves the tags as they are (tagging with
its older bank would undo it on every page built) and logs once that it needs a restart.

No thumbnail or any image from a feed is shown: an image would load from the feed's host,
which the pages' Content-Security-Policy does not allow.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit
from xml.sax.saxutils import escape, quoteattr

from starlette.requests import Request
from starlette.responses import Response

from .. import library as library_stage
from ..config import Config
from ..edition import credits_for, upcoming_meetings
from ..errors import UnknownFilter
from ..models import Kind, LibraryItem, inert
from ..render import safe_link
from ..store import Store
from ..templates import long_date
from .app import ARCHIVE_CACHE, Core, OnDemand, _kept, content_security_policy
from .atom import ATOM_TYPE, rfc3339, xml_text

logger = logging.getLogger("pipeline.web")

LIBRARY_KEPT = 256
"""Library pages and feeds kept ready to serve, in memory (the newest built stay)."""
EXAMPLES_SHOWN = 5
"""Examples of each message on /messages."""


@dataclass(frozen=True)
class _Ask:
    """What one request asked of the library: the key of the page built for it."""

    what: str
    """"library", "library.atom", "messages", "message", "message.atom", "ambassador",
    "ambassador.atom"."""
    filters: library_stage.Filters
    page: int
    mark: object


class LibraryPages(Core):
    """The library's pages and feeds, built on demand."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.library_built: OnDemand[_Ask, tuple[str, str]] = OnDemand(
            "a library page", self._library_build, fresh_for=None, kept=LIBRARY_KEPT
        )
        self.ambassador_built: OnDemand[_Ask, tuple[str, str]] = OnDemand(
            "an ambassador's page",
            self._library_build,
            fresh_for=config.web.report_cache_minutes * 60,
            kept=LIBRARY_KEPT,
        )
        self.bank = library_stage.bank_mark(config.message)
        self.bank_warned = False

    # -- the routes ------------------------------------------------------------------------

    async def library(self, request: Request) -> Response:
        return await self._answer(request, "library", {})

    async def library_atom(self, request: Request) -> Response:
        return await self._answer(request, "library.atom", {})

    async def messages(self, request: Request) -> Response:
        return await self._answer(request, "messages", {})

    async def message_page(self, request: Request) -> Response:
        return await self._answer(request, "message", {"message": request.path_params["id"]})

    async def message_atom(self, request: Request) -> Response:
        return await self._answer(request, "message.atom", {"message": request.path_params["id"]})

    async def ambassador(self, request: Request) -> Response:
        fixed = {"ambassador": request.path_params["id"]}
        return await self._answer(request, "ambassador", fixed)

    async def ambassador_atom(self, request: Request) -> Response:
        fixed = {"ambassador": request.path_params["id"]}
        return await self._answer(request, "ambassador.atom", fixed)

    async def _answer(self, request: Request, what: str, fixed: dict[str, str]) -> Response:
        """The page `what` for this request's filters (the path's id in `fixed` wins over
        the query string's); 404 for an unknown id, filter value or page."""
        params: dict[str, str] = {}
        if what == "library" or what == "library.atom":
            params = dict(request.query_params)
        elif what in ("message", "ambassador"):
            params = {"q": "", "page": request.query_params.get("page", "")}
        try:
            filters = library_stage.Filters.parse(self.config, {**params, **fixed})
            page = 1 if what.endswith(".atom") else library_stage.page_number(params.get("page"))
        except UnknownFilter:
            return self.not_found()
        mark = self.changes.mark("the library", lambda store: store.library_mark())
        ask = _Ask(what, filters, page, mark)
        built = self.ambassador_built if what == "ambassador" and page == 1 else self.library_built
        served = await built.get(ask)
        if served is None:
            return self.not_found()
        if what.endswith(".atom"):
            return Response(
                served[0].encode(), media_type=ATOM_TYPE, headers={"Cache-Control": ARCHIVE_CACHE}
            )
        return _kept(served)

    # -- building ------------------------------------------------------------------------

    async def _library_build(self, ask: _Ask) -> tuple[str, str] | None:
        def build(store: Store) -> tuple[str, str] | None:
            self._lib_tag(store)
            try:
                if ask.what.endswith(".atom"):
                    return self._lib_atom(store, ask), ""
                page = self._lib_page(store, ask)
            except UnknownFilter:
                return None
            return page, content_security_policy(page)

        return await self.db(build, limiter=self.builders)

    def _lib_tag(self, store: Store) -> None:
        """Tag what is untagged, unless a collect has tagged with an edited message bank."""
        stored = store.get_meta("message_bank")
        if stored is not None and stored != self.bank:
            if not self.bank_warned:
                self.bank_warned = True
                logger.warning(
                    "The message bank in %s has changed since trnews serve started: restart "
                    "it to show the new one",
                    self.config.path,
                )
            return
        with self.writing:
            library_stage.tag(store, self.config)

    def _lib_page(self, store: Store, ask: _Ask) -> str:
        t = self.t
        filters = ask.filters
        if ask.what == "messages":
            return self._lib_bank(store)
        found = library_stage.find(store, self.config, filters, page=ask.page)
        values: dict[str, Any] = {
            "found": self._lib_found(found),
            "pager": self._lib_pager(ask, found),
        }
        if ask.what == "message":
            message = self._lib_message(filters.message or "")
            return self.render(
                "bank_message.html",
                current="library",
                page_title=message["title"],
                message=message,
                feed_url=f"{self.base}/messages/{message['id']}.atom",
                **values,
            )
        if ask.what == "ambassador":
            amb = self.config.ambassador_by_id()[filters.ambassador or ""]
            return self.render(
                "ambassador.html",
                current="library",
                page_title=inert(amb.name),
                ambassador={"id": amb.id, "name": inert(amb.name), "role": inert(amb.role)},
                plan=self._lib_plan(store, amb.id) if ask.page == 1 else None,
                meetings=self._lib_meetings(amb.id) if ask.page == 1 else None,
                feed_url=f"{self.base}/ambassadors/{amb.id}.atom",
                **values,
            )
        query = urlencode(filters.params())
        return self.render(
            "library.html",
            current="library",
            page_title=t.gettext("The library"),
            form=self._lib_form(filters),
            feed_url=f"{self.base}/library.atom" + (f"?{query}" if query else ""),
            **values,
        )

    def _lib_bank(self, store: Store) -> str:
        counts = store.message_counts()
        bank = []
        for m in self.config.message:
            newest = library_stage.find(
                store, self.config, library_stage.Filters(message=m.id), size=EXAMPLES_SHOWN
            )
            bank.append(
                {
                    **self._lib_message(m.id),
                    "count": counts.get(m.id, 0),
                    "examples": self._lib_items(newest),
                }
            )
        return self.render(
            "bank.html",
            current="library",
            page_title=self.t.gettext("The message bank"),
            bank=bank,
            feed_url=f"{self.base}/library.atom",
        )

    def _lib_message(self, message_id: str) -> dict[str, Any]:
        m = next(m for m in self.config.message if m.id == message_id)
        return {
            "id": m.id,
            "title": inert(m.title),
            "summary": inert(m.summary),
            "arguments": [inert(a) for a in m.arguments],
            "href": f"{self.base}/messages/{m.id}",
        }

    def _lib_kind(self, kind: Kind) -> str:
        t = self.t
        return {
            Kind.CHRONICLE: t.pgettext("library", "Chronicle"),
            Kind.BLOG: t.pgettext("library", "Blog post"),
            Kind.VIDEO: t.pgettext("library", "Video"),
        }[kind]

    def _lib_items(self, found: library_stage.Found) -> list[dict[str, Any]]:
        language = self.config.newsletter.language
        tz = self.config.newsletter.tz
        titles = {m.id: inert(m.title) for m in self.config.message}
        return [
            {
                "title": inert(item.title) or self.t.gettext("(untitled)"),
                "link": safe_link(item.link),
                "kind": self._lib_kind(item.kind),
                "date": long_date(item.date.astimezone(tz), language),
                "iso": item.date.isoformat(),
                "ambassadors": [
                    {
                        "href": f"{self.base}/ambassadors/{c.id}",
                        "name": inert(c.name),
                        "role": inert(c.role),
                    }
                    for c in credits_for(self.config, list(item.ambassadors))
                ],
                "messages": [
                    {"href": f"{self.base}/messages/{m}", "title": titles[m]}
                    for m in item.messages
                    if m in titles
                ],
                "excerpt": inert(item.excerpt),
            }
            for item in found.items
        ]

    def _lib_found(self, found: library_stage.Found) -> dict[str, Any]:
        return {
            "count": self.t.ngettext("%(num)d item", "%(num)d items", found.total)
            % {"num": found.total},
            "entries": self._lib_items(found),
        }

    def _lib_pager(self, ask: _Ask, found: library_stage.Found) -> dict[str, Any]:
        """Links to the previous and next page, keeping the filters."""
        if ask.what == "message":
            path, params = f"/messages/{ask.filters.message}", dict[str, str]()
        elif ask.what == "ambassador":
            path, params = f"/ambassadors/{ask.filters.ambassador}", dict[str, str]()
        else:
            path, params = "/library", ask.filters.params()

        def link(page: int) -> str:
            query = urlencode({**params, "page": str(page)} if page > 1 else params)
            return f"{self.base}{path}" + (f"?{query}" if query else "")

        return {
            "previous": link(found.page - 1) if found.page > 1 else "",
            "next": link(found.page + 1) if found.page < found.pages else "",
            "where": self.t.gettext("Page %(page)d of %(pages)d")
            % {"page": found.page, "pages": found.pages},
        }

    def _lib_form(self, filters: library_stage.Filters) -> dict[str, Any]:
        """The search form's fields, with the filters now in force chosen."""
        t = self.t
        return {
            "q": filters.q,
            "year": str(filters.year or ""),
            "selects": [
                {
                    "name": "message",
                    "label": t.gettext("Message"),
                    "options": [(m.id, inert(m.title)) for m in self.config.message],
                    "chosen": filters.message or "",
                },
                {
                    "name": "ambassador",
                    "label": t.gettext("Ambassador"),
                    "options": [(a.id, inert(a.name)) for a in self.config.ambassador],
                    "chosen": filters.ambassador or "",
                },
                {
                    "name": "kind",
                    "label": t.gettext("Kind"),
                    "options": [(k.value, self._lib_kind(k)) for k in Kind],
                    "chosen": filters.kind.value if filters.kind else "",
                },
            ],
            "all": t.gettext("All"),
        }

    def _lib_plan(self, store: Store, ambassador_id: str) -> dict[str, Any]:
        """This year's plan against actual for one ambassador: the open report's numbers."""
        from .. import report as report_stage

        built = report_stage.build(self.config, store=store)
        words = report_stage.Words(built.language)
        [row] = [r for r in built.ambassadors if r.id == ambassador_id]
        return {
            "title": words.compact(built.year),
            "columns": [words[c] for c in ("actual", "expected", "plan", "gap")],
            "kind_word": words["ambassador"],
            "rows": [
                {
                    "kind": words[k],
                    "cells": [
                        str(row.actual[k]),
                        words.number(row.expected_by_now[k]),
                        str(row.plan[k]),
                        words.gap(row.gap(k)),
                    ],
                }
                for k in report_stage.KINDS
            ],
        }

    def _lib_meetings(self, ambassador_id: str) -> list[dict[str, str]]:
        """The ambassador's meetings in the next edition's window (pipeline.edition's)."""
        language = self.config.newsletter.language
        tz = self.config.newsletter.tz
        return [
            {
                "title": inert(m.title),
                "date": long_date(m.start.astimezone(tz), language),
                "time": m.start.astimezone(tz).strftime("%H:%M"),
                "iso": m.start.isoformat(),
                "location": inert(m.location),
                "link": safe_link(m.url),
            }
            for m in upcoming_meetings(self.config, datetime.now(UTC))
            if any(c.id == ambassador_id for c in m.credits)
        ]

    # -- the feeds -------------------------------------------------------------------------

    def _lib_atom(self, store: Store, ask: _Ask) -> str:
        """Atom 1.0: the newest page of the list, each entry linking to the original."""
        config = self.config
        nl = config.newsletter
        filters = ask.filters
        found = library_stage.find(store, config, filters)
        public = nl.public_url.rstrip("/")
        if ask.what == "message.atom":
            title = inert(self._lib_message(filters.message or "")["title"])
            page = f"{public}/messages/{filters.message}"
            self_url = f"{page}.atom"
        elif ask.what == "ambassador.atom":
            title = inert(config.ambassador_by_id()[filters.ambassador or ""].name)
            page = f"{public}/ambassadors/{filters.ambassador}"
            self_url = f"{page}.atom"
        else:
            query = urlencode(filters.params())
            title = self.t.gettext("The library")
            page = f"{public}/library" + (f"?{query}" if query else "")
            self_url = f"{public}/library.atom" + (f"?{query}" if query else "")
        host = urlsplit(nl.public_url).hostname or "localhost"
        updated = found.items[0].date if found.items else datetime.now(UTC)
        lines = [
            '<?xml version="1.0" encoding="utf-8"?>',
            f'<feed xmlns="http://www.w3.org/2005/Atom" xml:lang={quoteattr(nl.language)}>',
            f"  <id>{escape(page)}</id>",
            f"  <title>{escape(f'{title} · {inert(nl.title)}')}</title>",
            f"  <updated>{rfc3339(updated)}</updated>",
            f"  <author><name>{escape(inert(nl.sender_name))}</name></author>",
            f'  <link rel="self" type="application/atom+xml" href={quoteattr(self_url)}/>',
            f'  <link rel="alternate" type="text/html" href={quoteattr(page)}/>',
        ]
        titles = {m.id: inert(m.title) for m in config.message}
        for item in found.items:
            lines += _entry(item, host, config, titles)
        lines.append("</feed>\n")
        return "\n".join(lines)


def _entry(item: LibraryItem, host: str, config: Config, titles: dict[str, str]) -> list[str]:
    # A tag URI: the same for this item forever, even if public_url moves.
    entry_id = f"tag:{host},{item.date.astimezone(UTC).date().isoformat()}:item-{item.id}"
    link = safe_link(item.link)
    lines = [
        "  <entry>",
        f"    <id>{escape(entry_id)}</id>",
        f"    <title>{escape(xml_text(inert(item.title)))}</title>",
        f"    <updated>{rfc3339(item.date)}</updated>",
    ]
    if item.published:
        lines.append(f"    <published>{rfc3339(item.published)}</published>")
    if link:
        lines.append(f'    <link rel="alternate" type="text/html" href={quoteattr(link)}/>')
    lines += [
        f"    <author><name>{escape(xml_text(inert(c.name)))}</name></author>"
        for c in credits_for(config, list(item.ambassadors))
    ]
    lines += [
        f"    <category term={quoteattr(m)} label={quoteattr(xml_text(titles[m]))}/>"
        for m in item.messages
        if m in titles
    ]
    lines += [f"    <summary>{escape(xml_text(inert(item.excerpt)))}</summary>", "  </entry>"]
    return lines
