"""The public pages on a phone, in a real browser.

Debian's Chromium (Playwright with `executable_path`) at 375x800 CSS pixels, against a real
`trnews serve` with editions sent and ambassadors with a plan: the open report, the archive
and an archived edition must not scroll sideways, no text may be drawn smaller than 10 px
(SVG chart labels scale with their chart, so their size is measured as drawn), every page has
the site's navigation and a subscribe link, and the archived copy of an edition speaks to a
visitor, not to the subscriber it was sent to. Screenshots go to var/screenshots/phone-*.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support.browser import SCREENSHOTS
from support.feeds import feed_bytes
from support.mail import html_part
from support.site import Site
from support.web import WebServer

PHONE = {"width": 375, "height": 800}
MIN_FONT_PX = 10.0
PAGES = {"report": "/report", "archive": "/archive", "front": "/"}

AMBASSADORS = [
    (
        "kari-nordmann",
        "Kari Nordmann",
        "blog.xml",
        "{ chronicles = 4, blog_posts = 12, meetings = 6 }",
    ),
    (
        "marte-kirkerud",
        "Marte Kirkerud-Bjørnstad",
        "",
        "{ chronicles = 6, blog_posts = 24, meetings = 10 }",
    ),
    ("ola-aasen", "Ola Åsen", "", "{ chronicles = 2, blog_posts = 4, meetings = 3 }"),
]

# The smallest text as drawn, and the element it is in. An SVG's text is drawn at its font
# size times the SVG's scale (its width on screen over its viewBox width).
SMALLEST_TEXT = """() => {
  let smallest = {px: Infinity, where: ''};
  for (const el of document.body.querySelectorAll('*')) {
    if (el.closest('title, style, script, head')) continue;
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden' || el.getClientRects().length === 0) continue;
    const rect = el.getBoundingClientRect();
    if (rect.width === 0 || rect.height === 0) continue;
    let px = parseFloat(style.fontSize);
    if (el instanceof SVGElement && el.ownerSVGElement) {
      const svg = el.ownerSVGElement;
      const box = svg.viewBox.baseVal;
      const scale = box && box.width ? svg.getBoundingClientRect().width / box.width
                                     : svg.getScreenCTM().a;
      px = px * scale;
    }
    if (px < smallest.px) {
      smallest = {px, where: el.tagName + ': ' + el.textContent.trim().slice(0, 40)};
    }
  }
  return smallest;
}"""
SCROLL_WIDTH = "() => document.scrollingElement.scrollWidth"


@pytest.fixture(scope="module")
def phone_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """A site with ambassadors who have a plan, a message, an edition sent to a reader, and
    its `trnews serve`."""
    root = tmp_path_factory.mktemp("phone")
    site = Site(root=root)
    (root / "blog.xml").write_bytes(feed_bytes("blog_wordpress.xml"))
    for id, name, feed, plan in AMBASSADORS:
        feeds = f'{{ url = "{feed}", kind = "blog" }}' if feed else ""
        site.ambassadors.append(
            f'[[ambassador]]\nid = "{id}"\nname = "{name}"\nrole = "Ambassadør"\n'
            f"feeds = [{feeds}]\nplan = {plan}\n"
        )
    site.extra_toml = (
        '[[message]]\nid = "naering"\ntitle = "Best på næringsutvikling i hele Midt-Norge"\n'
        'keywords = ["næringsliv", "arbeidsplasser"]\n'
    )
    site.write()
    site.run("subscribers", "add", "anne@example.org", "--name", "Anne Leser")
    site.run("collect")
    assert "1 delivered" in site.run("send").stdout
    server = WebServer.start(site)
    yield server
    server.stop()


def _open(browser: Any, server: WebServer, path: str, name: str) -> Any:
    page = browser.new_page(viewport=PHONE)
    problems: list[str] = []
    page.on(
        "console",
        lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
    )
    answer = page.goto(server.url(path))
    assert answer is not None and answer.status == 200, path
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"phone-{name}-375.png", full_page=True)
    page.problems = problems
    return page


def _edition_path(browser: Any, server: WebServer) -> str:
    page = browser.new_page(viewport=PHONE)
    page.goto(server.url("/archive"))
    href = page.locator("main a[href*='/archive/']").first.get_attribute("href")
    page.close()
    assert href is not None
    return str(href)


@pytest.mark.parametrize("name", ["report", "archive", "edition", "front"])
def test_a_page_fits_a_phone_with_no_text_under_10_px(
    phone_site: WebServer,
    chromium: Any,
    name: str,
) -> None:
    path = _edition_path(chromium, phone_site) if name == "edition" else PAGES[name]
    page = _open(chromium, phone_site, path, name)

    width = page.evaluate(SCROLL_WIDTH)
    smallest = page.evaluate(SMALLEST_TEXT)

    assert width <= PHONE["width"] and smallest["px"] >= MIN_FONT_PX, (width, smallest)
    assert page.problems == []


def test_the_report_table_scrolls_in_its_own_box_and_its_chart_labels_are_readable(
    phone_site: WebServer,
    chromium: Any,
) -> None:
    page = _open(chromium, phone_site, "/report", "report")

    table = page.locator("table").first
    box = table.evaluate("t => getComputedStyle(t.parentElement).overflowX")
    assert box == "auto"
    assert table.evaluate("t => t.parentElement.getBoundingClientRect().right") <= PHONE["width"]
    labels = page.locator("svg text")
    assert labels.count() >= 3 * len(AMBASSADORS)
    assert "Marte Kirkerud-Bjørnstad" in page.locator("svg").first.text_content()


@pytest.mark.parametrize("name", ["report", "archive", "edition", "front"])
def test_every_page_has_the_site_navigation_and_a_subscribe_link(
    phone_site: WebServer,
    chromium: Any,
    name: str,
) -> None:
    path = _edition_path(chromium, phone_site) if name == "edition" else PAGES[name]
    page = _open(chromium, phone_site, path, name)

    nav = page.get_by_role("navigation")
    assert nav.count() == 1
    nav.get_by_role("link", name="Tidligere utgaver").click()
    page.wait_for_url("**/archive")
    page.get_by_role("heading", name="Tidligere utgaver").wait_for()

    page.goto(phone_site.url(path))
    page.get_by_role("navigation").get_by_role("link", name="Ambassadørplanen").click()
    page.wait_for_url("**/report")
    page.get_by_role("heading", name="Ambassadørplanen", exact=False).first.wait_for()

    page.goto(phone_site.url(path))
    page.get_by_role("navigation").get_by_role("link", name="Abonner").click()
    page.wait_for_url(phone_site.url("/"))
    page.get_by_role("heading", name="Abonner på Ambassadørnytt").wait_for()


def test_an_archived_edition_speaks_to_a_visitor_and_the_mail_to_the_subscriber_does_not(
    phone_site: WebServer,
    chromium: Any,
) -> None:
    path = _edition_path(chromium, phone_site)
    page = _open(chromium, phone_site, path, "edition")
    text = page.locator("body").inner_text()

    assert "fordi du abonnerer" not in text
    assert "Meld deg av" not in text
    assert page.locator("a[href*='unsubscribe']").count() == 0
    assert "Dette er en arkivert utgave av Ambassadørnytt" in text
    footer = page.locator(".trn-foot")
    footer.get_by_role("link", name="Abonner", exact=False).click()
    page.wait_for_url(phone_site.url("/"))

    # The message the subscriber got still has the subscriber's footer and own link.
    [sent] = [m for m in phone_site.site.messages() if m["List-Id"]]
    html = html_part(sent)
    assert "Du får dette nyhetsbrevet fordi du abonnerer på Ambassadørnytt" in html
    assert "https://nyhetsbrev.example.org/unsubscribe/" in html
    assert "arkivert utgave" not in html


@pytest.mark.parametrize(
    ("language", "words"),
    [
        ("nn", ["Tidlegare utgåver", "Dette er ei arkivert utgåve av Ambassadørnytt"]),
        ("en", ["Past editions", "This is an archived edition of Ambassadørnytt"]),
    ],
)
def test_the_navigation_and_the_visitor_footer_speak_the_newsletter_language(
    tmp_path: Any, language: str, words: list[str]
) -> None:
    site = Site(root=tmp_path, language=language)
    (tmp_path / "blog.xml").write_bytes(feed_bytes("blog_wordpress.xml"))
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": "blog.xml", "kind": "blog"}])
    site.run("subscribers", "add", "anne@example.org")
    site.run("collect")
    site.run("send")
    server = WebServer.start(site)
    try:
        edition = httpx.get(server.url("/archive/1")).text
        report = httpx.get(server.url("/report")).text
    finally:
        server.stop()

    nav, archived = words
    assert f'<a href="/archive">{nav}</a>' in report
    assert f'<a href="/archive">{nav}</a>' in edition
    assert archived in edition
