"""Sensor fault: a reading pinned at its range limit, or one that jumps impossibly fast."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from detectors._state import get_opt_float, get_opt_int
from detectors.base import Floats, Timestamps
from detectors.vectorised import NEVER, newest_before, one_kernel, process_loop

#: Up to this many points, ``process_many`` loops: cheaper than numpy's per-call overhead.
_SHORT = 64


class SensorFault:
    """1.0 when a reading looks like a broken sensor rather than the world, else 0.0.

    Two signs, both device faults for duty staff rather than hazards
    (``domain.md`` keeps the two apart, since they are triaged differently):

    * **pinned at a range limit**: a PT100 with a broken wire reads its range
      maximum, a shorted one its minimum, a 4-20 mA loop that lost power its
      zero. ``low``/``high`` are the metric's declared range ends, so a value
      ``<= low`` or ``>= high`` is the transmitter saying "out of range", not a
      measurement; a fire would be caught by the temperature rule anyway.
    * **an impossible jump**: ``|dv| / dt > max_step_per_s`` from the previous
      point. A cable temperature cannot rise 200 °C in a second; a reading that
      does is electrical noise or a decoding error. The rate, not the step, is
      tested, so a sensor that reports once every 5 minutes may move further
      between reports than one that reports every second.

    Every point is learnt, faulty or not, so a jump away and the jump back are
    both flagged, and a sensor that stays at a new level is flagged once. Only
    points newer than the previous one are compared with it (a repeated
    timestamp has no rate); late points are range-checked but not learnt.
    Non-finite values score NaN and are not learnt.

    Examples
    --------
    A cable temperature sensor, range -20..200 °C, that cannot change by more
    than 5 °C per second:

    >>> fault = SensorFault(low=-20.0, high=200.0, max_step_per_s=5.0)
    >>> for ts, celsius in [(0, 31.0), (60_000, 33.0), (61_000, 150.0), (62_000, 33.5),
    ...                     (120_000, 200.0), (180_000, 200.0)]:
    ...     print(ts // 1000, celsius, fault.score_one(ts, celsius))
    ...     fault.learn_one(ts, celsius)
    0 31.0 0.0
    60 33.0 0.0
    61 150.0 1.0
    62 33.5 1.0
    120 200.0 1.0
    180 200.0 1.0
    """

    __slots__ = ("_last_ms", "_last_value", "high", "low", "max_step_per_s")

    def __init__(self, low: float, high: float, max_step_per_s: float | None = None) -> None:
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"need finite low < high, got low={low}, high={high}")
        if max_step_per_s is not None and not (
            math.isfinite(max_step_per_s) and max_step_per_s > 0
        ):
            raise ValueError(f"max_step_per_s must be a finite number > 0, got {max_step_per_s}")
        self.low = float(low)
        self.high = float(high)
        self.max_step_per_s = None if max_step_per_s is None else float(max_step_per_s)
        self._last_ms: int | None = None
        self._last_value: float | None = None

    @classmethod
    def _contract_params(cls) -> list[dict[str, object]]:
        return [
            {"low": -40.0, "high": 2_500.0},
            {"low": 0.0, "high": 400.0, "max_step_per_s": 0.05},
            {"low": -100.0, "high": 3_000.0, "max_step_per_s": 1.0},
        ]

    def _jumps(self, ts_ms: int, value: float) -> bool:
        if self.max_step_per_s is None or self._last_ms is None or self._last_value is None:
            return False
        dt_ms = ts_ms - self._last_ms
        if dt_ms <= 0:
            return False
        return abs(value - self._last_value) * 1000.0 / dt_ms > self.max_step_per_s

    def score_one(self, ts_ms: int, value: float) -> float:
        ts_ms, value = int(ts_ms), float(value)
        if not math.isfinite(value):
            return math.nan
        pinned = value <= self.low or value >= self.high
        return 1.0 if pinned or self._jumps(ts_ms, value) else 0.0

    def learn_one(self, ts_ms: int, value: float) -> None:
        ts_ms, value = int(ts_ms), float(value)
        if not math.isfinite(value):
            return
        if self._last_ms is None or ts_ms >= self._last_ms:
            self._last_ms, self._last_value = ts_ms, value

    def _score(self, ts: Timestamps, vs: Floats, prev_ts: Timestamps, prev_vs: Floats) -> Floats:
        """Scores against each point's own previous point (``prev_ts`` = NEVER: none)."""
        with np.errstate(invalid="ignore"):
            fault = (vs <= self.low) | (vs >= self.high)
            if self.max_step_per_s is not None:
                dt = ts - prev_ts
                has = (prev_ts != NEVER) & (dt > 0)
                safe_dt = np.where(has, dt, 1)
                rate = np.abs(vs - prev_vs) * 1000.0 / safe_dt
                fault |= has & (rate > self.max_step_per_s)
        return np.where(np.isfinite(vs), fault.astype(np.float64), np.nan)

    def score_many(self, ts_ms: Timestamps, values: Floats) -> Floats:
        ts = np.asarray(ts_ms, dtype=np.int64)
        vs = np.asarray(values, dtype=np.float64)
        prev_ts = np.full(len(ts), NEVER if self._last_ms is None else self._last_ms)
        prev_vs = np.full(len(ts), 0.0 if self._last_value is None else self._last_value)
        return self._score(ts, vs, prev_ts, prev_vs)

    def process_many(self, ts_ms: Timestamps, values: Floats) -> Floats:
        """Score then learn each point in order, vectorised; same as the streaming loop."""
        if len(ts_ms) <= _SHORT:
            return process_loop(self, ts_ms, values)
        ts = np.asarray(ts_ms, dtype=np.int64)
        vs = np.asarray(values, dtype=np.float64)
        n = len(ts)
        finite = np.isfinite(vs)
        last = NEVER if self._last_ms is None else self._last_ms
        newest = np.maximum.accumulate(np.concatenate(([last], np.where(finite, ts, NEVER))))
        learnt = finite & (ts >= newest[:-1])
        # Each point's previous point: the last learnt one before it (or the state's).
        index = np.where(learnt, np.arange(n), -1)
        before = np.concatenate(([-1], np.maximum.accumulate(index)[:-1])) if n else index
        state_ts = NEVER if self._last_ms is None else self._last_ms
        state_vs = 0.0 if self._last_value is None else self._last_value
        prev_ts = np.where(before >= 0, ts[np.maximum(before, 0)], state_ts) if n else ts
        prev_vs = np.where(before >= 0, vs[np.maximum(before, 0)], state_vs) if n else vs
        scores = self._score(ts, vs, prev_ts, prev_vs)
        if learnt.any():
            k = int(np.flatnonzero(learnt)[-1])
            self._last_ms, self._last_value = int(ts[k]), float(vs[k])
        return scores

    @classmethod
    def process_groups(
        cls,
        scorers: Sequence[SensorFault],
        ts_ms: Timestamps,
        values: Floats,
        bounds: npt.NDArray[np.intp],
    ) -> Floats | None:
        """``process_many`` of many series in one numpy pass; None if it does not apply.

        Point ``i`` belongs to ``scorers[g]`` for ``bounds[g] <= i < bounds[g + 1]``;
        scorers with different limits (or the same scorer twice) are left to the
        caller's per-series loop.
        """
        if not one_kernel(scorers, lambda s: (s.low, s.high, s.max_step_per_s)):
            return None
        ts = np.asarray(ts_ms, dtype=np.int64)
        vs = np.asarray(values, dtype=np.float64)
        n = len(ts)
        gid = np.repeat(np.arange(len(scorers)), np.diff(bounds))
        finite = np.isfinite(vs)
        last_ts = np.array(
            [NEVER if s._last_ms is None else s._last_ms for s in scorers], dtype=np.int64
        )
        last_vs = np.array([0.0 if s._last_value is None else s._last_value for s in scorers])
        newest = newest_before(ts, finite, bounds, last_ts)
        if newest is None:
            return None
        learnt = finite & (ts >= newest)
        # Each point's previous point: the last learnt one before it in its series.
        latest = np.maximum.accumulate(np.where(learnt, np.arange(n), -1))
        before = np.concatenate(([-1], latest[:-1]))
        inside = before >= bounds[:-1][gid]
        prev_ts = np.where(inside, ts[np.maximum(before, 0)], last_ts[gid])
        prev_vs = np.where(inside, vs[np.maximum(before, 0)], last_vs[gid])
        scores = scorers[0]._score(ts, vs, prev_ts, prev_vs)
        ends = latest[bounds[1:] - 1] if n else latest
        for g, scorer in enumerate(scorers):
            k = int(ends[g])
            if k >= bounds[g] and bounds[g + 1] > bounds[g]:
                scorer._last_ms, scorer._last_value = int(ts[k]), float(vs[k])
        return scores

    def state(self) -> dict[str, object]:
        return {"last_ms": self._last_ms, "last_value": self._last_value}

    def restore(self, state: dict[str, object]) -> None:
        if not isinstance(state, dict):
            raise ValueError(f"SensorFault state must be a mapping, got {type(state).__name__}")
        last_ms = get_opt_int(state, "last_ms")
        last_value = get_opt_float(state, "last_value")
        if (last_ms is None) != (last_value is None):
            raise ValueError("state fields last_ms/last_value must both be set or null")
        self._last_ms, self._last_value = last_ms, last_value

    def __repr__(self) -> str:
        return (
            f"SensorFault(low={self.low:g}, high={self.high:g}, "
            f"max_step_per_s={self.max_step_per_s!r})"
        )
