"""Score interleaved points of many series at once, one vectorised call per series.

A backtest over a site's history, or a batch the gateway receives after a
transmission device reconnects, holds points of many series mixed together.
Calling ``score_one``/``learn_one`` point by point costs a Python round trip per
point; grouping by series and handing each group to the scorer's
``process_many`` costs one call per series, the rest is numpy.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Sequence
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt

from detectors.base import Floats, Scorer, Timestamps


@runtime_checkable
class ProcessMany(Protocol):
    """A scorer with a vectorised path: score then learn each point in order."""

    def process_many(self, ts_ms: Timestamps, values: Floats) -> Floats:
        """Same scores and final state as ``s = score_one(t, v); learn_one(t, v)`` per point."""
        ...


def process_loop(scorer: Scorer, ts_ms: Timestamps, values: Floats) -> Floats:
    """The reference ``process_many``: score then learn each point, one by one.

    Scorers use it for short arrays, where numpy's per-call overhead costs more
    than a few Python steps (a gateway batch often holds a handful of points
    per series); it is also what ``process_many`` is tested against.

    >>> from detectors.flatline import FlatLine
    >>> process_loop(FlatLine(), np.array([0, 1_000]), np.array([3.0, 3.0])).tolist()
    [0.0, 1.0]
    """
    scores = np.empty(len(values), dtype=np.float64)
    for i, (t, v) in enumerate(
        zip(np.asarray(ts_ms).tolist(), np.asarray(values).tolist(), strict=True)
    ):
        scores[i] = scorer.score_one(int(t), float(v))
        scorer.learn_one(int(t), float(v))
    return scores


_S = TypeVar("_S")


def one_kernel(scorers: Sequence[_S], params: Callable[[_S], Hashable]) -> bool:
    """Whether a ``process_groups`` may run ``scorers`` through one kernel.

    It may if there is at least one scorer, none appears twice (its state would
    be read once and written twice) and all have the same ``params`` (the
    kernel takes one set); if not, ``process_groups`` returns None and the
    caller goes series by series.

    >>> from detectors.flatline import FlatLine
    >>> a, b = FlatLine(), FlatLine()
    >>> one_kernel([a, b], lambda s: s.tolerance), one_kernel([a, a], lambda s: s.tolerance)
    (True, False)
    """
    if not scorers or len({id(s) for s in scorers}) != len(scorers):
        return False
    first = params(scorers[0])
    return all(params(s) == first for s in scorers)


#: "No timestamp": below every epoch millisecond.
NEVER = int(np.iinfo(np.int64).min)


def newest_before(
    ts_ms: Timestamps,
    counts: npt.NDArray[np.bool_],
    bounds: npt.NDArray[np.intp],
    initial: Timestamps,
) -> Timestamps | None:
    """Per point, the newest timestamp of the counted points before it in its group.

    Group ``g`` is ``bounds[g] <= i < bounds[g + 1]`` and starts from ``initial[g]``
    (its scorer's newest learnt timestamp, or :data:`NEVER`). It is what decides
    which points a scorer learns (only those newer than everything before), for
    all groups in one running maximum: keys put each group above all earlier
    ones. None if the timestamps span too far for such keys (then go group by
    group).

    >>> newest_before(np.array([5, 3, 9, 1, 2]), np.array([True] * 5), np.array([0, 3, 5]),
    ...               np.array([4, NEVER])).tolist() == [4, 5, 5, NEVER, 1]
    True
    """
    n, groups = len(ts_ms), len(bounds) - 1
    if groups == 1:  # one series (``process_many``): a plain running maximum
        newest = np.empty(n, dtype=np.int64)
        newest[:1] = initial[0]
        if n > 1:
            np.maximum.accumulate(np.where(counts, ts_ms, NEVER)[:-1], out=newest[1:])
            np.maximum(newest, initial[0], out=newest)
        return newest
    lengths = np.diff(bounds)
    gid = np.repeat(np.arange(groups, dtype=np.int64), lengths)
    real = np.concatenate((ts_ms[counts], initial[initial != NEVER]))
    low = int(real.min()) if len(real) else 0
    span = int(real.max()) - low + 2 if len(real) else 2
    if groups == 0 or span >= (1 << 62) // groups:
        return None
    base = gid * span
    key = base + np.where(counts, ts_ms - low + 1, 0)
    before = np.empty(n, dtype=np.int64)
    before[1:] = np.maximum.accumulate(key)[:-1]
    starts = bounds[:-1][lengths > 0]
    before[starts] = base[starts]
    newest = np.where(before - base >= 1, before - base - 1 + low, NEVER)
    return np.maximum(newest, initial[gid])


def process_grouped(
    make: Callable[[str], ProcessMany],
    series: npt.NDArray[np.str_] | Sequence[str],
    ts_ms: Timestamps | Sequence[int],
    values: Floats | Sequence[float],
) -> Floats:
    """Scores of interleaved points of many series, returned in the input order.

    Points are stably sorted by series and then by time, so within a series they
    are processed in time order (a history file or a late batch is not
    delivery order; points with equal timestamps keep their input order).
    ``make(key)`` is called once per series, in sorted key order, before any
    point is processed, and returns the scorer to feed: a fresh one for a
    backtest, or the live one from a bank so its state moves on. When every
    scorer is of one class that has a ``process_groups`` classmethod, all series
    go through it in one numpy pass (the same scores and states); otherwise each
    series is one ``process_many`` call.

    Examples
    --------
    Two cable temperatures interleaved; each flat-line clock runs on its own:

    >>> from detectors.flatline import FlatLine
    >>> scorers: dict[str, FlatLine] = {}
    >>> def make(key: str) -> FlatLine:
    ...     return scorers.setdefault(key, FlatLine())
    >>> series = ["a", "b", "a", "b", "a", "b"]
    >>> ts = [0, 0, 60_000, 60_000, 120_000, 120_000]
    >>> values = [30.0, 41.0, 30.0, 41.5, 30.0, 41.5]
    >>> process_grouped(make, series, ts, values).tolist()
    [0.0, 0.0, 60.0, 0.0, 120.0, 60.0]
    >>> scorers["a"].score_one(180_000, 30.0)  # streaming continues where the batch left off
    180.0
    """
    keys = np.asarray(series)
    ts = np.asarray(ts_ms, dtype=np.int64)
    vs = np.asarray(values, dtype=np.float64)
    if not (keys.ndim == ts.ndim == vs.ndim == 1 and len(keys) == len(ts) == len(vs)):
        raise ValueError(
            f"series, ts_ms and values must be 1-D and of one length, "
            f"got {keys.shape}, {ts.shape}, {vs.shape}"
        )
    scores = np.full(len(vs), np.nan)
    if len(vs) == 0:
        return scores
    # Stable: by time first, then by series, so each series ends up in time order.
    by_time = np.argsort(ts, kind="stable")
    order = by_time[np.argsort(keys[by_time], kind="stable")]
    sorted_keys = keys[order]
    edges = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
    bounds = np.concatenate(([0], edges, [len(order)]))
    scorers = [make(str(sorted_keys[lo])) for lo in bounds[:-1]]
    # A scorer class may process all series in one pass (``RateOfRise.process_groups``).
    batched = getattr(type(scorers[0]), "process_groups", None)
    if batched is not None and all(type(s) is type(scorers[0]) for s in scorers):
        together = batched(scorers, ts[order], vs[order], bounds)
        if together is not None:
            scores[order] = together
            return scores
    for scorer, (lo, hi) in zip(scorers, itertools.pairwise(bounds), strict=True):
        group = order[lo:hi]
        result = scorer.process_many(ts[group], vs[group])
        if result.shape != group.shape:
            raise ValueError(
                f"process_many returned {result.shape[0]} scores for {len(group)} points"
            )
        scores[group] = result
    return scores
