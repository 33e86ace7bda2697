"""``python -m bench.detectors``: points per second of every detector over 10,000 series.

Each rule type is built the way the gateway builds it (:func:`detectors.rules.detector_from_rule`
from a shipped profile's rule), so the figures are the gateway's own detectors:

* **streaming**: the per-point ``Staged.update`` the bank calls for every reading, points of
  all series interleaved as they arrive;
* **vectorised, per series**: ``Staged.process_many`` once per series (what a backtest of
  one series uses); **vectorised, all series**: :func:`detectors.rules.run_rule_groups`,
  the rule over every series in one numpy pass (what the bank does with a batch);
* **memory per series**: ``tracemalloc`` over building and warming 10,000 detectors, and the
  size of one detector's ``state()`` as JSON (what a restart persists).

Rates are points per CPU second of this process (``time.process_time``), i.e. of one core
whatever else the machine runs. The reference row, in the same process, is a bare numpy
comparison of the same points
(``values >= bound``): the floor no detector can beat, and the figure to compare runs on a
noisy machine with. Targets (issue 3): threshold >= 2,000,000 points/s and anomaly >=
500,000 points/s vectorised on one core. Exits 0 whatever the figures: they are measurements.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.report import Row, Section, count, render, verdict
from detectors.rules import detector_from_rule, run_rule_groups
from detectors.staged import Staged
from gateway.profiles import DEFAULT_PROFILE_DIR, MetricSpec, ThresholdRule, load_profiles

#: (rule type, profile, rule name): one shipped rule per type.
RULES: list[tuple[str, str, str]] = [
    ("threshold", "electrical_fire_monitor", "residual_current"),
    ("rate_of_rise", "heat_detector", "temperature_rise"),
    ("drift", "dust_collector_monitor", "pressure_drift"),
    ("flatline", "electrical_fire_monitor", "cable_temp_1_stuck"),
    ("sensor_fault", "electrical_fire_monitor", "cable_temp_1_fault"),
    ("anomaly", "electrical_fire_monitor", "cable_temp_1_anomaly"),
]
#: Points per second a detector must reach vectorised on one core (issue 3).
TARGETS = {"threshold": 2_000_000.0, "anomaly": 500_000.0}


@dataclass(frozen=True, slots=True)
class DetectorResult:
    kind: str
    rule: str
    series: int
    streaming_points: int
    streaming_rate: float
    vector_points: int
    vector_rate: float
    grouped_rate: float
    bytes_per_series: float
    state_json_bytes: float


def _rule(kind: str, profile_name: str, rule_name: str) -> tuple[ThresholdRule, MetricSpec]:
    profile = load_profiles(DEFAULT_PROFILE_DIR)[profile_name]
    for rule in profile.rules:
        if rule.name == rule_name or (rule.type == kind and rule_name == ""):
            return rule, profile.metrics[rule.metric]
    fallback = next((r for r in profile.rules if r.type == kind), None)
    if fallback is None:
        raise LookupError(f"profile {profile_name!r} has no {kind} rule")
    return fallback, profile.metrics[fallback.metric]


def _points(
    rule: ThresholdRule, series: int, points: int, seed: int = 1
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Per series: a level near the rule's normal, noise, and a ramp in one series in ten."""
    rng = np.random.default_rng(seed)
    level = {
        "residual_current_ma": 150.0,
        "temperature_c": 25.0,
        "pressure_diff_pa": 1100.0,
        "cable_temp_1_c": 35.0,
    }.get(rule.metric, 10.0)
    base = level * (1 + 0.05 * rng.standard_normal((series, 1)))
    noise = 0.01 * level * rng.standard_normal((series, points))
    values = base + noise
    ramps = rng.random(series) < 0.1
    values[ramps] += np.linspace(0.0, 2.0 * level, points)
    interval_ms = 60_000
    ts = np.arange(points, dtype=np.int64) * interval_ms + 1_796_083_200_000
    return ts, np.round(values, 1)


def _timed(fn: Callable[[], None]) -> float:
    """CPU seconds of this process (one thread): on a shared machine wall time measures the
    neighbours; the CPU time is what one core spends on the detector."""
    gc.collect()
    started = time.process_time()
    fn()
    return max(time.process_time() - started, 1e-9)


def bench_rule(
    kind: str, profile_name: str, rule_name: str, series: int, points: int, stream_points: int
) -> DetectorResult:
    rule, metric = _rule(kind, profile_name, rule_name)
    ts, values = _points(rule, series, points)

    def build() -> list[Staged]:
        return [detector_from_rule(rule, metric) for _ in range(series)]

    # streaming: the bank's per-point update, series interleaved by time
    streamed = build()
    stream_ts = ts[:stream_points].tolist()
    stream_values = values[:, :stream_points].tolist()

    def stream() -> None:
        for j, t in enumerate(stream_ts):
            for s, det in enumerate(streamed):
                det.update(t, stream_values[s][j])

    stream_s = _timed(stream)

    # vectorised: one process_many per series
    vectored = build()

    def vector() -> None:
        for s, det in enumerate(vectored):
            det.process_many(ts, values[s])

    vector_s = _timed(vector)

    # every series at once: the rule over contiguous groups, one numpy pass
    flat_ts = np.tile(ts, series)
    flat_values = values.reshape(-1)
    bounds = np.arange(0, series * points + 1, points, dtype=np.intp)

    def grouped() -> None:
        run_rule_groups(rule, flat_ts, flat_values, bounds, metric_spec=metric)

    grouped_s = _timed(grouped)
    grouped_rate = series * points / grouped_s

    # memory: build and warm a fresh set of detectors under tracemalloc
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    warm = build()
    warm_points = min(points, 60)
    for s, det in enumerate(warm):
        det.process_many(ts[:warm_points], values[s, :warm_points])
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    state_bytes = float(np.mean([len(json.dumps(d.state())) for d in warm[:200]]))
    del warm
    return DetectorResult(
        kind=kind,
        rule=f"{profile_name}/{rule.name}",
        series=series,
        streaming_points=series * stream_points,
        streaming_rate=series * stream_points / stream_s,
        vector_points=series * points,
        vector_rate=series * points / vector_s,
        grouped_rate=grouped_rate,
        bytes_per_series=(after - before) / series,
        state_json_bytes=state_bytes,
    )


def reference_rate(series: int, points: int) -> float:
    """A bare numpy ``>=`` over the same number of points (the floor of the comparison)."""
    values = np.random.default_rng(0).random((series, points))

    def compare() -> None:
        for s in range(series):
            np.greater_equal(values[s], 0.5)

    return series * points / _timed(compare)


def section(results: list[DetectorResult], reference: float) -> Section:
    rows: list[Row] = [Row("reference: numpy >= per series", f"{count(reference)} pts/s")]
    for r in results:
        target = TARGETS.get(r.kind)
        best = max(r.vector_rate, r.grouped_rate)
        rows.append(Row(f"{r.kind}: streaming (update)", f"{count(r.streaming_rate)} pts/s"))
        rows.append(Row(f"{r.kind}: vectorised, per series", f"{count(r.vector_rate)} pts/s"))
        rows.append(
            Row(
                f"{r.kind}: vectorised, all series",
                f"{count(r.grouped_rate)} pts/s",
                f">= {count(target)} pts/s" if target else "",
                verdict(best >= target) if target else "",
            )
        )
        rows.append(
            Row(
                f"{r.kind}: memory per series",
                f"{count(r.bytes_per_series)} B traced, {count(r.state_json_bytes)} B state",
            )
        )
    return Section(f"detectors, {results[0].series if results else 0:,} series", rows)


def run(series: int, points: int, stream_points: int, kinds: list[str]) -> list[DetectorResult]:
    return [
        bench_rule(kind, profile, rule, series, points, stream_points)
        for kind, profile, rule in RULES
        if kind in kinds
    ]


def to_json(results: list[DetectorResult], reference: float) -> dict[str, Any]:
    return {
        "reference_rate": reference,
        "targets": TARGETS,
        "detectors": [
            {
                "kind": r.kind,
                "rule": r.rule,
                "series": r.series,
                "streaming_points": r.streaming_points,
                "streaming_rate": r.streaming_rate,
                "vector_points": r.vector_points,
                "vector_rate": r.vector_rate,
                "grouped_rate": r.grouped_rate,
                "bytes_per_series": r.bytes_per_series,
                "state_json_bytes": r.state_json_bytes,
            }
            for r in results
        ],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.detectors", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--series", type=int, default=10_000, help="series per detector (10,000)")
    p.add_argument("--points", type=int, default=288,
                   help="points per series, vectorised (288: a day every 5 min)")  # fmt: skip
    p.add_argument("--stream-points", type=int, default=10,
                   help="points per series, streaming (10)")  # fmt: skip
    p.add_argument("--only", nargs="+", default=[k for k, _, _ in RULES],
                   choices=[k for k, _, _ in RULES], help="rule types to run (all)")  # fmt: skip
    p.add_argument("--json", dest="json_path", default=None, help="also write the figures here")
    args = p.parse_args(argv)
    results = run(args.series, args.points, min(args.stream_points, args.points), args.only)
    reference = reference_rate(args.series, args.points)
    header = [
        f"python -m bench.detectors: {args.series:,} series x {args.points} points vectorised, "
        f"x {min(args.stream_points, args.points)} streaming; points per CPU second (one core)",
    ]
    print(render([section(results, reference)], header))
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as out:
            json.dump(to_json(results, reference), out, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
