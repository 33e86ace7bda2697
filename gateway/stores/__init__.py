"""Time-series stores by name, chosen by configuration (``store: sqlite`` or ``influx``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from gateway.errors import ConfigError
from gateway.stores.base import TimeSeriesStore

if TYPE_CHECKING:
    from gateway.config import Settings


async def _sqlite(settings: Settings) -> TimeSeriesStore:
    from gateway.stores.sqlite import SqliteStore

    return await SqliteStore(settings.data_dir / "readings.db").open()


async def _influx(settings: Settings) -> TimeSeriesStore:
    from gateway.stores.influx import InfluxStore

    token = settings.influx_token.get_secret_value() if settings.influx_token else None
    return await InfluxStore(
        settings.influx_url,
        token=token,
        org=settings.influx_org,
        bucket=settings.influx_bucket,
        query_url=settings.influx_query_url,
        timeout_s=settings.influx_timeout_s,
    ).open()


#: Store factories by the name used in ``settings.store``; each gets the whole settings.
STORES: dict[str, Callable[[Settings], Awaitable[TimeSeriesStore]]] = {
    "sqlite": _sqlite,
    "influx": _influx,
}


async def open_store(settings: Settings) -> TimeSeriesStore:
    try:
        factory = STORES[settings.store]
    except KeyError:
        known = ", ".join(sorted(STORES))
        raise ConfigError(f"unknown store {settings.store!r}; known: {known}") from None
    return await factory(settings)


__all__ = ["STORES", "TimeSeriesStore", "open_store"]
