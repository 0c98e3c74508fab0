"""Rendering an edition (SPEC.md "What goes into an edition" and "Each message"), in-process.

Editions are hand-built `EditionPlan` values with fixed dates, rendered by `Renderer` with a
config read from a TOML file, and read back as a subscriber's mail client would: the sections
and their order, dates in the newsletter's language and time zone, HTML that is safe to open,
and text from feeds that stays text.

Golden files: tests/golden/edition.{nb,en}.{html,txt} hold the rendered bokmål and English
editions. After an intended change to the templates or the renderer, regenerate them with

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_render.py

and review the diff before committing (tests/golden/README.md says the same).
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import Site

from pipeline.config import Config, load_config
from pipeline.deliver import build_message
from pipeline.errors import RenderError
from pipeline.models import PERSONAL_MARK, Credit, EditionPlan, Item, Kind, Meeting, Rendered
from pipeline.render import GMAIL_CLIP_BYTES, UNSUBSCRIBE_URL, Renderer, personalise

GOLDEN = Path(__file__).resolve().parent / "golden"
PUBLIC_URL = "https://nyhetsbrev.example.org"
READER_URL = f"{PUBLIC_URL}/unsubscribe/17.c2VjcmV0LW1hYy1vZi1hbm5l"
CREATED = datetime(2026, 2, 17, 7, 0, tzinfo=UTC)  # 08:00 in Oslo
INTRO = {
    "nb": "Velkommen til februarutgaven: to kronikker, tre blogginnlegg og to møter.",
    "en": "Welcome to the February edition: two chronicles, three blog posts and two meetings.",
}

KARI = Credit("kari-nordmann", "Kari Nordmann", "Prorektor, NTNU")
OLA = Credit("ola-hansen", "Ola Hansen", "Ordfører i Melhus")
SIRI = Credit("siri-berg", "Siri Berg")


def write_config(folder: Path, language: str = "nb", extra: str = "") -> Config:
    """A config file in `folder` for this language, read back the way trnews reads it."""
    path = folder / "trnews.toml"
    path.write_text(
        f"""\
[newsletter]
title = "Ambassadørnytt"
sender = "Trondheimsregionen <nyhetsbrev@example.org>"
reply_to = "post@example.org"
public_url = "{PUBLIC_URL}"
language = "{language}"
timezone = "Europe/Oslo"
intro = "{INTRO[language]}"
{extra}
""",
        encoding="utf-8",
    )
    return load_config(path)


def item(
    n: int,
    title: str,
    kind: Kind = Kind.BLOG,
    *,
    date: datetime,
    credits: tuple[Credit, ...] = (KARI,),
    excerpt: str = "",
    link: str | None = None,
) -> Item:
    return Item(
        id=n,
        key=f"https://blogg.example.org/{n}",
        link=f"https://blogg.example.org/{n}" if link is None else link,
        title=title,
        excerpt=excerpt,
        kind=kind,
        date=date,
        first_seen=date,
        credits=credits,
    )


def meeting(title: str, start: datetime, **kw: object) -> Meeting:
    return Meeting(key=title, title=title, start=start, **kw)  # type: ignore[arg-type]


def plan(
    items: tuple[Item, ...] = (),
    meetings: tuple[Meeting, ...] = (),
    overflow: tuple[Item, ...] = (),
) -> EditionPlan:
    return EditionPlan(
        created=CREATED,
        items=items,
        overflow=overflow,
        meetings=meetings,
        new_meetings=tuple(m.key for m in meetings),
    )


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


def render(config: Config, edition: EditionPlan) -> Rendered:
    return Renderer(config).render(edition)


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


# -- the HTML is safe and small ---------------------------------------------------------------


def assert_safe_html(html: str) -> ParsedHtml:
    """No script, event handler, javascript: link, form or external stylesheet (SPEC.md)."""
    parsed = ParsedHtml(html)
    names = {tag for tag, _ in parsed.tags}
    assert not names & {"script", "form", "input", "iframe", "object", "embed", "img"}, names
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


@pytest.mark.parametrize("language", ["nb", "en"])
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


def test_forty_long_items_stay_under_gmails_clipping_size_as_sent(tmp_path: Path) -> None:
    config = write_config(tmp_path)
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
        for n in range(1, 41)
    )
    meetings = tuple(
        meeting(f"Møte {n}", CREATED + timedelta(days=n), location="Kulturhuset, Støren")
        for n in range(1, 6)
    )
    content = personalise(render(config, plan(items, meetings)), unsubscribe_url=READER_URL)
    msg = build_message(
        config, content, to="anne@example.org", unsubscribe_url=READER_URL, when=CREATED
    )
    part = msg.get_body(("html",))
    assert part is not None
    shown = ParsedHtml(str(part.get_content())).text
    assert all(f"{n}: Et langt innlegg" in shown for n in range(1, 41))
    encoded = str(part.get_payload()).encode("ascii")
    assert len(encoded) < GMAIL_CLIP_BYTES, f"HTML part is {len(encoded)} bytes as sent"


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
    assert reader.text.splitlines()[-2] == f"Meld deg av: {READER_URL}"
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


def builtin_text_template() -> str:
    return (Path(__file__).resolve().parent.parent / "templates" / "edition.txt").read_text(
        encoding="utf-8"
    )


def test_an_admin_override_of_edition_txt_is_used_and_html_keeps_the_builtin(
    tmp_path: Path,
) -> None:
    ours = tmp_path / "my-templates"
    ours.mkdir()
    footer = "{{ labels.unsubscribe }}: {{ unsubscribe_url }}\n"
    template = builtin_text_template()
    assert footer in template
    (ours / "edition.txt").write_text(
        template.replace(footer, footer + "Spørsmål? Ring kommunikasjonsavdelingen.\n"),
        encoding="utf-8",
    )
    config = write_config(tmp_path, extra='templates = "my-templates"')
    reader = personalise(render(config, golden_plan()), unsubscribe_url=READER_URL)
    assert reader.text.rstrip().splitlines()[-3:] == [
        f"Meld deg av: {READER_URL}",
        "Spørsmål? Ring kommunikasjonsavdelingen.",
        f"Tidligere utgaver: {PUBLIC_URL}/archive",
    ]
    assert "kommunikasjonsavdelingen" not in reader.html
    parsed = ParsedHtml(reader.html)
    assert "Meld deg av med ett klikk" in [link.text for link in parsed.links]
    assert "Kronikker" in parsed.text  # the built-in edition.mjml, unchanged


def test_an_override_naming_an_unknown_value_is_reported_with_file_and_line(
    tmp_path: Path,
) -> None:
    ours = tmp_path / "my-templates"
    ours.mkdir()
    (ours / "edition.txt").write_text(
        "{{ title }}\n{% for item in chronicles %}\n{{ itme.title }}\n{% endfor %}\n",
        encoding="utf-8",
    )
    config = write_config(tmp_path, extra='templates = "my-templates"')
    with pytest.raises(RenderError) as caught:
        render(config, golden_plan())
    message = str(caught.value)
    assert f"{ours / 'edition.txt'}:3" in message
    assert "itme" in message


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
