"""The editorial desk's rules on the real database: what a draft offers, what a rebuild keeps,
what two editors at once do, and how the lead and the note read in the rendered edition.

Items come from the loopback feed server through `trnews collect` as a process; the desk's
functions then run on that database, as the CLI and the web side call them.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from support.feeds import Post
from support.feeds import rss as feed
from support.servers import FeedServer
from support.site import Site

from pipeline import desk, tokens
from pipeline.config import load_config
from pipeline.errors import AwaitingEditors, UsageError
from pipeline.models import DeskVerb, DraftState
from pipeline.store import Store

NOW = datetime.now(UTC)
EDITORIAL = '[editorial]\nmode = "{mode}"\neditors = ["red@example.org", "ed2@example.org"]\n'


def rss(*titles: str, days_ago: float = 1) -> bytes:
    """Kari's blog with these posts, each at the same link as long as it keeps its place."""
    return feed(
        *(
            Post(t, f"https://blogg.example.org/{n}", NOW - timedelta(days=days_ago, minutes=n))
            for n, t in enumerate(titles)
        )
    )


@pytest.fixture
def desk_site(feeds: FeedServer, site: Site) -> Site:
    site.extra_toml = EDITORIAL.format(mode="approve")
    url = feeds.add("/kari.xml", rss("Holiday post", "Industrial land", "Party fight"))
    site.ambassador("kari-nordmann", "Kari Nordmann", "Prorektor", [{"url": url, "kind": "blog"}])
    site.run("collect")
    return site


def by_title(draft: object) -> dict[str, int]:
    return {d.item.title: d.item.id for d in draft.items}  # type: ignore[attr-defined]


def test_a_rebuilt_draft_keeps_drops_lead_and_note_and_an_approval_of_other_items_is_reopened(
    desk_site: Site, feeds: FeedServer
) -> None:
    config = load_config(desk_site.config)
    with Store.open(desk_site.db) as store:
        draft = desk.make_draft(config, store, NOW)
        assert draft is not None and draft.state is DraftState.OPEN
        ids = by_title(draft)
        desk.act(store, draft, "drop", by="red@example.org", now=NOW, item=ids["Holiday post"])
        desk.act(store, draft, "lead", by="ed2@example.org", now=NOW, item=ids["Party fight"])
        desk.act(store, draft, "note", by="red@example.org", now=NOW, text="Godt nytt år!")
        desk.act(store, draft, "approve", by="red@example.org", now=NOW)
    feeds.add("/kari.xml", rss("Holiday post", "Industrial land", "Party fight", "New piece"))
    desk_site.run("collect")
    with Store.open(desk_site.db) as store:
        rebuilt = desk.make_draft(config, store, NOW + timedelta(minutes=5))
        assert rebuilt is not None and rebuilt.id == draft.id
        dropped = {d.item.title for d in rebuilt.items if d.dropped}
        assert dropped == {"Holiday post"}
        assert "New piece" in by_title(rebuilt)
        assert rebuilt.lead == ids["Party fight"] and rebuilt.note == "Godt nytt år!"
        # What was approved is no longer what would be sent.
        assert rebuilt.state is DraftState.OPEN
        assert [a.action for a in rebuilt.actions][-2:] == ["rebuilt", "reopened"]
        with pytest.raises(AwaitingEditors):
            desk.gate(config, rebuilt)


def test_the_lead_comes_first_and_the_note_under_the_intro_in_html_and_text_with_markup_inert(
    desk_site: Site,
) -> None:
    config = load_config(desk_site.config)
    with Store.open(desk_site.db) as store:
        draft = desk.make_draft(config, store, NOW)
        assert draft is not None
        ids = by_title(draft)
        note = "Ukens viktigste: tomter.\n<script>alert(1)</script>"
        desk.act(store, draft, "lead", by="cli", now=NOW, item=ids["Industrial land"])
        desk.act(store, draft, "note", by="cli", now=NOW, text=note)
        desk.act(store, draft, "drop", by="cli", now=NOW, item=ids["Party fight"])
        current = store.current_draft()
        assert current is not None
        rendered = desk.render(config, store, current, NOW).rendered
    for part in (rendered.html, rendered.text):
        featured = part.index("Fremhevet")
        lead = part.index("Industrial land")
        section = part.index("Blogginnlegg")
        assert featured < lead < section < part.index("Holiday post")
        assert part.index("Ukens viktigste") < featured
        assert part.count("Om Industrial land.") == 1  # first, and not again in its section
        assert "Party fight" not in part
    assert "<script>" not in rendered.html and "&lt;script&gt;alert(1)" in rendered.html
    assert "<script>alert(1)</script>" in rendered.text  # plain text stays as written


def test_two_editors_at_once_keep_each_others_choices(desk_site: Site) -> None:
    config = load_config(desk_site.config)
    with Store.open(desk_site.db) as store:
        draft = desk.make_draft(config, store, NOW)
        assert draft is not None
    ids = list(by_title(draft).values())
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def editor(address: str, item: int, verb: str) -> None:
        try:
            with Store.open(desk_site.db) as own:
                start.wait()
                for round in range(20):
                    desk.act(own, draft, verb, by=address, now=NOW, item=item)
                    desk.act(own, draft, "note", by=address, now=NOW, text=f"{address} {round}")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [
        threading.Thread(target=editor, args=("red@example.org", ids[0], "drop")),
        threading.Thread(target=editor, args=("ed2@example.org", ids[1], "lead")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with Store.open(desk_site.db) as store:
        after = store.current_draft()
    assert after is not None
    assert {d.item.id for d in after.items if d.dropped} == {ids[0]}
    assert after.lead == ids[1]
    assert after.note in ("red@example.org 19", "ed2@example.org 19")
    assert len([a for a in after.actions if a.by != "trnews"]) == 80


def test_an_item_dropped_from_a_sent_draft_is_offered_again_left_out_until_kept(
    desk_site: Site, feeds: FeedServer
) -> None:
    desk_site.run("subscribers", "add", "leser@example.org")
    config = load_config(desk_site.config)
    with Store.open(desk_site.db) as store:
        draft = desk.make_draft(config, store, NOW)
        assert draft is not None
        holiday = by_title(draft)["Holiday post"]
        desk.act(store, draft, "drop", by="red@example.org", now=NOW, item=holiday)
        desk.act(store, draft, "approve", by="red@example.org", now=NOW)
    desk_site.run("send")
    [first] = desk_site.messages()
    assert "Holiday post" not in first.as_string()
    feeds.add("/kari.xml", rss("Holiday post", "Industrial land", "Party fight", "Later"))
    desk_site.run("collect")
    with Store.open(desk_site.db) as store:
        second = desk.make_draft(config, store, NOW + timedelta(minutes=1))
        assert second is not None and second.id != draft.id
        # Offered again, still left out, so that an editor can keep it; the sent ones are not.
        assert {d.item.title: d.dropped for d in second.items} == {
            "Later": False,
            "Holiday post": True,
        }
        sent = by_title(draft)["Industrial land"]
        with pytest.raises(UsageError, match="not in draft"):
            desk.act(store, second, "lead", by="cli", now=NOW, item=sent)
        desk.act(store, second, "keep", by="cli", now=NOW, item=holiday)
        kept = store.current_draft()
        assert kept is not None and not any(d.dropped for d in kept.items)


def test_a_desk_link_names_one_editor_of_one_draft_and_dies_with_the_send(desk_site: Site) -> None:
    desk_site.run("subscribers", "add", "leser@example.org")
    config = load_config(desk_site.config)
    with Store.open(desk_site.db) as store:
        draft = desk.make_draft(config, store, NOW)
        assert draft is not None
        links = desk.editor_links(config, store, draft)
        assert [a for a, _ in links] == ["red@example.org", "ed2@example.org"]
        first = links[0][1].rpartition("/")[2]
        found = desk.editor_of(config, store, first)
        assert found is not None and found[1] == "red@example.org"
        head, _, mac = first.rpartition(".")
        other_editor = f"{draft.id}.2.{mac}"
        unsubscribe = tokens.sign(tokens.link_secret(config, store), "unsubscribe", draft.id)
        for bad in (
            other_editor,
            unsubscribe,
            f"{head}.{'B' if mac[0] == 'A' else 'A'}{mac[1:]}",
            "1.1",
            "",
            "0.1." + mac,
        ):
            assert desk.editor_of(config, store, bad) is None, bad
        desk.act(store, draft, DeskVerb.APPROVE, by="red@example.org", now=NOW)
    desk_site.run("send")
    with Store.open(desk_site.db) as store:
        assert desk.editor_of(config, store, first) is None


def test_the_desk_config_is_checked_every_problem_at_once(site: Site) -> None:
    site.extra_toml = (
        '[editorial]\nmode = "approve"\ndraft_hours = 0\nreviewers = ["x@example.org"]\n'
    )
    proc = site.run("check", check=False)
    assert proc.returncode == 2
    assert "editorial.editors: required when editorial.mode is 'approve'" in proc.stderr
    assert "editorial.draft_hours" in proc.stderr
    assert "editorial.reviewers: unknown key" in proc.stderr
    site.extra_toml = '[editorial]\nmode = "review"\neditors = ["red@example.org"]\n'
    site.write()
    out = site.run("check").stdout
    assert "editorial desk: review, 1 editor, drafts 4 h before each send" in out
