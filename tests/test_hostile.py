"""The hostile corpus (issue "Collection that survives the real web"): feeds that attack the
parser, lie about their encoding, break the XML, are empty, huge, slow, silent, missing or
moving, each served over loopback HTTP to `trnews collect` run as a process.

What a user notices is checked: an admin reads one line per feed in `trnews collect` (a
readable reason for each failure, never a Python exception name) and `trnews status --json`;
a subscriber reads readable titles in the edition. The last test throws all of them, with
three good real-shaped feeds, at one `trnews collect`.

Encodings, decided by trying (feedparser 6.0.14 behind pipeline/parse.py): every mislabelled
feed here can be recovered, so each test insists on the readable title ("Trøndelag", never
"TrÃ¸ndelag") and none expects a failure. feedparser tries the HTTP charset, then the XML
declaration, then UTF-8 and windows-1252, keeping the first that decodes: a windows-1252 body
declared UTF-8 fails as UTF-8 and is read as windows-1252; a wrong single-byte label (a UTF-8
body declared ISO-8859-1) decodes without error, and feedparser then undoes the resulting
double encoding element by element (mixin.py: "people take data that is already utf-8, presume
that it is iso-8859-1"). Were that repair lost, these tests would see the mojibake.

Large bodies (2,000 entries, 60 MB) are generated at test time; tests/data holds only small
files (see tests/data/README.md).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.feeds import Post, feed_bytes, one_ambassador, rss
from support.mail import html_part, paragraphs, section, text_part
from support.paths import DATA
from support.servers import FeedServer, LoopbackHTTP, QuietHandler, SilentServer
from support.site import Site, collect_line, feed_status, run_measured, stored_items

from pipeline.config import load_config
from pipeline.demo import days_since_anchor, shift_dates
from pipeline.models import Item
from pipeline.store import Store

NOW = datetime.now(UTC)

LOOPBACK_PLACEHOLDER = b"http://loopback.invalid"
"""external_entity.xml points its SYSTEM identifiers here; tests put the feed server's URL in."""

MOJIBAKE = ("Ã", "Â", "â€", "\ufffd")
"""What UTF-8 read as latin-1 (or undecodable bytes) looks like to a reader."""

CLASS_NAME = re.compile(r"\b\w+(?:Error|Exception|Timeout|Redirects|Warning)\b|Traceback")
"""A Python exception class name ("KeyError", "ReadTimeout"), which no admin should have to read.
"Error" on its own, as in "500 Internal Server Error", is an HTTP reason phrase and is fine."""

TIME_REASON = re.compile(r"within \d|timed? ?out|deadline|no (?:complete )?answer", re.IGNORECASE)
"""How a reason says that a server took too long."""


# -- serving ----------------------------------------------------------------------------------


def data_bytes(name: str) -> bytes:
    """A tests/data file with its dates moved so its newest entry is yesterday (UTF-16 too)."""
    if name.startswith("utf16"):
        text = (DATA / name).read_bytes().decode("utf-16")
        shifted = shift_dates(text.encode("utf-8"), days_since_anchor())
        return b"\xff\xfe" + shifted.decode("utf-8").encode("utf-16-le")  # BOM, little-endian
    return feed_bytes(name)


def serve_external_entity(feeds: FeedServer, path: str) -> tuple[str, list[str]]:
    """external_entity.xml pointing at this server; the URL and the paths its SYSTEM ids name.

    Each of those paths answers with a marker, so if the collector ever fetched one, the
    marker would show up in the stored text as well as in the server's request log.
    """
    body = data_bytes("external_entity.xml").replace(LOOPBACK_PLACEHOLDER, feeds.url("").encode())
    targets = ["/xxe/ekstern.dtd", "/xxe/entitet.txt", "/xxe/parameter.dtd"]
    for target in targets:
        marker = b'<!ENTITY remote "XXE-HENTET">' if target.endswith(".dtd") else b"XXE-HENTET"
        feeds.add(target, marker, content_type="text/plain")
    return feeds.add(path, body), targets


def many_entries(n: int) -> bytes:
    """A WordPress-shaped feed of `n` posts, newest first, five minutes apart from an hour ago,
    each with a paragraph longer than an excerpt."""
    words = " ".join(f"ord{w}" for w in range(80))
    return rss(
        *(
            Post(
                f"Innlegg nr. {i:04d}",
                f"https://mange.example.org/innlegg-{i:04d}/",
                date=NOW - timedelta(hours=1, minutes=5 * i),
                html=f"<p>Tekst {i}: {words}</p>",
            )
            for i in range(1, n + 1)
        )
    )


class HugeFeeds(LoopbackHTTP):
    """A loopback server answering with a 60 MB feed, generated while it is sent.

    `/chunked` sends it without a length (chunked transfer encoding), so only counting while
    streaming can stop it; `/lengthy` declares its 60 MB in Content-Length. `sent[path]` is how
    many body bytes went out before the client hung up.
    """

    SIZE = 60 * 1024 * 1024
    BLOCK = 64 * 1024

    def __init__(self) -> None:
        self.sent: dict[str, int] = {}
        self.done = threading.Event()
        server = self
        item = (
            "<item><title>Fyll</title><link>https://stor.example.org/{n}</link>"
            f"<description>{'fyll ' * 180}</description></item>\n"
        )
        head = (
            b'<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
            b"<title>Stor</title><link>https://stor.example.org/</link><description>d</description>\n"
        )

        def blocks() -> Iterator[bytes]:
            total, n = len(head), 0
            yield head
            while total < server.SIZE:
                chunk = "".join(item.format(n=n + k) for k in range(60)).encode()
                n += 60
                total += len(chunk)
                yield chunk

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                chunked = self.path == "/chunked"
                sent = 0
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
                    if chunked:
                        self.send_header("Transfer-Encoding", "chunked")
                    else:
                        self.send_header("Content-Length", str(server.SIZE))
                    self.end_headers()
                    left = server.SIZE
                    for block in blocks():
                        block = block[:left]
                        left -= len(block)
                        if chunked:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
                        else:
                            self.wfile.write(block)
                        sent += len(block)
                        if not left:
                            break
                    if chunked:
                        self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    server.sent[self.path] = sent
                    self.close_connection = True
                    if len(server.sent) >= server.expected:
                        server.done.set()

        self.expected = 1
        super().__init__(Handler)


@pytest.fixture
def huge() -> Iterator[HugeFeeds]:
    server = HugeFeeds()
    yield server
    server.close()


# -- running ----------------------------------------------------------------------------------


NOT_FETCHED = ("FAILED", "GONE", "WAITING")
"""Labels of a feed that gave nothing: an HTTP error may be told as gone (410) or as asked to
wait (429, 503 with Retry-After) rather than as a plain failure."""


def failed_line(stdout: str, url: str, labels: tuple[str, ...] = ("FAILED",)) -> str:
    """The line about `url` that says it failed, checked to be one an admin can act on."""
    line = collect_line(stdout, url)
    assert line.startswith(labels), line
    assert not CLASS_NAME.search(line), f"a Python exception name in: {line}"
    assert "please report it" not in line, f"an unexpected error in: {line}"
    return line


def titles_of(site: Site) -> dict[str, str]:
    """Stored item title → excerpt, for every item in no edition yet."""
    return {title: item.excerpt for title, (item, _) in stored_items(site.config).items()}


def all_items(site: Site) -> list[Item]:
    """Every stored item in no edition yet (`stored_items` keeps one per title)."""
    config = load_config(site.config)
    with Store.open(config.database_path) as store:
        rows = store.due_items(since=datetime(2000, 1, 1, tzinfo=UTC), previous=None)
    return [item for item, _ in rows]


MEDIUM_TITLE = "Havbruk og teknologi i Trøndelag"
"""The title of the one entry of tests/data/medium.xml."""


# -- entity attacks ---------------------------------------------------------------------------


def test_entity_bombs_and_external_entities_over_http_are_neither_expanded_nor_fetched(
    feeds: FeedServer, site: Site
) -> None:
    laughs = feeds.add("/bombe/latter.xml", data_bytes("billion_laughs.xml"))
    quadratic = feeds.add("/bombe/kvadratisk.xml", data_bytes("entity_bomb.xml"))
    xxe, targets = serve_external_entity(feeds, "/bombe/xxe.xml")
    one_ambassador(site, laughs, quadratic, xxe)
    out = site.run("collect").stdout
    for url in (laughs, quadratic, xxe):
        assert collect_line(out, url).startswith("ok"), collect_line(out, url)
    for target in targets:
        assert feeds.requests_to(target) == [], f"the collector fetched {target}"
    stored = titles_of(site)
    assert set(stored) == {
        "Milliarder av latter",
        "Entity bomb",
        "Ekstern entitet fra disken",
        "Ekstern entitet fra nettet",
    }
    passwd = Path("/etc/passwd").read_text(encoding="utf-8").splitlines()[0]
    for title, excerpt in stored.items():
        for text in (title, excerpt):
            assert "lollol" not in text and "xxxxxxxxxx" not in text, text
            assert passwd not in text and "root:" not in text, text
            assert "XXE-HENTET" not in text, text
    assert stored["Ekstern entitet fra disken"].startswith("Passord:")


# -- broken XML -------------------------------------------------------------------------------


def test_malformed_xml_keeps_the_posts_that_can_be_read(feeds: FeedServer, site: Site) -> None:
    malformed = feeds.add("/slurvete.xml", data_bytes("malformed.xml"))
    whole = data_bytes("blog_wordpress.xml")
    cut_at = whole.index(b"<title>", whole.index(b"<item>", whole.index(b"</item>")))
    truncated = feeds.add("/avkuttet.xml", whole[: cut_at + 20])  # inside the 2nd item's title
    one_ambassador(site, malformed, truncated)
    out = site.run("collect").stdout
    assert collect_line(out, malformed).startswith("ok"), out
    assert collect_line(out, truncated).startswith("ok"), out
    stored = stored_items(site.config)
    assert "Fisk & skalldyr fra Frøya" in stored
    assert stored["Fisk & skalldyr fra Frøya"][0].excerpt == "Sjømat & turisme henger sammen"
    assert stored["Fisk & skalldyr fra Frøya"][0].link == (
        "https://slurvete.example.org/fisk?side=1&sortering=ny"
    )
    assert "Vilt & villmark på Oppdal" in stored
    assert "Samarbeid på tvers gir resultater" in stored
    # The loose parser may also turn a broken <item> into an entry with no title, link or text.
    # It is kept: every entry of a feed reaches the edition (the corpus test holds trnews to
    # that, and many of feedparser's own test feeds carry such entries). Telling a parser's
    # artefact from a real untitled entry is open work for the collection issue.
    site.run("preview")
    preview = (site.root / "var" / "preview" / "preview.txt").read_text(encoding="utf-8")
    assert "Vilt & villmark på Oppdal" in preview


# -- encodings --------------------------------------------------------------------------------

ENCODING_CASES: dict[str, tuple[str, str, str]] = {
    # path: (file, Content-Type the server sends, the title a reader must see)
    "/tegn/utf8-erklart-cp1252.xml": (
        "encoding_utf8_declared_cp1252.xml",
        "application/rss+xml",
        "Trøndelag i “feil” drakt – erklært UTF-8",
    ),
    "/tegn/latin1-erklart-utf8.xml": (
        "encoding_latin1_declared_utf8.xml",
        "application/rss+xml",
        "Ørland og Åfjord «samarbeider» – erklært latin-1",
    ),
    "/tegn/latin1.xml": (
        "latin1.xml",
        "application/rss+xml",
        "Trøndelag «før og nå» på latin-1",
    ),
    "/tegn/utf8-bom.xml": (
        "utf8_bom.xml",
        "application/rss+xml; charset=utf-8",
        "Trøndelag med BOM – æøå ÆØÅ",
    ),
    "/tegn/utf16-bom.xml": (
        "utf16_bom.xml",
        "application/rss+xml",
        "Trøndelag i UTF-16 – “æøå”",
    ),
    # The HTTP charset complements a body that declares nothing
    "/tegn/cp1252-http.xml": (
        "cp1252_undeclared.xml",
        "text/xml; charset=windows-1252",
        "Værnes “uten erklæring” – windows-1252",
    ),
    # The HTTP charset is right and contradicts a wrong XML declaration
    "/tegn/http-rett-xml-feil.xml": (
        "encoding_utf8_declared_cp1252.xml",
        "application/rss+xml; charset=windows-1252",
        "Trøndelag i “feil” drakt – erklært UTF-8",
    ),
    # The XML declaration is right and the HTTP charset contradicts it
    "/tegn/http-feil-xml-rett.xml": (
        "latin1.xml",
        "application/rss+xml; charset=utf-8",
        "Trøndelag «før og nå» på latin-1",
    ),
}


def encoding_case(path: str, name: str) -> bytes:
    """The file with its post's link made unique to `path`: a file served twice under different
    headers must give two articles, or the second copy's title would never be stored."""
    slug = "/" + Path(path).stem + "/"
    codec = "utf-16-le" if name.startswith("utf16") else "ascii"
    return data_bytes(name).replace("/innlegg/".encode(codec), slug.encode(codec))


EXCERPTS = {
    "encoding_utf8_declared_cp1252.xml": "Ærlig talt: søppel på Øya – «nok nå».",
    "encoding_latin1_declared_utf8.xml": "Fjord, fisk og “framtid” på Fosen.",
    "latin1.xml": "Åsen, Ørland og Æsøya; brød & smør.",
    "utf8_bom.xml": "Byte-rekkefølgemerket står først i fila.",
    "utf16_bom.xml": "To byte per tegn: Støren, Selbu og Skaun.",
    "cp1252_undeclared.xml": "Flyplassen får “ny” terminal – igjen.",
}


def test_feeds_with_wrong_or_unusual_encodings_reach_readers_readable(
    feeds: FeedServer, site: Site
) -> None:
    urls = {
        path: feeds.add(path, encoding_case(path, name), content_type=ctype)
        for path, (name, ctype, _) in ENCODING_CASES.items()
    }
    one_ambassador(site, *urls.values())
    out = site.run("collect").stdout
    for path, url in urls.items():
        line = collect_line(out, url)
        assert "1 new item (1 in feed)" in line, f"{path}: {line}"
    stored = titles_of(site)
    # Nothing else, such as a mojibake copy of a title served twice under different headers
    assert set(stored) == {title for _, _, title in ENCODING_CASES.values()}
    for path, (name, _, title) in ENCODING_CASES.items():
        assert title in stored, f"{path}: {title!r} not among {sorted(stored)}"
        assert stored[title] == EXCERPTS[name], f"{path}: {stored[title]!r}"
    site.run("subscribers", "add", "leser@example.org")
    site.run("send")
    [msg] = site.messages()
    text, html = text_part(msg), html_part(msg)
    for path, (_, _, title) in ENCODING_CASES.items():
        assert title in text and title in html, path
    for bad in MOJIBAKE:
        assert bad not in text and bad not in html, bad


# -- empty ------------------------------------------------------------------------------------


def test_an_empty_feed_is_fine_and_an_empty_answer_is_a_failure_that_says_so(
    feeds: FeedServer, site: Site
) -> None:
    empty_feed = feeds.add("/tom/feed.xml", data_bytes("empty_feed.xml"))
    empty_body = feeds.add("/tom/svar.xml", b"")
    blank_body = feeds.add("/tom/blankt.xml", b" \r\n\t \n")
    one_ambassador(site, empty_feed, empty_body, blank_body)
    out = site.run("collect").stdout
    assert collect_line(out, empty_feed) == (
        f"ok      {empty_feed} (kari-nordmann): 0 new items (0 in feed)"
    )
    for url in (empty_body, blank_body):
        assert "empty" in failed_line(out, url)
    summary = out.splitlines()[-1]
    assert summary.startswith("Collected 3 feeds: 0 new items"), summary
    assert re.search(r"\b2 failed\b", summary), summary
    status = feed_status(site)
    assert status[empty_feed]["ok"] is True
    assert status[empty_feed]["last_error"] is None
    for url in (empty_body, blank_body):
        assert status[url]["ok"] is False
        assert "empty" in status[url]["last_error"]


# -- many entries -----------------------------------------------------------------------------


def test_a_feed_of_2000_entries_is_stored_in_full_and_the_edition_shows_40_and_the_rest_count(
    feeds: FeedServer, site: Site
) -> None:
    url = feeds.add("/mange.xml", many_entries(2000))
    one_ambassador(site, url)
    out = site.run("collect").stdout
    assert "2000 new items (2000 in feed)" in collect_line(out, url)
    stored = titles_of(site)  # only items within lookback_days would be due: all 2000 are
    assert len(stored) == 2000
    assert len(stored["Innlegg nr. 1999"]) <= 300
    site.run("subscribers", "add", "leser@example.org")
    sent = site.run("send").stdout
    assert "1 delivered" in sent
    [msg] = site.messages()
    text, html = text_part(msg), html_part(msg)
    shown = [p for p in paragraphs(section(text, "Blogginnlegg")) if p.startswith("Innlegg nr.")]
    assert [p.split()[2] for p in shown] == [f"{i:04d}" for i in range(1, 41)]
    assert "… og 1960 innlegg til. Les alle i arkivet." in " ".join(text.split())
    assert "1960 innlegg til" in html
    assert "Innlegg nr. 0041" not in text and "Innlegg nr. 0041" not in html
    # SPEC: 40 items stay under Gmail's ~102 KB clipping point, counted as sent
    raw_html = msg.get_body(("html",))
    assert raw_html is not None
    assert len(raw_html.as_bytes()) < 102 * 1024


# -- a 60 MB body -----------------------------------------------------------------------------


def test_a_60_mb_feed_is_refused_while_streaming_without_being_held_in_memory(
    feeds: FeedServer, site: Site, huge: HugeFeeds
) -> None:
    good = feeds.add_file("/liten.xml", "medium.xml")
    one_ambassador(site, good)
    baseline = run_measured(site, "collect")
    assert baseline.returncode == 0, baseline.stderr
    assert "1 new item" in collect_line(baseline.stdout, good)

    big = huge.url("/chunked")
    site.ambassadors.clear()
    one_ambassador(site, good, big)
    run = run_measured(site, "collect")
    assert run.returncode == 0, run.stderr
    assert "larger than 5 MB" in failed_line(run.stdout, big)
    assert collect_line(run.stdout, good).startswith("ok")
    assert huge.done.wait(10), "the server is still sending: the collector kept reading"
    assert huge.sent["/chunked"] < 30 * 1024 * 1024, huge.sent
    # The cap is 5 MB; holding the 60 MB (or even half of it) would show here.
    grown = run.peak_mb - baseline.peak_mb
    assert grown < 30, f"peak RSS grew by {grown:.0f} MB with a 60 MB feed in the run"
    status = feed_status(site)
    assert status[big]["ok"] is False
    assert "larger than" in status[big]["last_error"]


# -- servers that hang ------------------------------------------------------------------------


def test_a_server_that_accepts_and_never_answers_is_cut_off_at_the_deadline(
    feeds: FeedServer, site: Site, silent: SilentServer
) -> None:
    site.extra_toml = "[collect]\ntimeout = 2"
    mute = silent.url("/feed.xml")
    good = feeds.add_file("/god.xml", "medium.xml")
    one_ambassador(site, mute, good)
    proc = site.run("collect")
    connections = len(silent.held)
    assert silent.held, "the collector never connected to the silent server"
    assert TIME_REASON.search(failed_line(proc.stdout, mute))
    assert collect_line(proc.stdout, mute) == (
        f"FAILED  {mute} (kari-nordmann): no complete answer within 2 s"
    )
    assert connections == 1  # the deadline ends the feed: no retry after it
    assert "1 new item" in collect_line(proc.stdout, good)
    assert MEDIUM_TITLE in stored_items(site.config)
    assert "Traceback" not in proc.stderr
    status = feed_status(site)
    assert status[mute]["ok"] is False
    assert TIME_REASON.search(status[mute]["last_error"])


# -- HTTP errors ------------------------------------------------------------------------------


def test_http_errors_each_fail_with_the_url_and_the_status(feeds: FeedServer, site: Site) -> None:
    site.extra_toml = "[collect]\ntimeout = 3"
    page = b"<html><body><h1>Feil</h1></body></html>"
    html = "text/html; charset=utf-8"
    failing = {
        feeds.url("/status/finnes-ikke.xml"): "404",
        feeds.add("/status/410.xml", page, status=410, content_type=html): "410",
        feeds.add("/status/500.xml", page, status=500, content_type=html): "500",
        feeds.add(
            "/status/503.xml", page, status=503, content_type=html, headers={"Retry-After": "120"}
        ): "503",
        feeds.add(
            "/status/429.xml", page, status=429, content_type=html, headers={"Retry-After": "120"}
        ): "429",
    }
    good = feeds.add_file("/status/god.xml", "medium.xml")
    one_ambassador(site, *failing, good)
    proc = site.run("collect", check=False)
    assert proc.returncode == 0, proc.stderr
    for url, code in failing.items():
        assert re.search(rf"\b{code}\b", failed_line(proc.stdout, url, NOT_FETCHED)), url
    assert "1 new item" in collect_line(proc.stdout, good)
    assert "Traceback" not in proc.stderr
    status = feed_status(site)
    for url, code in failing.items():
        assert status[url]["ok"] is False
        assert code in status[url]["last_error"]


# -- redirects --------------------------------------------------------------------------------


def redirect_chain(feeds: FeedServer, name: str, hops: int, target: str) -> str:
    """`hops` redirects (301, 302, 307, 308 in turn, some with relative Locations) ending at
    `target`; the URL of the first."""
    codes = [301, 302, 307, 308]
    paths = [f"/kjede/{name}/{n}" for n in range(hops)]
    for n, path in enumerate(paths):
        following = paths[n + 1] if n + 1 < hops else target
        location = following if n % 2 else feeds.url(following)
        feeds.add(path, status=codes[n % 4], redirect=location)
    return feeds.url(paths[0])


def test_a_chain_of_five_redirects_is_followed_and_relative_links_resolve_at_its_end(
    feeds: FeedServer, site: Site
) -> None:
    body = rss(
        Post("Relativ lenke", "innlegg-en"),
        Post("Rotrelativ lenke", "/ny/adresse/innlegg-to"),
    )
    feeds.add("/ny/adresse/feed.xml", body)
    five = redirect_chain(feeds, "fem", 5, "/ny/adresse/feed.xml")
    six = redirect_chain(feeds, "seks", 6, "/ny/adresse/feed.xml")
    one_ambassador(site, five, six)
    out = site.run("collect").stdout
    line = collect_line(out, five)
    assert line.startswith("ok") and "2 new items (2 in feed)" in line, line
    assert "moved permanently" in line  # the first hop is a 301
    assert "redirects" in failed_line(out, six)
    stored = stored_items(site.config)
    assert stored["Relativ lenke"][0].link == feeds.url("/ny/adresse/innlegg-en")
    assert stored["Rotrelativ lenke"][0].link == feeds.url("/ny/adresse/innlegg-to")


# -- all of it at once ------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_a_mix_of_every_hostile_feed_keeps_the_good_feeds_and_names_each_bad_one(
    feeds: FeedServer, site: Site, huge: HugeFeeds, silent: SilentServer
) -> None:
    site.extra_toml = "[collect]\ntimeout = 3"
    huge.expected = 2
    page = b"<html><body><h1>Feil</h1></body></html>"
    html = "text/html; charset=utf-8"

    good = {
        feeds.add_file("/mix/kari/feed/", "blog_wordpress.xml"): {
            "Samarbeid på tvers gir resultater",
            "Ny forskningspark på Tiller",
        },
        feeds.add_file(
            "/mix/ola/feeds/posts/default",
            "blogger_atom.xml",
            content_type="application/atom+xml; charset=UTF-8",
        ): {"Ordførerens ukebrev: Skole, vei og næringsarealer"},
        feeds.add_file("/mix/siri/feed", "medium.xml", content_type="text/xml; charset=UTF-8"): {
            "Havbruk og teknologi i Trøndelag"
        },
    }

    xxe, xxe_targets = serve_external_entity(feeds, "/mix/xxe.xml")
    feeds.add("/mix/ny/feed.xml", rss(Post("Etter fem omdirigeringer", "etter-fem")))
    survivors = {  # hostile, yet their readable posts are kept
        feeds.add("/mix/latter.xml", data_bytes("billion_laughs.xml")): "Milliarder av latter",
        feeds.add("/mix/kvadratisk.xml", data_bytes("entity_bomb.xml")): "Entity bomb",
        xxe: "Ekstern entitet fra nettet",
        feeds.add("/mix/slurvete.xml", data_bytes("malformed.xml")): "Vilt & villmark på Oppdal",
        feeds.add("/mix/tom.xml", data_bytes("empty_feed.xml")): None,
        feeds.add("/mix/mange.xml", many_entries(2000)): "Innlegg nr. 2000",
        redirect_chain(feeds, "fem", 5, "/mix/ny/feed.xml"): "Etter fem omdirigeringer",
    }
    for path, (name, ctype, title) in ENCODING_CASES.items():
        body = encoding_case(path, name)
        survivors[feeds.add("/mix" + path, body, content_type=ctype)] = title

    loop = feeds.add("/mix/sloyfe1", status=302, redirect=feeds.url("/mix/sloyfe2"))
    feeds.add("/mix/sloyfe2", status=302, redirect=loop)
    retry = {"Retry-After": "120"}
    bad = {  # URL: what its reason must say
        feeds.add("/mix/tomt-svar.xml", b""): re.compile("empty"),
        huge.url("/chunked"): re.compile(r"larger than 5 MB"),
        huge.url("/lengthy"): re.compile(r"larger than 5 MB"),
        silent.url("/taus.xml"): TIME_REASON,
        feeds.add_file("/mix/drypp.xml", "substack.xml", drip=0.3): TIME_REASON,
        feeds.add(
            "/mix/forside", (DATA / "not_a_feed.html").read_bytes(), content_type=html
        ): re.compile("not a feed: an HTML page"),
        feeds.url("/mix/borte.xml"): re.compile(r"\b404\b"),
        feeds.add("/mix/410.xml", page, status=410, content_type=html): re.compile(r"\b410\b"),
        feeds.add("/mix/500.xml", page, status=500, content_type=html): re.compile(r"\b500\b"),
        feeds.add("/mix/503.xml", page, status=503, content_type=html, headers=retry): re.compile(
            r"\b503\b"
        ),
        loop: re.compile("redirects"),
        redirect_chain(feeds, "seks", 6, "/mix/ny/feed.xml"): re.compile("redirects"),
    }

    for n, url in enumerate(good):
        site.ambassador(f"god-{n}", f"God Skribent {n}", "", [{"url": url, "kind": "blog"}])
    site.ambassador(
        "fiendtlig",
        "Fiendtlig Vert",
        "",
        [{"url": u, "kind": "blog"} for u in [*survivors, *bad]],
    )
    proc = site.run("collect", check=False)

    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert not CLASS_NAME.search(proc.stderr), proc.stderr
    total = len(good) + len(survivors) + len(bad)
    assert proc.stdout.splitlines()[-1].startswith(f"Collected {total} feeds:"), proc.stdout
    lines = proc.stdout.splitlines()[:-1]
    assert len(lines) == total, proc.stdout
    assert len([line for line in lines if line.startswith(NOT_FETCHED)]) == len(bad)
    for url in [*good, *survivors]:
        assert collect_line(proc.stdout, url).startswith("ok"), collect_line(proc.stdout, url)
    for url, reason in bad.items():
        line = failed_line(proc.stdout, url, NOT_FETCHED)
        assert reason.search(line), f"{line!r} does not say {reason.pattern!r}"
    for target in xxe_targets:
        assert feeds.requests_to(target) == []

    stored = titles_of(site)
    for titles in good.values():
        assert titles <= set(stored), titles - set(stored)
    for url, title in survivors.items():
        assert title is None or title in stored, f"{url}: {title!r} not stored"
    for title, excerpt in stored.items():
        for text in (title, excerpt):
            assert not any(m in text for m in MOJIBAKE), text
            assert "lollol" not in text and "xxxxxxxxxx" not in text and "root:" not in text

    data = json.loads(site.run("status", "--json").stdout)
    health = {f["url"]: f for f in data["feeds"]}
    for url in [*good, *survivors]:
        assert health[url]["ok"] is True, health[url]
    for url, reason in bad.items():
        assert health[url]["ok"] is False, health[url]
        assert health[url]["last_error"] and reason.search(health[url]["last_error"]), health[url]
