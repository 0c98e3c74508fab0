"""The `trnews` command: parse, call, print; no logic here, and each command imports its own."""

from __future__ import annotations

import functools
import io
import json
import logging
import signal
import sys
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast
from zoneinfo import ZoneInfo

import click

from . import __version__, redact, words
from .config import Config, check_address, config_path, load_config
from .errors import (
    ConfigError,
    DeliveryError,
    TransportUnavailable,
    TrnewsError,
    UsageError,
)
from .models import FeedOutcome, FeedResult, SubscriberState
from .store import Store

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

logger = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


@functools.cache
def _err() -> Console:
    """Standard error as rich writes it, made when a line is first written there."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass
class State:
    """What the top-level options set, shared with every command."""

    config_option: Path | None = None
    debug: bool = False
    verbose: int = 0

    @property
    def path(self) -> Path:
        return config_path(self.config_option)

    def config(self) -> Config:
        return load_config(self.path)


def _set_config(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        ctx.ensure_object(State).config_option = value


def config_option(f: F) -> F:
    """`-c PATH` belongs to `trnews`, and is accepted after the command name too."""
    return click.option(
        "-c",
        "--config",
        type=click.Path(dir_okay=False, path_type=Path),
        expose_value=False,
        callback=_set_config,
        is_eager=True,
        metavar="PATH",
        help="Config file (default: $TRNEWS_CONFIG, else config/trnews.toml).",
    )(f)


@contextmanager
def open_store(config: Config) -> Iterator[Store]:
    store = Store.open(config.database_path)
    try:
        yield store
    finally:
        store.close()


class _NoBar:
    """What `_progress` gives off a terminal: the lines on standard output, no bar, no rich."""

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def add_task(self, description: str, total: float | None = None) -> TaskID:
        return cast("TaskID", 0)

    def update(self, task: TaskID, **fields: Any) -> None:
        pass

    advance = update

    def print(self, text: str, **style: Any) -> None:
        click.echo(text)


def _progress() -> Progress | _NoBar:
    """A progress bar on standard error when it is a terminal; lines print above it."""
    if not sys.stderr.isatty():
        return _NoBar()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_err(),
        transient=True,
    )


class TrnewsGroup(click.Group):
    """Turns trnews errors into one clear line and the exit codes of SPEC.md."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TrnewsError as e:
            state = ctx.find_object(State)
            if state is not None and state.debug:
                # The traceback, then the same message and exit code as without --debug.
                traceback.print_exc(file=sys.stderr)
            _fail(e)
        except KeyboardInterrupt:
            _err().print("trnews: interrupted; nothing is lost: run the command again to carry on")
            ctx.exit(1)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""A log line of a service (`serve`), and of every command's INFO and DEBUG lines (-v)."""


class _CommandLog(logging.Formatter):
    """A warning during a command as one line in the voice of its errors ("trnews: warning:
    ..."); the detail of -v and -vv as log lines with time and source."""

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno < logging.WARNING:
            return super().format(record)
        line = f"trnews: {record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _fail(e: TrnewsError) -> None:
    if isinstance(e, ConfigError):
        for problem in e.problems:
            _err().print(f"trnews: {e.path}: {redact.text(str(problem))}", markup=False)
        _err().print(
            f"trnews: {words.count(len(e.problems), 'problem')} in the config; nothing was done."
        )
    else:
        _err().print(f"trnews: error: {redact.text(str(e))}", markup=False)
        for line in (e.hint or "").splitlines():
            _err().print(f"trnews: {line}", markup=False)
        if isinstance(e, TransportUnavailable):
            _err().print(
                "trnews: nothing is lost: readers not yet sent to stay queued; "
                "run 'trnews send' again to carry on"
            )
    sys.exit(e.exit_code)


@click.group(cls=TrnewsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    "config_opt",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PATH",
    help="Config file (default: $TRNEWS_CONFIG, else config/trnews.toml).",
)
@click.option(
    "-v", "--verbose", count=True, help="Log more (-v: each external action; -vv: debug)."
)
@click.option("--debug", is_flag=True, help="Show a traceback on errors.")
@click.version_option(__version__, prog_name="trnews")
@click.pass_context
def cli(ctx: click.Context, config_opt: Path | None, verbose: int, debug: bool) -> None:
    """trnews: the Trondheimsregionen ambassador newsletter.

    Collects the ambassadors' blog and chronicle feeds, merges them with the planned meetings,
    and sends the newsletter to the subscribers. Exit codes: 0 done; 1 the job could not
    finish (run it again to carry on); 2 bad configuration or usage.

    \b
    Examples:
      trnews check
      trnews collect && trnews preview && trnews send
      trnews -c /etc/trnews/trnews.toml status --json
    """
    state = ctx.ensure_object(State)
    state.config_option = state.config_option or config_opt
    state.debug = debug
    state.verbose = verbose
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_CommandLog())
    logging.basicConfig(level=level, handlers=[handler])
    redact.install_log_redaction()  # for every handler, uvicorn's and `run`'s too


@cli.command()
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
    from . import deliver

    config = state.config()
    warnings = deliver.check_setup(config)  # what the send will meet: the DKIM key, the CA
    feeds = sum(len(a.feeds) for a in config.ambassador)
    for warning in warnings:
        _err().print(f"trnews: warning: {warning}", markup=False)
    click.echo(
        f"{state.path}: OK: {len(config.ambassador)} ambassadors, {feeds} feeds "
        f"({config.feed_count} to fetch), {len(config.meeting)} meetings; "
        f"transport {config.delivery.transport}."
    )
    if discover:
        _discover(state.path, config, fix)


def _discover(path: Path, config: Config, fix: bool) -> None:
    from . import discover

    web = discover.feed_keys(config)
    failed: dict[str, str] = {}
    with _progress() as bar:
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


def _who(ambassadors: tuple[str, ...], shown: int = 3) -> str:
    """The ambassadors of a feed, short enough for one line: a newspaper's feed may have many."""
    if len(ambassadors) <= shown + 1:
        return ", ".join(ambassadors)
    return ", ".join(ambassadors[:shown]) + f" and {len(ambassadors) - shown} more"


def _local(value: datetime, tz: ZoneInfo) -> str:
    """A moment in the newsletter's time zone, to the minute, as an admin reads a clock."""
    # Rounded up: "wait until 14:05" must not invite a run at 14:04:30 that still skips it.
    value = (value + timedelta(seconds=59)).replace(second=0, microsecond=0)
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


def _feed_line(o: FeedOutcome, tz: ZoneInfo) -> str:
    """One line of `collect` about one feed, labelled as the summary counts it."""
    head = f"{redact.url(o.url)} ({_who(o.ambassadors)})"
    if o.skipped and o.gone_since is not None:
        since = o.gone_since.astimezone(tz).date().isoformat()
        return (
            f"GONE    {head}: gone since {since} (HTTP 410), not fetched any more: "
            "remove it from the config"
        )
    if o.skipped and o.wait_until is not None:
        until = _local(o.wait_until, tz)
        error = redact.text(o.error or "")
        return f"WAITING {head}: not fetched: its server asked to wait until {until} ({error})"
    if not o.ok:
        if o.gone_since is not None:
            why = "the feed is gone for good: remove it from the config (it is not fetched again)"
        elif o.wait_until is not None:
            why = f"asks to wait until {_local(o.wait_until, tz)}; not fetched before then"
        else:
            why = ""
        tried = f" (tried {o.attempts} times)" if o.attempts > 1 else ""
        error = redact.text(o.error or "")
        return f"FAILED  {head}: {error}{tried}" + (f"; {why}" if why else "")
    if o.not_modified:
        what = "not modified"
    else:
        what = f"{words.count(o.new_items, 'new item')} ({o.entries} in feed)"
    if o.attempts > 1:
        what += f" (on try {o.attempts})"
    moved = ""
    if o.moved_to:
        moved = f"; moved permanently to {redact.url(o.moved_to)}: update the config"
    return f"ok      {head}: {what}{moved}"


def _summary(outcomes: list[FeedOutcome]) -> str:
    """The last line of `collect`: new items, then every feed counted once by how it went."""
    states = Counter(o.state for o in outcomes)
    shown = ("ok", "not modified", "gone", "waiting", "failed")
    counts = [f"{states[s]} {s}" for s in shown if states[s] or s != "waiting"]
    new = sum(o.new_items for o in outcomes)
    return (
        f"Collected {words.count(len(outcomes), 'feed')}: {words.count(new, 'new item')}; "
        f"{', '.join(counts)}."
    )


@cli.command()
@config_option
@click.option(
    "--retry-gone",
    is_flag=True,
    help="Fetch feeds marked gone (410) too; one that answers again is no longer gone.",
)
@click.pass_obj
def collect(state: State, retry_gone: bool) -> None:
    """Fetch every feed once and store the new items.

    Prints one line per feed (new items, not modified, or why it failed) and a summary. A
    failing feed never stops the others, and the run still exits 0. A feed that answered 410
    Gone is not fetched again, and one whose server asked to wait (Retry-After) is not fetched
    before that time; both still get their line.

    \b
    Examples:
      trnews collect
      trnews collect --retry-gone
    """
    from . import cycle  # the pipeline stages load only for the commands that run them

    config = state.config()
    tz = config.newsletter.tz
    with open_store(config) as store, _progress() as bar:
        task = bar.add_task("Collecting feeds", total=config.feed_count)

        def line(o: FeedOutcome) -> None:
            bar.print(_feed_line(o, tz), markup=False, highlight=False)
            bar.advance(task)

        outcomes = cycle.collect(config, store, on_outcome=line, retry_gone=retry_gone)
    click.echo(_summary(outcomes))


@cli.command()
@config_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var/preview"),
    show_default=True,
    help="Folder for preview.html and preview.txt.",
)
@click.pass_obj
def preview(state: State, out: Path) -> None:
    """Render the edition `send` would send now; send nothing, mark nothing.

    \b
    Example:
      trnews preview --out /tmp/preview && xdg-open /tmp/preview/preview.html
    """
    from . import cycle

    config = state.config()
    with open_store(config) as store:
        d = cycle.preview(config, store, out)
    click.echo(f"Subject: {d.rendered.subject}")
    for left_out in d.left_out:
        click.echo(f"Left out {left_out}")
    if d.plan is not None and not d.plan.has_news:
        click.echo("Nothing new since the last edition: 'trnews send' would send nothing now.")
    elif d.plan is None:
        click.echo(f"Edition {d.edition_id} is still being delivered; this is its frozen content.")
    click.echo(f"Wrote {out / 'preview.html'} and {out / 'preview.txt'}")


@cli.command()
@config_option
@click.option(
    "--test",
    "test_addresses",
    multiple=True,
    metavar="ADDR",
    help="Send the would-be edition to this address only (repeatable); mark nothing.",
)
@click.argument("more_addresses", nargs=-1, metavar="[ADDR]...")
@click.pass_obj
def send(state: State, test_addresses: tuple[str, ...], more_addresses: tuple[str, ...]) -> None:
    """Build the next edition (or resume an unfinished one) and deliver it.

    Every active subscriber gets one message. Readers the server asks to wait (4xx) are tried
    again by later runs; the run still exits 0. If the mail server cannot be reached, the run
    exits 1 and the next run carries on where this one stopped.

    \b
    Examples:
      trnews send
      trnews send --test redaksjon@example.org kari@example.org
    """
    from . import cycle

    config = state.config()
    if more_addresses and not test_addresses:
        raise UsageError(f"unexpected argument {more_addresses[0]!r}; did you mean --test?")
    if test_addresses:
        addresses = [check_address(a) for a in (*test_addresses, *more_addresses)]
        from . import deliver

        deliver.check_setup(config)  # a DKIM key the real send would refuse fails the test too
        with open_store(config) as store:
            try:
                d = cycle.send_test(config, store, addresses)
            except DeliveryError as e:
                # Not the full send's advice: a test marks nothing, so there is nothing to
                # carry on, and 'trnews send' would mail every subscriber.
                failed = DeliveryError(str(e))
                failed.hint = (f"{e.hint}\n" if e.hint else "") + (
                    "the test was not sent (no reader was mailed, nothing was marked); run "
                    f"'trnews send --test {' '.join(addresses)}' again once the server answers"
                )
                raise failed from e
        for left_out in d.left_out:
            click.echo(f"Left out {left_out}")
        click.echo(
            f"Sent a test of '{d.rendered.subject}' to {', '.join(addresses)}; nothing marked."
        )
        return
    stop = threading.Event()
    with open_store(config) as store, _progress() as bar, _stop_on_signals(stop) as caught:
        task = bar.add_task("Sending", total=None)
        report = cycle.send_job(
            config,
            store,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            stop=stop,
        )
    assert report is not None  # only a job that collects first can stop before sending
    for left_out in report.left_out:
        click.echo(f"Left out {left_out}")
    if report.edition_id is None:
        click.echo(f"No edition sent: {report.reason}.")
        return
    verb = "Resumed" if report.resumed else "Sent"
    click.echo(
        f"{verb} edition {report.edition_id}: {report.delivered} delivered, "
        f"{report.deferred} deferred, {report.failed} failed."
    )
    for line in report.errors:
        click.echo(f"  {line}")
    if report.deferred:
        click.echo(
            f"{words.count(report.deferred, 'reader')} "
            f"{'waits' if report.deferred == 1 else 'wait'} for a later run "
            "('trnews send' retries them)."
        )
    if caught:
        click.echo(
            f"Stopped by {caught[0]} after the messages in flight: "
            f"{words.count(report.remaining, 'reader')} "
            f"{'is' if report.remaining == 1 else 'are'} still owed this edition; "
            "run 'trnews send' again to carry on."
        )


@cli.command()
@config_option
@click.pass_obj
def run(state: State) -> None:
    """Run the scheduler: collect and send on the config's cron lines until stopped.

    The cron lines (schedule.collect, schedule.send) are read in newsletter.timezone, daylight
    saving included; a send always collects first. Edits to the config file take effect within
    seconds; a broken edit is logged and the last good config keeps running. Only one
    scheduler runs per database (a second exits 1 naming the first's pid). A run missed while
    trnews was down is made up once if at most an hour late. Logs one line per event on
    standard output; SIGTERM or Ctrl-C stops it after the message in flight.

    \b
    Examples:
      trnews run
      trnews -c /etc/trnews/trnews.toml run
      trnews status        # in another terminal: next runs, last runs, the scheduler's pid
    """
    from . import schedule

    config = state.config()  # a broken config stops here, with exit 2
    _log_to_stdout(state.verbose, config.newsletter.tz)
    stop = threading.Event()
    with _stop_on_signals(stop) as caught:
        schedule.run(state.path, stop=stop)
    if caught:
        logger.info("Stopped by %s", caught[0])


class _LocalTime(logging.Formatter):
    """Log times as ISO 8601 in the newsletter's zone, with the offset, as admins read them."""

    def __init__(self, fmt: str, tz: ZoneInfo) -> None:
        super().__init__(fmt)
        self.tz = tz

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, self.tz).isoformat(timespec="seconds")


def _log_to_stdout(verbose: int, tz: ZoneInfo) -> None:
    """One line per event on standard output, for a terminal, journald or `docker logs`."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_LocalTime("%(asctime)s %(levelname)s %(message)s", tz))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    # Per-request lines of the HTTP libraries, the scheduler library's own chatter and one line
    # per fetched feed only with -v: a feed that fails is still logged, as a warning.
    quiet = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    for name in ("httpx", "httpcore", "apscheduler", "pipeline.collect"):
        logging.getLogger(name).setLevel(quiet)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[list[str]]:
    """SIGTERM and Ctrl-C set `stop` (the send finishes the messages in flight, then returns)
    instead of killing the run; a second Ctrl-C interrupts at once. Yields the signals caught."""
    caught: list[str] = []

    def handle(signum: int, _frame: object) -> None:
        caught.append(signal.Signals(signum).name)
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    old = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield caught
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


@cli.command()
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
    from . import status as view

    setting = view.setting(state.path)
    if setting.problem is not None:
        for p in setting.problem.problems:
            _err().print(f"trnews: {setting.problem.path}: {p}", markup=False)
    if not setting.database.exists():
        click.echo(f"No database at {setting.database} yet: run 'trnews collect' first.")
    else:
        with Store.open(setting.database) as store:
            data = view.data(setting.config, store)
        click.echo(
            json.dumps(data, indent=2, ensure_ascii=False)
            if as_json
            else view.text(data, setting.words)
        )
    if setting.problem is not None:
        sys.exit(setting.problem.exit_code)


@cli.group("subscribers")
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
    from . import subscribers

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
    from . import subscribers

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
    from . import subscribers

    config = state.config()
    with open_store(config) as store:
        click.echo(subscribers.remove(store, email, erase=erase))


@subscribers_group.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {email, name, state}.")
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
    from . import subscribers

    config = state.config()
    with open_store(config) as store:
        rows = list(store.subscribers(SubscriberState(state_filter) if state_filter else None))
    if as_json:
        click.echo(
            json.dumps(
                [subscribers.listed(s) for s in rows],
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
    from . import spreadsheet, subscribers

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
    from . import spreadsheet, subscribers

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
    from . import subscribers

    config = state.config()
    with open_store(config) as store:
        click.echo(subscribers.forget(store, email))


@cli.command()
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


@cli.command()
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
    from . import web

    config = state.config()  # a config error is exit 2, before anything listens
    for handler in logging.getLogger().handlers:  # a service's log: every line with its time
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    click.echo(
        f"Serving {config.newsletter.public_url} at http://{host}:{port} (Ctrl-C stops)", err=True
    )
    web.serve(state.path, host, port)


@cli.command()
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
    from . import report as report_stage
    from . import spreadsheet

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
        _err().print(f"trnews: calendar {problem.calendar} {said}", markup=False)
    dialect = spreadsheet.excel(config.newsletter.language) if excel else spreadsheet.PLAIN
    text = report_stage.render(built, fmt, config, dialect)
    if out is None:
        # Excel's CSV as bytes, whatever the terminal's encoding (see subscribers_export).
        click.echo(dialect.encode(text) if excel else text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(dialect.encode(text))
    click.echo(f"Wrote the {fmt} report for {built.year} to {out}")


def main() -> None:
    cli(prog_name="trnews")


__all__ = ["DeliveryError", "cli", "main"]
