"""No secret of a configured URL in any output (pipeline.redact).

The leak: the public `/report` printed a failing calendar's URL verbatim, with its
`user:password@` and its key (Google's and Outlook's private iCal addresses are their own
password); `status`, `status --json` and the INFO log did the same with feed URLs.

A feed and a calendar whose URLs carry a password ("pa55word"), a key in the query ("S3CRET")
and, for the calendar, a key in the path as Google writes it, are served by the loopback feed
server (which answers whatever the credentials). Every command an admin runs is run as a
process, and a real `trnews serve` answers `/report`: neither secret appears in any stdout,
stderr, page, log or alert, while the host and path do, so the admin can tell which URL it is.
"""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest
from support.feeds import feed_bytes
from support.mail import alerts_config, to_admins
from support.servers import FeedServer
from support.site import Site
from support.web import WebServer

from pipeline import redact

PASSWORD = "pa55word"
KEY = "S3CRET"
PATH_KEY = "8d2f0c1e9a7b6c5d4e3f2a1b0c9d8e7f"
SECRETS = (PASSWORD, KEY, PATH_KEY)


def secret_url(feeds: FeedServer, path: str) -> str:
    return f"http://kari:{PASSWORD}@127.0.0.1:{feeds.port}{path}?key={KEY}"


def assert_no_secret(what: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} in {what}:\n{text}"


def outputs(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


@pytest.fixture
def leaky(feeds: FeedServer, site: Site) -> Site:
    """A site with a working and a failing feed and a failing calendar, all with secrets."""
    feeds.add(f"/feed?key={KEY}", feed_bytes("blog_wordpress.xml"))
    feeds.add(f"/borte?key={KEY}", b"gone", status=404, content_type="text/plain")
    private = f"/calendar/ical/kari%40example.org/private-{PATH_KEY}/basic.ics"
    feeds.add(f"{private}?key={KEY}", b"no", status=403, content_type="text/plain")
    calendar = secret_url(feeds, private)
    site.ambassador(
        "kari-nordmann",
        "Kari Nordmann",
        "",
        [
            {"url": secret_url(feeds, "/feed"), "kind": "blog"},
            {"url": secret_url(feeds, "/borte"), "kind": "chronicle"},
        ],
    )
    alerts_config(site, feed_failures=1)
    site.extra_toml += f'\n[calendar]\nurls = ["{calendar}"]\n'
    site.write()
    return site


def test_no_command_shows_a_password_or_key_of_a_configured_url(
    feeds: FeedServer, leaky: Site
) -> None:
    host = f"127.0.0.1:{feeds.port}"
    collected = leaky.run("-vv", "collect")
    assert_no_secret("collect -vv", outputs(collected))
    assert f"ok      http://…@{host}/feed?… (kari-nordmann)" in collected.stdout
    assert f"FAILED  http://…@{host}/borte?… (kari-nordmann): HTTP 404" in collected.stdout
    assert f"HTTP Request: GET http://…@{host}/feed?…" in collected.stderr, "httpx's own log"
    assert_no_secret("collect -v", outputs(leaky.run("-v", "collect")))

    status = leaky.run("status")
    assert_no_secret("status", outputs(status))
    assert f"http://…@{host}/borte?…" in status.stdout
    data = leaky.run("status", "--json").stdout
    assert_no_secret("status --json", data)
    urls = {f["url"] for f in json.loads(data)["feeds"]}
    assert urls == {f"http://…@{host}/feed?…", f"http://…@{host}/borte?…"}

    calendar = f"http://…@{host}/calendar/ical/kari%40example.org/…/basic.ics?…"
    for fmt in ("text", "json", "csv", "html"):
        proc = leaky.run("report", "--format", fmt)
        assert_no_secret(f"report --format {fmt}", outputs(proc))
        assert calendar in proc.stderr
        if fmt != "csv":
            assert "/calendar/ical/" in proc.stdout and "basic.ics" in proc.stdout

    assert_no_secret("check --discover", outputs(leaky.run("check", "--discover")))

    [alert] = to_admins(leaky)
    body = str(alert.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    assert_no_secret("the alert", body + str(alert["Subject"]))
    assert f"- http://…@{host}/borte?… (Kari Nordmann)" in body


def test_the_public_report_and_the_server_log_show_no_password_or_key(
    feeds: FeedServer, leaky: Site
) -> None:
    server = WebServer.start(leaky)
    try:
        page = httpx.get(server.url("/report"), timeout=30)
    finally:
        server.stop()
    assert page.status_code == 200
    assert_no_secret("/report", page.text)
    assert f"127.0.0.1:{feeds.port}/calendar/ical/" in page.text and "basic.ics" in page.text
    assert_no_secret("the server's log", server.log())


# -- the rule --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://user:pw@cal.example/private/basic.ics?k=1",
            "https://…@cal.example/private/basic.ics?…",
        ),
        (
            "https://calendar.google.com/calendar/ical/kari%40gmail.com/private-"
            "8d2f0c1e9a7b6c5d4e3f2a1b0c9d8e7f/basic.ics",
            "https://calendar.google.com/calendar/ical/kari%40gmail.com/…/basic.ics",
        ),
        (
            "https://outlook.office365.com/owa/calendar/4f1c2b3a5d6e7f8091a2b3c4d5e6f708"
            "@ntnu.no/a1b2c3d4e5f60718293a4b5c6d7e8f9012345678901234567/calendar.ics",
            "https://outlook.office365.com/owa/calendar/…@ntnu.no/…/calendar.ics",
        ),
        (
            "https://sky.example.org/remote.php/dav/public-calendars/AbCdEfGhIjKlMnOp?export",
            "https://sky.example.org/remote.php/dav/public-calendars/…?…",
        ),
        (
            "https://kal.example/feed/6f1d2c3b-4a5e-4f60-8172-93a4b5c6d7e8.ics",
            "https://kal.example/feed/….ics",
        ),
        ("http://[::1]:8080/feed#frag", "http://[::1]:8080/feed#…"),
        # words, dates and ids are no keys: kept
        ("https://kari.example.org/2026/11/en-lang-tittel-om-regionen/feed/", None),
        ("https://www.blogger.com/feeds/1234567890123456789/posts/default", None),
        ("https://avis.example.no/kronikker.rss", None),
        ("http://feeds.example/tegn/utf8-erklart-cp1252.xml", None),
        ("https://podcast.example/mp3-podcast-feed-2024/TrondheimRegion", None),
        ("moter.ics", None),
    ],
)
def test_a_url_keeps_its_scheme_host_and_path_words_and_loses_its_secrets(
    url: str, shown: str | None
) -> None:
    assert redact.url(url) == (shown or url)


def test_every_url_in_a_text_is_redacted_and_the_sentence_around_it_kept() -> None:
    text = "redirected to http://u:p@h.example/x?k=1. (see 'https://h.example/y?t=2')"
    assert (
        redact.text(text) == "redirected to http://…@h.example/x?…. (see 'https://h.example/y?…')"
    )
