"""Alerts to the admins: a feed that starts failing or recovers, a send that fails, a send the
editorial desk holds up (that one goes to the editors too, each with their desk link), a
complaint or a wave of bounces that came back later.

Each alert is about a change, never about a run: a feed is reported once when it has failed
`[alerts] feed_failures` runs in a row and once more when it works again; a failed send is
reported once per edition and kind of failure. Alerts are queued in the database first and
sent through the configured transport after; one that cannot be sent (the mail server is
the very thing that is down) stays queued and goes with the next job. Feed URLs in alerts are
redacted (pipeline.redact): a mailbox is no place for a feed's password or key.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from gettext import GNUTranslations
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from . import redact, words
from .config import Config
from .errors import ConfigError, DeliveryError, RecipientRefused
from .models import DeskDraft, DeskVerb, DraftState, SendReport
from .store import Store

if TYPE_CHECKING:
    from .bounces import BounceRun

logger = logging.getLogger(__name__)


def after_collect(config: Config, store: Store, now: datetime) -> None:
    """Queue one alert for the feeds that just crossed the failure threshold or recovered."""
    from .collect import subscriptions  # only after a collect, which has loaded it

    threshold = config.alerts.feed_failures
    owners = subscriptions(config)
    names = {a.id: a.name for a in config.ambassador}
    failing, recovered = [], []
    for url, h in store.feed_health().items():
        if url not in owners:
            continue  # no longer in the config: nobody needs to hear about it
        if h.consecutive_failures >= threshold and h.alerted_failing is None:
            failing.append(h)
        elif h.consecutive_failures == 0 and h.alerted_failing is not None:
            recovered.append(h)
    if not failing and not recovered:
        return
    from .templates import translations  # jinja2 and Babel: only when there is an alert to write

    tz = config.newsletter.tz
    t = translations(config.newsletter.language)
    lines: list[str] = []
    if failing:
        lines.append(_failing_heading(t, threshold))
        for h in failing:
            who = ", ".join(dict.fromkeys(names[s.ambassador] for s in owners[h.url]))
            lines.append(f"- {redact.url(h.url)} ({who})")
            lines += _failure_lines(t, tz, h.consecutive_failures, h.last_success, h.last_error)
            if h.moved_to:
                lines.append(
                    "  "
                    + t.gettext("it has moved to %(url)s: put that URL in the config")
                    % {"url": redact.url(h.moved_to)}
                )
        lines += [
            "",
            t.gettext(
                "Check the address in a browser; if the feed has moved, 'trnews check "
                "--discover' finds its new address. Items published meanwhile are picked up "
                "when it works again (as far back as newsletter.lookback_days)."
            ),
            "",
        ]
    if recovered:
        lines.append(t.gettext("Working again:"))
        for h in recovered:
            who = ", ".join(dict.fromkeys(names[s.ambassador] for s in owners[h.url]))
            lines.append(f"- {redact.url(h.url)} ({who})")
        lines.append("")
    parts = []
    if failing:
        parts.append(
            t.ngettext("%(num)d feed failing", "%(num)d feeds failing", len(failing))
            % {"num": len(failing)}
        )
    if recovered:
        parts.append(
            t.ngettext("%(num)d feed working again", "%(num)d feeds working again", len(recovered))
            % {"num": len(recovered)}
        )
    subject = _subject(config, t, parts)
    with store.transaction():
        _queue(config, store, f"feeds:{now.isoformat()}", subject, _body(t, lines), now)
        store.mark_feeds_alerted([h.url for h in failing], now)
        store.mark_feeds_alerted([h.url for h in recovered], None)
    for h in failing:
        logger.warning("Alert: feed %s is failing (%s)", h.url, h.last_error)
    for h in recovered:
        logger.info("Alert: feed %s works again", h.url)


def after_indicators(config: Config, store: Store, now: datetime) -> None:
    """Queue one alert for the indicator sources that just crossed the failure threshold
    (`[alerts] feed_failures` collects in a row) or work again, as after_collect does for
    feeds."""
    from .indicator_sources import shown

    threshold = config.alerts.feed_failures
    failing, recovered = [], []
    for indicator in config.indicator:
        state = store.indicator_source(indicator.id)
        if state is None:
            continue
        if state.consecutive_failures >= threshold and state.alerted_failing is None:
            failing.append((indicator, state))
        elif state.consecutive_failures == 0 and state.alerted_failing is not None:
            recovered.append((indicator, state))
    if not failing and not recovered:
        return
    from .templates import translations

    tz = config.newsletter.tz
    t = translations(config.newsletter.language)
    lines: list[str] = []
    if failing:
        lines.append(_failing_heading(t, threshold))
        for indicator, state in failing:
            lines.append(f"- {indicator.id}: {shown(config, indicator)}")
            lines += _failure_lines(
                t, tz, state.consecutive_failures, state.last_success, state.last_error
            )
        lines += [
            "",
            t.gettext(
                "The report keeps showing the last figures fetched, with the error; the "
                "source is tried again with every collect."
            ),
            "",
        ]
    if recovered:
        lines.append(t.gettext("Working again:"))
        lines += [f"- {i.id}: {shown(config, i)}" for i, _ in recovered]
        lines.append("")
    parts = []
    if failing:
        parts.append(
            t.ngettext(
                "%(num)d indicator source failing",
                "%(num)d indicator sources failing",
                len(failing),
            )
            % {"num": len(failing)}
        )
    if recovered:
        parts.append(
            t.ngettext(
                "%(num)d indicator source working again",
                "%(num)d indicator sources working again",
                len(recovered),
            )
            % {"num": len(recovered)}
        )
    subject = _subject(config, t, parts)
    with store.transaction():
        _queue(config, store, f"indicators:{now.isoformat()}", subject, _body(t, lines), now)
        for indicator, _ in failing:
            store.indicator_alerted(indicator.id, now)
        for indicator, _ in recovered:
            store.indicator_alerted(indicator.id, None)
    for indicator, state in failing:
        logger.warning("Alert: indicator source %s is failing (%s)", indicator.id, state.last_error)
    for indicator, _ in recovered:
        logger.info("Alert: indicator source %s works again", indicator.id)


def send_unavailable(
    config: Config, store: Store, edition_id: int | None, error: str, now: datetime
) -> None:
    """Queue the alert for a send the mail server stopped (once per edition)."""
    from .templates import translations

    t = translations(config.newsletter.language)
    if edition_id is not None:
        subject = t.gettext("Sending edition %(id)d failed") % {"id": edition_id}
        first = t.gettext("Sending edition %(id)d could not finish: %(error)s") % {
            "id": edition_id,
            "error": error,
        }
    else:
        subject = t.gettext("Sending the edition failed")
        first = t.gettext("Sending the edition could not finish: %(error)s") % {"error": error}
    body = _body(
        t,
        [
            first,
            "",
            t.gettext(
                "Nothing is lost: the readers not yet sent to stay queued, and the scheduler "
                "carries on with every collect run until the mail server answers again "
                "('trnews send' does the same at once). 'trnews status' shows how many readers "
                "are still owed."
            ),
        ],
    )
    key = f"send-unavailable:{edition_id if edition_id is not None else now.date()}"
    if _queue(config, store, key, f"[{config.newsletter.title}] {subject}", body, now):
        what = f"edition {edition_id}" if edition_id is not None else "the edition"
        logger.warning("Alert: sending %s failed: %s", what, error)


def send_error(
    config: Config, store: Store, slot: str, error: str, now: datetime, *, scheduled: bool = True
) -> None:
    """Queue the alert for a send that could not even start (a broken template, DKIM key):
    the scheduler's send of `slot`, or (`scheduled` false) one started by hand at `slot`."""
    from .templates import translations

    t = translations(config.newsletter.language)
    if scheduled:
        subject = t.gettext("The scheduled send failed")
        opening = t.gettext("The send scheduled for %(slot)s failed before any message went out:")
    else:
        subject = t.gettext("The send failed")
        opening = t.gettext("The send started at %(slot)s failed before any message went out:")
    body = _body(
        t,
        [
            opening % {"slot": slot},
            f"  {error}",
            "",
            t.gettext(
                "Fix the cause (run 'trnews preview' to see the same error), then run 'trnews "
                "send', or wait for the next scheduled send."
            ),
        ],
    )
    subject = f"[{config.newsletter.title}] {subject}"
    if _queue(config, store, f"send-error:{slot}", subject, body, now):
        logger.warning("Alert: the send of %s failed: %s", slot, error)


def after_send(config: Config, store: Store, report: SendReport, now: datetime) -> None:
    """Queue the alert for readers refused for good (once per edition)."""
    if not report.refused or report.edition_id is None:
        return
    from .templates import translations

    t = translations(config.newsletter.language)
    edition, failed = report.edition_id, report.failed
    subject = f"[{config.newsletter.title}] " + t.ngettext(
        "Edition %(id)d: %(num)d reader could not be reached",
        "Edition %(id)d: %(num)d readers could not be reached",
        failed,
    ) % {"id": edition, "num": failed}
    went = t.ngettext(
        "Edition %(id)d went to %(num)d reader;",
        "Edition %(id)d went to %(num)d readers;",
        report.delivered,
    ) % {"id": edition, "num": report.delivered}
    refused = t.ngettext(
        "%(num)d was refused for good by their mail server. The first reasons:",
        "%(num)d were refused for good by their mail servers. The first reasons:",
        failed,
    ) % {"num": failed}
    lines = [
        f"{went} {refused}",
        *(f"- {e}" for e in report.refused),
        "",
        t.ngettext(
            "A reader refused in %(num)d edition in a row becomes 'bounced' and gets no more "
            "editions. 'trnews subscribers list' shows each reader's state.",
            "A reader refused in %(num)d editions in a row becomes 'bounced' and gets no more "
            "editions. 'trnews subscribers list' shows each reader's state.",
            config.delivery.bounce_limit,
        )
        % {"num": config.delivery.bounce_limit},
    ]
    if _queue(config, store, f"send-failed:{edition}", subject, _body(t, lines), now):
        logger.warning(
            "Alert: %s of edition %d refused for good", words.count(failed, "reader"), edition
        )


def after_bounces(config: Config, store: Store, run: BounceRun, now: datetime) -> None:
    """Queue one alert for the complaints a read of the bounces' mailbox found, and one a day
    for a wave of permanent failures (WAVE or more in a day, and WAVE_SHARE of the readers)."""
    complaints = store.bounces_since(run.first_id, "complaint")
    permanent = store.bounces_since(run.first_id, "permanent")
    in_a_day = store.bounce_counts(now - timedelta(days=1))["permanent"]
    wave = bool(permanent) and in_a_day >= max(WAVE, WAVE_SHARE * _readers(store))
    if not complaints and not wave:
        return
    from .templates import translations

    t = translations(config.newsletter.language)
    parts, lines = [], []
    if complaints:
        n = len(complaints)
        parts.append(t.ngettext("%(num)d complaint", "%(num)d complaints", n) % {"num": n})
        lines.append(
            t.ngettext(
                "%(num)d complaint came back (a reader marked the newsletter as spam):",
                "%(num)d complaints came back (readers marked the newsletter as spam):",
                n,
            )
            % {"num": n}
        )
        lines += [_bounce_line(t, b) for b in complaints[:MAX_LISTED]]
        lines += [
            "",
            t.gettext(
                "A reader who complained is unsubscribed at once. Complaints weigh heavily on "
                "the sender's reputation with the mail providers."
            ),
            "",
        ]
    if wave:
        parts.append(
            t.ngettext("%(num)d bounce in a day", "%(num)d bounces in a day", in_a_day)
            % {"num": in_a_day}
        )
        lines.append(
            t.ngettext(
                "%(num)d permanent failure came back in the last 24 hours, among them:",
                "%(num)d permanent failures came back in the last 24 hours, among them:",
                in_a_day,
            )
            % {"num": in_a_day}
        )
        lines += [_bounce_line(t, b) for b in permanent[:MAX_LISTED]]
        lines += [
            "",
            t.gettext(
                "A sudden wave of bounces may mean an imported list with old addresses, or a "
                "mail provider that blocks the newsletter: check the reasons. 'trnews "
                "subscribers list --json' shows each reader's bounces."
            ),
        ]
    key = f"complaints:{complaints[-1]['id']}" if complaints else f"bounces:{now.date()}"
    if wave and complaints:
        key += f",bounces:{now.date()}"
    if _queue(config, store, key, _subject(config, t, parts), _body(t, lines), now):
        logger.warning("Alert: %s", ", ".join(parts))


WAVE = 10
"""Permanent failures in a day that may be a wave, however few the readers."""
WAVE_SHARE = 0.02
"""The share of the readers whose permanent failures in a day make a wave."""
MAX_LISTED = 20
"""Reports listed in one alert."""


def _readers(store: Store) -> int:
    counts = store.subscriber_counts()
    return counts["active"] + counts["bounced"]


def _bounce_line(t: GNUTranslations, b: dict[str, Any]) -> str:
    who = b["email"] or t.gettext("no reader")
    return f"- {b['address'] or who} ({who}): {b['reason']}"


def confirmations_unsent(config: Config, store: Store, now: datetime) -> None:
    """Queue the alert for confirmation messages of web sign-ups that could not be sent (once
    per outage: the outage is named by its oldest sign-up still owed a message)."""
    count, oldest, error = store.unsent_confirmations()
    if not count:
        return
    from .templates import translations

    t = translations(config.newsletter.language)
    subject = f"[{config.newsletter.title}] " + t.ngettext(
        "%(num)d confirmation mail not sent",
        "%(num)d confirmation mails not sent",
        count,
    ) % {"num": count}
    body = _body(
        t,
        [
            t.ngettext(
                "%(num)d visitor signed up on the web page, but the confirmation mail could "
                "not be sent: %(error)s",
                "%(num)d visitors signed up on the web page, but the confirmation mails could "
                "not be sent: %(error)s",
                count,
            )
            % {"num": count, "error": error or ""},
            "",
            t.gettext(
                "Nothing is lost: 'trnews serve' tries again for a few minutes, then each time "
                "it starts and with every collect of the scheduler. Check delivery.smtp in the "
                "config and that the mail server answers."
            ),
        ],
    )
    if _queue(config, store, f"confirmations-unsent:{oldest}", subject, body, now):
        logger.warning("Alert: %s not sent: %s", words.count(count, "confirmation message"), error)


def awaiting_editors(
    config: Config,
    store: Store,
    draft: DeskDraft,
    slot: datetime,
    upcoming: datetime | None,
    now: datetime,
) -> None:
    """Queue the alert for a scheduled send the desk held up (once per draft and slot): to the
    admins, and to each editor with the link to their desk page, where they act."""
    from . import desk
    from .templates import translations

    t = translations(config.newsletter.language)
    tz = config.newsletter.tz
    when = _local(slot, tz)
    if draft.state is DraftState.HELD:
        who = draft.last_by(DeskVerb.HOLD) or ""
        subject = t.gettext("The edition of %(when)s is held") % {"when": when}
        first = t.gettext(
            "The edition due %(when)s was not sent: %(who)s held it at the desk (draft %(id)d)."
        ) % {"when": when, "who": who or t.gettext("an editor"), "id": draft.id}
    else:
        subject = t.gettext("The edition of %(when)s awaits approval") % {"when": when}
        first = t.gettext(
            "The edition due %(when)s was not sent: no editor has approved it yet (draft %(id)d)."
        ) % {"when": when, "id": draft.id}
    then = (
        t.gettext(
            "It is sent within a minute of an editor's approval, if that comes before the next "
            "scheduled send (%(next)s); after that, the next send takes it up."
        )
        % {"next": _local(upcoming, tz)}
        if upcoming
        else t.gettext("It is sent within a minute of an editor's approval.")
    )
    ask = t.gettext("The editors who can approve it: %(editors)s") % {
        "editors": ", ".join(draft.editors)
    }
    subject = f"[{config.newsletter.title}] {subject}"
    key = f"desk-awaiting:{draft.id}:{slot.isoformat()}"
    editors = dict(desk.editor_links(config, store, draft))
    admins = [a for a in config.alerts.to if a not in editors]
    admin_body = _body(
        t,
        [
            first,
            then,
            "",
            ask,
            t.gettext(
                "They act on their desk page (the link is in the draft mail they got) or an "
                "admin runs 'trnews desk approve'."
            ),
        ],
    )
    news = _queue(config, store, key, subject, admin_body, now, to=admins)
    for editor, link in editors.items():
        body = _body(
            t,
            [first, then, "", ask, t.gettext("Approve or hold it on your desk page:"), link],
        )
        news = _queue(config, store, key, subject, body, now, to=[editor]) or news
    if news:
        logger.warning(
            "Alert: the send of %s waits for the editors (draft %d, %s); told %s",
            when,
            draft.id,
            draft.state.value,
            ", ".join([*editors, *admins]),
        )


def _queue(
    config: Config,
    store: Store,
    key: str,
    subject: str,
    body: str,
    now: datetime,
    *,
    to: list[str] | None = None,
) -> bool:
    """Queue an alert for each admin; False if it was made before. Without admins it is only
    logged (by the caller) and kept as settled, so that it is neither repeated nor sent in a
    flood once admins are added."""
    recipients = config.alerts.to if to is None else to
    return store.add_alert(key, recipients, subject=subject, body=body, now=now)


def flush(config: Config, store: Store) -> int:
    """Send every queued alert, each admin's (or editor's) copy on its own; returns how many
    went.

    A copy the server asks to retry later (4xx), or that cannot be sent now at all, stays
    queued for the next call, up to MAX_TRIES; one an admin's server refuses for good is
    logged and settled, and never holds up the others."""
    readers = {*config.alerts.to, *config.editorial.editors}
    pending = [a for a in store.pending_alerts() if a.recipient in readers]
    if not pending:
        return 0
    from .deliver import notify  # the delivery code: only when there is an alert to send

    sent = 0
    try:
        sender = notify.Sender(config)
    except (DeliveryError, ConfigError) as e:  # a DKIM key that cannot sign: kept for later
        logger.warning(
            "Could not send %s to the admins now: %s", words.count(len(pending), "alert"), e
        )
        return 0
    try:
        for alert in pending:
            msg = notify.message(config, to=alert.recipient, subject=alert.subject, text=alert.body)
            try:
                sender.send(msg, alert.recipient)
            except RecipientRefused as e:
                if e.permanent or alert.tries + 1 >= MAX_TRIES:
                    store.alert_sent(alert.id, datetime.now(UTC), str(e))
                    logger.warning("The alert %r was refused, not sent: %s", alert.subject, e)
                else:
                    store.alert_failed(alert.id, str(e))
                    logger.warning(
                        "The alert %r was deferred (%s); it is tried again with the next job",
                        alert.subject,
                        e,
                    )
                continue
            except DeliveryError as e:
                store.alert_failed(alert.id, str(e))
                logger.warning(
                    "Could not send the alert %r to the admins now (%s); it goes with the next job",
                    alert.subject,
                    e,
                )
                break
            store.alert_sent(alert.id, datetime.now(UTC))
            sent += 1
            logger.info("Sent the alert %r to %s", alert.subject, alert.recipient)
    finally:
        sender.close()
    return sent


MAX_TRIES = 48
"""Tries of one admin's copy before it is given up (a day of half-hourly collects)."""


def _failing_heading(t: GNUTranslations, threshold: int) -> str:
    """The line above the sources (feeds, indicator sources) that crossed the threshold."""
    return t.ngettext(
        "Failing for %(num)d run or more in a row:",
        "Failing for %(num)d or more runs in a row:",
        threshold,
    ) % {"num": threshold}


def _failure_lines(
    t: GNUTranslations,
    tz: ZoneInfo,
    failures: int,
    last_success: datetime | None,
    last_error: str | None,
) -> list[str]:
    """How long a failing source has failed, when it last worked, and its last error."""
    since = (
        t.gettext("last worked %(when)s") % {"when": _local(last_success, tz)}
        if last_success
        else t.gettext("never worked")
    )
    count = t.ngettext("%(num)d failure in a row", "%(num)d failures in a row", failures) % {
        "num": failures
    }
    return [
        f"  {count}, {since}",
        "  " + t.gettext("last error: %(error)s") % {"error": redact.text(last_error or "")},
    ]


def _subject(config: Config, t: GNUTranslations, parts: list[str]) -> str:
    """An alert's subject: the newsletter's title, then one or two parts ("… and …")."""
    return f"[{config.newsletter.title}] " + (
        t.gettext("%(first)s and %(last)s") % {"first": parts[0], "last": parts[1]}
        if len(parts) == 2
        else parts[0]
    )


def _body(t: GNUTranslations, lines: list[str]) -> str:
    """The lines and the signature; a mail reader wraps the long ones."""
    signature = t.gettext("trnews ('trnews status' shows the whole picture)")
    return "\n".join([*lines, "", "-- ", signature, ""])


def _local(value: datetime, tz: ZoneInfo) -> str:
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")
