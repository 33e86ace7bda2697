"""Rate of rise, drift, flat line and sensor fault on series whose right answer is known."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest

from detectors import flatline, rate_of_rise, sensor_fault
from detectors.drift import DriftFromBaseline
from detectors.flatline import FlatLine
from detectors.rate_of_rise import RateOfRise
from detectors.sensor_fault import SensorFault
from detectors.vectorised import process_grouped, process_loop

Basic = RateOfRise | DriftFromBaseline | FlatLine | SensorFault

T0 = 1_700_000_000_000  # epoch ms
MIN = 60_000


def stream(
    scorer: Basic,
    ts: np.ndarray,
    values: np.ndarray,
) -> np.ndarray:
    """What the gateway does per point: score against the past, then learn."""
    scores = []
    for t, v in zip(ts, values, strict=True):
        scores.append(scorer.score_one(int(t), float(v)))
        scorer.learn_one(int(t), float(v))
    return np.array(scores)


def roundtrip(state: dict[str, object]) -> dict[str, object]:
    result = json.loads(json.dumps(state))
    assert isinstance(result, dict)
    return result


# -- rate of rise ------------------------------------------------------------------------------


def heat_series(period_s: int, minutes: float, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A room at 25 °C with ±0.2 °C sensor noise, sampled every ``period_s``."""
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(0, int(minutes * MIN), period_s * 1000, dtype=np.int64)
    return ts, 25.0 + rng.uniform(-0.2, 0.2, size=len(ts))


@pytest.mark.parametrize("vectorised", [False, True])
def test_a_12_per_minute_ramp_scores_12_from_one_window_after_its_start(vectorised: bool) -> None:
    ts, values = heat_series(period_s=5, minutes=10)
    start = T0 + 4 * MIN
    ramping = ts >= start
    values[ramping] += 12.0 * (ts[ramping] - start) / MIN
    ror = RateOfRise(window_s=60)
    scores = ror.process_many(ts, values) if vectorised else stream(ror, ts, values)

    before = scores[ts < start]
    assert np.nanmax(np.abs(before)) < 1.0
    settled = scores[ts >= start + 60_000]
    assert np.all(np.abs(settled - 12.0) < 0.5), settled
    # In between it climbs: a rate-of-rise rule at 10 °C/min fires within the window.
    first_over_10 = ts[np.flatnonzero(scores >= 10.0)[0]]
    assert start < first_over_10 <= start + 60_000


@pytest.mark.parametrize("period_s", [5, 10, 20])
def test_one_30_degree_glitch_does_not_read_as_a_fast_rise(period_s: int) -> None:
    # 20 s into a 60 s window is 4 points: the fewest the repeated median is robust with.
    ts, values = heat_series(period_s=period_s, minutes=10)
    glitch = len(ts) // 2
    values[glitch] += 30.0
    scores = stream(RateOfRise(window_s=60, min_points=4), ts, values)
    assert np.nanmax(scores) < 10.0
    # The glitch did reach the scorer: a plain difference over the window sees it.
    window = ts >= ts[glitch] - 60_000
    plain = (values[glitch] - values[window][0]) / ((ts[glitch] - ts[window][0]) / MIN)
    assert plain > 10.0


def test_a_step_that_stays_is_a_fast_rise_and_then_no_rise() -> None:
    ts, values = heat_series(period_s=10, minutes=10)
    step = T0 + 5 * MIN
    values[ts >= step] += 30.0
    scores = stream(RateOfRise(window_s=60), ts, values)
    assert np.nanmax(scores[ts < step]) < 1.0
    assert np.nanmax(scores[(ts >= step) & (ts <= step + 60_000)]) > 10.0
    assert np.nanmax(np.abs(scores[ts > step + 70_000])) < 1.0


def test_a_device_reporting_every_second_is_measured_over_the_whole_window() -> None:
    # An electrical fire monitor sending every second, 0.1 °C resolution, ±0.3 °C noise:
    # over its last 8 seconds that noise alone reads as several °C/min. Kept points are
    # spread over the 10 min window instead, so the score is the cable's real trend.
    rng = np.random.default_rng(4)
    ts = T0 + np.arange(0, 40 * MIN, 1_000, dtype=np.int64)
    minutes = (ts - T0) / MIN
    trend = np.where(minutes < 20, 0.0, 0.5 * (minutes - 20))  # 0.5 °C/min from minute 20
    values = np.round(45.0 + trend + rng.uniform(-0.3, 0.3, size=len(ts)), 1)
    ror = RateOfRise(window_s=600, min_points=4)
    scores = ror.process_many(ts, values)
    flat = scores[(minutes >= 10) & (minutes < 20)]
    assert np.nanmax(np.abs(flat)) < 0.5
    rising = scores[minutes >= 31]
    assert np.all(np.abs(rising - 0.5) < 0.25), (rising.min(), rising.max())
    assert len(ror.state()["ts_ms"]) <= 8  # type: ignore[arg-type]


def test_a_gap_longer_than_the_window_restarts_it() -> None:
    ror = RateOfRise(window_s=60, min_points=3)
    for i in range(6):
        ror.learn_one(T0 + i * 10_000, 25.0)
    # Back after an hour 20 °C hotter: no rate from points an hour apart ...
    after = T0 + 3_600_000
    assert math.isnan(ror.score_one(after, 45.0))
    ror.learn_one(after, 45.0)
    assert math.isnan(ror.score_one(after + 10_000, 45.0))
    ror.learn_one(after + 10_000, 45.0)
    # ... until the window holds min_points again.
    assert ror.score_one(after + 20_000, 45.0) == 0.0


def test_late_and_repeated_points_neither_score_nor_bend_the_rate() -> None:
    ror = RateOfRise(window_s=60)
    for i in range(6):
        ror.learn_one(T0 + i * 10_000, 25.0 + i)  # 6 °C/min
    before = ror.state()
    assert math.isnan(ror.score_one(T0 + 50_000, 90.0))  # repeated timestamp
    assert math.isnan(ror.score_one(T0 + 20_000, 90.0))  # late
    ror.learn_one(T0 + 20_000, 90.0)
    assert ror.state() == before
    assert ror.score_one(T0 + 60_000, 31.0) == pytest.approx(6.0)


def test_rate_of_rise_rejects_nonsense_parameters() -> None:
    with pytest.raises(ValueError, match="window_s"):
        RateOfRise(window_s=0)
    with pytest.raises(ValueError, match="min_points"):
        RateOfRise(min_points=9)


# -- drift from baseline -----------------------------------------------------------------------


def pressure_series(
    drift_pa_per_min: float, start_min: int, minutes: int = 240, seed: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """A dust collector at 800 Pa (±2 Pa), drifting linearly from ``start_min``, every minute."""
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(minutes, dtype=np.int64) * MIN
    minute = np.arange(minutes, dtype=np.float64)
    values = 800.0 + rng.uniform(-2.0, 2.0, size=minutes)
    values += drift_pa_per_min * np.clip(minute - start_min, 0, None)
    return ts, values


@pytest.mark.parametrize(("rate", "sign"), [(2.0, 1.0), (-2.0, -1.0)])
def test_a_drift_crosses_20_percent_when_it_should(rate: float, sign: float) -> None:
    # Clogging bags (up) or a torn bag (down): 160 Pa = 20 % of 800 Pa after 80 minutes.
    ts, values = pressure_series(rate, start_min=60)
    drift = DriftFromBaseline(learn_points=20)
    scores = stream(drift, ts, values)
    assert np.isnan(scores[:20]).all()  # learning
    assert drift.baseline == pytest.approx(800.0, abs=2.0)
    beyond = np.flatnonzero(sign * scores > 20.0)
    crossed_min = (ts[beyond[0]] - T0) / MIN
    assert 60 + 80 - 2 <= crossed_min <= 60 + 80 + 2
    assert np.all(np.abs(scores[20:60]) < 1.0)  # before the drift: well inside the band


def test_a_bag_change_is_recorded_as_the_new_baseline() -> None:
    ts, values = pressure_series(2.0, start_min=60)
    drift = DriftFromBaseline()
    stream(drift, ts, values)
    assert drift.score_one(int(ts[-1]), float(values[-1])) > 20.0  # clogged: alarm
    # Bags replaced, the new commissioning value is 650 Pa.
    drift.set_baseline(650.0)
    assert drift.score_one(int(ts[-1]) + MIN, 650.0) == 0.0
    assert drift.score_one(int(ts[-1]) + MIN, 520.0) == pytest.approx(-20.0)
    # It survives a gateway restart: no relearning, no alarm from the old baseline.
    restarted = DriftFromBaseline()
    restarted.restore(roundtrip(drift.state()))
    assert restarted.baseline == 650.0


def test_reset_baseline_learns_the_median_of_the_next_points() -> None:
    drift = DriftFromBaseline(baseline=800.0, learn_points=5)
    drift.reset_baseline()
    scores = stream(
        drift, T0 + np.arange(7) * MIN, np.array([640, 655, 5000, 650, 645, 650, 780.0])
    )
    assert np.isnan(scores[:5]).all()
    assert drift.baseline == 650.0  # the 5000 Pa glitch did not become the normal level
    assert scores[5] == 0.0
    assert scores[6] == pytest.approx(20.0)


def test_a_baseline_of_zero_is_not_learnt() -> None:
    # The fan was off after the bag change: 0 Pa is not the collector's normal level.
    drift = DriftFromBaseline(learn_points=3)
    stream(drift, T0 + np.arange(3) * MIN, np.zeros(3))
    assert drift.learning
    stream(drift, T0 + np.arange(3, 6) * MIN, np.array([700.0, 710.0, 705.0]))
    assert drift.baseline == 705.0
    with pytest.raises(ValueError, match="non-zero"):
        drift.set_baseline(0.0)


# -- flat line ---------------------------------------------------------------------------------


@pytest.mark.parametrize("vectorised", [False, True])
def test_a_10_minute_flatline_scores_600_seconds(vectorised: bool) -> None:
    rng = np.random.default_rng(3)
    ts = T0 + np.arange(40, dtype=np.int64) * MIN
    values = np.round(40.0 + rng.normal(0, 0.5, size=40), 2)
    values[20:31] = 41.37  # frozen from minute 20 to minute 30
    flat = FlatLine()
    scores = flat.process_many(ts, values) if vectorised else stream(flat, ts, values)
    assert scores[30] == 600.0
    assert scores[20] == 0.0
    assert np.all(scores[:20] < 120.0)  # moving: never flat for long
    assert scores[31] == 0.0  # moving again


def test_a_tolerance_counts_jitter_as_flat_but_not_a_creep() -> None:
    ts = T0 + np.arange(12, dtype=np.int64) * MIN
    jitter = np.array([20.0, 20.1, 19.9, 20.1, 20.0, 19.9])
    creep = 20.0 + 0.1 * np.arange(1, 7)  # each step within 0.2, but it keeps going
    scores = stream(FlatLine(tolerance=0.2), ts, np.concatenate((jitter, creep)))
    assert scores[5] == 300.0
    assert scores[7] == 420.0  # 20.2 is still within 0.2 of the anchor 20.0
    # 20.3 is only 0.1 from its neighbour, but 0.3 from where the run started: moving.
    assert scores[8] == 0.0


# -- sensor fault ------------------------------------------------------------------------------


def test_a_value_pinned_at_the_range_limit_is_a_fault() -> None:
    fault = SensorFault(low=-20.0, high=200.0)
    ts = T0 + np.arange(5, dtype=np.int64) * MIN
    scores = stream(fault, ts, np.array([35.0, 36.0, 200.0, 200.0, -20.0]))
    assert scores.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]


def test_an_impossible_jump_is_a_fault_but_a_fast_real_change_is_not() -> None:
    fault = SensorFault(low=-20.0, high=200.0, max_step_per_s=2.0)
    ts = T0 + np.array([0, 1_000, 2_000, 3_000, 303_000], dtype=np.int64)
    # +1.5 °C/s is real (a fire), +100 in a second is not, nor is the way back;
    # +150 over 5 minutes is fast but possible.
    scores = stream(fault, ts, np.array([30.0, 31.5, 131.5, 33.0, 183.0]))
    assert scores.tolist() == [0.0, 0.0, 1.0, 1.0, 0.0]


# -- state across a restart --------------------------------------------------------------------


def _scenarios() -> list[tuple[str, Callable[[], Basic], np.ndarray, np.ndarray]]:
    heat_ts, heat = heat_series(period_s=5, minutes=10)
    heat[heat_ts >= T0 + 4 * MIN] += 12.0 * (heat_ts[heat_ts >= T0 + 4 * MIN] - T0 - 4 * MIN) / MIN
    dp_ts, dp = pressure_series(2.0, start_min=10, minutes=60)
    flat_ts = T0 + np.arange(60, dtype=np.int64) * MIN
    flat = np.where(np.arange(60) % 17 < 12, 41.0, 40.0 + np.arange(60) / 10)
    return [
        ("rate_of_rise", lambda: RateOfRise(window_s=60), heat_ts, heat),
        ("drift", lambda: DriftFromBaseline(learn_points=20), dp_ts, dp),
        ("flatline", lambda: FlatLine(tolerance=0.05), flat_ts, flat),
        ("sensor_fault", lambda: SensorFault(0.0, 80.0, max_step_per_s=0.5), heat_ts, heat),
    ]


@pytest.mark.parametrize(("name", "make", "ts", "values"), _scenarios(), ids=lambda x: "")
def test_state_survives_a_restart_mid_series(
    name: str, make: Callable[[], Basic], ts: np.ndarray, values: np.ndarray
) -> None:
    uninterrupted = make()
    expected = uninterrupted.process_many(ts, values)
    for cut in (5, 15, len(ts) // 2):  # during warm-up / learning, and well after
        before = make()
        before.process_many(ts[:cut], values[:cut])
        after = make()
        after.restore(roundtrip(before.state()))
        rest = after.process_many(ts[cut:], values[cut:])
        np.testing.assert_array_equal(rest, expected[cut:], err_msg=f"{name} cut at {cut}")
    assert np.isfinite(expected[len(ts) // 2 :]).all()  # the scenario does score something


# -- many series at once -----------------------------------------------------------------------


@pytest.mark.parametrize("mixed", [False, True], ids=["one_pass", "per_series"])
def test_process_grouped_equals_streaming_each_series_in_time_order(mixed: bool) -> None:
    # Live scorers with history, readings out of order across series, repeats, a NaN;
    # mixed windows cannot share one pass and go series by series.
    rng = np.random.default_rng(8)
    n = 3_000
    keys = np.array([f"dev-{i}/cable_temp_1" for i in rng.integers(0, 40, size=n)])
    ts = T0 + (rng.integers(0, 3_600_000, size=n) // 5_000 * 5_000).astype(np.int64)
    values = np.round(30.0 + rng.normal(0, 2, size=n).cumsum() / 10, 1)
    values[rng.integers(0, n, size=20)] = np.nan

    def fresh(key: str) -> RateOfRise:
        number = int(key.split("/")[0].removeprefix("dev-"))
        scorer = RateOfRise(window_s=300 + (60 * number if mixed else 0), min_points=4)
        for i in range(number % 5):  # some history before the batch
            scorer.learn_one(T0 - 60_000 + i * 10_000, 29.0 + i)
        return scorer

    made: dict[str, RateOfRise] = {}

    def make(key: str) -> RateOfRise:
        assert key not in made  # one call per series
        made[key] = fresh(key)
        return made[key]

    scores = process_grouped(make, keys, ts, values)

    assert len(made) == len(set(keys.tolist()))
    assert np.isfinite(scores).sum() > n // 2
    for key in made:
        rows = np.flatnonzero(keys == key)
        rows = rows[np.argsort(ts[rows], kind="stable")]
        reference = fresh(key)
        np.testing.assert_allclose(
            scores[rows], stream(reference, ts[rows], values[rows]), rtol=1e-9, equal_nan=True
        )
        assert made[key].state() == reference.state()


def test_process_grouped_rejects_mismatched_arrays() -> None:
    with pytest.raises(ValueError, match="one length"):
        process_grouped(lambda key: FlatLine(), ["a", "b"], [0, 1], [1.0])


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 20])
@pytest.mark.parametrize(
    "make",
    [
        lambda: RateOfRise(window_s=60),
        lambda: FlatLine(),
        lambda: FlatLine(tolerance=0.5),
        lambda: SensorFault(0.0, 40.0, max_step_per_s=0.2),
    ],
    ids=["rate_of_rise", "flatline", "flatline_tolerance", "sensor_fault"],
)
def test_the_numpy_path_is_right_for_short_arrays_too(
    n: int, make: Callable[[], Basic], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Short arrays normally take the loop; force numpy to check its edges (fewer points
    # than a window's rows, a state with fewer points than max_points).
    for module in (rate_of_rise, flatline, sensor_fault):
        monkeypatch.setattr(module, "_SHORT", 0)
    ts, values = heat_series(period_s=10, minutes=10, seed=n)
    values = np.round(values * 2, 0) / 2  # some flat runs
    reference, numpy_path = make(), make()
    for scorer in (reference, numpy_path):
        scorer.process_many(ts[:3], values[:3])
    expected = process_loop(reference, ts[3 : 3 + n], values[3 : 3 + n])
    got = numpy_path.process_many(ts[3 : 3 + n], values[3 : 3 + n])
    np.testing.assert_allclose(got, expected, rtol=1e-9, equal_nan=True)
    assert numpy_path.state() == reference.state()
