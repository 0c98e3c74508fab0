"""The region's indicators in the open report and in editions (SPEC.md "The region's
indicators"): exact numbers, the words for a worse and a better figure and their equal weight,
the config's order, the chart, /report on a real `trnews serve` and on a phone, and the
edition's closing lines.

The values are put in the site's real database with `Store.save_series` and
`Store.indicator_failed`, exactly as `trnews collect` stores what it fetched; the report is
`trnews report` run as a process. Every expected number is worked out here by hand.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from support.mail import html_part, text_part
from support.site import Site
from support.web import WebServer

from pipeline.models import Observation
from pipeline.store import Store

# Unemployment first: a worse figure, and the config's order must keep it first.
INDICATORS = """
[[indicator]]
id = "ledighet"
title = "Registrert ledighet"
unit = "%"
better = "lower"
decimals = 1
target = 2.0
target_year = 2030
source = "https://data.ssb.no/api/pxwebapi/v2-beta/tables/10540/data?lang=no"

[[indicator]]
id = "sysselsatte"
title = "Sysselsatte med arbeidssted i regionen"
unit = "personer"
better = "higher"
target = 160000
target_year = 2030
source = "https://data.ssb.no/api/pxwebapi/v2-beta/tables/13470/data?lang=no"

[[indicator]]
id = "nyetablerte"
title = "Nyetablerte foretak"
unit = "foretak"
better = "higher"
source = "https://data.ssb.no/api/pxwebapi/v2-beta/tables/09028/data?lang=no"

[[indicator]]
id = "pendling"
title = "Innpendlere"
unit = "personer"
better = "higher"
source = "https://data.ssb.no/api/pxwebapi/v2-beta/tables/11616/data?lang=no"
"""
ORDER = ["ledighet", "sysselsatte", "nyetablerte", "pendling"]
FIRST = datetime(2025, 3, 1, 6, 0, tzinfo=UTC)
SECOND = datetime(2025, 6, 1, 6, 0, tzinfo=UTC)
ERROR = "HTTP 503 from data.ssb.no: the API is closed for maintenance"


def o(period: str, value: float | None) -> Observation:
    return Observation(period, value)


def fill(site: Site) -> None:
    """The indicators' values as two collects would leave them."""
    site.extra_toml = INDICATORS
    site.write()
    store = Store.open(site.db)
    try:
        # Quarters, stored out of order: 2024K1 against 2023K4, up 0.2 points: worse.
        store.save_series(
            "ledighet",
            "ssb",
            [o("2024K1", 2.3), o("2023K2", 2.2), o("2023K4", 2.1), o("2023K3", 2.0)],
            now=FIRST,
        )
        # Years, 2022 suppressed; 2023 published as 153 500, then revised to 154 000.
        store.save_series(
            "sysselsatte",
            "ssb",
            [o("2020", 150000), o("2021", 151000), o("2022", None), o("2023", 153500)],
            now=FIRST,
        )
        store.save_series("sysselsatte", "ssb", [o("2023", 154000), o("2024", 156500)], now=SECOND)
        # 2023K4 not published: 2024K1 is compared with it (no value), never with 2023K3.
        store.save_series(
            "nyetablerte", "ssb", [o("2023K2", 400), o("2023K3", 420), o("2024K1", 450)], now=FIRST
        )
        # Worked once, then the source failed: the last good series stands, with the error.
        store.save_series("pendling", "ssb", [o("2022", 40000), o("2023", 41000)], now=FIRST)
        store.indicator_failed("pendling", "ssb", ERROR, now=SECOND)
    finally:
        store.close()


@pytest.fixture
def filled(site: Site) -> Site:
    fill(site)
    return site


def report_json(site: Site) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(site.run("report", "--format", "json").stdout)
    return {i["id"]: i for i in data["indicators"]} | {"_order": data["indicators"]}


def plain(text: str) -> str:
    """Text with its no-break spaces as spaces (numbers are grouped with them)."""
    return text.replace("\u00a0", " ")


# -- JSON: the numbers -------------------------------------------------------------------------


def test_the_json_report_gives_exact_numbers_for_a_worse_and_a_better_indicator(
    filled: Site,
) -> None:
    found = report_json(filled)

    assert [i["id"] for i in found["_order"]] == ORDER
    assert list(found["ledighet"]) == [
        "id", "title", "unit", "better", "latest", "previous", "change", "change_pct",
        "direction", "target", "target_year", "on_track", "series", "error",
    ]  # fmt: skip
    # 2.3 − 2.1 = 0.2 points; 0.2 / 2.1 = 9.5%; up is worse for unemployment. The trend,
    # +0.1 over 0.75 years, continued to the end of 2030 lands near 3.2: not on track for 2.0.
    assert found["ledighet"] | {"series": None} == {
        "id": "ledighet",
        "title": "Registrert ledighet",
        "unit": "%",
        "better": "lower",
        "latest": {"period": "2024K1", "value": 2.3},
        "previous": {"period": "2023K4", "value": 2.1},
        "change": 0.2,
        "change_pct": 9.5,
        "direction": "worse",
        "target": 2.0,
        "target_year": 2030,
        "on_track": False,
        "series": None,
        "error": None,
    }
    assert [s["period"] for s in found["ledighet"]["series"]] == [
        "2023K2", "2023K3", "2023K4", "2024K1"
    ]  # fmt: skip
    # 156 500 − 154 000 = 2 500; 2 500 / 154 000 = 1.6%. 6 500 over four years is 1 625 a
    # year; six more years to the end of 2030 give 166 250 ≥ 160 000: on track.
    jobs = found["sysselsatte"]
    assert jobs["latest"] == {"period": "2024", "value": 156500}
    assert jobs["previous"] == {"period": "2023", "value": 154000}
    assert (jobs["change"], jobs["change_pct"], jobs["direction"]) == (2500, 1.6, "better")
    assert (jobs["target"], jobs["target_year"], jobs["on_track"]) == (160000, 2030, True)


def test_a_missing_value_is_null_never_0_and_a_revised_one_keeps_what_it_was(
    filled: Site,
) -> None:
    jobs = report_json(filled)["sysselsatte"]

    assert jobs["series"] == [
        {"period": "2020", "value": 150000, "revised_from": None},
        {"period": "2021", "value": 151000, "revised_from": None},
        {"period": "2022", "value": None, "revised_from": None},
        {"period": "2023", "value": 154000, "revised_from": 153500},
        {"period": "2024", "value": 156500, "revised_from": None},
    ]


def test_a_quarter_is_compared_with_the_quarter_before_not_the_one_listed_before(
    filled: Site,
) -> None:
    firms = report_json(filled)["nyetablerte"]

    assert firms["latest"] == {"period": "2024K1", "value": 450}
    assert firms["previous"] == {"period": "2023K4", "value": None}
    assert firms["change"] is None and firms["change_pct"] is None and firms["direction"] is None
    assert firms["target"] is None and firms["on_track"] is None


def test_a_failing_source_names_its_error_beside_its_last_good_series(filled: Site) -> None:
    commuters = report_json(filled)["pendling"]

    assert commuters["error"] == ERROR
    assert commuters["latest"] == {"period": "2023", "value": 41000}
    assert (commuters["change"], commuters["change_pct"]) == (1000, 2.5)
    assert [s["value"] for s in commuters["series"]] == [40000, 41000]


# -- text and CSV --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "worse", "better", "failed"),
    [
        (
            "nb",
            "0,2 prosentpoeng høyere enn i 4. kvartal 2023 (+9,5%): svakere enn kvartalet før",
            "2 500 personer høyere enn i 2023 (+1,6%): bedre enn året før",
            f"Siste henting feilet: {ERROR}; viser siste gode tall",
        ),
        (
            "nn",
            "0,2 prosentpoeng høgare enn i 4. kvartal 2023 (+9,5%): svakare enn kvartalet før",
            "2 500 personer høgare enn i 2023 (+1,6%): betre enn året før",
            f"Siste henting feila: {ERROR}; viser siste gode tal",
        ),
        (
            "en",
            "0.2 percentage points higher than in 2023 Q4 (+9.5%): worse than the quarter before",
            "2,500 personer higher than in 2023 (+1.6%): better than the year before",
            f"The last fetch failed: {ERROR}; showing the last good figures",
        ),
    ],
)
def test_the_text_report_says_worse_as_plainly_as_better(
    site: Site, language: str, worse: str, better: str, failed: str
) -> None:
    site.language = language
    fill(site)

    text = plain(site.run("report", "--format", "text").stdout)

    lines = [line.strip() for line in text.splitlines()]
    assert worse in lines and better in lines and failed in lines
    # In config order: unemployment (bad news) before jobs (good news).
    assert text.index("Registrert ledighet") < text.index("Sysselsatte med arbeidssted")
    assert text.index("Sysselsatte med arbeidssted") < text.index("Nyetablerte foretak")


def test_the_text_report_gives_values_in_words_with_target_and_revision(filled: Site) -> None:
    lines = [line.strip() for line in plain(filled.run("report").stdout).splitlines()]

    assert "2,3% (1. kvartal 2024)" in lines
    assert "Mål for 2030: 2,0%: ikke i rute mot målet for 2030" in lines
    assert "156 500 personer (2024)" in lines
    assert "Mål for 2030: 160 000 personer: i rute mot målet for 2030" in lines
    assert "2023: 154 000 personer, revidert fra 153 500 personer" in lines
    assert "Ingen verdi for 4. kvartal 2023 å sammenligne med." in lines
    series = next(line for line in lines if line.startswith("Serie: 2020"))
    assert "2022: mangler" in series and " 0 personer" not in series


def test_the_csv_report_has_the_indicators_as_tables_a_spreadsheet_reads(filled: Site) -> None:
    out = filled.run("report", "--format", "csv").stdout
    rows = list(csv.reader(io.StringIO(out)))

    start = rows.index(["indicator", "title", "unit", "better", "latest_period", "latest_value",
                        "previous_period", "previous_value", "change", "change_pct", "direction",
                        "target", "target_year", "on_track", "error"])  # fmt: skip
    assert rows[start - 1] == []
    table = [dict(zip(rows[start], r, strict=True)) for r in rows[start + 1 : start + 5]]
    assert [r["indicator"] for r in table] == ORDER
    assert table[0]["direction"] == "worse" and float(table[0]["change"]) == 0.2
    assert table[1]["on_track"] == "true" and float(table[1]["change_pct"]) == 1.6
    assert table[2]["previous_value"] == "" and table[2]["change"] == ""
    assert table[3]["error"] == ERROR

    head = rows.index(["indicator", "period", "value", "revised_from"])
    series = [r for r in rows[head + 1 :] if r and r[0] == "sysselsatte"]
    assert ["sysselsatte", "2022", "", ""] in series  # missing: empty, never 0
    assert ["sysselsatte", "2023", "154000.0", "153500.0"] in series


def test_the_excel_csv_writes_indicator_values_with_decimal_commas(filled: Site) -> None:
    out = filled.root / "rapport.csv"
    filled.run("report", "--format", "csv", "--excel", "--out", str(out))
    text = out.read_bytes().decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))

    assert ["ledighet", "2024K1", "2,3", ""] in rows
    assert ["sysselsatte", "2023", "154000", "153500"] in rows


# -- HTML ------------------------------------------------------------------------------------------


def html_report(site: Site) -> str:
    return plain(site.run("report", "--format", "html").stdout)


def article(html: str, id: str) -> str:
    found = re.search(rf'<article class="indicator" id="indicator-{id}">.*?</article>', html, re.S)
    assert found, id
    return found.group(0)


def element(html: str, cls: str) -> str:
    found = re.search(rf'<p class="{cls}">.*?</p>', html, re.S)
    assert found, cls
    return found.group(0)


def words(html: str) -> str:
    """The text of some markup, as a reader sees it."""
    return re.sub(r"<[^>]+>", "", html)


def skeleton(html: str) -> str:
    """The markup without its words: what decides size, weight and colour."""
    return re.sub(r">[^<]*<", "><", html)


def test_the_html_report_says_worse_and_better_in_words_of_the_same_markup(filled: Site) -> None:
    html = html_report(filled)
    worse, better = article(html, "ledighet"), article(html, "sysselsatte")

    assert "svakere enn kvartalet før" in worse and "bedre enn året før" in better
    assert "2,3% (1. kvartal 2024)" in words(worse)
    assert "156 500 personer" in better and "+1,6%" in better
    assert "ikke i rute mot målet for 2030" in worse and "i rute mot målet for 2030" in better
    # The same elements, classes and styles around the words, good news or bad.
    for cls in ("change", "latest", "target"):
        assert skeleton(element(worse, cls)) == skeleton(element(better, cls)), cls
    section = html[html.index('<article class="indicator"') :]
    assert "style=" not in section
    assert not re.search(r"<(strong|b|em)\b", section)
    assert not re.search(r"\b(red|green)\b|#(f00|0f0|c00|080)\b", html, re.I)


def test_the_html_report_names_a_revision_and_a_failing_source(filled: Site) -> None:
    html = html_report(filled)

    assert "2023: 154 000 personer, revidert fra 153 500 personer" in article(html, "sysselsatte")
    failing = article(html, "pendling")
    assert f"Siste henting feilet: {ERROR}; viser siste gode tall" in failing
    assert "41 000 personer" in failing


def test_the_html_report_keeps_the_config_order_when_the_first_is_bad_news(filled: Site) -> None:
    html = html_report(filled)

    assert re.findall(r'id="indicator-([a-z]+)"', html) == ORDER


def test_each_indicator_has_a_chart_with_its_target_and_gaps_for_missing_values(
    filled: Site,
) -> None:
    html = html_report(filled)
    assert "<script" not in html

    for id in ORDER:
        assert article(html, id).count("<svg") == 1, id
    # A target line exactly where there is a target.
    targets = {id: 'class="target"' in article(html, id).split("<svg")[1] for id in ORDER}
    assert targets == {"ledighet": True, "sysselsatte": True, "nyetablerte": False,
                       "pendling": False}  # fmt: skip
    jobs = article(html, "sysselsatte").split("<svg")[1]
    # 2020–2021 and 2023–2024: the suppressed 2022 breaks the line, and has no point.
    assert jobs.count("<polyline") == 2
    assert jobs.count("<circle") == 4
    assert "2022: mangler" in jobs  # the chart's title says the series in words
    assert 'aria-labelledby="chart-sysselsatte"' in jobs
    # Labels in text for the first and last values and periods, readable printed.
    labels = re.findall(r"<text[^>]*>([^<]*)</text>", jobs)
    assert "150 000 personer" in labels and "156 500 personer" in labels
    assert "2020" in labels and "2024" in labels
    # The quarters of nyetablerte: 2023K4 is missing, so 2024K1 stands alone.
    firms = article(html, "nyetablerte").split("<svg")[1]
    assert firms.count("<polyline") == 1 and firms.count("<circle") == 3


# -- /report on the web side ---------------------------------------------------------------------


def test_the_web_report_shows_the_indicators_and_follows_a_new_collect(filled: Site) -> None:
    server = WebServer.start(filled)
    try:
        page = plain(httpx.get(server.url("/report"), timeout=30).text)
        assert re.findall(r'id="indicator-([a-z]+)"', page) == ORDER
        assert "svakere enn kvartalet før" in page and "bedre enn året før" in page

        store = Store.open(filled.db)
        try:
            store.save_series(
                "ledighet", "ssb", [o("2024K2", 2.1)], now=datetime(2025, 9, 1, tzinfo=UTC)
            )
        finally:
            store.close()
        # Built again once the database has changed (the server looks every 0.1 s), long
        # before report_cache_minutes is up.
        deadline = time.monotonic() + 10
        while "(2. kvartal 2024)" not in page and time.monotonic() < deadline:
            time.sleep(0.05)
            page = plain(httpx.get(server.url("/report"), timeout=30).text)
        assert "2,1% (2. kvartal 2024)" in words(article(page, "ledighet"))
        assert "bedre enn kvartalet før" in article(page, "ledighet")
    finally:
        server.stop()


def test_the_web_report_with_indicators_fits_a_phone_without_csp_violations(
    filled: Site, chromium: Any
) -> None:
    server = WebServer.start(filled)
    try:
        page = chromium.new_page(viewport={"width": 375, "height": 800})
        problems: list[str] = []
        page.on(
            "console",
            lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
        )
        answer = page.goto(server.url("/report"))
        assert answer is not None and answer.status == 200
        assert page.locator("article.indicator svg").count() == len(ORDER)

        assert page.evaluate("() => document.scrollingElement.scrollWidth") <= 375
        assert problems == []
        page.close()
    finally:
        server.stop()


# -- editions ------------------------------------------------------------------------------------


def test_an_edition_closes_with_one_line_per_indicator_in_html_and_text(site: Site) -> None:
    site.send_when_empty = True
    fill(site)
    site.extra_toml = INDICATORS + "\n[report]\nin_newsletter = true\n"
    site.write()
    site.run("subscribers", "add", "anne@example.org", "--name", "Anne Leser")

    site.run("send")

    [message] = [m for m in site.messages() if m["List-Id"]]
    text = plain(" ".join(text_part(message).split()))
    html = plain(html_part(message))
    worse = (
        "Registrert ledighet: 2,3% (1. kvartal 2024), 0,2 prosentpoeng høyere enn i 4. kvartal "
        "2023 (+9,5%): svakere enn kvartalet før; ikke i rute mot målet for 2030"
    )
    better = (
        "Sysselsatte med arbeidssted i regionen: 156 500 personer (2024), 2 500 personer "
        "høyere enn i 2023 (+1,6%): bedre enn året før; i rute mot målet for 2030"
    )
    assert worse in text and better in text
    assert "Innpendlere: 41 000 personer (2023)" in text
    lines = re.findall(r'<p class="trn-indicator" style="([^"]*)">([^<]*)</p>', html)
    assert [line.split(":")[0] for _, line in lines] == [
        "Registrert ledighet",
        "Sysselsatte med arbeidssted i regionen",
        "Nyetablerte foretak",
        "Innpendlere",
    ]
    assert lines[0][1].startswith(worse) and lines[1][1].startswith(better)
    assert len({style for style, _ in lines}) == 1  # one look for good news and bad
