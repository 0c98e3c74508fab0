"""The open report at /report: pipeline/report.py's page, with the site's navigation."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..config import Config
from ..store import Store
from .app import Core, OnDemand, _kept, content_security_policy


class Report(Core):
    """The open report, built on demand."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.report_page = OnDemand(
            "the open report", self._report, fresh_for=config.web.report_cache_minutes * 60
        )

    async def report(self, request: Request) -> Response:
        page = await self.report_page.get(None)
        assert page is not None
        return _kept(page)

    async def _report(self, _: None) -> tuple[str, str]:
        from .. import report as report_stage

        def build(store: Store) -> tuple[str, str]:
            built = report_stage.build(self.config, store=store)
            page = report_stage.to_html(built, self.config, site=self.site("report"))
            return page, content_security_policy(page)

        return await self.db(build, limiter=self.builders)
