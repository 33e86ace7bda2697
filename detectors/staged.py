"""Thresholds as a wrapper: turn any scorer's scores into normal / pre-warning / alarm.

Like river's ``ThresholdFilter``, the threshold is not part of a detector but
wraps one. Every rule then gets the same behaviour the field expects:

* **two stages**: electrical fire monitors pre-warn at a fraction of the alarm
  value, gas detectors have level 1 and level 2 (``domain.md``);
* **above, below or outside a band**: a drift of more than 20 % either way from
  a dust collector's baseline is one rule, not two;
* **a delay** (seconds and/or consecutive samples) so a single spike from a
  motor start does not page duty staff, while GB 14287's 30 s budget from
  crossing to alarm is kept by choosing the delay in the profile;
* **hysteresis or a separate clear condition** so a reading hovering on the
  bound raises once and clears once, instead of flooding the alert list and
  the "false alarms per day" statistics;
* **an active flag** per point (a rule's schedule): outside it nothing is
  judged and an open stage ends;
* **one vectorised path** (:meth:`Staged.process_many`) that gives exactly the
  stages and changes of calling :meth:`Staged.update` point by point, for
  backtests over millions of rows and for large batches in the gateway.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from alerts.model import Stage
from detectors._state import get_dict, get_int, get_opt_int
from detectors.base import Floats, Scorer, StageChange, Timestamps
from detectors.vectorised import newest_before, process_loop

Direction = Literal["above", "below", "outside"]
#: A bound: one number for above/below, ``(low, high)`` for outside.
Bound = float | tuple[float, float]
#: ``(low, high)``: crossed at ``score <= low`` or ``score >= high``; None: no such side.
Band = tuple[float | None, float | None]

_RAISED = (Stage.PREWARNING, Stage.ALARM)
_INT_MIN = np.iinfo(np.int64).min
#: process_groups works in blocks of whole series of about this many points.
_CHUNK_POINTS = 1 << 18


class ActiveAt(Protocol):
    """When a rule judges at all (:class:`detectors.schedule.Schedule` is one)."""

    def active(self, ts_ms: int) -> bool: ...

    def active_many(self, ts_ms: Timestamps) -> npt.NDArray[np.bool_]: ...


@dataclass(slots=True)
class Processed:
    """What :meth:`Staged.process_many` made of a batch: per point, and the changes.

    ``stages[i]`` is the stage after point ``i`` (``int(Stage)``); a point that was
    ignored (NaN score, late) keeps the stage before it. ``at[k]`` is the position
    in the batch of ``changes[k]``.
    """

    scores: Floats
    stages: npt.NDArray[np.int8]
    changes: list[StageChange] = field(default_factory=list)
    at: list[int] = field(default_factory=list)


def score_and_learn(scorer: Scorer, ts_ms: Timestamps, values: Floats) -> Floats:
    """Score each point against the state before it, then learn it; all points in order.

    Uses the scorer's own vectorised ``process_many`` when it has one (it must be
    exactly this loop), otherwise this loop.
    """
    many = getattr(scorer, "process_many", None)
    if many is not None:
        return np.asarray(many(ts_ms, values), dtype=np.float64)
    return process_loop(scorer, ts_ms, values)


def _band(direction: Direction, bound: Bound, what: str) -> Band:
    if direction == "outside":
        if not isinstance(bound, tuple) or len(bound) != 2:
            raise ValueError(f"{what} must be (low, high) for direction 'outside', got {bound!r}")
        low, high = float(bound[0]), float(bound[1])
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"{what} band must be finite with low < high, got {bound!r}")
        return low, high
    if isinstance(bound, tuple):
        raise ValueError(f"{what} must be one number for direction {direction!r}, got {bound!r}")
    value = float(bound)
    if not math.isfinite(value):
        raise ValueError(f"{what} bound must be finite, got {bound}")
    return (None, value) if direction == "above" else (value, None)


def _within(inner: Band, outer: Band, *, strict: bool) -> bool:
    """Whether ``inner`` lies on the normal side of ``outer`` (each present side)."""
    ok = True
    if outer[1] is not None and inner[1] is not None:
        ok &= inner[1] < outer[1] if strict else inner[1] <= outer[1]
    if outer[0] is not None and inner[0] is not None:
        ok &= inner[0] > outer[0] if strict else inner[0] >= outer[0]
    return ok


def _beyond(score: float, band: Band | None) -> bool:
    if band is None:
        return False
    low, high = band
    return (high is not None and score >= high) or (low is not None and score <= low)


def _beyond_many(scores: Floats, band: Band | None) -> npt.NDArray[np.bool_]:
    result = np.zeros(scores.shape, dtype=bool)
    if band is None:
        return result
    low, high = band
    if high is not None:
        result |= scores >= high
    if low is not None:
        result |= scores <= low
    return result


def _last_index(decisive: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """For each position, the index of the last decisive one at or before it (-1: none)."""
    idx = np.arange(decisive.size, dtype=np.int64)
    return np.maximum.accumulate(np.where(decisive, idx, -1))


def _hold(
    decisive: npt.NDArray[np.bool_],
    value: npt.NDArray[np.bool_],
    initial: npt.NDArray[np.bool_],
    start: npt.NDArray[np.intp],
) -> npt.NDArray[np.bool_]:
    """A two-state machine per series: takes ``value`` at decisive points, holds it in
    between; before a series' first decisive point (its points begin at ``start``) it
    holds the series' ``initial`` state."""
    last = _last_index(decisive)
    return np.where(last >= start, value[np.maximum(last, 0)], initial)


def _pairs(bounds: npt.NDArray[np.intp]) -> list[tuple[int, int]]:
    return [(int(lo), int(hi)) for lo, hi in itertools.pairwise(bounds.tolist())]


class Staged:
    """Stage machine over a :class:`~detectors.base.Scorer`'s scores.

    Parameters
    ----------
    scorer
        Scores each point (against what it knew before the point), then learns it.
    direction
        ``"above"``: a score crosses a bound when ``score >= bound``;
        ``"below"``: when ``score <= bound`` (e.g. under-voltage, low water level);
        ``"outside"``: bounds are ``(low, high)`` bands, crossed when
        ``score <= low`` or ``score >= high`` (a drift either way from a baseline).
    prewarning
        Bound of the pre-warning stage, or None for a single-stage rule.
    alarm
        Bound of the alarm stage.
    delay_s
        Escalate to a stage only once its bound has been crossed continuously for
        this long, measured from the first crossing point to the current one.
    delay_samples
        ...and by at least this many consecutive points. With ``delay_s=0`` and
        ``delay_samples=1`` escalation is immediate.
    hysteresis
        A raised stage is kept while the score is within this margin short of its
        bound (``bound - hysteresis`` for above, ``bound + hysteresis`` for below,
        both sides moved inwards for outside). De-escalation is immediate once the
        score leaves that band: a falling reading is good news and must not be held back.
    clear
        A separate clear condition for the lowest raised stage (pre-warning if the
        rule has one, else alarm), replacing ``bound -/+ hysteresis`` there: the rule
        stays raised until the score is back past ``clear`` (e.g. alarm at 70 °C,
        clear only below 60 °C). Must lie on the normal side of that stage's bound.
    schedule
        When the rule is active (e.g. nights only); None: always. Outside it a
        point judges nothing, see Notes.

    Notes
    -----
    Each stage has its own pending clock, so a reading that sits in pre-warning
    for 8 s and then jumps over the alarm bound still needs the full delay for the
    alarm. A point that stops crossing a bound resets that bound's clock.

    Every point is scored and then learnt. Points older than the newest one seen
    are otherwise ignored: the stage describes *now*, and letting a late-delivered
    point advance or reset the clock would let delivery order decide alarms. A
    score that is NaN (a scorer still warming up) says nothing about any bound.

    A point with ``active=False`` (outside the rule's schedule) resets both clocks
    and ends a raised stage at once, reported as a change to NORMAL.

    The delay is only evaluated when a point arrives. With a device that reports
    every 60 s and ``delay_s=10``, a sustained crossing therefore escalates on the
    second crossing point, 60 s after the first.

    Examples
    --------
    Residual current pre-warning at 240 mA, alarm at 300 mA, after 10 s, releasing
    20 mA below the bound (the ``electrical_fire_monitor`` profile):

    >>> from detectors.identity import Identity
    >>> leak = Staged(Identity(), prewarning=240, alarm=300, delay_s=10, hysteresis=20)
    >>> series = [(0, 150), (5_000, 320), (10_000, 150), (20_000, 320), (30_000, 330),
    ...           (40_000, 290), (50_000, 270), (60_000, 210)]
    >>> for ts, mA in series:
    ...     change = leak.update(ts, mA)
    ...     if change:
    ...         print(ts, mA, change.old.name, "->", change.new.name)
    30000 330 NORMAL -> ALARM
    50000 270 ALARM -> PREWARNING
    60000 210 PREWARNING -> NORMAL

    The spike at 5 s was gone by 10 s, so its clock was reset; the alarm came 10 s
    after the crossing at 20 s. 290 mA is still within the hysteresis band of the
    alarm; 270 mA is not, but still pre-warns; 210 mA is below ``240 - 20``.

    A band: a signed drift of more than 20 % either way alarms, and the same series
    through the vectorised path gives the same change:

    >>> drift = Staged(Identity(), direction="outside", alarm=(-20, 20))
    >>> [c.new.name for c in (drift.update(0, 5.0), drift.update(1, -24.0)) if c]
    ['ALARM']
    >>> fresh = Staged(Identity(), direction="outside", alarm=(-20, 20))
    >>> out = fresh.process_many(np.array([0, 1]), np.array([5.0, -24.0]))
    >>> out.stages.tolist(), [(c.ts_ms, c.new.name) for c in out.changes]
    ([0, 2], [(1, 'ALARM')])
    """

    __slots__ = (
        "_alarm",
        "_bands",
        "_count",
        "_delay_ms",
        "_delay_samples",
        "_hysteresis",
        "_key",
        "_last_ts_ms",
        "_prewarning",
        "_releases",
        "_since_ms",
        "_stage",
        "direction",
        "schedule",
        "scorer",
    )

    def __init__(
        self,
        scorer: Scorer,
        *,
        direction: Direction = "above",
        prewarning: Bound | None = None,
        alarm: Bound,
        delay_s: float = 0,
        delay_samples: int = 1,
        hysteresis: float = 0,
        clear: Bound | None = None,
        schedule: ActiveAt | None = None,
    ) -> None:
        if direction not in ("above", "below", "outside"):
            raise ValueError(f"direction must be 'above', 'below' or 'outside', got {direction!r}")
        alarm_band = _band(direction, alarm, "alarm")
        pre_band = None if prewarning is None else _band(direction, prewarning, "prewarning")
        if pre_band is not None and not _within(pre_band, alarm_band, strict=True):
            raise ValueError(
                f"prewarning {prewarning} must come before alarm {alarm} "
                f"for direction {direction!r}"
            )
        if not (math.isfinite(delay_s) and delay_s >= 0):
            raise ValueError(f"delay_s must be a finite number >= 0, got {delay_s}")
        if delay_samples < 1:
            raise ValueError(f"delay_samples must be >= 1, got {delay_samples}")
        if not (math.isfinite(hysteresis) and hysteresis >= 0):
            raise ValueError(f"hysteresis must be a finite number >= 0, got {hysteresis}")
        lowest = Stage.ALARM if pre_band is None else Stage.PREWARNING
        bands: dict[Stage, Band | None] = {Stage.PREWARNING: pre_band, Stage.ALARM: alarm_band}
        releases: dict[Stage, Band | None] = {}
        for stage, band in bands.items():
            if band is None:
                releases[stage] = None
                continue
            low, high = band
            releases[stage] = (
                None if low is None else low + hysteresis,
                None if high is None else high - hysteresis,
            )
        if clear is not None:
            clear_band = _band(direction, clear, "clear")
            limit = bands[lowest]
            assert limit is not None
            if not _within(clear_band, limit, strict=False):
                raise ValueError(
                    f"clear {clear} must be on the normal side of {lowest.name.lower()} "
                    f"bound for direction {direction!r}"
                )
            releases[lowest] = clear_band
        self.scorer = scorer
        self.schedule = schedule
        self._key: tuple[object, ...] | None = None
        self.direction: Direction = direction
        self._bands = bands
        self._releases = releases
        self._prewarning = pre_band
        self._alarm = alarm_band
        self._delay_ms = delay_s * 1000.0
        self._delay_samples = delay_samples
        self._hysteresis = float(hysteresis)
        self._stage = Stage.NORMAL
        self._last_ts_ms: int | None = None
        # Pending clock per raised stage: first crossing point's ts, and how many
        # consecutive points have crossed since.
        self._since_ms: dict[Stage, int | None] = {s: None for s in _RAISED}
        self._count: dict[Stage, int] = {s: 0 for s in _RAISED}

    @property
    def stage(self) -> Stage:
        """The stage after the last point."""
        return self._stage

    def band(self, stage: Stage) -> Band | None:
        """``(low, high)`` a score must reach to escalate to ``stage`` (None if it has none)."""
        return self._bands.get(stage)

    def release_band(self, stage: Stage) -> Band | None:
        """``(low, high)`` a score must stay beyond to keep ``stage`` (hysteresis or clear)."""
        return self._releases.get(stage)

    def bound(self, stage: Stage) -> float | None:
        """The bound a score must cross to escalate to ``stage`` (None if it has none).

        For ``outside`` this is the upper side; :meth:`band` gives both.
        """
        return _one_side(self.direction, self._bands.get(stage))

    def release(self, stage: Stage) -> float | None:
        """The bound a score must fall past to leave ``stage``: the bound minus hysteresis,
        or the clear condition (upper side for ``outside``; :meth:`release_band` gives both)."""
        return _one_side(self.direction, self._releases.get(stage))

    def update(self, ts_ms: int, value: float, active: bool = True) -> StageChange | None:
        """Score ``value``, learn it, and return the stage change it caused, if any.

        ``active=False``, or a point outside the schedule, judges nothing: the
        clocks reset and a raised stage ends.
        """
        score = self.scorer.score_one(ts_ms, value)
        self.scorer.learn_one(ts_ms, value)
        if math.isnan(score):
            return None
        if self._last_ts_ms is not None and ts_ms < self._last_ts_ms:
            return None
        self._last_ts_ms = ts_ms
        old = self._stage
        if active and self.schedule is not None:
            active = self.schedule.active(ts_ms)
        if not active:
            for stage in _RAISED:
                self._since_ms[stage] = None
                self._count[stage] = 0
            if old is Stage.NORMAL:
                return None
            self._stage = Stage.NORMAL
            return StageChange(ts_ms, float(value), score, old, Stage.NORMAL)

        for stage in _RAISED:
            if _beyond(score, self._bands[stage]):
                since = self._since_ms[stage]
                if since is None:
                    self._since_ms[stage] = ts_ms
                    self._count[stage] = 1
                else:
                    self._count[stage] += 1
            else:
                self._since_ms[stage] = None
                self._count[stage] = 0

        if old is not Stage.NORMAL and not _beyond(score, self._releases[old]):
            new = Stage.NORMAL
            for stage in reversed(_RAISED):
                if stage < old and _beyond(score, self._releases[stage]):
                    new = stage
                    break
        else:
            new = old
            for stage in reversed(_RAISED):
                if stage <= old:
                    break
                if self._ready(stage, ts_ms):
                    new = stage
                    break
        if new is old:
            return None
        self._stage = new
        return StageChange(ts_ms=ts_ms, value=float(value), score=score, old=old, new=new)

    def process_many(
        self,
        ts_ms: Timestamps,
        values: Floats,
        active: npt.NDArray[np.bool_] | None = None,
    ) -> Processed:
        """:meth:`update` over arrays, vectorised; same changes, same final state.

        The stage machine is two nested two-state machines, each a forward fill of
        its last *decisive* point (``np.maximum.accumulate`` over indices): "in
        alarm" is set where the alarm is ready (bound crossed for the delay) and
        reset where the score is back inside the alarm's release band; "raised at
        all" likewise for the pre-warning, and is also set while in alarm. Delays
        come from run starts of consecutive crossing points. ``active`` is the
        schedule per point (None: always).
        """
        ts = np.asarray(ts_ms, dtype=np.int64)
        vals = np.asarray(values, dtype=np.float64)
        if ts.shape != vals.shape or ts.ndim != 1:
            raise ValueError(f"ts_ms and values must be 1-d of one length: {ts.shape} {vals.shape}")
        scores = score_and_learn(self.scorer, ts, vals)
        bounds = np.array([0, ts.size], dtype=np.intp)
        return self._machine([self], ts, vals, scores, bounds, active)[0]

    @classmethod
    def process_groups(
        cls,
        detectors: Sequence[Staged],
        ts_ms: Timestamps,
        values: Floats,
        bounds: npt.NDArray[np.intp],
        active: npt.NDArray[np.bool_] | None = None,
    ) -> list[Processed] | None:
        """:meth:`process_many` of many series in one numpy pass; None if it does not apply.

        Point ``i`` belongs to ``detectors[g]`` for ``bounds[g] <= i < bounds[g + 1]``
        (each series contiguous, in its own order). All detectors must have the
        same bounds, delays and schedule (one rule over many devices), else None
        and the caller loops. Scores come from the scorer class's own
        ``process_groups`` when it has one (one pass), else one call per series.
        """
        if not detectors or len({id(d) for d in detectors}) != len(detectors):
            return None
        first = detectors[0]
        if any(d._settings() != first._settings() for d in detectors[1:]):
            return None
        ts = np.asarray(ts_ms, dtype=np.int64)
        vals = np.asarray(values, dtype=np.float64)
        bounds = np.asarray(bounds, dtype=np.intp)
        if ts.shape != vals.shape or ts.ndim != 1 or bounds.size != len(detectors) + 1:
            raise ValueError("ts_ms, values and bounds do not describe the detectors' series")
        if ts.size > _CHUNK_POINTS and len(detectors) > 1:
            # Blocks of whole series that fit in cache do the ~40 array passes faster.
            cuts = [0]
            for g in range(1, len(detectors)):
                if bounds[g] - bounds[cuts[-1]] >= _CHUNK_POINTS:
                    cuts.append(g)
            cuts.append(len(detectors))
            out: list[Processed] = []
            for a, b in itertools.pairwise(cuts):
                lo, hi = int(bounds[a]), int(bounds[b])
                out.extend(
                    first._block(
                        detectors[a:b],
                        ts[lo:hi],
                        vals[lo:hi],
                        bounds[a : b + 1] - lo,
                        None if active is None else active[lo:hi],
                    )
                )
            return out
        return first._block(detectors, ts, vals, bounds, active)

    def _block(
        self,
        detectors: Sequence[Staged],
        ts: Timestamps,
        vals: Floats,
        bounds: npt.NDArray[np.intp],
        active: npt.NDArray[np.bool_] | None,
    ) -> list[Processed]:
        """Score a block of whole series (in one pass where the scorer class can), then
        run the stage machine over it."""
        scorers = [d.scorer for d in detectors]
        scores: Floats | None = None
        together = getattr(type(scorers[0]), "process_groups", None)
        if together is not None and all(type(sc) is type(scorers[0]) for sc in scorers):
            scores = together(scorers, ts, vals, bounds)
        if scores is None:
            scores = np.empty(ts.size, dtype=np.float64)
            for scorer, lo, hi in zip(scorers, bounds[:-1], bounds[1:], strict=True):
                scores[lo:hi] = score_and_learn(scorer, ts[lo:hi], vals[lo:hi])
        return self._machine(detectors, ts, vals, np.asarray(scores, np.float64), bounds, active)

    def _settings(self) -> tuple[object, ...]:
        """What two detectors must share to run through one stage machine pass."""
        if self._key is None:
            self._key = (
                self.direction,
                tuple(self._bands.items()),
                tuple(self._releases.items()),
                self._delay_ms,
                self._delay_samples,
                repr(self.schedule),
            )
        return self._key

    def _machine(
        self,
        detectors: Sequence[Staged],
        ts: Timestamps,
        vals: Floats,
        scores: Floats,
        bounds: npt.NDArray[np.intp],
        active: npt.NDArray[np.bool_] | None,
    ) -> list[Processed]:
        """The stage machine over the scored points of one or many series (``self``'s
        settings, each detector's own state); advances every detector's state."""
        n, groups = ts.size, len(detectors)
        lengths = np.diff(bounds)
        gid = np.repeat(np.arange(groups, dtype=np.intp), lengths)
        stage0 = np.array([int(d._stage) for d in detectors], dtype=np.int8)
        last0 = np.array(
            [_INT_MIN if d._last_ts_ms is None else d._last_ts_ms for d in detectors],
            dtype=np.int64,
        )
        full = stage0[gid] if groups > 1 else np.full(n, stage0[0], dtype=np.int8)
        if n == 0:
            return [Processed(scores[lo:hi], full[lo:hi]) for lo, hi in _pairs(bounds)]
        valid = ~np.isnan(scores)
        where: npt.NDArray[np.intp] | None = None  # None: every point counts (the usual case)
        in_order = ts[1:] >= ts[:-1]
        if groups > 1:
            in_order[bounds[1:-1][lengths[1:] > 0] - 1] = True  # group edges need no order
        starts = bounds[:-1][lengths > 0]
        if not (
            valid.all() and bool(in_order.all()) and bool((ts[starts] >= last0[lengths > 0]).all())
        ):
            newest = newest_before(ts, valid, bounds, last0)
            if newest is None:  # timestamps too far apart for one pass: series by series
                return [
                    r
                    for d, (lo, hi) in zip(detectors, _pairs(bounds), strict=True)
                    for r in self._machine(
                        [d],
                        ts[lo:hi],
                        vals[lo:hi],
                        scores[lo:hi],
                        np.array([0, hi - lo], dtype=np.intp),
                        None if active is None else active[lo:hi],
                    )
                ]
            eligible = valid & (ts >= newest)
            where = np.flatnonzero(eligible)
        e_ts = ts if where is None else ts[where]
        e_sc = scores if where is None else scores[where]
        e_gid = gid if where is None else gid[where]
        m = e_ts.size
        e_counts = lengths if where is None else np.bincount(e_gid, minlength=groups)
        e_bounds = np.concatenate(([0], np.cumsum(e_counts))).astype(np.intp)
        e_start = np.repeat(e_bounds[:-1], e_counts)
        e_act: npt.NDArray[np.bool_] | None = None
        if active is not None:
            e_act = np.asarray(active, dtype=bool)
            e_act = e_act if where is None else e_act[where]
        if self.schedule is not None and m:
            on = self.schedule.active_many(e_ts)
            e_act = on if e_act is None else e_act & on

        def judged(band: Band | None) -> npt.NDArray[np.bool_]:
            beyond = _beyond_many(e_sc, band)
            return beyond if e_act is None else beyond & e_act

        idx = np.arange(m, dtype=np.int32 if m < 2**31 - 1 else np.int64)
        nonempty = e_counts > 0
        lasts = (e_bounds[1:] - 1)[nonempty]  # each series' last counted point
        last_of = np.flatnonzero(nonempty)
        delay_ms = math.ceil(self._delay_ms)  # timestamps are integers: the same test
        immediate = delay_ms <= 0 and self._delay_samples <= 1
        final_clock: dict[Stage, tuple[list[bool], list[int], list[int]]] = {}
        ready: dict[Stage, npt.NDArray[np.bool_]] = {}
        for stage in _RAISED:
            crossed = judged(self._bands[stage])
            if not crossed.any():
                ready[stage] = crossed
                none = [False] * lasts.size
                final_clock[stage] = (none, [0] * lasts.size, [0] * lasts.size)
                continue
            count0 = np.array([d._count[stage] for d in detectors], dtype=np.int64)
            since0 = np.array(
                [_INT_MIN if d._since_ms[stage] is None else d._since_ms[stage] for d in detectors],
                dtype=np.int64,
            )
            # Index of the last point before each one that did not cross (its run's start - 1).
            last_off = np.maximum.accumulate(np.where(crossed, -1, idx))
            if groups > 1:
                np.maximum(last_off, e_start - 1, out=last_off)
            # The clock after each series' last point (the state carried to the next batch).
            off = last_off[lasts].astype(np.int64)
            carry = (off == e_start[lasts] - 1) & (count0[last_of] > 0)
            final_clock[stage] = (
                crossed[lasts].tolist(),
                np.where(carry, since0[last_of], e_ts[np.minimum(off + 1, m - 1)]).tolist(),
                (lasts - off + np.where(carry, count0[last_of], 0)).tolist(),
            )
            if immediate:
                ready[stage] = crossed
                continue
            count = np.subtract(idx, last_off, dtype=np.int64)
            since = e_ts[np.minimum(last_off + 1, m - 1)]
            if count0.any():
                carried = crossed & (last_off == e_start - 1) & (count0[e_gid] > 0)
                count = np.where(carried, count + count0[e_gid], count)
                since = np.where(carried, since0[e_gid], since)
            ready[stage] = crossed & ((e_ts - since) >= delay_ms) & (count >= self._delay_samples)
        keep_alarm = judged(self._releases[Stage.ALARM])
        keep_pre = judged(self._releases[Stage.PREWARNING])
        set_alarm = ready[Stage.ALARM].copy()
        set_any = ready[Stage.ALARM] | ready[Stage.PREWARNING]
        if self._prewarning is None:
            # A restored pre-warning the rule no longer has: the first point leaves it.
            stale = e_bounds[:-1][(stage0 == int(Stage.PREWARNING)) & (e_counts > 0)]
            set_alarm[stale] = keep_alarm[stale] = set_any[stale] = False
        first_stage = np.repeat(stage0, e_counts)
        in_alarm = _hold(set_alarm | ~keep_alarm, set_alarm, first_stage == 2, e_start)
        up = set_any | in_alarm
        raised = _hold(up | ~keep_pre, up, first_stage >= 1, e_start)
        e_stage = raised.astype(np.int8)
        e_stage[in_alarm] = 2

        if where is None:
            full = e_stage
        elif m:
            pos = np.cumsum(eligible) - 1
            safe = np.maximum(pos, 0)
            mine = (pos >= 0) & (e_gid[safe] == gid)
            full = np.where(mine, e_stage[safe], full).astype(np.int8)

        previous = np.empty_like(e_stage)
        previous[1:] = e_stage[:-1]
        previous[e_bounds[:-1][nonempty]] = stage0[nonempty]
        moved = np.flatnonzero(e_stage != previous)
        point = moved if where is None else where[moved]
        cut = np.searchsorted(moved, e_bounds)
        results: list[Processed] = []
        cut_list = cut.tolist()
        lows = bounds.tolist()
        for g in range(groups):
            changes: list[StageChange] = []
            at: list[int] = []
            if cut_list[g + 1] > cut_list[g]:
                mine_moved = moved[cut_list[g] : cut_list[g + 1]].tolist()
                mine_point = point[cut_list[g] : cut_list[g + 1]].tolist()
                changes = [
                    StageChange(
                        ts_ms=int(e_ts[i]),
                        value=float(vals[j]),
                        score=float(e_sc[i]),
                        old=Stage(int(previous[i])),
                        new=Stage(int(e_stage[i])),
                    )
                    for i, j in zip(mine_moved, mine_point, strict=True)
                ]
                at = [j - lows[g] for j in mine_point]
            lo, hi = lows[g], lows[g + 1]
            results.append(Processed(scores[lo:hi], full[lo:hi], changes, at))
        # Each detector's state after its last counted point.
        final_stage = e_stage[lasts].tolist()
        final_ts = e_ts[lasts].tolist()
        for k, g in enumerate(last_of.tolist()):
            d = detectors[g]
            d._stage = Stage(final_stage[k])
            d._last_ts_ms = final_ts[k]
            for stage in _RAISED:
                crossed_at, since_at, count_at = final_clock[stage]
                d._since_ms[stage] = since_at[k] if crossed_at[k] else None
                d._count[stage] = count_at[k] if crossed_at[k] else 0
        return results

    def reset_stage(self) -> Stage:
        """Forget the raised stage but keep the pending clocks; returns the stage it had.

        For an alert an operator closed while its condition still holds: the next
        point that still crosses (its delay long met) raises a new alert at once.
        """
        old = self._stage
        self._stage = Stage.NORMAL
        return old

    def _ready(self, stage: Stage, ts_ms: int) -> bool:
        since = self._since_ms[stage]
        return (
            since is not None
            and ts_ms - since >= self._delay_ms
            and self._count[stage] >= self._delay_samples
        )

    def state(self) -> dict[str, object]:
        """Stage, pending clocks, newest timestamp and the scorer's state (JSON-safe)."""
        return {
            "stage": int(self._stage),
            "last_ts_ms": self._last_ts_ms,
            "prewarning_since_ms": self._since_ms[Stage.PREWARNING],
            "prewarning_count": self._count[Stage.PREWARNING],
            "alarm_since_ms": self._since_ms[Stage.ALARM],
            "alarm_count": self._count[Stage.ALARM],
            "scorer": self.scorer.state(),
        }

    def restore(self, state: dict[str, object]) -> None:
        """Restore a :meth:`state` snapshot; raises ValueError (and changes nothing) if invalid.

        The bounds are not part of the state: they come from the profile, which a
        site may have changed while the gateway was down. A restored stage the
        rule no longer has (pre-warning after the pre-warning was removed) is left
        by the next point, which then reports the change.
        """
        if not isinstance(state, dict):
            raise ValueError(f"Staged state must be a mapping, got {type(state).__name__}")
        raw_stage = get_int(state, "stage")
        try:
            stage = Stage(raw_stage)
        except ValueError:
            raise ValueError(f"state field 'stage' is not a stage: {raw_stage}") from None
        since: dict[Stage, int | None] = {}
        count: dict[Stage, int] = {}
        for s, prefix in ((Stage.PREWARNING, "prewarning"), (Stage.ALARM, "alarm")):
            since[s] = get_opt_int(state, f"{prefix}_since_ms")
            count[s] = get_int(state, f"{prefix}_count")
            if count[s] < 0 or (since[s] is None) != (count[s] == 0):
                raise ValueError(f"state fields {prefix}_since_ms/{prefix}_count disagree")
        last_ts_ms = get_opt_int(state, "last_ts_ms")
        self.scorer.restore(get_dict(state, "scorer"))
        self._stage = stage
        self._last_ts_ms = last_ts_ms
        self._since_ms = since
        self._count = count

    def __repr__(self) -> str:
        return (
            f"Staged({self.scorer!r}, direction={self.direction!r}, "
            f"prewarning={self._prewarning!r}, alarm={self._alarm!r}, "
            f"release={self._releases!r}, schedule={self.schedule!r}, "
            f"delay_s={self._delay_ms / 1000:g}, delay_samples={self._delay_samples}, "
            f"hysteresis={self._hysteresis:g}, stage={self._stage.name})"
        )


def _one_side(direction: Direction, band: Band | None) -> float | None:
    if band is None:
        return None
    return band[0] if direction == "below" else band[1]
