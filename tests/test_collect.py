"""Feed collection (SPEC.md: `trnews collect` and "What goes into an edition"), as admins and
subscribers notice it.

Feeds are served over HTTP by the loopback server (conftest.py), `trnews collect` runs as a
process, and what it stored is read back as a reader meets it: in the edition sent to the
Maildir or written by `trnews preview`, in the collect lines, in `trnews status --json`. Cases
a CLI run cannot reach in reasonable time (a per-feed deadline, a body cap, entity bombs) call
`pipeline.collect.collect` in-process, with a module constant monkeypatched where needed.
The last part tests the link and text helpers directly with tricky inputs.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from babel.dates import format_date
from support.feeds import NOW, YESTERDAY, Post, feed_bytes, rss
from support.mail import html_part, paragraphs, section, text_part
from support.paths import DATA
from support.servers import FeedServer, LoopbackHTTP, QuietHandler, SmtpServer, free_port
from support.site import Site, collect_line, feed_status, stored_items

from pipeline import collect as collect_stage
from pipeline.config import load_config
from pipeline.demo import days_since_anchor
from pipeline.models import PERSONAL_MARK, FeedOutcome, Item, Kind
from pipeline.parse import (
    author_matches,
    clean_text,
    cut,
    display_link,
    normalise_link,
    parse_feed,
    plain_text,
    title_text,
)
from pipeline.store import Store

OSLO = ZoneInfo("Europe/Oslo")
PUBLIC_URL = "https://nyhetsbrev.example.org"


def long_date(when: datetime) -> str:
    """A date as the edition shows it in bokmål: `27. november 2026`."""
    return format_date(when.astimezone(OSLO), "long", locale="nb")


# -- building feeds ---------------------------------------------------------------------------


def raw_rss(title: str, description_xml: str, *, prolog: str = "", encoding: str = "UTF-8") -> str:
    """An RSS feed with one item whose description is raw XML (entity references work there)."""
    slug = re.sub(r"\W+", "-", title.lower())
    return (
        f'<?xml version="1.0" encoding="{encoding}"?>\n{prolog}'
        '<rss version="2.0"><channel><title>Blogg</title><link>https://blogg.example.org</link>'
        "<description>En blogg</description>"
        f"<item><title>{title}</title><link>https://blogg.example.org/{slug}</link>"
        f"<pubDate>{format_datetime(YESTERDAY)}</pubDate>"
        f"<description>{description_xml}</description></item></channel></rss>"
    )


def billion_laughs() -> bytes:
    """The classic: ten levels of ten references each, a billion `lol`s if expanded."""
    entities = ['<!ENTITY lol0 "lol">']
    entities += [f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10)]
    doctype = "<!DOCTYPE rss [\n" + "\n".join(entities) + "\n]>\n"
    return raw_rss("Billion laughs", "&lol9;", prolog=doctype).encode()


def quadratic_blowup(title: str, *, prolog: str = "", encoding: str = "UTF-8") -> str:
    """One 10 KB entity referenced 500 times (5 MB if expanded)."""
    doctype = f'<!DOCTYPE rss [\n<!ENTITY a "{"x" * 10_000}">\n]>\n'
    return raw_rss(title, "&a;" * 500, prolog=prolog + doctype, encoding=encoding)


def external_entity(title: str, uri: str) -> bytes:
    doctype = f'<!DOCTYPE rss [\n<!ENTITY ext SYSTEM "{uri}">\n]>\n'
    return raw_rss(title, "Før &ext; etter", prolog=doctype).encode()


# -- reading results ----------------------------------------------------------------------------


def paragraph(text: str, title: str) -> str:
    """An item of the text part (title, byline · date, excerpt, link) on one line."""
    found = [p for p in paragraphs(text) if p.startswith(title)]
    assert len(found) == 1, f"expected {title!r} once in:\n{text}"
    return found[0]


def collect_in_process(site: Site) -> tuple[dict[str, FeedOutcome], dict[str, Item]]:
    """Run one collection in this process: the outcomes by URL, and the stored items by title."""
    site.write()
    config = load_config(site.config)
    with Store.open(config.database_path) as store:
        outcomes = collect_stage.collect(config, store)
    items = {title: item for title, (item, _) in stored_items(site.config).items()}
    return {o.url: o for o in outcomes}, items


def run_from(cwd: Path, site: Site, *args: str) -> str:
    """`trnews -c CONFIG ARGS` run from another folder than the config's; its stdout."""
    proc = subprocess.run(
        site.command(*args),
        cwd=cwd,
        capture_output=True,
        text=True,
        env=site.process_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# -- the real-shaped feeds, collected once and sent as one edition --------------------------------


@dataclass(frozen=True)
class RealEdition:
    urls: dict[str, str]
    collected: str
    """What `trnews collect` printed."""
    stored: dict[str, tuple[Item, list[str]]]
    """Every stored item by title, with the ids of the ambassadors credited."""
    text: str
    html: str


@pytest.fixture(scope="module")
def real(
    _feed_server: FeedServer, _smtp_server: SmtpServer, tmp_path_factory: pytest.TempPathFactory
) -> RealEdition:
    """Every real-shaped feed of tests/data served over HTTP, collected, and sent to one reader.

    Kari has her WordPress blog and the newspaper's shared feed; Ola his Blogger blog and the
    same newspaper feed; Siri is on Medium and Jonas on Substack. The newspaper answers in
    windows-1252 with a bare `text/xml` content type, as old publishing systems do.
    """
    server = _feed_server
    urls = {
        "wordpress": server.add_file("/real/kari/feed/", "blog_wordpress.xml"),
        "avis": server.add_file(
            "/real/avisa/debatt.xml", "avis_shared.xml", content_type="text/xml"
        ),
        "blogger": server.add_file(
            "/real/ola/feeds/posts/default",
            "blogger_atom.xml",
            content_type="application/atom+xml; charset=UTF-8",
        ),
        "medium": server.add_file(
            "/real/medium/feed/@siri.berg", "medium.xml", content_type="text/xml; charset=UTF-8"
        ),
        "substack": server.add_file(
            "/real/jonas/feed", "substack.xml", content_type="application/xml; charset=utf-8"
        ),
    }
    site = Site(root=tmp_path_factory.mktemp("real"), smtp_port=_smtp_server.port)
    site.ambassador(
        "kari-nordmann",
        "Kari Nordmann",
        "Prorektor, NTNU",
        [
            {"url": urls["wordpress"], "kind": "blog"},
            {"url": urls["avis"], "kind": "chronicle", "author": "Kari Nordmann"},
        ],
    )
    site.ambassador(
        "ola-hansen",
        "Ola Hansen",
        "Ordfører",
        [
            {"url": urls["blogger"], "kind": "blog", "author": "Ola Hansen"},
            {"url": urls["avis"], "kind": "chronicle", "author": "Ola Hansen"},
        ],
    )
    site.ambassador("siri-berg", "Siri Berg", "Gründer", [{"url": urls["medium"], "kind": "blog"}])
    site.ambassador(
        "jonas-lie", "Jonas Lie", "Verkstedsjef", [{"url": urls["substack"], "kind": "blog"}]
    )
    collected = site.run("collect").stdout
    stored = stored_items(site.config)
    site.run("subscribers", "add", "leser@example.org", "--name", "Anne Abonnent")
    site.run("send")
    [msg] = site.messages()
    return RealEdition(urls, collected, stored, text_part(msg), html_part(msg))


def test_every_real_feed_is_read_in_full_and_gets_its_own_line(real: RealEdition) -> None:
    in_feed = {"wordpress": 5, "avis": 5, "blogger": 2, "medium": 1, "substack": 1}
    for name, entries in in_feed.items():
        line = collect_line(real.collected, real.urls[name])
        assert line.startswith("ok"), line
        assert f"({entries} in feed)" in line, line
    assert "(kari-nordmann, ola-hansen)" in collect_line(real.collected, real.urls["avis"])
    # 13 entries; the newspaper's two outside writers are dropped, the cross-post is one item
    assert "Collected 5 feeds: 11 new items; 5 ok, 0 not modified, 0 gone, 0 failed." in (
        real.collected
    )


def test_the_edition_holds_the_recent_posts_of_every_feed_in_their_sections(
    real: RealEdition,
) -> None:
    chronicles = section(real.text, "Kronikker")
    blogs = section(real.text, "Blogginnlegg")
    assert len(paragraphs(chronicles)) == 3, chronicles
    assert len(paragraphs(blogs)) == 6, blogs
    for title in (
        "Ærlig talt: Vi trenger flere boliger – også i distriktet",
        "Felles løft for Trønderbanen: “Nå må staten på banen”",
        "Trondheimsregionen må tenke større enn “bare Trondheim”",
    ):
        assert title in chronicles
    for title in (
        "Samarbeid på tvers gir resultater",
        "Ny forskningspark på Tiller",
        "Ordførerens ukebrev: Skole, vei og næringsarealer",
        "Innlegg uten dato: Takk til alle frivillige",
        "Havbruk og teknologi i Trøndelag",
        "Kompetanse for en grønn industri",
    ):
        assert title in blogs


def test_windows_1252_newspaper_titles_keep_their_norwegian_letters_and_quotes(
    real: RealEdition,
) -> None:
    for title in (
        "Ærlig talt: Vi trenger flere boliger – også i distriktet",
        "Felles løft for Trønderbanen: “Nå må staten på banen”",
    ):
        assert title in real.text
        assert title in real.html
    for mojibake in ("Ã", "â€", "\ufffd", "&#8220;"):
        assert mojibake not in real.text


def test_a_chronicle_cross_posted_on_the_blog_is_one_chronicle_with_the_newspapers_link(
    real: RealEdition,
) -> None:
    assert "Min kronikk i Avisa" not in real.text
    assert "Min kronikk i Avisa" not in real.html
    title = "Trondheimsregionen må tenke større enn “bare Trondheim”"
    item = paragraph(real.text, title)
    assert title in section(real.text, "Kronikker")
    assert "Kari Nordmann, Prorektor, NTNU" in item
    assert "Ola Hansen" not in item
    assert (
        item.split()[-1].lower() == "https://www.avisa.example/debatt/kronikk-om-trondheimsregionen"
    )
    copies = [
        (i, ids) for i, ids in real.stored.values() if "kronikk-om-trondheimsregionen" in i.link
    ]
    assert [(i.kind, ids) for i, ids in copies] == [(Kind.CHRONICLE, ["kari-nordmann"])]


def test_the_shared_newspaper_feed_gives_each_ambassador_only_their_own_pieces(
    real: RealEdition,
) -> None:
    for outsider in ("Hvorfor “grønn vekst” må måles", "Ønsker flere gang- og sykkelveier på Øya"):
        assert outsider not in real.stored
        assert outsider not in real.text
    cowritten = "Felles løft for Trønderbanen: “Nå må staten på banen”"
    assert real.stored[cowritten][1] == ["kari-nordmann", "ola-hansen"]
    item = paragraph(real.text, cowritten)
    assert "Kari Nordmann, Prorektor, NTNU" in item
    assert "Ola Hansen, Ordfører" in item
    olas = "Ærlig talt: Vi trenger flere boliger – også i distriktet"
    assert real.stored[olas][1] == ["ola-hansen"]
    assert "Kari Nordmann" not in paragraph(real.text, olas)


def test_bloggers_author_with_an_address_matches_the_ambassadors_name(real: RealEdition) -> None:
    # The Blogger feed's author is "Ola Hansen (noreply@blogger.com)"; the config says "Ola Hansen"
    for title in (
        "Ordførerens ukebrev: Skole, vei og næringsarealer",
        "Innlegg uten dato: Takk til alle frivillige",
    ):
        assert real.stored[title][1] == ["ola-hansen"]
        assert "Ola Hansen, Ordfører" in paragraph(real.text, title)


def test_an_entry_without_a_date_is_dated_when_it_was_first_seen(real: RealEdition) -> None:
    today = long_date(datetime.now(UTC))
    assert today in paragraph(real.text, "Innlegg uten dato: Takk til alle frivillige")
    assert today not in paragraph(real.text, "Ordførerens ukebrev: Skole, vei og næringsarealer")


def test_links_are_shown_without_utm_parameters(real: RealEdition) -> None:
    assert "utm_" not in real.text
    hrefs = re.findall(r'href="([^"]*)"', real.html)
    assert hrefs
    assert not [h for h in hrefs if "utm_" in h]
    wordpress = paragraph(real.text, "Samarbeid på tvers gir resultater")
    assert wordpress.split()[-1] == "https://kari.example.org/samarbeid-gir-resultater/"
    assert 'href="https://kari.example.org/samarbeid-gir-resultater/"' in real.html


def test_excerpts_are_short_plain_text_without_markup_or_tracking_pixels(
    real: RealEdition,
) -> None:
    for title, (item, _) in real.stored.items():
        assert 0 < len(item.excerpt) <= 300, title
        assert "<" not in item.excerpt and ">" not in item.excerpt, item.excerpt
        assert "stat?event" not in item.excerpt and "width=" not in item.excerpt, item.excerpt
    medium = real.stored["Havbruk og teknologi i Trøndelag"][0].excerpt
    assert "Trøndelag er verdens største havbruksregion." in medium
    assert "bærekraftig." in medium
    substack = real.stored["Kompetanse for en grønn industri"][0].excerpt
    assert substack == "Hvorfor fagbrev og forskning må henge sammen."
    blogger = paragraph(real.text, "Ordførerens ukebrev: Skole, vei og næringsarealer")
    assert "Denne uken har kommunestyret vedtatt ny skolestruktur." in blogger
    assert "medium.com/_/stat" not in real.text and "medium.com/_/stat" not in real.html


def test_a_long_post_is_cut_to_at_most_300_characters_at_a_word_boundary(
    feeds: FeedServer, site: Site
) -> None:
    words = " ".join(f"ord{n}" for n in range(150))
    url = feeds.add(
        "/lang.xml",
        rss(Post("Langt innlegg", "https://kari.example.org/langt", html=f"<p>{words}</p>")),
    )
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": url, "kind": "blog"}])
    _, items = collect_in_process(site)
    excerpt = items["Langt innlegg"].excerpt
    assert 250 <= len(excerpt) <= 300
    assert excerpt.endswith("…")
    kept = excerpt.removesuffix("…")
    assert words.startswith(kept)
    assert words[len(kept)] == " ", f"cut inside a word: {excerpt!r}"


def test_the_appeared_first_on_line_of_wordpress_is_not_part_of_the_excerpt(
    feeds: FeedServer, site: Site
) -> None:
    """WordPress SEO plugins end each feed excerpt with "Innlegget X dukket først opp på Y":
    the reader of the newsletter has the title and the link already."""
    nb = (
        "<p>Regionen trenger flere boliger nær jernbanen. [&#8230;]</p>\n<p>Innlegget "
        '<a href="https://kari.example.org/boliger/">Boliger</a> dukket først opp på '
        '<a href="https://kari.example.org">Karis blogg</a>.</p>'
    )
    en = (
        "<p>Hydrogen at the harbour.</p><p>The post <a href='https://x.example/h'>Hydrogen</a>"
        " appeared first on <a href='https://x.example'>Ola's blog</a>.</p>"
    )
    url = feeds.add(
        "/yoast.xml",
        rss(
            Post("Boliger", "https://kari.example.org/boliger/", html=nb),
            Post("Hydrogen", "https://x.example/h", html=en),
        ),
    )
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": url, "kind": "blog"}])
    _, items = collect_in_process(site)
    assert items["Boliger"].excerpt == "Regionen trenger flere boliger nær jernbanen. […]"
    assert items["Hydrogen"].excerpt == "Hydrogen at the harbour."


# -- dates, local files ------------------------------------------------------------------------


def test_entries_without_a_date_or_dated_in_the_future_are_due_and_dated_today(
    feeds: FeedServer, site: Site
) -> None:
    future = NOW + timedelta(days=3)
    two_days_ago = NOW - timedelta(days=2)
    url = feeds.add(
        "/datoer.xml",
        rss(
            Post("Uten dato", "https://kari.example.org/uten-dato", date=None),
            Post("Fra fremtiden", "https://kari.example.org/fremtid", date=future),
            Post("Fra i forgårs", "https://kari.example.org/forgars", date=two_days_ago),
        ),
    )
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": url, "kind": "blog"}])
    site.run("collect")
    site.run("preview")
    text = (site.root / "var" / "preview" / "preview.txt").read_text(encoding="utf-8")
    today = long_date(datetime.now(UTC))
    assert today in paragraph(text, "Uten dato")
    assert today in paragraph(text, "Fra fremtiden")
    assert long_date(future) not in text
    assert long_date(two_days_ago) in paragraph(text, "Fra i forgårs")


def test_a_local_file_path_relative_to_the_config_file_is_a_feed(
    site: Site, tmp_path: Path
) -> None:
    (site.root / "feeds").mkdir()
    (site.root / "feeds" / "kari.xml").write_bytes(feed_bytes("blog_wordpress.xml"))
    site.ambassador(
        "kari-nordmann",
        "Kari Nordmann",
        "",
        [{"url": "feeds/kari.xml", "kind": "blog"}, {"url": "feeds/borte.xml", "kind": "blog"}],
    )
    site.write()
    elsewhere = tmp_path / "en-annen-mappe"
    elsewhere.mkdir()
    out = run_from(elsewhere, site, "collect")
    kari = collect_line(out, str(site.root / "feeds" / "kari.xml"))
    assert kari.startswith("ok") and "5 new items (5 in feed)" in kari
    gone = collect_line(out, str(site.root / "feeds" / "borte.xml"))
    assert gone.startswith("FAILED") and "no such file" in gone
    again = site.run("collect").stdout
    assert "not modified" in collect_line(again, str(site.root / "feeds" / "kari.xml"))


# -- HTTP: redirects, conditional requests, failures --------------------------------------------


def test_redirects_are_followed_and_a_permanent_move_is_reported(
    feeds: FeedServer, site: Site
) -> None:
    def target(path: str, title: str) -> str:
        return feeds.add(path, rss(Post(title, f"https://blogg.example.org{path}")))

    after_302 = target("/flytt/a.xml", "Etter 302")
    after_301 = target("/flytt/b.xml", "Etter 301")
    target("/flytt/c.xml", "Etter 308")
    target("/flytt/d.xml", "Etter en kjede")
    target("/flytt/e.xml", "Etter en midlertidig kjede")
    temporary = feeds.add("/flytt/302", status=302, redirect=after_302)
    permanent = feeds.add("/flytt/301", status=301, redirect=after_301)
    permanent_308 = feeds.add("/flytt/308", status=308, redirect="/flytt/c.xml")  # relative
    chain = feeds.add("/flytt/kjede1", status=301, redirect=feeds.url("/flytt/kjede2"))
    feeds.add("/flytt/kjede2", status=301, redirect=feeds.url("/flytt/kjede3"))
    feeds.add("/flytt/kjede3", status=302, redirect=feeds.url("/flytt/d.xml"))
    temporary_chain = feeds.add("/flytt/tmp1", status=302, redirect=feeds.url("/flytt/tmp2"))
    feeds.add("/flytt/tmp2", status=301, redirect=feeds.url("/flytt/e.xml"))
    loop = feeds.add("/flytt/sloyfe1", status=302, redirect=feeds.url("/flytt/sloyfe2"))
    feeds.add("/flytt/sloyfe2", status=302, redirect=loop)
    urls = [temporary, permanent, permanent_308, chain, temporary_chain, loop]
    site.ambassador(
        "kari-nordmann", "Kari Nordmann", "", [{"url": u, "kind": "blog"} for u in urls]
    )
    out = site.run("collect").stdout

    moved = {
        temporary: None,
        permanent: after_301,
        permanent_308: feeds.url("/flytt/c.xml"),
        chain: feeds.url("/flytt/kjede3"),  # where the permanent moves end
        temporary_chain: None,  # the configured URL itself only moved for now
    }
    for url, new_home in moved.items():
        line = collect_line(out, url)
        assert line.startswith("ok") and "1 new item (1 in feed)" in line, line
        if new_home is None:
            assert "moved" not in line, line
        else:
            assert f"moved permanently to {new_home}: update the config" in line, line
    looping = collect_line(out, loop)
    assert looping.startswith("FAILED") and "redirects" in looping, looping

    status = feed_status(site)
    for url, new_home in moved.items():
        assert status[url]["ok"] is True
        assert status[url]["moved_to"] == new_home
    assert status[loop]["ok"] is False
    assert "redirects" in status[loop]["last_error"]


def test_a_second_collect_asks_conditionally_and_a_304_adds_nothing(
    feeds: FeedServer, site: Site
) -> None:
    modified = "Wed, 25 Nov 2026 10:00:00 GMT"
    first_post = Post("Med ETag", "https://kari.example.org/etag")
    with_etag = feeds.add("/vilkar/etag.xml", rss(first_post), etag='"v1"')
    with_date = feeds.add(
        "/vilkar/dato.xml",
        rss(Post("Med Last-Modified", "https://kari.example.org/dato")),
        last_modified=modified,
    )
    site.ambassador(
        "kari-nordmann",
        "Kari Nordmann",
        "",
        [{"url": with_etag, "kind": "blog"}, {"url": with_date, "kind": "blog"}],
    )
    first = site.run("collect").stdout
    assert "1 new item" in collect_line(first, with_etag)
    assert "1 new item" in collect_line(first, with_date)
    [asked] = feeds.requests_to("/vilkar/etag.xml")
    assert "if-none-match" not in asked.headers

    second = site.run("collect").stdout
    assert "not modified" in collect_line(second, with_etag)
    assert "not modified" in collect_line(second, with_date)
    assert "Collected 2 feeds: 0 new items; 0 ok, 2 not modified, 0 gone, 0 failed." in second
    assert feeds.requests_to("/vilkar/etag.xml")[1].headers.get("if-none-match") == '"v1"'
    assert feeds.requests_to("/vilkar/dato.xml")[1].headers.get("if-modified-since") == modified

    # The feed changes: a new ETag, a new post
    feeds.add(
        "/vilkar/etag.xml",
        rss(Post("Nytt etter ETag", "https://kari.example.org/nytt"), first_post),
        etag='"v2"',
    )
    third = site.run("collect").stdout
    assert "1 new item (2 in feed)" in collect_line(third, with_etag)


def test_requests_name_trnews_and_the_newsletter_in_the_user_agent(
    feeds: FeedServer, site: Site
) -> None:
    url = feeds.add("/ua.xml", rss(Post("Hvem spør?", "https://kari.example.org/ua")))
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": url, "kind": "blog"}])
    collect_in_process(site)
    [asked] = feeds.requests_to("/ua.xml")
    agent = asked.headers["user-agent"]
    assert "trnews" in agent.lower()
    assert PUBLIC_URL in agent


def test_failing_feeds_each_get_a_line_and_never_stop_the_others(
    feeds: FeedServer, site: Site
) -> None:
    good = feeds.add("/feil/ok.xml", rss(Post("Fungerer fint", "https://kari.example.org/ok")))
    missing = feeds.url("/feil/finnes-ikke.xml")
    broken = feeds.add("/feil/500.xml", b"Internal error", status=500, content_type="text/plain")
    closed = f"http://127.0.0.1:{free_port()}/feed.xml"
    page = feeds.add(
        "/feil/forside",
        (DATA / "not_a_feed.html").read_bytes(),
        content_type="text/html; charset=UTF-8",
    )
    garbage = feeds.add("/feil/rot.xml", random.Random(7).randbytes(3000))
    failing = {
        missing: "HTTP 404 Not Found",
        broken: "HTTP 500 Internal Server Error",
        closed: "cannot connect: Connection refused",
        page: "not a feed: an HTML page",
        garbage: "not a feed: XML error",
    }
    site.ambassador(
        "kari-nordmann",
        "Kari Nordmann",
        "",
        [{"url": u, "kind": "blog"} for u in [good, *failing]],
    )
    proc = site.run("collect", check=False)
    assert proc.returncode == 0, proc.stderr
    assert "1 new item" in collect_line(proc.stdout, good)
    for url, reason in failing.items():
        line = collect_line(proc.stdout, url)
        assert line.startswith("FAILED"), line
        assert reason in line, line
    assert proc.stdout.splitlines()[-1].endswith(" 5 failed.")
    # The HTML page names its feed with a relative href: shown as a URL to paste
    assert feeds.url("/feed/") in collect_line(proc.stdout, page)

    site.run("collect")
    status = feed_status(site)
    assert status[good]["ok"] is True
    for url in failing:
        assert status[url]["ok"] is False
        assert status[url]["consecutive_failures"] == 2
        assert status[url]["last_error"] in collect_line(proc.stdout, url)

    feeds.add("/feil/500.xml", rss(Post("Tilbake igjen", "https://kari.example.org/tilbake")))
    recovered = site.run("collect").stdout
    assert "1 new item" in collect_line(recovered, broken)
    status = feed_status(site)
    assert status[broken]["ok"] is True
    assert status[broken]["consecutive_failures"] == 0
    assert status[broken]["last_error"] is None
    assert status[broken]["last_success"] is not None
    assert status[missing]["consecutive_failures"] == 3


class BarrierFeeds(LoopbackHTTP):
    """A loopback feed server whose answers wait until `parties` requests are in flight at once.

    If the collector fetched one feed after another, the first request would wait in vain and
    every feed would get a 503: all of them succeeding shows they were fetched concurrently.
    """

    def __init__(self, parties: int) -> None:
        barrier = threading.Barrier(parties, timeout=15)

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                try:
                    barrier.wait()
                    status = 200
                    body = rss(
                        Post(f"Innlegg {self.path}", f"https://blogg.example.org{self.path}")
                    )
                except threading.BrokenBarrierError:
                    status, body = 503, b"not fetched at the same time as the others"
                self.send_response(status)
                self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)


def test_feeds_are_fetched_concurrently(site: Site) -> None:
    site.extra_toml = "[collect]\nper_host = 10  # all ten share one host"
    with BarrierFeeds(parties=10) as server:
        site.ambassador(
            "kari-nordmann",
            "Kari Nordmann",
            "",
            [{"url": server.url(f"/blogg{n}.xml"), "kind": "blog"} for n in range(10)],
        )
        out = site.run("collect").stdout
    assert "Collected 10 feeds: 10 new items; 10 ok, 0 not modified, 0 gone, 0 failed." in out


# -- hostile feeds --------------------------------------------------------------------------------


def test_entity_bombs_and_external_entities_are_collected_without_expanding(
    feeds: FeedServer, site: Site, tmp_path: Path
) -> None:
    secret = tmp_path / "hemmelig.txt"
    secret.write_text("HEMMELIG-INNHOLD fra disken\n", encoding="utf-8")
    urls = [
        feeds.add_file("/bombe/kvadratisk.xml", "entity_bomb.xml"),
        feeds.add("/bombe/latter.xml", billion_laughs()),
        feeds.add("/bombe/passwd.xml", external_entity("Ekstern entitet", "file:///etc/passwd")),
        feeds.add("/bombe/fil.xml", external_entity("Lokal fil", secret.as_uri())),
        # Two DOCTYPEs: removing only the first let feedparser keep the second's entity
        feeds.add(
            "/bombe/to.xml", quadratic_blowup("To DOCTYPE", prolog="<!DOCTYPE rss>\n").encode()
        ),
        # UTF-16 hides "<!DOCTYPE" from a byte pattern
        feeds.add(
            "/bombe/utf16.xml",
            quadratic_blowup("UTF-16", encoding="UTF-16").encode("utf-16"),
            content_type="application/rss+xml",
        ),
    ]
    site.ambassador(
        "kari-nordmann", "Kari Nordmann", "", [{"url": u, "kind": "blog"} for u in urls]
    )
    outcomes, items = collect_in_process(site)
    assert [o.error for o in outcomes.values() if not o.ok] == []
    assert set(items) == {
        "Entity bomb",
        "Billion laughs",
        "Ekstern entitet",
        "Lokal fil",
        "To DOCTYPE",
        "UTF-16",
    }
    for item in items.values():
        for text in (item.title, item.excerpt):
            assert "x" * 10 not in text, item
            assert "lol" * 3 not in text, item
            assert "root:" not in text and "/bin/" not in text, item
            assert "HEMMELIG" not in text, item


ACTIVE = (
    "<script",
    "alert(",
    "onerror",
    "onload",
    "onclick",
    "onmouseover",
    "javascript:",
    "data:text/html",
    "<form",
    "<iframe",
    "<svg",
    "<object",
    "refresh",
    "evil.example",
)
"""What a hostile feed's content must not bring into a message, in any case of letters."""


def assert_nothing_active(
    msg: EmailMessage, *, controls: tuple[str, ...], also: tuple[str, ...] = ()
) -> None:
    """No part of the message a reader sees (text, HTML, subject) holds anything of ACTIVE or
    `also`, in any case, nor any of `controls`."""
    for part in (text_part(msg), html_part(msg), str(msg["subject"])):
        lowered = part.lower()
        for bad in (*ACTIVE, *also):
            assert bad not in lowered, bad
        for control in controls:
            assert control not in part


def test_hostile_feed_content_reaches_readers_as_plain_text_only(
    feeds: FeedServer, site: Site
) -> None:
    url = feeds.add_file("/fiendtlig.xml", "hostile.xml")
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": url, "kind": "blog"}])
    site.run("collect")
    site.run("subscribers", "add", "leser@example.org")
    site.run("send")
    [msg] = site.messages()
    text, html = text_part(msg), html_part(msg)
    assert_nothing_active(msg, controls=("\x1b", "\x07", "\x08", "\u202e"), also=("<embed",))
    flat = " ".join(text.split())
    assert "Forskning og innovasjon" in flat
    assert "Trygt innhold først." in flat
    # control and bidi characters are taken out, nothing put in their place (pipeline.sanitize)
    assert "Kontrolltegn[31m i tittelensnudd" in flat
    # A tag typed in a title is text: "<b>" as written, escaped in HTML, never bold
    assert "Sterk <b>vekst</b> i regionen & omegn" in flat
    assert "Sterk &lt;b&gt;vekst&lt;/b&gt; i regionen &amp; omegn" in html
    assert "<b>vekst" not in html
    assert "bokstavelig <b>-tagg" in flat
    assert "bokstavelig &lt;b&gt;-tagg" in html


# -- body size, encoding, deadlines (in-process) ------------------------------------------------


def test_a_gzip_encoded_feed_is_read(feeds: FeedServer, site: Site) -> None:
    url = feeds.add_file("/gzip.xml", "substack.xml", gzip=True)
    site.ambassador("jonas-lie", "Jonas Lie", "", [{"url": url, "kind": "blog"}])
    outcomes, items = collect_in_process(site)
    assert outcomes[url].ok and outcomes[url].entries == 1
    assert items["Kompetanse for en grønn industri"].excerpt.startswith("Hvorfor fagbrev")
    assert "gzip" in feeds.requests_to("/gzip.xml")[0].headers.get("accept-encoding", "")


def test_a_feed_over_the_size_cap_fails_clearly_and_the_others_are_kept(
    feeds: FeedServer, site: Site
) -> None:
    site.extra_toml = "[collect]\nmax_size_mb = 0.01953125  # 20 KB"
    many = [
        Post(f"Innlegg {n}", f"https://kari.example.org/{n}", html=f"<p>{'tekst ' * 200}</p>")
        for n in range(40)
    ]
    big = feeds.add("/stor.xml", rss(*many))
    zipped = b"<?xml version='1.0'?><rss version='2.0'><channel>" + b" " * 10_000_000
    gzip_bomb = feeds.add("/gzip-bombe.xml", zipped + b"</channel></rss>", gzip=True)
    small = feeds.add("/liten.xml", rss(Post("Lite innlegg", "https://kari.example.org/lite")))
    site.ambassador(
        "kari-nordmann",
        "Kari Nordmann",
        "",
        [{"url": u, "kind": "blog"} for u in (big, gzip_bomb, small)],
    )
    outcomes, items = collect_in_process(site)
    for url in (big, gzip_bomb):
        assert outcomes[url].error is not None
        assert "larger than 20 KB" in outcomes[url].error
    assert outcomes[small].ok
    assert set(items) == {"Lite innlegg"}


def test_a_server_that_drips_is_cut_off_by_the_feed_deadline(feeds: FeedServer, site: Site) -> None:
    site.extra_toml = "[collect]\ntimeout = 2"
    slow = feeds.add_file("/drypp.xml", "substack.xml", drip=0.5)
    fast = feeds.add_file("/rask.xml", "medium.xml")
    site.ambassador(
        "kari-nordmann",
        "Kari Nordmann",
        "",
        [{"url": slow, "kind": "blog"}, {"url": fast, "kind": "blog"}],
    )
    outcomes, items = collect_in_process(site)
    assert outcomes[slow].error == "no complete answer within 2 s"
    assert outcomes[fast].ok
    assert set(items) == {"Havbruk og teknologi i Trøndelag"}


def test_an_entry_with_a_broken_link_or_character_does_not_sink_its_feed(
    feeds: FeedServer, site: Site
) -> None:
    url = feeds.add(
        "/odelagt.xml",
        b'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>B</title>'
        b"<link>https://blogg.example.org</link><description>d</description>"
        b"<item><title>Feil port</title><link>http://blogg.example.org:99999/a</link></item>"
        b"<item><title>Halvt tegn &#xD800; her</title><link>https://blogg.example.org/b</link>"
        b"<description>Tekst &#x110000; og &#56000; mer</description></item>"
        b"</channel></rss>",
    )
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": url, "kind": "blog"}])
    outcomes, items = collect_in_process(site)
    assert outcomes[url].ok, outcomes[url].error
    assert set(items) == {"Feil port", "Halvt tegn her"}
    assert items["Halvt tegn her"].excerpt == "Tekst og mer"


# -- JSON Feed ------------------------------------------------------------------------------------


def shifted(rfc3339: str) -> datetime:
    """A date of the JSON fixtures as `feed_bytes` serves it (moved so 2026-11-26 is yesterday)."""
    return datetime.fromisoformat(rfc3339) + timedelta(days=days_since_anchor())


def item_of(text: str, words: str) -> str:
    """The one item of the text part (on one line) that holds `words`: for untitled posts."""
    found = [p for p in paragraphs(text) if words in p]
    assert len(found) == 1, f"expected {words!r} once in:\n{text}"
    return found[0]


@dataclass(frozen=True)
class JsonEdition:
    urls: dict[str, str]
    collected: str
    stored: dict[str, tuple[Item, list[str]]]
    text: str
    html: str
    accept: dict[str, str]
    """The Accept header of the request for each feed, by name."""


@pytest.fixture(scope="module")
def json_edition(
    _feed_server: FeedServer, _smtp_server: SmtpServer, tmp_path_factory: pytest.TempPathFactory
) -> JsonEdition:
    """The JSON Feeds of tests/data served as their publishers serve them, collected, and sent
    to one reader.

    Kari and Ola write on a Hugo site of several writers, each kept to their own posts by the
    `author` filter; Ola also has a site of his own whose generator writes JSON Feed 1.0 and
    whose server calls it `application/octet-stream` (only the document says what it is); Eva
    is on micro.blog.
    """
    server = _feed_server
    paths = {
        "hugo": "/json/naeringsbloggen/index.json",
        "microblog": "/json/eva/feed.json",
        "v1": "/json/ola/feed.json",
    }
    urls = {
        "hugo": server.add_file(
            paths["hugo"], "jsonfeed_hugo.json", content_type="application/feed+json"
        ),
        "microblog": server.add_file(
            paths["microblog"],
            "jsonfeed_microblog.json",
            content_type="application/json; charset=utf-8",
        ),
        "v1": server.add_file(
            paths["v1"], "jsonfeed_1_0.json", content_type="application/octet-stream"
        ),
    }
    site = Site(root=tmp_path_factory.mktemp("json"), smtp_port=_smtp_server.port)
    site.ambassador(
        "kari-nordmann",
        "Kari Nordmann",
        "Prorektor, NTNU",
        [{"url": urls["hugo"], "kind": "blog", "author": "Kari Nordmann"}],
    )
    site.ambassador(
        "ola-hansen",
        "Ola Hansen",
        "Ordfører",
        [
            {"url": urls["hugo"], "kind": "blog", "author": "Ola Hansen"},
            {"url": urls["v1"], "kind": "blog", "author": "Ola Hansen"},
        ],
    )
    site.ambassador(
        "eva-strand", "Eva Strand", "Gründer", [{"url": urls["microblog"], "kind": "blog"}]
    )
    collected = site.run("collect").stdout
    accept = {
        name: server.requests_to(path)[-1].headers.get("accept", "") for name, path in paths.items()
    }
    stored = stored_items(site.config)
    site.run("subscribers", "add", "leser@example.org", "--name", "Anne Abonnent")
    site.run("send")
    [msg] = site.messages()
    return JsonEdition(urls, collected, stored, text_part(msg), html_part(msg), accept)


def test_json_feeds_are_read_whatever_they_are_served_as_and_asked_for(
    json_edition: JsonEdition,
) -> None:
    in_feed = {"hugo": 4, "microblog": 4, "v1": 5}
    for name, entries in in_feed.items():
        line = collect_line(json_edition.collected, json_edition.urls[name])
        assert line.startswith("ok"), line
        assert f"({entries} in feed)" in line, line
    # Hugo: Kari's two, the co-written one once, her old post; micro.blog: 4; 1.0: 4 of Ola's
    assert "Collected 3 feeds: 11 new items; 3 ok, 0 not modified, 0 gone, 0 failed." in (
        json_edition.collected
    )
    for name, accept in json_edition.accept.items():
        assert "application/feed+json" in accept, (name, accept)
        assert "application/rss+xml" in accept, (name, accept)


def test_json_feed_posts_reach_the_edition_like_any_other_post(json_edition: JsonEdition) -> None:
    text, html = json_edition.text, json_edition.html
    blogs = section(text, "Blogginnlegg")
    hugo = paragraph(blogs, "Grønn omstilling i Orkland & Skaun")
    assert "Kari Nordmann, Prorektor, NTNU · " + long_date(
        shifted("2026-11-26T09:30:00+01:00")
    ) in (hugo)
    assert "Industrien i Orkland går foran: fire bedrifter har kuttet utslippene" in hugo
    assert hugo.endswith(" https://naeringsbloggen.example.no/innlegg/gronn-omstilling-i-orkland/")
    assert "Grønn omstilling i Orkland &amp; Skaun" in html
    assert "<strong>" not in html and "Smelteverket" not in text  # HTML read as its text only

    # 1.0: dated by date_modified when there is no date_published; a link post's
    # external_url is its link, without utm_*; no url and no date: no link, dated today
    budget = paragraph(blogs, "Oppdatert: Budsjettet for 2027")
    assert long_date(shifted("2026-11-19T23:10:00+01:00")) in budget
    assert "Kommunestyret vedtok budsjettet i kveld. Skolene får mer" in budget
    linked = paragraph(blogs, "Anbefalt lesning: Distriktsmeldingen")
    assert linked.endswith(" https://www.regjeringen.example/distriktsmeldingen/")
    thanks = paragraph(blogs, "Takk for dugnaden")
    assert long_date(datetime.now(UTC)) in thanks
    assert "http" not in thanks
    assert "Ola Hansen, Ordfører" in thanks  # the feed's 1.0 `author`

    # micro.blog: untitled microposts are kept, with their text and the feed's author
    micropost = item_of(blogs, "Fullt hus på NTNU i kveld")
    assert micropost.startswith("(uten tittel) Eva Strand, Gründer · ")
    assert micropost.endswith(" https://eva.example.no/2026/11/25/181503.html")
    photo = item_of(blogs, "Morgenlys over Trondheimsfjorden fra kontoret.")
    assert "a1b2c3d4e5.jpg" not in photo
    # a link post with both: `url` (the post) wins over `external_url` (the thing it is about)
    read = paragraph(blogs, "Leste dette: Regionen som ble en by")
    assert read.endswith(" https://eva.example.no/2026/11/21/leste-dette.html")


def test_json_feed_authors_drive_the_author_filter(json_edition: JsonEdition) -> None:
    stored = json_edition.stored
    cowritten = "Ett bo- og arbeidsmarked: derfor trenger vi Trønderbanen"
    assert stored[cowritten][1] == ["kari-nordmann", "ola-hansen"]
    item = paragraph(json_edition.text, cowritten)
    assert "Kari Nordmann, Prorektor, NTNU" in item and "Ola Hansen, Ordfører" in item
    assert stored["Grønn omstilling i Orkland & Skaun"][1] == ["kari-nordmann"]
    # Written by the site's editors (the feed's `authors`) or a guest (an item's 1.0 `author`)
    for outsider in ("Hva skjer i desember?", "Gjesteinnlegg: Ungdommens stemme i regionrådet"):
        assert outsider not in stored
        assert outsider not in json_edition.text
    # An old post is stored, but older than lookback_days: never sent
    assert stored["Sommerens gründercamp på Frosta"][1] == ["kari-nordmann"]
    assert "Sommerens gründercamp på Frosta" not in json_edition.text
    # micro.blog names the writer once, for the whole feed
    for words in ("Ferjefri E39", "Fullt hus på NTNU", "Morgenlys over", "Leste dette"):
        assert "Eva Strand, Gründer" in item_of(json_edition.text, words)


def json_feed(*items: dict[str, Any], version: str = "1.1", **feed: Any) -> bytes:
    """A JSON Feed document with these items (and top-level fields)."""
    doc = {
        "version": f"https://jsonfeed.org/version/{version}",
        "title": "Blogg",
        "home_page_url": "https://blogg.example.org/",
        **feed,
        "items": list(items),
    }
    return json.dumps(doc).encode()  # in \u escapes: a lone surrogate can be written too


def test_hostile_json_feed_content_reaches_readers_as_plain_text_only(
    feeds: FeedServer, site: Site
) -> None:
    """The attacks of hostile.xml, in the fields of a JSON Feed, and values of the wrong type:
    a bad field counts as missing, a bad item is passed over, the rest of the feed arrives."""
    when = YESTERDAY.isoformat()
    body = json_feed(
        {
            "id": "1",
            "url": "https://blogg.example.org/trygt",
            "title": "Trygt <script>alert('tittel')</script>innhold",
            "content_html": (
                "<p onclick=\"alert(1)\">Trygt innhold først.</p><script>alert('x')</script>"
                "<img src=x onerror=alert(1)><iframe src='https://evil.example/'></iframe>"
                "<form action='https://evil.example/'><input name=p></form>"
                "<style>body{display:none}</style><svg onload=alert(1)></svg>"
                "<a href='javascript:alert(1)'>lenke</a><object data='https://evil.example/x'>"
                "</object><meta http-equiv='refresh' content='0;url=https://evil.example/'>"
            ),
            "date_published": when,
        },
        {
            "id": "2",
            "url": "javascript:alert(document.cookie)",
            "external_url": "data:text/html,<script>alert(1)</script>",
            "title": "Lenke som ikke er en lenke",
            "content_text": "Teksten er trygg.",
            "date_published": when,
        },
        {
            "id": "3",
            "url": "https://blogg.example.org/kontroll",
            "title": "Kontrolltegn\u001b[31m\u0007 og \u202etittelen snudd\u0000",
            "summary": "Sammendrag \ud800med halvt tegn og @@trnews:unsubscribe_url@@ merke.",
            "date_published": when,
        },
        {
            "id": 4,
            "url": {"href": "https://evil.example/"},
            "title": 42,
            "summary": ["en", "liste"],
            "content_text": "Felter av feil type teller som tomme.",
            "date_published": 1764000000,
            "authors": "Kari Nordmann",
        },
        "en streng der et innlegg skulle stått",
        ["en", "liste"],
        None,
    )
    url = feeds.add("/fiendtlig.json", body, content_type="application/feed+json")
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": url, "kind": "blog"}])
    line = collect_line(site.run("collect").stdout, url)
    assert line.startswith("ok") and "4 new items (4 in feed)" in line, line
    site.run("subscribers", "add", "leser@example.org")
    site.run("send")
    [msg] = site.messages()
    text = text_part(msg)
    assert_nothing_active(
        msg, controls=("\x1b", "\x07", "\x00", "\u202e", "\ufffd"), also=(PERSONAL_MARK,)
    )
    flat = " ".join(text.split())
    safe = paragraph(text, "Trygt innhold")
    assert safe.startswith("Trygt innhold Kari Nordmann · ")  # the title, without its script
    assert "Trygt innhold først. lenke https://blogg.example.org/trygt" in safe
    linkless = paragraph(text, "Lenke som ikke er en lenke")
    assert "http" not in linkless and "Teksten er trygg." in linkless
    assert "Kontrolltegn" in flat and "tittelen snudd" in flat
    assert "Sammendrag med halvt tegn og unsubscribe_url@@ merke." in flat  # the mark gone
    odd = item_of(text, "Felter av feil type teller som tomme.")
    assert odd.startswith("(uten tittel) Kari Nordmann · " + long_date(datetime.now(UTC)))


def test_a_json_document_that_is_no_readable_json_feed_fails_with_a_clear_line(
    feeds: FeedServer, site: Site
) -> None:
    site.extra_toml = "[collect]\nmax_size_mb = 0.5"
    hugo = feed_bytes("jsonfeed_hugo.json")
    good = feeds.add("/json/god.json", hugo, content_type="application/feed+json")
    huge_number = json_feed(
        {
            "id": "1",
            "url": "https://blogg.example.org/tall",
            "title": "Et langt tall",
            "_stats": {"views": "TALL"},
        },
    ).replace(b'"TALL"', b"9" * 5000)  # more digits than Python reads as an int
    many = [{"id": str(n), "content_text": "tekst " * 100} for n in range(1000)]  # ~600 KB
    failing = {
        feeds.add("/json/avkuttet.json", hugo[: len(hugo) // 2]): (
            "not a feed: JSON error: Unterminated string starting at (line "
        ),
        feeds.add(
            "/json/wp-json.json",
            b'[{"id": 12, "title": {"rendered": "Et innlegg"}}]',
            content_type="application/json",
        ): 'not a feed: JSON, but not a JSON Feed (no "version": "https://jsonfeed.org/',
        feeds.add(
            "/json/dyp.json",
            b'{"version": "https://jsonfeed.org/version/1.1", "items": ' + b"[" * 100_000,
            content_type="application/feed+json",
        ): "not a feed: the JSON is nested too deeply",
        feeds.add(
            "/json/uten-liste.json",
            b'{"version": "https://jsonfeed.org/version/1.1", "title": "T", "items": "ingen"}',
        ): 'not a feed: a JSON Feed without its "items" list',
        feeds.add("/json/stor.json", json_feed(*many), content_type="application/feed+json"): (
            "larger than 512 KB: not read further"
        ),
    }
    number = feeds.add("/json/tall.json", huge_number, content_type="application/feed+json")
    empty = feeds.add("/json/tom.json", json_feed(), content_type="application/feed+json")
    site.ambassador(
        "kari-nordmann",
        "Kari Nordmann",
        "",
        [{"url": u, "kind": "blog"} for u in [good, number, empty, *failing]],
    )
    proc = site.run("collect", check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "unexpected error" not in proc.stdout
    assert "4 new items (4 in feed)" in collect_line(proc.stdout, good)
    assert "1 new item (1 in feed)" in collect_line(proc.stdout, number)
    assert "0 new items (0 in feed)" in collect_line(proc.stdout, empty)
    for url, reason in failing.items():
        line = collect_line(proc.stdout, url)
        assert line.startswith("FAILED"), line
        assert reason in line, line
    assert proc.stdout.splitlines()[-1].endswith(" 5 failed.")


def test_an_article_in_both_the_rss_and_the_json_feed_of_a_blog_is_one_item(
    feeds: FeedServer, site: Site
) -> None:
    """WordPress can publish a JSON Feed beside its RSS; an admin who adds both gets each
    article once, whichever way its link is written, and a JSON Feed listing an article twice
    gives it once."""
    rss_url = feeds.add_file("/kari/feed/", "blog_wordpress.xml")
    when = YESTERDAY.isoformat()
    body = json_feed(
        {
            "id": "https://kari.example.org/?p=88",
            "url": "https://KARI.example.org/samarbeid-gir-resultater?utm_source=jsonfeed#more",
            "title": "Samarbeid på tvers gir resultater",
            "content_html": "<p>Samme innlegg.</p>",
            "date_published": when,
        },
        {
            "id": "https://kari.example.org/?p=84",
            "url": "https://kari.example.org/ny-forskningspark-pa-tiller/",
            "title": "Ny forskningspark på Tiller",
            "content_html": "<p>Samme innlegg.</p>",
            "date_published": when,
        },
        {
            "id": "https://kari.example.org/?p=90",
            "url": "https://kari.example.org/bare-i-json/",
            "title": "Bare i JSON-strømmen",
            "content_html": "<p>Nytt.</p>",
            "date_published": when,
        },
        {
            "id": "https://kari.example.org/?p=90-kopi",
            "url": "https://kari.example.org/bare-i-json?utm_medium=feed",
            "title": "Bare i JSON-strømmen (kopi)",
            "content_html": "<p>Nytt.</p>",
            "date_published": when,
        },
        authors=[{"name": "Kari Nordmann"}],
    )
    json_url = feeds.add("/kari/feed/json/", body, content_type="application/feed+json")
    site.ambassador(
        "kari-nordmann",
        "Kari Nordmann",
        "",
        [{"url": rss_url, "kind": "blog"}, {"url": json_url, "kind": "blog"}],
    )
    out = site.run("collect").stdout
    assert "(3 in feed)" in collect_line(out, json_url)
    assert "Collected 2 feeds: 6 new items;" in out
    stored = stored_items(site.config)
    assert "Bare i JSON-strømmen" in stored
    assert "Bare i JSON-strømmen (kopi)" not in stored
    assert len([t for t in stored if t.startswith("Samarbeid på tvers")]) == 1


def test_a_json_feed_in_a_local_file_and_a_page_that_names_only_a_json_feed(
    feeds: FeedServer, site: Site
) -> None:
    (site.root / "feeds").mkdir()
    (site.root / "feeds" / "ola.json").write_bytes(feed_bytes("jsonfeed_1_0.json"))
    page = feeds.add(
        "/eva/",
        b'<!DOCTYPE html><html><head><title>Eva Strand</title><link rel="alternate" '
        b'type="application/feed+json" title="JSON Feed" href="/eva/feed.json"></head>'
        b"<body><h1>Eva Strand</h1></body></html>",
        content_type="text/html; charset=utf-8",
    )
    site.ambassador("ola-hansen", "Ola Hansen", "", [{"url": "feeds/ola.json", "kind": "blog"}])
    site.ambassador("eva-strand", "Eva Strand", "", [{"url": page, "kind": "blog"}])
    out = site.run("collect").stdout
    local = collect_line(out, str(site.root / "feeds" / "ola.json"))
    assert local.startswith("ok") and "5 new items (5 in feed)" in local, local
    named = collect_line(out, page)
    assert named.startswith("FAILED"), named
    assert f"the page names its feed at {feeds.url('/eva/feed.json')}" in named


# -- the helpers, with tricky inputs ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "key"),
    [
        (
            "https://www.avisa.example/debatt/kronikk-om-trondheimsregionen/"
            "?utm_source=rss&utm_medium=rss#comments",
            "https://www.avisa.example/debatt/kronikk-om-trondheimsregionen",
        ),
        (
            "https://WWW.AVISA.EXAMPLE/debatt/kronikk-om-trondheimsregionen",
            "https://www.avisa.example/debatt/kronikk-om-trondheimsregionen",
        ),
        ("HTTPS://Example.ORG/Sti/Med/Store", "https://example.org/Sti/Med/Store"),
        ("http://example.org:80/a/", "http://example.org/a"),
        ("https://example.org:443/a", "https://example.org/a"),
        ("https://example.org:8443/a", "https://example.org:8443/a"),
        ("http://example.org:443/a", "http://example.org:443/a"),
        (
            "https://example.org/a?b=2&a=1&UTM_Source=x&Utm_Medium=y",
            "https://example.org/a?b=2&a=1",
        ),
        ("https://example.org/a?utmost=1&ref=", "https://example.org/a?utmost=1&ref="),
        ("  https://example.org/a/  ", "https://example.org/a"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("http://example.org:99999/x", "http://example.org:99999/x"),
        ("", ""),
    ],
)
def test_normalise_link(url: str, key: str) -> None:
    assert normalise_link(url) == key


def test_normalise_link_keeps_query_order_and_paths_apart() -> None:
    assert normalise_link("https://e.org/a?x=1&y=2") != normalise_link("https://e.org/a?y=2&x=1")
    assert normalise_link("https://e.org/a") != normalise_link("https://e.org/b")
    assert normalise_link("https://e.org/a?p=1") != normalise_link("https://e.org/a?p=2")
    assert normalise_link("http://e.org:8080/a") != normalise_link("http://e.org:8081/a")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://kari.example.org/samarbeid/?utm_source=rss&utm_medium=rss&utm_campaign=s",
            "https://kari.example.org/samarbeid/",
        ),
        ("https://a.example/p?id=7&utm_source=x&lang=nb", "https://a.example/p?id=7&lang=nb"),
        ("https://a.example/p?UTM_Source=x&Utm_Medium=y", "https://a.example/p"),
        ("https://a.example/p?utm_source=x#del-2", "https://a.example/p#del-2"),
        ("https://a.example/p?utmost=1", "https://a.example/p?utmost=1"),
        ("https://a.example/p?q=%C3%A6%20b#del-2", "https://a.example/p?q=%C3%A6%20b#del-2"),
        ("HTTPS://A.example/P", "HTTPS://A.example/P"),
        ("  https://a.example/p  ", "https://a.example/p"),
        ("javascript:alert(1)", ""),
        ("JaVaScRiPt:alert(document.cookie)", ""),
        ("data:text/html;base64,PHNjcmlwdD4=", ""),
        ("mailto:kari@example.org", ""),
        ("/relativ/sti", ""),
        ("http://", ""),
        ("", ""),
    ],
)
def test_display_link(url: str, shown: str) -> None:
    assert display_link(url) == shown


def test_cut_leaves_short_text_alone() -> None:
    assert cut("") == ""
    assert cut("Kort tekst.") == "Kort tekst."
    exact = " ".join(["ordet"] * 50)[:300]
    assert len(exact) == 299
    assert cut(exact) == exact
    assert cut(exact + ".") == exact + "."


@pytest.mark.parametrize(
    "text",
    [
        " ".join(f"ord{n}" for n in range(100)),
        "Første setning, andre ledd, " * 20,
        "Langt ord: " + "a" * 400,
    ],
)
def test_cut_shortens_at_a_word_boundary_with_an_ellipsis(text: str) -> None:
    out = cut(text)
    assert len(out) <= 300
    assert out.endswith("…")
    kept = out.removesuffix("…")
    assert text.startswith(kept)
    assert not kept.endswith((",", " ", ":"))
    if " " in text[150:300]:
        assert text[len(kept)] in " ,:", f"cut inside a word: {out!r}"


def test_cut_to_a_smaller_limit() -> None:
    assert cut("en to tre fire", 9) == "en to…"


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ("<p>Første avsnitt.</p><p>Andre avsnitt.</p>", "Første avsnitt. Andre avsnitt."),
        ("Linje en<br>linje to<br/>linje tre", "Linje en linje to linje tre"),
        ("<ul><li>en</li><li>to</li></ul>", "en to"),
        ("<script>alert(1)</script>Hei <b>du</b>", "Hei du"),
        ("<style>p{color:red}</style>Tekst", "Tekst"),
        ('<img src=x onerror="alert(1)">', ""),
        ("Tom &amp; Jerry skriver &lt;b&gt;", "Tom & Jerry skriver <b>"),
        ("a&nbsp;b\u200bc", "a b c"),
        ("  mange   mellomrom \n\t og linjer ", "mange mellomrom og linjer"),
        ("Styre\x1b[31m\x07tegn\u202e", "Styre[31mtegn"),
        ("Ikke\ufffe\uffff\ufdd0tegn\u2066\u2069", "Ikketegn"),
        ("", ""),
    ],
)
def test_plain_text(markup: str, text: str) -> None:
    assert plain_text(markup) == text


def test_plain_text_removes_the_editions_own_placeholder_mark() -> None:
    assert PERSONAL_MARK not in plain_text(f"<p>{PERSONAL_MARK}unsubscribe_url@@</p>")


@pytest.mark.parametrize(
    ("title", "text"),
    [
        (
            "<script>alert(1)</script>Forskning og <img src=x onerror=alert(1)> innovasjon",
            "Forskning og innovasjon",
        ),
        ("Sterk <b>vekst</b> i regionen & omegn", "Sterk <b>vekst</b> i regionen & omegn"),
        ('<b onclick="alert(1)">Fet</b> tittel', "<b>Fet</b> tittel"),
        ("Tom &amp; Jerry", "Tom & Jerry"),
        ("a < b", "a < b"),
        ("Linje en<br>linje to", "Linje en linje to"),
        (
            "Kontrolltegn\x1b[31m i\x07 tittelen\x08\u202esnudd",
            "Kontrolltegn[31m i tittelensnudd",
        ),
    ],
)
def test_title_text(title: str, text: str) -> None:
    assert title_text(title) == text


@pytest.mark.parametrize(
    ("field", "name"),
    [
        ("Kari Nordmann", "Kari Nordmann"),
        ("Kari Nordmann og Ola Hansen", "Kari Nordmann"),
        ("Kari Nordmann og Ola Hansen", "Ola Hansen"),
        ("Kari Nordmann, Ola Hansen", "Ola Hansen"),
        ("Ola Hansen (noreply@blogger.com)", "Ola Hansen"),
        ("KARI  NORDMANN", "kari nordmann"),
        ("Kari\u00a0Nordmann", "Kari Nordmann"),
        ("Åse Ødegård", "åse ødegård"),
        ("A\u030ase \u00d8deg\u00e5rd", "Åse Ødegård"),  # decomposed Å
    ],
)
def test_author_matches(field: str, name: str) -> None:
    assert author_matches(field, name)


@pytest.mark.parametrize(
    ("field", "name"),
    [
        ("Kari Nordmanns venn", "Kari Nordmann"),
        ("Anne-Kari Nordmann", "Kari Nordmann"),
        ("Kari Nordmann-Berg", "Kari Nordmann"),
        ("Ola Hansen", "Kari Nordmann"),
        ("Kari", "Kari Nordmann"),
        ("Redaksjonen", "Kari Nordmann"),
        ("", "Kari Nordmann"),
    ],
)
def test_author_does_not_match(field: str, name: str) -> None:
    assert not author_matches(field, name)


def test_feed_text_can_never_carry_the_placeholder_of_a_readers_unsubscribe_link() -> None:
    """Removing the marker once from a nested copy would leave a working one behind."""
    for text in ("@@trn@@trnews:ews:unsubscribe_url@@", "x @@trnews:@@trnews:y", "@@trnews:"):
        assert PERSONAL_MARK not in clean_text(text)
        assert PERSONAL_MARK not in plain_text(f"<p>{text}</p>")


def test_every_author_of_a_multi_author_entry_counts_for_the_author_filter() -> None:
    """A co-written chronicle may name its writers in separate <author> or <dc:creator>
    elements; each of them must match, not only the one feedparser keeps in `author`."""
    atom = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Avis</title><id>urn:avis</id>
<updated>2026-11-26T10:00:00Z</updated>
<entry><title>Felles kronikk</title><id>urn:e1</id><link href="https://avis.example/a"/>
<updated>2026-11-26T10:00:00Z</updated><author><name>Kari Nordmann</name></author>
<author><name>Ola Hansen</name></author><summary>Tekst.</summary></entry></feed>"""
    rss = b"""<?xml version="1.0"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel><title>Avis</title><link>https://avis.example</link><description>D</description>
<item><title>To forfattere</title><link>https://avis.example/b</link>
<dc:creator>Kari Nordmann</dc:creator><dc:creator>Ola Hansen</dc:creator></item>
<item><title>Med adresse</title><link>https://avis.example/c</link>
<author>ola@avis.example (Ola Hansen)</author></item></channel></rss>"""
    for body, expected in ((atom, 1), (rss, 2)):
        entries = parse_feed(body, "https://avis.example/feed")
        assert sum(author_matches(e.author, "Ola Hansen") for e in entries) == expected
        assert sum(author_matches(e.author, "Kari Nordmann") for e in entries) == 1
