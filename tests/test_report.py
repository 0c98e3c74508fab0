"""The ambassador plan and the open report (SPEC.md): exact counts on crafted data.

Feeds are served by the loopback HTTP server and collected by `trnews collect`; the report is
`trnews report` run as a process, with the hidden `--as-of` so that "expected by now" is
counted at a fixed moment, not today. Every expected value is computed here, from the dates,
independently of pipeline.report. The crafted year is 2025, so no date in it is ever in the
future (the collector does not trust future dates).
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

import pytest
from mjml import mjml2html
from support.mail import html_part, text_part
from support.servers import FeedServer, SmtpServer
from support.site import Site

from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.render import Renderer
from pipeline.report import (
    CSV_HEADER,
    build,
    carries,
    compact_context,
    sort_key,
)

OSLO = ZoneInfo("Europe/Oslo")
AS_OF = datetime(2025, 7, 2, 12, 0, tzinfo=OSLO)
KINDS = ("chronicles", "blog_posts", "videos", "meetings")


def share(as_of: datetime, year: int) -> float:
    """The share of `year` gone at `as_of`, in Oslo time, computed on UTC seconds."""
    start = datetime(year, 1, 1, tzinfo=OSLO).astimezone(UTC)
    end = datetime(year + 1, 1, 1, tzinfo=OSLO).astimezone(UTC)
    return (as_of.astimezone(UTC) - start) / (end - start)


def rss(*items: tuple[str, str, datetime, str], excerpt: str = "") -> bytes:
    """RSS 2.0 with these (title, link, date, author) items."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">',
        "<channel><title>Feed</title><link>https://example.org</link><description>d</description>",
    ]
    for title, link, date, author in items:
        out.append(f"<item><title>{escape(title)}</title><link>{escape(link)}</link>")
        out.append(f"<dc:creator><![CDATA[{author}]]></dc:creator>")
        out.append(f"<pubDate>{format_datetime(date)}</pubDate>")
        text = excerpt or f"Om {title}."
        out.append(f"<description><![CDATA[<p>{text}</p>]]></description></item>")
    out.append("</channel></rss>")
    return "\n".join(out).encode()


def ambassador(site: Site, id: str, name: str, extra: str = "", feeds: str = "") -> None:
    site.ambassadors.append(
        f'[[ambassador]]\nid = "{id}"\nname = "{name}"\n{extra}\nfeeds = [\n{feeds}]\n'
    )


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.fixture(scope="module")
def year_2025(
    _feed_server: FeedServer, _smtp_server: SmtpServer, tmp_path_factory: pytest.TempPathFactory
) -> Site:
    """A site with a year of crafted work by three ambassadors (one with nothing at all),
    collected once for the module; see each line for whether it counts for the report as of
    2 July 2025. Tests read it and leave it as it was."""
    feeds = _feed_server
    site = Site(root=tmp_path_factory.mktemp("year_2025"), smtp_port=_smtp_server.port)
    blog = feeds.add(
        "/report/kari.xml",
        rss(
            # 23:30 in Oslo on New Year's Eve 2024: last year.
            ("Nyttårsaften", "https://kari.example.org/nyttar", utc(2024, 12, 31, 22, 30), "Kari"),
            # 00:30 in Oslo on 1 January 2025, still 2024 in UTC: this year.
            ("Første dag", "https://kari.example.org/forste", utc(2024, 12, 31, 23, 30), "Kari"),
            ("Næringslivet i regionen", "https://kari.example.org/n", utc(2025, 3, 10), "Kari"),
            ("Sommer", "https://kari.example.org/sommer", utc(2025, 6, 30, 9), "Kari"),
            # After 2 July: in 2025, but not yet at the moment of the report.
            ("Høst", "https://kari.example.org/host", utc(2025, 9, 1), "Kari"),
            ("Fjorårets næringsliv", "https://kari.example.org/fjor", utc(2024, 5, 1), "Kari"),
        ),
    )
    paper = feeds.add(
        "/report/avis.xml",
        rss(
            ("Bygg byen tett", "https://avis.example.no/1", utc(2025, 2, 1), "Kari Nordmann"),
            (
                "Felles om arbeidsplasser",
                "https://avis.example.no/2",
                utc(2025, 5, 5),
                "Kari Nordmann og Ola Hansen",
            ),
            ("Ikke en ambassadør", "https://avis.example.no/3", utc(2025, 5, 6), "Per Person"),
            ("Olas fjorår", "https://avis.example.no/4", utc(2024, 11, 1), "Ola Hansen"),
        ),
    )
    ambassador(
        site,
        "kari-nordmann",
        "Kari Nordmann",
        "plan = { chronicles = 2, blog_posts = 12, meetings = 6 }",
        f'  {{ url = "{blog}", kind = "blog" }},\n'
        f'  {{ url = "{paper}", kind = "chronicle", author = "Kari Nordmann" }},\n',
    )
    ambassador(
        site,
        "ola-hansen",
        "Ola Hansen",
        "plan = { chronicles = 2, meetings = 3 }",
        f'  {{ url = "{paper}", kind = "chronicle", author = "Ola Hansen" }},\n',
    )
    ambassador(site, "siri-berg", "Siri Berg", "plan = { blog_posts = 5 }")
    site.meeting(
        'title = "Regionrådet"\nstart = 2025-04-01T10:00:00+02:00\n'
        'ambassadors = ["kari-nordmann", "ola-hansen"]'
    )
    site.meeting(
        'title = "Næringsforum"\nstart = 2025-08-01T10:00:00\nambassadors = ["kari-nordmann"]'
    )
    site.meeting(
        'title = "Fjorårets møte"\nstart = 2024-11-01T10:00:00\nambassadors = ["ola-hansen"]'
    )
    site.extra_toml = """
[[message]]
id = "naering"
title = "Best på næringsutvikling"
keywords = ["næringsliv*", "arbeidsplasser"]

[[message]]
id = "by"
title = "Byen"
keywords = ["by"]
"""
    site.run("collect")
    return site


def run_bytes(site: Site, *args: str, **env: str) -> bytes:
    """What `trnews ARGS` writes on standard output, as bytes: a file for a spreadsheet."""
    site.write()
    return subprocess.run(
        site.command(*args),
        cwd=site.root,
        env={**site.process_env(), **env},
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout


def report(site: Site, *args: str) -> dict[str, Any]:
    data = json.loads(site.run("report", "--format", "json", *args).stdout)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def july(year_2025: Site) -> dict[str, Any]:
    """`trnews report --format json` for 2025 as of noon on 2 July, run once for the module."""
    return report(year_2025, "--year", "2025", "--as-of", "2025-07-02T12:00:00+02:00")


def rows(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["id"]: a for a in data["ambassadors"]}


def test_counts_are_exact_for_the_year_in_the_newsletter_timezone_up_to_the_report_moment(
    july: dict[str, Any],
) -> None:
    data = july
    got = rows(data)
    # Blog: "Første dag", "Næringslivet i regionen", "Sommer"; not New Year's Eve, not
    # September's, not last year's. Chronicles: her own and the co-written one. Meetings:
    # Regionrådet; Næringsforum (1 August) has not started yet.
    assert got["kari-nordmann"]["actual"] == {
        "chronicles": 2,
        "blog_posts": 3,
        "videos": 0,
        "meetings": 1,
    }
    # The co-written chronicle counts for Ola too; his piece of last year does not.
    assert got["ola-hansen"]["actual"] == {
        "chronicles": 1,
        "blog_posts": 0,
        "videos": 0,
        "meetings": 1,
    }
    # Nothing at all, and still listed, with her plan.
    assert got["siri-berg"]["actual"] == {
        "chronicles": 0,
        "blog_posts": 0,
        "videos": 0,
        "meetings": 0,
    }
    assert got["siri-berg"]["plan"] == {
        "chronicles": 0,
        "blog_posts": 5,
        "videos": 0,
        "meetings": 0,
    }

    gone = share(AS_OF, 2025)
    assert 0.49 < gone < 0.51
    for amb_id, plan in {
        "kari-nordmann": (2, 12, 0, 6),
        "ola-hansen": (2, 0, 0, 3),
        "siri-berg": (0, 5, 0, 0),
    }.items():
        expected = {k: round(p * gone, 1) for k, p in zip(KINDS, plan, strict=True)}
        assert got[amb_id]["expected_by_now"] == expected
    assert data["totals"]["plan"] == {"chronicles": 4, "blog_posts": 17, "videos": 0, "meetings": 9}
    assert data["totals"]["actual"] == {
        "chronicles": 3,
        "blog_posts": 3,
        "videos": 0,
        "meetings": 2,
    }
    # "næringsliv*" finds "Næringslivet" (not last year's); "arbeidsplasser" the co-written
    # piece, counted once as an item; "by" is a whole word: "Bygg byen" has none.
    assert data["messages"] == [
        {"id": "naering", "title": "Best på næringsutvikling", "items": 2},
        {"id": "by", "title": "Byen", "items": 0},
    ]


def test_the_json_report_has_the_documented_shape(july: dict[str, Any]) -> None:
    data = july
    assert {"year", "as_of", "counting_since", "ambassadors", "totals", "messages"} <= set(data)
    assert data["year"] == 2025
    assert datetime.fromisoformat(data["as_of"]) == AS_OF
    since = datetime.fromisoformat(data["counting_since"])
    assert abs((datetime.now(UTC) - since).total_seconds()) < 600  # the collect just run
    for row in data["ambassadors"]:
        assert set(row) == {"id", "name", "plan", "actual", "expected_by_now"}
        for part in ("plan", "actual", "expected_by_now"):
            assert set(row[part]) == set(KINDS)
    assert set(data["totals"]) >= {"plan", "actual"}
    for part in ("plan", "actual"):
        assert set(data["totals"][part]) == set(KINDS)
    for message in data["messages"]:
        assert set(message) == {"id", "title", "items"}


def test_a_past_year_expects_the_whole_plan_and_a_year_not_begun_expects_nothing(
    year_2025: Site,
) -> None:
    config = load_config(year_2025.config)
    last = build(config, year=2024, as_of=AS_OF)
    assert last.share == 1
    kari = next(r for r in last.ambassadors if r.id == "kari-nordmann")
    assert kari.expected_by_now == {
        "chronicles": 2.0,
        "blog_posts": 12.0,
        "videos": 0.0,
        "meetings": 6.0,
    }
    # New Year's Eve 23:30 in Oslo and "Fjorårets næringsliv"; the Oslo-1-January one is 2025.
    assert kari.actual == {"chronicles": 0, "blog_posts": 2, "videos": 0, "meetings": 0}
    ola = next(r for r in last.ambassadors if r.id == "ola-hansen")
    assert ola.actual == {"chronicles": 1, "blog_posts": 0, "videos": 0, "meetings": 1}
    assert [m.items for m in last.messages] == [1, 0]

    ahead = build(config, year=2026, as_of=AS_OF)
    assert ahead.share == 0
    assert all(r.expected_by_now == dict.fromkeys(KINDS, 0.0) for r in ahead.ambassadors)
    assert all(r.actual == dict.fromkeys(KINDS, 0) for r in ahead.ambassadors)


def test_ambassadors_are_ordered_by_name_with_ae_oe_aa_last_in_bokmal(site: Site) -> None:
    for n, name in enumerate(["Åse Ås", "Øystein Ør", "Zara Zet", "Ærle Æ", "Anne A", "Ola O"]):
        ambassador(site, f"a{n}", name)
    data = report(site)
    assert [a["name"] for a in data["ambassadors"]] == [
        "Anne A",
        "Ola O",
        "Zara Zet",
        "Ærle Æ",
        "Øystein Ør",
        "Åse Ås",
    ]
    # Nothing collected yet: everyone at zero, and no date counting began; no database made.
    assert all(a["actual"] == dict.fromkeys(KINDS, 0) for a in data["ambassadors"])
    assert data["counting_since"] is None
    assert not site.db.exists()


def test_the_totals_add_up_the_rows_as_printed(site: Site) -> None:
    # Three plans of one post each, on 8 April: each row expects 0.267, printed 0,3; the sum
    # of the plans, 0.80, would print a total of 0,8 under rows that add up to 0,9.
    for n, name in enumerate(["Anne A", "Berit B", "Cecilie C"]):
        ambassador(site, f"a{n}", name, extra="plan = { blog_posts = 1 }")
    as_of = datetime(2025, 4, 8, 12, 0, tzinfo=OSLO)
    assert round(3 * share(as_of, 2025), 1) != 3 * round(share(as_of, 2025), 1)  # the case
    moment = ("--year", "2025", "--as-of", as_of.isoformat())
    data = report(site, *moment)
    for kind in KINDS:
        rows_sum = sum(a["expected_by_now"][kind] for a in data["ambassadors"])
        assert data["totals"]["expected_by_now"][kind] == round(rows_sum, 1)
    assert data["totals"]["expected_by_now"]["blog_posts"] == 0.9
    # The text report prints a total its own column adds up to, and a gap to match.
    text = site.run("report", *moment).stdout
    blog = text.split("Blogginnlegg", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"^Sum\s+0\s+0,9\s+3\s+−0,9$", blog, re.MULTILINE), blog


def test_bokmal_sorts_aa_as_the_last_letter_and_english_folds_the_letters_in() -> None:
    names = ["Aasen", "Berg", "Åsen", "Ødegård", "Zahl", "Ähnlich", "Élise"]
    assert sorted(names, key=lambda n: sort_key(n, "nb")) == [
        "Berg",
        "Élise",
        "Zahl",
        "Ähnlich",
        "Ødegård",
        "Aasen",
        "Åsen",
    ]
    assert sorted(names, key=lambda n: sort_key(n, "en")) == [
        "Aasen",
        "Ähnlich",
        "Åsen",
        "Berg",
        "Élise",
        "Ødegård",
        "Zahl",
    ]


def test_the_csv_report_has_its_header_and_one_row_per_ambassador(year_2025: Site) -> None:
    out = year_2025.root / "rapport" / "plan.csv"
    proc = year_2025.run(
        "report", "--year", "2025", "--as-of", "2025-07-02", "--format", "csv", "--out", str(out)
    )
    assert str(out) in proc.stdout
    table = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert table[0] == CSV_HEADER
    assert table[0][:6] == [
        "year",
        "id",
        "name",
        "chronicles_plan",
        "chronicles_actual",
        "chronicles_expected_by_now",
    ]
    assert [r[2] for r in table[1:]] == ["Kari Nordmann", "Ola Hansen", "Siri Berg"]
    kari = dict(zip(table[0], table[1], strict=True))
    # A bare date is midnight in the newsletter's time zone.
    gone = share(datetime(2025, 7, 2, tzinfo=OSLO), 2025)
    assert kari["blog_posts_plan"] == "12"
    assert kari["blog_posts_actual"] == "3"
    assert float(kari["blog_posts_expected_by_now"]) == round(12 * gone, 1)


def test_the_csv_report_for_excel_has_semicolons_a_bom_and_decimal_commas(
    year_2025: Site,
) -> None:
    args = ("report", "--year", "2025", "--as-of", "2025-07-02", "--format", "csv")
    plain = year_2025.run(*args).stdout
    out = year_2025.root / "rapport" / "excel.csv"
    year_2025.run(*args, "--excel", "--out", str(out))
    data = out.read_bytes()

    # Plain CSV stays for other programs: a point in numbers.
    siri = dict(zip(CSV_HEADER, list(csv.reader(io.StringIO(plain)))[3], strict=True))
    assert siri["name"] == "Siri Berg" and siri["blog_posts_expected_by_now"] == "2.5"
    # For Excel in Norway: UTF-8 with a BOM, ';', CRLF, and "2,5" which it reads as a number.
    assert data.startswith(b"\xef\xbb\xbfyear;id;name;chronicles_plan;")
    assert data.count(b"\n") == data.count(b"\r\n") == 4
    table = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=";"))
    siri = dict(zip(CSV_HEADER, table[3], strict=True))
    assert siri["blog_posts_plan"] == "5"
    assert siri["blog_posts_expected_by_now"] == "2,5"
    assert b"2.5" not in data
    # Standard output gives the same bytes, whatever the terminal's encoding.
    assert run_bytes(year_2025, *args, "--excel", PYTHONIOENCODING="ascii") == data


@pytest.mark.parametrize(("language", "number"), [("nb", "3,7"), ("nn", "3,7"), ("en", "3.7")])
def test_the_excel_report_writes_numbers_in_the_newsletter_language(
    site: Site, language: str, number: str
) -> None:
    site.language = language
    ambassador(site, "kari", "Kari Nordmann", "plan = { blog_posts = 12 }")

    data = run_bytes(
        site,
        "report",
        "--year",
        "2025",
        "--as-of",
        "2025-04-23T12:00",
        "--format",
        "csv",
        "--excel",
    )

    table = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=";"))
    kari = dict(zip(table[0], table[1], strict=True))
    assert kari["blog_posts_expected_by_now"] == number  # 12 × 112.46 / 365 days
    assert kari["blog_posts_plan"] == "12" and kari["year"] == "2025"


@pytest.mark.parametrize("fmt", ["text", "json", "html"])
def test_excel_goes_with_the_csv_report_only(year_2025: Site, fmt: str) -> None:
    proc = year_2025.run("report", "--format", fmt, "--excel", check=False)

    assert proc.returncode == 2
    assert f"--excel goes with --format csv, not {fmt}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_a_name_a_spreadsheet_would_run_is_text_in_the_csv_report(site: Site) -> None:
    for n, name in enumerate(["=1+2", "-Kari", "@Ola", "+Siri", "Åse Ås"]):
        ambassador(site, f"a{n}", name)

    out = site.run("report", "--format", "csv").stdout

    table = list(csv.reader(io.StringIO(out)))
    assert sorted(r[2] for r in table[1:]) == ["'+Siri", "'-Kari", "'=1+2", "'@Ola", "Åse Ås"]
    # Numbers stay numbers.
    assert all(float(v) >= 0 for r in table[1:] for v in r[3:])


def test_the_html_report_has_a_chart_without_script_that_draws_behind_and_ahead_alike(
    year_2025: Site,
) -> None:
    out = year_2025.root / "rapport.html"
    year_2025.run(
        "report", "--year", "2025", "--as-of", "2025-07-02T12:00:00+02:00", "--format", "html",
        "--out", str(out),
    )  # fmt: skip
    page = out.read_text(encoding="utf-8")
    assert page.count("<svg") == len(KINDS)  # one chart per kind
    assert "<script" not in page.lower()
    assert not re.search(r"\son\w+\s*=", page, re.IGNORECASE)
    assert "@media print" in page
    assert '<html lang="nb">' in page
    assert "bak planen" in page and "foran planen" in page
    # Kari is ahead on chronicles (2 against 1,0 expected) and behind on blog posts (3 against
    # 6,0): the two bars differ only in their side of the line, not in colour or thickness.
    assert "+1,0" in page and "−3,0" in page
    bars = re.findall(
        r'<rect class="(\w+)" x="([\d.]+)" y="[\d.]+" width="([\d.]+)" height="(\d+)"', page
    )
    assert len(bars) == 3 * len(KINDS)  # three ambassadors in each chart
    assert {(cls, height) for cls, _, _, height in bars} == {("bar", "14")}
    centre = re.search(r'<line class="line" x1="(\d+)"', page)
    assert centre is not None
    line = float(centre[1])
    lengths = [(float(x), float(w)) for _, x, w, _ in bars if float(w) > 0]
    ahead = [w for x, w in lengths if x == line]
    behind = [w for x, w in lengths if x + w == pytest.approx(line)]
    assert ahead and behind and len(ahead) + len(behind) == len(lengths)


def test_the_text_report_lists_everyone_with_signed_gaps_in_english(
    year_2025: Site,
) -> None:
    nb = year_2025.config.read_text(encoding="utf-8")
    year_2025.config.write_text(nb.replace('language = "nb"', 'language = "en"'), encoding="utf-8")
    try:
        out = year_2025.run("report", "--year", "2025", "--as-of", "2025-07-02T12:00").stdout
    finally:
        year_2025.config.write_text(nb, encoding="utf-8")
    assert out.startswith("The ambassador plan 2025: open report\n")
    assert "As of July 2, 2025" in out
    blog = out.split("Blog posts", 1)[1].split("\n\n", 1)[0]
    gone = share(AS_OF, 2025)
    assert re.search(rf"Siri Berg\s+0\s+{round(5 * gone, 1)}\s+5\s+−{round(5 * gone, 1)}", blog)
    assert re.search(r"Ola Hansen\s+0\s+0\.0\s+0\s+±0\.0", blog)
    assert "Best på næringsutvikling" in out


def test_the_compact_table_for_the_edition_renders_as_mjml_and_text(year_2025: Site) -> None:
    config = load_config(year_2025.config)
    view = compact_context(build(config, year=2025, as_of=AS_OF))
    renderer = Renderer(config)  # the edition's own templates environment
    ctx = {"report": view, "colours": renderer.colours}
    mjml = renderer.env.get_template("report_compact.mjml").render(ctx)
    html = mjml2html(f"<mjml><mj-body>{mjml}</mj-body></mjml>")
    assert "Ambassadørplanen 2025" in html
    assert "Kari Nordmann" in html and "Siri Berg" in html
    assert "2 av 2" in html  # Kari's chronicles: 2 of a plan of 2
    text = renderer.env.get_template("report_compact.txt").render(ctx)
    lines = text.replace("\u00a0", " ").splitlines()
    assert lines[0] == "Ambassadørplanen 2025"
    assert max(len(line) for line in lines) <= 72
    kari = lines.index("Kari Nordmann")
    assert lines[kari + 1].startswith("  Kronikker 2 av 2 (+1,0); Blogginnlegg 3 av 12 (−3,0);")
    assert "Sum" in lines


@pytest.mark.parametrize(
    ("keywords", "title", "carried"),
    [
        (["næringsliv"], "Næringsliv i Trøndelag", True),
        (["næringsliv"], "Næringslivet vokser", False),  # a whole word unless it ends in *
        (["næringsliv*"], "Næringslivet vokser", True),
        (["by"], "Bygg byen tett", False),
        (["by"], "En by i vekst", True),
        (["grønn omstilling"], "Grønn\n omstilling nå", True),
        (["NTNU"], "ntnu og sintef", True),
    ],
)
def test_a_keyword_matches_a_whole_word_or_phrase_in_any_case(
    keywords: list[str], title: str, carried: bool, tmp_path: Path
) -> None:
    from pipeline.config import MessageConfig

    message = MessageConfig(id="m", title="M", keywords=keywords)
    assert carries(message, title, "") is carried
    assert carries(message, "", title) is carried  # the excerpt counts as much as the title


def test_plan_calendar_and_message_mistakes_are_named_by_their_keys(tmp_path: Path) -> None:
    path = tmp_path / "trnews.toml"
    path.write_text(
        """\
[newsletter]
title = "T"
sender = "T <t@example.org>"
public_url = "https://nyhetsbrev.example.org"

[[ambassador]]
id = "kari"
name = "Kari"
email = "kari@example.org"
plan = { chronicles = -1, meeting = 3 }

[[ambassador]]
id = "ola"
name = "Ola"
email = "KARI@example.org"

[calendar]
urls = ["ftp://kalender.example.org/a.ics"]

[[message]]
id = "naering"
title = "Næring"
keywords = [" "]

[[message]]
id = "naering"
title = "Igjen"
keywords = []

[report]
in_newsletter = 3
""",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = {p.key: p.message for p in caught.value.problems}
    assert "greater than or equal to 0" in problems["ambassador[0].plan.chronicles"]
    assert "did you mean 'meetings'" in problems["ambassador[0].plan.meeting"]
    assert "already the e-mail of ambassador[0]" in problems["ambassador[1].email"]
    assert "only http(s) URLs and local file paths" in problems["calendar.urls[0]"]
    assert "is empty" in problems["message[0].keywords[0]"]
    assert "at least 1 item" in problems["message[1].keywords"]
    assert "already used by message[0]" in problems["message[1].id"]
    assert "report.in_newsletter" in problems


def test_the_report_help_shows_examples(site: Site) -> None:
    out = site.run("report", "--help").stdout
    assert "trnews report --format html --out" in out
    assert "--as-of" not in out  # a hidden option for tests


@pytest.mark.parametrize("shown", [True, False])
def test_with_in_newsletter_each_edition_closes_with_the_plan_table(
    feeds: FeedServer, site: Site, shown: bool
) -> None:
    yesterday = datetime.now(UTC) - timedelta(days=1)
    url = feeds.add(
        "/kronikker.xml",
        rss(("Regionen trenger boliger", "https://avis.example.no/k/1", yesterday, "Kari")),
    )
    site.ambassadors.append(
        '[[ambassador]]\nid = "kari-nordmann"\nname = "Kari Nordmann"\n'
        "plan = { chronicles = 4, blog_posts = 0, meetings = 0 }\n"
        f'feeds = [{{ url = "{url}", kind = "chronicle" }}]\n'
    )
    site.extra_toml = f"[report]\nin_newsletter = {str(shown).lower()}"
    site.run("subscribers", "add", "leser@example.org")
    site.run("collect")
    site.run("send")
    [message] = site.messages()
    year = datetime.now(ZoneInfo("Europe/Oslo")).year
    heading = f"Ambassadørplanen {year}"
    text, html = text_part(message), html_part(message)
    if not shown:
        assert heading not in text and heading not in html
        return
    assert heading in html
    lines = text.replace("\u00a0", " ").splitlines()
    table = lines.index(heading)
    assert table > lines.index("Regionen trenger boliger"), "the table closes the edition"
    kari = lines.index("Kari Nordmann", table)
    assert lines[kari + 1].startswith("  Kronikker 1 av 4 ")


def _with_templates(site: Site, folder: str) -> None:
    """Write the site's config with newsletter.templates set to `folder`."""
    site.write()
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(
        text.replace("[newsletter]\n", f'[newsletter]\ntemplates = "{folder}"\n', 1),
        encoding="utf-8",
    )


def test_an_override_of_the_report_page_can_wrap_the_built_in_one(site: Site) -> None:
    """`builtin/report.html` names the built-in page, as it does for the edition's templates."""
    ambassador(site, "kari", "Kari Nordmann")
    custom = site.root / "custom"
    custom.mkdir()
    (custom / "report.html").write_text(
        '<!-- our own frame -->\n{% include "builtin/report.html" %}', encoding="utf-8"
    )
    _with_templates(site, "custom")
    page = site.run("report", "--format", "html").stdout
    assert page.startswith("<!-- our own frame -->")
    assert "Ambassadørplanen" in page and "Kari Nordmann" in page


def test_a_missing_templates_folder_is_named_rather_than_ignored_by_the_report(
    site: Site,
) -> None:
    """The edition refuses a newsletter.templates folder that is not there; the report page
    must not quietly fall back to the built-in look instead."""
    ambassador(site, "kari", "Kari Nordmann")
    _with_templates(site, "no-such-folder")
    out = site.run("report", "--format", "html", check=False)
    assert out.returncode != 0
    assert "newsletter.templates" in out.stderr
    assert str(site.root / "no-such-folder") in out.stderr
    assert "Traceback" not in out.stderr
