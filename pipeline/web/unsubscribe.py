"""Unsubscribing: a page with a button for a GET, at once for a POST (RFC 8058 one-click)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from markupsafe import escape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from .. import tokens
from ..config import Config
from ..store import Store
from .app import Core, content_security_policy

logger = logging.getLogger("pipeline.web")  # one name for the whole web side, as before


TOKEN = "@@token@@"
"""Where the reader's token goes in the button page, rendered once."""


class Unsubscribe(Core):
    """The unsubscribe pages: the same words for every reader, so rendered once (in the
    newsletter's language) and kept; a request does the token check and the write."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        t = self.t
        done = self.message(
            t.gettext("You are unsubscribed"),
            t.gettext("You will get no more messages from %(title)s.")
            % {"title": config.newsletter.title},
            link=(f"{self.base}/", t.gettext("Changed your mind? Subscribe again")),
        )
        self.unsubscribed = done.body, dict(done.headers)
        button = self.render(
            "unsubscribe.html",
            page_title=t.gettext("Unsubscribe"),
            action=f"{self.base}/unsubscribe/{TOKEN}",
        )
        before, after = button.split(TOKEN)
        self.button = before, after, content_security_policy(button)
        """The button page around the token, and its policy (the token holds no style)."""

    async def unsubscribe(self, request: Request) -> Response:
        token = request.path_params["token"]
        subscriber_id = tokens.verify(self.secret, "unsubscribe", token)
        if subscriber_id is None:
            return self.not_found()
        post = request.method == "POST"

        def act(store: Store) -> bool:
            if store.subscriber_by_id(subscriber_id) is None:
                return False
            if post:
                with self.writing:
                    store.unsubscribe(subscriber_id, now=datetime.now(UTC))
                logger.info("Subscriber %d unsubscribed through the web", subscriber_id)
            return True

        if not await self.db(act):
            return self.not_found()
        if post:  # RFC 8058: 200, never a redirect, whatever the body
            body, headers = self.unsubscribed
            return HTMLResponse(body, headers=headers)
        before, after, policy = self.button
        return HTMLResponse(
            before + str(escape(token)) + after, headers={"Content-Security-Policy": policy}
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
