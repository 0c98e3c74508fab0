"""Manage subscribers: add, remove, import and export (addresses checked for syntax only)."""

from __future__ import annotations

import csv
import io
import json
import logging
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from . import spreadsheet, words
from .config import check_address
from .errors import UsageError
from .models import Subscriber, SubscriberState
from .sanitize import LINE_BREAK, one_line
from .store import Store

logger = logging.getLogger(__name__)

EXPORT_FIELDS = ("email", "name", "state", "created")


def check_name(name: str, address: str) -> str:
    """The reader's name on one line, made safe (see pipeline.sanitize); a line break in it is
    refused, not cleaned away.

    A line break in a name is most often an attempt to smuggle a header (`Bcc:`) into the To
    line, so the whole entry is refused rather than quietly repaired.
    """
    if LINE_BREAK.search(name):
        raise UsageError(f"the name given for {address} contains a line break: {name!r}")
    return one_line(name)


def _import_state(value: str) -> SubscriberState:
    """The state column of a CSV line (as `export` writes it); empty means active."""
    value = value.strip().lower()
    if not value:
        return SubscriberState.ACTIVE
    try:
        return SubscriberState(value)
    except ValueError:
        known = ", ".join(s.value for s in SubscriberState)
        raise UsageError(f"unknown state {value!r}; use one of {known}") from None


def add(store: Store, email: str, name: str = "", *, now: datetime | None = None) -> str:
    """Add an address as active (an admin's word is consent enough); say what changed.

    An address already known keeps its name: a second `add` is most often the same list typed
    in again, not a rename (`rename` is for that), and a name is never replaced without a word.
    One that has no name yet takes the one given."""
    address = check_address(email)
    name = check_name(name, address)
    now = now or datetime.now(UTC)
    old = store.subscriber(address)
    keep = old is not None and old.name != ""
    sub, before = store.add_subscriber(
        address,
        old.name if keep and old is not None else name,
        state=SubscriberState.ACTIVE,
        source="admin",
        now=now,
    )
    if before is None:
        return f"Added {sub.email} (active)."
    said = (
        f"{sub.email} is already active."
        if before is SubscriberState.ACTIVE
        else (f"{sub.email} was {before}; now active again.")
    )
    if keep and name and name != sub.name:
        said += (
            f" Its name stays {sub.name!r}; to change it: "
            f"trnews subscribers rename {sub.email} {shlex.quote(name)}"
        )
    return said


def rename(store: Store, email: str, name: str, *, now: datetime | None = None) -> str:
    """Change the name a subscriber is greeted and addressed by."""
    address = email.strip()
    sub = store.subscriber(address)
    if sub is None:
        raise UsageError(f"{address} is not a subscriber")
    name = check_name(name, sub.email)
    if name == sub.name:
        return f"{sub.email} is already named {name!r}."
    store.rename_subscriber(sub.email, name, now=now or datetime.now(UTC))
    was = f" (was {sub.name!r})" if sub.name else ""
    return f"{sub.email} is now named {name!r}{was}."


def remove(store: Store, email: str, *, erase: bool = False, now: datetime | None = None) -> str:
    """Unsubscribe an address (kept, so the ledger stays whole), or erase every trace of it."""
    address = email.strip()
    if erase:
        return forget(store, address, now=now)
    sub = store.subscriber(address)
    if sub is None:
        raise UsageError(f"{address} is not a subscriber")
    if sub.state is SubscriberState.UNSUBSCRIBED:
        return f"{sub.email} was already unsubscribed."
    # As the unsubscribe link does it: the consent records note the withdrawal too.
    store.unsubscribe(sub.id, now=now or datetime.now(UTC))
    return f"Unsubscribed {sub.email}; 'trnews subscribers remove --erase' forgets it entirely."


def forget(store: Store, email: str, *, now: datetime | None = None) -> str:
    """Erase everything held about an address (GDPR erasure): the subscriber, its consent
    records, the address in the delivery ledger. Only a keyed hash of the address is kept, so
    that importing an old list does not sign up again someone who asked to be forgotten."""
    address = email.strip()
    if not store.erase_subscriber(address, now=now or datetime.now(UTC)):
        raise UsageError(f"{address} is not a subscriber")
    return (
        f"Erased {address}: the address is gone from the database (a keyed hash is kept so "
        "that an import never signs it up again; signing up through the web form does)."
    )


def person(store: Store, email: str) -> dict[str, Any]:
    """Everything held about one address (GDPR access), as `subscribers export --json EMAIL`
    prints it."""
    address = email.strip()
    found = store.person(address)
    if found is None:
        raise UsageError(f"{address} is not a subscriber")
    return found


@dataclass
class ImportReport:
    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept_out: list[str] = field(default_factory=list)
    """Addresses that had unsubscribed, bounced or been forgotten: an import never signs them
    up again."""
    encoding: str = "utf-8"
    """What the file was read as (see `spreadsheet.decode`)."""


COLUMNS = {
    "email": ("email", "e-post", "epost", "e-postadresse", "epostadresse"),
    "name": ("name", "navn"),
    "state": ("state",),
}
"""The header words `import` reads for each column, case and surrounding spaces aside: the
words `export` writes first (they win when a file has both, as `Name` and `Navn`), then what a
Norwegian spreadsheet calls them."""


def _rows(text: str, source: str) -> list[tuple[int, str, str, str]]:
    """(line number, email, name, state) of every non-empty line; columns matched by name.

    A cell `export` made safe for a spreadsheet (a leading single quote) is read as the value
    it stands for. A line the csv module cannot read (a field over its 128 KiB limit, say) is
    a UsageError naming the line."""
    delimiter = spreadsheet.delimiter(spreadsheet.first_line(text))
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        return _read(reader, source)
    except csv.Error as e:
        # DictReader's own line_num is set once a row is read; its reader's counts the line
        # that failed too.
        line = reader.reader.line_num
        raise UsageError(
            f"{source}:{line}: cannot read this line as CSV ({e}); "
            "fix the line, or save the file again as CSV, and run again"
        ) from e


def _read(reader: csv.DictReader[str], source: str) -> list[tuple[int, str, str, str]]:
    header = {(c or "").strip().lower(): c for c in reader.fieldnames or []}
    columns = {
        key: next(header[w] for w in words if w in header)
        for key, words in COLUMNS.items()
        if any(w in header for w in words)
    }
    if "email" not in columns:
        raise UsageError(
            f"{source}: the first line must be a header naming an 'email' column ('e-post' "
            f"and 'epost' do too) and optionally 'name' ('navn'); "
            f"found {', '.join(header) or 'nothing'}"
        )
    rows = []
    for row in reader:
        cells = {key: spreadsheet.value(row.get(c) or "") for key, c in columns.items()}
        email = cells["email"].strip()
        name, state = cells.get("name", ""), cells.get("state", "")
        if email or name:
            rows.append((reader.line_num, email, name, state))
    return rows


def import_csv(store: Store, path: Path, *, now: datetime | None = None) -> ImportReport:
    """Import a CSV file; every address is checked first, and one bad line imports nothing.

    An optional `state` column (as `export` writes it) sets the state of a new address, so an
    export read back into a fresh database never turns an unsubscribed reader active again.
    Addresses already in the database are left as they are. The file may be UTF-8 or, as
    Excel in Norway saves it, windows-1252 (see `spreadsheet.decode`), with `,`, `;` or tabs.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e}") from e
    text, encoding = spreadsheet.decode(data, str(path))
    rows = _rows(text, str(path))
    bad: list[str] = []
    good: list[tuple[str, str, SubscriberState]] = []
    for line, email, name, state in rows:
        try:
            address = check_address(email)
            good.append((address, check_name(name, address), _import_state(state)))
        except UsageError as e:
            bad.append(f"{path}:{line}: {e}")
    if bad:
        more = f"\n… and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise UsageError(
            f"nothing imported: {words.count(len(bad), 'bad line')}; "
            "fix these lines and run again:\n" + "\n".join(bad[:20]) + more
        )
    now = now or datetime.now(UTC)
    report = ImportReport(encoding=encoding)
    with store.transaction():
        for email, name, state in good:
            old = store.subscriber(email)
            if old is None and store.is_suppressed(email):
                report.kept_out.append(email)  # forgotten at their request
            elif old is None:
                store.add_subscriber(email, name, state=state, source="import", now=now)
                report.added.append(email)
            elif old.state in (SubscriberState.UNSUBSCRIBED, SubscriberState.BOUNCED):
                report.kept_out.append(email)
            else:
                report.unchanged.append(email)
    logger.info("Imported %s: %d added", path, len(report.added))
    return report


def export_csv(
    subscribers: Iterable[Subscriber], out: TextIO, dialect: spreadsheet.Dialect = spreadsheet.PLAIN
) -> int:
    """Write every subscriber as CSV (email, name, state, created); returns the count. No cell
    starts as a formula would (see `spreadsheet`); `import_csv` reads the names back as they
    were, in either dialect."""
    writer = spreadsheet.Writer(out, dialect)
    writer.writerow(EXPORT_FIELDS)
    n = 0
    for s in subscribers:
        writer.writerow((s.email, s.name, s.state.value, s.created.isoformat()))
        n += 1
    return n


def listed(subscriber: Subscriber) -> dict[str, Any]:
    """One subscriber as `subscribers list --json` prints it (SPEC.md: email, name, state)."""
    return {"email": subscriber.email, "name": subscriber.name, "state": subscriber.state.value}


def export_json(subscribers: Iterable[Subscriber], out: TextIO) -> int:
    """Write every subscriber as one JSON list of the CSV's columns, item by item as they are
    read (100,000 readers need not fit in memory); returns the count. The text is what
    `json.dumps(list, indent=2, ensure_ascii=False)` gives, and a line end."""
    n = 0
    for s in subscribers:
        item = json.dumps(
            dict(listed(s), created=s.created.isoformat()), indent=2, ensure_ascii=False
        )
        out.write(("[\n  " if n == 0 else ",\n  ") + item.replace("\n", "\n  "))
        n += 1
    out.write("\n]\n" if n else "[]\n")
    return n
