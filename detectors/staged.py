"""Thresholds as a wrapper: turn any scorer's scores into normal / pre-warning / alarm.

Like river's ``ThresholdFilter``, the threshold is not part of a detector but
wraps one. Every rule then gets the same behaviour the field expects:

* **two stages**: electrical fire monitors pre-warn at a fraction of the alarm
  value, gas detectors have level 1 and level 2 (``domain.md``);
* **a delay** (seconds and/or consecutive samples) so a single spike from a
  motor start does not page duty staff, while GB 14287's 30 s budget from
  crossing to alarm is kept by choosing the delay in the profile;
* **hysteresis** so a reading hovering on the bound raises once and clears once,
  instead of flooding the alert list and the "false alarms per day" statistics.
"""

from __future__ import annotations

import math
from typing import Literal

from alerts.model import Stage
from detectors._state import get_dict, get_int, get_opt_int
from detectors.base import Scorer, StageChange

Direction = Literal["above", "below"]

_RAISED = (Stage.PREWARNING, Stage.ALARM)


class Staged:
    """Stage machine over a :class:`~detectors.base.Scorer`'s scores.

    Parameters
    ----------
    scorer
        Scores each point (against what it knew before the point), then learns it.
    direction
        ``"above"``: a score crosses a bound when ``score >= bound``;
        ``"below"``: when ``score <= bound`` (e.g. under-voltage, low water level).
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
        bound (``bound - hysteresis`` for above, ``bound + hysteresis`` for below).
        De-escalation is immediate once the score leaves that band: a falling
        reading is good news and must not be held back.

    Notes
    -----
    Each stage has its own pending clock, so a reading that sits in pre-warning
    for 8 s and then jumps over the alarm bound still needs the full delay for the
    alarm. A point that stops crossing a bound resets that bound's clock.

    Points older than the newest one seen are scored and learnt but otherwise
    ignored: the stage describes *now*, and letting a late-delivered point advance
    or reset the clock would let delivery order decide alarms. A score that is NaN
    says nothing about any bound; such points are ignored entirely.

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
    """

    __slots__ = (
        "_alarm",
        "_count",
        "_delay_ms",
        "_delay_samples",
        "_hysteresis",
        "_last_ts_ms",
        "_prewarning",
        "_since_ms",
        "_stage",
        "direction",
        "scorer",
    )

    def __init__(
        self,
        scorer: Scorer,
        *,
        direction: Direction = "above",
        prewarning: float | None = None,
        alarm: float,
        delay_s: float = 0,
        delay_samples: int = 1,
        hysteresis: float = 0,
    ) -> None:
        if direction not in ("above", "below"):
            raise ValueError(f"direction must be 'above' or 'below', got {direction!r}")
        if not math.isfinite(alarm):
            raise ValueError(f"alarm bound must be finite, got {alarm}")
        if prewarning is not None:
            if not math.isfinite(prewarning):
                raise ValueError(f"prewarning bound must be finite, got {prewarning}")
            if (prewarning >= alarm) if direction == "above" else (prewarning <= alarm):
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
        self.scorer = scorer
        self.direction: Direction = direction
        self._prewarning = None if prewarning is None else float(prewarning)
        self._alarm = float(alarm)
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

    def bound(self, stage: Stage) -> float | None:
        """The bound a score must cross to escalate to ``stage`` (None if it has none)."""
        if stage is Stage.ALARM:
            return self._alarm
        if stage is Stage.PREWARNING:
            return self._prewarning
        return None

    def release(self, stage: Stage) -> float | None:
        """The bound a score must fall past to leave ``stage``: the bound minus hysteresis."""
        bound = self.bound(stage)
        if bound is None:
            return None
        return bound - self._hysteresis if self.direction == "above" else bound + self._hysteresis

    def update(self, ts_ms: int, value: float) -> StageChange | None:
        """Score ``value``, learn it, and return the stage change it caused, if any."""
        score = self.scorer.score_one(ts_ms, value)
        if math.isnan(score):
            return None
        self.scorer.learn_one(ts_ms, value)
        if self._last_ts_ms is not None and ts_ms < self._last_ts_ms:
            return None
        self._last_ts_ms = ts_ms

        for stage in _RAISED:
            if self._beyond(score, self.bound(stage)):
                since = self._since_ms[stage]
                if since is None:
                    self._since_ms[stage] = ts_ms
                    self._count[stage] = 1
                else:
                    self._count[stage] += 1
            else:
                self._since_ms[stage] = None
                self._count[stage] = 0

        old = self._stage
        if old is not Stage.NORMAL and not self._beyond(score, self.release(old)):
            new = Stage.NORMAL
            for stage in reversed(_RAISED):
                if stage < old and self._beyond(score, self.release(stage)):
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

    def _beyond(self, score: float, bound: float | None) -> bool:
        if bound is None:
            return False
        return score >= bound if self.direction == "above" else score <= bound

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
            f"delay_s={self._delay_ms / 1000:g}, delay_samples={self._delay_samples}, "
            f"hysteresis={self._hysteresis:g}, stage={self._stage.name})"
        )
