"""`trnews bounces`: read the return path's mailbox once."""

from __future__ import annotations

import click

from ..errors import UsageError
from .output import State, config_option, open_store


@click.command("bounces")
@config_option
@click.pass_obj
def bounces(state: State) -> None:
    """Read the new bounces and complaints in the [bounces] mailbox once, and act on them.

    A permanent failure counts against the reader as a refusal at delivery does (after
    delivery.bounce_limit editions in a row they are bounced); a complaint unsubscribes them
    at once. Prints one line per report (kind, address, reader) and a summary. A message
    handled is moved to cur/ (Maildir) or flagged seen (IMAP), never deleted; one that is no
    bounce (a reader's reply, an auto-reply) is left where it was. The scheduler runs this
    with every collect. Exit 1 if the mailbox cannot be reached.

    \b
    Example:
      trnews bounces
    """
    from .. import cycle

    config = state.config()
    if config.bounces is None:
        raise UsageError(
            f'{config.path} has no [bounces] section: give it maildir = "PATH" or '
            'imap = { host = "...", username = "..." } (see the README, "Bounces and complaints")'
        )
    with open_store(config) as store:
        run = cycle.read_bounces(config, store, on_handled=lambda h: click.echo(h.line()))
    click.echo(run.summary())
