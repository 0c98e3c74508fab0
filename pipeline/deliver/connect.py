"""Open the configured transport, and check what a send will meet before it starts."""

from __future__ import annotations

import ssl
from collections.abc import Callable

from ..config import Config
from ..errors import ConfigError, Problem
from .message import make_signer
from .smtp import SmtpTransport
from .transports import MaildirTransport, Pacer, Transport


def connector(config: Config) -> tuple[Callable[[], Transport], int]:
    """How to open one connection of the configured transport, and how many to open at once."""
    if config.delivery.transport == "smtp":
        smtp = config.delivery.smtp
        ca = config.resolve(smtp.ca_file) if smtp.ca_file else None
        pacer = Pacer(smtp.max_per_second)
        return (lambda: SmtpTransport(smtp, ca, pacer)), smtp.connections
    path = config.maildir_path
    verp = config.delivery.return_path is not None
    return (lambda: MaildirTransport(path, verp)), 1


def make_transport(config: Config) -> Transport:
    """One connection of the transport the config names."""
    return connector(config)[0]()


PROBE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: probe\r\n\r\nprobe\r\n"


def check_setup(config: Config) -> list[str]:
    """What `trnews check` verifies of delivery beyond the file's own keys, as the send will
    meet it: the DKIM key reads and signs, the CA file reads (ConfigError if not, exit 2);
    and warnings for what a service may still set before the send (the SMTP password)."""
    signer = make_signer(config)
    if signer is not None:
        import dkim

        try:
            signer.sign(PROBE)
        except dkim.DKIMException as e:  # a key that parses but cannot sign (too short, …)
            path = config.resolve(config.delivery.dkim.key_file) if config.delivery.dkim else ""
            problem = Problem("delivery.dkim.key_file", f"{path} cannot sign: {e}")
            raise ConfigError(config.path, [problem]) from e
    if config.delivery.transport != "smtp":
        return []
    smtp = config.delivery.smtp
    if smtp.ca_file is not None:
        ca = config.resolve(smtp.ca_file)
        try:
            ssl.create_default_context(cafile=ca)
        except (OSError, ssl.SSLError) as e:
            problem = Problem("delivery.smtp.ca_file", f"{ca} is not a readable PEM file ({e})")
            raise ConfigError(config.path, [problem]) from e
    warnings = []
    if smtp.username and not smtp.password:
        warnings.append(
            f"delivery.smtp.username is {smtp.username!r} but ${smtp.password_env} is not set "
            "here: the send cannot log in unless the service that runs it sets it"
        )
    return warnings
