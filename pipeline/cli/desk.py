"""The editorial desk on the command line: `trnews draft` and `trnews desk` (SPEC.md, "The
editorial desk"). The rules are pipeline.desk's; this module parses, calls and prints."""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

import click

from ..errors import NoDraft, TransportUnavailable, UsageError
from .output import State, config_option, open_store

if TYPE_CHECKING:
    from ..config import Config
    from ..models import DeskDraft
    from ..store import Store

F = TypeVar("F", bound=Callable[..., Any])


def _active(config: Config, command: str) -> None:
    if not config.editorial.active:
        raise UsageError(
            f"'{command}' needs the editorial desk, and [editorial] mode is \"auto\" (or "
            'missing): set mode = "review" or "approve" and editors = [...] in [editorial]'
        )


def _when(value: datetime, tz: ZoneInfo) -> str:
    """A moment on the newsletter's clock, with its weekday, as an admin reads it."""
    return f"{value.astimezone(tz):%a %Y-%m-%d %H:%M}"


def _due(config: Config, draft: DeskDraft) -> str:
    """When the draft is to be sent, or what it waits for."""
    from ..models import DraftState

    tz = config.newsletter.tz
    at = f"at the send of {_when(draft.send_at, tz)}" if draft.send_at else "at the next send"
    if draft.state is DraftState.SENT:
        return f"sent as edition {draft.edition_id}"
    if draft.state is DraftState.HELD:
        return "held: not sent until an editor approves it ('trnews desk approve')"
    if draft.state is DraftState.APPROVED:
        return f"approved: sent {at}"
    if config.editorial.mode == "approve":
        since = f" since the send of {_when(draft.awaiting, tz)}" if draft.awaiting else ""
        nxt = f"; the next scheduled send is {_when(draft.send_at, tz)}" if draft.send_at else ""
        return (
            f"awaits approval{since}: sent only once an editor approves it "
            f"('trnews desk approve'){nxt}"
        )
    return f"sent {at} unless an editor holds it ('trnews desk hold')"


# -- trnews draft --------------------------------------------------------------------------------


@click.command()
@config_option
@click.pass_obj
def draft(state: State) -> None:
    """Build the draft of the next edition now and mail it to each editor.

    Each editor ([editorial] editors) gets the edition as subscribers will see it, with what is
    asked of them and a link to their own desk page; one line per editor prints that link.
    Running it again rebuilds the draft with what was collected since, keeping the editors'
    choices (items left out, the lead, the note). Needs [editorial] mode "review" or "approve".

    \b
    Examples:
      trnews collect && trnews draft
      trnews draft && trnews desk
    """
    from .. import desk

    config = state.config()
    _active(config, "trnews draft")
    now = datetime.now(UTC)
    with open_store(config) as store:
        before = store.current_draft()
        made = desk.make_draft(config, store, now)
        if made is None:
            click.echo("Nothing new since the last edition: no draft was made.")
            return
        dropped = sum(d.dropped for d in made.items)
        verb = "Rebuilt" if before is not None and before.id == made.id else "Made"
        click.echo(
            f"{verb} draft {made.id}: {len(made.items)} items ({dropped} left out), "
            f"{len(made.meetings)} meetings; {_due(config, made)}."
        )
        try:
            mailed = desk.mail_editors(config, store, made, now)
        except TransportUnavailable as e:
            e.hint = (f"{e.hint}\n" if e.hint else "") + (
                f"draft {made.id} is stored but no editor was mailed; run 'trnews draft' "
                "again once the mail server answers"
            )
            raise
    for m in mailed:
        if m.error is None:
            click.echo(f"Mailed {m.editor}: {m.link}")
        else:
            click.echo(f"NOT mailed {m.editor} ({m.error}); their link: {m.link}")


# -- trnews desk ---------------------------------------------------------------------------------


def _default_by() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name (a container's unnamed uid)
        return "cli"


def by_option(f: F) -> F:
    return click.option(
        "--by",
        metavar="ADDRESS",
        default=_default_by,
        show_default="cli:<your user name>",
        help="Who the action is recorded as.",
    )(f)


@click.group(invoke_without_command=True)
@config_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the draft as one JSON object (null when there is no draft).",
)
@click.pass_context
def desk_group(ctx: click.Context, as_json: bool) -> None:
    """Show the draft of the next edition, or act on it as an editor.

    Without a subcommand: the draft's state and when it is to be sent, every item (id, kind,
    title, ambassadors, whether it is left out), the lead, the note and every action taken,
    in the newsletter's time zone. --json prints {"edition", "state", "items": [{"id",
    "title", "kind", "ambassadors", "dropped"}], "lead", "note", "actions": [{"action",
    "by", "at"}], ...}, or null when there is no draft. An action is recorded with who did it
    (--by, default "cli:" and your user name) and when, as on the editors' desk page.

    \b
    Examples:
      trnews desk
      trnews desk --json | jq '.items[] | select(.dropped)'
      trnews desk drop 12 14
      trnews desk keep 14
      trnews desk lead 17          # or: trnews desk lead --none
      trnews desk note "Godt nytt år fra oss alle i Trondheimsregionen."
      trnews desk approve --by redaksjon@example.org
      trnews desk hold
    """
    if ctx.invoked_subcommand is not None:
        return
    from .. import desk

    state = ctx.find_object(State)
    assert state is not None
    config = state.config()
    _active(config, "trnews desk")
    with open_store(config) as store:
        current = store.current_draft()
    if as_json:
        shown = desk.as_json(config, current) if current is not None else None
        click.echo(json.dumps(shown, indent=2, ensure_ascii=False))
    elif current is None:
        click.echo("No draft at the desk: 'trnews draft' makes one of what is new.")
    else:
        click.echo(_show(config, current))


def _show(config: Config, draft: DeskDraft) -> str:
    tz = config.newsletter.tz
    names = {a.id: a.name for a in config.ambassador}
    dropped = sum(d.dropped for d in draft.items)
    lines = [
        f"Draft {draft.id} ({draft.state.value}), built {_when(draft.built, tz)} "
        f"({tz.key}): {_due(config, draft)}.",
        f"Items: {len(draft.items)}, {dropped} left out.",
    ]
    for d in draft.items:
        marks = [m for m, on in (("LEAD", d.item.id == draft.lead), ("LEFT OUT", d.dropped)) if on]
        who = ", ".join(names.get(a, a) for a in d.ambassadors)
        lines.append(
            f"  {d.item.id:>5}  {d.item.kind.value:<9} {d.item.title}"
            + (f" ({who})" if who else "")
            + (f"  [{', '.join(marks)}]" if marks else "")
        )
    lead = next((d.item for d in draft.items if d.item.id == draft.lead), None)
    lines.append(f"Lead: {lead.id} {lead.title}" if lead else "Lead: none")
    lines.append(f"Note: {draft.note}" if draft.note else "Note: none")
    lines.append("Actions:")
    for a in draft.actions:
        what = a.action + (f" {a.item}" if a.item is not None else "")
        detail = f": {a.text}" if a.text else ""
        lines.append(f"  {_when(a.at, tz)}  {what} by {a.by}{detail}")
    return "\n".join(lines)


def _current(config: Config, store: Store) -> DeskDraft:
    current = store.current_draft()
    if current is None:
        raise NoDraft("no draft at the desk to act on: 'trnews draft' makes one of what is new")
    return current


def _do(
    state: State,
    verb: str,
    by: str,
    items: tuple[int | None, ...] = (None,),
    text: str = "",
) -> tuple[Config, DeskDraft]:
    """Do `verb` on the current draft, for each of `items` (None: an action on the draft as a
    whole) once all are known to be in it; returns the draft as it is now."""
    from .. import desk

    config = state.config()
    _active(config, "trnews desk")
    now = datetime.now(UTC)
    with open_store(config) as store:
        current = _current(config, store)
        if items != (None,):
            desk.check_items(current, items)
        for item in items:
            desk.act(store, current, verb, by=by, now=now, item=item, text=text)
        after = store.draft(current.id)
    assert after is not None
    return config, after


def _titles(draft: DeskDraft, items: tuple[int, ...]) -> str:
    titles = {d.item.id: d.item.title for d in draft.items}
    return "; ".join(f"{i} {titles.get(i, '')}".strip() for i in items)


@desk_group.command("drop")
@config_option
@click.argument("items", nargs=-1, type=int, required=True, metavar="ITEM...")
@by_option
@click.pass_obj
def drop(state: State, items: tuple[int, ...], by: str) -> None:
    """Leave items out of the edition (and of every later one, until kept again).

    \b
    Example:
      trnews desk drop 12 14
    """
    _, after = _do(state, "drop", by, items)
    click.echo(f"Left out of draft {after.id}: {_titles(after, items)}.")


@desk_group.command("keep")
@config_option
@click.argument("items", nargs=-1, type=int, required=True, metavar="ITEM...")
@by_option
@click.pass_obj
def keep(state: State, items: tuple[int, ...], by: str) -> None:
    """Put items left out back in the edition.

    \b
    Example:
      trnews desk keep 14
    """
    _, after = _do(state, "keep", by, items)
    click.echo(f"Kept in draft {after.id}: {_titles(after, items)}.")


@desk_group.command("lead")
@config_option
@click.argument("item", type=int, required=False, metavar="ITEM")
@click.option("--none", "no_lead", is_flag=True, help="No item first.")
@by_option
@click.pass_obj
def lead(state: State, item: int | None, no_lead: bool, by: str) -> None:
    """Put one item first, above the sections (--none: no item first).

    \b
    Examples:
      trnews desk lead 17
      trnews desk lead --none
    """
    if (item is None) == (not no_lead):
        raise UsageError("give one ITEM to put first, or --none: trnews desk lead 17")
    if item is not None:
        _, after = _do(state, "lead", by, (item,))
        click.echo(f"First in draft {after.id}: {_titles(after, (item,))}.")
        return
    config = state.config()
    _active(config, "trnews desk")
    with open_store(config) as store:
        current = _current(config, store)
        if not store.clear_lead(current.id, by=by, now=datetime.now(UTC)):
            raise UsageError(f"draft {current.id} was sent meanwhile: it is closed")
    click.echo(f"No item first in draft {current.id}.")


@desk_group.command("note")
@config_option
@click.argument("text", required=False, metavar="TEXT")
@click.option("--clear", is_flag=True, help="Remove the note.")
@by_option
@click.pass_obj
def note(state: State, text: str | None, clear: bool, by: str) -> None:
    """Set the editors' note, shown under the intro as plain text (--clear: no note).

    \b
    Examples:
      trnews desk note "Velkommen til et nytt år med ambassadørene."
      trnews desk note --clear
    """
    if (text is None) == (not clear):
        raise UsageError('give the note\'s TEXT, or --clear: trnews desk note "..."')
    _, after = _do(state, "note", by, text=text or "")
    click.echo(
        f"Note of draft {after.id}: {after.note}" if after.note else f"No note in draft {after.id}."
    )


@desk_group.command("approve")
@config_option
@by_option
@click.pass_obj
def approve(state: State, by: str) -> None:
    """Approve the draft: the send sends it as it stands.

    \b
    Example:
      trnews desk approve --by redaksjon@example.org
    """
    config, after = _do(state, "approve", by)
    click.echo(f"Draft {after.id}: {_due(config, after)}.")


@desk_group.command("hold")
@config_option
@by_option
@click.pass_obj
def hold(state: State, by: str) -> None:
    """Hold the draft: no send sends it until an editor approves it.

    \b
    Example:
      trnews desk hold
    """
    config, after = _do(state, "hold", by)
    click.echo(f"Draft {after.id} is {_due(config, after)}.")
