"""The library's rules on the real database: the migration that lets items be films, search
as people expect it (word starts, any order, æ/ø/å as letters, hostile queries as plain
words), the message tags kept in step with the items and the bank, and the filters.

Items come from the loopback feed server through `trnews collect` as a process; the library's
functions then run on that database, as the CLI and the web side call them.
"""

from __future__ import annotations

import sqlite3
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.feeds import Post, rss
from support.servers import FeedServer
from support.site import Site

from pipeline import library
from pipeline.config import load_config
from pipeline.errors import UnknownFilter
from pipeline.library import Filters
from pipeline.models import Kind
from pipeline.store import MIGRATIONS, Query, Store, iso

NOW = datetime.now(UTC)

BANK = """
[[message]]
id = "naering"
title = "Best på næringsutvikling"
summary = "Regionen skaper arbeidsplasser."
arguments = ["Næringsareal er klart.", "Kompetansen er her."]
keywords = ["næringsliv*", "arbeidsplasser"]

[[message]]
id = "by"
title = "Byen"
keywords = ["by"]
"""

TITLES = [
    "Næringslivet i Trøndelag vokser",
    "Får og fjell i Gauldal",
    "Far og sønn på fisketur",
    "Kvål skole åpner",
    "Nye arbeidsplasser på Orkanger",
    "Bygg byen smart",
]


def posts(titles: list[str], first: int = 0) -> list[Post]:
    """Posts of Kari's blog, linked https://blogg.example.org/N from N = `first`."""
    return [
        Post(t, f"https://blogg.example.org/{n}", NOW - timedelta(days=1, minutes=n))
        for n, t in enumerate(titles, start=first)
    ]


@pytest.fixture
def lib_site(feeds: FeedServer, site: Site) -> Site:
    site.extra_toml = BANK
    url = feeds.add("/kari.xml", rss(*posts(TITLES)))
    site.ambassador("kari-nordmann", "Kari Nordmann", "Prorektor", [{"url": url, "kind": "blog"}])
    site.run("collect")
    return site


def titles(site: Site, **params: str) -> list[str]:
    config = load_config(site.config)
    with Store.open(site.db) as store:
        library.tag(store, config)
        found = library.find(store, config, Filters.parse(config, params))
    return [i.title for i in found.items]


def test_search_finds_word_starts_in_any_order_and_keeps_ae_oe_aa_apart(lib_site: Site) -> None:
    assert titles(lib_site, q="næring") == ["Næringslivet i Trøndelag vokser"]
    assert titles(lib_site, q="NÆRINGSLIVET") == ["Næringslivet i Trøndelag vokser"]
    assert titles(lib_site, q="vokser trønd") == ["Næringslivet i Trøndelag vokser"]
    # "far" is not "får", and "kval" is not "Kvål": å is a letter of its own in Norwegian.
    assert titles(lib_site, q="far") == ["Far og sønn på fisketur"]
    assert titles(lib_site, q="får") == ["Får og fjell i Gauldal"]
    assert titles(lib_site, q="kval") == []
    assert titles(lib_site, q="kvål") == ["Kvål skole åpner"]
    # "å" typed as "a" and a combining ring (as some keyboards and macOS send it) is "å".
    assert titles(lib_site, q=unicodedata.normalize("NFD", "kvål")) == ["Kvål skole åpner"]
    # Words in the excerpt count too; a word inside another word does not ("ger" in Orkanger).
    assert titles(lib_site, q="om orkanger") == ["Nye arbeidsplasser på Orkanger"]
    assert titles(lib_site, q="ger") == []


NAERING = ["Næringslivet i Trøndelag vokser"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('"', TITLES),  # no word: no search, the whole library
        ("*", TITLES),
        ("(((", TITLES),
        ("\x00", TITLES),
        ('næring"', NAERING),
        ("næring*", NAERING),
        ("-næring", NAERING),
        ("^næring", NAERING),
        ("\u202enæring", NAERING),  # a right-to-left override is no letter
        # Operators are words like any other, and each word must be found.
        ("AND", []),
        ("næring AND", []),
        ("OR næring", []),
        ("NEAR(næring", []),
        ("title:næring", []),
        ("'; DROP TABLE items; --", []),
    ],
)
def test_a_query_fts5_would_reject_is_searched_as_plain_words(
    lib_site: Site, query: str, expected: list[str]
) -> None:
    assert titles(lib_site, q=query) == expected


def test_tags_follow_the_keywords_and_an_edited_bank_applies_to_past_items(lib_site: Site) -> None:
    assert titles(lib_site, message="naering") == [
        "Næringslivet i Trøndelag vokser",
        "Nye arbeidsplasser på Orkanger",
    ]
    # "by" is a whole word: "Bygg byen" carries no "by".
    assert titles(lib_site, message="by") == []
    lib_site.extra_toml = BANK.replace('keywords = ["by"]', 'keywords = ["by*"]')
    lib_site.write()
    assert titles(lib_site, message="by") == ["Bygg byen smart"]
    assert titles(lib_site, message="naering", q="orkanger") == ["Nye arbeidsplasser på Orkanger"]


def test_a_copy_of_a_higher_kind_turns_the_item_and_its_text_is_searched_and_tagged_again(
    lib_site: Site, feeds: FeedServer
) -> None:
    # The same link in a chronicle feed, with the newspaper's own title.
    body = rss(*posts(["Arbeidsplasser for byen"], first=4))
    url = feeds.add("/avis.xml", body)
    lib_site.ambassador("ola-hansen", "Ola Hansen", "", [{"url": url, "kind": "chronicle"}])
    lib_site.write()
    lib_site.run("collect")
    assert titles(lib_site, kind="chronicle") == ["Arbeidsplasser for byen"]
    assert titles(lib_site, q="orkanger") == []  # the old title's words are gone from the index
    assert titles(lib_site, q="byen arbeid") == ["Arbeidsplasser for byen"]
    assert titles(lib_site, message="naering", ambassador="ola-hansen") == [
        "Arbeidsplasser for byen"
    ]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"message": "nope"}, "no message 'nope'"),
        ({"ambassador": "kari"}, "no ambassador 'kari'"),
        ({"kind": "podcast"}, "use one of blog, chronicle, video"),
        ({"year": "20x6"}, "not a year"),
        ({"year": "٢٠٢٦"}, "not a year"),
        ({"year": "0000"}, "not a year"),  # datetime has no year 0, nor 10000 to end 9999
        ({"year": "9999"}, "not a year"),
    ],
)
def test_an_unknown_filter_is_named(lib_site: Site, params: dict[str, str], named: str) -> None:
    config = load_config(lib_site.config)
    with pytest.raises(UnknownFilter, match=named):
        Filters.parse(config, params)


def test_pages_of_fifty_newest_first_and_a_page_past_the_last_is_unknown(lib_site: Site) -> None:
    config = load_config(lib_site.config)
    with Store.open(lib_site.db) as store:
        first = library.find(store, config, Filters(), page=1, size=4)
        second = library.find(store, config, Filters(), page=2, size=4)
        assert (first.total, first.pages, len(first.items), len(second.items)) == (6, 2, 4, 2)
        assert [i.title for i in (*first.items, *second.items)] == TITLES
        with pytest.raises(UnknownFilter, match="past the last page"):
            library.find(store, config, Filters(), page=3, size=4)
        empty = library.find(store, config, Filters(year=1999))
        assert (empty.total, empty.pages, empty.items) == (0, 1, ())
    for raw in ("0", "-1", "x", "1e3", "9999999", "²"):
        with pytest.raises(UnknownFilter):
            library.page_number(raw)
    assert library.page_number(None) == library.page_number("") == 1


def test_the_migration_keeps_every_item_credit_and_edition_and_indexes_them(tmp_path: Path) -> None:
    """A database of trnews before films: copying `items` into the wider table must not
    cascade into the credits, the editions or the desk's choices that refer to it."""
    db = tmp_path / "trnews.db"
    names = [n for n, _ in MIGRATIONS]
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied TEXT NOT NULL)")
        for name, sql in MIGRATIONS[: names.index("0013_library")]:
            conn.executescript(sql)
            conn.execute("INSERT INTO migrations VALUES (?, '2026-11-01')", (name,))
        for n, (title, kind) in enumerate([("Får på beite", "blog"), ("Kronikk", "chronicle")]):
            conn.execute(
                "INSERT INTO items (id, key, link, title, excerpt, kind, first_seen, date, "
                "feed_url) VALUES (?, ?, ?, ?, 'Utdrag.', ?, ?, ?, 'f')",
                (n + 1, f"k{n}", f"https://x.example/{n}", title, kind, iso(NOW), iso(NOW)),
            )
            conn.execute("INSERT INTO item_ambassadors VALUES (?, 'kari')", (n + 1,))
        conn.execute(
            "INSERT INTO editions (id, created, subject, html, text, status) "
            "VALUES (1, ?, 's', 'h', 't', 'sent')",
            (iso(NOW),),
        )
        conn.execute("INSERT INTO edition_items (edition_id, item_id, shown) VALUES (1, 2, 1)")
        conn.execute(
            "INSERT INTO left_out_items (item_id, edition_id, reason, created) "
            "VALUES (1, 1, 'r', ?)",
            (iso(NOW),),
        )

    with Store.open(db) as store:
        counts = {
            t: store.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("items", "item_ambassadors", "edition_items", "left_out_items")
        }
        assert counts == {
            "items": 2,
            "item_ambassadors": 2,
            "edition_items": 1,
            "left_out_items": 1,
        }
        assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert store.conn.execute("PRAGMA foreign_key_check").fetchall() == []
        found, total = store.library_items(Query(match=library.match("får")), limit=50)
        assert (total, [i.title for i in found]) == (1, ["Får på beite"])
        everything, _ = store.library_items(Query(), limit=50)
        assert [(i.kind, i.ambassadors) for i in everything] == [
            (Kind.CHRONICLE, ("kari",)),
            (Kind.BLOG, ("kari",)),
        ]
