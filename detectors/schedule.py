"""When a rule is active: local hours on chosen weekdays, in an explicit time zone.

A night-time rule ("load above the shutdown baseline between 22:00 and 06:00") is
only right if "22:00" means the enterprise's wall clock, so a schedule always
carries its zone (Asia/Shanghai unless the rule or the gateway says otherwise)
and is evaluated on each reading's own timestamp. Zones with daylight saving
time (a site configured as Europe/Berlin) are handled by converting every
timestamp with its own UTC offset, never one offset for a whole batch.

A range that spans midnight belongs to the day it starts on, as in cron:
``hours: "22:00-06:00", days: [fri]`` is active from Friday 22:00 to Saturday
06:00, not on Friday morning.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from detectors.base import Timestamps

_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MIN_MS = 60_000
#: Offsets are looked up once per quarter hour: every zone changes offset on one.
_BUCKET_MS = 15 * _MIN_MS


def parse_range(text: str) -> tuple[int, int]:
    """``"HH:MM-HH:MM"`` as minutes since local midnight; ValueError if it is not one.

    >>> parse_range("22:00-06:00")
    (1320, 360)
    >>> parse_range("00:00-24:00")
    (0, 1440)
    >>> parse_range("8:00-8:00")
    Traceback (most recent call last):
    ...
    ValueError: hours range '8:00-8:00' is empty (start equals end)
    """
    match = _RANGE.match(text)
    if match is None:
        raise ValueError(f"hours range {text!r} is not HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if m1 > 59 or m2 > 59 or start > 23 * 60 + 59 or end > 24 * 60:
        raise ValueError(f"hours range {text!r} has an impossible time")
    if start == end:
        raise ValueError(f"hours range {text!r} is empty (start equals end)")
    return start, end


class Schedule:
    """Local hour ranges on weekdays in a zone; ``active`` answers per timestamp.

    Examples
    --------
    Night shift, Monday to Friday nights, in Shanghai (UTC+8, no DST):

    >>> night = Schedule(["22:00-06:00"], ["mon", "tue", "wed", "thu", "fri"], "Asia/Shanghai")
    >>> fri_23h = 1_796_396_400_000        # 2026-12-04 23:00 +08:00, a Friday
    >>> night.active(fri_23h), night.active(fri_23h + 6 * 3_600_000)   # Sat 05:00
    (True, True)
    >>> night.active(fri_23h + 7 * 3_600_000)                          # Sat 06:00: ended
    False
    >>> night.active(fri_23h + 24 * 3_600_000)                         # Sat 23:00: no shift
    False
    >>> night.active_many(np.array([fri_23h, fri_23h + 7 * 3_600_000])).tolist()
    [True, False]
    """

    __slots__ = ("_days", "_ranges", "_zone", "zone_name")

    def __init__(self, hours: Sequence[str], days: Sequence[str], timezone: str) -> None:
        self._ranges = [parse_range(h) for h in hours]
        unknown = [d for d in days if d not in _DAYS]
        if unknown:
            raise ValueError(f"unknown days {unknown}; use {list(_DAYS)}")
        self._days = np.zeros(7, dtype=bool)
        for d in days:
            self._days[_DAYS.index(d)] = True
        self._zone = ZoneInfo(timezone)
        self.zone_name = timezone

    def active(self, ts_ms: int) -> bool:
        """Whether the schedule covers the instant ``ts_ms``."""
        local = datetime.fromtimestamp(ts_ms / 1000, tz=UTC).astimezone(self._zone)
        minute = local.hour * 60 + local.minute
        return self._covers(np.array([minute]), np.array([local.weekday()]))[0].item() is True

    def active_many(self, ts_ms: Timestamps) -> npt.NDArray[np.bool_]:
        """:meth:`active` for an array of timestamps, vectorised (offset per quarter hour)."""
        ts = np.asarray(ts_ms, dtype=np.int64)
        if ts.size == 0:
            return np.zeros(0, dtype=bool)
        buckets, inverse = np.unique(ts // _BUCKET_MS, return_inverse=True)
        offsets = np.array([self._offset_ms(int(b) * _BUCKET_MS) for b in buckets], dtype=np.int64)
        local_min = (ts + offsets[inverse]) // _MIN_MS
        minute = local_min % 1440
        # 1970-01-01 was a Thursday (weekday 3).
        weekday = (local_min // 1440 + 3) % 7
        return self._covers(minute, weekday)

    def _offset_ms(self, ts_ms: int) -> int:
        offset = datetime.fromtimestamp(ts_ms / 1000, tz=UTC).astimezone(self._zone).utcoffset()
        return 0 if offset is None else int(offset.total_seconds() * 1000)

    def _covers(
        self, minute: npt.NDArray[np.int64], weekday: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        result = np.zeros(minute.shape, dtype=bool)
        today = self._days[weekday]
        yesterday = self._days[(weekday - 1) % 7]
        for start, end in self._ranges:
            if start < end:
                result |= today & (minute >= start) & (minute < end)
            else:  # spans midnight: the evening belongs to today, the morning to yesterday
                result |= (today & (minute >= start)) | (yesterday & (minute < end))
        return result

    def __repr__(self) -> str:
        days = [d for d, on in zip(_DAYS, self._days, strict=True) if on]
        hours = [f"{s // 60:02d}:{s % 60:02d}-{e // 60:02d}:{e % 60:02d}" for s, e in self._ranges]
        return f"Schedule({hours}, {days}, {self.zone_name!r})"
