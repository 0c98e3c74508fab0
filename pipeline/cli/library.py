"""The library on the command line: `trnews library` (SPEC.md "The library and the message
bank"). The rules (search, filters, pages) are pipeline.library's; this module parses, calls
and prints."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from .. import sanitize, words
from ..errors import UsageError
from .output import State, config_option, open_store

if TYPE_CHECKING:
    from ..config import Config
    from ..models import LibraryItem

ALL = 2**31
"""Items on the one page `--json` prints: every item found."""


def _line(config: Config, item: LibraryItem) -> str:
    """One item as one line: date, kind, title, ambassadors, messages, URL."""
    names = config.ambassador_by_id()
    who = ", ".join(names[a].name if a in names else a for a in item.ambassadors)
    messages = f" [{', '.join(item.messages)}]" if item.messages else ""
    title = sanitize.one_line(item.title)
    date = item.date.astimezone(config.newsletter.tz)
    return f"{date:%Y-%m-%d}  {item.kind.value:<9}  {title} ({who}){messages}  {item.link}"


def _json(config: Config, item: LibraryItem) -> dict[str, object]:
    return {
        "id": item.id,
        "title": item.title,
        "url": item.link,
        "kind": item.kind.value,
        "published": item.date.astimezone(config.newsletter.tz).isoformat(),
        "ambassadors": list(item.ambassadors),
        "messages": list(item.messages),
    }


@click.command()
@config_option
@click.argument("query", nargs=-1)
@click.option("--message", metavar="ID", help="Only the examples of this message ([[message]] id).")
@click.option(
    "--ambassador", metavar="ID", help="Only this ambassador's items ([[ambassador]] id)."
)
@click.option(
    "--kind", metavar="KIND", help="Only chronicles, blog posts or films: chronicle, blog or video."
)
@click.option("--year", metavar="YYYY", help="Only items dated in this year (newsletter.timezone).")
@click.option("--page", metavar="N", help="Which page of 50 items to print (default 1).")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print every item found (all pages) as a JSON list of objects.",
)
@click.pass_obj
def library(
    state: State,
    query: tuple[str, ...],
    message: str | None,
    ambassador: str | None,
    kind: str | None,
    year: str | None,
    page: str | None,
    as_json: bool,
) -> None:
    """List the items collected (the library), newest first, filtered and searched.

    QUERY: words that must each begin a word of the title or excerpt, in any order, case
    ignored (`næring` finds "næringslivet"; æ, ø and å are letters of their own). The filters
    all must hold. One line per item: its date, kind, title, ambassadors, messages and link,
    50 a page; then a line with the count and the pages. --json prints every item found as
    a list of {"id", "title", "url", "kind", "published", "ambassadors", "messages"}, where
    `published` is the item's date (when trnews first saw it if its feed gave none) in
    newsletter.timezone. An unknown id is exit 2.

    \b
    Examples:
      trnews library næringsareal
      trnews library --ambassador kari-nordmann --year 2026
      trnews library --message naering --kind video --json | jq -r '.[].url'
    """
    from .. import library as lib

    if as_json and page is not None:
        raise UsageError("--page goes without --json: --json prints every item found")
    config = state.config()
    params = {
        "q": " ".join(query),
        "message": message or "",
        "ambassador": ambassador or "",
        "kind": kind or "",
        "year": year or "",
    }
    filters = lib.Filters.parse(config, params)
    number = lib.page_number(page)
    with open_store(config) as store:
        lib.tag(store, config)
        if as_json:
            found = lib.find(store, config, filters, size=ALL)
            click.echo(json.dumps([_json(config, i) for i in found.items], ensure_ascii=False))
            return
        found = lib.find(store, config, filters, page=number)
    for item in found.items:
        click.echo(_line(config, item))
    summary = words.count(found.total, "item")
    if found.pages > 1:
        summary += f"; page {found.page} of {found.pages}"
        if found.page < found.pages:
            summary += f": --page {found.page + 1} for more"
    click.echo(summary + ".")
