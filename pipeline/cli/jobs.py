"""The commands that run the newsletter's work: collect, preview, send, and the scheduler."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from .. import redact, words
from ..config import check_address
from ..errors import DeliveryError, UsageError
from ..models import FeedOutcome, IndicatorOutcome
from .output import State, config_option, open_store, progress

logger = logging.getLogger(__name__)


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


def _indicator_line(o: IndicatorOutcome, tz: ZoneInfo) -> str:
    """One line of `collect` about one indicator source."""
    head = f"indicator {o.id} ({o.source})"
    if o.error is not None:
        return f"FAILED  {head}: {redact.text(o.error)}; the last good figures stand"
    if o.due is not None:
        return f"ok      {head}: fetched recently, not asked again before {_local(o.due, tz)}"
    if o.not_modified:
        return f"ok      {head}: not modified"
    what = f"{words.count(o.new, 'new period')}, {o.revised} revised ({o.periods} in source)"
    if o.attempts > 1:
        what += f" (on try {o.attempts})"
    return f"ok      {head}: {what}"


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


@click.command()
@config_option
@click.option(
    "--retry-gone",
    is_flag=True,
    help="Fetch feeds marked gone (410) too; one that answers again is no longer gone.",
)
@click.pass_obj
def collect(state: State, retry_gone: bool) -> None:
    """Fetch every feed once and store the new items.

    Prints one line per feed (new items, not modified, or why it failed), one per indicator
    source (new periods, revised, not modified, or why it failed) and a summary. A failing
    feed or source never stops the others, and the run still exits 0. An indicator source
    that worked is fetched again only 6 hours later. A feed that answered 410
    Gone is not fetched again, and one whose server asked to wait (Retry-After) is not fetched
    before that time; both still get their line.

    \b
    Examples:
      trnews collect
      trnews collect --retry-gone
    """
    from .. import cycle  # the pipeline stages load only for the commands that run them

    config = state.config()
    tz = config.newsletter.tz
    with open_store(config) as store, progress() as bar:
        task = bar.add_task("Collecting feeds", total=config.feed_count)

        def line(o: FeedOutcome) -> None:
            bar.print(_feed_line(o, tz), markup=False, highlight=False)
            bar.advance(task)

        def indicator(o: IndicatorOutcome) -> None:
            bar.print(_indicator_line(o, tz), markup=False, highlight=False)

        outcomes = cycle.collect(
            config, store, on_outcome=line, on_indicator=indicator, retry_gone=retry_gone
        )
    click.echo(_summary(outcomes))


@click.command()
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
    from .. import cycle

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


@click.command()
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
    from .. import cycle

    config = state.config()
    if more_addresses and not test_addresses:
        raise UsageError(f"unexpected argument {more_addresses[0]!r}; did you mean --test?")
    if test_addresses:
        addresses = [check_address(a) for a in (*test_addresses, *more_addresses)]
        from .. import deliver

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
    with open_store(config) as store, progress() as bar, _stop_on_signals(stop) as caught:
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


@click.command()
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
    from .. import schedule

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
