"""`trnews library` (SPEC.md "The library and the message bank"): search, filters, pages,
`--json` and exit codes, through the real CLI as a process against a real SQLite file and
feeds on the loopback feed server."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from support.feeds import YESTERDAY, Post, rss
from support.servers import FeedServer
from support.site import Site

OSLO = ZoneInfo("Europe/Oslo")

MESSAGES = """\
[[message]]
id = "naering"
title = "Best på næringsutvikling"
keywords = ["næringsliv*", "næringsarealer"]

[[message]]
id = "bolig"
title = "Gode steder å bo"
keywords = ["boliger"]
"""

KARI = [
    Post(
        "Næringslivet vokser i Trondheimsregionen",
        "https://kari.example.org/vekst/",
        YESTERDAY - timedelta(hours=30),
    ),
    Post(
        "Får vi nok boliger?",
        "https://kari.example.org/boliger/",
        YESTERDAY - timedelta(hours=40),
    ),
]
OLA = [
    Post(
        "Far og sønn på Ørland",
        "https://avis.example.no/far-og-sonn",
        YESTERDAY - timedelta(days=3),
        author="Ola Hansen",
    )
]


def _library_site(site: Site, feeds: FeedServer) -> None:
    site.extra_toml = MESSAGES
    blog = feeds.add("/kari/feed/", rss(*KARI))
    youtube = feeds.add_file("/feeds/videos.xml", "youtube_channel.xml")
    avis = feeds.add("/avis.rss", rss(*OLA))
    site.ambassador(
        "kari-nordmann",
        "Kari Nordmann",
        feeds=[{"url": blog, "kind": "blog"}, {"url": youtube, "kind": "video"}],
    )
    site.ambassador("ola-hansen", "Ola Hansen", feeds=[{"url": avis, "kind": "chronicle"}])
    site.run("collect")


def _titles(site: Site, *args: str) -> list[str]:
    return [i["title"] for i in json.loads(site.run("library", "--json", *args).stdout)]


def test_search_finds_word_starts_in_any_case_with_norwegian_letters(
    site: Site, feeds: FeedServer
) -> None:
    _library_site(site, feeds)
    films = "Næringsarealer i Trondheimsregionen: slik får vi plass til nye arbeidsplasser"
    assert _titles(site, "næring") == [films, "Næringslivet vokser i Trondheimsregionen"]
    assert _titles(site, "NÆRING", "vokser") == ["Næringslivet vokser i Trondheimsregionen"]
    assert _titles(site, "vokser næringsliv") == ["Næringslivet vokser i Trondheimsregionen"]
    # "far" is not "får", and "får" not "far": å is a letter of its own.
    assert _titles(site, "far") == ["Far og sønn på Ørland"]
    assert _titles(site, "får", "boliger") == ["Får vi nok boliger?"]
    assert _titles(site, "ørland") == [
        "Ørland, Åfjord og byen: én bo- og arbeidsregion",
        "Far og sønn på Ørland",
    ]
    assert _titles(site, "sykkel") == []


HOSTILE = ['"', 'næring"', "AND", "*", "NEAR(", ") OR (", "næring*", "-næring", "^næring"]


def test_a_query_fts5_would_refuse_is_searched_as_plain_words(
    site: Site, feeds: FeedServer
) -> None:
    _library_site(site, feeds)
    for query in HOSTILE:
        proc = site.run("library", "--", query)
        assert proc.stderr == "", query
        found = _titles(site, "--", query)
        if "næring" in query:
            assert "Næringslivet vokser i Trondheimsregionen" in found, query
        elif any(c.isalpha() for c in query):
            assert found == [], query  # "and", "near", "or": words in no title or excerpt
        else:
            assert len(found) == 5, query  # no words: the query filters nothing


def test_filters_combine_and_each_line_says_what_the_item_is(site: Site, feeds: FeedServer) -> None:
    _library_site(site, feeds)
    lines = site.run("library", "--message", "naering").stdout.splitlines()
    assert lines[-1] == "2 items."
    film, blog = lines[:-1]
    assert film.split()[1] == "video"
    assert "Kari Nordmann" in film and "[naering]" in film
    assert film.endswith("  https://www.youtube.com/watch?v=Fj0rdV1d3o1")
    date = (YESTERDAY - timedelta(hours=30)).astimezone(OSLO).date().isoformat()
    assert blog.startswith(f"{date}  blog ")
    assert blog.endswith("(Kari Nordmann) [naering]  https://kari.example.org/vekst/")

    assert _titles(site, "--message", "naering", "--kind", "video") == [
        "Næringsarealer i Trondheimsregionen: slik får vi plass til nye arbeidsplasser"
    ]
    assert _titles(site, "--message", "bolig", "--ambassador", "kari-nordmann") == [
        "Får vi nok boliger?"
    ]
    assert _titles(site, "--ambassador", "ola-hansen") == ["Far og sønn på Ørland"]
    assert _titles(site, "--kind", "chronicle", "--message", "naering") == []
    assert _titles(site, "næring", "--kind", "blog", "--ambassador", "kari-nordmann") == [
        "Næringslivet vokser i Trondheimsregionen"
    ]
    year = str(YESTERDAY.astimezone(OSLO).year)
    assert len(_titles(site, "--year", year)) == 5
    assert _titles(site, "--year", str(int(year) - 1)) == []


def test_json_lists_every_item_with_ids_and_dates_in_the_newsletters_zone(
    site: Site, feeds: FeedServer
) -> None:
    _library_site(site, feeds)
    found = json.loads(site.run("library", "--json").stdout)
    assert len(found) == 5
    for item in found:
        assert set(item) == {"id", "title", "url", "kind", "published", "ambassadors", "messages"}
        assert isinstance(item["id"], int)
        published = datetime.fromisoformat(item["published"])
        assert published.utcoffset() == published.astimezone(OSLO).utcoffset()
    newest_first = [datetime.fromisoformat(i["published"]) for i in found]
    assert newest_first == sorted(newest_first, reverse=True)
    by_title = {i["title"]: i for i in found}
    boliger = by_title["Får vi nok boliger?"]
    assert boliger["kind"] == "blog"
    assert boliger["ambassadors"] == ["kari-nordmann"]
    assert boliger["messages"] == ["bolig"]
    assert boliger["url"] == "https://kari.example.org/boliger/"
    assert by_title["Far og sønn på Ørland"]["kind"] == "chronicle"
    assert by_title["Far og sønn på Ørland"]["messages"] == []


def test_pages_of_fifty_and_json_gives_them_all(site: Site, feeds: FeedServer) -> None:
    posts = [
        Post(
            f"Innlegg nummer {n}", f"https://kari.example.org/{n}/", YESTERDAY - timedelta(hours=n)
        )
        for n in range(60)
    ]
    site.ambassador(
        "kari-nordmann",
        "Kari Nordmann",
        feeds=[{"url": feeds.add("/f", rss(*posts)), "kind": "blog"}],
    )
    site.run("collect")
    first = site.run("library").stdout.splitlines()
    assert len(first) == 51
    assert first[-1] == "60 items; page 1 of 2: --page 2 for more."
    assert "Innlegg nummer 0 " in first[0]
    second = site.run("library", "--page", "2").stdout.splitlines()
    assert len(second) == 11
    assert second[-1] == "60 items; page 2 of 2."
    assert "Innlegg nummer 59 " in second[-2]
    assert len(json.loads(site.run("library", "--json").stdout)) == 60

    past = site.run("library", "--page", "3", check=False)
    assert past.returncode == 2 and past.stdout == ""
    assert "page 3 is past the last page, 2" in past.stderr
    for bad in ("0", "-1", "abc", "1.5"):
        proc = site.run("library", f"--page={bad}", check=False)
        assert proc.returncode == 2, bad
        assert "is not a page number" in proc.stderr
    both = site.run("library", "--json", "--page", "2", check=False)
    assert both.returncode == 2 and "--page" in both.stderr


def test_an_unknown_filter_exits_2_naming_it_and_the_valid_ids(
    site: Site, feeds: FeedServer
) -> None:
    _library_site(site, feeds)
    proc = site.run("library", "--message", "klima", check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "'klima'" in proc.stderr and "naering, bolig" in proc.stderr
    proc = site.run("library", "--ambassador", "per-person", check=False)
    assert proc.returncode == 2
    assert "'per-person'" in proc.stderr and "kari-nordmann, ola-hansen" in proc.stderr
    proc = site.run("library", "--kind", "film", check=False)
    assert proc.returncode == 2
    assert "'film'" in proc.stderr and "blog, chronicle, video" in proc.stderr
    proc = site.run("library", "--year", "26", check=False)
    assert proc.returncode == 2 and "'26' is not a year" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_empty_library_is_one_empty_page(site: Site) -> None:
    site.ambassador("kari-nordmann", "Kari Nordmann")
    assert site.run("library").stdout == "0 items.\n"
    assert site.run("library", "næring").stdout == "0 items.\n"
    assert json.loads(site.run("library", "--json").stdout) == []
