"""`trnews subscribers ...`: add, rename, remove, list, import, export, forget."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import click

from .. import words
from ..errors import UsageError
from ..models import SubscriberState
from .output import State, config_option, open_store


@click.group("subscribers")
def subscribers_group() -> None:
    """Manage subscribers: add, remove, list, import, export.

    \b
    Examples:
      trnews subscribers add kari@example.org --name "Kari Nordmann"
      trnews subscribers import readers.csv
      trnews subscribers list --json
    """


@subscribers_group.command("add")
@config_option
@click.argument("email")
@click.option("--name", default="", help="The reader's name, used in the To header.")
@click.pass_obj
def subscribers_add(state: State, email: str, name: str) -> None:
    """Add an address; it is active at once.

    A malformed address is refused with exit 2.

    \b
    Example:
      trnews subscribers add kari@example.org --name "Kari Nordmann"
    """
    from .. import subscribers

    config = state.config()
    with open_store(config) as store:
        click.echo(subscribers.add(store, email, name))


@subscribers_group.command("rename")
@config_option
@click.argument("email")
@click.argument("name")
@click.pass_obj
def subscribers_rename(state: State, email: str, name: str) -> None:
    """Change the name a subscriber is addressed by (the To header and the greeting).

    `subscribers add` never replaces a name that is set; this does.

    \b
    Example:
      trnews subscribers rename kari@example.org "Kari Nordmann"
    """
    from .. import subscribers

    config = state.config()
    with open_store(config) as store:
        click.echo(subscribers.rename(store, email, name))


@subscribers_group.command("remove")
@config_option
@click.argument("email")
@click.option("--erase", is_flag=True, help="Forget the address entirely (GDPR erasure).")
@click.pass_obj
def subscribers_remove(state: State, email: str, erase: bool) -> None:
    """Unsubscribe an address (or erase it with --erase).

    \b
    Examples:
      trnews subscribers remove kari@example.org
      trnews subscribers remove --erase kari@example.org
    """
    from .. import subscribers

    config = state.config()
    with open_store(config) as store:
        click.echo(subscribers.remove(store, email, erase=erase))


@subscribers_group.command("list")
@config_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print a JSON list of {email, name, state, bounces, last_bounce}.",
)
@click.option(
    "--state",
    "state_filter",
    type=click.Choice([s.value for s in SubscriberState]),
    help="Only subscribers in this state.",
)
@click.pass_obj
def subscribers_list(state: State, as_json: bool, state_filter: str | None) -> None:
    """List subscribers.

    \b
    Examples:
      trnews subscribers list
      trnews subscribers list --state active --json
    """
    from .. import subscribers

    config = state.config()
    with open_store(config) as store:
        rows = list(store.subscribers(SubscriberState(state_filter) if state_filter else None))
        bounced = store.bounce_records() if as_json else {}
    if as_json:
        click.echo(
            json.dumps(
                [
                    dict(
                        subscribers.listed(s),
                        bounces=bounced.get(s.id, (0, None))[0],
                        last_bounce=bounced.get(s.id, (0, None))[1],
                    )
                    for s in rows
                ],
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    for s in rows:
        click.echo(f"{s.email:<40} {s.state.value:<13} {s.name}")
    click.echo(f"{words.count(len(rows), 'subscriber')}.", err=True)


@subscribers_group.command("import")
@config_option
@click.argument(
    "csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="FILE.csv"
)
@click.pass_obj
def subscribers_import(state: State, csv_file: Path) -> None:
    """Import subscribers from a CSV file with a header naming `email` and optionally `name`.

    Every address is checked first; one malformed address imports nothing (exit 2, each bad
    line named). Addresses that unsubscribed are never signed up again by an import.

    The file may be what Excel in Norway saves: "CSV (semikolondelt)" (windows-1252, `;`) or
    "CSV UTF-8", with the headers `E-post` (or `epost`) and `Navn`. Commas, semicolons and
    tabs are all read.

    \b
    Examples:
      printf 'email,name\\nkari@example.org,Kari Nordmann\\n' > readers.csv
      trnews subscribers import readers.csv
      trnews subscribers import "Lesere fra Excel.csv"    # E-post;Navn
    """
    from .. import spreadsheet, subscribers

    config = state.config()
    with open_store(config) as store:
        report = subscribers.import_csv(store, csv_file)
    if report.encoding == spreadsheet.WINDOWS_1252:
        click.echo(f"Read {csv_file} as windows-1252, since it is not UTF-8.")
    click.echo(
        f"Imported {csv_file}: {len(report.added)} added, {len(report.unchanged)} already "
        f"subscribed, {len(report.kept_out)} left out (unsubscribed or bounced)."
    )


@subscribers_group.command("export")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of CSV.")
@click.option(
    "--excel",
    is_flag=True,
    help="CSV for Excel in Norway to open as it is: UTF-8 with a byte order mark, semicolons.",
)
@click.argument("email", required=False)
@click.pass_obj
def subscribers_export(state: State, as_json: bool, excel: bool, email: str | None) -> None:
    """Print every subscriber as CSV (email, name, state, created), or everything held about
    one person as JSON (GDPR access): the subscriber, the consent records (when, which text,
    which form, confirmed, withdrawn) and the editions delivered.

    Plain CSV (commas, UTF-8) is for other programs; with --excel it is for a person who opens
    it in Excel. `subscribers import` reads both back.

    \b
    Examples:
      trnews subscribers export > subscribers.csv
      trnews subscribers export --excel > abonnenter.csv
      trnews subscribers export --json kari@example.org
    """
    from .. import spreadsheet, subscribers

    if excel and (as_json or email is not None):
        raise UsageError("--excel is for the CSV export: trnews subscribers export --excel")
    config = state.config()
    with open_store(config) as store:
        if email is not None:
            found = subscribers.person(store, email)
            click.echo(json.dumps(found, indent=2, ensure_ascii=False))
            return
        if as_json:
            n = subscribers.export_json(store.subscribers(), sys.stdout)
        elif excel:
            # Bytes, whatever the terminal's encoding: Excel needs UTF-8 and its byte order mark.
            dialect = spreadsheet.excel(config.newsletter.language)
            text = io.StringIO()
            n = subscribers.export_csv(store.subscribers(), text, dialect)
            click.echo(dialect.encode(text.getvalue()), nl=False)
        else:
            n = subscribers.export_csv(store.subscribers(), sys.stdout)
    click.echo(f"Exported {words.count(n, 'subscriber')}.", err=True)


@subscribers_group.command("forget")
@config_option
@click.argument("email")
@click.pass_obj
def subscribers_forget(state: State, email: str) -> None:
    """Erase everything held about an address (GDPR erasure); the same as `remove --erase`.

    The subscriber, their consent records and the address in the delivery ledger are deleted.
    A keyed hash of the address is kept so that an import of an old list never signs them up
    again; they can still sign up through the web form, with a new confirmation.

    \b
    Example:
      trnews subscribers forget kari@example.org
    """
    from .. import subscribers

    config = state.config()
    with open_store(config) as store:
        click.echo(subscribers.forget(store, email))
