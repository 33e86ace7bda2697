"""Time-series stores by name, chosen by configuration (``store: sqlite``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from gateway.stores.base import TimeSeriesStore


async def _sqlite(data_dir: Path) -> TimeSeriesStore:
    from gateway.stores.sqlite import SqliteStore

    return await SqliteStore(data_dir / "readings.db").open()


STORES: dict[str, Callable[[Path], Awaitable[TimeSeriesStore]]] = {"sqlite": _sqlite}


async def open_store(name: str, data_dir: Path) -> TimeSeriesStore:
    try:
        factory = STORES[name]
    except KeyError:
        raise KeyError(f"unknown store {name!r}; known: {', '.join(sorted(STORES))}") from None
    return await factory(data_dir)


__all__ = ["STORES", "TimeSeriesStore", "open_store"]
