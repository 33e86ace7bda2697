"""Rate of rise: how fast a reading climbs, in units per minute, robust to one bad sample.

A fixed-temperature heat detector alarms at 54-85 °C; a rate-of-rise one (class
suffix R, ~10 °C/min in practice, ``domain.md``) alarms on a fast climb long
before that, which is what catches a smouldering cable or a hot ash hopper early.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from detectors._state import get_float_list, get_int_list
from detectors.base import Floats, Timestamps
from detectors.vectorised import NEVER, newest_before, one_kernel, process_loop

_MS_PER_MIN = 60_000.0
#: Up to this many points, ``process_many`` loops: cheaper than numpy's per-call overhead.
_SHORT = 16
#: Rows per block in the vectorised path, so 1M points never need ~200 MB of slopes at once.
_BLOCK = 32_768


class RateOfRise:
    """Rise rate (units per minute, e.g. °C/min) over a few points spread across a window.

    The score is the **repeated-median slope** (Siegel) of at most ``max_points``
    kept points no older than ``window_s`` before the newest one: for each
    point, the median of its slopes to the others; the score is the median of
    those. Why this estimator:

    * a least-squares slope, or the plain difference over the window, is moved by
      every sample: one +30 °C glitch among a few points 10 s apart reads as a
      rise of far more than 10 °C/min and would page duty staff for a fire that
      is not there;
    * medians of slopes ignore bad points. Theil–Sen (the median of all pairwise
      slopes) tolerates ~29 % of them, so it needs 5 points before one glitch is
      harmless; the repeated median tolerates just under half, so a single glitch
      cannot move it from 4 points on: that matters for a heat detector reporting
      every 15 s into a 60 s window. (No slope estimator can tell a glitch from
      a real jump with only 3 points; keep ``min_points >= 4`` where the first
      points after a (re)start must not be fooled either.)
    * a median filter before a slope would do too, but adds a fixed one-sample
      delay to every real rise; the repeated median needs no future point and
      works directly on irregular timestamps.

    At most ``max_points`` points are kept, so each point costs O(1)
    (``max_points**2`` slopes at most), and they are **spread over the window**:
    a point closer than ``window_s / (max_points - 2)`` to the last spaced point
    replaces the newest kept point instead of being added. Keeping merely the
    last few points would measure a device that reports every second over its
    last 8 seconds, where ±0.3 °C of noise or one 0.1 °C resolution step reads
    as several °C/min; spread out, the rate is the trend over the whole window.
    A slowly reporting device keeps every point. The window is measured back
    from the newest point, so a gap longer than ``window_s`` restarts it: the
    score is NaN (no opinion) until ``min_points`` points fall in the window
    again.

    The score of a point includes the point itself (the rate *now*). Points
    not newer than the newest one learnt (a repeated or late delivery) and
    non-finite values score NaN and are not learnt: a rate is about the
    present, and a late point must not bend it.

    Examples
    --------
    A cable heating at 12 °C/min from 50 s on, sampled every 10 s, with one
    glitch of +30 °C at 30 s:

    >>> ror = RateOfRise(window_s=60)
    >>> series = [(0, 25.0), (10_000, 25.0), (20_000, 25.0), (30_000, 55.0), (40_000, 25.0),
    ...           (50_000, 25.0), (60_000, 27.0), (70_000, 29.0), (80_000, 31.0),
    ...           (90_000, 33.0), (100_000, 35.0), (110_000, 37.0)]
    >>> for ts, celsius in series:
    ...     score = ror.score_one(ts, celsius)
    ...     ror.learn_one(ts, celsius)
    ...     print(ts // 1000, celsius, round(score, 1))
    0 25.0 nan
    10 25.0 nan
    20 25.0 0.0
    30 55.0 0.0
    40 25.0 0.0
    50 25.0 0.0
    60 27.0 0.0
    70 29.0 1.2
    80 31.0 6.0
    90 33.0 12.0
    100 35.0 12.0
    110 37.0 12.0

    The glitch did not register; the rise shows once it makes up more than half
    of the window. ``process_many`` (numpy beyond a few points) gives the same
    scores and leaves the same state:

    >>> again = RateOfRise(window_s=60)
    >>> ts = np.array([t for t, _ in series]); values = np.array([v for _, v in series])
    >>> np.round(again.process_many(ts, values), 1).tolist()[-5:]
    [1.2, 6.0, 12.0, 12.0, 12.0]
    >>> again.state() == ror.state()
    True
    """

    __slots__ = (
        "_max_points",
        "_min_points",
        "_spacing_ms",
        "_ts",
        "_values",
        "_window_ms",
        "window_s",
    )

    def __init__(self, window_s: float = 60.0, min_points: int = 3, *, max_points: int = 8) -> None:
        if not (math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"window_s must be a finite number > 0, got {window_s}")
        if not 3 <= max_points <= 64:
            raise ValueError(f"max_points must be in 3..64, got {max_points}")
        if not 2 <= min_points <= max_points:
            raise ValueError(
                f"min_points must be in 2..max_points ({max_points}), got {min_points}"
            )
        self.window_s = float(window_s)
        self._window_ms = self.window_s * 1000.0
        self._min_points = min_points
        self._max_points = max_points
        # Kept points are about this far apart, so max_points of them span the window
        # (the newest learnt point and the candidate come on top of the spaced ones).
        self._spacing_ms = max(1, math.ceil(self._window_ms / (max_points - 2)))
        # The kept points, oldest first; timestamps strictly increasing; the last one
        # is always the newest point learnt.
        self._ts: list[int] = []
        self._values: list[float] = []

    @classmethod
    def _contract_params(cls) -> list[dict[str, object]]:
        return [{}, {"window_s": 600.0, "min_points": 5}, {"window_s": 3600.0, "max_points": 4}]

    # -- streaming -------------------------------------------------------------

    def _accepts(self, ts_ms: int, value: float) -> bool:
        return math.isfinite(value) and (not self._ts or ts_ms > self._ts[-1])

    def score_one(self, ts_ms: int, value: float) -> float:
        ts_ms, value = int(ts_ms), float(value)
        if not self._accepts(ts_ms, value):
            return math.nan
        keep = self._max_points - 1
        ts = [*self._ts[-keep:], ts_ms]
        values = [*self._values[-keep:], value]
        oldest = ts_ms - self._window_ms
        first = 0
        while ts[first] < oldest:
            first += 1
        if len(ts) - first < self._min_points:
            return math.nan
        return _repeated_median(ts[first:], values[first:])

    def learn_one(self, ts_ms: int, value: float) -> None:
        ts_ms, value = int(ts_ms), float(value)
        if not self._accepts(ts_ms, value):
            return
        if len(self._ts) >= 2 and ts_ms - self._ts[-2] < self._spacing_ms:
            # Too close to the last spaced point: the newest point moves forward.
            self._ts[-1], self._values[-1] = ts_ms, value
            return
        self._ts.append(ts_ms)
        self._values.append(value)
        if len(self._ts) > self._max_points:
            del self._ts[0], self._values[0]

    # -- vectorised ------------------------------------------------------------

    def score_many(self, ts_ms: Timestamps, values: Floats) -> Floats:
        ts = np.asarray(ts_ms, dtype=np.int64)
        vs = np.asarray(values, dtype=np.float64)
        n, k = len(ts), self._max_points
        last = self._ts[-1] if self._ts else NEVER
        ok = np.isfinite(vs) & (ts > last)
        # Every row: the kept points (left-padded to k - 1) and then the candidate.
        pad = k - 1 - min(len(self._ts), k - 1)
        kept_ts = np.array([0] * pad + self._ts[-(k - 1) :], dtype=np.int64)
        kept_vs = np.array([0.0] * pad + self._values[-(k - 1) :], dtype=np.float64)
        rows_ts = np.empty((n, k), dtype=np.int64)
        rows_vs = np.empty((n, k), dtype=np.float64)
        rows_ts[:, :-1], rows_ts[:, -1] = kept_ts, ts
        rows_vs[:, :-1], rows_vs[:, -1] = kept_vs, vs
        real = np.ones(k, dtype=bool)
        real[:pad] = False
        valid = real & (rows_ts >= (ts - self._window_ms)[:, None])
        scores = self._score_rows(rows_ts, rows_vs, valid)
        scores[~ok] = np.nan
        return scores

    def process_many(self, ts_ms: Timestamps, values: Floats) -> Floats:
        """Score then learn each point in order, vectorised; same as the streaming loop."""
        if len(ts_ms) <= _SHORT:
            return process_loop(self, ts_ms, values)
        bounds = np.array([0, len(ts_ms)], dtype=np.intp)
        scores = RateOfRise._process([self], ts_ms, values, bounds)
        return process_loop(self, ts_ms, values) if scores is None else scores

    @classmethod
    def process_groups(
        cls,
        scorers: Sequence[RateOfRise],
        ts_ms: Timestamps,
        values: Floats,
        bounds: npt.NDArray[np.intp],
    ) -> Floats | None:
        """``process_many`` of many series in one numpy pass; None if it does not apply.

        Point ``i`` belongs to ``scorers[g]`` for ``bounds[g] <= i < bounds[g + 1]``.
        With 10,000 series of 100 points, one call per series spends most of its
        time in numpy's per-call overhead; here every series' windows go through
        one kernel. Scorers with different parameters (or the same scorer twice)
        are left to the caller's per-series loop.
        """
        if not one_kernel(scorers, lambda s: (s._window_ms, s._min_points, s._max_points)):
            return None
        return cls._process(scorers, ts_ms, values, bounds)

    @staticmethod
    def _process(
        scorers: Sequence[RateOfRise],
        ts_ms: Timestamps,
        values: Floats,
        bounds: npt.NDArray[np.intp],
    ) -> Floats | None:
        first = scorers[0]
        ts = np.asarray(ts_ms, dtype=np.int64)
        vs = np.asarray(values, dtype=np.float64)
        n, groups, k = len(ts), len(scorers), first._max_points
        gid = np.repeat(np.arange(groups), np.diff(bounds))
        finite = np.isfinite(vs)
        last = np.array([s._ts[-1] if s._ts else NEVER for s in scorers], dtype=np.int64)
        newest = newest_before(ts, finite, bounds, last)
        if newest is None:
            return None
        ok = finite & (ts > newest)
        scores = np.full(n, np.nan)
        if not ok.any():
            return scores
        # Each series' segment: its kept points, then its newly learnt ones.
        kept = np.array([len(s._ts) for s in scorers], dtype=np.int64)
        learnt = np.flatnonzero(ok)
        learnt_per = np.bincount(gid[learnt], minlength=groups)
        size = kept + learnt_per
        seg_start = np.concatenate(([0], np.cumsum(size)[:-1]))
        seg_end = seg_start + size
        total = int(size.sum())
        all_ts = np.empty(total, dtype=np.int64)
        all_vs = np.empty(total, dtype=np.float64)
        kept_first = np.concatenate(([0], np.cumsum(kept)[:-1]))
        kept_pos = np.repeat(seg_start - kept_first, kept) + np.arange(int(kept.sum()))
        all_ts[kept_pos] = [t for s in scorers for t in s._ts]
        all_vs[kept_pos] = [v for s in scorers for v in s._values]
        g = gid[learnt]
        learnt_first = np.concatenate(([0], np.cumsum(learnt_per)[:-1]))
        pos = seg_start[g] + kept[g] + np.arange(len(learnt)) - learnt_first[g]
        all_ts[pos], all_vs[pos] = ts[learnt], vs[learnt]
        spaced = first._spaced(all_ts, seg_start, seg_end, kept)
        if spaced is None:
            return None
        # Each learnt point is scored with the kept points before it: the last k - 2
        # spaced points before its predecessor, its predecessor (the newest learnt
        # point, always kept) and itself.
        c = np.searchsorted(spaced, pos - 1, side="left")
        cols = c[:, None] + np.arange(2 - k, 0)[None, :]
        spaced_pad = np.concatenate((spaced, [0]))  # index -1 lands on the pad
        idx = np.concatenate(
            (spaced_pad[np.where(cols >= 0, cols, len(spaced))], (pos - 1)[:, None], pos[:, None]),
            axis=1,
        )
        in_series = idx >= seg_start[g][:, None]
        in_series[:, :-2] &= cols >= 0
        idx = np.where(in_series, idx, pos[:, None])
        rows_ts = all_ts[idx]
        rows_vs = all_vs[idx]
        valid = in_series & (rows_ts >= (all_ts[pos] - first._window_ms)[:, None])
        scores[learnt] = first._score_rows(rows_ts, rows_vs, valid)
        # The state: the last k - 1 spaced points of each series and its newest point.
        ts_list, vs_list = all_ts.tolist(), all_vs.tolist()
        per_series = np.searchsorted(spaced, seg_end - 1, side="left")
        lo_series = np.searchsorted(spaced, seg_start, side="left")
        spaced_list = spaced.tolist()
        for i, scorer in enumerate(scorers):
            end = int(seg_end[i])
            if end == int(seg_start[i]):
                continue
            keep = spaced_list[
                max(int(lo_series[i]), int(per_series[i]) - (k - 1)) : int(per_series[i])
            ]
            keep.append(end - 1)
            scorer._ts = [ts_list[j] for j in keep]
            scorer._values = [vs_list[j] for j in keep]
        return scores

    def _spaced(
        self,
        all_ts: Timestamps,
        seg_start: npt.NDArray[np.int64],
        seg_end: npt.NDArray[np.int64],
        kept: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.int64] | None:
        """Indices of the points that end up kept as spaced points (not the newest one).

        The streaming rule: a point closer than the spacing to the last spaced point
        replaces the newest one, otherwise the newest becomes a spaced point. So the
        spaced point after ``f`` is the last point before ``t[f] + spacing`` (or the
        next point if none), once a later point exists: one hop per spaced point,
        the targets found for every point at once.
        """
        groups = len(seg_start)
        sizes = seg_end - seg_start
        gid = np.repeat(np.arange(groups, dtype=np.int64), sizes)
        low = int(all_ts.min())
        span = int(all_ts.max()) - low + self._spacing_ms + 2
        if span >= (1 << 62) // max(groups, 1):
            return None
        key = gid * span + (all_ts - low)
        target = np.searchsorted(key, key + self._spacing_ms, side="left")
        target = np.minimum(target, seg_end[gid])
        hops = np.maximum(np.arange(len(all_ts)) + 1, target - 1).tolist()
        spaced: list[int] = []
        for lo, hi, m in zip(seg_start.tolist(), seg_end.tolist(), kept.tolist(), strict=True):
            if hi == lo:
                continue
            if m >= 2:
                spaced.extend(range(lo, lo + m - 1))
                f = lo + m - 2
            elif lo + 1 < hi:
                spaced.append(lo)
                f = lo
            else:
                continue
            while True:
                f = hops[f]
                if f + 1 >= hi:
                    break
                spaced.append(f)
        return np.array(spaced, dtype=np.int64)

    def _score_rows(
        self,
        rows_ts: npt.NDArray[np.int64],
        rows_vs: Floats,
        valid: npt.NDArray[np.bool_],
    ) -> Floats:
        """Repeated-median slope of each row's valid points; NaN below ``min_points``."""
        n, k = rows_ts.shape
        out = np.full(n, np.nan)
        columns = np.arange(k)[None, :]
        for start in range(0, n, _BLOCK):
            block = slice(start, start + _BLOCK)
            m = valid[block]
            rows = np.arange(len(m))[:, None]
            # Epoch ms are exact in float64 (< 2**53), so differences equal the int ones.
            t = rows_ts[block].astype(np.float64)
            # NaN for points not in the window: every slope touching them is NaN, and so
            # is the diagonal (0 / 0), so NaN marks exactly the pairs that do not count.
            v = np.where(m, rows_vs[block], np.nan)
            # slopes[r, i, j]: from point i to point j (symmetric, exactly), in place.
            slopes = v[:, None, :] - v[:, :, None]
            slopes *= _MS_PER_MIN
            with np.errstate(divide="ignore", invalid="ignore"):
                np.divide(slopes, t[:, None, :] - t[:, :, None], out=slopes)
            slopes.sort(axis=2)  # NaN sorts last
            points = m.sum(axis=1)
            others = (points - 1)[:, None]
            lo, hi = np.maximum(others - 1, 0) // 2, others // 2
            each = (slopes[rows, columns, lo] + slopes[rows, columns, hi]) / 2
            each.sort(axis=1)
            lo1, hi1 = np.maximum(points - 1, 0) // 2, points // 2
            median = (each[rows[:, 0], lo1] + each[rows[:, 0], hi1]) / 2
            out[block] = np.where(points >= max(self._min_points, 2), median, np.nan)
        return out

    # -- state -----------------------------------------------------------------

    def state(self) -> dict[str, object]:
        return {"ts_ms": list(self._ts), "values": list(self._values)}

    def restore(self, state: dict[str, object]) -> None:
        if not isinstance(state, dict):
            raise ValueError(f"RateOfRise state must be a mapping, got {type(state).__name__}")
        ts = get_int_list(state, "ts_ms")
        values = get_float_list(state, "values")
        if len(ts) != len(values):
            raise ValueError("state fields 'ts_ms' and 'values' differ in length")
        if any(b <= a for a, b in itertools.pairwise(ts)):
            raise ValueError("state field 'ts_ms' must be strictly increasing")
        # A profile may have lowered max_points while the gateway was down.
        self._ts = ts[-self._max_points :]
        self._values = values[-self._max_points :]

    def __repr__(self) -> str:
        return (
            f"RateOfRise(window_s={self.window_s:g}, min_points={self._min_points}, "
            f"max_points={self._max_points})"
        )


def _repeated_median(ts: list[int], values: list[float]) -> float:
    """Siegel's repeated-median slope per minute; the same arithmetic as the vectorised path."""
    n = len(ts)
    # others[i]: point i's slopes to every other point (a slope is the same seen from both ends).
    others: list[list[float]] = [[] for _ in range(n)]
    for i in range(n):
        ti, vi, mine = ts[i], values[i], others[i]
        for j in range(i + 1, n):
            slope = (values[j] - vi) * _MS_PER_MIN / (ts[j] - ti)
            mine.append(slope)
            others[j].append(slope)
    return _median([_median(slopes) for slopes in others])


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    count = len(ordered)
    return (ordered[(count - 1) // 2] + ordered[count // 2]) / 2
