"""The editor's desk page (SPEC.md "The editorial desk"), over real HTTP.

A site in `approve` mode with two editors, items collected from bundled example feeds (one of
them hostile), a draft made on the site's own database (`pipeline.desk.make_draft`, as
`trnews draft` does) and a real `trnews serve` on loopback. The editors' links come from
`desk.editor_links`; what the page did is read back with `desk.as_json` and the store, and the
send is `trnews send` as a process.
"""

from __future__ import annotations

import html
import re
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from support.browser import SCREENSHOTS
from support.feeds import feed_bytes
from support.site import Site
from support.web import PUBLIC, SECRET, WebServer

from pipeline import desk, tokens
from pipeline.config import load_config
from pipeline.store import Store

EDITORS = ("redaksjon@example.org", "kommunikasjon@example.org")
READER = "anne@example.org"
DESK_TABLES = ("drafts", "draft_items", "desk_choices", "desk_actions")


@dataclass
class DeskSite:
    site: Site
    server: WebServer
    links: dict[str, str]
    """Each editor's desk page, as this server answers it."""
    tokens: dict[str, str]

    def draft(self) -> dict[str, Any]:
        """`trnews desk --json` of the current draft, read in this process."""
        config = load_config(self.site.config)
        with Store.open(config.database_path) as store:
            found = store.current_draft()
            assert found is not None
            return desk.as_json(config, found)

    def titles(self) -> dict[str, int]:
        return {i["title"]: i["id"] for i in self.draft()["items"]}


@pytest.fixture
def desk_site(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[DeskSite]:
    monkeypatch.setenv("TRNEWS_SECRET", SECRET)  # the links are signed as the server checks
    site = Site(root=tmp_path)
    (tmp_path / "blog.xml").write_bytes(feed_bytes("blog_wordpress.xml"))
    (tmp_path / "medium.xml").write_bytes(feed_bytes("medium.xml"))
    (tmp_path / "hostile.xml").write_bytes(feed_bytes("hostile.xml"))
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": "blog.xml", "kind": "blog"}])
    site.ambassador("siri-berg", "Siri Berg", "", [{"url": "medium.xml", "kind": "chronicle"}])
    site.ambassador("ola-aasen", "Ola Åsen", "", [{"url": "hostile.xml", "kind": "blog"}])
    site.extra_toml = f'[editorial]\nmode = "approve"\neditors = ["{EDITORS[0]}", "{EDITORS[1]}"]\n'
    site.write()
    site.run("subscribers", "add", READER)
    site.run("collect")
    config = load_config(site.config)
    with Store.open(config.database_path) as store:
        draft = desk.make_draft(config, store, datetime.now(UTC))
        assert draft is not None and len(draft.items) >= 4
        links = dict(desk.editor_links(config, store, draft))
    server = WebServer.start(site)
    try:
        yield DeskSite(
            site,
            server,
            {e: server.local(url) for e, url in links.items()},
            {e: url.rsplit("/", 1)[1] for e, url in links.items()},
        )
    finally:
        server.stop()


def post(url: str, **data: str) -> httpx.Response:
    return httpx.post(url, data=data, follow_redirects=False, timeout=10)


def desk_tables(site: Site) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(site.db) as conn:
        return {
            t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in DESK_TABLES
        }


def titles_in_order(page: str) -> list[str]:
    return [html.unescape(t) for t in re.findall(r'class="title"[^>]*>([^<]*)<', page)]


# -- the page ------------------------------------------------------------------------------------


def test_the_page_shows_the_draft_its_state_and_its_items_in_the_editions_order(
    desk_site: DeskSite,
) -> None:
    editor = EDITORS[0]
    answer = httpx.get(desk_site.links[editor], timeout=10)
    assert answer.status_code == 200
    page = answer.text
    # The URL is a key: never kept, indexed, or sent on as a Referer.
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert "noindex" in answer.headers["x-robots-tag"]
    assert "script-src" not in answer.headers["content-security-policy"]
    assert "<script" not in page.lower()
    draft = desk_site.draft()
    assert draft["state"] == "open"
    assert "venter på godkjenning" in page.lower()
    for item in draft["items"]:
        assert html.escape(item["title"], quote=False) in page
    # A hostile title is text: shown escaped, never markup.
    hostile = next(i for i in draft["items"] if "Forskning og" in i["title"])
    assert "<img" not in page and "onerror" not in page
    assert f'id="item-{hostile["id"]}"' in page
    for link in re.findall(r'<a class="title"[^>]*>', page):
        assert 'rel="noopener noreferrer"' in link
    chronicles = [i["title"] for i in draft["items"] if i["kind"] == "chronicle"]
    blogs = [i["title"] for i in draft["items"] if i["kind"] == "blog"]
    assert titles_in_order(page) == chronicles + blogs
    assert editor in page


def test_the_lead_goes_first_under_featured_and_a_dropped_item_is_marked_left_out(
    desk_site: DeskSite,
) -> None:
    url = desk_site.links[EDITORS[0]]
    draft = desk_site.draft()
    blogs = [i for i in draft["items"] if i["kind"] == "blog"]
    lead, dropped = blogs[-1], blogs[0]
    assert post(url, action="lead", item=str(lead["id"])).status_code == 303
    assert post(url, action="drop", item=str(dropped["id"])).status_code == 303
    page = httpx.get(url, timeout=10).text
    order = titles_in_order(page)
    assert order[0] == lead["title"] and order[-1] == dropped["title"]
    featured, left_out = page.index("Fremhevet"), page.index("Utelatt</h2>")
    assert featured < page.index(html.escape(lead["title"], quote=False)) < left_out
    dropped_li = page[page.index(f'id="item-{dropped["id"]}"') :].split("</li>")[0]
    assert 'value="keep"' in dropped_li and 'value="drop"' not in dropped_li


# -- the actions --------------------------------------------------------------------------------


def test_each_action_from_the_page_changes_the_draft_and_is_recorded_with_the_editor(
    desk_site: DeskSite,
) -> None:
    first, second = EDITORS
    ids = list(desk_site.titles().values())
    a, b = ids[0], ids[1]
    steps: list[tuple[str, dict[str, str], Any]] = [
        (first, {"action": "drop", "item": str(a)}, lambda d: _item(d, a)["dropped"]),
        (second, {"action": "keep", "item": str(a)}, lambda d: not _item(d, a)["dropped"]),
        (first, {"action": "lead", "item": str(b)}, lambda d: d["lead"] == b),
        (second, {"action": "lead", "item": ""}, lambda d: d["lead"] is None),
        (first, {"action": "note", "text": "Godt nytt år!\nHilsen redaksjonen"}, None),
        (second, {"action": "hold"}, lambda d: d["state"] == "held"),
        (first, {"action": "approve"}, lambda d: d["state"] == "approved"),
        (second, {"action": "note", "text": ""}, lambda d: d["note"] == ""),
    ]
    for editor, data, check in steps:
        answer = post(desk_site.links[editor], **data)
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"].startswith(f"/desk/{desk_site.tokens[editor]}")
        d = desk_site.draft()
        if check is None:
            assert d["note"] == "Godt nytt år!\nHilsen redaksjonen"
        else:
            assert check(d), (data, d)
        last = d["actions"][-1]
        assert (last["action"], last["by"]) == (data["action"], editor)
        if data.get("item"):
            assert last["item"] == int(data["item"])
    page = httpx.get(desk_site.links[first], timeout=10).text
    log = page[page.index('class="log"') :]
    assert log.count(first) >= 4 and log.count(second) >= 4
    assert "godkjente" in log and "holdt tilbake" in log


def _item(draft: dict[str, Any], item_id: int) -> dict[str, Any]:
    return next(i for i in draft["items"] if i["id"] == item_id)


def test_the_note_and_the_drop_show_in_the_preview_as_subscribers_will_get_it(
    desk_site: DeskSite,
) -> None:
    url = desk_site.links[EDITORS[1]]
    dropped = next(iter(desk_site.titles().items()))
    post(url, action="drop", item=str(dropped[1]))
    post(url, action="note", text="Et ord fra redaksjonen <b>fet</b>")
    answer = httpx.get(url + "/preview", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    assert "Et ord fra redaksjonen &lt;b&gt;fet&lt;/b&gt;" in answer.text
    assert html.escape(dropped[0], quote=False) not in answer.text
    assert f"{PUBLIC}/unsubscribe/preview" in answer.text
    assert "script-src" not in answer.headers["content-security-policy"]


def test_a_bad_item_or_action_is_refused_with_a_page_that_names_it(desk_site: DeskSite) -> None:
    url = desk_site.links[EDITORS[0]]
    before = desk_tables(desk_site.site)
    for data, named in [
        ({"action": "drop", "item": "999999"}, "999999"),
        ({"action": "lead", "item": "abc"}, "abc"),
        ({"action": "explode"}, "ingen slik knapp"),
        ({"action": "note", "text": "x" * (desk.NOTE_MAX + 1)}, str(desk.NOTE_MAX)),
    ]:
        answer = post(url, **data)
        assert answer.status_code == 400, data
        assert named in answer.text.lower(), answer.text
    assert desk_tables(desk_site.site) == before


def test_a_get_changes_nothing(desk_site: DeskSite) -> None:
    url = desk_site.links[EDITORS[0]]
    post(url, action="drop", item=str(next(iter(desk_site.titles().values()))))
    before = desk_tables(desk_site.site)
    for _ in range(3):
        for path in ("", "/preview"):
            for editor in EDITORS:
                assert httpx.get(desk_site.links[editor] + path, timeout=10).status_code == 200
    # A link scanner that follows the form's action with a GET, with the form's fields.
    httpx.get(url, params={"action": "approve"}, timeout=10)
    assert desk_tables(desk_site.site) == before


def test_a_cross_site_post_is_refused_and_changes_nothing(desk_site: DeskSite) -> None:
    url = desk_site.links[EDITORS[0]]
    before = desk_tables(desk_site.site)
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ):
        answer = httpx.post(url, data={"action": "approve"}, headers=headers, timeout=10)
        assert answer.status_code == 403, headers
    assert desk_tables(desk_site.site) == before
    ok = httpx.post(
        url, data={"action": "approve"}, headers={"Origin": PUBLIC, "Sec-Fetch-Site": "same-origin"}
    )
    assert ok.status_code == 303 and desk_site.draft()["state"] == "approved"


# -- the token -------------------------------------------------------------------------------------


def _dead_tokens(desk_site: DeskSite) -> list[str]:
    token = desk_site.tokens[EDITORS[0]]
    draft_id, editor, mac = token.split(".")
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    return [
        f"{draft_id}.{editor}.{flipped}",  # forged
        f"{draft_id}.2.{mac}",  # the first editor's signature under the second's number
        f"{draft_id}.3.{mac}",  # no third editor
        tokens.sign(SECRET, "unsubscribe", int(draft_id)),  # another purpose
        tokens.desk_token("another-secret", int(draft_id), "n", 1, EDITORS[0]),
        "1",
        "1.1",
        "01.1." + mac,
        "x" * 300,
    ]


def test_forged_other_purpose_and_malformed_tokens_get_404_and_change_nothing(
    desk_site: DeskSite,
) -> None:
    server = desk_site.server
    assert httpx.get(desk_site.links[EDITORS[0]], timeout=10).status_code == 200
    before = desk_tables(desk_site.site)
    for token in _dead_tokens(desk_site):
        for path in (f"/desk/{token}", f"/desk/{token}/preview"):
            assert httpx.get(server.url(path), timeout=10).status_code == 404, token
        answer = post(server.url(f"/desk/{token}"), action="approve")
        assert answer.status_code == 404, token
    assert desk_tables(desk_site.site) == before
    assert desk_site.draft()["state"] == "open"


def test_the_links_die_when_the_edition_is_sent(desk_site: DeskSite) -> None:
    site = desk_site.site
    for editor in EDITORS:
        assert httpx.get(desk_site.links[editor], timeout=10).status_code == 200
    refused = site.run("send", check=False)
    assert refused.returncode == 1  # approve mode: nothing goes before an editor approves
    assert post(desk_site.links[EDITORS[1]], action="approve").status_code == 303
    assert "1 delivered" in site.run("send").stdout
    for editor in EDITORS:
        url = desk_site.links[editor]
        assert httpx.get(url, timeout=10).status_code == 404
        assert httpx.get(url + "/preview", timeout=10).status_code == 404
        assert post(url, action="hold").status_code == 404
    with Store.open(site.db) as store:
        [draft_id] = [int(desk_site.tokens[EDITORS[0]].split(".")[0])]
        sent = store.draft(draft_id)
        assert sent is not None and sent.state.value == "sent"
        assert [a.action for a in sent.actions].count("hold") == 0


# -- two editors at once ---------------------------------------------------------------------------


def test_two_editors_acting_at_once_lose_no_choice(desk_site: DeskSite) -> None:
    first, second = EDITORS
    ids = sorted(desk_site.titles().values())
    rounds = len(ids) // 2
    for r in range(rounds):
        start = threading.Barrier(2)
        errors: list[str] = []

        def act(
            editor: str,
            posts: list[dict[str, str]],
            start: threading.Barrier = start,
            errors: list[str] = errors,
        ) -> None:
            start.wait()
            for data in posts:
                answer = post(desk_site.links[editor], **data)
                if answer.status_code != 303:
                    errors.append(f"{editor} {data}: {answer.status_code}")

        mine = [
            {"action": "drop", "item": str(ids[2 * r])},
            {"action": "note", "text": f"runde {r}"},
        ]
        theirs = [
            {"action": "drop", "item": str(ids[2 * r + 1])},
            {"action": "lead", "item": str(ids[-1])},
        ]
        threads = [
            threading.Thread(target=act, args=(first, mine)),
            threading.Thread(target=act, args=(second, theirs)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        d = desk_site.draft()
        dropped = {i["id"] for i in d["items"] if i["dropped"]}
        assert {ids[2 * r], ids[2 * r + 1]} <= dropped, (r, d)
        assert d["note"] == f"runde {r}"
    d = desk_site.draft()
    assert {i["id"] for i in d["items"] if i["dropped"]} >= set(ids[: 2 * rounds])
    by = [(a["action"], a["by"]) for a in d["actions"] if a["by"] in EDITORS]
    assert by.count(("drop", first)) == rounds and by.count(("drop", second)) == rounds
    assert by.count(("note", first)) == rounds and by.count(("lead", second)) == rounds


# -- nothing of the desk reaches the archive -------------------------------------------------------


def test_the_archive_holds_no_token_no_editor_and_no_dropped_item(desk_site: DeskSite) -> None:
    site, server = desk_site.site, desk_site.server
    url = desk_site.links[EDITORS[0]]
    titles = desk_site.titles()
    dropped = next(t for t in titles if "forskningspark" in t)
    kept = next(t for t in titles if "Havbruk" in t)
    post(url, action="drop", item=str(titles[dropped]))
    post(url, action="lead", item=str(titles[kept]))
    post(url, action="note", text="Et ord fra redaksjonen")
    post(url, action="approve")
    assert "1 delivered" in site.run("send").stdout
    archive = httpx.get(server.url("/archive"), timeout=10).text
    [path] = re.findall(r'href="(/archive/\d+)"', archive)
    pages = {
        "archive": archive,
        "edition": httpx.get(server.url(path), timeout=10).text,
        "atom": httpx.get(server.url("/archive.atom"), timeout=10).text,
    }
    pages["mail"] = "\n".join(m.as_string() for m in site.messages() if READER in str(m["To"]))
    assert "Et ord fra redaksjonen" in pages["edition"]  # the edition is the editors' draft
    assert html.escape(kept, quote=False) in pages["edition"]
    for name, text in pages.items():
        assert "/desk/" not in text, name
        for editor in EDITORS:
            assert editor not in text, name
        for token in desk_site.tokens.values():
            assert token.split(".")[2] not in text, name
        assert dropped not in text, name


# -- a phone's browser ---------------------------------------------------------------------------


def test_an_editor_leaves_out_and_approves_in_chromium_at_375px_with_no_script(
    desk_site: DeskSite, chromium: Any
) -> None:
    context = chromium.new_context(
        viewport={"width": 375, "height": 800}, java_script_enabled=False
    )
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(desk_site.links[EDITORS[0]])
    page.screenshot(path=SCREENSHOTS / "desk-375.png", full_page=True)
    assert page.evaluate("() => document.scrollingElement.scrollWidth") <= 375
    smallest = page.evaluate(
        "() => Math.min(...[...document.querySelectorAll('button')]"
        ".map(b => b.getBoundingClientRect().height))"
    )
    assert smallest >= 44  # big enough to tap
    titles = desk_site.titles()
    target = next(t for t in titles if "Samarbeid" in t)
    item = page.locator(f"#item-{titles[target]}")
    item.get_by_role("button", name="Utelat").click()
    page.wait_for_load_state()
    assert [i["dropped"] for i in desk_site.draft()["items"] if i["title"] == target] == [True]
    assert page.locator(f"#item-{titles[target]}").get_by_role("button", name="Behold").count() == 1
    page.get_by_role("button", name="Godkjenn").click()
    page.wait_for_load_state()
    assert desk_site.draft()["state"] == "approved"
    assert "Godkjent av" in page.content()
    assert page.evaluate("() => document.scrollingElement.scrollWidth") <= 375
    page.screenshot(path=SCREENSHOTS / "desk-approved-375.png", full_page=True)
    page.goto(desk_site.links[EDITORS[0]] + "/preview")
    assert page.evaluate("() => document.scrollingElement.scrollWidth") <= 375
    context.close()
    assert problems == []
