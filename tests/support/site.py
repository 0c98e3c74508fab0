"""A working folder with a config file, the CLI run against it as a process, and what its runs
print read back."""

from __future__ import annotations

import email
import email.policy
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from pipeline.config import load_config
from pipeline.models import Item
from pipeline.store import Store

BASE_CONFIG = """\
[newsletter]
title = "Ambassadørnytt"
sender = "Trondheimsregionen <nyhetsbrev@example.org>"
reply_to = "post@example.org"
public_url = "https://nyhetsbrev.example.org"
language = "{language}"
lookback_days = {lookback_days}
meetings_ahead_days = 30
max_items = {max_items}

[schedule]
collect = "{collect}"
send = "{send}"
send_when_empty = {send_when_empty}

[storage]
database = "var/trnews.db"

[delivery]
transport = "{transport}"
maildir = "var/outbox"

[delivery.smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
"""


@dataclass
class Site:
    """A working folder with a config file, and the CLI run against it as a separate process."""

    root: Path
    smtp_port: int = 25
    transport: str = "maildir"
    language: str = "nb"
    lookback_days: int = 30
    max_items: int = 40
    send_when_empty: bool = False
    collect: str = "*/30 * * * *"
    """schedule.collect"""
    send: str = "0 8 * * mon"
    """schedule.send"""
    ambassadors: list[str] = field(default_factory=list)
    meetings: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    extra_toml: str = ""
    """More TOML appended to the file, e.g. '[collect]\ntimeout = 2'."""

    @property
    def config(self) -> Path:
        return self.root / "trnews.toml"

    @property
    def db(self) -> Path:
        return self.root / "var" / "trnews.db"

    @property
    def outbox(self) -> Path:
        return self.root / "var" / "outbox" / "new"

    def ambassador(
        self, id: str, name: str, role: str = "", feeds: list[dict[str, str]] | None = None
    ) -> None:
        lines = [f'[[ambassador]]\nid = "{id}"\nname = "{name}"\nrole = "{role}"\nfeeds = [']
        for f in feeds or []:
            fields = ", ".join(f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in f.items())
            lines.append(f"  {{ {fields} }},")
        lines.append("]\n")
        self.ambassadors.append("\n".join(lines))

    def meeting(self, toml: str) -> None:
        self.meetings.append("[[meeting]]\n" + toml.strip() + "\n")

    def write(self) -> Path:
        text = BASE_CONFIG.format(
            language=self.language,
            lookback_days=self.lookback_days,
            max_items=self.max_items,
            send_when_empty=str(self.send_when_empty).lower(),
            collect=self.collect,
            send=self.send,
            transport=self.transport,
            smtp_port=self.smtp_port,
        )
        text += "\n" + self.extra_toml + "\n"
        text += "\n" + "\n".join(self.ambassadors) + "\n" + "\n".join(self.meetings)
        self.config.write_text(text, encoding="utf-8")
        return self.config

    def command(self, *args: str) -> list[str]:
        """`trnews -c trnews.toml ARGS` as a command line."""
        return [sys.executable, "-m", "pipeline", "-c", str(self.config), *args]

    def process_env(self) -> dict[str, str]:
        """The environment the CLI runs with: this one, the test secret and `env`, and no
        TRNEWS_CONFIG to pick another file."""
        env = {**os.environ, "TRNEWS_SECRET": "test-secret", **self.env}
        env.pop("TRNEWS_CONFIG", None)
        return env

    def run(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `trnews -c trnews.toml ARGS` as a user would; by default insist on exit 0."""
        if not self.config.exists():
            self.write()
        proc = subprocess.run(
            self.command(*args),
            cwd=self.root,
            capture_output=True,
            text=True,
            env=self.process_env(),
            input=input,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"trnews {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def messages(self) -> list[EmailMessage]:
        """Every message in the Maildir outbox, oldest first."""
        if not self.outbox.exists():
            return []
        files = sorted(self.outbox.iterdir(), key=lambda p: p.stat().st_mtime_ns)
        return [
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for p in files
        ]


@dataclass(frozen=True)
class Measured:
    """A finished `trnews` process: its exit code, output and peak resident memory."""

    returncode: int
    stdout: str
    stderr: str
    peak_mb: float


def run_measured(site: Site, *args: str) -> Measured:
    """`trnews -c trnews.toml ARGS` as a process, with its own peak RSS from wait4(2)."""
    site.write()
    out, err = site.root / "stdout.txt", site.root / "stderr.txt"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(
            site.command(*args), cwd=site.root, stdout=o, stderr=e, env=site.process_env()
        )
        _, status, usage = os.wait4(proc.pid, 0)
    return Measured(
        os.waitstatus_to_exitcode(status),
        out.read_text(encoding="utf-8"),
        err.read_text(encoding="utf-8"),
        usage.ru_maxrss / 1024,  # KiB on Linux
    )


def collect_line(stdout: str, url: str) -> str:
    """The one line `trnews collect` printed about this feed."""
    found = [line for line in stdout.splitlines() if f" {url} (" in line]
    assert len(found) == 1, f"expected one line about {url} in:\n{stdout}"
    return found[0]


def feed_status(site: Site) -> dict[str, dict[str, Any]]:
    """`trnews status --json`'s feeds, by URL."""
    data = json.loads(site.run("status", "--json").stdout)
    return {f["url"]: f for f in data["feeds"]}


def stored_items(config_path: Path) -> dict[str, tuple[Item, list[str]]]:
    """Every item in the database that is in no edition yet, by title, with its ambassador ids."""
    config = load_config(config_path)
    with Store.open(config.database_path) as store:
        rows = store.due_items(since=datetime(2000, 1, 1, tzinfo=UTC), previous=None)
    return {item.title: (item, ids) for item, ids in rows}


def status_editions(site: Site) -> list[dict[str, Any]]:
    return list(json.loads(site.run("status", "--json").stdout)["editions"])
