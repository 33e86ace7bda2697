"""What every anomaly scorer shares: the score scale and typed reads of a restored state.

One score scale for all candidates, so the stage bounds in
:data:`detectors.anomaly.RECOMMENDED_STAGES` mean the same thing whichever method a
rule picks: a robust z-score (distance from the expected value in units of the
learnt spread) mapped through the Rayleigh CDF ``1 - exp(-(z / z_scale)**2 / 2)``.
With the default ``z_scale = 2`` a score of 0.9 is z = 4.3 and 0.99 is z = 6.1,
which is where a heavy-tailed field signal (a motor start, a tariff switch) stops
being ordinary.

>>> round(score_from_z(0.0), 3), round(score_from_z(4.29), 3), round(score_from_z(6.07), 3)
(0.0, 0.9, 0.99)
"""

from __future__ import annotations

import math

import numpy as np

from detectors._state import get_float, get_int, get_opt_int
from detectors.base import Floats

#: Scale factor from a mean absolute deviation to a Gaussian standard deviation.
MAD_TO_SIGMA = math.sqrt(math.pi / 2.0)


def score_from_z(z: float, z_scale: float = 2.0) -> float:
    """Map a non-negative z-score into [0, 1) (monotonic; 0 at z = 0)."""
    q = z / z_scale
    return -math.expm1(-0.5 * q * q)


def scores_from_z(z: Floats, z_scale: float = 2.0) -> Floats:
    """:func:`score_from_z` over an array."""
    q = z / z_scale
    result: Floats = -np.expm1(-0.5 * q * q)
    return result


def check_state(state: object, kind: str) -> dict[str, object]:
    """``state`` as a mapping, or ValueError naming the scorer it was meant for."""
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ValueError(f"{kind} state must be a mapping, got {type(state).__name__}")
    return state


def get_floats(state: dict[str, object], key: str, length: int) -> list[float]:
    """``state[key]`` as a list of ``length`` finite floats."""
    value = state.get(key)
    if not isinstance(value, list) or len(value) != length:
        raise ValueError(f"state field {key!r} must be a list of {length} numbers")
    return [get_float({key: item}, key) for item in value]


def check_positive(name: str, value: float) -> float:
    """A finite, strictly positive parameter, or ValueError naming it."""
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return float(value)


def check_non_negative(name: str, value: float) -> float:
    """A finite parameter >= 0 (0 switches its effect off), or ValueError naming it."""
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


def check_cusum(
    allowance: float, h: float, z_cap: float, accept: float
) -> tuple[float, float, float, float]:
    """The CUSUM parameters of :class:`~detectors.anomaly.cusum.Cusum` and
    :class:`~detectors.anomaly.seasonal_cusum.SeasonalCusum`, checked the same way."""
    return (
        check_non_negative("allowance", allowance),
        check_positive("h", h),
        check_positive("z_cap", z_cap),
        check_positive("accept", accept),
    )


class RobustLevel:
    """The robust, time-weighted EWMA level and spread that RobustEWMA and Cusum both learn.

    One implementation, so the two candidates cannot drift apart in how they
    weigh a point (``1 - exp(-dt / tau)``, faster while warming up), clip an
    outlier (``clip`` spreads) or floor the spread; they differ only in how they
    score a residual. See :class:`~detectors.anomaly.ewma.RobustEWMA` for the
    parameters.
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
    )

    def __init__(
        self,
        *,
        tau_s: float,
        spread_tau_s: float,
        clip: float,
        warmup: float,
        min_spread: float,
        rel_spread: float,
    ) -> None:
        self._tau_ms = check_positive("tau_s", tau_s) * 1000.0
        self._spread_tau_ms = check_positive("spread_tau_s", spread_tau_s) * 1000.0
        self._clip = check_positive("clip", clip)
        self._warmup = int(check_positive("warmup", warmup))
        self._min_spread = check_positive("min_spread", min_spread)
        self._rel_spread = check_non_negative("rel_spread", rel_spread)
        self._n = 0
        self._last_ts_ms: int | None = None
        self._level = 0.0
        self._spread = 0.0

    def _sigma(self) -> float:
        return max(
            self._spread * MAD_TO_SIGMA, self._min_spread, self._rel_spread * abs(self._level)
        )

    def _advance(self, ts_ms: int, value: float) -> int | None:
        """Count a finite point; the ms since the newest before it (0 if not newer).

        None for the very first point, which only sets the level.
        """
        n = self._n
        if n == 0 or self._last_ts_ms is None:
            self._n, self._last_ts_ms, self._level, self._spread = 1, ts_ms, value, 0.0
            return None
        dt = ts_ms - self._last_ts_ms
        if dt > 0:
            self._last_ts_ms = ts_ms
        else:
            dt = 0
        self._n = n + 1
        return dt

    def _learn_level(self, n: int, dt: int, value: float) -> None:
        """Move level and spread towards ``value``, ``dt`` ms after the previous of ``n`` points."""
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

    def _level_state(self) -> dict[str, object]:
        return {
            "n": self._n,
            "last_ts_ms": self._last_ts_ms,
            "level": self._level,
            "spread": self._spread,
        }

    def _read_level(self, state: dict[str, object]) -> tuple[int, int | None, float, float]:
        """The :meth:`_level_state` fields of a restored state, checked, not yet applied."""
        kind = type(self).__name__
        state = check_state(state, kind)
        n = get_int(state, "n")
        last = get_opt_int(state, "last_ts_ms")
        level = get_float(state, "level")
        spread = get_float(state, "spread")
        if n < 0 or spread < 0 or (n > 0) != (last is not None):
            raise ValueError(f"{kind} state fields n/last_ts_ms/spread disagree")
        return n, last, level, spread
