"""Drift from a baseline: how far, in percent, a reading has moved from its normal level."""

from __future__ import annotations

import math

import numpy as np

from detectors._state import get_float_list, get_opt_float
from detectors.base import Floats, Timestamps


class DriftFromBaseline:
    """Signed relative deviation from a baseline, in percent: ``100 * (v - b) / |b|``.

    A dust collector's pressure difference depends on the filter bags, the fan
    and the duct, so there is no absolute limit: AQ 4273 asks for the value
    recorded after installation or a bag change, and an alarm when it drifts
    more than 20 % from it (clogged bags up, torn bags or a leak down;
    ``domain.md``). The baseline is therefore part of the state (it survives a
    restart) and comes from one of two places:

    * **recorded**: given to the constructor, or set later with
      :meth:`set_baseline` (the commissioning report's value after a bag change);
    * **learned**: the median of the first ``learn_points`` finite readings after
      construction or :meth:`reset_baseline`. A median, so a start-up transient
      or one glitch among them does not become the normal level. A learned
      median of exactly 0 (the fan was off) is no baseline for a relative
      deviation, so learning starts over.

    While learning, scores are NaN (no opinion). The scorer has no thresholds:
    the rule wraps it in a two-sided ±20 band. Non-finite readings score NaN and
    are not learnt. Time plays no part, so late or repeated points are scored
    like any other.

    Examples
    --------
    A collector's baseline is learnt after a bag change; the rule alarms beyond
    ±20 % of it:

    >>> drift = DriftFromBaseline(learn_points=5)
    >>> for i, pa in enumerate([812.0, 798.0, 805.0, 1400.0, 801.0]):  # one glitch
    ...     drift.learn_one(i * 60_000, pa)
    >>> drift.baseline
    805.0
    >>> for pa in (850.0, 966.0, 980.0, 640.0):
    ...     score = drift.score_one(0, pa)
    ...     print(pa, f"{score:+.1f} %", "ALARM" if abs(score) > 20 else "ok")
    850.0 +5.6 % ok
    966.0 +20.0 % ok
    980.0 +21.7 % ALARM
    640.0 -20.5 % ALARM

    After the next bag change the new value is recorded:

    >>> drift.set_baseline(620.0)
    >>> round(drift.score_one(0, 640.0), 1)
    3.2
    """

    __slots__ = ("_baseline", "_learning", "learn_points")

    def __init__(self, baseline: float | None = None, learn_points: int = 20) -> None:
        if learn_points < 1:
            raise ValueError(f"learn_points must be >= 1, got {learn_points}")
        self.learn_points = learn_points
        self._baseline: float | None = None
        self._learning: list[float] = []
        if baseline is not None:
            self.set_baseline(baseline)

    @classmethod
    def _contract_params(cls) -> list[dict[str, object]]:
        return [{}, {"baseline": 150.0}, {"learn_points": 1}]

    @property
    def baseline(self) -> float | None:
        """The baseline in use, or None while it is being learnt."""
        return self._baseline

    @property
    def learning(self) -> bool:
        return self._baseline is None

    def set_baseline(self, value: float) -> None:
        """Use a recorded baseline from now on (e.g. measured after a bag change)."""
        value = float(value)
        if not math.isfinite(value) or value == 0:
            raise ValueError(f"a baseline must be finite and non-zero, got {value}")
        self._baseline = value
        self._learning = []

    def reset_baseline(self) -> None:
        """Forget the baseline and learn a new one from the next ``learn_points`` readings."""
        self._baseline = None
        self._learning = []

    def score_one(self, ts_ms: int, value: float) -> float:
        value = float(value)
        if self._baseline is None or not math.isfinite(value):
            return math.nan
        return 100.0 * (value - self._baseline) / abs(self._baseline)

    def learn_one(self, ts_ms: int, value: float) -> None:
        value = float(value)
        if self._baseline is not None or not math.isfinite(value):
            return
        self._learning.append(value)
        if len(self._learning) >= self.learn_points:
            median = _median(self._learning)
            self._learning = []
            if median != 0:
                self._baseline = median

    def score_many(self, ts_ms: Timestamps, values: Floats) -> Floats:
        vs = np.asarray(values, dtype=np.float64)
        if self._baseline is None:
            return np.full(len(vs), np.nan)
        b = self._baseline
        with np.errstate(invalid="ignore"):
            return np.where(np.isfinite(vs), 100.0 * (vs - b) / abs(b), np.nan)

    def process_many(self, ts_ms: Timestamps, values: Floats) -> Floats:
        """Score then learn each point in order, vectorised; same as the streaming loop.

        Only the learning phase walks in steps, one per ``learn_points`` block
        (one step, unless learnt medians keep coming out 0).
        """
        vs = np.asarray(values, dtype=np.float64)
        scores = np.full(len(vs), np.nan)
        finite = np.flatnonzero(np.isfinite(vs))
        used = 0  # finite points consumed by learning
        start = 0  # first index scored against a baseline
        while self._baseline is None:
            need = self.learn_points - len(self._learning)
            block = finite[used : used + need]
            used += len(block)
            if len(block) < need:
                self._learning.extend(vs[block].tolist())
                return scores
            median = _median([*self._learning, *vs[block].tolist()])
            self._learning = []
            if median != 0:
                self._baseline = median
                start = int(block[-1]) + 1
        scores[start:] = self.score_many(ts_ms[start:], vs[start:])
        return scores

    def state(self) -> dict[str, object]:
        return {"baseline": self._baseline, "learning": list(self._learning)}

    def restore(self, state: dict[str, object]) -> None:
        if not isinstance(state, dict):
            raise ValueError(
                f"DriftFromBaseline state must be a mapping, got {type(state).__name__}"
            )
        baseline = get_opt_float(state, "baseline")
        learning = get_float_list(state, "learning")
        if baseline == 0:
            raise ValueError("state field 'baseline' must be non-zero")
        if baseline is not None and learning:
            raise ValueError("state has both a baseline and points being learnt")
        if len(learning) >= self.learn_points:
            # learn_points was lowered while the gateway was down: finish learning now.
            self._baseline, self._learning = None, []
            for value in learning:
                self.learn_one(0, value)
            return
        self._baseline = baseline
        self._learning = learning

    def __repr__(self) -> str:
        return f"DriftFromBaseline(baseline={self._baseline!r}, learn_points={self.learn_points})"


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    count = len(ordered)
    return (ordered[(count - 1) // 2] + ordered[count // 2]) / 2
