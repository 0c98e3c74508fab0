"""Real servers on loopback for the tests: HTTP (feeds, a host that hangs) and SMTP."""

from __future__ import annotations

import email
import email.policy
import gzip
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from support.feeds import feed_bytes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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

    def __init__(
        self,
        handler: type[BaseHTTPRequestHandler],
        host: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.httpd = _Server((host, 0), handler)
        self.scheme = "http"
        if tls is not None:  # https, with the certificate the context carries
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.host = host
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FeedServer(LoopbackHTTP):
    """A threaded HTTP server on loopback serving registered routes; records every request.
    With `tls`, it serves https."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
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

        super().__init__(Handler, tls=tls)

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


class Pipelining:
    """An aiosmtpd handler that offers PIPELINING (RFC 2920) in its EHLO, as Postfix does, so
    that trnews sends a message's commands in one write; `pipelining = False` for a server
    without it. aiosmtpd reads the commands in order either way."""

    pipelining = True

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # what aiosmtpd does itself when no handler answers EHLO
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses


class SmtpHandler(Pipelining):
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


@contextmanager
def smtp_server(handler: SmtpHandler, port: int | None = None, **kw: Any) -> Iterator[int]:
    """A real aiosmtpd server on loopback with these SMTP options; yields its port."""
    port = port or free_port()  # Controller(port=0) fails: it probes the port it was given
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kw)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()
