"""Text from outside can neither stop the newsletter nor reach a reader unsafe (issue "Nothing a
feed, a form or a file can do stops the newsletter or leaks").

Every door text comes in by is tried as an outsider would: a feed on the loopback server, a
calendar, the subscribe form of a real `trnews serve`, a CSV file, `subscribers add`, the
config file. The characters tried are those that made mjml-python refuse a whole edition (the
noncharacters U+FFFE and U+FFFF, C0 controls such as ESC, BEL, NUL) and those that make text
read in another order than written (bidi overrides and isolates). What is checked is what a
reader or an admin meets: the message as delivered, its bytes decoded; `status`; the log.
An item stored before these doors were shut (written into the database as an older trnews
could have) must cost only itself, once.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from support.mail import delivered, html_part, text_part, unsafe_characters
from support.servers import FeedServer, LoopbackHTTP, QuietHandler
from support.site import Site
from support.web import WebServer, subscribe

from pipeline.store import Store

NOW = datetime.now(UTC)
OSLO = ZoneInfo("Europe/Oslo")

ATTACK = ["\ufffe", "\uffff", "\x1b", "\x07", "\x00", "\u2066", "\u2067", "\u2068", "\u2069"]
ATTACK += ["\u202e"]
"""The characters of the attack: none may reach a message."""


def test_unsafe_characters_tells_each_kind_and_passes_ordinary_text() -> None:
    """The check below can fail: it finds every character of the attack, and no other."""
    assert unsafe_characters("".join(ATTACK)) == [f"U+{ord(c):04X}" for c in ATTACK]
    assert unsafe_characters("Ambassadørnytt\t«Kåre» 👩\u200d💻 \u05e9\u05dc\u05d5\u05dd\r\n") == []


# -- feeds -------------------------------------------------------------------------------------


def rss_with(*items: tuple[str, str, str]) -> bytes:
    """An RSS feed whose items' (title, description, link) are written into the XML as given:
    character references such as `&#xFFFE;` are the feed's own."""
    when = format_datetime(NOW - timedelta(hours=3))
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<rss version="2.0"><channel><title>Blogg</title><link>https://kari.example.org/</link>',
        "<description>En blogg</description>",
    ]
    for title, description, link in items:
        out.append(
            f"<item><title>{title}</title><link>{link}</link><pubDate>{when}</pubDate>"
            f"<description>{description}</description></item>"
        )
    out.append("</channel></rss>")
    return "\n".join(out).encode()


def atom_with(title: str, content: str, link: str) -> bytes:
    """An Atom feed with one entry: its text title and HTML content written in as given."""
    when = (NOW - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<feed xmlns="http://www.w3.org/2005/Atom"><title>Kronikker</title>'
        f"<id>urn:x:kronikker</id><updated>{when}</updated>"
        f'<entry><title type="text">{title}</title><link href="{link}"/>'
        f"<id>{link}</id><updated>{when}</updated><published>{when}</published>"
        f'<content type="html">{content}</content></entry></feed>'
    ).encode()


def test_noncharacters_controls_and_bidi_in_a_feed_neither_stop_the_edition_nor_reach_it(
    feeds: FeedServer, site: Site
) -> None:
    """The attack of the issue: `&#xFFFE;` in one subscribed feed made MJML refuse every
    edition (send and preview exit 1) until the item aged out. Now collect, preview,
    `send --test` and send exit 0, and the message has the items without those characters."""
    blog = feeds.add(
        "/blogg.xml",
        rss_with(
            (
                "Styret &#xFFFE;møtes&#xFFFF; i &#x1B;Malvik&#x7;",
                "Om &#x2066;møtet&#x2069; i &#x2067;regionen&#x2068; og &#x202E;vedtaket&#xFFFF;.",
                "https://kari.example.org/styret",
            ),
            (
                # raw characters, not references: the feed is then no longer well-formed XML
                "Ny vei\u2067 over \u202eFosen\u2069",
                "&lt;p&gt;Vei\ufffe og\x1b bru\uffff&lt;/p&gt;",
                "https://kari.example.org/fosen",
            ),
        ),
    )
    chronicles = feeds.add(
        "/kronikker.xml",
        atom_with(
            "Kronikk &#x202E;om&#x2069; &#xFFFF;næringsliv&#x1B;",
            "&lt;p&gt;Tekst&#x7; om \u2066arbeidsplasser\u2069&amp;#xFFFE;.&lt;/p&gt;",
            "https://avis.example.no/kronikk",
        ),
        content_type="application/atom+xml",
    )
    site.ambassador(
        "kari-nordmann",
        "Kari Nordmann",
        "Prorektor",
        [{"url": blog, "kind": "blog"}, {"url": chronicles, "kind": "chronicle"}],
    )
    site.run("collect")
    site.run("subscribers", "add", "leser@example.org")
    site.run("preview", "--out", "preview")
    site.run("send", "--test", "redaksjon@example.org")
    sent = site.run("send")

    assert "1 delivered" in sent.stdout, sent.stdout
    preview = [(site.root / "preview" / f"preview.{x}").read_text("utf-8") for x in ("html", "txt")]
    messages = delivered(site)
    assert len(messages) == 2  # the test and the edition
    for shown in (*preview, *messages):
        assert unsafe_characters(shown) == []
        for title in ("Styret møtes i Malvik", "Ny vei over Fosen", "Kronikk om næringsliv"):
            assert title in shown
    [edition] = site.messages()[1:]
    text = " ".join(text_part(edition).split())
    assert "Om møtet i regionen og vedtaket." in text
    assert "Tekst om arbeidsplasser" in text
    for link in ("styret", "fosen"):
        assert f"https://kari.example.org/{link}" in text
    assert "https://avis.example.no/kronikk" in html_part(edition)


class _TerminalWords(QuietHandler):
    def do_GET(self) -> None:
        # the reason phrase clears the screen and retitles the admin's terminal
        self.send_response(500, "Feil\x1b[2J\x1b]0;hacked\x07\x9b31m")
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_a_feed_servers_reason_phrase_reaches_collect_and_status_without_its_controls(
    site: Site,
) -> None:
    with LoopbackHTTP(_TerminalWords) as server:
        url = server.url("/feed.xml")
        site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": url, "kind": "blog"}])
        collected = site.run("collect")
    shown = {"collect": collected.stdout + collected.stderr, "status": site.run("status").stdout}
    for what, output in shown.items():
        assert "HTTP 500 Feil[2J]0;hacked31m" in output, what
        assert unsafe_characters(output) == [], what


# -- calendars ---------------------------------------------------------------------------------


def test_controls_and_bidi_in_a_calendar_event_neither_stop_the_edition_nor_reach_it(
    feeds: FeedServer, site: Site
) -> None:
    """ESC, BEL, NUL or U+202E in a calendar event's summary, location or description made
    every edition fail; now the meeting is listed, clean."""
    soon = (datetime.now(OSLO) + timedelta(days=3)).replace(hour=10, minute=0, second=0)
    event = "\r\n".join(
        [
            "BEGIN:VCALENDAR",
            "VERSION:2.0",
            "PRODID:-//trnews tests//NONSGML//EN",
            "BEGIN:VEVENT",
            "UID:styremote@example.org",
            f"DTSTART;TZID=Europe/Oslo:{soon:%Y%m%dT%H%M%S}",
            "SUMMARY:Styre\x1bmøte\x07 om \x00E6\u202e",
            "LOCATION:Råd\x00huset\u202e\x07",
            "DESCRIPTION:Kort\x07 om\x1b[31m møtet\u202e og veien\x00 videre",
            "END:VEVENT",
            "END:VCALENDAR",
            "",
        ]
    )
    url = feeds.add("/moter.ics", event.encode(), content_type="text/calendar; charset=utf-8")
    site.extra_toml = f'[calendar]\nurls = ["{url}"]\n'
    site.run("subscribers", "add", "leser@example.org")
    sent = site.run("send")

    assert "1 delivered" in sent.stdout, sent.stdout
    [message] = delivered(site)
    assert unsafe_characters(message) == []
    text = " ".join(text_part(site.messages()[0]).split("Kommende møter", 1)[1].split())
    assert "Styremøte om E6" in text
    assert "Rådhuset" in text
    assert "Kort om[31m møtet og veien videre" in text


# -- an item stored by an older trnews -----------------------------------------------------------


def test_an_unsafe_item_stored_before_costs_only_itself_and_only_once(
    feeds: FeedServer, site: Site
) -> None:
    """An older trnews stored titles as feeds gave them: one with U+FFFF made MJML refuse every
    edition. Now the edition goes out without it; `status`, `status --json` and the log name
    it; preview and `send --test` survive it too; the next edition does not try it again."""
    posts = [
        ("God nyhet", "https://kari.example.org/god"),
        ("Ødelagt tittel", "https://kari.example.org/odelagt"),
        ("Annen nyhet", "https://kari.example.org/annen"),
    ]
    blog = feeds.add("/blogg.xml", rss_with(*((t, f"Om {t}.", link) for t, link in posts)))
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": blog, "kind": "blog"}])
    site.run("collect")
    with sqlite3.connect(site.db) as conn:  # as an older trnews could have stored it
        conn.execute(
            "UPDATE items SET title = 'Ødelagt\uffff tittel' WHERE title = 'Ødelagt tittel'"
        )
        [(bad_id,)] = conn.execute("SELECT id FROM items WHERE link LIKE '%odelagt'")
    conn.close()
    site.run("subscribers", "add", "leser@example.org")

    preview = site.run("preview", "--out", "preview")
    assert f"Left out item {bad_id}" in preview.stdout
    test = site.run("send", "--test", "redaksjon@example.org")
    assert f"Left out item {bad_id}" in test.stdout
    sent = site.run("send")
    assert "1 delivered" in sent.stdout, sent.stdout + sent.stderr
    assert f"Left out item {bad_id}" in sent.stdout
    log = sent.stderr
    assert "trnews: warning: " in log and f"item {bad_id}" in log and "U+FFFF" in log, log

    [test_message, edition] = delivered(site)
    for message in (test_message, edition):
        assert "God nyhet" in message and "Annen nyhet" in message
        assert "Ødelagt" not in message
        assert unsafe_characters(message) == []

    status = json.loads(site.run("status", "--json").stdout)
    [left_out] = status["left_out"]
    assert left_out["item"] == bad_id
    assert left_out["title"] == "Ødelagt\uffff tittel"
    assert left_out["link"] == "https://kari.example.org/odelagt"
    assert left_out["feed"] == blog
    assert left_out["edition"] == status["editions"][0]["id"]
    assert "U+FFFF" in left_out["reason"]
    text = site.run("status").stdout
    line = next(line for line in text.splitlines() if f"sak {bad_id}" in line)
    for shown in ("'Ødelagt\\uffff tittel'", "https://kari.example.org/odelagt", blog, "U+FFFF"):
        assert shown in line
    assert f"utgave #{left_out['edition']}" in line

    # The next edition: a new item goes out; the bad one is not tried again
    feeds.add("/blogg.xml", rss_with(("Tredje nyhet", "Om den.", "https://kari.example.org/tre")))
    site.run("collect")
    again = site.run("send")
    assert "1 delivered" in again.stdout, again.stdout
    assert "Left out" not in again.stdout and "warning" not in again.stderr
    assert "Tredje nyhet" in delivered(site)[-1]
    assert len(json.loads(site.run("status", "--json").stdout)["left_out"]) == 1


def test_an_edition_whose_only_news_cannot_be_shown_is_not_sent_and_the_item_not_tried_again(
    feeds: FeedServer, site: Site
) -> None:
    blog = feeds.add("/blogg.xml", rss_with(("Ødelagt", "Om den.", "https://kari.example.org/x")))
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": blog, "kind": "blog"}])
    site.run("collect")
    with sqlite3.connect(site.db) as conn:
        conn.execute("UPDATE items SET excerpt = 'Om\x1b den.'")
    conn.close()
    site.run("subscribers", "add", "leser@example.org")

    sent = site.run("send")
    assert "No edition sent: nothing new since the last edition" in sent.stdout, sent.stdout
    assert not site.outbox.exists() or not list(site.outbox.iterdir())
    [left_out] = json.loads(site.run("status", "--json").stdout)["left_out"]
    assert left_out["edition"] is None and "U+001B" in left_out["reason"]
    assert "ingen utgave laget" in site.run("status").stdout
    again = site.run("send")
    assert "Left out" not in again.stdout and "warning" not in again.stderr


def test_a_template_that_fails_for_every_edition_still_stops_the_send(
    feeds: FeedServer, site: Site
) -> None:
    """Only what fails alone is left out: an admin's broken template is an error, as before."""
    blog = feeds.add("/blogg.xml", rss_with(("God nyhet", "Om den.", "https://kari.example.org/")))
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": blog, "kind": "blog"}])
    (site.root / "maler").mkdir()
    (site.root / "maler" / "footer.mjml").write_text("<mj-section>\x1b</mj-section>\n", "utf-8")
    site.write()
    config = site.config.read_text("utf-8")
    site.config.write_text(config.replace("max_items", 'templates = "maler"\nmax_items', 1))
    site.run("collect")
    site.run("subscribers", "add", "leser@example.org")

    sent = site.run("send", check=False)
    assert sent.returncode == 1
    assert "did not give valid MJML" in sent.stderr
    assert "Left out" not in sent.stdout
    with Store.open(site.db) as store:
        assert store.left_out_items() == []
        assert store.editions() == []


def test_an_item_or_meeting_that_an_admins_template_cannot_take_is_left_out_alone(
    feeds: FeedServer, site: Site
) -> None:
    """Not only characters: a value that makes an item's or a meeting's template fail costs
    that item or meeting (named, with the template's file and line), and the rest goes out."""
    posts = [("God nyhet", "https://kari.example.org/god"), ("Feil i malen", "https://x.org/f")]
    blog = feeds.add("/blogg.xml", rss_with(*((t, f"Om {t}.", link) for t, link in posts)))
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": blog, "kind": "blog"}])
    soon = (datetime.now(OSLO) + timedelta(days=2)).replace(microsecond=0, tzinfo=None)
    site.meeting(f'title = "Regionrådet"\nstart = {soon.isoformat()}')
    site.meeting(f'title = "Feil møte"\nstart = {soon.isoformat()}\nlocation = "Malvik"')
    templates = site.root / "maler"
    templates.mkdir()
    for part in ("item", "meeting"):
        (templates / f"{part}.mjml").write_text(
            f'{{% if "Feil" in {part}.title %}}{{{{ {part}.colour }}}}{{% endif %}}\n'
            f'{{% include "builtin/{part}.mjml" %}}\n',
            "utf-8",
        )
    site.write()
    config = site.config.read_text("utf-8")
    site.config.write_text(config.replace("max_items", 'templates = "maler"\nmax_items', 1))
    site.run("collect")
    site.run("subscribers", "add", "leser@example.org")

    sent = site.run("send")
    assert "1 delivered" in sent.stdout, sent.stdout + sent.stderr
    [item_line] = [line for line in sent.stdout.splitlines() if line.startswith("Left out item")]
    assert "'Feil i malen'" in item_line and "item.mjml:1" in item_line
    assert "colour" in item_line
    [meeting_line] = [line for line in sent.stdout.splitlines() if "Left out meeting" in line]
    assert "'Feil møte'" in meeting_line and "meeting.mjml:1" in meeting_line
    [message] = delivered(site)
    assert "God nyhet" in message and "Regionrådet" in message
    assert "Feil i malen" not in message and "Feil møte" not in message
    [left_out] = json.loads(site.run("status", "--json").stdout)["left_out"]
    assert left_out["title"] == "Feil i malen"


# -- names from the form, a CSV file, the command line --------------------------------------------

BIDI_NAME = "\u202eKari\u2066 Nord\u2069mann\u2067"


def test_a_name_from_the_subscribe_form_is_stored_without_bidi_characters(site: Site) -> None:
    site.write()
    server = WebServer.start(site)
    try:
        answer = subscribe(server, "kari@example.org", BIDI_NAME)
    finally:
        server.stop()
    assert answer.status_code == 200
    with Store.open(site.db) as store:
        found = store.subscriber("kari@example.org")
    assert found is not None
    assert found.name == "Kari Nordmann"


def test_a_name_from_a_csv_file_or_the_command_line_is_stored_without_bidi_characters(
    site: Site, tmp_path: Path
) -> None:
    csv = tmp_path / "lesere.csv"
    csv.write_text(f"email,name\nkari@example.org,{BIDI_NAME}\n", encoding="utf-8")
    site.run("subscribers", "import", str(csv))
    site.run("subscribers", "add", "ola@example.org", "--name", "Ola\u202e Hansen\u2068\x1b")

    listed = json.loads(site.run("subscribers", "list", "--json").stdout)
    names = {s["email"]: s["name"] for s in listed}
    assert names == {"kari@example.org": "Kari Nordmann", "ola@example.org": "Ola Hansen"}


def test_a_name_stored_by_an_older_trnews_reaches_the_greeting_without_bidi_characters(
    feeds: FeedServer, site: Site
) -> None:
    blog = feeds.add("/blogg.xml", rss_with(("God nyhet", "Om den.", "https://kari.example.org/")))
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": blog, "kind": "blog"}])
    site.run("collect")
    site.run("subscribers", "add", "kari@example.org", "--name", "Kari")
    with sqlite3.connect(site.db) as conn:
        conn.execute("UPDATE subscribers SET name = ?", (BIDI_NAME,))
    conn.close()
    site.run("send")

    [message] = site.messages()
    for part in (text_part(message), html_part(message)):
        assert "Hei Kari Nordmann!" in part
        assert unsafe_characters(part) == []


def test_a_line_break_in_a_name_is_still_refused(site: Site) -> None:
    for name in ("Kari\nBcc: x@evil.example", "Kari\u2028Bcc: x@evil.example"):
        proc = site.run("subscribers", "add", "kari@example.org", "--name", name, check=False)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "line break" in proc.stderr
    assert json.loads(site.run("subscribers", "list", "--json").stdout) == []


# -- the config file ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "toml", "value"),
    [
        ("newsletter.title", "", r'"Ambassadørnytt\nBcc: x@evil.example"'),
        ("newsletter.title", "", r'"Ambassadørnytt\r\nX-Spam: no"'),
        ("newsletter.title", "", r'"Ambassadørnytt\u0085Bcc: x@evil.example"'),
        ("newsletter.public_url", "", r'"https://nyhetsbrev.example.org\nBcc: x@evil.example"'),
        ("delivery.dkim.selector", "dkim", r'"mail\nBcc: x@evil.example"'),
    ],
    ids=["title-lf", "title-crlf", "title-nel", "public-url", "dkim-selector"],
)
def test_a_line_break_in_a_value_that_reaches_a_header_is_a_config_error(
    site: Site, key: str, toml: str, value: str
) -> None:
    name = key.rpartition(".")[2]
    site.write()
    text = site.config.read_text("utf-8")
    if toml == "dkim":
        (site.root / "dkim.pem").write_text("not read: the config is refused first\n")
        text += f'\n[delivery.dkim]\ndomain = "example.org"\nselector = {value}\n'
        text += 'key_file = "dkim.pem"\n'
    else:
        lines = [
            f"{name} = {value}" if line.startswith(f"{name} = ") else line
            for line in text.splitlines()
        ]
        text = "\n".join(lines) + "\n"
    site.config.write_text(text, "utf-8")

    proc = site.run("check", check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert key in proc.stderr
    assert "one line" in proc.stderr


def test_free_text_in_the_config_is_made_safe(feeds: FeedServer, site: Site) -> None:
    """Names, roles, the intro and a meeting's words from the file reach the message clean."""
    blog = feeds.add("/blogg.xml", rss_with(("God nyhet", "Om den.", "https://kari.example.org/")))
    site.ambassador(
        "kari-nordmann",
        "Kari\\u202e Nordmann",
        "Pro\\u2066rektor\\u0007",
        [{"url": blog, "kind": "blog"}],
    )
    soon = (datetime.now(OSLO) + timedelta(days=2)).replace(microsecond=0, tzinfo=None)
    site.meeting(
        f'title = "Region\\u202erådet\\u001b"\nstart = {soon.isoformat()}\n'
        'location = "Kultur\\u2067huset\\u0000"\ndescription = "Kort\\uffff om møtet"'
    )
    site.write()
    text = site.config.read_text("utf-8").replace(
        "max_items", 'intro = "Hei\\u2068 og\\ufffe velkommen"\nmax_items', 1
    )
    site.config.write_text(text, "utf-8")
    site.run("collect")
    site.run("subscribers", "add", "leser@example.org")
    site.run("send")

    [message] = delivered(site)
    assert unsafe_characters(message) == []
    for shown in ("Kari Nordmann", "Prorektor", "Regionrådet", "Kulturhuset", "Kort om møtet"):
        assert shown in message
    assert "Hei og velkommen" in message
