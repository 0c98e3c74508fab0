"""`trnews status`: what the database says of feeds, editions, subscribers and the scheduler,
as data (`--json`) and as text for the admin, in one place.

`setting` reads what status needs from the config file, and keeps working while that file is
broken: the config's problems are returned with the database, language and time zone it still
names as far as it can be read. Nothing but the CLI imports this module.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from gettext import GNUTranslations
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_date

from . import redact
from .collect import subscriptions
from .config import Config, load_config, read_toml
from .errors import ConfigError, RenderError
from .schedule import scheduler_status
from .store import Store
from .templates import translations


@dataclass(frozen=True)
class Setting:
    """What `status` reads of the config file, whole or broken."""

    config: Config | None
    """None when the file is broken."""
    problem: ConfigError | None
    """Why the file is broken, if it is: printed, and the exit code."""
    database: Path
    words: Words


def setting(path: Path) -> Setting:
    """The config at `path`, or, when it is broken, what can still be read of it."""
    try:
        config = load_config(path)
    except ConfigError as e:
        raw: dict[str, Any] = {}
        with contextlib.suppress(ConfigError):
            raw = read_toml(path)  # a file that does not parse leaves only the defaults
        return Setting(None, e, _database_despite(path, raw), _words_despite(raw))
    nl = config.newsletter
    words = Words(translations(nl.language), nl.tz, nl.language)
    return Setting(config, None, config.database_path, words)


def data(config: Config | None, store: Store) -> dict[str, Any]:
    """What `trnews status --json` prints: feed health, editions, subscribers, scheduler.

    `next_collect`, `next_send` and `scheduler_pid` come from the running `trnews run` (null
    when none runs); `last_runs` has each job's last run and its outcome, whether or not a
    scheduler runs now.

    With a config, every configured feed is listed in config order (one never fetched has
    `ok: null`); without one (the file is broken), every feed the database knows. `gone` is
    true from a feed's first 410 answer until it answers anything else; `retry_after` is when
    its server asked to be fetched again (429 or 503 with Retry-After), if it did. An
    edition's `owed` counts the readers a later `send` still delivers it to. `left_out` names
    the latest items left out of an edition because a template or MJML could not take them
    (`edition` null when, without them, no edition was built). `bounces` counts the reports
    that came back in the last 30 days, by kind. `confirmations_unsent` counts
    the web sign-ups whose confirmation message failed and is still owed. URLs are shown redacted
    (pipeline.redact): no password, query or key in the path. With `[editorial]` active,
    `desk` is the current draft (see _desk), or null when there is none. `indicators` has
    each configured indicator's source (see _indicators).
    """
    health = store.feed_health()
    owed = store.owed_counts()
    owners: dict[str, str | None]
    if config is not None:
        owners = {
            location: ", ".join(dict.fromkeys(s.ambassador for s in subs))
            for location, subs in subscriptions(config).items()
        }
    else:
        owners = dict.fromkeys(health)
    feeds = []
    for location, ambassador in owners.items():
        h = health.get(location)
        fetched = h is not None and h.last_attempt is not None
        feeds.append(
            {
                "url": redact.url(location),
                "ambassador": ambassador,
                "ok": h.consecutive_failures == 0 if h is not None and fetched else None,
                "last_attempt": _iso(h.last_attempt) if h else None,
                "last_success": _iso(h.last_success) if h else None,
                "last_status": h.last_status if h else None,
                "consecutive_failures": h.consecutive_failures if h else 0,
                "last_error": redact.optional(h.last_error) if h else None,
                "gone": h is not None and h.gone_since is not None,
                "gone_since": _iso(h.gone_since) if h else None,
                "moved_to": redact.optional(h.moved_to) if h else None,
                "retry_after": _iso(h.retry_after) if h else None,
            }
        )
    return {
        **scheduler_status(store),
        **({"desk": _desk(store)} if config is not None and config.editorial.active else {}),
        "database": str(store.path),
        "items": store.item_count(),
        "feeds": feeds,
        "indicators": _indicators(config, store),
        "editions": [
            {
                "id": e.id,
                "created": _iso(e.created),
                "status": str(e.status),
                "subject": e.subject,
                "items": e.items,
                "recipients": e.recipients,
                "delivered": e.delivered,
                "failed": e.failed,
                "deferred": e.deferred,
                "owed": owed.get(e.id, 0),
            }
            for e in store.editions()
        ],
        "subscribers": store.subscriber_counts(),
        "confirmations_unsent": store.unsent_confirmations()[0],
        "bounces": store.bounce_counts(datetime.now(UTC) - timedelta(days=BOUNCE_DAYS)),
        "left_out": [
            {
                "item": r.item_id,
                "title": r.title,
                "link": r.link,
                "feed": r.feed_url,
                "reason": r.reason,
                "edition": r.edition_id,
                "when": _iso(r.when),
            }
            for r in store.left_out_items()
        ],
    }


def _indicators(config: Config | None, store: Store) -> list[dict[str, Any]]:
    """Each configured indicator's source, in config order: `ok` null until it is first
    fetched, false while its last fetch failed (the report keeps the last good figures)."""
    if config is None:
        return []
    from .indicator_sources import shown

    out = []
    for indicator in config.indicator:
        state = store.indicator_source(indicator.id)
        out.append(
            {
                "id": indicator.id,
                "source": shown(config, indicator),
                "ok": state.consecutive_failures == 0 if state is not None else None,
                "last_attempt": _iso(state.last_attempt) if state else None,
                "last_success": _iso(state.last_success) if state else None,
                "consecutive_failures": state.consecutive_failures if state else 0,
                "last_error": redact.optional(state.last_error) if state else None,
            }
        )
    return out


def _indicator_lines(indicators: list[dict[str, Any]], w: Words) -> list[str]:
    t, label = w.t, _labels(w.t)
    if not indicators:
        return []
    lines = ["", t.gettext("Indicator sources:")]
    for i in indicators:
        head = f"{i['id']} ({i['source']})"
        last_success = t.gettext("last success %(when)s") % {"when": w.when(i["last_success"])}
        if i["ok"] is None:
            lines.append(f"  {label['not fetched yet']} {head}: " + t.gettext("not fetched yet"))
        elif i["ok"]:
            lines.append(f"  {label['ok']} {head}: {last_success}")
        else:
            n = i["consecutive_failures"]
            failures = t.ngettext("%(num)d failure in a row", "%(num)d failures in a row", n) % {
                "num": n
            }
            lines.append(
                f"  {label['failing']} {head}: {failures}, {last_success}: {i['last_error']}"
            )
    return lines


DESK_ACTIONS_SHOWN = 5
"""The last actions at the desk that `status` shows (`trnews desk` shows them all)."""


def _desk(store: Store) -> dict[str, Any] | None:
    """The editorial desk's current draft: `awaiting` is the scheduled send that found it not
    cleared for sending; null when there is no draft."""
    draft = store.current_draft()
    if draft is None:
        return None
    return {
        "id": draft.id,
        "state": draft.state.value,
        "built": _iso(draft.built),
        "send_at": _iso(draft.send_at),
        "awaiting": _iso(draft.awaiting),
        "items": len(draft.items),
        "left_out": sum(d.dropped for d in draft.items),
        "lead": draft.lead,
        "note": bool(draft.note),
        "actions": [
            {"action": a.action, "by": a.by, "at": _iso(a.at)}
            for a in draft.actions[-DESK_ACTIONS_SHOWN:]
        ],
    }


def _desk_lines(desk: dict[str, Any] | None, mode: str, w: Words) -> list[str]:
    """What an admin can do about the draft at the desk, in a line or two."""
    t = w.t
    if desk is None:
        return [t.gettext("Desk: no draft ('trnews draft' makes one of what is new)")]
    n = {"id": desk["id"], "items": desk["items"], "left_out": desk["left_out"]}
    counts = t.gettext("items: %(items)d, left out: %(left_out)d") % n
    if desk["state"] == "held":
        first = t.gettext(
            "Draft %(id)d is held (%(counts)s): approve it with 'trnews desk approve' or on the "
            "desk page to send it"
        ) % {**n, "counts": counts}
    elif desk["state"] == "approved":
        first = t.gettext("Draft %(id)d is approved (%(counts)s): the next send sends it") % {
            **n,
            "counts": counts,
        }
    elif mode == "approve" and desk["awaiting"]:
        first = t.gettext(
            "Draft %(id)d awaits approval since the send of %(when)s (%(counts)s): approve it "
            "with 'trnews desk approve' or on the desk page"
        ) % {**n, "when": w.at(desk["awaiting"]), "counts": counts}
    elif mode == "approve":
        first = t.gettext(
            "Draft %(id)d awaits approval (%(counts)s): approve it with 'trnews desk approve' "
            "or on the desk page"
        ) % {**n, "counts": counts}
    else:
        first = t.gettext(
            "Draft %(id)d is sent unless an editor holds it (%(counts)s); 'trnews desk' shows it"
        ) % {**n, "counts": counts}
    lines = [first]
    if desk["actions"]:
        last = desk["actions"][-1]
        lines.append(
            "  "
            + t.gettext("last action: %(action)s by %(by)s, %(when)s")
            % {"action": last["action"], "by": last["by"], "when": w.when(last["at"])}
        )
    return lines


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _database_despite(path: Path, raw: dict[str, Any]) -> Path:
    """The database a broken config names, as far as it can still be read."""
    default = Path("var/trnews.db")
    try:
        value = raw.get("storage", {}).get("database", default)
        db = Path(str(value)).expanduser()
    except AttributeError:
        db = default
    return db if db.is_absolute() else path.parent / db


@dataclass(frozen=True)
class Words:
    """How `status` speaks to the admin: the newsletter's language and time zone."""

    t: GNUTranslations
    tz: ZoneInfo
    language: str

    def when(self, value: str | None) -> str:
        """A stored time (UTC) on the admin's clock; the zone is named once, at the top."""
        if not value:
            return self.t.gettext("never")
        return datetime.fromisoformat(value).astimezone(self.tz).strftime("%Y-%m-%d %H:%M")

    def at(self, value: str | None) -> str:
        """A time the scheduler gave, with its weekday."""
        if not value:
            return self.t.gettext("never")
        at = datetime.fromisoformat(value).astimezone(self.tz)
        return f"{at:%Y-%m-%d %H:%M} ({format_date(at, 'EEE', locale=self.language)})"


def _words_despite(raw: dict[str, Any]) -> Words:
    """The language and zone of a broken config, as far as it can still be read."""
    language, zone = "nb", "Europe/Oslo"
    with contextlib.suppress(AttributeError):
        newsletter = raw.get("newsletter", {})
        language = str(newsletter.get("language", language))
        zone = str(newsletter.get("timezone", zone))
    try:
        t = translations(language)
    except RenderError:
        language, t = "nb", translations("nb")
    try:
        tz = ZoneInfo(zone)
    except (ValueError, ZoneInfoNotFoundError):
        tz = ZoneInfo("Europe/Oslo")
    return Words(t, tz, language)


_FEED_GROUPS = ("failing", "gone", "moved", "not fetched yet", "ok")


def _feed_group(f: dict[str, Any]) -> str:
    """Where `status` lists a feed: the unhealthy first, in the order of _FEED_GROUPS."""
    if f["gone"]:
        return "gone"
    if f["ok"] is False:
        return "failing"
    if f["moved_to"]:
        return "moved"
    return "not fetched yet" if f["ok"] is None else "ok"


def _group_names(t: GNUTranslations) -> dict[str, str]:
    """Each group of feeds as the summary line counts it."""
    return {
        # Translators: `trnews status` counts the feeds: "1 failing, 2 ok".
        "failing": t.gettext("failing"),
        "gone": t.gettext("gone"),
        "moved": t.gettext("moved"),
        "not fetched yet": t.gettext("not fetched yet"),
        "ok": t.gettext("ok"),
    }


def _labels(t: GNUTranslations) -> dict[str, str]:
    """The label in front of each feed's line, padded to one width."""
    labels = {
        # Translators: labels in front of each feed in `trnews status`, short and upper case
        # for trouble.
        "gone": t.gettext("GONE"),
        "waiting": t.gettext("WAITING"),
        "failing": t.gettext("FAILING"),
        "moved": t.gettext("MOVED"),
        "not fetched yet": t.gettext("never"),
        "ok": t.gettext("ok"),
    }
    width = max(len(label) for label in labels.values())
    return {k: v.ljust(width) for k, v in labels.items()}


def _feed_status_line(f: dict[str, Any], group: str, w: Words) -> str:
    t, label = w.t, _labels(w.t)
    head = f"{f['url']} ({f['ambassador']})"
    last_success = t.gettext("last success %(when)s") % {"when": w.when(f["last_success"])}
    if group == "gone":
        return f"  {label['gone']} {head}: " + t.gettext(
            "gone (HTTP 410) since %(when)s, not fetched any more: remove it from the config"
        ) % {"when": w.when(f["gone_since"])}
    if group == "failing":
        n = f["consecutive_failures"]
        failures = t.ngettext("%(num)d failure in a row", "%(num)d failures in a row", n) % {
            "num": n
        }
        failures += f", {last_success}"
        waits = f["retry_after"] and datetime.fromisoformat(f["retry_after"]) > datetime.now(UTC)
        if waits:
            return f"  {label['waiting']} {head}: " + t.gettext(
                "its server asked to wait until %(when)s (%(error)s); %(failures)s"
            ) % {"when": w.when(f["retry_after"]), "error": f["last_error"], "failures": failures}
        return f"  {label['failing']} {head}: {failures}: {f['last_error']}"
    if group == "moved":
        return f"  {label['moved']} {head}: " + t.gettext(
            "moved permanently to %(url)s: update the config; %(last_success)s"
        ) % {"url": f["moved_to"], "last_success": last_success}
    if group == "not fetched yet":
        return f"  {label['not fetched yet']} {head}: " + t.gettext("not fetched yet")
    return f"  {label['ok']} {head}: {last_success}"


def _scheduler_lines(data: dict[str, Any], w: Words) -> list[str]:
    t = w.t
    if data["scheduler_pid"] is None:
        lines = [t.gettext("Scheduler: not running (start it with 'trnews run')")]
    else:
        lines = [
            t.gettext("Scheduler: running, pid %(pid)d") % {"pid": data["scheduler_pid"]},
            "  " + t.gettext("next collect: %(when)s") % {"when": w.at(data["next_collect"])},
            "  " + t.gettext("next send: %(when)s") % {"when": w.at(data["next_send"])},
        ]
        if data.get("next_draft"):
            lines.append(
                "  " + t.gettext("next draft: %(when)s") % {"when": w.at(data["next_draft"])}
            )
        problem = data.get("scheduler", {}).get("config_problem")
        if problem:
            lines.append(
                "  "
                + t.gettext(
                    "the config file has problems and was not taken up: %(problem)s; the "
                    "scheduler runs the last good config"
                )
                % {"problem": problem}
            )
    jobs = {
        "collect": t.gettext("last collect"),
        "send": t.gettext("last send"),
        "draft": t.gettext("last draft"),
    }
    outcomes = {
        "ok": t.gettext("ok"),
        "failed": t.gettext("failed"),
        "stopped": t.gettext("stopped"),
        "skipped": t.gettext("skipped"),
        "waiting": t.gettext("waiting for the editors"),
    }
    for job, last in data.get("last_runs", {}).items():
        what = jobs.get(job, job)
        if last is None:
            lines.append(f"  {what}: {t.gettext('never')}")
            continue
        detail = f": {last['detail']}" if last.get("detail") else ""
        started = w.when(last["started"])
        lines.append(
            f"  {what}: "
            + t.gettext("%(slot)s, %(outcome)s (started %(started)s)")
            % {
                "slot": last["slot"].replace("T", " ")[:16],
                "outcome": outcomes.get(last["outcome"], last["outcome"]),
                "started": started,
            }
            + detail
        )
    return lines


def text(data: dict[str, Any], w: Words, mode: str = "auto") -> str:
    """What `trnews status` prints: `data` in the newsletter's language, on its clock (`mode`:
    `[editorial] mode`, for what the desk's draft waits for)."""
    t = w.t
    groups: dict[str, list[dict[str, Any]]] = {g: [] for g in _FEED_GROUPS}
    for f in data["feeds"]:
        groups[_feed_group(f)].append(f)
    names = _group_names(t)
    feed_counts = ", ".join(f"{len(fs)} {names[g]}" for g, fs in groups.items() if fs)
    lines = [
        t.gettext("Times are in %(zone)s.") % {"zone": w.tz.key},
        t.ngettext(
            "Database: %(path)s (%(num)d item)", "Database: %(path)s (%(num)d items)", data["items"]
        )
        % {"path": data["database"], "num": data["items"]},
        *_scheduler_lines(data, w),
        *(["", *_desk_lines(data["desk"], mode, w)] if "desk" in data else []),
        "",
        (t.gettext("Feeds: %(counts)s") % {"counts": feed_counts})
        if feed_counts
        else t.gettext("Feeds: none"),
    ]
    for group, feeds in groups.items():
        lines += [_feed_status_line(f, group, w) for f in feeds]
    lines += _indicator_lines(data.get("indicators", []), w)
    lines += ["", t.gettext("Editions:")]
    for e in data["editions"]:
        parts = [
            t.ngettext("%(num)d item", "%(num)d items", e["items"]) % {"num": e["items"]},
            t.gettext("%(delivered)d/%(recipients)d delivered")
            % {"delivered": e["delivered"], "recipients": e["recipients"]},
            t.gettext("%(num)d deferred") % {"num": e["deferred"]},
            t.gettext("%(num)d failed") % {"num": e["failed"]},
        ]
        if e.get("owed"):
            parts.append(t.gettext("%(num)d still owed") % {"num": e["owed"]})
        status = _edition_states(t).get(e["status"], e["status"])
        lines.append(f"  #{e['id']:<4} {w.when(e['created'])}  {status:<8} " + ", ".join(parts))
    if not data["editions"]:
        lines.append("  " + t.gettext("none yet"))
    if data.get("left_out"):
        lines += [
            "",
            t.gettext("Left out of editions (a template or MJML could not take them):"),
        ]
        for lo in data["left_out"]:
            edition = (
                t.gettext("edition #%(id)d") % {"id": lo["edition"]}
                if lo["edition"]
                else t.gettext("no edition built")
            )
            lines.append(
                "  "
                + t.gettext(
                    "item %(id)d %(title)s (%(link)s, feed %(feed)s), %(edition)s: %(reason)s"
                )
                % {
                    "id": lo["item"],
                    "title": repr(lo["title"]),
                    "link": lo["link"] or t.gettext("no link"),
                    "feed": lo["feed"],
                    "edition": edition,
                    "reason": lo["reason"],
                }
            )
    counts = data["subscribers"]
    states = _subscriber_states(t)
    lines += [
        "",
        t.gettext("Subscribers: %(counts)s")
        % {"counts": ", ".join(f"{n} {states.get(state, state)}" for state, n in counts.items())},
    ]
    unsent = data.get("confirmations_unsent", 0)
    if unsent:
        lines.append(
            "  "
            + t.ngettext(
                "%(num)d confirmation mail not sent (the mail server did not take it; it is "
                "tried again)",
                "%(num)d confirmation mails not sent (the mail server did not take them; they "
                "are tried again)",
                unsent,
            )
            % {"num": unsent}
        )
    b = data.get("bounces")
    if b and any(b.values()):
        counts = [
            t.ngettext("%(num)d permanent failure", "%(num)d permanent failures", b["permanent"])
            % {"num": b["permanent"]},
            # Translators: bounces that came back saying "try later", in `trnews status`.
            t.ngettext("%(num)d temporary", "%(num)d temporary", b["temporary"])
            % {"num": b["temporary"]},
            t.ngettext("%(num)d complaint", "%(num)d complaints", b["complaint"])
            % {"num": b["complaint"]},
        ]
        lines.append(
            "  "
            + t.gettext("Came back in the last 30 days: %(counts)s") % {"counts": ", ".join(counts)}
        )
    return "\n".join(lines)


BOUNCE_DAYS = 30
"""`status` counts the bounces and complaints of this many days."""


def _edition_states(t: GNUTranslations) -> dict[str, str]:
    return {
        # Translators: an edition's state in `trnews status`.
        "sending": t.gettext("sending"),
        "sent": t.gettext("sent"),
    }


def _subscriber_states(t: GNUTranslations) -> dict[str, str]:
    return {
        # Translators: subscriber counts in `trnews status`: "3 active, 1 pending".
        "active": t.gettext("active"),
        "pending": t.gettext("pending"),
        "unsubscribed": t.gettext("unsubscribed"),
        "bounced": t.gettext("bounced"),
    }
