"""``python -m bench.anomaly_compare``: which anomaly scorer earns the default, on evidence.

Generates a labelled evaluation set with numpy (seeded, so every run prints the
same quality figures): enterprise load every 15 min with a working-day pattern,
cable temperatures every 5 min following that load, dust-collector pressure
differences every 2 min; jittered timestamps, dropped points and day-long gaps;
injected spikes, steps (which become the new normal), slow drifts, flatlines and
night-time production. Each candidate's scores go through the stage machine that
raises alerts in the gateway (:class:`detectors.staged.Staged`); its debounce is
tuned on one seed and the figures are reported on another, so no candidate is
judged on the data its thresholds were picked on.

Quality: recall (injected windows with a raise inside), precision (raises inside a
window / all raises), F1, false alarms per series-day, detection delay (median and
worst). Cost: µs per point streaming (``score_one`` + ``learn_one``), points/s
through ``process_many`` over many series, and state size as JSON. Timing figures
come with a reference run in the same process (a numpy z-score over the same
points), since the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np

from alerts.model import Stage
from detectors.anomaly import DEFAULT_METHOD, METHODS, RECOMMENDED_STAGES, SeasonalBaseline
from detectors.anomaly.batch import process_batch
from detectors.base import Floats, Timestamps
from detectors.identity import Identity
from detectors.staged import Staged

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
#: Local midnight in the default site zone; the set starts there.
T0_MS = int(datetime(2026, 3, 2, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp() * 1000)
#: Raises in the first days are not counted: every candidate is still learning.
COUNT_FROM_DAY = 2


class BatchScorer(Protocol):
    def process_many(self, ts_ms: Timestamps, values: Floats) -> Floats: ...


@dataclass(frozen=True, slots=True)
class Window:
    """An injected anomaly: a raise in [start, end] detects it; one in (end, ignore_until]
    is neither credited nor a false alarm (a step still being learnt, say)."""

    kind: str
    start_ms: int
    end_ms: int
    ignore_until_ms: int


@dataclass(slots=True)
class Series:
    kind: str
    ts: Timestamps
    values: Floats
    windows: list[Window] = field(default_factory=list)


# --------------------------------------------------------------------------- data set


def _workday(hour: Floats) -> Floats:
    """0.25 at night, 1 during the shift (08:00-18:00) with a lunch dip."""
    up = 1.0 / (1.0 + np.exp(-(hour - 7.75) / 0.3))
    down = 1.0 / (1.0 + np.exp(-(hour - 18.0) / 0.3))
    lunch = 0.15 * np.exp(-(((hour - 12.25) / 0.4) ** 2))
    result: Floats = 0.25 + 0.75 * (up - down) - lunch
    return result


def _noise(rng: np.random.Generator, n: int, sd: float) -> Floats:
    """Heavy-tailed noise (Student t, 5 degrees of freedom) scaled to ``sd``."""
    result: Floats = rng.standard_t(5, size=n) * sd / math.sqrt(5 / 3)
    return result


def _inject(
    rng: np.random.Generator, kind: str, grid: Timestamps, values: Floats, sd: float, period_ms: int
) -> list[Window]:
    """Add three anomalies (days 4, 7 and 10 or so) to ``values`` in place."""
    choices = ["spike", "step", "drift", "flatline"]
    if kind == "load":
        choices.append("night_production")
    picked = rng.choice(choices, size=3, replace=False)
    windows: list[Window] = []
    # Delivered timestamps are jittered by up to a fifth of the period (see
    # _one_series), so a window opens a quarter period early.
    early = period_ms // 4
    for slot, what in enumerate(picked):
        day = 3 + 3 * slot
        if what == "night_production":
            start = T0_MS + day * DAY_MS + 22 * HOUR_MS
            end = start + 7 * HOUR_MS
            sel = (grid >= start) & (grid < end)
            values[sel] += values[sel] * (1.0 / 0.25 - 1.0) * 0.9
            windows.append(Window(what, start - early, end, end + HOUR_MS))
            continue
        start = T0_MS + day * DAY_MS + int(rng.uniform(0, 24)) * HOUR_MS
        i = int(np.searchsorted(grid, start))
        sign = 1.0 if rng.random() < 0.5 else -1.0
        if what == "spike":
            width = 1 if rng.random() < 0.7 else 2
            values[i : i + width] += sign * rng.uniform(6, 12) * sd
            windows.append(Window(what, start - early, start + 3 * period_ms, start + HOUR_MS))
        elif what == "step":
            values[i:] += sign * rng.uniform(4, 8) * sd
            windows.append(Window(what, start - early, start + 6 * HOUR_MS, start + DAY_MS))
        elif what == "drift":
            span = int(rng.uniform(12, 36) * HOUR_MS)
            ramp = np.clip((grid[i:] - start) / span, 0.0, 1.0)
            values[i:] += sign * rng.uniform(6, 10) * sd * ramp
            windows.append(Window(what, start - early, start + span, start + span + DAY_MS))
        else:  # flatline: the sensor freezes for 6 h
            end = start + 6 * HOUR_MS
            sel = (grid >= start) & (grid < end)
            values[sel] = values[i]
            windows.append(Window(what, start - early, end, end + 2 * HOUR_MS))
    return windows


def _one_series(rng: np.random.Generator, kind: str, days: int) -> Series:
    period_s = {"load": 900, "cable_temp": 300, "pressure": 120}[kind]
    period_ms = period_s * 1000
    grid = T0_MS + np.arange(0, days * DAY_MS, period_ms, dtype=np.int64)
    hour = ((grid - T0_MS) % DAY_MS) / HOUR_MS
    day_index = (grid - T0_MS) // DAY_MS
    day_factor = rng.normal(1.0, 0.03, size=days)[day_index]
    if kind == "load":
        base = rng.uniform(50, 500)
        sd = 0.03 * base
        values = base * _workday(hour) * day_factor + _noise(rng, len(grid), sd)
    elif kind == "cable_temp":
        load = _workday(hour) * day_factor
        lagged = np.empty_like(load)  # the cable warms with about an hour's lag
        alpha = 1.0 - math.exp(-period_s / 3600.0)
        acc = load[0]
        for j, x in enumerate(load):
            acc += alpha * (x - acc)
            lagged[j] = acc
        # Noise is 0.4 °C, but a day's 3 % more or less load moves the cable by a
        # degree or more: injected anomalies are sized against that, not the noise.
        noise_sd, sd = 0.4, 1.0
        ambient = 22.0 + 4.0 * np.sin(2 * np.pi * (hour - 9.0) / 24.0)
        values = ambient + rng.uniform(15, 35) * lagged**2 + _noise(rng, len(grid), noise_sd)
    else:
        base = rng.uniform(400, 1200)
        sd = 0.02 * base
        walk = np.cumsum(rng.normal(0.0, 0.0005 * base, size=len(grid) // 30 + 1))
        values = base + np.repeat(walk, 30)[: len(grid)] + _noise(rng, len(grid), sd)
    values = values.astype(np.float64)
    windows = _inject(rng, kind, grid, values, sd, period_ms)
    # Irregular delivery: jitter, dropped points, and for some series a day-long gap.
    ts = grid + rng.integers(-period_ms // 5, period_ms // 5 + 1, size=len(grid))
    keep = rng.random(len(grid)) >= 0.03
    if rng.random() < 0.4:
        gap = T0_MS + int(rng.uniform(3, days - 2) * DAY_MS)
        keep &= (ts < gap) | (ts >= gap + DAY_MS)
    ts, values = ts[keep], values[keep]
    windows = [w for w in windows if ((ts >= w.start_ms) & (ts <= w.end_ms)).any()]
    return Series(kind, ts.astype(np.int64), values, windows)


def make_dataset(seed: int, series_per_kind: int = 20, days: int = 14) -> list[Series]:
    """The labelled evaluation set: ``series_per_kind`` of each kind, ``days`` long."""
    rng = np.random.default_rng(seed)
    return [
        _one_series(rng, kind, days)
        for kind in ("load", "cable_temp", "pressure")
        for _ in range(series_per_kind)
    ]


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True, slots=True)
class Debounce:
    prewarning: float
    alarm: float
    delay_samples: int
    hysteresis: float

    def staged(self) -> Staged:
        return Staged(
            Identity(),
            prewarning=self.prewarning,
            alarm=self.alarm,
            delay_samples=self.delay_samples,
            hysteresis=self.hysteresis,
        )

    def label(self) -> str:
        return f"pre {self.prewarning:g} x{self.delay_samples}, alarm {self.alarm:g}"


def raises(ts: Timestamps, scores: Floats, debounce: Debounce) -> list[int]:
    """Timestamps where a Staged rule over these scores goes from normal to raised.

    Staged scores a point with its scorer and then learns it; the scores are
    already computed, so an :class:`Identity` scorer over them is the same stage
    machine. Runs of points below every release bound leave it normal with its
    clocks reset whatever their number, so all but the first of each run are
    skipped (exactly the same raises, much faster).
    """
    low = debounce.prewarning - debounce.hysteresis
    below = ~(scores >= low)
    first_of_run = below & ~np.concatenate(([False], below[:-1]))
    idx = np.flatnonzero(~below | first_of_run)
    staged = debounce.staged()
    out: list[int] = []
    for t, s in zip(ts[idx].tolist(), scores[idx].tolist(), strict=True):
        change = staged.update(t, s)
        if change is not None and change.old is Stage.NORMAL:
            out.append(t)
    return out


@dataclass(slots=True)
class Quality:
    windows: int = 0
    detected: int = 0
    true_raises: int = 0
    false_raises: int = 0
    series_days: float = 0.0
    delays_ms: list[int] = field(default_factory=list)
    by_kind: dict[str, list[int]] = field(default_factory=dict)  # kind -> [windows, detected]

    @property
    def recall(self) -> float:
        return self.detected / self.windows if self.windows else math.nan

    @property
    def precision(self) -> float:
        total = self.true_raises + self.false_raises
        return self.true_raises / total if total else math.nan

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        if not (p + r > 0):
            return 0.0
        return 2 * p * r / (p + r)

    @property
    def false_per_day(self) -> float:
        return self.false_raises / self.series_days if self.series_days else math.nan


def judge(series: Sequence[Series], scores: Sequence[Floats], debounce: Debounce) -> Quality:
    """Match each series' raises against its labelled windows."""
    q = Quality()
    for s, sc in zip(series, scores, strict=True):
        count_from = T0_MS + COUNT_FROM_DAY * DAY_MS
        q.series_days += (int(s.ts[-1]) - count_from) / DAY_MS
        times = [t for t in raises(s.ts, sc, debounce) if t >= count_from]
        for w in s.windows:
            hits = [t for t in times if w.start_ms <= t <= w.end_ms]
            q.windows += 1
            kind = q.by_kind.setdefault(w.kind, [0, 0])
            kind[0] += 1
            if hits:
                q.detected += 1
                kind[1] += 1
                q.delays_ms.append(hits[0] - w.start_ms)
        for t in times:
            if any(w.start_ms <= t <= w.end_ms for w in s.windows):
                q.true_raises += 1
            elif not any(w.end_ms < t <= w.ignore_until_ms for w in s.windows):
                q.false_raises += 1
    return q


def grid(
    prewarnings: Sequence[float] = (0.8, 0.9, 0.95, 0.99, 0.999),
    delays: Sequence[int] = (1, 2, 3),
    hysteresis: float = 0.2,
) -> list[Debounce]:
    out = []
    for p in prewarnings:
        alarm = 0.99 if p < 0.99 else (1.0 + p) / 2
        for d in delays:
            out.append(Debounce(p, alarm, d, min(hysteresis, p / 2)))
    return out


def recommended() -> Debounce:
    r = RECOMMENDED_STAGES
    return Debounce(
        float(r["prewarning"]), float(r["alarm"]), int(r["delay_samples"]), float(r["hysteresis"])
    )


# --------------------------------------------------------------------------- candidates


class RiverGaussian:
    """river's ``anomaly.GaussianScorer`` over a rolling window, as a library baseline.

    Evaluation only: it keeps a window of raw values (``window`` points per
    series) and has no JSON state, so it is not offered to profile rules.
    """

    def __init__(self, window: int = 96, grace_period: int = 16) -> None:
        from river import anomaly

        # river is untyped: Any keeps mypy strict out of its internals.
        self._model: Any = anomaly.GaussianScorer(  # type: ignore[no-untyped-call]
            window_size=window, grace_period=grace_period
        )

    def process_many(self, ts_ms: Timestamps, values: Floats) -> Floats:
        model = self._model
        out = np.empty(len(values), dtype=np.float64)
        for i, v in enumerate(np.asarray(values, dtype=np.float64).tolist()):
            try:
                out[i] = model.score_one(None, v)
            except (TypeError, ZeroDivisionError):
                # A constant window: river's rolling variance rounds to <= 0 (a
                # complex or zero sigma). No spread, no opinion.
                out[i] = 0.0
            model.learn_one(None, v)
        return out

    def state(self) -> dict[str, object]:
        return {"window": [args[0] for args, _ in self._model.gaussian.window]}


def candidates(with_river: bool = True) -> dict[str, Callable[[], BatchScorer]]:
    # Every Scorer in METHODS has process_many (the contract test checks it).
    found: dict[str, Callable[[], BatchScorer]] = dict(METHODS)  # type: ignore[arg-type]
    if with_river:
        try:
            import river  # noqa: F401
        except ImportError:
            pass
        else:
            found["river_gaussian"] = RiverGaussian
    return found


@dataclass(slots=True)
class Result:
    name: str
    tuned: Debounce
    quality: Quality
    at_recommended: Quality
    scoring_s: float
    #: False alarms per series-day by kind of series (load, cable_temp, pressure).
    false_by_series: dict[str, float] = field(default_factory=dict)


def compare(
    seed: int = 20261201,
    series_per_kind: int = 20,
    days: int = 14,
    with_river: bool = True,
    debounces: Sequence[Debounce] | None = None,
) -> list[Result]:
    """Tune each candidate's debounce on ``seed``, report it on ``seed + 1``."""
    tune_set = make_dataset(seed, series_per_kind, days)
    test_set = make_dataset(seed + 1, series_per_kind, days)
    options = list(debounces) if debounces is not None else grid()
    results = []
    for name, factory in candidates(with_river).items():
        tune_scores = [factory().process_many(s.ts, s.values) for s in tune_set]
        tuned = max(options, key=lambda d: judge(tune_set, tune_scores, d).f1)
        started = time.perf_counter()
        test_scores = [factory().process_many(s.ts, s.values) for s in test_set]
        elapsed = time.perf_counter() - started
        false_by_series = {}
        for kind in sorted({s.kind for s in test_set}):
            sub = [i for i, s in enumerate(test_set) if s.kind == kind]
            q = judge([test_set[i] for i in sub], [test_scores[i] for i in sub], tuned)
            false_by_series[kind] = q.false_per_day
        results.append(
            Result(
                name,
                tuned,
                judge(test_set, test_scores, tuned),
                judge(test_set, test_scores, recommended()),
                elapsed,
                false_by_series,
            )
        )
    return results


# --------------------------------------------------------------------------- cost


@dataclass(frozen=True, slots=True)
class Cost:
    name: str
    stream_us: float
    batch_pts_s: float
    state_bytes: int
    #: Through detectors.anomaly.batch.process_batch (seasonal scorers only).
    across_pts_s: float = math.nan


def _reference_pts_s(ts: Timestamps, values: Floats, series: int) -> float:
    """A numpy z-score over the same points: what 'vectorised' costs on this machine now."""
    started = time.perf_counter()
    for _ in range(series):
        m, s = float(values.mean()), float(values.std()) + 1e-9
        np.abs(values - m) / s
    return series * len(values) / (time.perf_counter() - started)


def measure_cost(series: int, points: int, with_river: bool = True) -> tuple[list[Cost], float]:
    """Streaming µs/point over one long series; process_many over ``series`` series."""
    s = _one_series(np.random.default_rng(1), "load", max(12, points * 900_000 // DAY_MS + 1))
    ts, values = s.ts[:points], s.values[:points]
    costs = []
    for name, factory in candidates(with_river).items():
        one = factory()
        if hasattr(one, "score_one") and hasattr(one, "learn_one"):
            started = time.perf_counter()
            for t, v in zip(ts.tolist(), values.tolist(), strict=True):
                one.score_one(t, v)
                one.learn_one(t, v)
            stream_us = (time.perf_counter() - started) / len(ts) * 1e6
        else:
            stream_us = math.nan
        started = time.perf_counter()
        last = factory()
        for _ in range(series):
            last = factory()
            last.process_many(ts, values)
        batch = series * len(ts) / (time.perf_counter() - started)
        state = getattr(last, "state", None)
        size = len(json.dumps(state())) if callable(state) else -1
        across = math.nan
        if isinstance(last, SeasonalBaseline):
            many = [factory() for _ in range(series)]
            started = time.perf_counter()
            process_batch(many, [(ts, values)] * series)  # type: ignore[arg-type]
            across = series * len(ts) / (time.perf_counter() - started)
        costs.append(Cost(name, stream_us, batch, size, across))
    return costs, _reference_pts_s(ts, values, series)


# --------------------------------------------------------------------------- report


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.0f}%"


def _hours(ms: float) -> str:
    return "-" if math.isnan(ms) else f"{ms / HOUR_MS:.1f} h"


def quality_table(results: Sequence[Result]) -> str:
    kinds = sorted({k for r in results for k in r.quality.by_kind})
    series_kinds = sorted({k for r in results for k in r.false_by_series})
    head = [
        "method",
        "debounce (tuned)",
        "recall",
        "precision",
        "F1",
        "FA/series-day",
        "delay med",
        "delay max",
        *[f"R {k}" for k in kinds],
        *[f"FA {k}" for k in series_kinds],
        "F1 @recommended",
    ]
    rows = [head]
    for r in results:
        q = r.quality
        delays = np.array(q.delays_ms, dtype=np.float64)
        rows.append(
            [
                r.name + (" *" if r.name == DEFAULT_METHOD else ""),
                r.tuned.label(),
                _pct(q.recall),
                _pct(q.precision),
                f"{q.f1:.3f}",
                f"{q.false_per_day:.3f}",
                _hours(float(np.median(delays)) if len(delays) else math.nan),
                _hours(float(delays.max()) if len(delays) else math.nan),
                *[
                    _pct(q.by_kind[k][1] / q.by_kind[k][0]) if k in q.by_kind else "-"
                    for k in kinds
                ],
                *[f"{r.false_by_series.get(k, math.nan):.3f}" for k in series_kinds],
                f"{r.at_recommended.f1:.3f}",
            ]
        )
    return _render(rows)


def cost_table(costs: Sequence[Cost], reference: float, series: int) -> str:
    rows = [
        [
            "method",
            "stream µs/pt",
            f"process_many pts/s ({series} series)",
            "process_batch pts/s",
            "state bytes",
        ]
    ]
    for c in costs:
        rows.append(
            [
                c.name,
                "-" if math.isnan(c.stream_us) else f"{c.stream_us:.2f}",
                f"{c.batch_pts_s:,.0f}",
                "-" if math.isnan(c.across_pts_s) else f"{c.across_pts_s:,.0f}",
                str(c.state_bytes),
            ]
        )
    rows.append(["reference: numpy z-score", "-", f"{reference:,.0f}", "-", "-"])
    return _render(rows)


def _render(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def debounce_table(seed: int, series_per_kind: int, days: int) -> str:
    """The default method under every debounce of the grid, on the reported seed."""
    test_set = make_dataset(seed + 1, series_per_kind, days)
    scores = [METHODS[DEFAULT_METHOD]().process_many(s.ts, s.values) for s in test_set]  # type: ignore[attr-defined]
    rows = [["debounce", "recall", "precision", "F1", "FA/series-day", "delay med"]]
    for d in [*grid(), recommended()]:
        q = judge(test_set, scores, d)
        delays = np.array(q.delays_ms, dtype=np.float64)
        rows.append(
            [
                d.label() + (" (recommended)" if d == recommended() else ""),
                _pct(q.recall),
                _pct(q.precision),
                f"{q.f1:.3f}",
                f"{q.false_per_day:.3f}",
                _hours(float(np.median(delays)) if len(delays) else math.nan),
            ]
        )
    return _render(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.anomaly_compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--seed", type=int, default=20261201)
    p.add_argument("--series", type=int, default=20, help="series per kind (20)")
    p.add_argument("--days", type=int, default=14)
    p.add_argument(
        "--cost-series", type=int, default=1000, help="series for the process_many figure (1000)"
    )
    p.add_argument("--cost-points", type=int, default=500, help="points per series (500)")
    p.add_argument("--no-river", action="store_true", help="leave river's baseline out")
    args = p.parse_args(argv)
    print(
        f"anomaly comparison  seed {args.seed} (tuned) / {args.seed + 1} (reported)  "
        f"{3 * args.series} series x {args.days} days  default: {DEFAULT_METHOD} (*)"
    )
    results = compare(args.seed, args.series, args.days, with_river=not args.no_river)
    print(quality_table(results))
    print(f"recommended debounce: {recommended().label()}, hysteresis {recommended().hysteresis:g}")
    print()
    print(f"debounce grid for {DEFAULT_METHOD} (Staged over its scores, reported seed)")
    print(debounce_table(args.seed, args.series, args.days))
    costs, reference = measure_cost(args.cost_series, args.cost_points, not args.no_river)
    print()
    print(cost_table(costs, reference, args.cost_series))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
