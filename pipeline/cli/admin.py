"""The commands that look at the site: check, status, report, backup, and serve."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from pathlib import Path

import click

from .. import redact, words
from ..config import Config
from ..errors import UsageError
from ..models import FeedResult
from ..store import Store
from .output import LOG_FORMAT, State, config_option, err, open_store, progress


@click.command()
@config_option
@click.option(
    "--discover",
    is_flag=True,
    help="Also fetch every web feed once (storing nothing) and name better URLs: the feed a "
    "web page names, or where a feed has moved for good.",
)
@click.option(
    "--fix",
    is_flag=True,
    help="With --discover: write those URLs into the config file (the old file is kept as .bak).",
)
@click.pass_obj
def check(state: State, discover: bool, fix: bool) -> None:
    """Validate the config file and print a one-line summary.

    Every problem is listed at once, each with its key (e.g. ambassador[2].feeds[0].url);
    exit 2 if there is any. With --discover, each configured URL that gives a web page
    naming its feed, or that redirects permanently, gets a line with the better URL.

    \b
    Examples:
      trnews -c config/trnews.toml check
      trnews check --discover
      trnews check --discover --fix
    """
    if fix and not discover:
        raise UsageError("--fix only goes with --discover: trnews check --discover --fix")
    from .. import deliver

    config = state.config()
    warnings = deliver.check_setup(config)  # what the send will meet: the DKIM key, the CA
    feeds = sum(len(a.feeds) for a in config.ambassador)
    for warning in warnings:
        err().print(f"trnews: warning: {warning}", markup=False)
    n = len(config.indicator)
    indicators = f", {words.count(n, 'indicator')}" if n else ""
    editorial = config.editorial
    desk = (
        f"; editorial desk: {editorial.mode}, "
        f"{words.count(len(editorial.editors), 'editor')}, "
        f"drafts {editorial.draft_hours:g} h before each send"
        if editorial.active
        else ""
    )
    click.echo(
        f"{state.path}: OK: {len(config.ambassador)} ambassadors, {feeds} feeds "
        f"({config.feed_count} to fetch), {len(config.meeting)} meetings{indicators}; "
        f"transport {config.delivery.transport}{desk}."
    )
    if discover:
        _discover(state.path, config, fix)


def _discover(path: Path, config: Config, fix: bool) -> None:
    from .. import discover

    web = discover.feed_keys(config)
    failed: dict[str, str] = {}
    with progress() as bar:
        task = bar.add_task("Checking feed URLs", total=len(web))

        def seen(result: FeedResult) -> None:
            if result.error:
                failed[result.url] = result.error
            bar.advance(task)

        found = discover.discover(config, on_result=seen)
    for s in found:
        click.echo(f"{', '.join(s.keys)}: {redact.url(s.old)} {s.why}: {redact.url(s.new)}")
    better = {s.old for s in found}
    for url, keys in web.items():
        if url in failed and url not in better:
            click.echo(
                f"{', '.join(keys)}: {redact.url(url)} fails ({redact.text(failed[url])}); "
                "no better URL found."
            )
    if not found:
        click.echo(f"No better URL found for the {len(web)} web feeds.")
    elif not fix:
        click.echo(
            f"{words.count(len(found), 'URL')} to change: edit {path}, or run "
            f"'trnews -c {path} check --discover --fix' to have them replaced."
        )
    else:
        replaced, backup = discover.apply(path, found)
        click.echo(
            f"Replaced {words.count(replaced, 'URL')} in {path}; the file as it was is in {backup}."
        )


@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def status(state: State, as_json: bool) -> None:
    """Show feed health, editions, subscribers and the scheduler.

    Keeps working while the config file is broken: prints its errors on stderr, then what the
    database says, and exits 2.

    \b
    Examples:
      trnews status
      trnews status --json | jq '.feeds[] | select(.ok == false)'
    """
    from .. import status as view

    setting = view.setting(state.path)
    if setting.problem is not None:
        for p in setting.problem.problems:
            err().print(f"trnews: {setting.problem.path}: {p}", markup=False)
    if not setting.database.exists():
        click.echo(f"No database at {setting.database} yet: run 'trnews collect' first.")
    else:
        with Store.open(setting.database) as store:
            data = view.data(setting.config, store)
        click.echo(
            json.dumps(data, indent=2, ensure_ascii=False)
            if as_json
            else view.text(
                data,
                setting.words,
                setting.config.editorial.mode if setting.config is not None else "auto",
            )
        )
    if setting.problem is not None:
        sys.exit(setting.problem.exit_code)


@click.command()
@config_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def backup(state: State, file: Path) -> None:
    """Write a consistent copy of the database to FILE (owner-only), safe while `trnews run`
    and `trnews serve` work.

    The copy is one SQLite file, checked before it replaces FILE. Copying trnews.db itself
    is not a backup: the database is in WAL mode, and its newest writes are in trnews.db-wal.
    To restore, stop trnews and put the copy in place of storage.database (see README.md).

    \b
    Examples:
      trnews backup /var/backups/trnews/trnews-$(date +%F).db
      trnews -c /etc/trnews/trnews.toml backup /var/backups/trnews.db
    """
    config = state.config()
    with open_store(config) as store:
        store.backup(file)
        counts = store.subscriber_counts()
        items = store.item_count()
        editions = store.edition_count()
    click.echo(
        f"Wrote a copy of {config.database_path} to {file} (owner-only): "
        f"{words.count(items, 'item')}, "
        f"{words.count(editions, 'edition')}, {words.count(sum(counts.values()), 'subscriber')}."
    )


@click.command()
@config_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="TCP port."
)
@click.pass_obj
def serve(state: State, host: str, port: int) -> None:
    """Serve the web side: subscribe, confirm, unsubscribe, the archive, the open report.

    Put it behind a reverse proxy that answers at newsletter.public_url (see README.md).
    SIGTERM or Ctrl-C stops it after the requests in flight.

    \b
    Examples:
      trnews serve
      trnews serve --host 0.0.0.0 --port 8080
    """
    from .. import web

    config = state.config()  # a config error is exit 2, before anything listens
    for handler in logging.getLogger().handlers:  # a service's log: every line with its time
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    click.echo(
        f"Serving {config.newsletter.public_url} at http://{host}:{port} (Ctrl-C stops)", err=True
    )
    web.serve(state.path, host, port)


@click.command()
@config_option
@click.option(
    "--year",
    type=click.IntRange(1970, 9999),
    help="Calendar year, in newsletter.timezone (default: this year).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "csv", "html"]),
    default="text",
    show_default=True,
    help="text for a terminal, json and csv for other programs, html to publish or print.",
)
@click.option(
    "--excel",
    is_flag=True,
    help="With --format csv: for Excel in Norway to open as it is (semicolons, UTF-8 with a "
    "byte order mark, numbers with the newsletter language's decimal sign).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report to this file instead of standard output.",
)
@click.option(
    "--as-of",
    "as_of",
    metavar="ISO-8601",
    hidden=True,
    help="Count as if it were this moment (tests; a local time is in newsletter.timezone).",
)
@click.pass_obj
def report(
    state: State, year: int | None, fmt: str, excel: bool, out: Path | None, as_of: str | None
) -> None:
    """The open report: each ambassador's plan, what they have done, and the gap.

    For every ambassador (the ones at zero too), ordered by name: chronicles, blog posts and
    meetings of the year, against the plan and what the plan expects by today; totals; the
    year's items per message of the message bank; and when counting began. A calendar that
    cannot be read is named on stderr and in the report; the report is still made (exit 0).

    \b
    Examples:
      trnews report
      trnews report --year 2026 --format json | jq '.ambassadors[] | {name, actual}'
      trnews report --format html --out var/rapport.html
      trnews report --format csv --out rapport-2026.csv
      trnews report --format csv --excel --out rapport-2026.csv    # opens in Excel
    """
    from .. import report as report_stage
    from .. import spreadsheet

    if excel and fmt != "csv":
        raise UsageError(
            f"--excel goes with --format csv, not {fmt}: trnews report --format csv --excel"
        )
    config = state.config()
    moment = None
    if as_of is not None:
        try:
            moment = datetime.fromisoformat(as_of)
        except ValueError as e:
            raise UsageError(f"--as-of {as_of!r} is not an ISO 8601 date or time") from e
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=config.newsletter.tz)
    built = report_stage.build(config, year=year, as_of=moment)
    for problem in built.calendar_problems:
        if problem.events_left_out:
            said = f"{problem.error}; its other meetings are counted"
        else:
            said = f"could not be read: {problem.error}; its meetings are not counted"
        err().print(f"trnews: calendar {problem.calendar} {said}", markup=False)
    dialect = spreadsheet.excel(config.newsletter.language) if excel else spreadsheet.PLAIN
    text = report_stage.render(built, fmt, config, dialect)
    if out is None:
        # Excel's CSV as bytes, whatever the terminal's encoding (see subscribers_export).
        click.echo(dialect.encode(text) if excel else text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(dialect.encode(text))
    click.echo(f"Wrote the {fmt} report for {built.year} to {out}")
