"""Profile rules as detectors: one factory per rule ``type``, one stage machine for all.

A profile rule says *what* to score (``type``: the value itself, a rate of rise,
a drift from a baseline, a flat time, a sensor-fault sign, an anomaly score) and
*when* to raise (stages, direction, delay, hysteresis or clear, schedule). The
second half is the same for every type, so every rule becomes a
:class:`~detectors.staged.Staged` around the scorer its type names. Adding a
type is one entry in :data:`SCORERS` (Telegraf's plugin registry, in small):

>>> sorted(SCORERS)
['anomaly', 'drift', 'flatline', 'rate_of_rise', 'sensor_fault', 'threshold']

:func:`detector_from_rule` is what the gateway's :class:`~detectors.bank.DetectorBank`
builds, and :func:`run_rule` is the same detector over whole arrays, vectorised,
for backtests (``ewg backtest``) and benchmarks, so a tuning run and the live
gateway cannot disagree. :func:`message` writes what a duty officer reads, in
Chinese and English, with the evidence (the rate, the baseline, the flat time).

Schedules: outside a rule's schedule nothing is judged and an open stage from
that rule ends (the alert clears, with a message saying the schedule ended).
A night-time rule has nothing to say at noon; holding its alert "active" all day
with no reading able to clear it would leave the duty list wrong until 22:00.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from alerts.model import Stage
from detectors.base import Floats, Scorer, StageChange, Timestamps
from detectors.identity import Identity
from detectors.schedule import Schedule
from detectors.staged import Band, Bound, Staged
from gateway.profiles import (
    AnomalyRule,
    DriftRule,
    FlatlineRule,
    MetricSpec,
    RateOfRiseRule,
    SensorFaultRule,
    StageSpec,
    ThresholdRule,
)

#: The zone a schedule is read in when neither the rule nor the gateway names one.
DEFAULT_TIMEZONE = "Asia/Shanghai"

#: Builds a rule's scorer; gets the metric's spec from the profile (None if unknown).
ScorerFactory = Callable[[ThresholdRule, MetricSpec | None], Scorer]

#: Rule ``type`` -> scorer factory.
SCORERS: dict[str, ScorerFactory] = {}


def scorer_type(name: str) -> Callable[[ScorerFactory], ScorerFactory]:
    """Register the scorer factory of rule type ``name``."""

    def register(factory: ScorerFactory) -> ScorerFactory:
        SCORERS[name] = factory
        return factory

    return register


@scorer_type("threshold")
def _threshold(rule: ThresholdRule, metric: MetricSpec | None) -> Scorer:
    return Identity()


@scorer_type("rate_of_rise")
def _rate_of_rise(rule: ThresholdRule, metric: MetricSpec | None) -> Scorer:
    from detectors.rate_of_rise import RateOfRise

    assert isinstance(rule, RateOfRiseRule)
    return RateOfRise(window_s=rule.window_s, min_points=rule.min_points)


@scorer_type("drift")
def _drift(rule: ThresholdRule, metric: MetricSpec | None) -> Scorer:
    from detectors.drift import DriftFromBaseline

    assert isinstance(rule, DriftRule)
    return DriftFromBaseline(baseline=rule.baseline, learn_points=rule.learn_points)


@scorer_type("flatline")
def _flatline(rule: ThresholdRule, metric: MetricSpec | None) -> Scorer:
    from detectors.flatline import FlatLine

    assert isinstance(rule, FlatlineRule)
    return FlatLine(tolerance=rule.tolerance)


@scorer_type("sensor_fault")
def _sensor_fault(rule: ThresholdRule, metric: MetricSpec | None) -> Scorer:
    from detectors.sensor_fault import SensorFault

    assert isinstance(rule, SensorFaultRule)
    low, high = fault_range(rule, metric)
    return SensorFault(low, high, max_step_per_s=rule.max_step_per_s)


@scorer_type("anomaly")
def _anomaly(rule: ThresholdRule, metric: MetricSpec | None) -> Scorer:
    from detectors.anomaly import DEFAULT_METHOD, make_anomaly

    assert isinstance(rule, AnomalyRule)
    params: dict[str, float | str] = {
        k: (float(v) if isinstance(v, bool | int) else v) for k, v in rule.params.items()
    }
    return make_anomaly(rule.method or DEFAULT_METHOD, **params)


def fault_range(rule: SensorFaultRule, metric: MetricSpec | None) -> tuple[float, float]:
    """A sensor-fault rule's range ends: its own, else the metric's valid range."""
    low = rule.low if rule.low is not None else (metric.min if metric is not None else None)
    high = rule.high if rule.high is not None else (metric.max if metric is not None else None)
    if low is None or high is None:
        raise ValueError(
            f"rule {rule.name!r}: sensor_fault needs low/high, or the metric's range from a profile"
        )
    return low, high


def _bound(rule: ThresholdRule, spec: StageSpec | None) -> Bound | None:
    if spec is None:
        return None
    if rule.direction == "outside":
        assert spec.low is not None  # the profile model checks it
        return (spec.low, spec.value)
    return spec.value


def detector_from_rule(
    rule: ThresholdRule,
    metric_spec: MetricSpec | None = None,
    timezone: str = DEFAULT_TIMEZONE,
) -> Staged:
    """The detector a profile rule describes: its type's scorer in the rule's stages.

    ``timezone`` is the gateway's; a rule's own ``timezone`` wins for its schedule.
    ValueError for an unknown type or parameters the scorer refuses.

    Examples
    --------
    >>> from gateway.profiles import RateOfRiseRule
    >>> rule = RateOfRiseRule.model_validate({
    ...     "name": "temp_rise", "type": "rate_of_rise", "metric": "temperature_c",
    ...     "window_s": 60, "min_points": 3, "alarm": {"value": 10, "severity": "red"},
    ...     "hazard": "fire", "title_zh": "温升过快", "title_en": "Temperature rising fast"})
    >>> rise = detector_from_rule(rule)
    >>> [rise.update(s * 15_000, 25.0 + 4.0 * s) for s in range(3)][-1].new.name  # 16 °C/min
    'ALARM'
    """
    factory = SCORERS.get(rule.type)
    if factory is None:
        raise ValueError(f"rule {rule.name!r}: unknown rule type {rule.type!r}")
    schedule = None
    if rule.schedule is not None:
        schedule = Schedule(rule.schedule.hours, rule.schedule.days, rule.timezone or timezone)
    alarm = _bound(rule, rule.alarm)
    assert alarm is not None
    clear: Bound | None = None
    if rule.clear is not None:
        clear = rule.clear.value
        if rule.direction == "outside":
            assert rule.clear.low is not None  # the profile model checks it
            clear = (rule.clear.low, rule.clear.value)
    return Staged(
        factory(rule, metric_spec),
        direction=rule.direction,
        prewarning=_bound(rule, rule.prewarning),
        alarm=alarm,
        delay_s=rule.delay_s,
        delay_samples=rule.delay_samples,
        hysteresis=rule.hysteresis,
        clear=clear,
        schedule=schedule,
    )


class RuleRun(NamedTuple):
    """:func:`run_rule`'s answer: per-point raw scores and stages, and the stage changes."""

    scores: Floats
    stages: npt.NDArray[np.int8]
    changes: list[StageChange]


def run_rule(
    rule: ThresholdRule,
    ts_ms: Timestamps,
    values: Floats,
    *,
    metric_spec: MetricSpec | None = None,
    timezone: str = DEFAULT_TIMEZONE,
    detector: Staged | None = None,
) -> RuleRun:
    """Run ``rule`` over one series in the order given, vectorised, as the gateway would.

    Exactly what feeding the points one by one to :func:`detector_from_rule`'s
    detector gives (same changes, same final state), via
    :meth:`~detectors.staged.Staged.process_many`. Pass ``detector`` to continue
    one (its state is advanced); otherwise a fresh one is built. ``scores`` are
    the scorer's own (°C/min, %, s, ...); ``stages`` are ``int(Stage)`` after
    each point.

    >>> from gateway.profiles import ThresholdRule
    >>> rule = ThresholdRule.model_validate({
    ...     "name": "leak", "metric": "residual_current_ma", "delay_s": 10,
    ...     "alarm": {"value": 300, "severity": "orange"}, "hysteresis": 20,
    ...     "hazard": "leakage", "title_zh": "剩余电流超限", "title_en": "Residual current"})
    >>> ts = np.arange(0, 60_000, 5_000)
    >>> mA = np.array([150, 320, 320, 330, 290, 270, 150, 150, 150, 150, 150, 150.0])
    >>> run = run_rule(rule, ts, mA)
    >>> run.stages.tolist()
    [0, 0, 0, 2, 2, 0, 0, 0, 0, 0, 0, 0]
    >>> [(c.ts_ms, c.new.name) for c in run.changes]
    [(15000, 'ALARM'), (25000, 'NORMAL')]
    """
    staged = detector or detector_from_rule(rule, metric_spec, timezone)
    result = staged.process_many(
        np.asarray(ts_ms, dtype=np.int64), np.asarray(values, dtype=np.float64)
    )
    return RuleRun(result.scores, result.stages, result.changes)


def run_rule_groups(
    rule: ThresholdRule,
    ts_ms: Timestamps,
    values: Floats,
    bounds: npt.NDArray[np.intp],
    *,
    metric_spec: MetricSpec | None = None,
    timezone: str = DEFAULT_TIMEZONE,
    detectors: list[Staged] | None = None,
) -> list[RuleRun]:
    """:func:`run_rule` for many series of one rule (many devices) in one numpy pass.

    Series ``g`` is ``ts_ms[bounds[g]:bounds[g + 1]]`` (contiguous, in its own time
    order). Each gets a fresh detector unless ``detectors`` are given (then they are
    advanced). Same answers as one :func:`run_rule` per series; much cheaper when
    the series are short, since numpy's per-call cost is paid once for all.

    >>> from gateway.profiles import ThresholdRule
    >>> rule = ThresholdRule.model_validate({
    ...     "name": "leak", "metric": "residual_current_ma",
    ...     "alarm": {"value": 300, "severity": "orange"},
    ...     "hazard": "leakage", "title_zh": "剩余电流超限", "title_en": "Residual current"})
    >>> runs = run_rule_groups(rule, np.array([0, 1, 0, 1]), np.array([100, 350, 320, 90.0]),
    ...                        np.array([0, 2, 4]))
    >>> [r.stages.tolist() for r in runs]
    [[0, 2], [2, 0]]
    """
    bounds = np.asarray(bounds, dtype=np.intp)
    staged = detectors or [
        detector_from_rule(rule, metric_spec, timezone) for _ in range(bounds.size - 1)
    ]
    ts = np.asarray(ts_ms, dtype=np.int64)
    vals = np.asarray(values, dtype=np.float64)
    done = Staged.process_groups(staged, ts, vals, bounds)
    if done is None:  # detectors with different settings: one series at a time
        done = [
            d.process_many(ts[lo:hi], vals[lo:hi])
            for d, lo, hi in zip(staged, bounds[:-1], bounds[1:], strict=True)
        ]
    return [RuleRun(p.scores, p.stages, p.changes) for p in done]


# -- what the duty officer reads ---------------------------------------------------------


def score_unit(rule: ThresholdRule, metric: MetricSpec | None) -> str:
    """The unit a rule's score is in (what its bounds are written in)."""
    unit = metric.unit if metric is not None else ""
    if rule.type == "threshold":
        return unit
    if rule.type == "rate_of_rise":
        return f"{unit}/min" if unit else "/min"
    if rule.type == "drift":
        return "%"
    if rule.type == "flatline":
        return "s"
    return ""


def message(
    rule: ThresholdRule, staged: Staged, change: StageChange, metric: MetricSpec | None
) -> str:
    """``title_zh / title_en: evidence (limit)``, for a raise and for a clear.

    >>> from gateway.profiles import DriftRule
    >>> rule = DriftRule.model_validate({
    ...     "name": "pressure_drift", "type": "drift", "metric": "pressure_diff_pa",
    ...     "baseline": 800, "alarm": {"low": -20, "high": 20, "severity": "orange"},
    ...     "hazard": "blockage", "title_zh": "压差偏离基线",
    ...     "title_en": "Pressure difference off baseline"})
    >>> pa = MetricSpec(unit="Pa", min=0, max=10000)
    >>> drift = detector_from_rule(rule, pa)
    >>> print(message(rule, drift, drift.update(0, 992.0), pa))
    压差偏离基线 / Pressure difference off baseline: +24 % (≥ +20 %; baseline 800 Pa, now 992 Pa)
    >>> back = drift.update(60_000, 810.0)
    >>> print(message(rule, drift, back, pa))  # doctest: +NORMALIZE_WHITESPACE
    压差偏离基线 / Pressure difference off baseline: back to +1.2 %
        (within ±20 %; baseline 800 Pa, now 810 Pa)
    """
    title = f"{rule.title_zh} / {rule.title_en}"
    unit = metric.unit if metric is not None else ""
    reading = _with_unit(change.value, unit)
    active = change.new is not Stage.NORMAL
    if not active and staged.schedule is not None and not staged.schedule.active(change.ts_ms):
        return f"{title}: 不在监测时段 / outside the rule's schedule, now {reading}"
    band = staged.band(change.new) if active else staged.release_band(change.old)
    limit = _limit(change.score, band, active, rule.type == "drift")
    kind = rule.type
    if kind == "rate_of_rise":
        rate = f"{change.score:+.1f} {score_unit(rule, metric)}"
        return f"{title}: {rate} ({limit}; now {reading})"
    if kind == "drift":
        baseline = getattr(staged.scorer, "baseline", None)
        base = "" if baseline is None else f"baseline {float(f'{baseline:.4g}'):g} {unit}, "
        pct = f"{change.score:+.0f} %" if active else f"back to {change.score:+.1f} %"
        return f"{title}: {pct} ({limit}; {base}now {reading})"
    if kind == "flatline":
        if active:
            bound = band[1] if band is not None and band[1] is not None else math.nan
            return (
                f"{title}: {reading} unchanged for {_duration(change.score)} (≥ {_duration(bound)})"
            )
        return f"{title}: 读数恢复变化 / moving again, now {reading}"
    if kind == "sensor_fault":
        if not active:
            return f"{title}: 恢复 / reading plausible again, now {reading}"
        assert isinstance(rule, SensorFaultRule)
        try:
            low, high = fault_range(rule, metric)
        except ValueError:
            return f"{title}: {reading}"
        if change.value <= low or change.value >= high:
            return (
                f"{title}: {reading} 卡在量程极限 / pinned at the range limit "
                f"({low:g}..{high:g} {unit})".rstrip()
            )
        step = f" (> {rule.max_step_per_s:g} {unit}/s)" if rule.max_step_per_s else ""
        return f"{title}: {reading} 跳变不可能 / impossible jump{step}"
    if kind == "anomaly":
        verb = "anomaly score" if active else "back to anomaly score"
        return f"{title}: {reading}, {verb} {change.score:.2f}" + (f" ({limit})" if limit else "")
    return f"{title}: {reading}" + (f" ({limit})" if limit else "")


def _with_unit(value: float, unit: str) -> str:
    return " ".join(p for p in (f"{value:g}", unit) if p)


def _limit(score: float, band: Band | None, active: bool, signed: bool) -> str:
    """``≥ 300`` for a raise, ``< 280`` for a clear; ``within -15..15`` for a band's clear."""
    if band is None:
        return ""
    low, high = band

    def show(x: float) -> str:
        return f"{x:+g}" if signed else f"{x:g}"

    if low is not None and high is not None and not active:
        if signed and low == -high:
            return f"within ±{high:g}{' %' if signed else ''}"
        return f"within {show(low)}..{show(high)}"
    pct = " %" if signed else ""
    if active:
        if high is not None and (low is None or score >= high):
            return f"≥ {show(high)}{pct}"
        assert low is not None
        return f"≤ {show(low)}{pct}"
    if high is not None:
        return f"< {show(high)}{pct}"
    assert low is not None
    return f"> {show(low)}{pct}"


def _duration(seconds: float) -> str:
    """``2 h 5 min``, ``12 min``, ``45 s``: what a person reads at a glance."""
    if not math.isfinite(seconds):
        return "?"
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    if s >= 60:
        return f"{s // 60} min"
    return f"{s} s"
