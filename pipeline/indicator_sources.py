"""Fetch each indicator's source during `collect`, and store its series (pipeline.fetch →
pipeline.jsonstat → store).

- A URL is fetched with a feed's care (pipeline.fetch: conditional GET with the validators of
  its last fetch, one deadline, the size cap, retries, the redirect rule), one request at a
  time per host; a local path is read (under the same cap) and is "not modified" while its
  size and modification time stay the same.
- Sparingly: Statistics Norway allows about 30 requests a minute, and its newer API is closed
  some mornings and weekends. A URL that worked is fetched again only REFETCH_AFTER later; one
  that failed, on the next collect. A local file is read on every collect.
- A source that fails (cannot be fetched, or is not a dataset trnews can read) keeps its last
  good series; its error is stored for the report, `status` and the alerts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from . import redact
from .config import Config, IndicatorConfig
from .jsonstat import DatasetError, Series, read
from .models import IndicatorOutcome
from .store import Store
from .store.indicators import IndicatorSource

logger = logging.getLogger(__name__)

REFETCH_AFTER = timedelta(hours=6)
"""A source that worked is not asked again before this: statistics are published at most
daily (SSB at 08:00), and four looks a day find a new figure the day it appears."""
ACCEPT = "application/json, text/csv;q=0.9, text/plain;q=0.5, */*;q=0.1"


@dataclass(frozen=True)
class _Got:
    """One source's answer: a series, a 304, or an error."""

    series: Series | None = None
    not_modified: bool = False
    error: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    attempts: int = 1


def shown(config: Config, indicator: IndicatorConfig) -> str:
    """The source as `collect`, `status` and alerts show it: a URL redacted, a path as is."""
    if indicator.is_local:
        return config.indicator_location(indicator)
    return redact.url(indicator.source)


def due(state: IndicatorSource | None, location: str, now: datetime) -> datetime | None:
    """When a URL that worked may be asked again, if that is after `now`; else None (fetch)."""
    if state is None or state.source != location or state.consecutive_failures:
        return None
    if state.last_success is None or now - state.last_success >= REFETCH_AFTER:
        return None
    return state.last_success + REFETCH_AFTER


def _read_local(path: Path, state: IndicatorSource | None, cap: int, sum_over: str | None) -> _Got:
    try:
        stat = path.stat()
        stamp = f"{stat.st_mtime_ns}-{stat.st_size}"
        if state is not None and state.etag == stamp and not state.consecutive_failures:
            return _Got(not_modified=True)
        if stat.st_size > cap:
            return _Got(error=f"larger than {cap // 2**20} MB: not read")
        return _Got(read(path.read_bytes(), sum_over=sum_over), etag=stamp)
    except FileNotFoundError:
        return _Got(error="no such file")
    except OSError as e:
        return _Got(error=f"cannot read: {e.strerror}")
    except DatasetError as e:
        return _Got(error=str(e))


async def _fetch(
    config: Config, wanted: list[tuple[IndicatorConfig, IndicatorSource | None]]
) -> list[_Got]:
    """Each source's answer, in order; URLs of one host one at a time."""
    from .fetch import ACCEPT_ENCODING, Body, Source, fetch_http, host_clients, host_of, user_agent

    settings = config.collect
    headers = {
        "User-Agent": user_agent(config),
        "Accept": ACCEPT,
        "Accept-Encoding": ACCEPT_ENCODING,
    }
    hosts: dict[str, asyncio.Semaphore] = {}
    async with host_clients(settings, headers) as client_for:

        async def one(indicator: IndicatorConfig, state: IndicatorSource | None) -> _Got:
            location = config.indicator_location(indicator)
            try:
                if indicator.is_local:
                    return await asyncio.to_thread(
                        _read_local, Path(location), state, settings.max_bytes, indicator.sum
                    )
                same = state is not None and state.source == location
                source = Source(
                    location,
                    state.etag if same and state else None,
                    state.last_modified if same and state else None,
                )
                async with hosts.setdefault(host_of(location), asyncio.Semaphore(1)):
                    got = await fetch_http(client_for(location), source, settings)
                if not isinstance(got, Body):
                    if got.not_modified:
                        return _Got(not_modified=True, attempts=got.attempts)
                    tried = f" (tried {got.attempts} times)" if got.attempts > 1 else ""
                    return _Got(error=f"{got.error or 'no answer'}{tried}", attempts=got.attempts)
                try:
                    series = await asyncio.to_thread(read, got.data, sum_over=indicator.sum)
                except DatasetError as e:
                    return _Got(error=str(e), attempts=got.attempts)
                return _Got(
                    series, etag=got.etag, last_modified=got.last_modified, attempts=got.attempts
                )
            except Exception as e:  # a bug met on one source must not stop the others
                logger.debug("Unexpected error on %s", location, exc_info=True)
                return _Got(error=f"unexpected error ({type(e).__name__}: {e}); please report it")

        return list(await asyncio.gather(*(one(i, s) for i, s in wanted)))


def collect(
    config: Config,
    store: Store,
    *,
    now: datetime,
    on_outcome: Callable[[IndicatorOutcome], None] | None = None,
) -> list[IndicatorOutcome]:
    """Fetch every indicator source that is due and store its series; one outcome per
    indicator, in config order. A failure keeps the last good series and never raises."""
    if not config.indicator:
        return []
    states = {i.id: store.indicator_source(i.id) for i in config.indicator}
    wanted = []
    waiting: dict[str, datetime] = {}
    for indicator in config.indicator:
        location = config.indicator_location(indicator)
        when = None if indicator.is_local else due(states[indicator.id], location, now)
        if when is not None:
            waiting[indicator.id] = when
        else:
            wanted.append((indicator, states[indicator.id]))
    answers = dict(
        zip(
            (i.id for i, _ in wanted),
            asyncio.run(_fetch(config, wanted)) if wanted else [],
            strict=True,
        )
    )
    outcomes = []
    for indicator in config.indicator:
        location = config.indicator_location(indicator)
        where = shown(config, indicator)
        if indicator.id in waiting:
            outcome = IndicatorOutcome(indicator.id, where, due=waiting[indicator.id])
        else:
            outcome = _store(store, indicator, location, where, answers[indicator.id], now)
        _log(outcome)
        outcomes.append(outcome)
        if on_outcome:
            on_outcome(outcome)
    return outcomes


def _store(
    store: Store, indicator: IndicatorConfig, location: str, where: str, got: _Got, now: datetime
) -> IndicatorOutcome:
    if got.error is not None:
        store.indicator_failed(indicator.id, location, got.error, now=now)
        return IndicatorOutcome(indicator.id, where, error=got.error, attempts=got.attempts)
    if got.not_modified or got.series is None:
        store.indicator_not_modified(indicator.id, location, now=now)
        return IndicatorOutcome(indicator.id, where, not_modified=True, attempts=got.attempts)
    series = got.series
    saved = store.save_series(
        indicator.id,
        location,
        series.observations,
        now=now,
        unit=series.unit,
        decimals=series.decimals,
        etag=got.etag,
        last_modified=got.last_modified,
    )
    return IndicatorOutcome(
        indicator.id,
        where,
        new=saved.new,
        revised=saved.revised,
        periods=len(series.observations),
        attempts=got.attempts,
    )


def _log(o: IndicatorOutcome) -> None:
    if o.error is not None:
        logger.warning("Indicator source %s (%s) failed: %s", o.source, o.id, o.error)
    elif o.due is not None:
        logger.info("Not fetching %s (%s) before %s: it worked recently", o.source, o.id, o.due)
    elif o.not_modified:
        logger.info("Fetched %s (%s): not modified", o.source, o.id)
    else:
        logger.info(
            "Fetched %s (%s): %d new, %d revised of %d periods",
            o.source,
            o.id,
            o.new,
            o.revised,
            o.periods,
        )
