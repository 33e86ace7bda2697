"""Local time of day for epoch-millisecond timestamps, fast enough for the hot path.

Daily patterns (an enterprise's load, cable temperatures following it) follow the
site's wall clock, not UTC. Converting every point through :mod:`zoneinfo` would
cost more than the detector itself, so the UTC offset is looked up once per UTC
hour and cached: zones change offset on (half-)hour boundaries, and
Asia/Shanghai, the default, has had no change since 1991.

>>> clock = LocalClock("Asia/Shanghai")
>>> clock.ms_of_day(0)  # 1970-01-01 08:00 in Shanghai
28800000
>>> clock.ms_of_day_many(np.array([0, 16 * 3_600_000], dtype=np.int64)).tolist()
[28800000, 0]
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from detectors.base import Timestamps

DAY_MS = 86_400_000
_HOUR_MS = 3_600_000
_CACHES: dict[str, dict[int, int]] = {}


class LocalClock:
    """Milliseconds since local midnight in one IANA zone."""

    __slots__ = ("_cache", "_zone", "tz")

    def __init__(self, tz: str = "Asia/Shanghai") -> None:
        try:
            self._zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {tz!r}") from None
        self.tz = tz
        # Shared by every clock of the zone: thousands of series on one site's zone
        # look each hour up once.
        self._cache = _CACHES.setdefault(tz, {})

    def _offset_ms(self, hour: int) -> int:
        offset = self._cache.get(hour)
        if offset is None:
            moment = datetime.fromtimestamp(hour * 3600, tz=UTC)
            delta = self._zone.utcoffset(moment.astimezone(self._zone))
            offset = 0 if delta is None else int(delta.total_seconds() * 1000)
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[hour] = offset
        return offset

    def ms_of_day(self, ts_ms: int) -> int:
        """Milliseconds since local midnight at ``ts_ms``."""
        return (ts_ms + self._offset_ms(ts_ms // _HOUR_MS)) % DAY_MS

    def ms_of_day_many(self, ts_ms: Timestamps) -> Timestamps:
        """:meth:`ms_of_day` over an array."""
        ts = np.asarray(ts_ms, dtype=np.int64)
        if len(ts) == 0:
            return ts.copy()
        hours = ts // _HOUR_MS
        lo, hi = int(hours.min()), int(hours.max())
        if hi - lo < 4 * len(ts) + 1000:
            # A table over the hours spanned (the usual case: a batch covers days).
            table = np.array([self._offset_ms(h) for h in range(lo, hi + 1)], dtype=np.int64)
            offsets = table[hours - lo]
        else:
            unique, inverse = np.unique(hours, return_inverse=True)
            offsets = np.array([self._offset_ms(int(h)) for h in unique], dtype=np.int64)[inverse]
        result: Timestamps = (ts + offsets) % DAY_MS
        return result
