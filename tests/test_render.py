"""Rendering an edition (SPEC.md "What goes into an edition" and "Each message"), in-process.

Editions are hand-built `EditionPlan` values with fixed dates, rendered by `Renderer` with a
config read from a TOML file, and read back as a subscriber's mail client would: the sections
and their order, words, dates and plurals in the newsletter's language (bokmål, nynorsk,
English) and time zone, the design's parts (header, preheader, items, meetings, footer), the
receivers' limits (600 px, `lang`, explicit colours with enough contrast in light and dark
mode, `alt` on every image, no tracking pixel, the HTML part under Gmail's 102 KB with 40 long
items and each <style> block under 16 KB), HTML that is safe to open, text from feeds that
stays text, the accent and logo settings, admins' template overrides, and the per-reader
values filled into the edition rendered once.

Golden files: tests/golden/edition.{nb,en}.{html,txt} hold the rendered bokmål and English
editions. After an intended change to the templates or the renderer, regenerate them with

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_render.py

and review the diff before committing (tests/golden/README.md says the same).
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from mjml import mjml2html
from support.editions import (
    CREATED,
    INTRO,
    KARI,
    OLA,
    PUBLIC_URL,
    SIRI,
    bylines_around_the_edge,
    item,
    meeting,
    plan,
    render,
    write_config,
)
from support.site import Site

from pipeline.colours import contrast_ratio
from pipeline.config import Config
from pipeline.deliver import build_message
from pipeline.errors import ConfigError, RenderError
from pipeline.models import PERSONAL_MARK, Credit, EditionPlan, Kind, Rendered
from pipeline.render import (
    GMAIL_CLIP_BYTES,
    GMAIL_STYLE_BYTES,
    UNSUBSCRIBE_URL,
    Renderer,
    personalise,
)
from pipeline.templates import LOCALE_DIR

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
LANGUAGES = ("nb", "nn", "en")
LOGO = """\
logo = "https://www.trondheimsregionen.example/logo.png"
logo_alt = "Trondheimsregionen"
logo_width = 180
"""
READER_URL = f"{PUBLIC_URL}/unsubscribe/17.c2VjcmV0LW1hYy1vZi1hbm5l"


def golden_plan() -> EditionPlan:
    """A modest edition: 2 chronicles (one co-written), 3 blog posts, 2 meetings."""
    return plan(
        items=(
            item(
                1,
                "Trondheimsregionen trenger et felles løft for samferdsel",
                Kind.CHRONICLE,
                date=datetime(2026, 2, 16, 6, 30, tzinfo=UTC),
                credits=(KARI, OLA),
                excerpt="Regionen vokser raskere enn veiene og togtilbudet. Vi foreslår tre "
                "grep som kan gjøres før neste rullering av Nasjonal transportplan.",
                link="https://www.avisa.example/debatt/kronikk-om-samferdsel",
            ),
            item(
                2,
                "Skogen er vår neste næring",
                Kind.CHRONICLE,
                date=datetime(2026, 2, 12, 11, 0, tzinfo=UTC),
                credits=(OLA,),
                excerpt="Tre av fire kommuner i regionen har mer skog enn tettsted.",
                link="https://www.avisa.example/debatt/skogen",
            ),
            item(
                3,
                "Hva studentene ønsker seg av regionen",
                date=datetime(2026, 2, 15, 19, 45, tzinfo=UTC),
                excerpt="Vi spurte 400 studenter om bolig, buss og jobb etter studiene.",
            ),
            item(
                4,
                "Et år som ambassadør",
                date=datetime(2026, 2, 10, 8, 0, tzinfo=UTC),
                credits=(SIRI,),
                excerpt="Om å fortelle om regionen i møter, på nett og på kafé.",
            ),
            item(5, "Bilder fra Regionrådet", date=datetime(2026, 2, 9, 15, 0, tzinfo=UTC)),
        ),
        meetings=(
            meeting(
                "Regionrådet",
                datetime(2026, 2, 24, 9, 0, tzinfo=UTC),
                end=datetime(2026, 2, 24, 13, 0, tzinfo=UTC),
                location="Kulturhuset, Støren",
                url="https://example.org/regionradet",
                description="Samferdsel og næringsutvikling står på sakslisten.",
                credits=(KARI, OLA),
            ),
            meeting(
                "Ambassadørsamling",
                datetime(2026, 3, 5, 15, 30, tzinfo=UTC),
                location="Trondheim rådhus",
                credits=(SIRI,),
            ),
        ),
    )


# -- reading the output -----------------------------------------------------------------------


@dataclass
class Link:
    href: str
    text: str = ""


class ParsedHtml(HTMLParser):
    """The tags, links and visible text of an HTML part, as a browser's parser sees them."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.links: list[Link] = []
        self.chunks: list[str] = []
        self._open: list[Link] = []
        self.feed(source)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): v or "" for k, v in attrs}
        self.tags.append((tag, values))
        if tag == "a":
            self._open.append(Link(values.get("href", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open:
            self.links.append(self._open.pop())

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)
        for link in self._open:
            link.text += data

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.chunks).split())


def _lines(text: str) -> list[str]:
    return text.replace("><", ">\n<").splitlines()


def assert_golden(name: str, actual: str) -> None:
    """`actual` equals tests/golden/`name`; with UPDATE_GOLDEN=1 the file is rewritten."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        path.write_bytes(actual.encode("utf-8"))
        return
    assert path.exists(), f"{path} is missing: UPDATE_GOLDEN=1 .venv/bin/pytest {__file__}"
    expected = path.read_bytes().decode("utf-8")
    if actual != expected:
        diff = difflib.unified_diff(
            _lines(expected), _lines(actual), f"golden/{name}", "rendered", lineterm="", n=2
        )
        pytest.fail(
            f"the rendered edition differs from golden/{name}; if the change is intended, "
            "regenerate with UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_render.py\n"
            + "\n".join(list(diff)[:80])
        )


def flat(text: str) -> str:
    """Text with its line wrapping undone: every run of white space one space."""
    return " ".join(text.split())


def positions(text: str, *needles: str) -> list[int]:
    found = [text.find(n) for n in needles]
    assert -1 not in found, f"missing {[n for n, at in zip(needles, found, strict=True) if at < 0]}"
    return found


# -- golden files -----------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["nb", "en"])
def test_edition_matches_the_golden_files(tmp_path: Path, language: str) -> None:
    out = render(write_config(tmp_path, language), golden_plan())
    assert_golden(f"edition.{language}.html", out.html)
    assert_golden(f"edition.{language}.txt", out.text)


@pytest.mark.parametrize(
    ("language", "subject"),
    [
        ("nb", "Ambassadørnytt 17. februar 2026: 2 kronikker, 3 blogginnlegg og 2 møter"),
        ("nn", "Ambassadørnytt 17. februar 2026: 2 kronikkar, 3 blogginnlegg og 2 møte"),
        ("en", "Ambassadørnytt February 17, 2026: 2 chronicles, 3 blog posts and 2 meetings"),
    ],
)
def test_subject_gives_the_date_and_what_the_edition_holds(
    tmp_path: Path, language: str, subject: str
) -> None:
    assert render(write_config(tmp_path, language), golden_plan()).subject == subject


# -- sections, dates and times ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "headings"),
    [
        ("nb", ("Kronikker", "Blogginnlegg", "Kommende møter")),
        ("nn", ("Kronikkar", "Blogginnlegg", "Komande møte")),
        ("en", ("Chronicles", "Blog posts", "Upcoming meetings")),
    ],
)
def test_sections_come_intro_chronicles_blog_posts_meetings(
    tmp_path: Path, language: str, headings: tuple[str, str, str]
) -> None:
    out = render(write_config(tmp_path, language), golden_plan())
    order = (INTRO[language], *headings)
    for part in (flat(out.text), ParsedHtml(out.html).text):
        at = positions(part, *order)
        assert at == sorted(at), f"sections out of order: {dict(zip(order, at, strict=True))}"
        # Each item sits under its own heading.
        chronicle, blog, meetings = at[1:]
        assert chronicle < part.find("Skogen er vår neste næring") < blog
        assert blog < part.find("Et år som ambassadør") < meetings
        assert meetings < part.find("Ambassadørsamling")


def test_empty_sections_are_left_out(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    blogs_only = render(
        config, plan(items=(item(1, "Bare en blogg", date=CREATED - timedelta(days=1)),))
    )
    meetings_only = render(
        config, plan(meetings=(meeting("Regionrådet", CREATED + timedelta(days=3)),))
    )
    for part in (blogs_only.text, ParsedHtml(blogs_only.html).text):
        assert "Blogginnlegg" in part and "Bare en blogg" in part
        assert "Kronikker" not in part and "Kommende møter" not in part
    for part in (meetings_only.text, ParsedHtml(meetings_only.html).text):
        assert "Kommende møter" in part and "Regionrådet" in part
        assert "Kronikker" not in part and "Blogginnlegg" not in part


@pytest.mark.parametrize(
    ("language", "long_date"), [("nb", "17. februar 2026"), ("en", "February 17, 2026")]
)
def test_dates_are_long_dates_in_the_language_and_time_zone(
    tmp_path: Path, language: str, long_date: str
) -> None:
    # 23:30 UTC on the 16th is already the 17th in Oslo.
    late = item(1, "Skrevet sent", date=datetime(2026, 2, 16, 23, 30, tzinfo=UTC))
    out = render(write_config(tmp_path, language), plan(items=(late,)))
    byline = f"Kari Nordmann, Prorektor, NTNU · {long_date}"
    assert byline in out.text
    assert byline in ParsedHtml(out.html).text
    assert out.subject.startswith(f"Ambassadørnytt {long_date}: ")


@pytest.mark.parametrize(
    ("language", "winter", "summer"),
    [
        ("nb", "torsdag 15. januar 2026 kl. 10:00", "onsdag 15. juli 2026 kl. 11:00"),
        ("nn", "torsdag 15. januar 2026 kl. 10:00", "onsdag 15. juli 2026 kl. 11:00"),
        ("en", "Thursday, January 15, 2026, 10:00", "Wednesday, July 15, 2026, 11:00"),
    ],
)
def test_meeting_times_are_local_time_in_winter_and_summer(
    tmp_path: Path, language: str, winter: str, summer: str
) -> None:
    """A start given in UTC shows as Oslo time: +1 hour in winter, +2 in summer."""
    meetings = (
        meeting("Vintermøte", datetime(2026, 1, 15, 9, 0, tzinfo=UTC)),
        meeting(
            "Sommermøte",
            datetime(2026, 7, 15, 9, 0, tzinfo=UTC),
            end=datetime(2026, 7, 15, 11, 30, tzinfo=UTC),
        ),
    )
    out = render(write_config(tmp_path, language), plan(meetings=meetings))
    for part in (out.text, ParsedHtml(out.html).text):
        assert winter in part
        assert f"{summer}–13:30" in part


@pytest.mark.parametrize(
    ("language", "shown"),
    [
        ("nb", "torsdag 17. desember 2026 kl. 08:30 – 18. des. kl. 15:00"),
        ("nn", "torsdag 17. desember 2026 kl. 08:30 – 18. des. kl. 15:00"),
        ("en", "Thursday, December 17, 2026, 08:30 – Dec 18, 15:00"),
    ],
)
def test_a_meeting_over_two_days_writes_its_end_as_its_start(
    tmp_path: Path, language: str, shown: str
) -> None:
    meetings = (
        meeting(
            "Næringsforum",
            datetime(2026, 12, 17, 7, 30, tzinfo=UTC),
            end=datetime(2026, 12, 18, 14, 0, tzinfo=UTC),
        ),
    )
    out = render(write_config(tmp_path, language), plan(meetings=meetings))
    for part in (out.text, ParsedHtml(out.html).text):
        assert shown in part


# -- languages: gettext catalogues ------------------------------------------------------------


def extracted_messages() -> set[str]:
    """The msgids the code and templates use, extracted as `make messages` does (babel.cfg)."""
    with (ROOT / "babel.cfg").open(encoding="utf-8") as f:
        method_map, options_map = parse_mapping_cfg(f)
    found = set()
    for _, _, message, _, _ in extract_from_dir(ROOT, method_map, options_map):
        found.add(message[0] if isinstance(message, tuple) else message)
    return found


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_of_the_templates_and_code_is_translated_in_each_catalogue(
    language: str,
) -> None:
    """A message added to a template without `make messages` (or left untranslated, fuzzy, or
    with placeholders that differ from the English) would show English, or fail, in the mail."""
    with (LOCALE_DIR / language / "LC_MESSAGES" / "trnews.po").open("rb") as f:
        catalog = read_po(f, locale=language)
    used = extracted_messages()
    assert len(used) > 10, used
    known = {m.id[0] if isinstance(m.id, tuple) else m.id for m in catalog if m.id}
    assert not used - known, f"not in {language}'s catalogue, run `make messages`: {used - known}"
    untranslated = [
        m.id
        for m in catalog
        if m.id and (m.fuzzy or not all(m.string if isinstance(m.string, tuple) else [m.string]))
    ]
    assert not untranslated, f"{language}: untranslated or fuzzy: {untranslated}"
    problems = [(m.id, [str(e) for e in errors]) for m, errors in catalog.check()]
    assert not problems, problems


def test_nynorsk_edition_has_its_own_words_dates_and_plurals(tmp_path: Path) -> None:
    out = personalise(
        render(write_config(tmp_path, "nn"), golden_plan()), unsubscribe_url=READER_URL
    )
    for part in (flat(out.text), ParsedHtml(out.html).text):
        for words in (
            "2 kronikkar, 3 blogginnlegg og 2 møte",
            "tysdag 24. februar 2026 kl. 10:00–14:00",
            "Med Kari Nordmann og Ola Hansen",
            "Du får dette nyheitsbrevet fordi du abonnerer på Ambassadørnytt frå "
            "Trondheimsregionen.",
            "Tidlegare utgåver",
        ):
            assert words in part, words
        assert "Kommende" not in part and "Tidligere" not in part  # no bokmål left


@pytest.mark.parametrize(
    ("language", "one_each", "one_more"),
    [
        ("nb", "1 kronikk, 1 blogginnlegg og 1 møte", "… og 1 innlegg til. Les det i arkivet."),
        ("nn", "1 kronikk, 1 blogginnlegg og 1 møte", "… og 1 innlegg til. Les det i arkivet."),
        (
            "en",
            "1 chronicle, 1 blog post and 1 meeting",
            "… and 1 more post. Read it in the archive.",
        ),
    ],
)
def test_counts_of_one_are_singular(
    tmp_path: Path, language: str, one_each: str, one_more: str
) -> None:
    day = CREATED - timedelta(days=1)
    edition = plan(
        items=(item(1, "Kronikken", Kind.CHRONICLE, date=day),),
        overflow=(item(2, "Bloggen", date=day),),
        meetings=(meeting("Møtet", CREATED + timedelta(days=2)),),
    )
    out = render(write_config(tmp_path, language), edition)
    assert out.subject.endswith(f": {one_each}")
    assert f"{one_more}\n{PUBLIC_URL}/archive\n" in out.text
    assert Link(f"{PUBLIC_URL}/archive", one_more) in ParsedHtml(out.html).links


# -- the design -------------------------------------------------------------------------------


def body_text(html: str) -> str:
    """The visible text of the body, in order: what an inbox list shows after the subject."""
    return ParsedHtml(html[html.index("<body") :]).text


@pytest.mark.parametrize(
    ("language", "summary"),
    [
        ("nb", "2 kronikker, 3 blogginnlegg og 2 møter"),
        ("en", "2 chronicles, 3 blog posts and 2 meetings"),
    ],
)
def test_preheader_and_header_give_what_the_edition_holds_title_and_date(
    tmp_path: Path, language: str, summary: str
) -> None:
    """The preheader is the body's first text, so inbox lists show it after the subject; it is
    visible, not hidden text (hidden text is what spam filters look for)."""
    out = render(write_config(tmp_path, language), golden_plan())
    date = "17. februar 2026" if language == "nb" else "February 17, 2026"
    shown = body_text(out.html)
    assert shown.startswith(f"{summary} Ambassadørnytt {date} ")
    at = positions(shown, date, INTRO[language])
    assert at == sorted(at)
    assert "display:none" not in out.html
    assert ">Ambassadørnytt</h1>" in out.html
    assert out.text.startswith(f"AMBASSADØRNYTT\n{date} · {summary}\n")


def test_each_item_shows_linked_title_ambassadors_with_roles_date_and_excerpt(
    tmp_path: Path,
) -> None:
    out = render(write_config(tmp_path), golden_plan())
    parsed = ParsedHtml(out.html)
    link = "https://www.avisa.example/debatt/kronikk-om-samferdsel"
    assert Link(link, "Trondheimsregionen trenger et felles løft for samferdsel") in parsed.links
    byline = "Kari Nordmann, Prorektor, NTNU; Ola Hansen, Ordfører i Melhus · 16. februar 2026"
    excerpt = "Regionen vokser raskere enn veiene og togtilbudet."
    for part in (parsed.text, flat(out.text)):
        at = positions(part, "Trondheimsregionen trenger", byline, excerpt)
        assert at == sorted(at)
    assert f"\n{link}\n" in out.text


def test_each_meeting_shows_local_time_place_ambassadors_and_link(tmp_path: Path) -> None:
    out = render(write_config(tmp_path), golden_plan())
    parsed = ParsedHtml(out.html)
    assert Link("https://example.org/regionradet", "Regionrådet") in parsed.links
    for part in (parsed.text, flat(out.text)):
        at = positions(
            part,
            "Regionrådet tirsdag 24. februar 2026 kl. 10:00–14:00",
            "Kulturhuset, Støren",
            "Med Kari Nordmann og Ola Hansen",
            "Samferdsel og næringsutvikling",
        )
        assert at == sorted(at)
    assert "\nhttps://example.org/regionradet\n" in out.text


def test_footer_says_why_with_a_visible_unsubscribe_link_archive_and_sender(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path, extra='postal_address = "Erling Skakkes gate 14, 7012 Trondheim"'
    )
    reader = personalise(render(config, golden_plan()), unsubscribe_url=READER_URL)
    parsed = ParsedHtml(reader.html)
    assert Link(READER_URL, "Meld deg av med ett klikk") in parsed.links
    assert Link(f"{PUBLIC_URL}/archive", "Tidligere utgaver") in parsed.links
    why = "Du får dette nyhetsbrevet fordi du abonnerer på Ambassadørnytt fra Trondheimsregionen."
    sender = "Trondheimsregionen · nyhetsbrev@example.org"
    address = "Erling Skakkes gate 14, 7012 Trondheim"
    at = positions(parsed.text, why, "Meld deg av med ett klikk", sender, address)
    assert at == sorted(at) and at[0] > parsed.text.find("Ambassadørsamling")
    footer = reader.text[reader.text.index("\n-- \n") :]
    for line in (
        f"Meld deg av: {READER_URL}",
        f"Tidligere utgaver: {PUBLIC_URL}/archive",
        "Trondheimsregionen <nyhetsbrev@example.org>",
        address,
    ):
        assert f"\n{line}\n" in footer, line
    assert why in flat(footer)


def test_plain_text_is_wrapped_for_a_terminal_with_each_link_on_its_own_line(
    tmp_path: Path,
) -> None:
    long_excerpt = "Kommunene i Trondheimsregionen samarbeider om areal og transport. " * 4
    edition = plan(
        items=(
            item(1, "Et innlegg " * 12, date=CREATED - timedelta(days=1), excerpt=long_excerpt),
        ),
        meetings=golden_plan().meetings,
    )
    text = render(write_config(tmp_path), edition).text
    for line in text.splitlines():
        assert len(line) <= 72 or re.fullmatch(r"\S+", line), line
    links = ["https://blogg.example.org/1", "https://example.org/regionradet"]
    assert all(f"\n{link}\n" in text for link in links)
    # One item per paragraph: a blank line before each heading and each item's title.
    assert "\n\nEt innlegg Et innlegg" in text
    assert "\n\nKommende møter\n==============\n\nRegionrådet\n" in text


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_text_part_never_breaks_a_date_nor_leaves_its_separator_behind(
    tmp_path: Path, language: str
) -> None:
    """ "Ola Hansen, Ordfører i Melhus · 16." and "februar 2026" on the next line: a reader
    reads a day without its month. Each date stays on one line with the "·" before it, and
    still every line is at most 72 columns."""
    edition = bylines_around_the_edge()
    text = render(write_config(tmp_path, language), edition).text
    fmt = Renderer(write_config(tmp_path, language)).fmt
    lines = text.splitlines()
    for it in edition.items:
        date = fmt.date(it.date)
        assert any(f"· {date}" in line for line in lines), f"{date!r} broken in:\n{text}"
    assert not [line for line in lines if line.endswith("·") or line.startswith("·")]
    assert all(len(line) <= 72 for line in lines), max(lines, key=len)
    assert "\u00a0" not in text, "no-break spaces are for wrapping only"


# -- render once, personalise cheaply ---------------------------------------------------------


def test_each_reader_is_greeted_by_name_and_nothing_else_differs(tmp_path: Path) -> None:
    content = render(write_config(tmp_path), golden_plan())
    anne = personalise(content, unsubscribe_url=READER_URL, name="Anne Abonnent")
    other_url = f"{PUBLIC_URL}/unsubscribe/18.b3RoZXI"
    nameless = personalise(content, unsubscribe_url=other_url)
    assert "Hei Anne Abonnent!" in ParsedHtml(anne.html).text
    assert "\nHei Anne Abonnent!\n" in anne.text
    assert "Hei!" in ParsedHtml(nameless.html).text and "\nHei!\n" in nameless.text
    for a, b in ((anne.html, nameless.html), (anne.text, nameless.text)):
        assert a.replace("Hei Anne Abonnent!", "Hei!").replace(READER_URL, other_url) == b
    assert anne.subject == nameless.subject == content.subject


def test_a_readers_name_is_shown_as_text_on_one_line(tmp_path: Path) -> None:
    content = render(write_config(tmp_path), golden_plan())
    name = f'<b onclick="alert(1)">Ola</b>\r\nBcc: x@example.org {UNSUBSCRIBE_URL}'
    reader = personalise(content, unsubscribe_url=READER_URL, name=name)
    shown = '<b onclick="alert(1)">Ola</b> Bcc: x@example.org unsubscribe_url@@'
    parsed = assert_safe_html(reader.html)
    assert f"Hei {shown}!" in parsed.text
    assert "b" not in {tag for tag, _ in parsed.tags}
    assert f"\nHei {shown}!\n" in reader.text
    assert reader.text.count(READER_URL) == 1 and reader.html.count(READER_URL) == 1


# -- the receivers' limits --------------------------------------------------------------------


def assert_safe_html(html: str, images: int = 0) -> ParsedHtml:
    """No script, event handler, javascript: link, form or external stylesheet (SPEC.md), and
    no image but the `images` the config asks for (a logo): no tracking pixel."""
    parsed = ParsedHtml(html)
    names = {tag for tag, _ in parsed.tags}
    assert not names & {"script", "form", "input", "iframe", "object", "embed"}, names
    assert [tag for tag, _ in parsed.tags].count("img") == images
    assert "<script" not in html.lower()
    assert "<form" not in html.lower()
    for tag, attrs in parsed.tags:
        handlers = [a for a in attrs if a.startswith("on")]
        assert not handlers, f"<{tag}> has event handlers {handlers}"
        for name in ("href", "src", "action"):
            if name in attrs:
                assert re.match(r"https?://", attrs[name]) or attrs[name].startswith(
                    PERSONAL_MARK
                ), f"<{tag} {name}={attrs[name]!r}>"
        if tag == "link":
            assert "stylesheet" not in attrs.get("rel", "").lower(), attrs
    assert "javascript:" not in html.lower()
    assert "@import" not in html
    return parsed


@pytest.mark.parametrize("language", LANGUAGES)
def test_html_comes_from_mjml_600px_wide_with_lang_and_nothing_active(
    tmp_path: Path, language: str
) -> None:
    out = render(write_config(tmp_path, language), golden_plan())
    parsed = assert_safe_html(out.html)
    html_tag = next(attrs for tag, attrs in parsed.tags if tag == "html")
    assert html_tag.get("lang") == language
    assert "mj-column-per-100" in out.html  # MJML's own column classes
    widths = [int(w) for w in re.findall(r"max-width:\s*(\d+)px", out.html)]
    assert widths and max(widths) == 600
    assert all(int(w) <= 600 for w in re.findall(r'\bwidth="(\d+)(?:px)?"', out.html))


def forty_long_items() -> EditionPlan:
    """The largest edition `max_items = 40` allows, and then some: long titles, excerpts,
    links and bylines on every item, five meetings with descriptions, items over the cap."""
    long_title = ("Et langt innlegg om samferdsel, skog og næringsliv i regionen " * 4)[:200]
    excerpt = ("Kommunene i Trondheimsregionen samarbeider om areal, transport og næring. " * 5)[
        :300
    ]
    items = tuple(
        item(
            n,
            f"{n}: {long_title}",
            Kind.CHRONICLE if n % 3 == 0 else Kind.BLOG,
            date=CREATED - timedelta(hours=n),
            credits=(KARI, OLA),
            excerpt=excerpt,
            link=f"https://www.avisa.example/debatt/2026/02/{n}/{'langt-innlegg-' * 6}{n}/",
        )
        for n in range(1, 44)
    )
    meetings = tuple(
        meeting(
            f"Møte {n} i regionrådet om samferdsel og næring",
            CREATED + timedelta(days=n),
            end=CREATED + timedelta(days=n, hours=3),
            location="Kulturhuset, Støren",
            url=f"https://www.trondheimsregionen.example/moter/{n}",
            description="Saker: samferdsel, næringsutvikling, areal og klima. " * 3,
            credits=(KARI, OLA, SIRI),
        )
        for n in range(1, 6)
    )
    return plan(items[:40], meetings, overflow=items[40:])


@pytest.fixture(scope="module")
def forty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Rendered]:
    """The 40-item edition with a logo and a postal address, as one reader receives it."""
    folder = tmp_path_factory.mktemp("forty")
    extra = LOGO + 'postal_address = "Erling Skakkes gate 14, 7012 Trondheim"\n'
    config = write_config(folder, extra=extra)
    content = render(config, forty_long_items())
    return config, personalise(content, unsubscribe_url=READER_URL, name="Anne Abonnent")


def test_forty_long_items_stay_under_gmails_clipping_size_as_sent(
    forty: tuple[Config, Rendered],
) -> None:
    config, reader = forty
    msg = build_message(
        config, reader, to="anne@example.org", unsubscribe_url=READER_URL, when=CREATED
    )
    part = msg.get_body(("html",))
    assert part is not None
    shown = ParsedHtml(str(part.get_content())).text
    assert all(f"{n}: Et langt innlegg" in shown for n in range(1, 41))
    assert "… og 3 innlegg til" in shown
    encoded = str(part.get_payload()).encode("ascii")
    assert len(encoded) < GMAIL_CLIP_BYTES, f"HTML part is {len(encoded)} bytes as sent"


def test_forty_long_items_keep_every_style_block_under_16_kb(
    forty: tuple[Config, Rendered],
) -> None:
    styles = re.findall(r"<style[^>]*>(.*?)</style>", forty[1].html, re.DOTALL)
    assert styles
    sizes = [len(style.encode()) for style in styles]
    assert max(sizes) < GMAIL_STYLE_BYTES, sizes
    assert any("prefers-color-scheme: dark" in style for style in styles)


def test_forty_long_items_with_a_logo_have_one_image_with_alt_and_no_pixel(
    forty: tuple[Config, Rendered],
) -> None:
    parsed = assert_safe_html(forty[1].html, images=1)
    logo = next(attrs for tag, attrs in parsed.tags if tag == "img")
    assert logo["src"] == "https://www.trondheimsregionen.example/logo.png"
    assert logo["alt"] == "Trondheimsregionen"
    assert logo["width"] == "180"
    # At the top of the header, before the title.
    assert forty[1].html.find("<img") < forty[1].html.find(">Ambassadørnytt</h1>")


def test_without_a_logo_the_edition_has_no_image_at_all(tmp_path: Path) -> None:
    assert_safe_html(render(write_config(tmp_path), golden_plan()).html, images=0)


class Colours(HTMLParser):
    """Each visible text run's colour and the background it sits on, as a browser works them
    out from the explicit colours along the way (no client default is relied on)."""

    VOID = frozenset({"br", "img", "meta", "hr", "link", "input", "col", "area", "base"})

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, str | None, str | None, bool]] = [("", None, None, False)]
        self.runs: list[tuple[str, str | None, str | None]] = []
        self.feed(source)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            return
        _, fg, bg, hidden = self.stack[-1]
        values = dict(attrs)
        style = (values.get("style") or "").replace(" ", "").lower()
        hidden = hidden or tag in ("head", "style", "title")
        found_bg = re.search(r"background(?:-color)?:(#[0-9a-f]{6})", style)
        found_fg = re.search(r"(?:^|;)color:(#[0-9a-f]{6})", style)
        bg = found_bg.group(1) if found_bg else values.get("bgcolor") or bg
        fg = found_fg.group(1) if found_fg else fg
        self.stack.append((tag, fg, bg, hidden or "display:none" in style))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        while len(self.stack) > 1:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        _, fg, bg, hidden = self.stack[-1]
        if data.strip() and not hidden:
            self.runs.append((" ".join(data.split()), fg, bg))


class HiddenText(HTMLParser):
    """Text a reader cannot see, as spam filters judge it from the inline styles (rspamd's
    ZERO_FONT and MANY_INVISIBLE_PARTS, SpamAssassin's invisible-text rules): text in a font
    of 1 px or less, or inside an element that is not displayed, hidden, fully transparent, or
    squeezed to no height. Hiding text from the eye is what spam does to fool a filter, so a
    filter holds any of it against the message, a hair space included."""

    VOID = Colours.VOID
    UNSHOWN = frozenset({"head", "style", "title", "script"})

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        # tag, font size in px, why it is hidden ("" if it is not)
        self.stack: list[tuple[str, float, str]] = [("", 16.0, "")]
        self.found: list[str] = []
        self.feed(source)
        self.close()

    @staticmethod
    def _px(value: str, inherited: float) -> float:
        number = re.match(r"(-?[\d.]+)(px|pt|em|rem|%)?$", value)
        if not number:
            return inherited
        size, unit = float(number[1]), number[2] or "px"
        scale = {"px": 1, "pt": 4 / 3, "em": inherited, "rem": 16, "%": inherited / 100}
        return size * scale[unit]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            return
        _, size, why = self.stack[-1]
        style = dict(
            (k.strip().lower(), v.strip().lower())
            for k, _, v in (d.partition(":") for d in (dict(attrs).get("style") or "").split(";"))
            if v.strip()
        )
        if "font-size" in style:
            size = self._px(style["font-size"], size)
        if not why:
            if tag in self.UNSHOWN:
                why = "not shown"
            elif style.get("display") == "none":
                why = "display:none"
            elif style.get("visibility") == "hidden":
                why = "visibility:hidden"
            elif style.get("opacity") in ("0", "0.0"):
                why = "opacity:0"
            elif style.get("color") == "transparent":
                why = "color:transparent"
            elif style.get("max-height") in ("0", "0px") and style.get("overflow") == "hidden":
                why = "max-height:0"
        self.stack.append((tag, size, why))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID or tag not in (t for t, _, _ in self.stack):
            return
        while self.stack.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        tag, size, why = self.stack[-1]
        if why == "not shown" or not data.strip(" \t\r\n\f"):
            return
        if why or size <= 1:
            self.found.append(f"<{tag}> {data!r} ({why or f'font-size {size:g}px'})")


def hidden_text(html: str) -> list[str]:
    """Every run of text in `html` that a spam filter would take for hidden (see HiddenText)."""
    return HiddenText(html).found


def compact_report() -> dict[str, object]:
    """The compact plan table that closes an edition with `[report] in_newsletter = true`."""
    cells = [{"count": "2 av 4", "gap": "−1,6"}] * 3
    row = {"name": "Kari Nordmann", "cells": cells, "line": "Kronikker 2 av 4 (−1,6)"}
    return {
        "heading": "Ambassadørplanen 2026",
        "note": "Tallene gjelder per 17. februar 2026.",
        "ambassador": "Ambassadør",
        "kinds": ["Kronikker", "Blogginnlegg", "Møter"],
        "rows": [row],
        "total": {**row, "name": "Sum"},
    }


@pytest.mark.parametrize("shape", ["golden", "empty", "report", "forty-with-logo"])
def test_no_text_hides_in_a_tiny_font_or_an_invisible_element(tmp_path: Path, shape: str) -> None:
    """rspamd scores text in a zero-size font (ZERO_FONT) and text the eye cannot see
    (MANY_INVISIBLE_PARTS) on every message it finds them in; an edition carries none, at its
    end (where MJML's mj-spacer put a hair space in a zero-size font) or anywhere else."""
    editions = {
        "golden": golden_plan,
        "empty": plan,
        "report": lambda: replace(golden_plan(), report=compact_report()),
        "forty-with-logo": forty_long_items,
    }
    config = write_config(tmp_path, extra=LOGO if shape == "forty-with-logo" else "")
    html = render(config, editions[shape]()).html
    assert "Kari Nordmann" in html or shape == "empty"
    assert hidden_text(html) == []


def test_the_hidden_text_check_finds_what_spam_filters_look_for() -> None:
    """The check can fail: on MJML's own spacer and hidden preheader, and on the usual hiding
    places, while the visible text beside them passes."""
    spacer = mjml2html(
        "<mjml><mj-head><mj-preview>Skjult forhåndstekst</mj-preview></mj-head><mj-body>"
        '<mj-section><mj-column><mj-text>Synlig</mj-text><mj-spacer height="1px" />'
        "</mj-column></mj-section></mj-body></mjml>"
    )
    found = hidden_text(spacer)
    assert any("'\\u200a'" in f and "font-size 0px" in f for f in found), found
    assert any("Skjult forhåndstekst" in f for f in found), found
    assert not any("Synlig" in f for f in found), found
    hidden = [
        '<p style="font-size:1px">liten</p>',
        '<div style="display: none">borte</div>',
        '<td style="visibility:hidden"><span>skjult</span></td>',
        '<span style="opacity:0">gjennomsiktig</span>',
        '<div style="max-height:0px;overflow:hidden">klemt</div>',
        '<div style="font-size:0"><b>null</b></div>',
    ]
    for snippet in hidden:
        assert len(hidden_text(f"<body>{snippet}<p>Synlig</p></body>")) == 1, snippet
    visible = '<td style="font-size:0px"><div style="font-size:16px">Synlig</div></td>'
    assert hidden_text(visible) == []


@pytest.mark.parametrize("accent", ["#003a70", "#8a1538", "#0b6e4f"])
def test_every_text_has_explicit_colours_with_enough_contrast(tmp_path: Path, accent: str) -> None:
    """Dark modes invert or recolour what is stated; text left to a client's default colour
    can end up dark on dark. So every text states its colour and its background, and the two
    keep WCAG's 4.5:1 whatever accent the admin picks."""
    config = write_config(tmp_path, extra=f'accent = "{accent}"\n{LOGO}')
    reader = personalise(render(config, forty_long_items()), unsubscribe_url=READER_URL)
    runs = Colours(reader.html).runs
    assert len(runs) > 100
    unstated = [text for text, fg, bg in runs if fg is None or bg is None]
    assert not unstated, f"text without an explicit colour or background: {unstated[:5]}"
    low = {(fg, bg) for _, fg, bg in runs if contrast_ratio(fg or "", bg or "") < 4.5}
    assert not low, f"colour pairs under 4.5:1: {low}"
    assert any(fg == accent for _, fg, _ in runs)  # links and headings in the accent
    assert any(bg == accent for _, _, bg in runs)  # the header on the accent


def test_dark_mode_has_its_own_readable_colours(tmp_path: Path) -> None:
    """Clients that honour `prefers-color-scheme` (Apple Mail, iOS, Outlook for Mac) get a dark
    design of our own instead of an automatic inversion; every text colour of it reads on
    every background of it."""
    out = render(write_config(tmp_path, extra='accent = "#8a1538"'), golden_plan())
    assert '<meta name="color-scheme" content="light dark"' in out.html
    block = re.search(r"@media \(prefers-color-scheme: dark\) \{(.*?)\}\s*</style>", out.html, re.S)
    assert block, "no dark-mode styles"
    rules = re.findall(r"([^{}]+)\{([^{}]+)\}", block.group(1))
    backgrounds = {c for _, body in rules for c in re.findall(r"background-color:\s*(#\w+)", body)}
    texts = {c for _, body in rules for c in re.findall(r"(?<![-\w])color:\s*(#\w+)", body)}
    assert len(backgrounds) >= 2 and len(texts) >= 3, (backgrounds, texts)
    low = [(fg, bg) for fg in texts for bg in backgrounds if contrast_ratio(fg, bg) < 4.5]
    assert not low, low
    assert all(contrast_ratio(bg, "#ffffff") > 10 for bg in backgrounds)  # dark, really


# -- the accent and the logo in the config ----------------------------------------------------


def config_problems(tmp_path: Path, extra: str) -> str:
    with pytest.raises(ConfigError) as caught:
        write_config(tmp_path, extra=extra)
    return str(caught.value)


def test_an_accent_colour_colours_the_header_headings_and_links(tmp_path: Path) -> None:
    out = render(write_config(tmp_path, extra='accent = "#8A1538"'), golden_plan())
    assert "background-color:#8a1538" in out.html
    assert 'style="color:#8a1538;text-decoration:underline">Skogen' in out.html
    assert "#003a70" not in out.html


def test_an_accent_too_light_to_read_on_white_is_refused_with_a_darker_suggestion(
    tmp_path: Path,
) -> None:
    message = config_problems(tmp_path, 'accent = "#7fb2e5"')
    assert "newsletter.accent: '#7fb2e5' has a contrast of 2.2:1 against white" in message
    assert "at least 4.5:1 (WCAG AA)" in message
    suggested = re.search(r"such as '(#[0-9a-f]{6})'", message)
    assert suggested, message
    write_config(tmp_path, extra=f'accent = "{suggested.group(1)}"')  # and it is accepted


def test_config_mistakes_in_accent_and_logo_are_reported_together(tmp_path: Path) -> None:
    message = config_problems(
        tmp_path, 'accent = "blue"\nlogo = "http://example.org/logo.png"\nlogo_width = 900'
    )
    assert "newsletter.accent: 'blue' is not a hex colour like '#003a70'" in message
    assert "newsletter.logo: 'http://example.org/logo.png' is not an https URL" in message
    assert "newsletter.logo_width:" in message
    message = config_problems(tmp_path, 'logo = "https://example.org/logo.svg"')
    assert "newsletter.logo: 'https://example.org/logo.svg' is an SVG" in message
    assert "newsletter.logo_alt: required when newsletter.logo is set" in message


# -- feed text stays text ---------------------------------------------------------------------

HOSTILE_TITLE = '<script>alert("x")</script> Rapport "><img src=x onerror=alert(1)> {{ 7*7 }}'
HOSTILE_EXCERPT = "{% raw %}Utdrag{% endraw %} <b onclick=alert(1)>fet</b> ${7*7} <!-- c -->"


def test_hostile_feed_text_renders_as_inert_text(tmp_path: Path) -> None:
    hostile = item(
        1,
        HOSTILE_TITLE,
        Kind.CHRONICLE,
        date=CREATED - timedelta(days=1),
        excerpt=HOSTILE_EXCERPT,
        link="javascript:alert(document.cookie)",
        credits=(Credit("x", '"><svg onload=alert(1)>', "</mj-text><mj-raw>"),),
    )
    event = meeting(
        "<iframe src=https://evil.example>",
        CREATED + timedelta(days=2),
        url="data:text/html,<script>alert(1)</script>",
        description="<form action=https://evil.example><input name=p></form>",
    )
    out = render(write_config(tmp_path), plan(items=(hostile,), meetings=(event,)))
    parsed = assert_safe_html(out.html)
    shown = parsed.text
    for words in (HOSTILE_TITLE, HOSTILE_EXCERPT, '"><svg onload=alert(1)>, </mj-text><mj-raw>'):
        assert words in shown, words  # as text a reader can see, not as markup
        assert words in flat(out.text)
    assert "<iframe src=https://evil.example>" in shown
    assert "<form action=https://evil.example><input name=p></form>" in shown
    assert "49" not in out.text and "49" not in shown  # nothing was evaluated as a template
    # The link that is not http(s) is dropped; the title is still shown, as text.
    assert not [link for link in parsed.links if HOSTILE_TITLE in link.text]
    assert "data:text/html" not in out.html and "data:text/html" not in out.text


@pytest.mark.parametrize(
    "marker",
    [UNSUBSCRIBE_URL, f"@@trn{PERSONAL_MARK}ews:unsubscribe_url@@"],
    ids=["marker", "nested-marker"],
)
def test_placeholder_in_plan_data_never_becomes_a_readers_link(tmp_path: Path, marker: str) -> None:
    """Collect strips the marker from feed text; render strips it again from every value of the
    plan (a plan can be built in-process, and links are not feed text), so only the template's
    own placeholders receive the reader's unsubscribe link."""
    trap = item(
        1,
        f"Klikk {marker} her",
        date=CREATED - timedelta(days=1),
        excerpt=f"Utdrag {marker}",
        link=f"https://evil.example/steal?u={marker}",
        credits=(Credit("x", f"Navn {marker}", f"Rolle {marker}"),),
    )
    event = meeting(
        f"Møte {marker}",
        CREATED + timedelta(days=2),
        location=marker,
        url=f"https://evil.example/{marker}",
        description=marker,
    )
    content = render(write_config(tmp_path), plan(items=(trap,), meetings=(event,)))
    reader = personalise(content, unsubscribe_url=READER_URL)
    assert reader.text.count(READER_URL) == 1
    assert f"\nMeld deg av: {READER_URL}\n" in reader.text
    assert reader.html.count(READER_URL) == 1
    parsed = ParsedHtml(reader.html)
    assert [link.text for link in parsed.links if READER_URL in link.href] == [
        "Meld deg av med ett klikk"
    ]
    # The marker's remains are shown as the harmless text they are.
    assert "Klikk unsubscribe_url@@ her" in parsed.text
    assert "Klikk unsubscribe_url@@ her" in reader.text
    assert PERSONAL_MARK not in reader.html and PERSONAL_MARK not in reader.text


# -- admin template overrides -----------------------------------------------------------------


def builtin_template(name: str) -> str:
    return (ROOT / "templates" / name).read_text(encoding="utf-8")


def overrides(tmp_path: Path, files: dict[str, str], language: str = "nb") -> Config:
    """A config whose `templates` folder holds these files."""
    ours = tmp_path / "my-templates"
    ours.mkdir()
    for name, body in files.items():
        (ours / name).write_text(body, encoding="utf-8")
    return write_config(tmp_path, language, extra='templates = "my-templates"')


def test_an_admin_footer_partial_replaces_only_the_footer(tmp_path: Path) -> None:
    """An admin's footer.mjml that adds a line and then includes the built-in footer."""
    footer = (
        '    <mj-section background-color="{{ colours.page }}" css-class="trn-foot">\n'
        "      <mj-column><mj-text>Spørsmål? Ring kommunikasjonsavdelingen.</mj-text>"
        "</mj-column>\n    </mj-section>\n"
        '{% include "builtin/footer.mjml" %}\n'
    )
    config = overrides(tmp_path, {"footer.mjml": footer})
    reader = personalise(render(config, golden_plan()), unsubscribe_url=READER_URL)
    parsed = assert_safe_html(reader.html)
    at = positions(
        parsed.text, "Ambassadørsamling", "kommunikasjonsavdelingen", "Meld deg av med ett klikk"
    )
    assert at == sorted(at)
    assert Link(READER_URL, "Meld deg av med ett klikk") in parsed.links
    assert "Kronikker" in parsed.text  # the rest is the built-in design
    assert "kommunikasjonsavdelingen" not in reader.text  # the text part has its own footer


def test_an_admin_footer_txt_replaces_the_footer_of_the_text_part_only(tmp_path: Path) -> None:
    footer = builtin_template("footer.txt")
    unsubscribe = '{{ _("Unsubscribe") }}: {{ unsubscribe_url }}\n'
    assert unsubscribe in footer
    config = overrides(
        tmp_path,
        {
            "footer.txt": footer.replace(
                unsubscribe, unsubscribe + "Spørsmål? Ring kommunikasjonsavdelingen.\n"
            )
        },
    )
    reader = personalise(render(config, golden_plan()), unsubscribe_url=READER_URL)
    assert (
        f"\nMeld deg av: {READER_URL}\nSpørsmål? Ring kommunikasjonsavdelingen.\n"
        f"Tidligere utgaver: {PUBLIC_URL}/archive\n"
    ) in reader.text
    assert "kommunikasjonsavdelingen" not in reader.html
    parsed = ParsedHtml(reader.html)
    assert "Meld deg av med ett klikk" in [link.text for link in parsed.links]


def test_an_admin_edition_mjml_replaces_the_whole_layout_and_reuses_the_partials(
    tmp_path: Path,
) -> None:
    edition = (
        '<mjml lang="{{ lang }}">\n  <mj-head>\n{% include "head.mjml" %}\n  </mj-head>\n'
        '  <mj-body width="600px" background-color="{{ colours.page }}">\n'
        '{% include "header.mjml" %}\n'
        "    <mj-section><mj-column><mj-text>Bare overskriftene denne gangen: "
        "{{ (chronicles + blog_posts) | map(attribute='title') | join(', ') }}"
        "</mj-text></mj-column></mj-section>\n"
        '{% include "footer.mjml" %}\n  </mj-body>\n</mjml>\n'
    )
    config = overrides(tmp_path, {"edition.mjml": edition}, language="en")
    reader = personalise(render(config, golden_plan()), unsubscribe_url=READER_URL)
    parsed = assert_safe_html(reader.html)
    assert "Bare overskriftene denne gangen: Trondheimsregionen trenger" in parsed.text
    # The built-in header.
    assert body_text(reader.html).startswith(
        "2 chronicles, 3 blog posts and 2 meetings Ambassadørnytt February 17, 2026 "
    )
    assert Link(READER_URL, "Unsubscribe with one click") in parsed.links  # and footer
    assert "Chronicles" not in parsed.text and "Upcoming meetings" not in parsed.text
    assert "Chronicles" in reader.text  # the text part is still the built-in one


def test_an_override_naming_an_unknown_value_is_reported_with_file_and_line(
    tmp_path: Path,
) -> None:
    config = overrides(
        tmp_path,
        {
            "edition.txt": (
                "{{ title }}\n{% for item in chronicles %}\n{{ itme.title }}\n{% endfor %}\n"
            )
        },
    )
    with pytest.raises(RenderError) as caught:
        render(config, golden_plan())
    message = str(caught.value)
    assert f"{tmp_path / 'my-templates' / 'edition.txt'}:3" in message
    assert "itme" in message


def test_a_broken_partial_is_reported_with_its_own_file_and_line(tmp_path: Path) -> None:
    item_partial = builtin_template("item.mjml").replace("{{ item.excerpt }}", "{{ item.utdrag }}")
    config = overrides(tmp_path, {"item.mjml": item_partial})
    with pytest.raises(RenderError) as caught:
        render(config, golden_plan())
    line = item_partial.splitlines().index(
        next(x for x in item_partial.splitlines() if "item.utdrag" in x)
    )
    assert f"{tmp_path / 'my-templates' / 'item.mjml'}:{line + 1}" in str(caught.value)
    assert "utdrag" in str(caught.value)


def test_preview_with_a_broken_override_exits_1_naming_the_file_and_line(site: Site) -> None:
    site.write()
    config = site.config.read_text(encoding="utf-8")
    site.config.write_text(
        config.replace("[newsletter]\n", '[newsletter]\ntemplates = "my-templates"\n', 1),
        encoding="utf-8",
    )
    (site.root / "my-templates").mkdir()
    (site.root / "my-templates" / "edition.txt").write_text(
        "{{ title }}\n\n{% if %}\n{{ why }}\n", encoding="utf-8"
    )
    proc = site.run("preview", check=False)
    assert proc.returncode == 1, proc.stderr
    assert "my-templates/edition.txt:3" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (site.root / "var" / "preview" / "preview.txt").exists()


# -- more than max_items ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "more"),
    [
        ("nb", "… og 3 innlegg til. Les alle i arkivet."),
        ("en", "… and 3 more posts. Read them all in the archive."),
    ],
)
def test_items_over_max_items_are_counted_and_the_archive_linked(
    tmp_path: Path, language: str, more: str
) -> None:
    day = CREATED - timedelta(days=1)
    shown = (item(1, "Vist", date=day), item(2, "Også vist", Kind.CHRONICLE, date=day))
    hidden = tuple(item(n, f"Skjult {n}", date=day) for n in (3, 4, 5))
    out = render(write_config(tmp_path, language), plan(items=shown, overflow=hidden))
    archive = f"{PUBLIC_URL}/archive"
    assert f"{more}\n{archive}\n" in out.text
    parsed = ParsedHtml(out.html)
    assert Link(archive, more) in parsed.links
    assert "Skjult" not in out.text and "Skjult" not in parsed.text
    counts = "1 kronikk og 4 blogginnlegg" if language == "nb" else "1 chronicle and 4 blog posts"
    assert out.subject.endswith(counts)
