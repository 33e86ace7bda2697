"""Flat line: how long a reading that normally moves has not moved (a stuck sensor)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from detectors._state import get_opt_float, get_opt_int
from detectors.base import Floats, Timestamps
from detectors.vectorised import process_loop

_NEVER = np.iinfo(np.int64).min
#: Up to this many points, ``process_many`` loops: cheaper than numpy's per-call overhead.
_SHORT = 32
#: How far ahead every point looks for the end of a run it would start (tolerance > 0).
_LOOKAHEAD = 8


class FlatLine:
    """Seconds for which the value has stayed within ``tolerance`` of the run's first value.

    A cable temperature, a load or a pressure difference always wobbles a little;
    one that reports exactly the same number for an hour is a sensor that froze,
    or a gateway repeating its last value. That is a device fault the duty staff
    must see: a stuck sensor hides the fire it should report. Only meaningful for
    metrics that normally move; a smoke state or a valve position is flat by
    nature.

    A run starts at a point more than ``tolerance`` away from the current run's
    first value (the anchor). Anchoring to the first value rather than
    comparing neighbours means a slow creep of tiny steps, each within the
    tolerance, still ends the run: the sensor is moving. A run's first point
    scores 0. The default tolerance 0 asks for exactly equal readings, which is
    what a frozen sensor sends.

    Points older than the newest one learnt (late deliveries) and non-finite
    values score NaN and are not learnt: flatness is about the present.

    Examples
    --------
    A cable temperature reported every minute freezes at 31.5 °C:

    >>> flat = FlatLine()
    >>> for minute, celsius in enumerate([30.9, 31.2, 31.5, 31.5, 31.5, 31.5, 31.6]):
    ...     ts = minute * 60_000
    ...     print(minute, celsius, flat.score_one(ts, celsius))
    ...     flat.learn_one(ts, celsius)
    0 30.9 0.0
    1 31.2 0.0
    2 31.5 0.0
    3 31.5 60.0
    4 31.5 120.0
    5 31.5 180.0
    6 31.6 0.0

    With a tolerance, jitter of a quantised but stuck sensor still counts as flat:

    >>> FlatLine(tolerance=0.2).process_many(
    ...     np.array([0, 60_000, 120_000, 180_000]), np.array([20.0, 20.1, 19.9, 20.3])).tolist()
    [0.0, 60.0, 120.0, 0.0]
    """

    __slots__ = ("_last_ms", "_start_ms", "_start_value", "tolerance")

    def __init__(self, tolerance: float = 0.0) -> None:
        if not (math.isfinite(tolerance) and tolerance >= 0):
            raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance}")
        self.tolerance = float(tolerance)
        self._start_ms: int | None = None
        self._start_value: float | None = None
        self._last_ms: int | None = None

    @classmethod
    def _contract_params(cls) -> list[dict[str, object]]:
        return [{}, {"tolerance": 15.0}, {"tolerance": 60.0}]

    def _accepts(self, ts_ms: int, value: float) -> bool:
        return math.isfinite(value) and (self._last_ms is None or ts_ms >= self._last_ms)

    def _breaks(self, value: float) -> bool:
        return self._start_value is None or abs(value - self._start_value) > self.tolerance

    def score_one(self, ts_ms: int, value: float) -> float:
        ts_ms, value = int(ts_ms), float(value)
        if not self._accepts(ts_ms, value):
            return math.nan
        if self._breaks(value) or self._start_ms is None:
            return 0.0
        return (ts_ms - self._start_ms) / 1000.0

    def learn_one(self, ts_ms: int, value: float) -> None:
        ts_ms, value = int(ts_ms), float(value)
        if not self._accepts(ts_ms, value):
            return
        if self._breaks(value):
            self._start_ms, self._start_value = ts_ms, value
        self._last_ms = ts_ms

    def score_many(self, ts_ms: Timestamps, values: Floats) -> Floats:
        ts = np.asarray(ts_ms, dtype=np.int64)
        vs = np.asarray(values, dtype=np.float64)
        last = _NEVER if self._last_ms is None else self._last_ms
        ok = np.isfinite(vs) & (ts >= last)
        if self._start_ms is None or self._start_value is None:
            return np.where(ok, 0.0, np.nan)
        with np.errstate(invalid="ignore"):
            flat = np.abs(vs - self._start_value) <= self.tolerance
        return np.where(ok, np.where(flat, (ts - self._start_ms) / 1000.0, 0.0), np.nan)

    def process_many(self, ts_ms: Timestamps, values: Floats) -> Floats:
        """Score then learn each point in order, vectorised; same as the streaming loop.

        With ``tolerance == 0`` a run starts wherever the value changes, which is
        one comparison per point. With a tolerance, where a run would end is
        found for every point at once (looking a few points ahead, and by a
        vectorised search beyond), and then only run starts are visited: one
        list lookup per run.
        """
        if len(ts_ms) <= _SHORT:
            return process_loop(self, ts_ms, values)
        ts = np.asarray(ts_ms, dtype=np.int64)
        vs = np.asarray(values, dtype=np.float64)
        scores = np.full(len(vs), np.nan)
        finite = np.isfinite(vs)
        last = _NEVER if self._last_ms is None else self._last_ms
        newest = np.maximum.accumulate(np.concatenate(([last], np.where(finite, ts, _NEVER))))
        ok = finite & (ts >= newest[:-1])
        t, v = ts[ok], vs[ok]
        if len(t) == 0:
            return scores
        starts = self._run_starts(v)
        index = np.arange(len(t))
        run = np.maximum.accumulate(np.where(starts, index, -1))
        # Points before the first new run continue the run in the state.
        before = run < 0
        start_ms = np.where(before, 0 if self._start_ms is None else self._start_ms, t[run])
        scores[ok] = np.where(starts, 0.0, (t - start_ms) / 1000.0)
        if run[-1] >= 0:
            self._start_ms, self._start_value = int(t[run[-1]]), float(v[run[-1]])
        self._last_ms = int(t[-1])
        return scores

    def _run_starts(self, v: Floats) -> npt.NDArray[np.bool_]:
        """Which points start a new run, given the anchor in the state."""
        n, tol, anchor = len(v), self.tolerance, self._start_value
        starts = np.zeros(n, dtype=bool)
        if tol == 0:
            starts[0] = anchor is None or v[0] != anchor
            starts[1:] = v[1:] != v[:-1]
            return starts
        # following[i]: the first point after i (looking _LOOKAHEAD ahead) that is more
        # than the tolerance away from v[i], i.e. where a run starting at i would end.
        following = np.full(n, -1, dtype=np.int64)
        for d in range(1, min(_LOOKAHEAD, n - 1) + 1):
            ends = (np.abs(v[d:] - v[:-d]) > tol) & (following[:-d] < 0)
            following[:-d][ends] = np.flatnonzero(ends) + d
        if anchor is None or abs(float(v[0]) - anchor) > tol:
            start = 0
        else:
            start = _first_beyond(v, 1, anchor, tol)
        # Hop from run start to run start: one cheap step per run, not per point.
        found = []
        hops = following.tolist()
        while start < n:
            found.append(start)
            end = hops[start]
            start = end if end >= 0 else _first_beyond(v, start + _LOOKAHEAD + 1, v[start], tol)
        starts[found] = True
        return starts

    def state(self) -> dict[str, object]:
        return {
            "start_ms": self._start_ms,
            "start_value": self._start_value,
            "last_ms": self._last_ms,
        }

    def restore(self, state: dict[str, object]) -> None:
        if not isinstance(state, dict):
            raise ValueError(f"FlatLine state must be a mapping, got {type(state).__name__}")
        start_ms = get_opt_int(state, "start_ms")
        start_value = get_opt_float(state, "start_value")
        last_ms = get_opt_int(state, "last_ms")
        if len({start_ms is None, start_value is None, last_ms is None}) != 1:
            raise ValueError("state fields start_ms/start_value/last_ms must all be set or null")
        if start_ms is not None and last_ms is not None and last_ms < start_ms:
            raise ValueError("state field 'last_ms' is before 'start_ms'")
        self._start_ms, self._start_value, self._last_ms = start_ms, start_value, last_ms

    def __repr__(self) -> str:
        return f"FlatLine(tolerance={self.tolerance:g})"


def _first_beyond(v: Floats, lo: int, anchor: float, tolerance: float) -> int:
    """The first index >= ``lo`` more than ``tolerance`` from ``anchor``; ``len(v)`` if none.

    Searches in growing chunks, so a long flat run costs O(its length) in numpy
    and a few Python steps.
    """
    step = _LOOKAHEAD * 8
    while lo < len(v):
        beyond = np.flatnonzero(np.abs(v[lo : lo + step] - anchor) > tolerance)
        if len(beyond):
            return lo + int(beyond[0])
        lo += step
        step *= 4
    return len(v)
