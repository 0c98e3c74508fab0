"""The editor's desk page: `GET /desk/{token}` shows the draft of the next edition with a
control for each of the desk's actions, `POST /desk/{token}` does one (post/redirect/get), and
`GET /desk/{token}/preview` shows the draft as subscribers will get it. SPEC.md "The editorial
desk"; the rules are pipeline/desk.py's, this only shows and asks.

The token is the key: the page is per editor and per draft, never kept by the site (`_kept`)
nor by any cache, never indexed, and no link on it sends the token on as a Referer.
"""

from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from .. import desk, tokens
from ..errors import UsageError
from ..models import DeskAction, DeskDraft, DeskVerb, DraftState, Item, inert
from ..render import Formatter, personalise, with_top
from ..store import Store
from .app import Core, content_security_policy, read_form

logger = logging.getLogger("pipeline.web")  # one name for the whole web side, as before

PRIVATE = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
}
"""On every desk answer: its URL holds an editor's key."""
FORM_BYTES = 24 * 1024
"""The desk's form body cap: a note of NOTE_MAX characters, each up to 9 bytes urlencoded."""


class Problem(Exception):
    """A desk form that asks for something the draft does not allow, in the page's words."""


class Desk(Core):
    """The editors' pages: one draft, one editor, by the token in the URL."""

    @functools.cached_property
    def _fmt(self) -> Formatter:
        nl = self.config.newsletter
        return Formatter(nl.language, nl.tz)

    def _when(self, value: datetime) -> str:
        return self._fmt.when(value, None)

    # -- GET -------------------------------------------------------------------------------

    async def desk(self, request: Request) -> Response:
        token = request.path_params["token"]

        def show(store: Store) -> str | None:
            found = desk.editor_of(self.config, store, token, secret=self.secret)
            if found is None:
                return None
            draft, editor = found
            return self.render("desk.html", **self._view(store, draft, editor, token))

        page = await self.db(show)
        if page is None:
            return self._private(self.not_found())
        return self._private(
            HTMLResponse(page, headers={"Content-Security-Policy": content_security_policy(page)})
        )

    def _view(self, store: Store, draft: DeskDraft, editor: str, token: str) -> dict[str, Any]:
        t = self.t
        now = datetime.now(UTC)
        plan = desk.edition_plan(self.config, store, draft, now)
        by_id = {d.item.id: d for d in draft.items}
        names = {a.id: a.name for a in self.config.ambassador}

        def entry(item: Item, *, dropped: bool = False, shown: bool = True) -> dict[str, Any]:
            held = by_id.get(item.id)
            who = held.ambassadors if held else tuple(c.id for c in item.credits)
            return {
                "id": item.id,
                "title": inert(item.title),
                "link": item.link,
                "by": ", ".join(inert(names.get(a, a)) for a in who),
                "date": self._when(item.date),
                "lead": item.id == plan.lead,
                "dropped": dropped,
                "shown": shown,
            }

        lead = plan.lead_item
        sections = [
            (t.gettext("Featured"), [entry(lead)] if lead else []),
            (t.gettext("Chronicles"), [entry(i) for i in plan.chronicles]),
            (t.gettext("Blog posts"), [entry(i) for i in plan.blog_posts]),
            (t.gettext("Videos"), [entry(i) for i in plan.videos]),
            (
                t.gettext("Not shown: over the edition's limit"),
                [entry(i, shown=False) for i in plan.overflow],
            ),
            (
                t.gettext("Left out"),
                [entry(d.item, dropped=True) for d in draft.items if d.dropped],
            ),
        ]
        return {
            "page_title": t.gettext("The editorial desk"),
            "editor": editor,
            "action": f"{self.base}/desk/{token}",
            "preview": f"{self.base}/desk/{token}/preview",
            "state": draft.state.value,
            "status": self._status(draft),
            "sections": [(heading, items) for heading, items in sections if items],
            "empty": not draft.items,
            "meetings": [
                {
                    "title": inert(m.title),
                    "when": self._fmt.when(m.start, m.end),
                    "location": inert(m.location),
                }
                for m in plan.meetings
            ],
            "note": draft.note,
            "note_max": desk.NOTE_MAX,
            "actions": [self._done(a, by_id) for a in reversed(draft.actions)],
        }

    def _status(self, draft: DeskDraft) -> list[str]:
        """What the page says first: where the draft stands and when it is sent."""
        t = self.t
        when = self._when(draft.send_at) if draft.send_at else None
        approve = self.config.editorial.mode == "approve"
        if draft.state is DraftState.HELD:
            who = draft.last_by(DeskVerb.HOLD) or ""
            return [
                t.gettext("Held by %(editor)s: it is not sent until an editor approves it.")
                % {"editor": who}
            ]
        if draft.state is DraftState.APPROVED:
            who = draft.last_by(DeskVerb.APPROVE) or ""
            first = t.gettext("Approved by %(editor)s.") % {"editor": who}
            second = (
                t.gettext("It is sent %(when)s.") % {"when": when}
                if when
                else t.gettext("It is sent when an admin runs the send.")
            )
            return [first, second]
        lines = desk.ask_lines(self.config, draft, t)[:2]
        if approve:
            lines[0] = t.gettext("Awaiting approval: it is sent only once an editor approves it.")
        return lines

    def _done(self, a: DeskAction, by_id: dict[int, Any]) -> dict[str, str]:
        """One recorded action in the page's words."""
        t = self.t
        title = inert(by_id[a.item].item.title) if a.item in by_id else ""
        what = {
            "drop": t.gettext("left out “%(title)s”"),
            "keep": t.gettext("kept “%(title)s”"),
            "lead": t.gettext("put “%(title)s” first"),
            "approve": t.gettext("approved the draft"),
            "hold": t.gettext("held the draft"),
            "draft": t.gettext("made the draft"),
            "rebuilt": t.gettext("rebuilt the draft with the items due since"),
            "reopened": t.gettext("reopened the draft: new items since the approval"),
            "awaiting": t.gettext("found the draft not ready at a scheduled send"),
            "sent": t.gettext("sent the draft as an edition"),
        }.get(a.action, a.action)
        if a.action == "lead" and a.item is None:
            what = t.gettext("put no item first")
        elif a.action == "note":
            what = t.gettext("wrote the note") if a.text else t.gettext("cleared the note")
        by = {"cli": t.gettext("an admin (command line)"), "trnews": "trnews"}.get(a.by, a.by)
        return {
            "what": what % {"title": title} if "%(title)s" in what else what,
            "by": by,
            "when": self._when(a.at),
            "iso": a.at.isoformat(),
        }

    # -- POST ------------------------------------------------------------------------------

    async def desk_post(self, request: Request) -> Response:
        t = self.t
        token = request.path_params["token"]
        if self.cross_site(request):
            return self._private(
                self.message(
                    t.gettext("Use the desk page itself"),
                    t.gettext("The desk's buttons work only on the desk page itself."),
                    status=403,
                )
            )
        fields = await read_form(request, FORM_BYTES)

        def act(store: Store) -> str | None:
            found = desk.editor_of(self.config, store, token, secret=self.secret, actions=False)
            if found is None:
                return None
            draft, editor = found
            if fields is None:
                raise Problem(t.gettext("The form could not be read. Try again."))
            with self.writing:
                self._act(store, draft, editor, fields)
            return editor

        try:
            done = await self.db(act)
        except Problem as e:
            return self._private(
                self.message(
                    t.gettext("That could not be done"),
                    str(e),
                    status=400,
                    link=(f"{self.base}/desk/{token}", t.gettext("Back to the desk")),
                )
            )
        if done is None:
            return self._private(self.not_found())
        # Post/redirect/get: a reload shows the page again and never repeats the action.
        anchor = f"#item-{fields['item']}" if fields and fields.get("item", "").isdigit() else ""
        return self._private(RedirectResponse(f"{self.base}/desk/{token}{anchor}", 303))

    def _act(self, store: Store, draft: DeskDraft, editor: str, fields: dict[str, str]) -> None:
        """Do what the form asks, as `editor`; Problem names what is wrong, in the page's words."""
        t = self.t
        now = datetime.now(UTC)
        try:
            verb = DeskVerb(fields.get("action", ""))
        except ValueError:
            raise Problem(
                t.gettext("The desk has no such button. Go back and try again.")
            ) from None
        raw = fields.get("item", "").strip()
        item = tokens.url_id(raw) if raw else None
        if verb is DeskVerb.LEAD and not raw:
            store.clear_lead(draft.id, by=editor, now=now)
            return
        if verb in (DeskVerb.DROP, DeskVerb.KEEP, DeskVerb.LEAD) and (
            item is None or item not in {d.item.id for d in draft.items}
        ):
            raise Problem(
                t.gettext("Item %(item)s is not in this draft. Reload the desk page and try again.")
                % {"item": raw[:20] or "–"}
            )
        text = fields.get("text", "")
        if verb is DeskVerb.NOTE and len(text.strip()) > desk.NOTE_MAX:
            raise Problem(
                t.gettext("The note is too long: at most %(max)d characters fit.")
                % {"max": desk.NOTE_MAX}
            )
        try:
            desk.act(store, draft, verb, by=editor, now=now, item=item, text=text)
        except UsageError as e:  # a rule of the desk's that the checks above did not foresee
            raise Problem(str(e)) from None

    # -- the preview -------------------------------------------------------------------------

    async def desk_preview(self, request: Request) -> Response:
        token = request.path_params["token"]
        t = self.t

        def build(store: Store) -> str | None:
            found = desk.editor_of(self.config, store, token, secret=self.secret)
            if found is None:
                return None
            draft, _ = found
            rendered = desk.render(self.config, store, draft, datetime.now(UTC)).rendered
            html = personalise(
                rendered, unsubscribe_url=tokens.preview_unsubscribe_url(self.config)
            ).html
            bar = {
                "home": f"{self.base}/desk/{token}",
                "title": t.gettext("Preview of the draft"),
                "label": t.gettext("The editorial desk"),
                "links": [
                    {
                        "key": "desk",
                        "href": f"{self.base}/desk/{token}",
                        "text": t.gettext("Back to the desk"),
                    }
                ],
                "colours": self.common["colours"],
                "current": "",
            }
            return with_top(
                html,
                style=self.render("nav.css", width="600px", site=bar),
                top=self.render("nav.html", site=bar),
            )

        page = await self.db(build)
        if page is None:
            return self._private(self.not_found())
        policy = content_security_policy(page, self.img_src)
        return self._private(HTMLResponse(page, headers={"Content-Security-Policy": policy}))

    @staticmethod
    def _private(response: Response) -> Response:
        response.headers.update(PRIVATE)
        return response
