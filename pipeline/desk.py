"""The editorial desk (`[editorial]`): the draft of the next edition, what the editors decide
about it, and the edition frozen from it.

A draft is the next edition built by the usual rules (pipeline.edition), stored with the items it
offers and a snapshot of its meetings, and mailed to each editor with a link to their own desk
page. The editors leave items out, keep them again, put one first, write a note, approve or
hold. The edition `send` freezes is the draft with those choices: items collected after the
draft wait for the next edition, and a dropped item never goes out unless kept again.

The CLI (`trnews draft`, `trnews desk`), the web page (`/desk/{token}`), `send` and the
scheduler all come here; none has rules of its own.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import tokens
from .config import Config
from .errors import AwaitingEditors, UsageError
from .models import (
    DeskDraft,
    DeskVerb,
    DraftState,
    EditionPlan,
    Item,
    RenderedEdition,
)
from .sanitize import clean
from .store import Store

if TYPE_CHECKING:
    from .deliver import Transport

logger = logging.getLogger(__name__)

NOTE_MAX = 2000
"""Characters an editors' note may hold: a word of their own, not an article."""


def next_send(config: Config, now: datetime) -> datetime | None:
    """When the schedule's next send falls due after `now`, if it names one."""
    from .cron import WallClock

    slot = WallClock(config.schedule.send, config.newsletter.tz).next_slot(now)
    return slot.at if slot else None


def make_draft(
    config: Config, store: Store, now: datetime, *, send_at: datetime | None = None
) -> DeskDraft | None:
    """Build the draft of the next edition now, or rebuild the current one keeping the editors'
    choices (its items stay, the items due since are added). None when there is no draft and
    nothing new to make one of (unless `send_when_empty`)."""
    from .edition import plan_edition

    plan = plan_edition(config, store, now)
    current = store.current_draft()
    if current is None and not plan.has_news and not config.schedule.send_when_empty:
        return None
    # The items dropped before stay on offer, left out, within the lookback: kept again, they
    # go out (a dropped item is never due of itself).
    dropped = store.dropped_items(since=now - timedelta(days=config.newsletter.lookback_days))
    draft_id, new = store.save_draft(
        now=now,
        items=[*(i.id for i in (*plan.items, *plan.overflow)), *dropped],
        meetings=plan.meetings,
        new_meetings=plan.new_meetings,
        editors=config.editorial.editors,
        send_at=send_at or next_send(config, now),
    )
    draft = store.draft(draft_id)
    assert draft is not None
    logger.info(
        "%s draft %d: %d items, %d meetings",
        "Made" if new else "Rebuilt",
        draft.id,
        len(draft.items),
        len(draft.meetings),
    )
    return draft


def edition_plan(config: Config, store: Store, draft: DeskDraft, now: datetime) -> EditionPlan:
    """The edition the draft gives with the editors' choices: the items not left out (the lead
    first, then newest first, at most `max_items` shown), the meetings as the draft listed them,
    and the note."""
    from .edition import credits_for

    kept: list[Item] = []
    for d in draft.items:
        if d.dropped:
            continue
        credits = credits_for(config, list(d.ambassadors))
        if credits:  # an ambassador who left the config takes their items along
            kept.append(replace(d.item, credits=credits))
    lead = draft.lead if any(i.id == draft.lead for i in kept) else None
    kept.sort(key=lambda i: i.id != lead)  # stable: the rest stay newest first
    cap = config.newsletter.max_items
    report = None
    if config.report.in_newsletter:
        from .report import build, compact_context

        report = compact_context(build(config, as_of=now, store=store))
    return EditionPlan(
        created=now,
        items=tuple(kept[:cap]),
        overflow=tuple(kept[cap:]),
        meetings=draft.meetings,
        new_meetings=draft.new_meetings,
        previous=store.last_edition_created(),
        report=report,
        lead=lead,
        note=draft.note,
    )


def render(config: Config, store: Store, draft: DeskDraft, now: datetime) -> RenderedEdition:
    """The draft rendered as subscribers will get it."""
    from .render import Renderer

    return Renderer(config).render_edition(edition_plan(config, store, draft, now))


def gate(config: Config, draft: DeskDraft) -> None:
    """Raise AwaitingEditors unless the draft may be sent now: a held draft waits for an
    approval in either mode; in "approve" mode, so does one nobody has approved."""
    mode = config.editorial.mode
    if draft.state is DraftState.HELD:
        who = draft.last_by(DeskVerb.HOLD)
        raise AwaitingEditors(
            draft.id,
            draft.state,
            f"the draft of the next edition (draft {draft.id}) is held at the desk"
            f"{f' by {who}' if who else ''}; nothing was sent. It is sent once an editor "
            "approves it (on the desk page, or 'trnews desk approve')",
        )
    if mode == "approve" and draft.state is not DraftState.APPROVED:
        raise AwaitingEditors(
            draft.id,
            draft.state,
            f"the draft of the next edition (draft {draft.id}) awaits approval; nothing was "
            "sent. An editor approves it on the desk page or with 'trnews desk approve'",
        )


def check_items(draft: DeskDraft, items: Iterable[int | None]) -> None:
    """Raise a UsageError naming the draft's item ids unless every one of `items` is an item
    the draft offers (checked before any of them is acted on)."""
    offered = {d.item.id for d in draft.items}
    for item in items:
        if item is None or item not in offered:
            listed = ", ".join(str(i) for i in sorted(offered)) or "none"
            raise UsageError(
                f"item {item if item is not None else '(none given)'} is not in draft "
                f"{draft.id}; its items are: {listed} (see 'trnews desk')"
            )


# -- the editors' actions ----------------------------------------------------------------------


def act(
    store: Store,
    draft: DeskDraft,
    verb: DeskVerb | str,
    *,
    by: str,
    now: datetime,
    item: int | None = None,
    text: str = "",
) -> None:
    """Do one action on the draft as `by` (an editor's address, or "cli"), after checking it:
    an item must be one the draft offers (items left out of earlier drafts are offered too, see
    `make_draft`); a note is plain text of at most NOTE_MAX characters.
    A UsageError says what is wrong; nothing is changed then."""
    try:
        verb = DeskVerb(verb)
    except ValueError:
        known = ", ".join(v.value for v in DeskVerb)
        raise UsageError(f"unknown desk action {verb!r}; one of: {known}") from None
    if draft.state is DraftState.SENT:
        raise UsageError(f"draft {draft.id} was sent as edition {draft.edition_id}: it is closed")
    if verb in (DeskVerb.DROP, DeskVerb.KEEP, DeskVerb.LEAD):
        check_items(draft, [item])
    text = clean(text).strip() if verb is DeskVerb.NOTE else ""
    if len(text) > NOTE_MAX:
        raise UsageError(f"the note has {len(text)} characters; at most {NOTE_MAX} fit")
    if not store.desk_act(draft.id, verb, by=by, now=now, item=item, text=text):
        raise UsageError(f"draft {draft.id} was sent meanwhile: it is closed")
    logger.info("Desk: %s %s%s on draft %d", by, verb.value, f" {item}" if item else "", draft.id)


# -- what the desk shows -------------------------------------------------------------------------


def as_json(config: Config, draft: DeskDraft) -> dict[str, Any]:
    """`trnews desk --json`: the draft, its items and every action (SPEC's shape)."""
    names = {a.id: a.name for a in config.ambassador}
    return {
        "edition": draft.id,
        "state": draft.state.value,
        "built": draft.built.isoformat(),
        "send_at": draft.send_at.isoformat() if draft.send_at else None,
        "awaiting": draft.awaiting.isoformat() if draft.awaiting else None,
        "items": [
            {
                "id": d.item.id,
                "title": d.item.title,
                "kind": d.item.kind.value,
                "link": d.item.link,
                "ambassadors": [names.get(a, a) for a in d.ambassadors],
                "dropped": d.dropped,
            }
            for d in draft.items
        ],
        "lead": draft.lead,
        "note": draft.note,
        "actions": [
            {
                "action": a.action,
                "by": a.by,
                "at": a.at.isoformat(),
                **({"item": a.item} if a.item is not None else {}),
                **({"text": a.text} if a.text else {}),
            }
            for a in draft.actions
        ],
        "sent_as": draft.edition_id,
    }


def editor_links(config: Config, store: Store, draft: DeskDraft) -> list[tuple[str, str]]:
    """Each editor of the draft with the link to their own desk page."""
    secret = tokens.link_secret(config, store)
    return [
        (address, tokens.desk_url(config, secret, draft.id, draft.nonce, n, address))
        for n, address in enumerate(draft.editors, start=1)
    ]


def editor_of(
    config: Config, store: Store, token: str, *, secret: str | None = None, actions: bool = True
) -> tuple[DeskDraft, str] | None:
    """The draft and the editor a desk link names, or None when the link is malformed, forged,
    of another purpose, or its draft is sent (its links die with it). `secret`: the key that
    signs links, when the caller holds it already (the web side reads it once); `actions`:
    whether the draft's record of actions is wanted (see Store.draft)."""
    claim = tokens.desk_claim(token)
    if claim is None:
        return None
    draft_id, editor = claim
    draft = store.draft(draft_id, actions=actions)
    if draft is None or draft.state is DraftState.SENT or editor > len(draft.editors):
        return None
    address = draft.editors[editor - 1]
    secret = secret or tokens.link_secret(config, store)
    if not tokens.desk_verify(secret, token, draft.id, draft.nonce, editor, address):
        return None
    return draft, address


# -- the mail to the editors -------------------------------------------------------------------


@dataclass(frozen=True)
class Mailed:
    editor: str
    link: str
    error: str | None = None


def mail_editors(
    config: Config,
    store: Store,
    draft: DeskDraft,
    now: datetime,
    *,
    transport: Transport | None = None,
) -> list[Mailed]:
    """Mail each editor the draft as subscribers will get it, under a short header saying what
    is asked of them, by when, and the link to their desk page; signed like every message
    trnews sends. An editor whose server refuses is named in the result; the others still get
    theirs."""
    from .deliver import build_message, notify
    from .errors import DeliveryError
    from .render import personalise
    from .templates import translations, wrap

    rendered = render(config, store, draft, now).rendered
    t = translations(config.newsletter.language)
    unsubscribe = tokens.preview_unsubscribe_url(config)
    content = personalise(rendered, unsubscribe_url=unsubscribe)
    out: list[Mailed] = []
    with notify.Sender(config, transport) as sender:
        for address, link in editor_links(config, store, draft):
            lines = ask_lines(config, draft, t)
            banner_text = "\n".join([*map(wrap, lines), link, "", "-" * 40, "", ""])
            subject = t.gettext("[Draft] %(subject)s") % {"subject": content.subject}
            msg = build_message(
                config,
                replace(
                    content,
                    subject=subject,
                    html=_with_banner(content.html, lines, link, t),
                    text=banner_text + content.text,
                ),
                to=address,
                when=now,
                unsubscribe_url=unsubscribe,
            )
            try:
                sender.send(msg, address)
            except DeliveryError as e:
                logger.warning("Could not mail the draft to the editor %s: %s", address, e)
                out.append(Mailed(address, link, str(e)))
                continue
            logger.info("Mailed draft %d to the editor %s", draft.id, address)
            out.append(Mailed(address, link))
    return out


def ask_lines(config: Config, draft: DeskDraft, t: Any) -> list[str]:
    """What the draft's mail asks of an editor, and by when."""
    when = _local(draft.send_at, config) if draft.send_at else None
    if config.editorial.mode == "approve":
        first = t.gettext(
            "This is the draft of the next edition. It is sent only once an editor approves it."
        )
        second = (
            t.gettext("The next scheduled send is %(when)s.") % {"when": when}
            if when
            else t.gettext("Nothing is scheduled: it is sent when an admin runs the send.")
        )
    else:
        first = t.gettext(
            "This is the draft of the next edition. It is sent as it is unless an editor holds it."
        )
        second = (
            t.gettext("It is sent %(when)s.") % {"when": when}
            if when
            else t.gettext("It is sent when an admin runs the send.")
        )
    third = t.gettext(
        "On your desk page you can leave items out, put one first, add a note, approve or hold:"
    )
    return [first, second, third]


def _with_banner(page: str, lines: Iterable[str], link: str, t: Any) -> str:
    """The edition's HTML with the editor's header first in its body."""
    text = "".join(f'<p style="margin:0 0 6px">{html.escape(line)}</p>' for line in lines)
    label = t.gettext("Open the desk")
    button = (
        f'<p style="margin:8px 0 0"><a href="{html.escape(link)}" '
        'style="display:inline-block;padding:10px 16px;background:#1d1d1b;color:#ffffff;'
        'text-decoration:none;border-radius:4px;font-weight:bold">'
        f"{html.escape(label)}</a></p>"
    )
    banner = (
        '<div style="max-width:600px;margin:0 auto;padding:14px 16px;background:#fff4cc;'
        "color:#1d1d1b;font:15px/1.45 Arial,Helvetica,sans-serif;border-bottom:3px solid "
        f'#1d1d1b">{text}{button}</div>'
    )
    return re.sub(r"<body\b[^>]*>", lambda m: m.group(0) + banner, page, count=1)


def _local(value: datetime, config: Config) -> str:
    from .render import Formatter

    nl = config.newsletter
    fmt = Formatter(nl.language, nl.tz)
    return fmt.when(value, None)
