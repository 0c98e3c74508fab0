"""The typed values that pass between the stages: collect → store → edition → render → deliver."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PERSONAL_MARK = "@@trnews:"
"""Prefix of the placeholders the rendered edition carries for per-reader values; feed text
never contains it (collect strips it), so only our own placeholders are filled in."""


def inert(text: str) -> str:
    """`text` without the placeholder prefix, so only the template's own placeholders are ever
    filled in with a reader's values. Collect applies it to feed text and render to everything it
    shows. Repeated until gone: removing one copy from "@@trn@@trnews:ews:" leaves another."""
    while PERSONAL_MARK in text:
        text = text.replace(PERSONAL_MARK, "")
    return text


class Kind(enum.StrEnum):
    """What an item is. When two feeds carry the same article, the higher rank wins: a
    chronicle outranks a film, and a film a blog post (a blog's item that links a film)."""

    BLOG = "blog"
    CHRONICLE = "chronicle"
    VIDEO = "video"

    @property
    def rank(self) -> int:
        return _KIND_RANK[self]


_KIND_RANK = {Kind.BLOG: 0, Kind.VIDEO: 1, Kind.CHRONICLE: 2}


class SubscriberState(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"


class EditionStatus(enum.StrEnum):
    SENDING = "sending"
    """Content frozen, recipients queued; `send` resumes it until every row is settled."""
    SENT = "sent"


class DraftState(enum.StrEnum):
    """Where a draft stands at the editorial desk."""

    OPEN = "open"
    """Made and mailed to the editors; nobody has approved or held it yet."""
    APPROVED = "approved"
    HELD = "held"
    """Not sent until an editor approves it, in either mode."""
    SENT = "sent"
    """Frozen into an edition; its desk links are dead."""


class DeskVerb(enum.StrEnum):
    """What an editor can do at the desk (the form's `action`, the CLI's subcommand)."""

    DROP = "drop"
    KEEP = "keep"
    LEAD = "lead"
    NOTE = "note"
    APPROVE = "approve"
    HOLD = "hold"


class DeliveryState(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    """Written just before the message goes on the wire: after a hard kill, the reader may
    have it already; a resumed send sends it again with the same Message-ID."""
    SENT = "sent"
    DEFERRED = "deferred"
    """The server said "try later" (4xx); a later run tries again."""
    FAILED = "failed"
    """The server refused the address for good (5xx)."""
    SKIPPED = "skipped"
    """The reader left (unsubscribed, bounced) after the edition was frozen."""


@dataclass(frozen=True)
class Entry:
    """One entry of one feed, cleaned: plain-text title and excerpt, normalised dates."""

    link: str
    """The entry's link with `utm_*` parameters removed; empty when the feed gives none."""
    key: str
    """What identifies the article across feeds: the normalised link, else the feed's id."""
    title: str
    excerpt: str
    """Plain text, at most about 300 characters, cut at a word boundary."""
    published: datetime | None
    """UTC; None when the feed gives no date or one in the future."""
    author: str
    """The author field as the feed gives it (may name several people)."""


@dataclass(frozen=True)
class FeedResult:
    """What fetching one feed URL gave."""

    url: str
    entries: tuple[Entry, ...] = ()
    not_modified: bool = False
    error: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    status: int | None = None
    """The HTTP status, or None for a local file or a failure before any reply."""
    final_url: str | None = None
    """Where redirects ended, when that differs from `url`."""
    retry_after: datetime | None = None
    """When a 429 or 503 answer asked us to come back (its Retry-After), if not within the run."""
    attempts: int = 1
    """Requests made for this feed in this run: 1, or more after retries."""
    advertised: str | None = None
    """The feed an HTML page names, when the URL gave a page instead of a feed."""

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class FeedOutcome:
    """One line of `trnews collect`: a feed URL and what collecting it did."""

    url: str
    ambassadors: tuple[str, ...]
    new_items: int = 0
    entries: int = 0
    not_modified: bool = False
    error: str | None = None
    moved_to: str | None = None
    status: int | None = None
    """The HTTP status of the last answer, if there was one."""
    attempts: int = 1
    gone_since: datetime | None = None
    """When the feed first answered 410 Gone; it is not fetched again."""
    wait_until: datetime | None = None
    """Its server asked (429 or 503 with Retry-After) not to be fetched before this time."""
    skipped: bool = False
    """Not fetched in this run: gone, or asked to wait."""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def state(self) -> str:
        """How `collect` counts it: "ok", "not modified" or "failed" when fetched; "gone" or
        "waiting" when an earlier answer (410, Retry-After) kept it from being fetched."""
        if self.skipped:
            return "gone" if self.gone_since is not None else "waiting"
        if self.error is not None:
            return "failed"
        return "not modified" if self.not_modified else "ok"


@dataclass(frozen=True)
class Credit:
    """An ambassador named on an item or meeting, as the newsletter shows them."""

    id: str
    name: str
    role: str = ""


@dataclass(frozen=True)
class Item:
    """An article as stored: one per normalised link, whatever feeds carried it."""

    id: int
    key: str
    link: str
    title: str
    excerpt: str
    kind: Kind
    date: datetime
    """Published date (UTC), or when trnews first saw it if the feed gave none."""
    first_seen: datetime
    credits: tuple[Credit, ...] = ()


@dataclass(frozen=True)
class LibraryItem:
    """An item as the library lists it: with the ids of its ambassadors and its messages."""

    id: int
    title: str
    link: str
    excerpt: str
    kind: Kind
    date: datetime
    """Published date (UTC), or when trnews first saw it if the feed gave none."""
    published: datetime | None
    ambassadors: tuple[str, ...]
    messages: tuple[str, ...]


@dataclass(frozen=True)
class Meeting:
    """A planned meeting, from the config."""

    key: str
    """Stable identity (title and start), so "listed in an earlier edition" can be told."""
    title: str
    start: datetime
    end: datetime | None = None
    location: str = ""
    url: str = ""
    description: str = ""
    credits: tuple[Credit, ...] = ()


@dataclass(frozen=True)
class PlannedMeeting:
    """A meeting from a `[[meeting]]` table or a calendar, its start and end aware."""

    key: str
    """Stable identity (title and start), so "listed in an earlier edition" can be told."""
    title: str
    start: datetime
    end: datetime | None = None
    location: str = ""
    url: str = ""
    description: str = ""
    ambassadors: tuple[str, ...] = ()
    """Ambassador ids, as the config lists them or as matched from attendees."""
    uid: str = ""
    """The calendar event's UID; empty for a `[[meeting]]` table."""
    occurrence: datetime | None = None
    """Which occurrence of a recurring event (its RECURRENCE-ID), for telling copies apart."""
    source: str = ""
    """The calendar it came from as the config names it; empty for a `[[meeting]]` table."""


@dataclass(frozen=True)
class CalendarProblem:
    """A calendar that could not be fetched or read, or events it left out, and why."""

    calendar: str
    error: str
    events_left_out: int = 0
    """Events left out of a calendar read otherwise (`error` names them); 0 when the whole
    calendar could not be read."""

    def __str__(self) -> str:
        return f"{self.calendar}: {self.error}"


@dataclass(frozen=True)
class Meetings:
    """Every meeting in a window, soonest first, and the calendars that could not be read."""

    meetings: tuple[PlannedMeeting, ...]
    problems: tuple[CalendarProblem, ...] = ()


@dataclass(frozen=True)
class EditionPlan:
    """What an edition would hold now: the due items and the meetings in the window."""

    created: datetime
    items: tuple[Item, ...]
    """Shown items, newest first (at most `max_items`)."""
    overflow: tuple[Item, ...]
    """Due items beyond `max_items`: counted in the edition, not shown."""
    meetings: tuple[Meeting, ...]
    new_meetings: tuple[str, ...]
    """Keys of listed meetings that no earlier edition listed."""
    previous: datetime | None = None
    """When the previous edition was built, if any."""
    report: dict[str, Any] | None = None
    """The compact ambassador-plan table closing the edition (`[report] in_newsletter`), as
    `report.compact_context` gives it."""
    lead: int | None = None
    """The id of the item the editors put first (one of `items`), above the sections."""
    note: str = ""
    """The editors' word, plain text, shown under the intro."""

    @property
    def lead_item(self) -> Item | None:
        return next((i for i in self.items if i.id == self.lead), None)

    @property
    def chronicles(self) -> tuple[Item, ...]:
        return tuple(i for i in self.items if i.kind is Kind.CHRONICLE and i.id != self.lead)

    @property
    def blog_posts(self) -> tuple[Item, ...]:
        return tuple(i for i in self.items if i.kind is Kind.BLOG and i.id != self.lead)

    @property
    def videos(self) -> tuple[Item, ...]:
        return tuple(i for i in self.items if i.kind is Kind.VIDEO and i.id != self.lead)

    @property
    def has_news(self) -> bool:
        return bool(self.items or self.overflow or self.new_meetings)


@dataclass(frozen=True)
class Rendered:
    """A rendered edition, the same for every reader but for the personal placeholders."""

    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class LeftOut:
    """An item or meeting left out of an edition: a template or MJML could not take its values.

    Exactly one of `item` and `meeting` is set."""

    reason: str
    item: Item | None = None
    meeting: Meeting | None = None

    def __str__(self) -> str:
        if self.item is not None:
            where = self.item.link or "no link"
            return f"item {self.item.id} {self.item.title!r} ({where}): {self.reason}"
        assert self.meeting is not None
        return f"meeting {self.meeting.title!r} ({self.meeting.start:%Y-%m-%d}): {self.reason}"


@dataclass(frozen=True)
class RenderedEdition:
    """An edition rendered from a plan, less the items and meetings it could not show."""

    rendered: Rendered
    plan: EditionPlan
    """What was rendered: the plan without what was left out."""
    left_out: tuple[LeftOut, ...] = ()


@dataclass(frozen=True)
class LeftOutRow:
    """An item left out of an edition, as `status` shows it."""

    item_id: int
    title: str
    link: str
    feed_url: str
    reason: str
    edition_id: int | None
    """The edition it was left out of; None when, without it, no edition was built."""
    when: datetime


@dataclass(frozen=True)
class Subscriber:
    id: int
    email: str
    name: str
    state: SubscriberState
    created: datetime


@dataclass(frozen=True)
class EditionRow:
    """An edition as `status` shows it."""

    id: int
    created: datetime
    status: EditionStatus
    subject: str
    items: int
    recipients: int
    delivered: int
    failed: int
    deferred: int


@dataclass
class SendReport:
    """What one `send` run did."""

    edition_id: int | None = None
    resumed: bool = False
    delivered: int = 0
    deferred: int = 0
    failed: int = 0
    remaining: int = 0
    """Recipients still queued when the run stopped (a transport failure, Ctrl-C)."""
    errors: list[str] = field(default_factory=list)
    """The first few reasons readers were deferred or refused."""
    refused: list[str] = field(default_factory=list)
    """The first few readers refused for good (5xx, or unreachable), with the reason."""
    reason: str = ""
    """Why nothing was built, when nothing was."""
    left_out: list[LeftOut] = field(default_factory=list)
    """What the edition built in this run left out (see `LeftOut`)."""


@dataclass(frozen=True)
class JobRun:
    """One slot of a scheduled job, as the scheduler's ledger holds it."""

    job: str
    """'collect' or 'send'."""
    slot: str
    """The slot's wall-clock time in the newsletter's zone, `YYYY-MM-DDTHH:MM`: a time the
    autumn night shows twice is one slot, so it is run once."""
    due: datetime
    started: datetime
    finished: datetime | None
    outcome: str | None
    """'ok', 'failed', 'stopped' or 'skipped'; None while it runs (or if it was killed)."""
    detail: str | None


@dataclass(frozen=True)
class AlertRow:
    """A message to the admins, kept until it could be sent."""

    id: int
    key: str
    """What it is about; an alert with the same key is never made twice."""
    recipient: str
    """One admin: each gets their own copy, settled on its own."""
    created: datetime
    subject: str
    body: str
    tries: int


@dataclass(frozen=True)
class FeedHealth:
    """What the database knows about one feed URL: its validators and how its fetches went."""

    url: str
    last_attempt: datetime | None
    last_success: datetime | None
    last_status: int | None
    consecutive_failures: int
    last_error: str | None
    moved_to: str | None
    gone_since: datetime | None = None
    """When it first answered 410 Gone; a gone feed is not fetched again."""
    retry_after: datetime | None = None
    """Its server asked not to be fetched before this time (429 or 503 with Retry-After)."""
    etag: str | None = None
    last_modified: str | None = None
    alerted_failing: datetime | None = None
    """When the admins were told this feed is failing; None once it recovers."""


@dataclass(frozen=True)
class Recipient:
    """One queued delivery: the reader as they were when the edition was frozen."""

    subscriber_id: int
    email: str
    name: str
    state: SubscriberState
    """The subscriber's state now: one who left since the freeze is skipped."""
    hard_bounces: int = 0
    """Editions in a row refused for good so far: a delivery clears them."""


@dataclass(frozen=True)
class ConsentText:
    """The consent text a form showed, as a consent record keeps it."""

    version: str
    text: str
    language: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@dataclass(frozen=True)
class Confirmation:
    """A confirmation message to send: to whom, and the nonce its link is signed with."""

    subscriber_id: int
    email: str
    name: str
    nonce: str
    consent_id: int
    tries: int = 0
    """Tries of its message that failed so far."""


@dataclass(frozen=True)
class Consent:
    """One sign-up through a form, as recorded."""

    id: int
    subscriber_id: int
    nonce: str
    form: str
    text_version: str
    given: datetime
    confirmed: datetime | None
    withdrawn: datetime | None


@dataclass(frozen=True)
class DeskAction:
    """One thing done at the desk: what, to which item, by whom, when."""

    action: str
    """A DeskVerb, or what trnews itself did ("draft", "rebuilt", "sent", "awaiting")."""
    by: str
    """The editor's address, "cli" for `trnews desk`, "trnews" for trnews itself."""
    at: datetime
    item: int | None = None
    text: str = ""


@dataclass(frozen=True)
class DeskItem:
    """One item of a draft as the desk shows it."""

    item: Item
    dropped: bool
    ambassadors: tuple[str, ...] = ()
    """The ids of the ambassadors credited with it, as stored."""


@dataclass(frozen=True)
class DeskDraft:
    """The draft of the next edition at the editorial desk."""

    id: int
    nonce: str
    """Random, per draft: its desk links are signed with it."""
    created: datetime
    built: datetime
    """When its items were last chosen (`trnews draft` again moves it): items collected
    after it wait for the next edition."""
    state: DraftState
    items: tuple[DeskItem, ...]
    """Every item the draft offers, dropped ones too, newest first."""
    meetings: tuple[Meeting, ...]
    new_meetings: tuple[str, ...]
    lead: int | None
    note: str
    actions: tuple[DeskAction, ...]
    editors: tuple[str, ...]
    """The addresses its desk links were made for, in config order (a link names one by its
    place here)."""
    send_at: datetime | None = None
    """The scheduled send it was made for; None when made by hand."""
    awaiting: datetime | None = None
    """The scheduled send that found it not approved (or held), if any: the scheduler sends
    it as soon as an editor approves, if that is before the next scheduled send."""
    edition_id: int | None = None

    @property
    def kept(self) -> tuple[Item, ...]:
        return tuple(d.item for d in self.items if not d.dropped)

    def last_by(self, action: str) -> str | None:
        """Who did `action` (a DeskVerb: who held it, who approved it) most recently."""
        return next((a.by for a in reversed(self.actions) if a.action == action), None)


@dataclass(frozen=True)
class Observation:
    """One published value of an indicator: its period and its value as published; None when
    the source marks it missing (suppressed, not yet published), which is never 0."""

    period: str
    """Normalised: "2024", "2024K1" (a quarter), "2024M01" (a month)."""
    value: float | None
    revised_from: float | None = None
    """The value published before, when a later fetch found it changed (a revision)."""


@dataclass(frozen=True)
class IndicatorView:
    """One indicator as the report shows it: every number computed from the stored values
    (pipeline.indicators.compute), in SPEC.md's `--format json` shape."""

    id: str
    title: str
    unit: str
    better: str
    """"higher" or "lower": which way is progress."""
    decimals: int
    latest: Observation | None
    """The latest period with a value."""
    previous: Observation | None
    """The period just before `latest` (a year, quarter or month before), its value None when
    missing; None when there is no earlier period at all."""
    change: float | None
    change_pct: float | None
    direction: str | None
    """"better", "worse" or "unchanged"; None when there is no change to tell."""
    target: float | None
    target_year: int | None
    on_track: bool | None
    series: tuple[Observation, ...]
    """Every stored period, oldest first."""
    error: str | None = None
    """Why the last fetch failed; the series is the last good one."""
    source: str = ""
    """Where the values come from (redacted of secrets), for the reader to check."""


@dataclass(frozen=True)
class ArchivedEdition:
    """An edition in the public archive."""

    id: int
    created: datetime
    subject: str


@dataclass(frozen=True)
class IndicatorOutcome:
    """What one `collect` did with one indicator's source."""

    id: str
    source: str
    """As shown: a URL redacted (pipeline.redact), or the local path."""
    new: int = 0
    """Periods published for the first time."""
    revised: int = 0
    """Periods whose published value changed (the old one is kept)."""
    periods: int = 0
    """Periods in the source."""
    not_modified: bool = False
    due: datetime | None = None
    """Not fetched this run: it worked recently and is fetched again from this time on."""
    error: str | None = None
    attempts: int = 1

    @property
    def state(self) -> str:
        """ "ok", "not modified", "not due" or "failed"."""
        if self.error is not None:
            return "failed"
        if self.due is not None:
            return "not due"
        return "not modified" if self.not_modified else "ok"
