"""A new reader's whole way through the web side, in a real browser.

Debian's Chromium, driven by Playwright with `executable_path` (never `playwright install`),
against a real `trnews serve`: subscribe through the form, follow the confirmation link from
the message in the Maildir, receive an edition (`trnews collect` and `trnews send` with a feed
from the loopback feed server), then unsubscribe through the URL in that edition's
List-Unsubscribe header, with the page's button. The pages must load with no Content Security
Policy violation (their styles are allowed by hash only). Screenshots go to
var/screenshots/web-*.png for a person to look at.
"""

from __future__ import annotations

import json
from typing import Any

from support.browser import SCREENSHOTS
from support.servers import FeedServer
from support.site import Site
from support.web import WebServer, confirm_link, unsubscribe_url, wait_for_messages

READER = "kari.leser@example.org"


def test_a_reader_subscribes_confirms_receives_an_edition_and_unsubscribes_in_chromium(
    site: Site, feeds: FeedServer, chromium: Any
) -> None:
    feed = feeds.add_file("/kari/feed/", "blog_wordpress.xml")
    site.ambassador("kari-nordmann", "Kari Nordmann", "Prorektor", [{"url": feed, "kind": "blog"}])
    server = WebServer.start(site)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    try:
        page = chromium.new_page(viewport={"width": 375, "height": 800})
        page.on(
            "console",
            lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
        )

        page.goto(server.url("/"))
        page.get_by_label("E-postadresse").fill(READER)
        page.get_by_label("Navn (valgfritt)").fill("Kari Leser")
        page.get_by_label("Jeg vil få Ambassadørnytt på e-post", exact=False).check()
        page.screenshot(path=SCREENSHOTS / "web-subscribe-375.png", full_page=True)
        page.get_by_role("button", name="Abonner").click()
        page.get_by_role("heading", name="Sjekk e-posten din").wait_for()
        page.screenshot(path=SCREENSHOTS / "web-check-your-mail-375.png", full_page=True)

        [confirmation] = wait_for_messages(site, READER)
        page.goto(server.local(confirm_link(confirmation)))
        page.get_by_role("heading", name="Du abonnerer nå").wait_for()
        page.screenshot(path=SCREENSHOTS / "web-confirmed-375.png", full_page=True)

        site.run("collect")
        sent = site.run("send")
        assert "1 delivered" in sent.stdout
        edition = next(m for m in site.messages() if m["List-Id"])
        assert str(edition["To"]) == f"Kari Leser <{READER}>"

        page.set_viewport_size({"width": 1024, "height": 900})
        page.goto(server.url("/archive"))
        page.get_by_role("link", name=str(edition["Subject"])).click()
        page.wait_for_url("**/archive/*")
        assert "Kari Nordmann" in page.content()
        page.screenshot(path=SCREENSHOTS / "web-archive-edition-1024.png", full_page=True)

        page.goto(server.local(unsubscribe_url(edition)))
        page.screenshot(path=SCREENSHOTS / "web-unsubscribe-1024.png", full_page=True)
        page.keyboard.press("Tab")  # the button is reachable from the keyboard
        page.get_by_role("button", name="Meld deg av").click()
        page.get_by_role("heading", name="Du er meldt av").wait_for()
        page.screenshot(path=SCREENSHOTS / "web-unsubscribed-1024.png", full_page=True)
    finally:
        server.stop()

    listed = json.loads(site.run("subscribers", "list", "--json").stdout)
    assert listed == [
        {
            "email": READER,
            "name": "Kari Leser",
            "state": "unsubscribed",
            "bounces": 0,
            "last_bounce": None,
        }
    ]
    assert problems == []
    # Honoured before the next message: new posts, and nothing goes to her.
    feeds.add_file("/kari/feed/", "medium.xml")
    site.run("collect")
    site.run("send")
    assert len([m for m in site.messages() if m["List-Id"]]) == 1
