"""Seasonal baseline: a daily profile per time-of-day bucket plus a short-term level.

An enterprise's load is high during the shift and low at night; a cable's
temperature follows it. A detector without a notion of time of day has to learn
a spread wide enough to cover the whole day, and then misses a night-time load
that would be normal at noon (the very sign of production during an ordered
shutdown). This candidate predicts each point as ``level + profile[bucket]``:

* ``profile`` is learnt per time-of-day bucket in the site's time zone, with a
  memory of ``season_days`` days, so the daily shape is learnt once and kept;
* ``level`` is a short-term EWMA (``tau_level_s``) of what the profile does not
  explain, so a step or a slow change of the whole day becomes the new normal
  within hours, while the profile follows over days (additive Holt-Winters);
* residuals are Huber-clipped at ``clip`` spreads before they are learnt, so a
  spike does not bend the baseline;
* the spread is learnt per bucket (the noise of a working day is larger than at
  night) with a floor at half the overall spread.

All weights come from the time since the previous point, so the memory is a span
of time whatever the sampling rate, and a gap of a day is just a long dt: the
profile does not decay with time away, and the first points after the gap are
compared with the same hour of the days before.
"""

from __future__ import annotations

import math

import numpy as np

from detectors._state import get_int, get_opt_int
from detectors.anomaly._clock import DAY_MS, LocalClock
from detectors.anomaly._common import (
    MAD_TO_SIGMA,
    check_positive,
    check_state,
    get_float,
    get_floats,
    score_from_z,
)
from detectors.base import Floats, Timestamps


class SeasonalBaseline:
    """Per-bucket daily profile + short-term level, robust spread, time-weighted.

    Parameters
    ----------
    buckets
        Time-of-day buckets per day (24: hourly).
    tz
        IANA time zone of the site; buckets are local time of day.
    tau_level_s
        Time constant of the short-term level, in seconds.
    season_days
        Memory of the daily profile, in days.
    spread_tau_s
        Time constant of the overall spread, in seconds.
    clip
        Residuals are clipped to this many spreads before they are learnt.
    warmup
        Points learnt before the first non-zero score.
    min_visits
        A bucket scores only after it has been visited this many times.
    min_spread, rel_spread, z_scale
        As for :class:`~detectors.anomaly.ewma.RobustEWMA`.

    Examples
    --------
    Two days of a load that is 100 kW from 08:00 to 18:00 and 20 kW otherwise
    (Shanghai time), every 15 minutes; then a night-time 100 kW (production
    when there should be none) and a daytime 100 kW:

    >>> day = 86_400_000
    >>> det = SeasonalBaseline(warmup=8)
    >>> def load(ts):
    ...     hour = (ts // 3_600_000 + 8) % 24
    ...     return (100.0 if 8 <= hour < 18 else 20.0) + (ts // 900_000 % 3 - 1)
    >>> for ts in range(0, 3 * day, 900_000):
    ...     det.learn_one(ts, load(ts))
    >>> night, noon = 3 * day + 17 * 3_600_000, 3 * day + 4 * 3_600_000
    >>> round(det.score_one(night, 100.0), 3), round(det.score_one(noon, 100.0), 3)
    (1.0, 0.005)
    """

    __slots__ = (
        "_bucket_ms",
        "_buckets",
        "_clip",
        "_clock",
        "_gspread",
        "_last_ts_ms",
        "_level",
        "_min_spread",
        "_min_visits",
        "_n",
        "_profile",
        "_rel_spread",
        "_season_ms",
        "_spread",
        "_spread_tau_ms",
        "_tau_ms",
        "_visits",
        "_warmup",
        "_z_scale",
    )

    def __init__(
        self,
        *,
        buckets: float = 24,
        tz: str = "Asia/Shanghai",
        tau_level_s: float = 3 * 3600.0,
        season_days: float = 7.0,
        spread_tau_s: float = 24 * 3600.0,
        clip: float = 3.0,
        warmup: float = 16,
        min_visits: float = 2,
        min_spread: float = 1e-6,
        rel_spread: float = 1e-3,
        z_scale: float = 2.0,
    ) -> None:
        self._buckets = int(check_positive("buckets", buckets))
        if DAY_MS % self._buckets:
            raise ValueError(f"buckets must divide a day in whole milliseconds, got {buckets}")
        self._bucket_ms = DAY_MS // self._buckets
        self._clock = LocalClock(tz)
        self._tau_ms = check_positive("tau_level_s", tau_level_s) * 1000.0
        # A bucket collects 1/buckets of each day, so its profile's time constant in
        # "time spent in the bucket" is season_days * bucket_ms.
        self._season_ms = check_positive("season_days", season_days) * self._bucket_ms
        self._spread_tau_ms = check_positive("spread_tau_s", spread_tau_s) * 1000.0
        self._clip = check_positive("clip", clip)
        self._warmup = int(check_positive("warmup", warmup))
        self._min_visits = int(check_positive("min_visits", min_visits))
        self._min_spread = check_positive("min_spread", min_spread)
        if not (math.isfinite(rel_spread) and rel_spread >= 0):
            raise ValueError(f"rel_spread must be a finite number >= 0, got {rel_spread}")
        self._rel_spread = float(rel_spread)
        self._z_scale = check_positive("z_scale", z_scale)
        self._n = 0
        self._last_ts_ms: int | None = None
        self._level = 0.0
        self._gspread = 0.0
        self._profile = [0.0] * self._buckets
        self._spread = [0.0] * self._buckets
        self._visits = [0] * self._buckets

    @classmethod
    def _contract_params(cls) -> list[dict[str, object]]:
        return [{}, {"buckets": 48, "tz": "Europe/Berlin", "warmup": 3, "min_visits": 1}]

    def _bucket(self, ts_ms: int) -> int:
        return self._clock.ms_of_day(ts_ms) // self._bucket_ms

    def _sigma(self, b: int) -> float:
        spread = max(self._spread[b], 0.5 * self._gspread)
        expected = self._level + self._profile[b]
        return max(spread * MAD_TO_SIGMA, self._min_spread, self._rel_spread * abs(expected))

    def score_one(self, ts_ms: int, value: float) -> float:
        if math.isnan(value):
            return math.nan
        b = self._bucket(int(ts_ms))
        if self._n < self._warmup or self._visits[b] < self._min_visits:
            return 0.0
        z = abs(value - self._level - self._profile[b]) / self._sigma(b)
        return score_from_z(z, self._z_scale)

    def score_many(self, ts_ms: Timestamps, values: Floats) -> Floats:
        return np.array(
            [self.score_one(int(t), float(v)) for t, v in zip(ts_ms, values, strict=True)],
            dtype=np.float64,
        )

    def learn_one(self, ts_ms: int, value: float) -> None:
        if not math.isfinite(value):
            return
        ts_ms = int(ts_ms)
        value = float(value)
        b = self._bucket(ts_ms)
        if self._n == 0 or self._last_ts_ms is None:
            self._n, self._last_ts_ms, self._level = 1, ts_ms, value
            self._profile[b], self._visits[b] = 0.0, 1
            return
        dt = ts_ms - self._last_ts_ms
        if dt > 0:
            self._last_ts_ms = ts_ms
        else:
            dt = 0
        n = self._n
        self._n = n + 1
        visits = self._visits[b]
        if visits == 0:
            # The bucket's first point defines its offset from the current level.
            self._profile[b] = value - self._level
            self._spread[b] = self._gspread
            self._visits[b] = 1
            return
        a = -math.expm1(-dt / self._tau_ms)
        w = -math.expm1(-dt / self._season_ms)
        g = -math.expm1(-dt / self._spread_tau_ms)
        r = value - self._level - self._profile[b]
        ar = abs(r)
        if n < self._warmup or visits < self._min_visits:
            w = max(w, 1.0 / (visits + 1))
            g = max(g, 1.0 / n)
        else:
            lim = self._clip * self._sigma(b)
            if ar > lim:
                ar = lim
                r = lim if r > 0 else -lim
        self._level += a * r
        self._profile[b] += w * (r - a * r)
        self._spread[b] += w * (ar - self._spread[b])
        self._gspread += g * (ar - self._gspread)
        self._visits[b] = visits + 1

    def process_many(self, ts_ms: Timestamps, values: Floats) -> Floats:
        """Score each point against what was learnt before it, then learn it.

        Buckets interleave and the clip depends on the spread learnt so far, so
        this is a loop, not a numpy expression.
        """
        out = np.empty(len(values), dtype=np.float64)
        ts_list = np.asarray(ts_ms, dtype=np.int64).tolist()
        v_list = np.asarray(values, dtype=np.float64).tolist()
        for i, (t, v) in enumerate(zip(ts_list, v_list, strict=True)):
            out[i] = self.score_one(t, v)
            self.learn_one(t, v)
        return out

    def state(self) -> dict[str, object]:
        return {
            "n": self._n,
            "last_ts_ms": self._last_ts_ms,
            "level": self._level,
            "spread": self._gspread,
            "profile": list(self._profile),
            "bucket_spread": list(self._spread),
            "visits": list(self._visits),
        }

    def restore(self, state: dict[str, object]) -> None:
        state = check_state(state, "SeasonalBaseline")
        n = get_int(state, "n")
        last = get_opt_int(state, "last_ts_ms")
        level = get_float(state, "level")
        gspread = get_float(state, "spread")
        profile = get_floats(state, "profile", self._buckets)
        spread = get_floats(state, "bucket_spread", self._buckets)
        raw_visits = state.get("visits")
        if not isinstance(raw_visits, list) or len(raw_visits) != self._buckets:
            raise ValueError(f"state field 'visits' must be a list of {self._buckets} integers")
        visits = [get_int({"visits": v}, "visits") for v in raw_visits]
        if n < 0 or (n > 0) != (last is not None) or min(visits) < 0 or min(spread) < 0:
            raise ValueError("SeasonalBaseline state fields disagree")
        self._n, self._last_ts_ms, self._level, self._gspread = n, last, level, gspread
        self._profile, self._spread, self._visits = profile, spread, visits

    def __repr__(self) -> str:
        return (
            f"SeasonalBaseline(buckets={self._buckets}, tz={self._clock.tz!r}, n={self._n}, "
            f"level={self._level:g})"
        )
