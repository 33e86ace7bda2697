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

from detectors._state import get_int, get_opt_int
from detectors.anomaly._common import (
    MAD_TO_SIGMA,
    check_positive,
    check_state,
    get_float,
)
from detectors.base import Floats, Timestamps

_LN10 = math.log(10.0)


class Cusum:
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

    __slots__ = (
        "_accept",
        "_allowance",
        "_clip",
        "_down",
        "_h",
        "_last_ts_ms",
        "_level",
        "_min_spread",
        "_n",
        "_rel_spread",
        "_spread",
        "_spread_tau_ms",
        "_tau_ms",
        "_up",
        "_warmup",
        "_z_cap",
    )

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
        self._tau_ms = check_positive("tau_s", tau_s) * 1000.0
        self._spread_tau_ms = check_positive("spread_tau_s", spread_tau_s) * 1000.0
        self._clip = check_positive("clip", clip)
        self._warmup = int(check_positive("warmup", warmup))
        if not (math.isfinite(allowance) and allowance >= 0):
            raise ValueError(f"allowance must be a finite number >= 0, got {allowance}")
        self._allowance = float(allowance)
        self._h = check_positive("h", h)
        self._z_cap = check_positive("z_cap", z_cap)
        self._accept = check_positive("accept", accept)
        self._min_spread = check_positive("min_spread", min_spread)
        if not (math.isfinite(rel_spread) and rel_spread >= 0):
            raise ValueError(f"rel_spread must be a finite number >= 0, got {rel_spread}")
        self._rel_spread = float(rel_spread)
        self._n = 0
        self._last_ts_ms: int | None = None
        self._level = 0.0
        self._spread = 0.0
        self._up = 0.0
        self._down = 0.0

    @classmethod
    def _contract_params(cls) -> list[dict[str, float]]:
        return [{}, {"h": 3.0, "allowance": 0.5, "warmup": 3}]

    def _sigma(self) -> float:
        return max(
            self._spread * MAD_TO_SIGMA, self._min_spread, self._rel_spread * abs(self._level)
        )

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
        ts_ms = int(ts_ms)
        value = float(value)
        n = self._n
        if n == 0 or self._last_ts_ms is None:
            self._n, self._last_ts_ms, self._level, self._spread = 1, ts_ms, value, 0.0
            return
        dt = ts_ms - self._last_ts_ms
        if dt > 0:
            self._last_ts_ms = ts_ms
        else:
            dt = 0
        self._n = n + 1
        if n >= self._warmup:
            up, down = self._evidence(value)
            if max(up, down) >= self._accept * self._h:
                # The change is real: restart the baseline at it.
                self._level, self._up, self._down = value, 0.0, 0.0
                return
            self._up, self._down = up, down
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

    def process_many(self, ts_ms: Timestamps, values: Floats) -> Floats:
        """Score each point against what was learnt before it, then learn it.

        The sums are a max-plus recursion and the baseline's clip depends on the
        spread so far, so this is a loop, not a numpy expression.
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
            "up": self._up,
            "down": self._down,
        }

    def restore(self, state: dict[str, object]) -> None:
        state = check_state(state, "Cusum")
        n = get_int(state, "n")
        last = get_opt_int(state, "last_ts_ms")
        level, spread = get_float(state, "level"), get_float(state, "spread")
        up, down = get_float(state, "up"), get_float(state, "down")
        if n < 0 or min(spread, up, down) < 0 or (n > 0) != (last is not None):
            raise ValueError("Cusum state fields disagree")
        self._n, self._last_ts_ms, self._level, self._spread = n, last, level, spread
        self._up, self._down = up, down

    def __repr__(self) -> str:
        return f"Cusum(h={self._h:g}, n={self._n}, level={self._level:g}, up={self._up:g})"
