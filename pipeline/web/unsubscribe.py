"""Unsubscribing: a page with a button for a GET, at once for a POST (RFC 8058 one-click)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from .. import tokens
from ..store import Store
from .app import Core

logger = logging.getLogger("pipeline.web")  # one name for the whole web side, as before


class Unsubscribe(Core):
    """The unsubscribe pages."""

    async def unsubscribe(self, request: Request) -> Response:
        token = request.path_params["token"]
        t = self.t
        subscriber_id = tokens.verify(self.secret, "unsubscribe", token)
        post = request.method == "POST"

        def act(store: Store) -> bool:
            if subscriber_id is None or store.subscriber_by_id(subscriber_id) is None:
                return False
            if post:
                with self.writing:
                    store.unsubscribe(subscriber_id, now=datetime.now(UTC))
                logger.info("Subscriber %d unsubscribed through the web", subscriber_id)
            return True

        if not await self.db(act):
            return self.not_found()
        if post:  # RFC 8058: 200, never a redirect, whatever the body
            return self.message(
                t.gettext("You are unsubscribed"),
                t.gettext("You will get no more messages from %(title)s.")
                % {"title": self.config.newsletter.title},
                link=(f"{self.base}/", t.gettext("Changed your mind? Subscribe again")),
            )
        return self.page(
            "unsubscribe.html",
            page_title=t.gettext("Unsubscribe"),
            action=f"{self.base}/unsubscribe/{token}",
        )

    async def unsubscribe_help(self, request: Request) -> Response:
        t = self.t
        return self.message(
            t.gettext("Unsubscribe"),
            t.gettext(
                "Use the unsubscribe link at the bottom of a newsletter you received: each "
                "reader's message has a link of its own. Copies in the archive have none."
            ),
            link=(f"{self.base}/archive", t.gettext("Past editions")),
        )
