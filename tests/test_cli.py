"""The `trnews` command line (SPEC.md "Commands"): help, version, exit codes, `status`, `preview`,
a locked database, and errors shown as one clear line (a traceback only with --debug).

Every command runs as a real process against a real SQLite file; feeds come from the loopback
HTTP server and mail goes to the loopback SMTP server or a Maildir.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

import click
import pytest
from support.mail import html_part, text_part
from support.servers import FeedServer, SmtpServer
from support.site import Site

from pipeline.cli import cli

COMMANDS = ("check", "collect", "library", "preview", "send", "status", "subscribers")
CONSOLE_SCRIPT = Path(sys.executable).with_name("trnews")
"""The `trnews` console script installed next to the interpreter running the tests."""

# The three recent entries of tests/data/blog_wordpress.xml (its two others are too old to send).
WORDPRESS_TITLES = (
    "Samarbeid på tvers gir resultater",
    "Trondheimsregionen må tenke større",
    "Ny forskningspark på Tiller",
)


def run(
    *command: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command line as a process, with TRNEWS_CONFIG unset unless `env` sets it."""
    full = {k: v for k, v in os.environ.items() if k != "TRNEWS_CONFIG"}
    full |= {"TRNEWS_SECRET": "test-secret", **(env or {})}
    return subprocess.run(
        list(command), cwd=cwd, capture_output=True, text=True, env=full, timeout=120
    )


def trnews(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "pipeline", *args, cwd=cwd)


def help_text(*names: str) -> str:
    """What `trnews NAMES... --help` prints."""
    ctx = click.Context(cli, info_name="trnews")
    command: click.Command = cli
    for name in names:
        assert isinstance(command, click.Group)
        found = command.get_command(ctx, name)
        assert found is not None, f"no command {name!r}"
        command = found
        ctx = click.Context(command, info_name=name, parent=ctx)
    return command.get_help(ctx)


def blog_site(site: Site, feeds: FeedServer) -> None:
    """One ambassador with the WordPress sample feed, and one reader."""
    url = feeds.add_file("/kari.xml", "blog_wordpress.xml")
    site.ambassador(
        "kari-nordmann", "Kari Nordmann", "Prorektor, NTNU", [{"url": url, "kind": "blog"}]
    )
    site.run("subscribers", "add", "leser@example.org", "--name", "Anne Abonnent")


# -- help, version, usage ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "names",
    [
        *[(c,) for c in COMMANDS],
        *[("subscribers", c) for c in ("add", "remove", "list", "import", "export")],
    ],
    ids=" ".join,
)
def test_each_command_help_shows_an_example(names: tuple[str, ...]) -> None:
    text = help_text(*names)
    assert "Example" in text
    example = text.partition("Example")[2]
    lines = [line.split() for line in example.splitlines() if line.strip().startswith("trnews ")]
    assert any(names[-1] in words for words in lines), text


def test_python_m_pipeline_is_the_trnews_console_script(tmp_path: Path) -> None:
    script_version = run(str(CONSOLE_SCRIPT), "--version", cwd=tmp_path)
    script_help = run(str(CONSOLE_SCRIPT), "--help", cwd=tmp_path)
    module_help = trnews("--help", cwd=tmp_path)

    assert script_version.returncode == script_help.returncode == module_help.returncode == 0
    assert script_version.stdout.strip() == f"trnews, version {version('trnews')}"
    assert script_help.stdout.startswith("Usage: trnews ")
    assert script_help.stdout == module_help.stdout
    commands = script_help.stdout.partition("Commands:")[2].split()
    for name in COMMANDS:
        assert name in commands, script_help.stdout


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["sned"], "No such command 'sned'"),
        (["send", "--dry-run"], "No such option '--dry-run'"),
    ],
    ids=["unknown-command", "unknown-option"],
)
def test_usage_errors_exit_2_with_one_clear_message(
    tmp_path: Path, args: list[str], complaint: str
) -> None:
    proc = trnews(*args, cwd=tmp_path)

    assert proc.returncode == 2
    assert complaint in proc.stderr
    assert "Traceback" not in proc.stderr


def test_debug_adds_a_traceback_and_keeps_the_exit_code(tmp_path: Path) -> None:
    plain = trnews("-c", "missing.toml", "check", cwd=tmp_path)
    debug = trnews("--debug", "-c", "missing.toml", "check", cwd=tmp_path)

    assert plain.returncode == debug.returncode == 2
    assert "Traceback" not in plain.stderr
    assert "Traceback (most recent call last)" in debug.stderr
    assert "missing.toml: no such file" in plain.stderr
    assert "missing.toml: no such file" in debug.stderr


# -- status ------------------------------------------------------------------------------------


def test_status_after_collect_and_send_shows_feeds_editions_and_subscribers(
    feeds: FeedServer, smtp: SmtpServer, site: Site
) -> None:
    good = feeds.add_file("/kari.xml", "blog_wordpress.xml")
    bad = feeds.add("/ola.xml", b"Internal error", status=500, content_type="text/plain")
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": good, "kind": "blog"}])
    site.ambassador("ola-hansen", "Ola Hansen", "", [{"url": bad, "kind": "blog"}])
    site.transport = "smtp"
    smtp.handler.refuse["borte@example.org"] = "550 5.1.1 No such user"
    readers = site.root / "readers.csv"
    readers.write_text(
        "email,name\nanne@example.org,Anne\nbjorn@example.org,Bjørn\n"
        "borte@example.org,Borte\nulla@example.org,Ulla\n",
        encoding="utf-8",
    )
    site.run("subscribers", "import", str(readers))
    site.run("subscribers", "remove", "ulla@example.org")
    site.run("collect")
    site.run("send")
    assert sorted(smtp.handler.by_recipient()) == ["anne@example.org", "bjorn@example.org"]

    data = json.loads(site.run("status", "--json").stdout)

    assert data["next_collect"] is None
    assert data["next_send"] is None
    assert data["scheduler_pid"] is None
    by_url = {f["url"]: f for f in data["feeds"]}
    assert sorted(by_url) == sorted([good, bad])
    kari, ola = by_url[good], by_url[bad]
    assert kari["ambassador"] == "kari-nordmann"
    assert kari["ok"] is True
    assert kari["consecutive_failures"] == 0
    assert kari["last_error"] is None
    assert datetime.fromisoformat(kari["last_success"]).tzinfo is not None
    assert ola["ambassador"] == "ola-hansen"
    assert ola["ok"] is False
    assert ola["consecutive_failures"] == 1
    assert ola["last_success"] is None
    assert "500" in ola["last_error"]
    [edition] = data["editions"]
    assert datetime.fromisoformat(edition["created"]).tzinfo is not None
    assert {k: edition[k] for k in ("id", "status", "items", "recipients", "delivered")} == {
        "id": 1,
        "status": "sent",
        "items": 3,
        "recipients": 3,
        "delivered": 2,
    }
    assert edition["failed"] == 1
    counts = data["subscribers"]
    assert sorted(counts) == ["active", "bounced", "pending", "unsubscribed"]
    assert counts["pending"] == 0
    assert counts["unsubscribed"] == 1
    # Whether one 550 already marks "borte" bounced is the delivery module's policy; either
    # way the three who were sent to are accounted for.
    assert counts["active"] + counts["bounced"] == 3

    text = site.run("status").stdout
    assert "Planlegger: kjører ikke" in text
    assert f"FEILER  {bad}" in text and "1 feil på rad" in text
    assert f"ok      {good}" in text
    assert "#1" in text and "2/3 levert" in text and "1 feilet" in text
    assert "1 avmeldt" in text


def test_status_keeps_working_when_the_config_is_broken(
    feeds: FeedServer, site: Site, tmp_path: Path
) -> None:
    url = feeds.add_file("/kari.xml", "blog_wordpress.xml")
    site.ambassador("kari-nordmann", "Kari Nordmann", "", [{"url": url, "kind": "blog"}])
    text = site.write().read_text(encoding="utf-8")
    site.config.write_text(
        text.replace('database = "var/trnews.db"', 'database = "data/nyhetsbrev.db"').replace(
            'maildir = "var/outbox"', 'maildir = "data/outbox"'
        ),
        encoding="utf-8",
    )
    site.run("subscribers", "add", "leser@example.org")
    site.run("collect")
    site.run("send")
    assert (site.root / "data" / "nyhetsbrev.db").is_file()
    site.config.write_text(
        site.config.read_text(encoding="utf-8").replace(
            'sender = "Trondheimsregionen <nyhetsbrev@example.org>"', 'sender = "redaksjonen"'
        ),
        encoding="utf-8",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    proc = trnews("-c", str(site.config), "status", "--json", cwd=elsewhere)

    assert proc.returncode == 2
    assert f"{site.config}: newsletter.sender:" in proc.stderr
    assert "Traceback" not in proc.stderr
    data = json.loads(proc.stdout)
    assert data["database"] == str(site.root / "data" / "nyhetsbrev.db")
    [edition] = data["editions"]
    assert (edition["status"], edition["recipients"], edition["delivered"]) == ("sent", 1, 1)
    assert data["subscribers"]["active"] == 1
    assert [f["ok"] for f in data["feeds"]] == [True]
    assert list(elsewhere.iterdir()) == []


# -- preview -----------------------------------------------------------------------------------


def test_preview_writes_html_and_text_and_sends_and_marks_nothing(
    feeds: FeedServer, site: Site, tmp_path: Path
) -> None:
    blog_site(site, feeds)
    site.run("collect")

    out = site.run("preview", "--out", "kladd").stdout

    html = (site.root / "kladd" / "preview.html").read_text(encoding="utf-8")
    text = (site.root / "kladd" / "preview.txt").read_text(encoding="utf-8")
    for title in WORDPRESS_TITLES:
        assert title in html and title in text
    assert "preview.html" in out
    assert site.messages() == []

    site.run("send")  # the preview marked nothing: the same items go out
    [msg] = site.messages()
    for title in WORDPRESS_TITLES:
        assert title in text_part(msg) and title in html_part(msg)

    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    proc = trnews("-c", str(site.config), "preview", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert "Nothing new" in proc.stdout
    assert (cwd / "var" / "preview" / "preview.html").is_file()
    assert (cwd / "var" / "preview" / "preview.txt").is_file()
    assert len(site.messages()) == 1


# -- a locked database -------------------------------------------------------------------------


def test_a_locked_database_fails_with_exit_1_and_a_retry_hint_then_a_rerun_sends(
    feeds: FeedServer, site: Site
) -> None:
    blog_site(site, feeds)
    site.run("collect")
    lock = sqlite3.connect(site.db, isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")  # another process busy writing
        proc = site.run("send", check=False)  # waits out the store's busy timeout once
    finally:
        lock.execute("ROLLBACK")
        lock.close()

    assert proc.returncode == 1
    assert str(site.db) in proc.stderr
    assert "retry" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert site.messages() == []

    assert "1 delivered" in site.run("send").stdout
    assert len(site.messages()) == 1
