"""The config file (SPEC.md "Configuration"): every mistake reported at once with the file and the
dotted key, relative paths read against the file's own folder, and the ways to pick the file.

Most cases run the CLI as a process; the many single-mistake cases call `load_config` in-process
(the same code `trnews check` runs), so that each can be told apart without a process apiece.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from support.paths import ROOT

from pipeline.config import load_config, meeting_start
from pipeline.errors import ConfigError

GOOD = """\
[newsletter]
title = "Ambassadørnytt"
sender = "Trondheimsregionen <nyhetsbrev@example.org>"
reply_to = "post@example.org"
public_url = "https://nyhetsbrev.example.org"

[delivery.smtp]
password_env = "TRNEWS_SMTP_PASSWORD"

[[ambassador]]
id = "kari-nordmann"
name = "Kari Nordmann"
feeds = [{ url = "https://kari.example.org/feed/", kind = "blog" }]

[[meeting]]
title = "Regionrådet"
start = 2026-12-03T10:00:00+01:00
ambassadors = ["kari-nordmann"]
"""


def trnews(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`trnews ARGS` as a process in `cwd`, with TRNEWS_CONFIG unset unless `env` sets it."""
    full = {k: v for k, v in os.environ.items() if k != "TRNEWS_CONFIG"}
    full |= {"TRNEWS_SECRET": "test-secret", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=full,
        timeout=120,
    )


def problems_in(stderr: str, path: str) -> dict[str, str]:
    """The `trnews: FILE: KEY: message` lines of a config error, as {key: message}."""
    prefix = f"trnews: {path}: "
    out: dict[str, str] = {}
    for line in stderr.splitlines():
        if line.startswith(prefix):
            key, _, message = line.removeprefix(prefix).partition(": ")
            out[key] = message
    return out


def edit(old: str, new: str) -> str:
    """GOOD with one piece of text replaced."""
    assert old in GOOD, old
    return GOOD.replace(old, new)


def test_the_example_config_passes_check_with_a_one_line_summary() -> None:
    raw = tomllib.loads((ROOT / "config" / "trnews.toml").read_text(encoding="utf-8"))
    ambassadors = len(raw["ambassador"])
    feeds = sum(len(a.get("feeds", [])) for a in raw["ambassador"])
    meetings = len(raw["meeting"])

    proc = trnews("-c", "config/trnews.toml", "check", cwd=ROOT)

    assert proc.returncode == 0, proc.stderr
    [line] = proc.stdout.splitlines()
    assert "config/trnews.toml" in line
    assert f"{ambassadors} ambassadors" in line
    assert f"{feeds} feeds" in line
    assert f"{meetings} meetings" in line


BROKEN = """\
colour = "red"

[newsletter]
titel = "Ambassadørnytt"
sender = "nyhetsbrev.example.org"
reply_to = "post@@example.org"
public_url = "ftp://nyhetsbrev.example.org"
timezone = "Europe/Trondheim"
max_items = "many"
intro = 42

[schedule]
collect = "every half hour"
send = "61 8 * * mon"

[delivery]
transport = "sendmail"

[delivery.smtp]
hots = "smtp.example.org"
port = "submission"
password = "hunter2"

[[ambassador]]
id = "Kari Nordmann"
name = "Kari Nordmann"
twitter = "@kari"
feeds = [
  { url = "file:///etc/passwd", kind = "vlog" },
]

[[ambassador]]
id = "ola-hansen"
name = "Ola Hansen"
feeds = [
  { url = "https://ola.example.org/feed", kind = "blog", colour = "blue" },
  { url = "ftp://ola.example.org/feed.rss", kind = "blog" },
]

[[ambassador]]
id = "ola-hansen"
name = "Ola Hansen (igjen)"
feeds = "https://ola.example.org/feed"

[[meeting]]
title = "Regionrådet"
start = 2026-12-03T10:00:00+01:00
end = 2026-12-03T09:00:00+01:00
ambassadors = ["ola-hansen", "per-person"]
url = "javascript:alert(1)"

[[meeting]]
title = "Uten tid"
"""

# Every key BROKEN gets wrong, with a piece of what the message must say about it.
BROKEN_KEYS = {
    "colour": "unknown key",
    "newsletter.titel": "did you mean 'title'",
    "newsletter.title": "required key is missing",
    "newsletter.sender": "nyhetsbrev.example.org",
    "newsletter.reply_to": "post@@example.org",
    "newsletter.public_url": "ftp://nyhetsbrev.example.org",
    "newsletter.timezone": "Europe/Trondheim",
    "newsletter.max_items": "integer",
    "newsletter.intro": "string",
    "schedule.collect": "every half hour",
    "schedule.send": "61",
    "delivery.transport": "'maildir' or 'smtp'",
    "delivery.smtp.hots": "did you mean 'host'",
    "delivery.smtp.port": "integer",
    "delivery.smtp.password": "did you mean 'password_env'",
    "ambassador[0].id": "slug",
    "ambassador[0].twitter": "unknown key",
    "ambassador[0].feeds[0].url": "file:",
    "ambassador[0].feeds[0].kind": "'chronicle' or 'video'",
    "ambassador[1].feeds[0].colour": "unknown key",
    "ambassador[1].feeds[1].url": "ftp://ola.example.org/feed.rss",
    "ambassador[2].id": "already used by ambassador[1]",
    "ambassador[2].feeds": "list",
    "meeting[0].end": "before start",
    "meeting[0].ambassadors[1]": "per-person",
    "meeting[0].url": "javascript:alert(1)",
    "meeting[1].start": "required key is missing",
}


def test_every_mistake_in_the_file_is_reported_at_once_with_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "broken.toml").write_text(BROKEN, encoding="utf-8")

    proc = trnews("-c", "broken.toml", "check", cwd=tmp_path)

    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    found = problems_in(proc.stderr, "broken.toml")
    assert sorted(found) == sorted(BROKEN_KEYS), proc.stderr
    wrong = {k: found[k] for k, part in BROKEN_KEYS.items() if part not in found[k]}
    assert not wrong, f"messages that do not say what is wrong: {wrong}"
    assert f"{len(BROKEN_KEYS)} problems" in proc.stderr
    # The secret someone pasted into the file is not echoed back onto the terminal or a log.
    assert "hunter2" not in proc.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            '[newsletter]\nlanguage = "nb"\n',
            {
                "newsletter.title": "required key is missing",
                "newsletter.sender": "required key is missing",
                "newsletter.public_url": "required key is missing",
            },
            id="required-newsletter-keys",
        ),
        pytest.param(
            '[storage]\ndatabase = "x.db"\n',
            {"newsletter": "required key is missing"},
            id="no-newsletter-table",
        ),
        pytest.param(
            edit("[delivery.smtp]\n", '[storage]\ndatabse = "x.db"\n\n[delivery.smtp]\n'),
            {"storage.databse": "did you mean 'database'"},
            id="typo-in-storage",
        ),
        pytest.param(
            'path = "/etc/trnews.toml"\n' + GOOD, {"path": "unknown key"}, id="top-level-path"
        ),
        pytest.param(
            edit("Trondheimsregionen <nyhetsbrev@example.org>", "not an address"),
            {"newsletter.sender": "not an address"},
            id="sender-not-an-address",
        ),
        pytest.param(
            edit("<nyhetsbrev@example.org>", "<nyhetsbrev@>"),
            {"newsletter.sender": "nyhetsbrev@"},
            id="sender-without-domain",
        ),
        pytest.param(
            edit("<nyhetsbrev@example.org>", "<nyhetsbrev@example.org>, Ola <ola@example.org>"),
            {"newsletter.sender": "one address"},
            id="sender-two-addresses",
        ),
        pytest.param(
            edit("<nyhetsbrev@example.org>", "<nyhetsbrev@example.org>\\nBcc: ola@example.org"),
            {"newsletter.sender": "one line"},
            id="sender-header-injection",
        ),
        pytest.param(
            edit('reply_to = "post@example.org"', 'reply_to = "post@example"'),
            {"newsletter.reply_to": "post@example"},
            id="reply-to-without-dot",
        ),
        pytest.param(
            edit('reply_to = "post@example.org"', 'reply_to = "Post <post@example.org>"'),
            {"newsletter.reply_to": "not a valid e-mail address"},
            id="reply-to-is-a-bare-address",
        ),
        pytest.param(
            edit("https://nyhetsbrev.example.org", "nyhetsbrev.example.org"),
            {"newsletter.public_url": "http(s) URL"},
            id="public-url-without-scheme",
        ),
        pytest.param(
            edit("https://kari.example.org/feed/", "ftp://kari.example.org/feed/"),
            {"ambassador[0].feeds[0].url": "ftp://kari.example.org/feed/"},
            id="feed-ftp",
        ),
        pytest.param(
            edit("https://kari.example.org/feed/", "file:///srv/feeds/kari.xml"),
            {"ambassador[0].feeds[0].url": "plain path"},
            id="feed-file-url",
        ),
        pytest.param(
            edit('kind = "blog"', 'kind = "podcast"'),
            {"ambassador[0].feeds[0].kind": "'chronicle' or 'video'"},
            id="bad-kind",
        ),
        pytest.param(
            edit("[delivery.smtp]\n", "[newsletter.x]\n[delivery.smtp]\n"),
            {"newsletter.x": "unknown key"},
            id="unknown-subtable",
        ),
        pytest.param(
            edit("[delivery.smtp]\n", '[schedule]\nsend = "0 8 * * mon *"\n\n[delivery.smtp]\n'),
            {"schedule.send": "5-field"},
            id="cron-six-fields",
        ),
        pytest.param(
            edit("[delivery.smtp]\n", '[schedule]\ncollect = "0 25 * * *"\n\n[delivery.smtp]\n'),
            {"schedule.collect": "0 25 * * *"},
            id="cron-hour-25",
        ),
        pytest.param(
            edit(
                'public_url = "https://nyhetsbrev.example.org"',
                'timezone = "CEST"\npublic_url = "https://nyhetsbrev.example.org"',
            ),
            {"newsletter.timezone": "CEST"},
            id="timezone-abbreviation",
        ),
        pytest.param(
            edit('password_env = "TRNEWS_SMTP_PASSWORD"', 'password_env = "s3cret pass"'),
            {"delivery.smtp.password_env": "environment variable"},
            id="password-env-not-a-name",
        ),
        pytest.param(
            edit('id = "kari-nordmann"', 'id = "kari_nordmann"'),
            {
                "ambassador[0].id": "slug",
                "meeting[0].ambassadors[0]": "kari-nordmann",
            },
            id="underscore-id",
        ),
        pytest.param(
            edit('id = "kari-nordmann"', 'id = "-kari"').replace('["kari-nordmann"]', '["-kari"]'),
            {"ambassador[0].id": "slug"},
            id="id-starting-with-dash",
        ),
        pytest.param(
            edit(
                "[[meeting]]",
                '[[ambassador]]\nid = "kari-nordmann"\nname = "Kari N."\n\n[[meeting]]',
            ),
            {"ambassador[1].id": "already used by ambassador[0]"},
            id="duplicate-id",
        ),
        pytest.param(
            edit('["kari-nordmann"]', '["kari-nordmann", "ola-hansen"]'),
            {"meeting[0].ambassadors[1]": "ola-hansen"},
            id="meeting-unknown-ambassador",
        ),
        pytest.param(
            # A local end is read in Europe/Oslo: 09:30 local is before 10:00+01:00.
            edit(
                "start = 2026-12-03T10:00:00+01:00",
                "start = 2026-12-03T10:00:00+01:00\nend = 2026-12-03T09:30:00",
            ),
            {"meeting[0].end": "before start"},
            id="meeting-local-end-before-start",
        ),
        pytest.param(
            edit(
                "start = 2026-12-03T10:00:00+01:00",
                'start = 2026-12-03T10:00:00+01:00\nurl = "javascript:alert(1)"',
            ),
            {"meeting[0].url": "javascript:alert(1)"},
            id="meeting-javascript-url",
        ),
        pytest.param(
            # An empty author filter would keep every entry of a shared newspaper feed.
            edit('kind = "blog" }', 'kind = "chronicle", author = "" }'),
            {"ambassador[0].feeds[0].author": "at least 1 character"},
            id="empty-author-filter",
        ),
    ],
)
def test_a_mistake_is_named_by_its_dotted_key(
    tmp_path: Path, text: str, expected: dict[str, str]
) -> None:
    path = tmp_path / "trnews.toml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    found = {p.key: p.message for p in caught.value.problems}
    assert sorted(found) == sorted(expected), found
    for key, part in expected.items():
        assert part in found[key], (key, found[key])
    assert str(path) in str(caught.value)


def test_times_that_are_fine_across_offsets_are_not_errors(tmp_path: Path) -> None:
    # 09:30Z is 10:30 in Oslo: after a 10:00+01:00 start, whatever the notation.
    path = tmp_path / "trnews.toml"
    path.write_text(
        edit(
            "start = 2026-12-03T10:00:00+01:00",
            "start = 2026-12-03T10:00:00+01:00\nend = 2026-12-03T09:30:00Z",
        ),
        encoding="utf-8",
    )
    assert len(load_config(path).meeting) == 1


def test_a_toml_syntax_error_names_the_file_and_the_line(tmp_path: Path) -> None:
    (tmp_path / "trnews.toml").write_text(
        '[newsletter]\ntitle = "Ambassadørnytt"\nsender = Trondheimsregionen\n', encoding="utf-8"
    )

    proc = trnews("-c", "trnews.toml", "check", cwd=tmp_path)

    assert proc.returncode == 2
    assert "trnews.toml" in proc.stderr
    assert "line 3" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("option", [(), ("-c", "elsewhere/trnews.toml")], ids=["default", "-c"])
def test_a_missing_config_file_says_which_file_and_how_to_name_one(
    tmp_path: Path, option: tuple[str, ...]
) -> None:
    proc = trnews(*option, "check", cwd=tmp_path)

    assert proc.returncode == 2
    expected = option[1] if option else "config/trnews.toml"
    assert f"{expected}: no such file" in proc.stderr
    assert "-c PATH" in proc.stderr and "TRNEWS_CONFIG" in proc.stderr
    assert "Traceback" not in proc.stderr


def rss(title: str, link: str) -> bytes:
    """A one-item RSS feed dated yesterday."""
    date = format_datetime(datetime.now(UTC) - timedelta(days=1))
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Blogg</title>'
        f"<link>https://kari.example.org</link><item><title>{title}</title><link>{link}</link>"
        f"<pubDate>{date}</pubDate><description>Om {title}.</description></item></channel></rss>"
    ).encode()


def test_relative_paths_resolve_against_the_config_folder_not_the_cwd(tmp_path: Path) -> None:
    conf = tmp_path / "site" / "conf"
    (conf / "feeds").mkdir(parents=True)
    (conf / "feeds" / "kari.xml").write_bytes(rss("Om fjorden", "https://kari.example.org/fjord"))
    (conf / "trnews.toml").write_text(
        edit("https://kari.example.org/feed/", "feeds/kari.xml")
        + '\n[storage]\ndatabase = "../data/news.db"\n\n'
        # The Maildir's folder does not exist yet either: trnews makes it, as it does the
        # database's.
        '[delivery]\ntransport = "maildir"\nmaildir = "../var/outbox"\n',
        encoding="utf-8",
    )
    cwd = tmp_path / "somewhere-else"
    cwd.mkdir()
    config = str(conf / "trnews.toml")

    added = trnews("-c", config, "subscribers", "add", "leser@example.org", cwd=cwd)

    assert added.returncode == 0, added.stderr
    assert (tmp_path / "site" / "data" / "news.db").is_file()
    assert list(cwd.iterdir()) == []
    assert not (conf / "var").exists()

    for command in ("collect", "send"):
        proc = trnews("-c", config, command, cwd=cwd)
        assert proc.returncode == 0, proc.stderr
    [message] = (tmp_path / "site" / "var" / "outbox" / "new").iterdir()
    assert b"Om fjorden" in message.read_bytes()
    assert list(cwd.iterdir()) == []


def config_with(ambassadors: int) -> str:
    """A valid config whose `check` summary tells it apart: it has this many ambassadors."""
    return GOOD + "".join(
        f'\n[[ambassador]]\nid = "extra-{i}"\nname = "Extra {i}"\n' for i in range(ambassadors - 1)
    )


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        pytest.param(["check"], {}, 1, id="default-config-in-cwd"),
        pytest.param(["-c", "a.toml", "check"], {"TRNEWS_CONFIG": "c.toml"}, 2, id="c-first"),
        pytest.param(["check", "-c", "b.toml"], {}, 3, id="c-after-command"),
        pytest.param(["check"], {"TRNEWS_CONFIG": "c.toml"}, 4, id="env"),
    ],
)
def test_the_config_file_is_picked_by_option_environment_or_default(
    tmp_path: Path, args: list[str], env: dict[str, str], expected: int
) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "trnews.toml").write_text(config_with(1), encoding="utf-8")
    for ambassadors, name in ((2, "a.toml"), (3, "b.toml"), (4, "c.toml")):
        (tmp_path / name).write_text(config_with(ambassadors), encoding="utf-8")

    proc = trnews(*args, cwd=tmp_path, env=env)

    assert proc.returncode == 0, proc.stderr
    assert f": OK: {expected} ambassadors" in proc.stdout


def test_a_local_meeting_time_is_read_in_the_newsletter_timezone(tmp_path: Path) -> None:
    path = tmp_path / "trnews.toml"
    meetings = (
        '\n[[meeting]]\ntitle = "Vintermøte"\nstart = 2026-12-03T10:00:00\n'
        '\n[[meeting]]\ntitle = "Sommermøte"\nstart = 2026-06-18T10:00:00\n'
        '\n[[meeting]]\ntitle = "Heldagsmøte"\nstart = 2026-12-10\n'
    )
    path.write_text(GOOD + meetings, encoding="utf-8")
    oslo = ZoneInfo("Europe/Oslo")

    cfg = load_config(path)
    given, winter, summer, whole_day = (meeting_start(m, cfg) for m in cfg.meeting)

    assert given == datetime(2026, 12, 3, 9, 0, tzinfo=UTC)  # an offset is kept as written
    assert winter == datetime(2026, 12, 3, 10, 0, tzinfo=oslo)
    assert winter.utcoffset() == timedelta(hours=1)
    assert summer == datetime(2026, 6, 18, 8, 0, tzinfo=UTC)  # daylight saving: +02:00
    assert whole_day == datetime(2026, 12, 10, 0, 0, tzinfo=oslo)

    path.write_text(
        edit("[delivery.smtp]", 'timezone = "America/New_York"\n\n[delivery.smtp]') + meetings,
        encoding="utf-8",
    )
    elsewhere = load_config(path)
    assert meeting_start(elsewhere.meeting[1], elsewhere) == datetime(
        2026, 12, 3, 15, 0, tzinfo=UTC
    )


def test_the_smtp_password_comes_from_the_environment_variable_the_config_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "trnews.toml"
    path.write_text(
        edit('password_env = "TRNEWS_SMTP_PASSWORD"', 'password_env = "RELAY_PASSWORD"'),
        encoding="utf-8",
    )
    monkeypatch.delenv("RELAY_PASSWORD", raising=False)
    monkeypatch.setenv("TRNEWS_SMTP_PASSWORD", "not-this-one")
    assert load_config(path).delivery.smtp.password == ""

    monkeypatch.setenv("RELAY_PASSWORD", "s3cret")
    cfg = load_config(path)
    assert cfg.delivery.smtp.password == "s3cret"
    assert "s3cret" not in path.read_text(encoding="utf-8")


def test_intranet_and_test_domains_are_addresses_like_any_other(tmp_path: Path) -> None:
    # A staging setup and an intranet: syntax is checked, not whether the names are public.
    text = GOOD.replace("nyhetsbrev@example.org", "nyhetsbrev@trnews.test").replace(
        'reply_to = "post@example.org"', 'reply_to = "post@corp.local"'
    )
    text += '\n[alerts]\nto = ["it@corp.local", "drift@staging.test"]\n'
    (tmp_path / "trnews.toml").write_text(text, encoding="utf-8")
    checked = trnews("-c", "trnews.toml", "check", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    added = trnews("-c", "trnews.toml", "subscribers", "add", "kari@corp.local", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    # A malformed address is still refused, with its key.
    (tmp_path / "trnews.toml").write_text(text.replace("it@corp.local", "it@@corp"), "utf-8")
    bad = trnews("-c", "trnews.toml", "check", cwd=tmp_path)
    assert bad.returncode == 2
    assert "alerts.to[0]" in bad.stderr


@pytest.mark.parametrize(
    ("host", "refused"),
    [
        ("smtp.example.org", True),
        ("192.0.2.25", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("localhost", False),
    ],
)
def test_a_login_over_a_connection_in_clear_is_refused_but_to_this_machine(
    tmp_path: Path, host: str, refused: bool
) -> None:
    path = tmp_path / "trnews.toml"
    path.write_text(
        edit(
            'password_env = "TRNEWS_SMTP_PASSWORD"',
            f'host = "{host}"\nsecurity = "none"\nusername = "nyhetsbrev"',
        ),
        encoding="utf-8",
    )
    proc = trnews("-c", str(path), "check", cwd=tmp_path)
    if not refused:
        assert proc.returncode == 0, proc.stderr
        return
    assert proc.returncode == 2, proc.stdout + proc.stderr
    [message] = problems_in(proc.stderr, str(path)).values()
    assert "delivery.smtp.security" in message and "in clear" in message and host in message
    assert '"starttls"' in message  # the fix
    assert "Traceback" not in proc.stderr
