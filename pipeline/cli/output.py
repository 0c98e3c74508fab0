"""What the commands share: the top-level options, the store, and what is written to the
terminal (rich on standard error, made when first used; progress bars only on a terminal)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from ..config import Config, config_path, load_config
from ..store import Store

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

F = TypeVar("F", bound=Callable[..., Any])

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""A log line of a service (`serve`), and of every command's INFO and DEBUG lines (-v)."""


@functools.cache
def err() -> Console:
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
    """What `progress` gives off a terminal: the lines on standard output, no bar, no rich."""

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


def progress() -> Progress | _NoBar:
    """A progress bar on standard error when it is a terminal; lines print above it."""
    if not sys.stderr.isatty():
        return _NoBar()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err(),
        transient=True,
    )
