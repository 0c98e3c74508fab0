"""`trnews check --discover`: better URLs for the configured feeds, and `--fix` to put them in.

An admin pastes a blog's address instead of its feed's, or a blog moves to a new domain: the
check fetches each web feed once and names the URL to use, with the config key that holds the
old one. `--fix` writes the new URLs into the file, keeping everything else as written.
"""

from __future__ import annotations

from support.feeds import Post, rss
from support.servers import FeedServer
from support.site import Site

PAGE = b"""<!DOCTYPE html><html><head><title>Karis blogg</title>
<link rel="alternate" type="application/rss+xml" title="Karis blogg &raquo; Feed"
      href="/feed/"></head><body><h1>Karis blogg</h1></body></html>"""


def config_with_four_feeds(feeds: FeedServer, site: Site) -> dict[str, str]:
    """Kari's blog address (a page naming its feed), Ola's moved feed, a good one, a broken one."""
    urls = {
        "page": feeds.add("/", PAGE, content_type="text/html; charset=utf-8"),
        "feed": feeds.add("/feed/", rss(Post("Innlegg", "https://kari.example.org/innlegg"))),
        "old": feeds.url("/gammel.xml"),
        "new": feeds.add("/ny.xml", rss(Post("Flyttet", "https://ola.example.org/flyttet"))),
        "good": feeds.add("/god.xml", rss(Post("God", "https://per.example.org/god"))),
        "broken": feeds.add("/borte.xml", b"not here", status=404, content_type="text/plain"),
    }
    feeds.add("/gammel.xml", redirect=urls["new"], status=301)
    site.ambassador("kari", "Kari Nordmann", "", [{"url": urls["page"], "kind": "blog"}])
    site.ambassador(
        "ola",
        "Ola Nordmann",
        "",
        [{"url": urls["good"], "kind": "blog"}, {"url": urls["old"], "kind": "chronicle"}],
    )
    site.ambassador("per", "Per Hansen", "", [{"url": urls["broken"], "kind": "blog"}])
    site.extra_toml = "# kept as written: the fix changes the URLs only"
    site.write()
    return urls


def test_discover_names_the_better_url_and_the_key_that_holds_the_old_one(
    feeds: FeedServer, site: Site
) -> None:
    urls = config_with_four_feeds(feeds, site)
    before = site.config.read_text(encoding="utf-8")
    out = site.run("check", "--discover").stdout
    assert (
        f"ambassador[0].feeds[0].url: {urls['page']} is a web page, not a feed; "
        f"the page names its feed: {urls['feed']}"
    ) in out
    assert (
        f"ambassador[1].feeds[1].url: {urls['old']} has moved permanently (HTTP 301/308): "
        f"{urls['new']}"
    ) in out
    assert f"ambassador[2].feeds[0].url: {urls['broken']} fails (HTTP 404" in out
    assert urls["good"] not in out
    assert "2 URLs to change" in out and "--discover --fix" in out
    assert site.config.read_text(encoding="utf-8") == before, "discover alone changes nothing"
    assert not site.db.exists(), "discover stores nothing"


def test_fix_writes_the_new_urls_keeps_the_rest_and_the_old_file(
    feeds: FeedServer, site: Site
) -> None:
    urls = config_with_four_feeds(feeds, site)
    before = site.config.read_text(encoding="utf-8")
    out = site.run("check", "--discover", "--fix").stdout
    assert "Replaced 2 URLs" in out
    after = site.config.read_text(encoding="utf-8")
    assert after == before.replace(f'"{urls["page"]}"', f'"{urls["feed"]}"').replace(
        f'"{urls["old"]}"', f'"{urls["new"]}"'
    )
    assert "# kept as written" in after
    assert site.config.with_name("trnews.toml.bak").read_text(encoding="utf-8") == before
    again = site.run("check", "--discover").stdout
    assert "to change" not in again and "is a web page" not in again
    collected = site.run("collect", check=False).stdout
    assert f"{urls['feed']} (kari)" in collected and f"{urls['new']} (ola)" in collected


def test_fix_without_discover_is_refused(feeds: FeedServer, site: Site) -> None:
    config_with_four_feeds(feeds, site)
    before = site.config.read_text(encoding="utf-8")
    proc = site.run("check", "--fix", check=False)
    assert proc.returncode == 2
    assert "--fix only goes with --discover" in proc.stderr
    assert site.config.read_text(encoding="utf-8") == before
