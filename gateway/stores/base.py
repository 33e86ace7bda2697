"""The time-series store interface: everything the gateway asks of a store.

Kept tiny (Telegraf-style) so a second implementation (InfluxDB line protocol,
VictoriaMetrics) is one class; the rest of the gateway never knows which it has.
Writes are idempotent on (device, metric, timestamp): a redelivered message is
not stored twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.model import DeviceEvent, Reading


class TimeSeriesStore(Protocol):
    async def write(self, readings: Sequence[Reading], events: Sequence[DeviceEvent]) -> int:
        """Store a batch; duplicates are ignored. Return how many readings were new, or, for a
        remote store that cannot tell (VictoriaMetrics), how many were written."""
        ...

    async def query(
        self, device_id: str, metric: str, start_ms: int, end_ms: int, limit: int = 10_000
    ) -> list[Reading]:
        """Readings of one series in ``[start_ms, end_ms]``, oldest first."""
        ...

    async def latest(self, device_id: str) -> dict[str, Reading]:
        """The newest reading of each metric of a device."""
        ...

    async def events(self, device_id: str, start_ms: int, end_ms: int) -> list[DeviceEvent]: ...

    async def count(self) -> int:
        """How many readings are stored (for health and tests)."""
        ...

    async def close(self) -> None: ...
