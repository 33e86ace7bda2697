"""Robust EWMA: one exponentially weighted level and spread per series, outliers clipped.

The cheapest candidate. It knows nothing about the time of day, so on a series
with a daily pattern (an enterprise's load) the pattern ends up in the spread
and makes it blunt; on flat-ish signals (pressure differences, leakage currents)
it is as good as anything and costs a handful of float operations per point.
"""

from __future__ import annotations

import math

import numpy as np

from detectors._state import get_int, get_opt_int
from detectors.anomaly._common import (
    MAD_TO_SIGMA,
    check_positive,
    check_state,
    get_float,
    score_from_z,
    scores_from_z,
)
from detectors.base import Floats, Timestamps


class RobustEWMA:
    """Level and spread learnt by time-weighted EWMAs with Huber-clipped residuals.

    Each point's residual from the level is clipped to ``clip`` spreads before
    it moves the level, so a spike barely moves it; a step keeps pushing the
    level (and widening the spread) until it is the new normal. The smoothing
    weight of a point is ``1 - exp(-dt / tau)``: sampling every second or every
    15 minutes, or with gaps, the memory is the same span of *time*, and a point
    repeated at the same millisecond adds nothing.

    Parameters
    ----------
    tau_s
        Time constant of the level, in seconds (a drift slower than about
        ``clip * spread / tau_s`` per second is followed, not flagged).
    spread_tau_s
        Time constant of the spread (mean absolute residual), in seconds.
    clip
        Residuals are clipped to this many spreads before they are learnt.
    warmup
        Points learnt before the first non-zero score.
    min_spread, rel_spread
        Floor of the spread, absolute and relative to the level, so a series
        that has been perfectly constant does not call its first wiggle an anomaly.
    z_scale
        See :func:`detectors.anomaly._common.score_from_z`.

    Examples
    --------
    >>> det = RobustEWMA(tau_s=3600, warmup=5)
    >>> for i in range(40):
    ...     det.learn_one(i * 60_000, 20.0 + (0.5 if i % 2 else -0.5))
    >>> round(det.score_one(40 * 60_000, 20.3), 3)      # ordinary
    0.022
    >>> round(det.score_one(40 * 60_000, 26.0), 3)      # far outside the learnt spread
    0.999
    """

    __slots__ = (
        "_clip",
        "_last_ts_ms",
        "_level",
        "_min_spread",
        "_n",
        "_rel_spread",
        "_spread",
        "_spread_tau_ms",
        "_tau_ms",
        "_warmup",
        "_z_scale",
    )

    def __init__(
        self,
        *,
        tau_s: float = 6 * 3600.0,
        spread_tau_s: float = 24 * 3600.0,
        clip: float = 3.0,
        warmup: float = 16,
        min_spread: float = 1e-6,
        rel_spread: float = 1e-3,
        z_scale: float = 2.0,
    ) -> None:
        self._tau_ms = check_positive("tau_s", tau_s) * 1000.0
        self._spread_tau_ms = check_positive("spread_tau_s", spread_tau_s) * 1000.0
        self._clip = check_positive("clip", clip)
        self._warmup = int(check_positive("warmup", warmup))
        self._min_spread = check_positive("min_spread", min_spread)
        if not (math.isfinite(rel_spread) and rel_spread >= 0):
            raise ValueError(f"rel_spread must be a finite number >= 0, got {rel_spread}")
        self._rel_spread = float(rel_spread)
        self._z_scale = check_positive("z_scale", z_scale)
        self._n = 0
        self._last_ts_ms: int | None = None
        self._level = 0.0
        self._spread = 0.0

    @classmethod
    def _contract_params(cls) -> list[dict[str, float]]:
        return [{}, {"tau_s": 600.0, "warmup": 3}]

    def _sigma(self) -> float:
        return max(
            self._spread * MAD_TO_SIGMA, self._min_spread, self._rel_spread * abs(self._level)
        )

    def score_one(self, ts_ms: int, value: float) -> float:
        if math.isnan(value):
            return math.nan
        if self._n < self._warmup:
            return 0.0
        return score_from_z(abs(value - self._level) / self._sigma(), self._z_scale)

    def score_many(self, ts_ms: Timestamps, values: Floats) -> Floats:
        values = np.asarray(values, dtype=np.float64)
        if self._n < self._warmup:
            return np.where(np.isnan(values), np.nan, 0.0)
        return scores_from_z(np.abs(values - self._level) / self._sigma(), self._z_scale)

    def learn_one(self, ts_ms: int, value: float) -> None:
        if not math.isfinite(value):
            return
        ts_ms = int(ts_ms)
        n = self._n
        if n == 0 or self._last_ts_ms is None:
            self._n, self._last_ts_ms, self._level, self._spread = 1, ts_ms, float(value), 0.0
            return
        dt = ts_ms - self._last_ts_ms
        if dt > 0:
            self._last_ts_ms = ts_ms
        else:
            dt = 0
        a = -math.expm1(-dt / self._tau_ms)
        b = -math.expm1(-dt / self._spread_tau_ms)
        r = value - self._level
        ar = abs(r)
        if n < self._warmup:
            a = max(a, 1.0 / (n + 1))
            b = max(b, 1.0 / n)
        else:
            lim = self._clip * self._sigma()
            if ar > lim:
                ar = lim
                r = lim if r > 0 else -lim
        self._level += a * r
        self._spread += b * (ar - self._spread)
        self._n = n + 1

    def process_many(self, ts_ms: Timestamps, values: Floats) -> Floats:
        """Score each point against what was learnt before it, then learn it.

        The recursion is non-linear (the clip depends on the spread learnt so
        far), so this is a tight loop with the arithmetic of :meth:`score_one`
        and :meth:`learn_one` inlined, not a numpy expression.
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
            "spread": self._spread,
        }

    def restore(self, state: dict[str, object]) -> None:
        state = check_state(state, "RobustEWMA")
        n = get_int(state, "n")
        last = get_opt_int(state, "last_ts_ms")
        level = get_float(state, "level")
        spread = get_float(state, "spread")
        if n < 0 or spread < 0 or (n > 0) != (last is not None):
            raise ValueError("RobustEWMA state fields n/last_ts_ms/spread disagree")
        self._n, self._last_ts_ms, self._level, self._spread = n, last, level, spread

    def __repr__(self) -> str:
        return (
            f"RobustEWMA(tau_s={self._tau_ms / 1000:g}, n={self._n}, "
            f"level={self._level:g}, spread={self._spread:g})"
        )
