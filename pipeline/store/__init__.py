"""The SQLite database: every SQL statement of trnews lives here.

Schema changes are ordered, named migrations; each is applied once, in a transaction, and
recorded in the `migrations` table (`migrations.py`). `db.py` opens the database owner-only and
holds its transactions and meta; each family of tables has a module of its own (`feeds.py`,
`items.py`, `editions.py`, `subscribers.py`, `jobs.py`, `desk.py`,
`indicators.py`, `bounces.py`), and `Store` is all of them
on one connection.
"""

from __future__ import annotations

from ..models import (
    ArchivedEdition,
    Confirmation,
    Consent,
    ConsentText,
    FeedHealth,
    Recipient,
)
from .bounces import BounceEffect, Bounces
from .db import (
    OWNER_ONLY,
    create_owner_only,
    iso,
    open_owner_only,
    parse_iso,
    tighten,
)
from .desk import Desk
from .editions import Editions
from .feeds import Feeds
from .indicators import Indicators, IndicatorSource, Saved
from .items import Items
from .jobs import Jobs
from .library import Library, Query
from .migrations import MIGRATIONS, Migrations
from .report import Reports
from .subscribers import GMAIL, Subscribers, mailbox

__all__ = [
    "GMAIL",
    "MIGRATIONS",
    "OWNER_ONLY",
    "ArchivedEdition",
    "BounceEffect",
    "Confirmation",
    "Consent",
    "ConsentText",
    "FeedHealth",
    "IndicatorSource",
    "Query",
    "Recipient",
    "Saved",
    "Store",
    "create_owner_only",
    "iso",
    "mailbox",
    "open_owner_only",
    "parse_iso",
    "tighten",
]


class Store(
    Feeds,
    Items,
    Library,
    Editions,
    Desk,
    Indicators,
    Bounces,
    Subscribers,
    Jobs,
    Reports,
    Migrations,
):
    """One open SQLite database."""
