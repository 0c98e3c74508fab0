"""Delivery: build each reader's message and hand it to a transport, a Maildir or SMTP.

- `message`: the message itself (headers, body encoded once per edition, DKIM, Message-ID);
- `transports`: what a transport is, and the Maildir; `smtp`: SMTP, pipelined, paced, with
  TLS hints; `connect`: the configured one opened, and checked before a send;
- `pool`: many connections at once, telling a `Ledger` how each message went;
- `editions`: the readers owed frozen editions, queued in batches and marked in the store;
- `notify`: one message now (a test send, an alert, a confirmation), signed like the rest.
"""

from __future__ import annotations

from .connect import check_setup, connector, make_transport
from .editions import BATCH, MAX_REASONS, NON_ASCII_LOCAL_PART, Progress, deliver_editions
from .message import (
    LIST_UNSUBSCRIBE_POST,
    DkimSigner,
    MessageTemplate,
    PlainHeader,
    build_message,
    display_name,
    header_url,
    list_id,
    list_unsubscribe,
    make_signer,
    message_id,
    to_header,
    wire_address,
)
from .pool import RECONNECT_DELAYS, REFUSE_ALL, RETRY_DELAYS, Job, Ledger, Pool
from .smtp import SmtpTransport
from .transports import MaildirTransport, Outcome, Pacer, Transport

__all__ = [
    "BATCH",
    "LIST_UNSUBSCRIBE_POST",
    "MAX_REASONS",
    "NON_ASCII_LOCAL_PART",
    "RECONNECT_DELAYS",
    "REFUSE_ALL",
    "RETRY_DELAYS",
    "DkimSigner",
    "Job",
    "Ledger",
    "MaildirTransport",
    "MessageTemplate",
    "Outcome",
    "Pacer",
    "PlainHeader",
    "Pool",
    "Progress",
    "SmtpTransport",
    "Transport",
    "build_message",
    "check_setup",
    "connector",
    "deliver_editions",
    "display_name",
    "header_url",
    "list_id",
    "list_unsubscribe",
    "make_signer",
    "make_transport",
    "message_id",
    "to_header",
    "wire_address",
]
