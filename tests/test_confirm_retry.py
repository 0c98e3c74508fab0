"""A confirmation message the mail server could not take is sent when it comes back.

A real `trnews serve` signs visitors up while its SMTP server is down; the test then starts a
real aiosmtpd server on that port and waits (polling, with a generous deadline) for the
confirmation to arrive without a second form post, and for the admins' one alert.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing

import httpx
from support.servers import SmtpHandler, free_port, smtp_server
from support.site import Site
from support.web import WebServer, confirm_link, states, subscribe

ADMIN = "drift@example.org"
DEADLINE = 120.0
"""Seconds to wait for what the server does in the background (it tries again within ~30 s)."""


def until(what: str, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not done():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.2)


def queued_alerts(site: Site) -> list[tuple[str, str]]:
    with closing(sqlite3.connect(site.db)) as db:
        return db.execute("SELECT key, subject FROM alerts ORDER BY id").fetchall()


def test_a_confirmation_lost_to_a_mail_server_down_arrives_when_it_is_back(site: Site) -> None:
    port = free_port()  # nothing listens here yet: the mail server is down
    site.transport = "smtp"
    site.smtp_port = port
    site.extra_toml = f'[alerts]\nto = ["{ADMIN}"]\n'
    site.write()
    server = WebServer.start(site)
    try:
        for visitor in ("kari@example.org", "ola@example.org"):
            answer = subscribe(server, visitor)
            assert answer.status_code == 200
            assert "Sjekk e-posten din" in answer.text

        # The admins hear of it once for the outage, not once per visitor.
        until(
            "the alert",
            lambda: any(k.startswith("confirmations-unsent:") for k, _ in queued_alerts(site)),
        )
        until(
            "both visitors counted",
            lambda: json.loads(site.run("status", "--json").stdout)["confirmations_unsent"] == 2,
        )
        status = site.run("status").stdout
        assert "2 bekreftelser på påmelding er ikke sendt" in status

        handler = SmtpHandler()
        with smtp_server(handler, port=port):
            until(
                "the confirmations and the alert",
                lambda: (
                    {env.rcpt_tos[0] for env, _ in handler.messages}
                    >= {"kari@example.org", "ola@example.org", ADMIN}
                ),
            )
        by_recipient = handler.by_recipient()
        alerts = [m for env, m in handler.messages if env.rcpt_tos == [ADMIN]]
        assert len(alerts) == 1
        assert "bekreftelse" in str(alerts[0]["Subject"])
        # Each visitor got exactly one message, and its link works.
        for visitor in ("kari@example.org", "ola@example.org"):
            assert [env.rcpt_tos for env, _ in handler.messages].count([visitor]) == 1
            link = confirm_link(by_recipient[visitor])
            assert httpx.get(server.local(link), timeout=10).status_code == 200
        assert states(site) == {"kari@example.org": "active", "ola@example.org": "active"}
        assert "Bekreft abonnementet" in str(by_recipient["kari@example.org"]["Subject"])
        assert "bekreftelse" not in site.run("status").stdout
    finally:
        assert server.stop() == 0
