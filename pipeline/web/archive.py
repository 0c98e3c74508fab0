"""The archive: the list of editions readers have, one edition as sent (with nothing personal
in it), and the same as an Atom feed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit
from xml.sax.saxutils import escape, quoteattr

from babel.dates import format_date
from starlette.requests import Request
from starlette.responses import Response

from .. import tokens
from ..config import Config
from ..models import inert
from ..render import archived_copy, personalise
from ..store import Store
from .app import ARCHIVE_CACHE, Core, OnDemand, _kept, content_security_policy
from .atom import ATOM_TYPE, rfc3339

ARCHIVE_KEPT = 64
"""Archived editions kept ready to serve, in memory."""


class Archive(Core):
    """The archive's pages and feed, built on demand."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        # Keyed by the published editions' mark (Changes): kept until an edition is published.
        self.archive_page = OnDemand("the archive", self._archive, fresh_for=None)
        self.atom_feed = OnDemand("the archive's feed", self._atom, fresh_for=None)
        self.archived = OnDemand(
            "an archived edition", self._edition, fresh_for=None, kept=ARCHIVE_KEPT
        )
        """Archived editions as served (their HTML and CSP), by id: frozen, so kept."""

    def _date(self, value: datetime) -> str:
        nl = self.config.newsletter
        return format_date(value.astimezone(nl.tz), "long", locale=nl.language)

    def published(self) -> tuple[int, int | None]:
        """The published editions' mark, as the event loop last saw it (no thread)."""
        mark: tuple[int, int | None] = self.changes.mark(
            "the published editions", lambda store: store.published_mark()
        )
        return mark

    async def archive(self, request: Request) -> Response:
        page = await self.archive_page.get(self.published())
        assert page is not None
        return _kept(page)

    async def _archive(self, _: tuple[int, int | None]) -> tuple[str, str]:
        def build(store: Store) -> tuple[str, str]:
            editions = store.published_editions()
            page = self.render(
                "archive.html",
                current="archive",
                page_title=self.t.gettext("Past editions"),
                editions=[
                    {
                        "id": e.id,
                        "subject": inert(e.subject),
                        "date": self._date(e.created),
                        "iso": e.created.isoformat(),
                    }
                    for e in editions
                ],
            )
            return page, content_security_policy(page)

        return await self.db(build, limiter=self.builders)

    async def edition(self, request: Request) -> Response:
        edition_id = tokens.url_id(request.path_params["id"])
        served = None if edition_id is None else await self.archived.get(edition_id)
        if served is None:
            return self.not_found()
        return _kept(served)

    async def _edition(self, edition_id: int) -> tuple[str, str] | None:
        def build(store: Store) -> tuple[str, str] | None:
            found = store.published_edition(edition_id)
            if found is None:
                return None
            # The per-reader parts filled with neutral values: no name, and an unsubscribe
            # link to a page that says to use one's own message; then the site's navigation
            # on top and a footer for a visitor in place of the subscriber's.
            neutral = personalise(
                found[1], unsubscribe_url=tokens.neutral_unsubscribe_url(self.config)
            )
            page = archived_copy(
                neutral.html,
                style=self.render("nav.css", width="600px"),
                top=self.render("nav.html"),
                footer=self.render("archived_footer.html"),
            )
            return page, content_security_policy(page, self.img_src)

        return await self.db(build, limiter=self.builders)

    async def atom(self, request: Request) -> Response:
        feed = await self.atom_feed.get(self.published())
        assert feed is not None
        return Response(feed, media_type=ATOM_TYPE, headers={"Cache-Control": ARCHIVE_CACHE})

    async def _atom(self, _: tuple[int, int | None]) -> bytes:
        editions = await self.db(lambda store: store.published_editions(), limiter=self.builders)
        nl = self.config.newsletter
        host = urlsplit(nl.public_url).hostname or "localhost"
        updated = editions[0].created if editions else datetime.now(UTC)
        lines = [
            '<?xml version="1.0" encoding="utf-8"?>',
            f'<feed xmlns="http://www.w3.org/2005/Atom" xml:lang={quoteattr(nl.language)}>',
            f"  <id>{escape(tokens.archive_url(self.config))}</id>",
            f"  <title>{escape(nl.title)}</title>",
            f"  <updated>{rfc3339(updated)}</updated>",
            f"  <author><name>{escape(nl.sender_name)}</name></author>",
            f'  <link rel="self" type="application/atom+xml" '
            f"href={quoteattr(tokens.archive_feed_url(self.config))}/>",
            '  <link rel="alternate" type="text/html" '
            f"href={quoteattr(tokens.archive_url(self.config))}/>",
        ]
        for e in editions:
            url = tokens.archive_url(self.config, e.id)
            # A tag URI: the same for this edition forever, even if public_url moves.
            entry_id = f"tag:{host},{e.created.astimezone(UTC).date().isoformat()}:edition-{e.id}"
            lines += [
                "  <entry>",
                f"    <id>{escape(entry_id)}</id>",
                f"    <title>{escape(inert(e.subject))}</title>",
                f"    <updated>{rfc3339(e.created)}</updated>",
                f"    <published>{rfc3339(e.created)}</published>",
                f'    <link rel="alternate" type="text/html" href={quoteattr(url)}/>',
                f"    <summary>{escape(inert(e.subject))}</summary>",
                "  </entry>",
            ]
        lines.append("</feed>\n")
        return "\n".join(lines).encode()
