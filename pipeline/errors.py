"""Every error trnews raises on purpose, and the exit code each one means.

    TrnewsError                 exit 1 unless a subclass says otherwise
    ├── ConfigError             exit 2: the config file is missing, unreadable or invalid
    ├── UsageError              exit 2: a bad argument (a malformed address, a bad CSV file)
    │   └── UnknownFilter           a library filter names nothing known (404 on the web side)
    ├── StoreError              exit 1: the database could not be opened, is locked, or is newer
    ├── SchedulerRunning        exit 1: another `trnews run` already schedules this database
    ├── FetchError              one feed could not be fetched or parsed; never stops the others
    ├── RenderError             exit 1: a template is broken (most often an admin's override)
    ├── AwaitingEditors         exit 1: the desk has not approved the draft, or holds it
    ├── NoDraft                 exit 1: `trnews desk` was asked to act and there is no draft
    ├── MailboxUnavailable      exit 1: the bounces' mailbox cannot be reached or read
    └── DeliveryError           exit 1: the transport could not deliver; nothing is lost
        ├── TransportUnavailable    the server cannot be reached or refuses us as a whole
        └── RecipientRefused        the server refused one recipient (temporary or permanent)

Each carries what a user needs to act: the file and key, the feed URL, the SMTP reply.
"""

from __future__ import annotations

from dataclasses import dataclass


class TrnewsError(Exception):
    """Base of every error trnews raises on purpose."""

    exit_code = 1
    hint: str | None = None
    """What to do about it, when the command that met it knows better than the error."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a config file: where (a dotted key) and what."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}" if self.key else self.message


class ConfigError(TrnewsError):
    """The config file is missing, unreadable or invalid; lists every problem at once."""

    exit_code = 2

    def __init__(self, path: object, problems: list[Problem]) -> None:
        self.path = str(path)
        self.problems = problems
        lines = [f"{self.path}: {p}" for p in problems]
        super().__init__("\n".join(lines))


class UsageError(TrnewsError):
    """A command was given something it cannot use, such as a malformed address."""

    exit_code = 2


class UnknownFilter(UsageError):
    """A library filter names no message, ambassador or kind of the config, or a page or
    year that is not a number: exit 2 on the CLI, 404 on the web side."""


class StoreError(TrnewsError):
    """The database could not be opened or written (locked, unreadable, from a newer trnews)."""


class SchedulerRunning(TrnewsError):
    """Another `trnews run` holds the database's scheduler lock; `pid` names it."""

    def __init__(self, lock: object, pid: int | None) -> None:
        self.pid = pid
        who = f"pid {pid}" if pid else "another process"
        super().__init__(
            f"another 'trnews run' ({who}) already schedules this database (lock {lock}); "
            "stop it first, or give this one a config with another storage.database"
        )


class FetchError(TrnewsError):
    """One feed could not be fetched or parsed."""

    def __init__(self, url: str, reason: str, *, advertised: str | None = None) -> None:
        self.url = url
        self.reason = reason
        self.advertised = advertised
        """The feed an HTML page names, when the URL gave a page instead of a feed."""
        super().__init__(f"{url}: {reason}")


class RenderError(TrnewsError):
    """The edition could not be rendered: a template is broken or produced invalid MJML."""


class AwaitingEditors(TrnewsError):
    """`[editorial]`: the draft may not be sent yet: in "approve" mode no editor has approved
    it, or an editor holds it. Nothing was sent; the send goes ahead once it is approved."""

    def __init__(self, draft_id: int, state: str, why: str) -> None:
        self.draft_id = draft_id
        self.state = state
        super().__init__(why)


class NoDraft(TrnewsError):
    """There is no draft at the desk to act on: nothing was done."""


class MailboxUnavailable(TrnewsError):
    """The mailbox of `[bounces]` cannot be reached or read; it never stops a collect or send."""


class DeliveryError(TrnewsError):
    """A message could not be delivered."""


class TransportUnavailable(DeliveryError):
    """The mail server cannot be reached, or refuses every message; retry later."""


class Refused(TransportUnavailable):
    """The server answered and refused us as a whole (the login, TLS, the sender): trying again
    now cannot help, and repeating a refused login can get the sender blocked."""


class RecipientRefused(DeliveryError):
    """The server refused one recipient; `permanent` tells a 5xx from a 4xx reply."""

    def __init__(self, recipient: str, code: int, reply: str) -> None:
        self.recipient = recipient
        self.code = code
        self.reply = reply
        super().__init__(f"{recipient}: {code} {reply}")

    @property
    def permanent(self) -> bool:
        return self.code >= 500
