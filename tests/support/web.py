"""`trnews serve` as a process on loopback, and what a browser or the store sees of it."""

from __future__ import annotations

import itertools
import re
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from email.message import EmailMessage

import httpx

from pipeline import subscribers
from pipeline.store import Store
from support.mail import text_part
from support.servers import free_port
from support.site import Site

SECRET = "test-secret"  # what Site.process_env() gives the CLI and the server

PUBLIC = "https://nyhetsbrev.example.org"


@dataclass
class WebServer:
    """`trnews serve` as a process on a free loopback port, with the site's config."""

    site: Site
    process: subprocess.Popen[bytes]
    port: int

    @classmethod
    def start(cls, site: Site, *options: str) -> WebServer:
        """Start it; `options` go before the command (`-v` logs at INFO)."""
        if not site.config.exists():
            site.write()
        port = free_port()
        log = (site.root / "serve.log").open("wb")
        process = subprocess.Popen(
            site.command(*options, "serve", "--port", str(port)),
            cwd=site.root,
            env=site.process_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server = cls(site, process, port)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"trnews serve exited {process.returncode}: {server.log()}")
            try:
                if httpx.get(server.url("/healthz"), timeout=1).status_code == 200:
                    return server
            except httpx.TransportError:
                time.sleep(0.1)
        server.stop()
        raise AssertionError(f"trnews serve did not answer /healthz: {server.log()}")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def local(self, public_url: str) -> str:
        """A link from a message (under public_url), as this server answers it."""
        assert public_url.startswith(PUBLIC), public_url
        return self.url(public_url.removeprefix(PUBLIC))

    def log(self) -> str:
        return (self.site.root / "serve.log").read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def messages_to(site: Site, address: str) -> list[EmailMessage]:
    return [m for m in site.messages() if address in str(m["To"])]


def wait_for_messages(site: Site, address: str, count: int = 1) -> list[EmailMessage]:
    """The messages to `address` once there are `count` (the confirmation goes after the
    answer); then a moment more, so that one too many would be seen too."""
    deadline = time.monotonic() + 10
    while len(messages_to(site, address)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    return messages_to(site, address)


def confirm_link(msg: EmailMessage) -> str:
    [link] = re.findall(r"https://\S+/confirm/\S+", text_part(msg))
    return link


def states(site: Site) -> dict[str, str]:
    """Every subscriber's state, as `subscribers list --json` gives it (read in-process: the
    tests ask often, and a CLI process each time would be slow)."""
    with Store.open(site.db) as store:
        return {s.email: s.state.value for s in store.subscribers()}


def add_reader(site: Site, address: str, *, unsubscribed: bool = False) -> int:
    """An address an admin added (as `subscribers add`, in-process); returns its id."""
    with Store.open(site.db) as store:
        subscribers.add(store, address)
        if unsubscribed:
            subscribers.remove(store, address)
        found = store.subscriber(address)
    assert found is not None
    return found.id


def database(site: Site) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the tables a request could change. The confirmation sender's bookkeeping
    (when a confirmation went, its tries) is left out: `serve` writes it in the background
    just after the message is out, whatever the request."""
    sender_columns = {
        "confirmation_sent",
        "confirmation_retry",
        "confirmation_tries",
        "confirmation_error",
    }
    with sqlite3.connect(site.db) as conn:
        rows = {}
        for table in ("subscribers", "consents", "suppressed", "deliveries"):
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            kept = ", ".join(c for c in columns if c not in sender_columns)
            rows[table] = sorted(conn.execute(f"SELECT {kept} FROM {table}").fetchall(), key=repr)
        return rows


_clients = itertools.count(1)


def new_client() -> dict[str, str]:
    """Headers of a client of its own (the shared server trusts its loopback proxy)."""
    return {"X-Forwarded-For": f"198.51.100.{next(_clients)}"}


def subscribe(server: WebServer, email: str, name: str = "", **headers: str) -> httpx.Response:
    data = {"email": email, "name": name, "consent": "1"}
    return httpx.post(
        server.url("/subscribe"), data=data, headers={**new_client(), **headers}, timeout=10
    )


def unsubscribe_url(msg: EmailMessage) -> str:
    return str(msg["List-Unsubscribe"]).strip().strip("<>")
