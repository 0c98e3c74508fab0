"""A small IMAP4rev1 server over TLS on loopback: one folder, the commands imaplib's client
sends to read unseen messages and flag them seen (LOGIN, SELECT, UID SEARCH UNSEEN, UID FETCH
BODY.PEEK[], UID STORE +FLAGS, LOGOUT). Enough to test a client against, not a mail server."""

from __future__ import annotations

import re
import socketserver
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .servers import free_port


@dataclass
class ImapMessage:
    data: bytes
    seen: bool = False


@dataclass
class ImapFolder:
    """The one folder, and the one account that may read it."""

    username: str
    password: str
    name: str = "INBOX"
    messages: dict[int, ImapMessage] = field(default_factory=dict)
    logins: list[str] = field(default_factory=list)
    """Each login tried: the username."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, data: bytes) -> int:
        with self.lock:
            uid = max(self.messages, default=0) + 1
            self.messages[uid] = ImapMessage(data)
            return uid

    def unseen(self) -> list[int]:
        with self.lock:
            return [uid for uid, m in self.messages.items() if not m.seen]


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def reply(self, line: str | bytes) -> None:
        data = line if isinstance(line, bytes) else line.encode()
        self.wfile.write(data + b"\r\n")

    def handle(self) -> None:
        folder = self.server.folder
        self.reply("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] test server ready")
        authed = False
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            tag, _, rest = raw.decode().rstrip("\r\n").partition(" ")
            command, _, args = rest.partition(" ")
            command = command.upper()
            if command == "CAPABILITY":
                self.reply("* CAPABILITY IMAP4rev1 AUTH=PLAIN")
                self.reply(f"{tag} OK CAPABILITY done")
            elif command == "LOGIN":
                user, password = (_unquote(a) for a in _args(args))
                folder.logins.append(user)
                if user == folder.username and password == folder.password:
                    authed = True
                    self.reply(f"{tag} OK LOGIN done")
                else:
                    self.reply(f"{tag} NO [AUTHENTICATIONFAILED] Invalid credentials")
            elif command == "LOGOUT":
                self.reply("* BYE logging out")
                self.reply(f"{tag} OK LOGOUT done")
                return
            elif not authed:
                self.reply(f"{tag} BAD log in first")
            elif command == "SELECT":
                if _unquote(args) != folder.name:
                    self.reply(f"{tag} NO no such folder")
                    continue
                self.reply(f"* {len(folder.messages)} EXISTS")
                self.reply("* FLAGS (\\Seen)")
                self.reply(f"{tag} OK [READ-WRITE] SELECT done")
            elif command == "UID":
                self.uid(tag, args)
            else:
                self.reply(f"{tag} BAD unknown command")

    def uid(self, tag: str, args: str) -> None:
        folder = self.server.folder
        sub, _, rest = args.partition(" ")
        sub = sub.upper()
        if sub == "SEARCH":
            self.reply("* SEARCH " + " ".join(map(str, folder.unseen())))
        elif sub == "FETCH":
            uid = int(rest.split()[0])
            message = folder.messages.get(uid)
            if message is not None:
                seq = list(folder.messages).index(uid) + 1
                head = f"* {seq} FETCH (UID {uid} BODY[] {{{len(message.data)}}}".encode()
                self.wfile.write(head + b"\r\n" + message.data + b")\r\n")
        elif sub == "STORE":
            uid = int(rest.split()[0])
            if "\\SEEN" in rest.upper() and uid in folder.messages:
                with folder.lock:
                    folder.messages[uid].seen = True
        else:
            self.reply(f"{tag} BAD unknown UID command")
            return
        self.reply(f"{tag} OK UID {sub} done")


def _args(text: str) -> list[str]:
    return re.findall(r'"(?:[^"\\]|\\.)*"|\S+', text)


def _unquote(text: str) -> str:
    text = text.strip()
    if text.startswith('"') and text.endswith('"'):
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    folder: ImapFolder
    context: ssl.SSLContext

    def get_request(self) -> tuple[ssl.SSLSocket, object]:  # type: ignore[override]
        sock, address = self.socket.accept()
        sock.settimeout(10)
        return self.context.wrap_socket(sock, server_side=True), address

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that went away, or a TLS handshake the test made fail on purpose


@contextmanager
def imap_server(folder: ImapFolder, context: ssl.SSLContext) -> Iterator[int]:
    """Serve `folder` over IMAPS (TLS from the first byte) on loopback; yields the port."""
    server = _Server(("127.0.0.1", free_port()), _Handler)
    server.folder = folder
    server.context = context
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
