"""Flat line: how long a reading that normally moves has not moved (a stuck sensor)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from detectors._state import get_opt_float, get_opt_int
from detectors.base import Floats, Timestamps
from detectors.vectorised import NEVER, newest_before, one_kernel, process_loop

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
        last = NEVER if self._last_ms is None else self._last_ms
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
        scores = FlatLine._process(self.tolerance, [self], ts, values, np.array([0, len(ts)]))
        return process_loop(self, ts_ms, values) if scores is None else scores

    @classmethod
    def process_groups(
        cls,
        scorers: Sequence[FlatLine],
        ts_ms: Timestamps,
        values: Floats,
        bounds: npt.NDArray[np.intp],
    ) -> Floats | None:
        """``process_many`` of many series in one numpy pass; None if it does not apply.

        Point ``i`` belongs to ``scorers[g]`` for ``bounds[g] <= i < bounds[g + 1]``;
        scorers with different tolerances (or the same scorer twice) are left to
        the caller's per-series loop.
        """
        if not one_kernel(scorers, lambda s: s.tolerance):
            return None
        return cls._process(scorers[0].tolerance, scorers, ts_ms, values, bounds)

    @staticmethod
    def _process(
        tol: float,
        scorers: Sequence[FlatLine],
        ts_ms: Timestamps,
        values: Floats,
        bounds: npt.NDArray[np.intp],
    ) -> Floats | None:
        ts = np.asarray(ts_ms, dtype=np.int64)
        vs = np.asarray(values, dtype=np.float64)
        groups = len(scorers)
        gid = np.repeat(np.arange(groups), np.diff(bounds))
        finite = np.isfinite(vs)
        last = np.array(
            [NEVER if s._last_ms is None else s._last_ms for s in scorers], dtype=np.int64
        )
        newest = newest_before(ts, finite, bounds, last)
        if newest is None:
            return None
        ok = finite & (ts >= newest)
        scores = np.full(len(vs), np.nan)
        learnt = np.flatnonzero(ok)
        if len(learnt) == 0:
            return scores
        t, v, g = ts[learnt], vs[learnt], gid[learnt]
        # The learnt points, still grouped: group i is at[i]..at[i + 1].
        at = np.concatenate(([0], np.cumsum(np.bincount(g, minlength=groups))))
        anchors = [s._start_value for s in scorers]
        starts = _run_starts(v, at, anchors, tol)
        run = np.maximum.accumulate(np.where(starts, np.arange(len(t)), -1))
        # Points before their group's first new run continue the run in the state.
        state_start = np.array([0 if s._start_ms is None else s._start_ms for s in scorers])
        if groups == 1:  # one series: no per-point gathers of per-group values
            start_ms = np.where(run < 0, state_start[0], t[np.maximum(run, 0)])
        else:
            start_ms = np.where(run < at[:-1][g], state_start[g], t[np.maximum(run, 0)])
        scores[learnt] = np.where(starts, 0.0, (t - start_ms) / 1000.0)
        for i, scorer in enumerate(scorers):
            lo, hi = int(at[i]), int(at[i + 1])
            if hi == lo:
                continue
            r = int(run[hi - 1])
            if r >= lo:
                scorer._start_ms, scorer._start_value = int(t[r]), float(v[r])
            scorer._last_ms = int(t[hi - 1])
        return scores

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


def _run_starts(
    v: Floats, at: npt.NDArray[np.int64], anchors: Sequence[float | None], tol: float
) -> npt.NDArray[np.bool_]:
    """Which points start a new run; group ``i`` is ``v[at[i]:at[i + 1]]``, run ``anchors[i]``."""
    n = len(v)
    starts = np.zeros(n, dtype=bool)
    nonempty = [i for i in range(len(anchors)) if at[i + 1] > at[i]]
    if tol == 0:
        starts[1:] = v[1:] != v[:-1]
        for i in nonempty:
            anchor = anchors[i]
            starts[at[i]] = anchor is None or v[at[i]] != anchor
        return starts
    # following[i]: the first point after i in its group (looking _LOOKAHEAD ahead) more
    # than the tolerance away from v[i], i.e. where a run starting at i would end.
    group = np.repeat(np.arange(len(anchors)), np.diff(at))
    following = np.full(n, -1, dtype=np.int64)
    for d in range(1, min(_LOOKAHEAD, n - 1) + 1):
        ends = (np.abs(v[d:] - v[:-d]) > tol) & (following[:-d] < 0) & (group[d:] == group[:-d])
        following[:-d][ends] = np.flatnonzero(ends) + d
    # Hop from run start to run start: one cheap step per run, not per point.
    found = []
    hops = following.tolist()
    for i in nonempty:
        lo, hi, anchor = int(at[i]), int(at[i + 1]), anchors[i]
        if anchor is None or abs(float(v[lo]) - anchor) > tol:
            start = lo
        else:
            start = _first_beyond(v, lo + 1, hi, anchor, tol)
        while start < hi:
            found.append(start)
            end = hops[start]
            if end < 0:
                end = _first_beyond(v, min(start + _LOOKAHEAD + 1, hi), hi, v[start], tol)
            start = end
    starts[found] = True
    return starts


def _first_beyond(v: Floats, lo: int, hi: int, anchor: float, tolerance: float) -> int:
    """The first index in ``lo..hi-1`` more than ``tolerance`` from ``anchor``; ``hi`` if none.

    Searches in growing chunks, so a long flat run costs O(its length) in numpy
    and a few Python steps.
    """
    step = _LOOKAHEAD * 8
    while lo < hi:
        beyond = np.flatnonzero(np.abs(v[lo : min(lo + step, hi)] - anchor) > tolerance)
        if len(beyond):
            return lo + int(beyond[0])
        lo += step
        step *= 4
    return hi
