"""Robust EWMA: one exponentially weighted level and spread per series, outliers clipped.

The cheapest candidate. It knows nothing about the time of day, so on a series
with a daily pattern (an enterprise's load) the pattern ends up in the spread
and makes it blunt; on flat-ish signals (pressure differences, leakage currents)
it is as good as anything and costs a handful of float operations per point.
"""

from __future__ import annotations

import math

import numpy as np

from detectors.anomaly._common import RobustLevel, check_positive, score_from_z, scores_from_z
from detectors.base import Floats, Timestamps
from detectors.vectorised import process_loop


class RobustEWMA(RobustLevel):
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

    __slots__ = ("_z_scale",)

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
        super().__init__(
            tau_s=tau_s,
            spread_tau_s=spread_tau_s,
            clip=clip,
            warmup=warmup,
            min_spread=min_spread,
            rel_spread=rel_spread,
        )
        self._z_scale = check_positive("z_scale", z_scale)

    @classmethod
    def _contract_params(cls) -> list[dict[str, float]]:
        return [{}, {"tau_s": 600.0, "warmup": 3}]

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
        n = self._n
        value = float(value)
        dt = self._advance(int(ts_ms), value)
        if dt is not None:
            self._learn_level(n, dt, value)

    def process_many(self, ts_ms: Timestamps, values: Floats) -> Floats:
        """Score each point against what was learnt before it, then learn it.

        The recursion is non-linear (the clip depends on the spread learnt so
        far), so this is the point-by-point loop, not a numpy expression.
        """
        return process_loop(self, ts_ms, values)

    def state(self) -> dict[str, object]:
        return self._level_state()

    def restore(self, state: dict[str, object]) -> None:
        self._n, self._last_ts_ms, self._level, self._spread = self._read_level(state)

    def __repr__(self) -> str:
        return (
            f"RobustEWMA(tau_s={self._tau_ms / 1000:g}, n={self._n}, "
            f"level={self._level:g}, spread={self._spread:g})"
        )
