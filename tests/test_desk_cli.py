"""The editorial desk through the CLI as a process: `trnews draft` and its mail to the editors,
`trnews desk` and its actions, `trnews send` waiting for the editors, and `trnews status`
(SPEC.md, "The editorial desk"). Feeds come from the loopback feed server; mail goes to the
Maildir, and once to a real SMTP server."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

from support.feeds import NOW, Post, one_ambassador, rss
from support.mail import ADMIN, html_part, text_part, use_smtp
from support.servers import FeedServer, SmtpServer
from support.site import Site

from pipeline.store import Store

EDITORS = ["redaksjon@example.org", "kommunikasjon@example.org"]
READER = "anne@example.org"

POSTS = [
    Post("Kjernekraft i Trøndelag", "https://blogg.example.org/1", NOW - timedelta(days=1)),
    Post("Feriebilder fra Kreta", "https://blogg.example.org/2", NOW - timedelta(days=2)),
    Post("Havbruk og forskning", "https://blogg.example.org/3", NOW - timedelta(days=3)),
]
LEAD, DROPPED, OTHER = (p.title for p in (POSTS[2], POSTS[1], POSTS[0]))
NOTE = "God jul fra oss alle i Trondheimsregionen."


def desk_site(site: Site, feeds: FeedServer, mode: str, *, alerts: bool = False) -> None:
    """A site with the desk in `mode`, one reader, and POSTS collected."""
    url = feeds.add("/kari.xml", rss(*POSTS))
    one_ambassador(site, url)
    site.extra_toml = f'[editorial]\nmode = "{mode}"\neditors = {json.dumps(EDITORS)}\n'
    if alerts:
        site.extra_toml += f'\n[alerts]\nto = ["{ADMIN}"]\n'
    site.write()
    site.run("subscribers", "add", READER)
    site.run("collect")


def serve_more(feeds: FeedServer, *posts: Post) -> None:
    feeds.add("/kari.xml", rss(*posts, *POSTS))


def desk(site: Site) -> dict[str, Any]:
    shown = json.loads(site.run("desk", "--json").stdout)
    assert isinstance(shown, dict)
    return shown


def item_id(site: Site, title: str) -> int:
    return next(int(i["id"]) for i in desk(site)["items"] if i["title"] == title)


def to(site: Site, address: str) -> list[EmailMessage]:
    return [m for m in site.messages() if str(m["To"]) == address]


def printed_links(stdout: str) -> dict[str, str]:
    """The link `trnews draft` printed for each editor it mailed."""
    return dict(re.findall(r"^Mailed (\S+): (\S+)$", stdout, re.MULTILINE))


def whole(msg: EmailMessage) -> str:
    return str(msg) + html_part(msg) + text_part(msg)


def test_draft_mails_each_editor_the_edition_with_the_link_it_prints(
    site: Site, feeds: FeedServer
) -> None:
    desk_site(site, feeds, "approve")
    out = site.run("draft").stdout
    links = printed_links(out)
    assert sorted(links) == sorted(EDITORS), out
    assert len(set(links.values())) == len(EDITORS)  # a link per editor
    for editor, link in links.items():
        assert link.startswith("https://nyhetsbrev.example.org/desk/")
        (msg,) = to(site, editor)
        assert link in text_part(msg)
        assert link in html.unescape(html_part(msg))
        for post in POSTS:  # the edition as subscribers will see it
            assert post.title in text_part(msg)
            assert post.title in html.unescape(html_part(msg))
        other = next(e for e in EDITORS if e != editor)
        assert links[other] not in whole(msg)
    assert not to(site, READER)  # a draft is not an edition


def test_draft_mail_reaches_each_editor_over_smtp(
    site: Site, feeds: FeedServer, smtp: SmtpServer
) -> None:
    desk_site(site, feeds, "review")
    use_smtp(site, smtp.port)
    links = printed_links(site.run("draft").stdout)
    got = smtp.handler.by_recipient()
    assert sorted(got) == sorted(EDITORS)
    for editor, msg in got.items():
        assert links[editor] in text_part(msg)
        assert links[editor] in html.unescape(html_part(msg))
        assert LEAD in text_part(msg)


def test_desk_actions_from_the_cli_show_in_desk_json(site: Site, feeds: FeedServer) -> None:
    desk_site(site, feeds, "approve")
    assert json.loads(site.run("desk", "--json").stdout) is None  # no draft yet
    site.run("draft")
    drop, lead, other = (item_id(site, t) for t in (DROPPED, LEAD, OTHER))
    site.run("desk", "drop", str(drop), str(other), "--by", "kari@example.org")
    site.run("desk", "keep", str(other))
    site.run("desk", "lead", str(lead))
    site.run("desk", "note", NOTE)
    shown = desk(site)
    assert shown["state"] == "open"
    assert {i["title"]: i["dropped"] for i in shown["items"]} == {
        DROPPED: True,
        LEAD: False,
        OTHER: False,
    }
    assert all(i["ambassadors"] == ["Kari Nordmann"] for i in shown["items"])
    assert (shown["lead"], shown["note"]) == (lead, NOTE)
    done = [(a["action"], a.get("item"), a["by"]) for a in shown["actions"]]
    assert ("drop", drop, "kari@example.org") in done
    assert ("drop", other, "kari@example.org") in done
    assert any(a == ("keep", other) and by.startswith("cli") for a, by in _by(done))
    assert any(a == ("lead", lead) for a, _ in _by(done))
    assert any(a["action"] == "note" and a["text"] == NOTE for a in shown["actions"])
    assert all(a["at"] for a in shown["actions"])
    text = site.run("desk").stdout
    assert "LEFT OUT" in text and f"Lead: {lead} {LEAD}" in text and NOTE in text
    # An unknown item: exit 2, naming the draft's items; nothing done.
    bad = site.run("desk", "drop", str(lead), "999999", check=False)
    assert bad.returncode == 2
    assert "999999" in bad.stderr
    assert all(str(i) in bad.stderr for i in (drop, lead, other))
    assert not next(i for i in desk(site)["items"] if i["id"] == lead)["dropped"]
    site.run("desk", "lead", "--none")
    site.run("desk", "note", "--clear")
    cleared = desk(site)
    assert (cleared["lead"], cleared["note"]) == (None, "")
    # Running `draft` again rebuilds it and keeps the choices.
    site.run("desk", "lead", str(lead))
    site.run("desk", "note", NOTE)
    assert "Rebuilt draft" in site.run("draft").stdout
    again = desk(site)
    assert again["edition"] == shown["edition"]
    assert (again["lead"], again["note"]) == (lead, NOTE)
    assert next(i for i in again["items"] if i["id"] == drop)["dropped"]
    assert any(a["action"] == "rebuilt" for a in again["actions"])


def _by(done: list[tuple[str, int | None, str]]) -> list[tuple[tuple[str, int | None], str]]:
    return [((a, i), by) for a, i, by in done]


def test_auto_mode_has_no_desk(site: Site, feeds: FeedServer) -> None:
    desk_site(site, feeds, "auto")
    for args in (("draft",), ("desk",), ("desk", "approve")):
        run = site.run(*args, check=False)
        assert run.returncode == 2, run
        assert 'mode = "review" or "approve"' in run.stderr
    assert not site.messages()


def test_approve_mode_sends_exactly_the_approved_draft(site: Site, feeds: FeedServer) -> None:
    desk_site(site, feeds, "approve", alerts=True)
    links = printed_links(site.run("draft").stdout)
    drop, lead = item_id(site, DROPPED), item_id(site, LEAD)
    site.run("desk", "drop", str(drop))
    site.run("desk", "lead", str(lead))
    site.run("desk", "note", NOTE)

    waiting = site.run("send", check=False)
    assert waiting.returncode == 1
    assert "awaits approval" in waiting.stderr
    assert len(waiting.stderr.strip().splitlines()) == 1, waiting.stderr
    assert not to(site, READER)
    assert not to(site, ADMIN)  # a send by hand that waits is not a failed send
    status = json.loads(site.run("status", "--json").stdout)
    assert status["desk"]["state"] == "open"
    assert status["editions"] == []

    site.run("desk", "approve", "--by", EDITORS[0])
    assert "Sent edition" in site.run("send").stdout
    (msg,) = to(site, READER)
    for part in (text_part(msg), html.unescape(html_part(msg))):
        assert DROPPED not in part
        assert LEAD in part and OTHER in part
        featured, section = part.index("Fremhevet"), part.index("Blogginnlegg")
        assert featured < part.index(LEAD) < section < part.index(OTHER)
        assert part.index(NOTE) < featured
    _no_desk_trace(site, msg, links)
    assert site.run("desk", "--json").stdout.strip() == "null"  # sent: nothing at the desk
    assert not to(site, ADMIN)


def _no_desk_trace(site: Site, msg: EmailMessage, links: dict[str, str]) -> None:
    """Neither the subscriber's message nor the archive holds a desk link, an editor's address
    or the dropped item."""
    with Store.open(site.db) as store:
        (edition,) = store.published_editions()
        found = store.published_edition(edition.id)
        assert found is not None
        archived = found[1]
    for text in (whole(msg), archived.html, archived.text, archived.subject):
        text = html.unescape(text)
        assert "/desk/" not in text
        assert DROPPED not in text
        for editor in EDITORS:
            assert editor not in text
        for link in links.values():
            assert link.rsplit("/", 1)[1] not in text


def test_review_mode_sends_unless_held(site: Site, feeds: FeedServer) -> None:
    desk_site(site, feeds, "review", alerts=True)
    site.run("draft")
    site.run("desk", "hold", "--by", EDITORS[1])
    held = site.run("send", check=False)
    assert held.returncode == 1
    assert "held" in held.stderr and EDITORS[1] in held.stderr
    assert not to(site, READER) and not to(site, ADMIN)
    assert json.loads(site.run("status", "--json").stdout)["desk"]["state"] == "held"
    site.run("send", check=False)  # still held
    assert not to(site, READER)
    site.run("desk", "approve")
    site.run("send")
    assert len(to(site, READER)) == 1
    # The next draft, left alone, is sent without an approval.
    serve_more(feeds, Post("Ny bru over Gaula", "https://blogg.example.org/4"))
    site.run("collect")
    site.run("draft")
    site.run("send")
    assert "Ny bru over Gaula" in text_part(to(site, READER)[-1])


def test_item_collected_after_the_draft_waits_for_the_next_edition(
    site: Site, feeds: FeedServer
) -> None:
    desk_site(site, feeds, "review")
    site.run("draft")
    late = Post("Sent innkommet", "https://blogg.example.org/late", NOW - timedelta(hours=1))
    serve_more(feeds, late)
    site.run("collect")
    site.run("send")
    (first,) = to(site, READER)
    assert late.title not in text_part(first) and LEAD in text_part(first)
    assert "Made draft" in site.run("draft").stdout
    site.run("send")
    second = to(site, READER)[-1]
    assert late.title in text_part(second)
    assert LEAD not in text_part(second)


def test_dropped_item_never_goes_out_later_unless_kept(site: Site, feeds: FeedServer) -> None:
    desk_site(site, feeds, "review")
    site.run("draft")
    drop = item_id(site, DROPPED)
    site.run("desk", "drop", str(drop))
    site.run("send")
    serve_more(feeds, Post("Andre uke", "https://blogg.example.org/5"))
    site.run("collect")
    site.run("draft")
    offered = {i["title"]: i["dropped"] for i in desk(site)["items"]}
    assert offered == {"Andre uke": False, DROPPED: True}  # offered again, left out
    site.run("send")
    serve_more(feeds, Post("Tredje uke", "https://blogg.example.org/6"))
    site.run("collect")
    site.run("draft")
    site.run("desk", "keep", str(drop))
    site.run("send")
    first, second, third = (text_part(m) for m in to(site, READER))
    assert DROPPED not in first and DROPPED not in second
    assert "Andre uke" in second
    assert DROPPED in third and "Tredje uke" in third


def test_status_shows_the_desk(site: Site, feeds: FeedServer) -> None:
    desk_site(site, feeds, "approve")
    site.run("draft")
    site.run("desk", "drop", str(item_id(site, DROPPED)), "--by", EDITORS[0])
    site.run("desk", "note", NOTE)
    block = json.loads(site.run("status", "--json").stdout)["desk"]
    assert block["state"] == "open"
    assert (block["items"], block["left_out"], block["note"]) == (3, 1, True)
    assert block["awaiting"] is None and block["built"]
    assert [(a["action"], a["by"]) for a in block["actions"]][-2][0] == "drop"
    assert block["actions"][-2]["by"] == EDITORS[0]
    text = site.run("status").stdout
    assert f" {block['id']} " in text
    assert "trnews desk approve" in text
