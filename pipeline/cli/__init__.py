"""The `trnews` command: parse, call, print; no logic here. Each command's module loads only
when that command runs (or when --help lists them all), and each command imports its own stages."""

from __future__ import annotations

import importlib
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from .. import __version__, redact, words
from ..errors import ConfigError, DeliveryError, TransportUnavailable, TrnewsError
from .output import LOG_FORMAT, State, err

COMMANDS = {
    "backup": "admin:backup",
    "bounces": "bounces:bounces",
    "check": "admin:check",
    "collect": "jobs:collect",
    "desk": "desk:desk_group",
    "draft": "desk:draft",
    "library": "library:library",
    "preview": "jobs:preview",
    "report": "admin:report",
    "run": "jobs:run",
    "send": "jobs:send",
    "serve": "admin:serve",
    "status": "admin:status",
    "subscribers": "subscribers:subscribers_group",
}
"""Each command, and where in this package it is defined (module:name)."""


class TrnewsGroup(click.Group):
    """Turns trnews errors into one clear line and the exit codes of SPEC.md; loads a
    command's module when the command is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, name = COMMANDS[cmd_name].split(":")
        command: click.Command = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        return command

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
            err().print("trnews: interrupted; nothing is lost: run the command again to carry on")
            ctx.exit(1)


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
            err().print(f"trnews: {e.path}: {redact.text(str(problem))}", markup=False)
        err().print(
            f"trnews: {words.count(len(e.problems), 'problem')} in the config; nothing was done."
        )
    else:
        err().print(f"trnews: error: {redact.text(str(e))}", markup=False)
        for line in (e.hint or "").splitlines():
            err().print(f"trnews: {line}", markup=False)
        if isinstance(e, TransportUnavailable):
            err().print(
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


def main() -> None:
    cli(prog_name="trnews")


__all__ = ["DeliveryError", "cli", "main"]
