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
        self.report_page: OnDemand[object, tuple[str, str]] = OnDemand(
            "the open report", self._report, fresh_for=config.web.report_cache_minutes * 60
        )

    async def report(self, request: Request) -> Response:
        # Keyed by what the report reads from the database (Changes): built again once a
        # collect (or a send's collect) has stored an item, in any process; otherwise kept
        # report_cache_minutes (the calendars it fetches, the share of the year elapsed).
        mark = self.changes.mark("the report's items", lambda store: store.report_mark())
        page = await self.report_page.get(mark)
        assert page is not None
        return _kept(page)

    async def _report(self, _: object) -> tuple[str, str]:
        from .. import report as report_stage

        def build(store: Store) -> tuple[str, str]:
            built = report_stage.build(self.config, store=store)
            page = report_stage.to_html(built, self.config, site=self.site("report"))
            return page, content_security_policy(page)

        return await self.db(build, limiter=self.builders)
