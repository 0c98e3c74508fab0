"""Films (feed kind "video", SPEC.md "The library and the message bank") from a YouTube channel
feed and a Vimeo RSS feed, served by the loopback feed server, through `trnews collect` to the
edition (`preview` and a Maildir `send`), the library and the report: each runs the real CLI
as a process against a real SQLite file."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from support.feeds import YESTERDAY, Post, rss
from support.mail import add_readers, html_part, section, text_part
from support.paths import ROOT
from support.servers import FeedServer
from support.site import Site

from pipeline import demo

YOUTUBE_FILMS = (
    "Næringsarealer i Trondheimsregionen: slik får vi plass til nye arbeidsplasser",
    "Ørland, Åfjord og byen: én bo- og arbeidsregion",
)
VIMEO_FILM = "Ordføreren om ny E6 og kollektivtrafikk i Melhus"
HEADINGS = {"nb": "Filmer", "nn": "Filmar", "en": "Videos"}
BLOG_HEADINGS = {"nb": "Blogginnlegg", "nn": "Blogginnlegg", "en": "Blog posts"}


def _films_site(site: Site, feeds: FeedServer) -> None:
    youtube = feeds.add_file("/feeds/videos.xml", "youtube_channel.xml")
    vimeo = feeds.add_file("/olahansen/videos/rss", "vimeo_channel.xml")
    blog = feeds.add(
        "/kari/feed/",
        rss(Post("Et blogginnlegg om pendling", "https://kari.example.org/pendling/")),
    )
    site.ambassador(
        "kari-nordmann",
        "Kari Nordmann",
        "Prorektor",
        [{"url": blog, "kind": "blog"}, {"url": youtube, "kind": "video"}],
    )
    site.ambassador("ola-hansen", "Ola Hansen", "Ordfører", [{"url": vimeo, "kind": "video"}])


def _html_section(html: str, heading: str) -> str:
    """The HTML from `heading` up to the next section heading (or the end)."""
    after = html.split(f">{heading}<", 1)[1]
    return re.split(r">(?:Blogginnlegg|Kronikker|Kommende møter|Filmer)<", after, maxsplit=1)[0]


def test_youtube_and_vimeo_films_come_after_the_blog_posts_as_films(
    site: Site, feeds: FeedServer
) -> None:
    _films_site(site, feeds)
    collected = site.run("collect").stdout
    assert "2 new" in collected and "1 new" in collected, collected
    out = site.run("preview").stdout
    assert "1 blogginnlegg og 3 filmer" in out

    add_readers(site, [("anne@example.org", "Anne Abonnent")])
    site.run("send")
    [msg] = site.messages()
    assert "1 blogginnlegg og 3 filmer" in msg["Subject"]
    html, text = html_part(msg), text_part(msg)
    for body in (html, (site.root / "var" / "preview" / "preview.html").read_text()):
        assert body.index(">Blogginnlegg<") < body.index(">Filmer<")
        films = _html_section(body, "Filmer")
        for title in (*YOUTUBE_FILMS, VIMEO_FILM):
            assert title in films
        assert "Et blogginnlegg om pendling" not in films
        # The YouTube film's words come from its media:description; Vimeo's from its description.
        assert "felles næringsarealer på tvers av kommunegrensene" in films
        assert "hva ny E6 betyr for pendlerne" in films
        # No thumbnail, no image of any kind: images cost deliverability.
        assert "<img" not in body.lower()
        assert "ytimg.com" not in body and "vimeocdn.com" not in body
    for body in (text, (site.root / "var" / "preview" / "preview.txt").read_text()):
        assert body.index("\nBlogginnlegg\n") < body.index("\nFilmer\n")
        films = " ".join(section(body, "Filmer").split())
        for title in (*YOUTUBE_FILMS, VIMEO_FILM):
            assert title in films
        assert "felles næringsarealer på tvers av kommunegrensene" in films
        assert "Et blogginnlegg om pendling" in section(body, "Blogginnlegg")
        assert "ytimg.com" not in body and "vimeocdn.com" not in body


@pytest.mark.parametrize("language", ["nb", "nn", "en"])
def test_one_film_is_headed_and_counted_in_the_newsletters_language(
    site: Site, feeds: FeedServer, language: str
) -> None:
    vimeo = feeds.add_file("/olahansen/videos/rss", "vimeo_channel.xml")
    site.ambassador("ola-hansen", "Ola Hansen", "Ordfører", [{"url": vimeo, "kind": "video"}])
    site.language = language
    site.run("collect")
    out = site.run("preview").stdout
    one = {"nb": "1 film", "nn": "1 film", "en": "1 video"}[language]
    [subject] = [line for line in out.splitlines() if line.startswith("Subject: ")]
    assert subject.endswith(f": {one}")
    text = (site.root / "var" / "preview" / "preview.txt").read_text()
    assert VIMEO_FILM in " ".join(section(text, HEADINGS[language]).split())
    assert f"\n{BLOG_HEADINGS[language]}\n" not in text
    html = (site.root / "var" / "preview" / "preview.html").read_text()
    assert f">{HEADINGS[language]}<" in html


OWN_TEXT_ATOM = """<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:media="http://search.yahoo.com/mrss/">
<title>Filmer</title><id>tag:film.example.org,2026:feed</id><updated>{date}</updated>
<entry><id>tag:film.example.org,2026:1</id><title>Film med egen tekst</title>
<link href="https://film.example.org/1"/><updated>{date}</updated>
<content type="html">&lt;p&gt;Filmens egen omtale i innholdet.&lt;/p&gt;</content>
<media:group><media:title>Film med egen tekst</media:title>
<media:description>Kanalens standardtekst om abonnement.</media:description></media:group>
</entry>
<entry><id>tag:film.example.org,2026:2</id><title>Film med sammendrag etter gruppen</title>
<link href="https://film.example.org/2"/><updated>{date}</updated>
<media:group><media:description>Kanalens standardtekst om abonnement.</media:description>
</media:group><summary>Filmens eget sammendrag.</summary>
</entry>
</feed>
"""

OWN_TEXT_RSS = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel><title>Filmer</title>
<link>https://film.example.org/</link><description>Filmer</description>
<item><title>Film med beskrivelse etter mediet</title><link>https://film.example.org/3</link>
<pubDate>{rfc822}</pubDate>
<media:description>Kanalens standardtekst om abonnement.</media:description>
<description>&lt;p&gt;Filmens egen beskrivelse.&lt;/p&gt;</description></item>
</channel></rss>
"""


def test_an_entrys_own_text_wins_over_its_media_description(site: Site, feeds: FeedServer) -> None:
    # feedparser read media:description as the summary, so it won over an Atom <content>, and
    # over any text that came after it in the document.
    from email.utils import format_datetime

    atom = feeds.add("/film.atom", OWN_TEXT_ATOM.format(date=YESTERDAY.isoformat()).encode())
    rss_url = feeds.add(
        "/film.rss", OWN_TEXT_RSS.format(rfc822=format_datetime(YESTERDAY)).encode()
    )
    site.ambassador(
        "kari-nordmann",
        "Kari Nordmann",
        feeds=[{"url": atom, "kind": "video"}, {"url": rss_url, "kind": "video"}],
    )
    site.run("collect")
    site.run("preview")
    text = (site.root / "var" / "preview" / "preview.txt").read_text()
    films = " ".join(section(text, "Filmer").split())
    assert "Filmens egen omtale i innholdet." in films
    assert "Filmens eget sammendrag." in films
    assert "Filmens egen beskrivelse." in films
    assert "Kanalens standardtekst" not in films


def test_a_film_in_a_blog_feed_and_a_video_feed_is_one_item_a_film(
    site: Site, feeds: FeedServer
) -> None:
    youtube = feeds.add_file("/feeds/videos.xml", "youtube_channel.xml")
    blog = feeds.add(
        "/kari/feed/",
        rss(
            Post(
                "Se filmen om næringsarealer",
                "https://www.youtube.com/watch?v=Fj0rdV1d3o1&utm_source=blogg",
            )
        ),
    )
    site.ambassador(
        "kari-nordmann",
        "Kari Nordmann",
        feeds=[{"url": blog, "kind": "blog"}, {"url": youtube, "kind": "video"}],
    )
    site.run("collect")
    out = site.run("preview").stdout
    assert "2 filmer" in out and "blogginnlegg" not in out
    text = (site.root / "var" / "preview" / "preview.txt").read_text()
    assert "\nBlogginnlegg\n" not in text
    assert text.count("youtube.com/watch?v=Fj0rdV1d3o1") == 1
    found = json.loads(site.run("library", "--json").stdout)
    assert sorted(i["kind"] for i in found) == ["video", "video"]
    assert [i["url"] for i in found].count("https://www.youtube.com/watch?v=Fj0rdV1d3o1") == 1


def test_the_report_counts_films_against_the_plan(site: Site, feeds: FeedServer) -> None:
    youtube = feeds.add_file("/feeds/videos.xml", "youtube_channel.xml")
    site.ambassadors.append(
        '[[ambassador]]\nid = "kari-nordmann"\nname = "Kari Nordmann"\n'
        "plan = { chronicles = 2, blog_posts = 6, videos = 4, meetings = 3 }\n"
        f'feeds = [{{ url = "{youtube}", kind = "video" }}]\n'
    )
    site.run("collect")
    year = str(YESTERDAY.astimezone(ZoneInfo("Europe/Oslo")).year)

    data = json.loads(site.run("report", "--year", year, "--format", "json").stdout)
    [kari] = data["ambassadors"]
    assert kari["plan"]["videos"] == 4
    assert kari["actual"]["videos"] == 2
    assert kari["actual"]["blog_posts"] == 0
    assert data["totals"]["actual"]["videos"] == 2

    rows = list(
        csv.DictReader(io.StringIO(site.run("report", "--year", year, "--format", "csv").stdout))
    )
    assert rows[0]["videos_plan"] == "4" and rows[0]["videos_actual"] == "2"

    text = site.run("report", "--year", year).stdout
    films = text.split("\nFilmer", 1)[1]
    assert re.search(r"Kari Nordmann\s+2\s", films), text


def test_the_demo_edition_shows_the_bundled_films(tmp_path: Path) -> None:
    # `make demo`'s steps, offline, on a copy of the example config and feeds.
    for folder in ("config", "examples"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    config = demo.prepare(tmp_path)

    def trnews(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline", "-c", str(config), *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**os.environ, "TRNEWS_SECRET": "test-secret"},
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    trnews("collect")
    assert "2 filmer" in trnews("preview", "--out", "preview")
    text = (tmp_path / "preview" / "preview.txt").read_text()
    assert text.index("\nBlogginnlegg\n") < text.index("\nFilmer\n")
    films = " ".join(section(text, "Filmer").split())
    assert "Næringsarealer langs E6: slik skaper vi nye arbeidsplasser i hele regionen" in films
    assert "Ingrid Havdal" in films
    found = json.loads(trnews("library", "--kind", "video", "--json"))
    assert len(found) == 3  # the third is older than lookback_days: in the library only
    assert {m for f in found for m in f["messages"]} == {"naering", "kompetanse"}
