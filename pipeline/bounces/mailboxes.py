"""The mailboxes the return path's mail lands in: a Maildir, or an IMAP folder over TLS.

Each gives its new messages one at a time; a message handled is marked (moved to `cur/` with
the seen flag, or flagged \\Seen), never deleted, and one left alone stays new.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..config import Config, ImapConfig
from ..errors import MailboxUnavailable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Letter:
    """One new message in a mailbox."""

    id: str
    """The mailbox's name for it (a Maildir file name, an IMAP UID)."""
    data: bytes


class Mailbox(Protocol):
    name: str

    def new(self) -> Iterator[Letter]: ...

    def handled(self, letter: Letter) -> None: ...

    def close(self) -> None: ...


class MaildirBox:
    """A Maildir: the new messages are those in `new/` and those in `cur/` not flagged seen."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = f"the Maildir {path}"
        if not (path / "new").is_dir() or not (path / "cur").is_dir():
            raise MailboxUnavailable(f"cannot read {self.name}: it has no new/ and cur/ folders")

    def new(self) -> Iterator[Letter]:
        try:
            names = sorted(f"new/{p.name}" for p in (self.path / "new").iterdir())
            names += sorted(
                f"cur/{p.name}" for p in (self.path / "cur").iterdir() if "S" not in _flags(p.name)
            )
        except OSError as e:
            raise MailboxUnavailable(f"cannot read {self.name}: {e}") from e
        for name in names:
            if name.rpartition("/")[2].startswith("."):
                continue
            try:
                data = (self.path / name).read_bytes()
            except FileNotFoundError:
                continue  # taken by a mail reader meanwhile
            except OSError as e:
                raise MailboxUnavailable(f"cannot read {self.name}: {e}") from e
            yield Letter(name, data)

    def handled(self, letter: Letter) -> None:
        base = letter.id.rpartition("/")[2].partition(":2,")[0]
        flags = "".join(sorted(set(_flags(letter.id.rpartition("/")[2])) | {"S"}))
        try:
            (self.path / letter.id).rename(self.path / "cur" / f"{base}:2,{flags}")
        except OSError as e:
            raise MailboxUnavailable(f"cannot mark a message read in {self.name}: {e}") from e

    def close(self) -> None:
        pass


def _flags(name: str) -> str:
    return name.partition(":2,")[2]


class ImapBox:
    """An IMAP folder over TLS (IMAPS), the password from the environment: the new messages are
    those not flagged \\Seen, read without marking them (BODY.PEEK)."""

    def __init__(self, imap: ImapConfig, ca_file: Path | None, timeout: float = 30) -> None:
        self.name = f"the IMAP folder {imap.folder} of {imap.username} at {imap.host}:{imap.port}"
        try:
            context = ssl.create_default_context(cafile=ca_file)
            self.conn = imaplib.IMAP4_SSL(
                imap.host, imap.port, ssl_context=context, timeout=timeout
            )
        except (OSError, imaplib.IMAP4.error) as e:
            raise MailboxUnavailable(f"cannot reach {self.name}: {_why(e)}") from e
        try:
            self.conn.login(imap.username, imap.password)
            kind, _ = self.conn.select(_quoted(imap.folder))
            if kind != "OK":
                raise MailboxUnavailable(f"cannot open {self.name}: there is no such folder")
        except (OSError, imaplib.IMAP4.error) as e:
            self.close()
            hint = "" if imap.password else f" (${imap.password_env} is not set)"
            raise MailboxUnavailable(f"cannot log in to {self.name}: {_why(e)}{hint}") from e
        except MailboxUnavailable:
            self.close()
            raise

    def new(self) -> Iterator[Letter]:
        try:
            _, found = self.conn.uid("SEARCH", "UNSEEN")
            uids = (found[0] or b"").decode().split() if found else []
            for uid in uids:
                _, parts = self.conn.uid("FETCH", uid, "(BODY.PEEK[])")
                data = next((p[1] for p in parts if isinstance(p, tuple)), None)
                if isinstance(data, bytes):
                    yield Letter(uid, data)
        except (OSError, imaplib.IMAP4.error) as e:
            raise MailboxUnavailable(f"cannot read {self.name}: {_why(e)}") from e

    def handled(self, letter: Letter) -> None:
        try:
            self.conn.uid("STORE", letter.id, "+FLAGS", "(\\Seen)")
        except (OSError, imaplib.IMAP4.error) as e:
            raise MailboxUnavailable(f"cannot mark a message read in {self.name}: {_why(e)}") from e

    def close(self) -> None:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            self.conn.logout()


def _quoted(folder: str) -> str:
    return '"' + re.sub(r'(["\\])', r"\\\1", folder) + '"'


def _why(e: BaseException) -> str:
    return str(e) or type(e).__name__


def open_mailbox(config: Config) -> Mailbox:
    """The configured `[bounces]` mailbox, opened; MailboxUnavailable names it and its error."""
    bounces = config.bounces
    assert bounces is not None
    if bounces.imap is not None:
        ca = bounces.imap.ca_file
        return ImapBox(bounces.imap, config.resolve(ca) if ca else None)
    assert bounces.maildir is not None
    return MaildirBox(config.resolve(bounces.maildir))
