"""The region's indicators, data side: JSON-stat 2.0 and CSV sources fetched by `trnews collect`
(run as a process) from a loopback server, stored, and read back through
pipeline.indicators.views on the site's own database; failures in `status` and alerts.

The datasets have the shape of SSB's PxWebApi 2.0 answers with `outputFormat=json-stat2`:
`role` naming `Tid` (time), `ContentsCode` (metric) and `Region` (geo), the unit and decimals
in `ContentsCode`'s `category.unit`, `extension.px`, and status ".." with a null value for a
suppressed cell.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from support.mail import ADMIN, to_admins
from support.servers import FeedServer
from support.site import Site

from pipeline.config import load_config
from pipeline.indicators import views
from pipeline.models import IndicatorView
from pipeline.store import Store
from pipeline.store.db import iso

JSON = "application/json; charset=utf-8"


def ssb(
    dims: list[tuple[str, list[str]]],
    value: Any,
    *,
    unit: str = "personer",
    decimals: int = 0,
    status: Any = None,
    index_as_list: bool = False,
) -> bytes:
    """A dataset as SSB's PxWebApi 2.0 returns it (json-stat2)."""
    dimension = {}
    for name, codes in dims:
        index: Any = codes if index_as_list else {c: i for i, c in enumerate(codes)}
        category: dict[str, Any] = {"index": index, "label": {c: f"{name} {c}" for c in codes}}
        if name == "ContentsCode":
            category["unit"] = {c: {"base": unit, "decimals": decimals} for c in codes}
        dimension[name] = {"label": name.lower(), "category": category}
    doc: dict[str, Any] = {
        "version": "2.0",
        "class": "dataset",
        "label": "13470: Sysselsatte",
        "source": "Statistisk sentralbyrå",
        "updated": "2025-03-01T07:00:00Z",
        "role": {"time": ["Tid"], "metric": ["ContentsCode"], "geo": ["Region"]},
        "id": [n for n, _ in dims],
        "size": [len(c) for _, c in dims],
        "dimension": dimension,
        "extension": {"px": {"tableid": "13470", "decimals": decimals}},
        "value": value,
    }
    if status is not None:
        doc["status"] = status
    return json.dumps(doc, ensure_ascii=False).encode()


def indicator(id: str, source: str, better: str = "higher", **extra: Any) -> str:
    lines = [
        "[[indicator]]",
        f'id = "{id}"',
        f'title = "{id.title()}"',
        f"source = {json.dumps(source)}",
        f'better = "{better}"',
    ]
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def setup(site: Site, *tables: str, extra: str = "") -> None:
    site.extra_toml = "[collect]\nretries = 0\ntimeout = 2\n\n" + extra + "\n" + "\n".join(tables)
    site.write()


def the_views(site: Site) -> dict[str, IndicatorView]:
    config = load_config(site.config)
    with Store.open(site.db) as store:
        return {v.id: v for v in views(config, store)}


def line_of(out: str, id: str) -> str:
    found = [ln for ln in out.splitlines() if f"indicator {id} " in ln]
    assert len(found) == 1, out
    return found[0]


def age(site: Site, id: str, hours: float = 7) -> None:
    """Move the source's last fetch back: the time a 6-hour wait would take."""
    with sqlite3.connect(site.db) as db:
        then = iso(datetime.now(UTC) - timedelta(hours=hours))
        db.execute(
            "UPDATE indicator_sources SET last_success = ?, last_attempt = ? "
            "WHERE indicator_id = ?",
            (then, then, id),
        )


REGION = ["5001", "5028", "5029"]  # Trondheim, Melhus, Skaun


def test_summed_over_municipalities_gives_exact_numbers(site: Site, feeds: FeedServer) -> None:
    # Region × ContentsCode × Tid, last dimension fastest: Trondheim's years, then Melhus', …
    values = [100000, 101000, 102500, 8000, 8100, 8050, 4000, 4100, 4200]
    url = feeds.add(
        "/tables/13470/data",
        ssb(
            [
                ("Region", REGION),
                ("ContentsCode", ["Sysselsatte"]),
                ("Tid", ["2022", "2023", "2024"]),
            ],
            values,
        ),
        content_type=JSON,
    )
    setup(site, indicator("jobs", url, sum="Region", target=120000, target_year=2030))
    out = site.run("collect").stdout
    assert "3 new periods, 0 revised (3 in source)" in line_of(out, "jobs")
    v = the_views(site)["jobs"]
    assert [(o.period, o.value) for o in v.series] == [
        ("2022", 112000.0),
        ("2023", 113200.0),
        ("2024", 114750.0),
    ]
    assert v.latest is not None and v.latest.value == 114750.0
    assert v.previous is not None and v.previous.value == 113200.0
    assert v.change == 1550.0
    assert v.change_pct == 1.4  # 1550 / 113200 = 1.369…%
    assert v.direction == "better"
    assert v.unit == "personer" and v.decimals == 0
    # (114750 − 112000) / 2 years = 1375 a year; 6 more years to the end of 2030: 123000
    assert v.on_track is True
    assert v.error is None


def test_quarters_with_a_suppressed_value_and_sparse_values(site: Site, feeds: FeedServer) -> None:
    quarters = ["2023K3", "2023K4", "2024K1", "2024K2"]
    url = feeds.add(
        "/tables/08517/data",
        ssb(
            [("Region", ["50"]), ("ContentsCode", ["Ledige"]), ("Tid", quarters)],
            {"0": 2.1, "1": 2.4, "2": 2.6},  # sparse: the last quarter has no value
            unit="prosent",
            decimals=1,
            status={"3": ".."},
            index_as_list=True,
        ),
        content_type=JSON,
    )
    setup(site, indicator("ledighet", url, better="lower"))
    site.run("collect")
    v = the_views(site)["ledighet"]
    assert [(o.period, o.value) for o in v.series][-1] == ("2024K2", None)  # missing, never 0
    assert v.latest is not None and (v.latest.period, v.latest.value) == ("2024K1", 2.6)
    assert v.previous is not None and (v.previous.period, v.previous.value) == ("2023K4", 2.4)
    assert v.change == 0.2 and v.change_pct == 8.3
    assert v.direction == "worse"  # unemployment went up
    assert v.unit == "prosent" and v.decimals == 1


def test_a_sum_with_a_suppressed_part_is_missing(site: Site, feeds: FeedServer) -> None:
    url = feeds.add(
        "/sum",
        ssb(
            [("Region", REGION), ("ContentsCode", ["Fore"]), ("Tid", ["2023", "2024"])],
            [10, 11, 20, None, 30, 31],
            status={"3": ".."},
        ),
        content_type=JSON,
    )
    setup(site, indicator("firms", url, sum="Region"))
    site.run("collect")
    v = the_views(site)["firms"]
    assert [(o.period, o.value) for o in v.series] == [("2023", 60.0), ("2024", None)]


def test_conditional_get_sparing_fetches_and_revisions(site: Site, feeds: FeedServer) -> None:
    dims = [("Region", ["50"]), ("ContentsCode", ["Folk"]), ("Tid", ["2023", "2024"])]
    url = feeds.add("/pop", ssb(dims, [480000, 484000]), content_type=JSON, etag='"v1"')
    setup(site, indicator("folk", url))
    site.run("collect")
    assert len(feeds.requests_to("/pop")) == 1

    # Fetched sparingly: it worked a moment ago, so it is not asked again.
    out = site.run("collect").stdout
    assert "fetched recently, not asked again before" in line_of(out, "folk")
    assert len(feeds.requests_to("/pop")) == 1

    # Hours later it is asked, conditionally, and answers 304.
    age(site, "folk")
    out = site.run("collect").stdout
    assert line_of(out, "folk").endswith(": not modified")
    assert feeds.requests_to("/pop")[-1].headers.get("if-none-match") == '"v1"'

    # SSB revises 2024 and adds 2025: the new value counts, the old one is kept.
    feeds.add(
        "/pop",
        ssb([*dims[:2], ("Tid", ["2023", "2024", "2025"])], [480000, 484500, 487000]),
        content_type=JSON,
        etag='"v2"',
    )
    age(site, "folk")
    out = site.run("collect").stdout
    assert "1 new period, 1 revised (3 in source)" in line_of(out, "folk")
    v = the_views(site)["folk"]
    revised = {o.period: o.revised_from for o in v.series}
    assert revised == {"2023": None, "2024": 484000.0, "2025": None}
    assert v.change == 2500.0 and v.previous is not None and v.previous.value == 484500.0


def test_a_failing_source_keeps_its_series_names_its_error_and_alerts_once(
    site: Site, feeds: FeedServer
) -> None:
    dims = [("Region", ["50"]), ("ContentsCode", ["Syss"]), ("Tid", ["2023", "2024"])]
    url = feeds.add("/jobs", ssb(dims, [230000, 233000]), content_type=JSON)
    setup(site, indicator("jobs", url), extra=f'[alerts]\nto = ["{ADMIN}"]\nfeed_failures = 3\n')
    site.run("collect")
    age(site, "jobs")

    failures = [
        (dict(body=b"oops", status=500, content_type="text/plain"), "HTTP 500"),
        (dict(body=b"{}", delay=4.0, content_type=JSON), "no complete answer within 2 s"),
        (
            dict(body=b"<!doctype html><title>Vedlikehold</title>", content_type="text/html"),
            "an HTML page, not a JSON-stat dataset",
        ),
    ]
    for n, (route, error) in enumerate(failures, start=1):
        feeds.add("/jobs", **route)
        proc = site.run("collect")  # a failing source is retried on the next collect
        assert proc.returncode == 0
        assert line_of(proc.stdout, "jobs").startswith("FAILED")
        assert error in line_of(proc.stdout, "jobs")
        v = the_views(site)["jobs"]
        assert v.error is not None and error in v.error
        assert v.latest is not None and v.latest.value == 233000.0  # the last good series stands
        assert v.change == 3000.0
        assert len(to_admins(site)) == (1 if n == 3 else 0)
    assert len(feeds.requests_to("/jobs")) == 4

    alert = to_admins(site)[0]
    body = alert.get_content()
    assert "jobs" in body and "an HTML page" in body

    status = json.loads(site.run("status", "--json").stdout)["indicators"]
    assert status == [
        {
            "id": "jobs",
            "source": url,
            "ok": False,
            "last_attempt": status[0]["last_attempt"],
            "last_success": status[0]["last_success"],
            "consecutive_failures": 3,
            "last_error": status[0]["last_error"],
        }
    ]
    assert "an HTML page" in status[0]["last_error"]
    text = site.run("status").stdout
    jobs = [
        ln for ln in text.splitlines() if ln.strip().startswith(("FEIL", "FAIL")) and "jobs" in ln
    ]
    assert jobs and "an HTML page" in jobs[0], text

    site.run("collect")  # still failing: no second alert
    assert len(to_admins(site)) == 1
    feeds.add("/jobs", ssb(dims, [230000, 233000]), content_type=JSON)
    site.run("collect")
    assert len(to_admins(site)) == 2  # once more when it works again
    assert the_views(site)["jobs"].error is None
    assert json.loads(site.run("status", "--json").stdout)["indicators"][0]["ok"] is True


def test_csv_files_local_and_served(site: Site, feeds: FeedServer) -> None:
    (site.root / "befolkning.csv").write_text(
        "period,value\n2022,100.5\n2023,\n2024,102\n", encoding="utf-8"
    )
    url = feeds.add(
        "/ledige.csv",
        "\ufeffperiod;value\n2024K1;2,5\n2024K2;..\n2024K3;2,25\n".encode(),
        content_type="text/csv",
    )
    setup(
        site,
        indicator("folk", "befolkning.csv", decimals=1),
        indicator("ledige", url, better="lower", decimals=2, unit="%"),
    )
    out = site.run("collect").stdout
    assert "3 new periods" in line_of(out, "folk") and "3 new periods" in line_of(out, "ledige")
    v = the_views(site)
    assert [(o.period, o.value) for o in v["folk"].series] == [
        ("2022", 100.5),
        ("2023", None),
        ("2024", 102.0),
    ]
    assert v["folk"].previous is not None and v["folk"].previous.value is None
    assert v["folk"].change is None and v["folk"].direction is None
    assert v["ledige"].latest is not None and v["ledige"].latest.value == 2.25
    assert v["ledige"].previous is not None and v["ledige"].previous.period == "2024K2"
    # a local file is read again on each collect, and is not modified while it is unchanged
    out = site.run("collect").stdout
    assert line_of(out, "folk").endswith(": not modified")


HOSTILE = {
    "size": (
        lambda: ssb([("ContentsCode", ["A"]), ("Tid", ["2023", "2024"])], [1, 2, 3]),
        "`value` has 3 entries but `size` declares 2 cells",
    ),
    "huge": (
        lambda: json.dumps(
            {
                "class": "dataset",
                "id": ["a", "b", "Tid"],
                "size": [100000, 100000, 100000],
                "dimension": {},
                "value": [],
            }
        ).encode(),
        "more than 1,000,000",
    ),
    "text": (
        lambda: ssb([("ContentsCode", ["A"]), ("Tid", ["2023", "2024"])], [1, "12 345"]),
        "`value` at cell 1 is '12 345', not a number",
    ),
    "period": (
        lambda: ssb([("ContentsCode", ["A"]), ("Tid", ["2023", "i fjor"])], [1, 2]),
        "'i fjor' is not a period",
    ),
    "dimension": (
        lambda: ssb([("Region", REGION), ("ContentsCode", ["A"]), ("Tid", ["2024"])], [1, 2, 3]),
        "dimension 'Region' has 3 categories (5001, 5028, 5029)",
    ),
}


def test_hostile_datasets_fail_clearly_and_collect_goes_on(site: Site, feeds: FeedServer) -> None:
    tables = [
        indicator(name, feeds.add(f"/{name}", make(), content_type=JSON))
        for name, (make, _) in HOSTILE.items()
    ]
    good = feeds.add(
        "/good", ssb([("ContentsCode", ["A"]), ("Tid", ["2024"])], [7]), content_type=JSON
    )
    setup(site, *tables, indicator("good", good))
    proc = site.run("collect")
    assert proc.returncode == 0
    assert "Traceback" not in proc.stderr
    for name, (_, error) in HOSTILE.items():
        assert line_of(proc.stdout, name).startswith("FAILED"), proc.stdout
        assert error in line_of(proc.stdout, name)
        assert error in (the_views(site)[name].error or "")
    assert the_views(site)["good"].latest is not None


@pytest.mark.parametrize(
    ("csv", "error"),
    [
        ("year,amount\n2024,1\n", "it must be `period,value`"),
        ("period,value\n2024,abc\n", "line 2: 'abc' is not a number"),
        ("period,value\n24,1\n", "is not a period"),
    ],
)
def test_hostile_csv_names_the_line(site: Site, csv: str, error: str) -> None:
    (site.root / "bad.csv").write_text(csv, encoding="utf-8")
    setup(site, indicator("bad", "bad.csv"))
    proc = site.run("collect")
    assert error in line_of(proc.stdout, "bad")
