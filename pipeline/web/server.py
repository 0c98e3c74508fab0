"""The web side put together: `Web` (every area of the site), its routes, `make_app` and
`serve`.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect
from starlette.routing import Route

from ..config import load_config
from .app import SecurityHeaders
from .archive import Archive
from .desk import Desk
from .library import LibraryPages
from .report import Report
from .subscribe import Subscribe
from .unsubscribe import Unsubscribe

logger = logging.getLogger("pipeline.web")  # one name for the whole web side, as before


class Web(Subscribe, Unsubscribe, Archive, Report, Desk, LibraryPages):
    """What every request needs, with each area of the site: the routes' handlers."""


def _stopped(signum: int, _frame: object) -> None:
    logger.info("Stopped by %s", signal.Signals(signum).name)


def make_app(config_path: Path | str) -> Starlette:
    """The web application for the config file at `config_path` (read now, once)."""
    web = Web(load_config(config_path))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        sender = threading.Thread(target=web.send_confirmations, name="confirmations", daemon=True)
        sender.start()
        try:
            yield
        finally:
            web.stopping.set()
            web.wake.set()
            await anyio.to_thread.run_sync(sender.join, 10)

    routes = [
        Route("/", web.home, methods=["GET"]),
        Route("/subscribe", web.subscribe, methods=["POST"]),
        Route("/confirm/{token}", web.confirm, methods=["GET"]),
        Route("/unsubscribe", web.unsubscribe_help, methods=["GET"]),
        Route("/unsubscribe/{token}", web.unsubscribe, methods=["GET", "POST"]),
        Route("/archive", web.archive, methods=["GET"]),
        Route("/archive.atom", web.atom, methods=["GET"]),
        Route("/archive/{id}", web.edition, methods=["GET"]),
        Route("/report", web.report, methods=["GET"]),
        Route("/library", web.library, methods=["GET"]),
        Route("/library.atom", web.library_atom, methods=["GET"]),
        Route("/messages", web.messages, methods=["GET"]),
        Route("/messages/{id}.atom", web.message_atom, methods=["GET"]),
        Route("/messages/{id}", web.message_page, methods=["GET"]),
        Route("/ambassadors/{id}.atom", web.ambassador_atom, methods=["GET"]),
        Route("/ambassadors/{id}", web.ambassador, methods=["GET"]),
        Route("/desk/{token}", web.desk, methods=["GET"]),
        Route("/desk/{token}", web.desk_post, methods=["POST"]),
        Route("/desk/{token}/preview", web.desk_preview, methods=["GET"]),
        Route("/healthz", web.healthz, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={
            HTTPException: web.http_error,
            ClientDisconnect: web.client_left,
            Exception: web.server_error,
        },
    )


def serve(config_path: Path | str, host: str, port: int) -> None:
    """Run the web side until SIGTERM or Ctrl-C (uvicorn finishes the requests in flight)."""
    import uvicorn

    app = make_app(config_path)
    # uvicorn stops gracefully on SIGTERM and SIGINT, then raises the signal again for the
    # handler that was there before it; this one lets the process end with exit 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stopped)
    uvicorn.run(
        app,
        host=host,
        port=port,
        # X-Forwarded-For is read by trnews itself, only from [web] trusted_proxies.
        proxy_headers=False,
        server_header=False,
        # Request lines hold unsubscribe and confirmation tokens: not written to any log.
        access_log=False,
        log_level="info",
    )
