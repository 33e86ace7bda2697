"""Two-sided CUSUM: a change-point test on residuals from a robust EWMA baseline.

Where a z-score judges each point alone, CUSUM adds up evidence: a shift of two
spreads that no single point would flag crosses the bound after a few points,
which is what a slow leakage creep or a pressure drift within noise looks like.
When the evidence is overwhelming the change is accepted (the baseline jumps to
the new value and the sums restart), so a step becomes the new normal after one
alarm instead of alarming for as long as the baseline takes to catch up.
"""

from __future__ import annotations

import math

import numpy as np

from detectors._state import get_float
from detectors.anomaly._common import RobustLevel, check_cusum
from detectors.base import Floats, Timestamps
from detectors.vectorised import process_loop

_LN10 = math.log(10.0)


class Cusum(RobustLevel):
    """Page's two-sided CUSUM over standardised residuals, with change acceptance.

    Each point's residual from the baseline level, in spreads and capped at
    ``z_cap``, feeds ``up = max(0, up + z - allowance)`` and
    ``down = max(0, down - z - allowance)``. The score is
    ``1 - 10 ** (-max(up, down) / h)``: 0.9 when the evidence reaches ``h``, 0.99
    at ``2 h``. Once it passes ``accept * h`` the baseline restarts at the
    current value.

    Parameters
    ----------
    tau_s, spread_tau_s, clip, warmup, min_spread, rel_spread
        The baseline, as for :class:`~detectors.anomaly.ewma.RobustEWMA`.
    allowance
        Residuals smaller than this many spreads count as no evidence.
    h
        Evidence (in spreads) that scores 0.9.
    z_cap
        A single point adds at most this many spreads of evidence.
    accept
        Evidence of ``accept * h`` accepts the change as the new normal.

    Examples
    --------
    >>> det = Cusum(warmup=5)
    >>> ts = 0
    >>> for i in range(50):
    ...     det.learn_one(ts, 10.0 + (0.1 if i % 2 else -0.1)); ts += 60_000
    >>> scores = []
    >>> for i in range(6):   # a shift of two spreads: evidence adds up
    ...     scores.append(round(det.score_one(ts, 10.32), 2)); det.learn_one(ts, 10.32)
    ...     ts += 60_000
    >>> scores
    [0.26, 0.45, 0.59, 0.69, 0.77, 0.83]
    """

    __slots__ = ("_accept", "_allowance", "_down", "_h", "_up", "_z_cap")

    def __init__(
        self,
        *,
        tau_s: float = 6 * 3600.0,
        spread_tau_s: float = 24 * 3600.0,
        clip: float = 3.0,
        warmup: float = 16,
        allowance: float = 1.0,
        h: float = 8.0,
        z_cap: float = 12.0,
        accept: float = 3.0,
        min_spread: float = 1e-6,
        rel_spread: float = 1e-3,
    ) -> None:
        super().__init__(
            tau_s=tau_s,
            spread_tau_s=spread_tau_s,
            clip=clip,
            warmup=warmup,
            min_spread=min_spread,
            rel_spread=rel_spread,
        )
        self._allowance, self._h, self._z_cap, self._accept = check_cusum(
            allowance, h, z_cap, accept
        )
        self._up = 0.0
        self._down = 0.0

    @classmethod
    def _contract_params(cls) -> list[dict[str, float]]:
        return [{}, {"h": 3.0, "allowance": 0.5, "warmup": 3}]

    def _evidence(self, value: float) -> tuple[float, float]:
        z = (value - self._level) / self._sigma()
        z = min(max(z, -self._z_cap), self._z_cap)
        up = max(0.0, self._up + z - self._allowance)
        down = max(0.0, self._down - z - self._allowance)
        return up, down

    def score_one(self, ts_ms: int, value: float) -> float:
        if math.isnan(value):
            return math.nan
        if self._n < self._warmup:
            return 0.0
        up, down = self._evidence(value)
        return -math.expm1(-max(up, down) / self._h * _LN10)

    def score_many(self, ts_ms: Timestamps, values: Floats) -> Floats:
        values = np.asarray(values, dtype=np.float64)
        if self._n < self._warmup:
            return np.where(np.isnan(values), np.nan, 0.0)
        z = np.clip((values - self._level) / self._sigma(), -self._z_cap, self._z_cap)
        up = np.maximum(0.0, self._up + z - self._allowance)
        down = np.maximum(0.0, self._down - z - self._allowance)
        result: Floats = -np.expm1(-np.maximum(up, down) / self._h * _LN10)
        return result

    def learn_one(self, ts_ms: int, value: float) -> None:
        if not math.isfinite(value):
            return
        value = float(value)
        n = self._n
        dt = self._advance(int(ts_ms), value)
        if dt is None:
            return
        if n >= self._warmup:
            up, down = self._evidence(value)
            if max(up, down) >= self._accept * self._h:
                # The change is real: restart the baseline at it.
                self._level, self._up, self._down = value, 0.0, 0.0
                return
            self._up, self._down = up, down
        self._learn_level(n, dt, value)

    def process_many(self, ts_ms: Timestamps, values: Floats) -> Floats:
        """Score each point against what was learnt before it, then learn it.

        The sums are a max-plus recursion and the baseline's clip depends on the
        spread so far, so this is the point-by-point loop, not a numpy expression.
        """
        return process_loop(self, ts_ms, values)

    def state(self) -> dict[str, object]:
        return {**self._level_state(), "up": self._up, "down": self._down}

    def restore(self, state: dict[str, object]) -> None:
        level = self._read_level(state)
        up, down = get_float(state, "up"), get_float(state, "down")
        if min(up, down) < 0:
            raise ValueError("Cusum state fields up/down must be >= 0")
        self._n, self._last_ts_ms, self._level, self._spread = level
        self._up, self._down = up, down

    def __repr__(self) -> str:
        return f"Cusum(h={self._h:g}, n={self._n}, level={self._level:g}, up={self._up:g})"
