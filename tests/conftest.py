"""Shared fixtures: a real HTTP server for feeds, a real SMTP server, the CLI as a process.

Feed files under tests/data/ are dated around 26 November 2026; `feed_bytes` moves their dates
by whole days so that 26 November 2026 is always yesterday (see pipeline/demo.py).
"""

from __future__ import annotations

import base64
import email
import email.policy
import gzip
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from pipeline.demo import days_since_anchor, shift_dates

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
CORPUS = ROOT.parent / "shared" / "corpus"


def feed_bytes(name: str) -> bytes:
    """A feed file from tests/data with its dates moved so its newest entry is yesterday."""
    return shift_dates((DATA / name).read_bytes(), days_since_anchor())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- HTTP ------------------------------------------------------------------------------------


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "application/rss+xml; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering."""
    gate: threading.Event | None = None
    """If set, answer only once it is set: a slow server that the test lets go when it wants."""
    drip: float = 0.0
    """If set, send the body one byte at a time, this many seconds apart."""
    redirect: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    gzip: bool = False


@dataclass
class Request:
    path: str
    headers: dict[str, str]


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # a burst of concurrent fetches must not drop SYNs
    daemon_threads = True


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with kept-alive connections, no log lines, headers sent without delay."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes

    def log_message(self, *args: Any) -> None:
        pass


class LoopbackHTTP:
    """A threaded HTTP server on a loopback address, in a thread of its own: what every test
    server shares. Each subclass brings its handler (a `QuietHandler` with its `do_GET`)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1") -> None:
        self.httpd = _Server((host, 0), handler)
        self.host = host
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FeedServer(LoopbackHTTP):
    """A threaded HTTP server on loopback serving registered routes; records every request."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        server = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                server.requests.append(
                    Request(self.path, {k.lower(): v for k, v in self.headers.items()})
                )
                route = server.routes.get(self.path)
                if route is None:
                    self._answer(404, b"not found", "text/plain")
                    return
                if route.delay:
                    time.sleep(route.delay)
                if route.gate is not None:
                    route.gate.wait(timeout=120)
                if route.redirect:
                    self.send_response(route.status)
                    self.send_header("Location", route.redirect)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                inm = self.headers.get("If-None-Match")
                ims = self.headers.get("If-Modified-Since")
                if (route.etag and inm == route.etag) or (
                    route.last_modified and not route.etag and ims == route.last_modified
                ):
                    self.send_response(304)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                extra = dict(route.headers)
                if route.etag:
                    extra["ETag"] = route.etag
                if route.last_modified:
                    extra["Last-Modified"] = route.last_modified
                body = route.body
                if route.gzip:
                    body = gzip.compress(body)
                    extra["Content-Encoding"] = "gzip"
                self._answer(route.status, body, route.content_type, extra, route.drip)

            def _answer(
                self,
                status: int,
                body: bytes,
                ctype: str,
                extra: dict[str, str] | None = None,
                drip: float = 0.0,
            ) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    for k, v in (extra or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    if drip:
                        for i in range(len(body)):
                            self.wfile.write(body[i : i + 1])
                            self.wfile.flush()
                            time.sleep(drip)
                    else:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        super().__init__(Handler)

    def add(self, path: str, body: bytes = b"", **kw: Any) -> str:
        """Serve `body` at `path`; returns the full URL."""
        self.routes[path] = Route(body=body, **kw)
        return self.url(path)

    def add_file(self, path: str, name: str, **kw: Any) -> str:
        return self.add(path, feed_bytes(name), **kw)

    def requests_to(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def reset(self) -> None:
        self.routes.clear()
        self.requests.clear()


@pytest.fixture(scope="session")
def _feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    yield server
    server.close()


@pytest.fixture
def feeds(_feed_server: FeedServer) -> Iterator[FeedServer]:
    """The loopback feed server, with no routes registered."""
    _feed_server.reset()
    yield _feed_server
    _feed_server.reset()


# -- a host that hangs ----------------------------------------------------------------------


class SilentServer:
    """Accepts TCP connections and never sends a byte: a feed host that hangs."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.held: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.held.append(conn)  # read nothing, answer nothing, close nothing

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}{path}"

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


# -- SMTP ------------------------------------------------------------------------------------


class SmtpHandler:
    """Accepts every message, unless told to refuse a recipient with a given reply."""

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, EmailMessage]] = []
        self.arrived: list[float] = []
        """time.monotonic() when each message's DATA was accepted."""
        self.refuse: dict[str, str] = {}
        """Recipient → SMTP reply (e.g. "451 4.7.1 Try again later")."""
        self.lock = threading.Lock()

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        with self.lock:
            self.messages.append((envelope, msg))  # type: ignore[arg-type]
            self.arrived.append(time.monotonic())
        return "250 Message accepted"

    def by_recipient(self) -> dict[str, EmailMessage]:
        with self.lock:
            return {env.rcpt_tos[0]: msg for env, msg in self.messages}


@dataclass
class SmtpServer:
    handler: SmtpHandler
    port: int


@pytest.fixture(scope="session")
def _smtp_server() -> Iterator[SmtpServer]:
    handler = SmtpHandler()
    port = free_port()  # Controller(port=0) fails: it probes the port it was given
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield SmtpServer(handler, port)
    controller.stop()


@pytest.fixture
def smtp(_smtp_server: SmtpServer) -> Iterator[SmtpServer]:
    """The loopback SMTP server, with no messages and no faults."""
    _smtp_server.handler.messages.clear()
    _smtp_server.handler.arrived.clear()
    _smtp_server.handler.refuse.clear()
    yield _smtp_server
    _smtp_server.handler.messages.clear()
    _smtp_server.handler.refuse.clear()


# -- config and CLI --------------------------------------------------------------------------

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


@pytest.fixture
def site(tmp_path: Path, _smtp_server: SmtpServer) -> Site:
    """An empty working folder with a config writer and the CLI."""
    return Site(root=tmp_path, smtp_port=_smtp_server.port)


def html_part(msg: EmailMessage) -> str:
    part = msg.get_body(("html",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def text_part(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


# -- DKIM ---------------------------------------------------------------------------------------


@dataclass
class DkimKey:
    pem: bytes
    txt: bytes
    """The DNS TXT record that publishes the public key."""

    def dns(self, name: bytes, timeout: int = 5) -> bytes | None:
        """dkimpy's `dnsfunc`: this key's record at `nyhetsbrev._domainkey.example.org`."""
        return self.txt if name.rstrip(b".") == b"nyhetsbrev._domainkey.example.org" else None


@pytest.fixture(scope="session")
def dkim_key() -> DkimKey:
    """A 2048-bit RSA key for `[delivery.dkim]` (DKIM_TOML), made once."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption())
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return DkimKey(pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der))


DKIM_TOML = """\
[delivery.dkim]
domain = "example.org"
selector = "nyhetsbrev"
key_file = "{key_file}"
"""
