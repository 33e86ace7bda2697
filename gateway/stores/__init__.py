"""Time-series stores by name, chosen by configuration (``store: sqlite``)."""

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


#: Store factories by the name used in ``settings.store``; each gets the whole settings.
STORES: dict[str, Callable[[Settings], Awaitable[TimeSeriesStore]]] = {"sqlite": _sqlite}


async def open_store(settings: Settings) -> TimeSeriesStore:
    try:
        factory = STORES[settings.store]
    except KeyError:
        known = ", ".join(sorted(STORES))
        raise ConfigError(f"unknown store {settings.store!r}; known: {known}") from None
    return await factory(settings)


__all__ = ["STORES", "TimeSeriesStore", "open_store"]
