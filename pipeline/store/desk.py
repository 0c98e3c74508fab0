"""The editorial desk's tables: the draft of the next edition, its items, the editors' choices
about items, and every action taken (see migration 0010_editorial_desk)."""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ..models import Credit, DeskAction, DeskDraft, DeskItem, DeskVerb, DraftState, Meeting
from .db import Database, _opt, iso, parse_iso
from .items import _item

BY_TRNEWS = "trnews"
"""Who the desk's own entries (made, rebuilt, sent, awaiting) are by."""


class Desk(Database):
    """Drafts, their items and the actions taken on them."""

    def current_draft(self) -> DeskDraft | None:
        """The draft not yet sent, if there is one (there is at most one)."""
        row = self._q("SELECT * FROM drafts WHERE state != 'sent'").fetchone()
        return self._draft(row) if row is not None else None

    def draft(self, draft_id: int, *, actions: bool = True) -> DeskDraft | None:
        """One draft; without `actions`, its record of actions is left unread (an action
        only needs the draft's items and state, and a busy draft has hundreds)."""
        row = self._q("SELECT * FROM drafts WHERE id = ?", (draft_id,)).fetchone()
        return self._draft(row, actions=actions) if row is not None else None

    def save_draft(
        self,
        *,
        now: datetime,
        items: Iterable[int],
        meetings: Iterable[Meeting],
        new_meetings: Iterable[str],
        editors: Iterable[str],
        send_at: datetime | None,
    ) -> tuple[int, bool]:
        """Store the draft of the next edition: a new one, or the current one rebuilt. A rebuilt
        draft keeps every item it offered (and the choices about them, the lead, the note and
        its state) and adds `items`; an approved draft that gains items is open again, as what
        was approved is no longer what would be sent. Returns the draft's id and whether it is
        new."""
        meetings_json = json.dumps([_meeting_json(m) for m in meetings], ensure_ascii=False)
        new_json = json.dumps(list(new_meetings), ensure_ascii=False)
        editors_json = json.dumps(list(editors), ensure_ascii=False)
        ids = list(dict.fromkeys(items))
        with self.transaction():
            row = self._q("SELECT id, state FROM drafts WHERE state != 'sent'").fetchone()
            if row is None:
                cur = self._q(
                    """INSERT INTO drafts (nonce, created, built, state, meetings, new_meetings,
                                           editors, send_at)
                       VALUES (?, ?, ?, 'open', ?, ?, ?, ?)""",
                    (
                        secrets.token_urlsafe(12),
                        iso(now),
                        iso(now),
                        meetings_json,
                        new_json,
                        editors_json,
                        iso(send_at) if send_at else None,
                    ),
                )
                draft_id, new = int(cur.lastrowid or 0), True
            else:
                draft_id, new = int(row["id"]), False
                self._q(
                    """UPDATE drafts SET built = ?, meetings = ?, new_meetings = ?, editors = ?,
                           send_at = coalesce(?, send_at)
                       WHERE id = ?""",
                    (
                        iso(now),
                        meetings_json,
                        new_json,
                        editors_json,
                        iso(send_at) if send_at else None,
                        draft_id,
                    ),
                )
            added = 0
            for item_id in ids:
                added += self._q(
                    "INSERT OR IGNORE INTO draft_items (draft_id, item_id) VALUES (?, ?)",
                    (draft_id, item_id),
                ).rowcount
            text = f"{len(ids)} items" if new else f"{added} new items"
            self._action(draft_id, "draft" if new else "rebuilt", by=BY_TRNEWS, now=now, text=text)
            if not new and added and row["state"] == DraftState.APPROVED:
                self._q("UPDATE drafts SET state = 'open' WHERE id = ?", (draft_id,))
                self._action(
                    draft_id, "reopened", by=BY_TRNEWS, now=now, text="new items since approval"
                )
        return draft_id, new

    def desk_act(
        self,
        draft_id: int,
        verb: DeskVerb,
        *,
        by: str,
        now: datetime,
        item: int | None = None,
        text: str = "",
    ) -> bool:
        """Do one editor's action on a draft not yet sent, and record it; False when the draft
        is sent (or gone) and nothing was done. Each action writes only what it changes, in
        one transaction, so two editors acting at once keep each other's choices."""
        with self.transaction():
            row = self._q(
                "SELECT state, lead_item FROM drafts WHERE id = ? AND state != 'sent'",
                (draft_id,),
            ).fetchone()
            if row is None:
                return False
            if verb in (DeskVerb.DROP, DeskVerb.KEEP, DeskVerb.LEAD):
                assert item is not None
                dropped = 1 if verb is DeskVerb.DROP else 0
                self._q(
                    """INSERT INTO desk_choices (item_id, dropped, by, at) VALUES (?, ?, ?, ?)
                       ON CONFLICT (item_id) DO UPDATE SET
                           dropped = excluded.dropped, by = excluded.by, at = excluded.at""",
                    (item, dropped, by, iso(now)),
                )
                if verb is DeskVerb.LEAD:
                    self._q("UPDATE drafts SET lead_item = ? WHERE id = ?", (item, draft_id))
                elif verb is DeskVerb.DROP and row["lead_item"] == item:
                    self._q("UPDATE drafts SET lead_item = NULL WHERE id = ?", (draft_id,))
            elif verb is DeskVerb.NOTE:
                self._q("UPDATE drafts SET note = ? WHERE id = ?", (text, draft_id))
            elif verb is DeskVerb.APPROVE:
                self._q("UPDATE drafts SET state = 'approved' WHERE id = ?", (draft_id,))
            elif verb is DeskVerb.HOLD:
                self._q("UPDATE drafts SET state = 'held' WHERE id = ?", (draft_id,))
            self._action(draft_id, verb.value, by=by, now=now, item=item, text=text)
        return True

    def clear_lead(self, draft_id: int, *, by: str, now: datetime) -> bool:
        """No item first (`trnews desk lead --none`); False when the draft is sent."""
        with self.transaction():
            cur = self._q(
                "UPDATE drafts SET lead_item = NULL WHERE id = ? AND state != 'sent'", (draft_id,)
            )
            if not cur.rowcount:
                return False
            self._action(draft_id, DeskVerb.LEAD.value, by=by, now=now, text="none")
        return True

    def draft_awaiting(self, draft_id: int, slot: datetime | None, *, now: datetime) -> bool:
        """Note (or clear, with None) the scheduled send that found the draft not ready; True
        when this is news (the slot was not noted already), so the editors are told once."""
        with self.transaction():
            cur = self._q(
                """UPDATE drafts SET awaiting = ?
                   WHERE id = ? AND awaiting IS NOT ? AND state != 'sent'""",
                (iso(slot) if slot else None, draft_id, iso(slot) if slot else None),
            )
            if cur.rowcount and slot is not None:
                self._action(draft_id, "awaiting", by=BY_TRNEWS, now=now, text=iso(slot))
            return bool(cur.rowcount)

    def mark_draft_sent(self, draft_id: int, edition_id: int, *, now: datetime) -> None:
        """The draft became this edition: its desk links die."""
        self._q(
            "UPDATE drafts SET state = 'sent', edition_id = ?, awaiting = NULL WHERE id = ?",
            (edition_id, draft_id),
        )
        self._action(draft_id, "sent", by=BY_TRNEWS, now=now, text=str(edition_id))

    def _action(
        self,
        draft_id: int,
        action: str,
        *,
        by: str,
        now: datetime,
        item: int | None = None,
        text: str = "",
    ) -> None:
        self._q(
            """INSERT INTO desk_actions (draft_id, action, item_id, text, by, at)
               VALUES (?, ?, ?, ?, ?, ?)""",
            (draft_id, action, item, text, by, iso(now)),
        )

    def _draft(self, row: sqlite3.Row, *, actions: bool = True) -> DeskDraft:
        draft_id = int(row["id"])
        items = self._q(
            """SELECT i.*, coalesce(dc.dropped, 0) AS dropped,
                      (SELECT group_concat(ia.ambassador_id, char(31)) FROM item_ambassadors ia
                       WHERE ia.item_id = i.id) AS ambassadors
               FROM draft_items di JOIN items i ON i.id = di.item_id
               LEFT JOIN desk_choices dc ON dc.item_id = i.id
               WHERE di.draft_id = :draft AND (:sent OR (
                   NOT EXISTS (SELECT 1 FROM edition_items ei WHERE ei.item_id = i.id)
                   AND NOT EXISTS (SELECT 1 FROM left_out_items lo WHERE lo.item_id = i.id)))
               ORDER BY i.date DESC, i.id DESC""",
            {"draft": draft_id, "sent": row["state"] == DraftState.SENT},
        ).fetchall()
        done = (
            self._q(
                "SELECT * FROM desk_actions WHERE draft_id = ? ORDER BY id", (draft_id,)
            ).fetchall()
            if actions
            else []
        )
        return DeskDraft(
            id=draft_id,
            nonce=row["nonce"],
            created=parse_iso(row["created"]),
            built=parse_iso(row["built"]),
            state=DraftState(row["state"]),
            items=tuple(
                DeskItem(
                    _item(r),
                    bool(r["dropped"]),
                    tuple(sorted((r["ambassadors"] or "").split("\x1f")))
                    if r["ambassadors"]
                    else (),
                )
                for r in items
            ),
            meetings=tuple(_meeting(m) for m in json.loads(row["meetings"])),
            new_meetings=tuple(json.loads(row["new_meetings"])),
            lead=row["lead_item"],
            note=row["note"],
            actions=tuple(
                DeskAction(
                    action=a["action"],
                    by=a["by"],
                    at=parse_iso(a["at"]),
                    item=a["item_id"],
                    text=a["text"],
                )
                for a in done
            ),
            editors=tuple(json.loads(row["editors"])),
            send_at=_opt(row["send_at"]),
            awaiting=_opt(row["awaiting"]),
            edition_id=row["edition_id"],
        )


def _meeting_json(m: Meeting) -> dict[str, Any]:
    return {
        "key": m.key,
        "title": m.title,
        "start": iso(m.start),
        "end": iso(m.end) if m.end else None,
        "location": m.location,
        "url": m.url,
        "description": m.description,
        "credits": [[c.id, c.name, c.role] for c in m.credits],
    }


def _meeting(d: dict[str, Any]) -> Meeting:
    return Meeting(
        key=d["key"],
        title=d["title"],
        start=parse_iso(d["start"]),
        end=_opt(d["end"]),
        location=d["location"],
        url=d["url"],
        description=d["description"],
        credits=tuple(Credit(*c) for c in d["credits"]),
    )
