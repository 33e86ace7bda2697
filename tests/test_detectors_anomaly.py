"""Anomaly scorers on constructed series whose right answer is known.

Every test runs what a ``type: anomaly`` rule runs: the default method wrapped in
:class:`~detectors.staged.Staged` with :data:`RECOMMENDED_STAGES`, and asserts on
the alerts a duty officer would see (raises), not on internal numbers. The Scorer
contract itself (state, restore, process_many equal to the streaming loop) is
checked for every candidate by ``tests/test_detectors_contract.py``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import partial

import numpy as np
import pytest

from alerts.model import Stage
from bench.anomaly_compare import Debounce, compare
from detectors.anomaly import DEFAULT_METHOD, METHODS, RECOMMENDED_STAGES, make_anomaly
from detectors.base import Scorer
from detectors.staged import Staged

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
#: 2026-03-02 00:00 in Asia/Shanghai, the default site zone.
T0 = 1_772_380_800_000


def _rule(method: str = DEFAULT_METHOD) -> Staged:
    return Staged(make_anomaly(method), **RECOMMENDED_STAGES)  # type: ignore[arg-type]


def _raises(staged: Staged, ts: np.ndarray, values: np.ndarray) -> list[int]:
    """Timestamps where the rule went from normal to pre-warning or alarm."""
    out = []
    for t, v in zip(ts.tolist(), values.tolist(), strict=True):
        change = staged.update(t, v)
        if change is not None and change.old is Stage.NORMAL:
            out.append(t)
    return out


def _pressure(days: float, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A dust collector's pressure difference: 800 Pa +/- 12, every 2 min, no daily pattern."""
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(0, int(days * DAY), 2 * MIN, dtype=np.int64)
    return ts, 800.0 + rng.normal(0.0, 12.0, len(ts))


def _load(days: float, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """An enterprise's load: 60 kW at night, 240 kW on shift (08:00-18:00 Shanghai time),
    sampled every 15 min with up to 3 min of jitter and 3 % of the points lost."""
    rng = np.random.default_rng(seed)
    grid = T0 + np.arange(0, int(days * DAY), 15 * MIN, dtype=np.int64)
    ts = grid + rng.integers(-3 * MIN, 3 * MIN, len(grid))
    hour = ((ts - T0) % DAY) / HOUR
    shift = 1 / (1 + np.exp(-(hour - 7.75) / 0.3)) - 1 / (1 + np.exp(-(hour - 18) / 0.3))
    values = 60.0 + 180.0 * shift + rng.normal(0.0, 6.0, len(ts))
    keep = rng.random(len(ts)) > 0.03
    return ts[keep], values[keep]


def test_a_spike_is_flagged_at_its_point() -> None:
    ts, values = _pressure(3)
    at = int(np.searchsorted(ts, T0 + 2 * DAY + 5 * HOUR))
    values[at] += 15 * 12.0
    assert _raises(_rule(), ts, values) == [int(ts[at])]


def test_a_step_is_flagged_then_becomes_the_new_normal() -> None:
    ts, values = _pressure(4)
    at = int(np.searchsorted(ts, T0 + 2 * DAY))
    values[at:] += 5 * 12.0  # a bag change: the new baseline is 60 Pa higher
    rule = _rule()
    raised = _raises(rule, ts[: at + 30], values[: at + 30])
    assert len(raised) == 1 and int(ts[at]) <= raised[0] <= int(ts[at]) + 30 * MIN
    assert rule.stage is Stage.NORMAL  # within an hour (30 points) the step is normal
    assert _raises(rule, ts[at + 30 :], values[at + 30 :]) == []  # and stays so for 2 days


def test_a_slow_drift_is_flagged_within_hours() -> None:
    ts, values = _pressure(4)
    start = T0 + 2 * DAY
    ramp = np.clip((ts - start) / (24 * HOUR), 0.0, 1.0)
    values += 8 * 12.0 * ramp  # +96 Pa over a day: never more than 0.3 Pa per sample
    raised = _raises(_rule(), ts, values)
    assert raised, "the drift was never flagged"
    assert start <= raised[0] <= start + 12 * HOUR


def test_a_daily_load_pattern_raises_nothing_after_warm_up() -> None:
    ts, values = _load(8)
    raised = _raises(_rule(), ts, values)
    assert [t for t in raised if t >= T0 + 2 * DAY] == []


def test_a_day_long_gap_raises_nothing() -> None:
    ts, values = _load(8)
    keep = (ts < T0 + 3 * DAY + 10 * HOUR) | (ts >= T0 + 4 * DAY + 10 * HOUR)
    raised = _raises(_rule(), ts[keep], values[keep])
    assert [t for t in raised if t >= T0 + 2 * DAY] == []


def test_load_at_night_is_flagged() -> None:
    # Production during an ordered shutdown: full load from 01:00 to 04:00, the
    # normal at noon. Its start is flagged at once; once accepted as a shift, its
    # end (the load falling back at 04:00) is a change too and may raise once more.
    ts, values = _load(6)
    night = (ts >= T0 + 5 * DAY + 1 * HOUR) & (ts < T0 + 5 * DAY + 4 * HOUR)
    values[night] += 180.0
    raised = [t for t in _raises(_rule(), ts, values) if t >= T0 + 2 * DAY]
    assert raised[0] == int(ts[night][0])
    assert all(T0 + 5 * DAY + 4 * HOUR <= t <= T0 + 5 * DAY + 5 * HOUR for t in raised[1:])
    assert len(raised) <= 2


def test_a_frozen_load_reading_is_flagged() -> None:
    # The meter keeps sending its 17:00 value through the evening, when the load
    # should fall: the daily profile sees it. (A frozen reading on a series with no
    # daily pattern is FlatLine's job, detectors/flatline.py, not this detector's.)
    ts, values = _load(6)
    frozen = (ts >= T0 + 4 * DAY + 17 * HOUR) & (ts < T0 + 4 * DAY + 23 * HOUR)
    values[frozen] = values[frozen][0]
    raised = [t for t in _raises(_rule(), ts, values) if t >= T0 + 2 * DAY]
    assert T0 + 4 * DAY + 17 * HOUR <= raised[0] <= T0 + 4 * DAY + 20 * HOUR
    # As for night-time load: the reading coming back to life may raise once more.
    assert all(T0 + 4 * DAY + 23 * HOUR <= t <= T0 + 5 * DAY for t in raised[1:])
    assert len(raised) <= 2


def test_state_survives_a_restart_mid_series() -> None:
    ts, values = _load(6)
    night = (ts >= T0 + 5 * DAY + 1 * HOUR) & (ts < T0 + 5 * DAY + 4 * HOUR)
    values[night] += 180.0
    uninterrupted = _raises(_rule(), ts, values)
    half = len(ts) // 2
    before = _rule()
    first = _raises(before, ts[:half], values[:half])
    after = _rule()  # a new gateway process, state from disk
    after.restore(json.loads(json.dumps(before.state())))
    assert first + _raises(after, ts[half:], values[half:]) == uninterrupted
    assert uninterrupted  # the night-time load is in the second half


def test_a_site_in_another_zone_gets_its_own_clock() -> None:
    # The same load, recorded in Berlin (UTC+1 in March): the night there is not
    # the night in Shanghai, and a detector told the zone learns the right hours.
    ts, values = _load(6)
    shifted = ts + 7 * HOUR  # Berlin's 08:00 is 15:00 in Shanghai
    rule = Staged(make_anomaly(tz="Europe/Berlin"), **RECOMMENDED_STAGES)  # type: ignore[arg-type]
    assert [t for t in _raises(rule, shifted, values) if t >= shifted[0] + 2 * DAY] == []
    assert make_anomaly(tz="Europe/Berlin").score_one(0, 1.0) == 0.0
    with pytest.raises(ValueError, match="time zone"):
        make_anomaly(tz="Mars/Olympus")


def test_scores_are_in_the_unit_interval() -> None:
    ts, values = _load(4)
    values[200] = 1e9
    for name in METHODS:
        scores = make_anomaly(name).process_many(ts, values)  # type: ignore[attr-defined]
        assert ((scores >= 0) & (scores <= 1)).all(), name


def test_make_anomaly_names_the_known_methods() -> None:
    with pytest.raises(ValueError, match=DEFAULT_METHOD):
        make_anomaly("no-such-method")
    with pytest.raises(ValueError, match="accepted"):
        make_anomaly(DEFAULT_METHOD, no_such_param=1.0)
    assert isinstance(make_anomaly(), Scorer)
    for name in METHODS:
        assert isinstance(make_anomaly(name), Scorer)


def test_the_default_wins_a_small_comparison() -> None:
    # Keeps the choice honest: if someone improves another candidate (or breaks the
    # default), this fails until DEFAULT_METHOD is revisited with bench.anomaly_compare.
    debounces = [
        Debounce(0.9, 0.99, 1, 0.2),
        Debounce(0.99, 0.999, 1, 0.2),
        Debounce(0.9, 0.99, 2, 0.2),
        Debounce(
            float(RECOMMENDED_STAGES["prewarning"]),
            float(RECOMMENDED_STAGES["alarm"]),
            int(RECOMMENDED_STAGES["delay_samples"]),
            float(RECOMMENDED_STAGES["hysteresis"]),
        ),
    ]
    results = {
        r.name: r.quality.f1
        for r in compare(seed=7, series_per_kind=3, days=12, with_river=False, debounces=debounces)
    }
    assert set(results) == set(METHODS)
    assert all(math.isfinite(f1) for f1 in results.values())
    best_other = max(f1 for name, f1 in results.items() if name != DEFAULT_METHOD)
    assert results[DEFAULT_METHOD] >= best_other, results


def test_process_batch_is_each_series_own_process_many() -> None:
    # Different lengths, irregular timestamps, late and repeated points, a NaN, a
    # fresh and a trained scorer, two parameter sets and both seasonal classes.
    from detectors.anomaly import SeasonalBaseline, SeasonalCusum
    from detectors.anomaly.batch import process_batch

    rng = np.random.default_rng(5)
    series = []
    for length in (900, 700, 700, 40, 1, 500, 650):
        ts = T0 + np.cumsum(rng.integers(0, 30 * MIN, length)).astype(np.int64)
        if length > 10:
            ts[5], ts[6] = ts[6], ts[5]
        values = 100 + 30 * np.sin(ts / DAY * 2 * np.pi) + rng.normal(0, 3, length)
        series.append((ts, values))
    series[5][1][100:] += 40.0  # a step
    series[6][1][200] = np.nan
    kinds: list[Callable[[], SeasonalBaseline]] = [
        SeasonalCusum,
        SeasonalCusum,
        SeasonalBaseline,
        partial(SeasonalCusum, h=3, buckets=48),
        SeasonalCusum,
        SeasonalCusum,
        SeasonalCusum,
    ]
    alone, together = [k() for k in kinds], [k() for k in kinds]
    warm_ts, warm_values = _load(2)
    for scorers in (alone, together):  # one of them has a history already
        scorers[1].process_many(warm_ts - 3 * DAY, warm_values)
    expected = [s.process_many(ts, v) for s, (ts, v) in zip(alone, series, strict=True)]
    got = process_batch(together, series)
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=0.0, equal_nan=True)
    for a, b in zip(alone, together, strict=True):
        assert json.loads(json.dumps(a.state())) == json.loads(json.dumps(b.state()))
    assert max(got[5][100:110]) > 0.9  # and it still sees the step


def test_interleaved_series_go_through_one_pass_with_the_same_result() -> None:
    # What a backtest or a reconnect burst does: detectors.vectorised.process_grouped
    # hands all series of one class to SeasonalBaseline.process_groups.
    from detectors.anomaly import SeasonalCusum
    from detectors.vectorised import process_grouped

    rng = np.random.default_rng(9)
    keys, ts, values = [], [], []
    for name in ("meter-1", "meter-2", "meter-3"):
        t, v = _load(3, seed=int(rng.integers(100)))
        keys += [name] * len(t)
        ts.append(t)
        values.append(v)
    flat_ts, flat_values = np.concatenate(ts), np.concatenate(values)
    shuffle = rng.permutation(len(flat_ts))
    keys_arr = np.array(keys)[shuffle]
    grouped: dict[str, SeasonalCusum] = {}
    got = process_grouped(
        lambda key: grouped.setdefault(key, SeasonalCusum()),
        keys_arr,
        flat_ts[shuffle],
        flat_values[shuffle],
    )
    for name in ("meter-1", "meter-2", "meter-3"):
        mine = keys_arr == name
        order = np.argsort(flat_ts[shuffle][mine], kind="stable")
        alone = SeasonalCusum()
        expected = alone.process_many(
            flat_ts[shuffle][mine][order], flat_values[shuffle][mine][order]
        )
        np.testing.assert_allclose(got[mine][order], expected, rtol=1e-12, atol=0.0)
        assert grouped[name].state() == alone.state()
