"""The contract every scorer in ``detectors/`` must keep (river's ``check_estimator`` idea).

Scorers are discovered, not listed, so a new detector file is held to this
contract the moment it exists. Each property is one the stage machine or a
gateway restart relies on; see ``detectors/base.py``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import pkgutil
from collections.abc import Iterator

import numpy as np
import pytest

import detectors
from detectors.base import Scorer
from detectors.identity import Identity


def _discover() -> list[type]:
    found: list[type] = []
    # Sub-packages too (``detectors/anomaly/``): a scorer is held to the contract wherever it lives.
    for info in pkgutil.walk_packages(detectors.__path__, prefix=f"{detectors.__name__}."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or getattr(cls, "_is_protocol", False):
                continue
            if issubclass(cls, Scorer):
                found.append(cls)
    return found


SCORERS = _discover()


def _instances() -> Iterator[object]:
    for cls in SCORERS:
        params = cls._contract_params() if hasattr(cls, "_contract_params") else [{}]
        for kwargs in params:
            yield pytest.param(cls, kwargs, id=f"{cls.__name__}({kwargs})")


def _series(seed: int = 7, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Noise, a step, a spike, a repeated and a late timestamp: what the field sends."""
    rng = np.random.default_rng(seed)
    ts = np.cumsum(rng.integers(500, 60_000, size=n)).astype(np.int64) + 1_700_000_000_000
    ts[n // 3] = ts[n // 3 - 1]  # same millisecond twice
    ts[n // 2], ts[n // 2 + 1] = ts[n // 2 + 1], ts[n // 2]  # out of order
    values = rng.normal(150.0, 20.0, size=n)
    values[n // 4 :] += 200.0
    values[n // 5] = 2_500.0
    values[n // 6] = -40.0
    return ts, values.astype(np.float64)


def _roundtrip(state: dict[str, object]) -> dict[str, object]:
    """Through real JSON, as the state file on disk would be."""
    result = json.loads(json.dumps(state))
    assert isinstance(result, dict)
    return result


def _irregular(seed: int, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """Irregular sampling with gaps longer than any window, repeats, late points, flat runs."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(0, 45_000, size=n)
    steps[rng.random(n) < 0.03] = 3_600_000  # the device was offline for an hour
    ts = (np.cumsum(steps) + 1_700_000_000_000).astype(np.int64)
    late = rng.random(n) < 0.03
    ts[late] -= rng.integers(1, 200_000, size=int(late.sum()))
    values = np.round(rng.normal(150.0, 20.0, size=n), 1)
    values[n // 3 :] += 200.0
    stuck = rng.random(n) < 0.4
    for i in np.flatnonzero(stuck[1:]) + 1:
        values[i] = values[i - 1] + (rng.choice([0.0, 0.1, -0.1]) if seed % 2 else 0.0)
    values[rng.integers(0, n, size=3)] = 2_500.0
    return ts, values


def _score_each(scorer: Scorer, ts: np.ndarray, values: np.ndarray) -> list[float]:
    return [scorer.score_one(int(t), float(v)) for t, v in zip(ts, values, strict=True)]


def _same(a: float, b: float) -> bool:
    """Equal, counting NaN ("no opinion") as equal to NaN."""
    return a == b or (math.isnan(a) and math.isnan(b))


def test_discovery_finds_the_scorers() -> None:
    # Guards the parametrisation below against silently testing nothing.
    assert Identity in SCORERS
    assert all(isinstance(cls(), Scorer) for cls in SCORERS if not hasattr(cls, "_contract_params"))


@pytest.mark.parametrize(("cls", "kwargs"), list(_instances()))
def test_score_one_does_not_change_state(cls: type, kwargs: dict[str, object]) -> None:
    scorer = cls(**kwargs)
    ts, values = _series()
    half = len(ts) // 2
    for t, v in zip(ts[:half], values[:half], strict=True):
        scorer.learn_one(int(t), float(v))
    before = json.dumps(scorer.state(), sort_keys=True)
    first = _score_each(scorer, ts[half:], values[half:])
    assert json.dumps(scorer.state(), sort_keys=True) == before
    again = _score_each(scorer, ts[half:], values[half:])
    np.testing.assert_array_equal(again, first)


@pytest.mark.parametrize(("cls", "kwargs"), list(_instances()))
def test_restored_state_scores_identically(cls: type, kwargs: dict[str, object]) -> None:
    original = cls(**kwargs)
    ts, values = _series(seed=11)
    half = len(ts) // 2
    for t, v in zip(ts[:half], values[:half], strict=True):
        original.learn_one(int(t), float(v))
    restored = cls(**kwargs)
    restored.restore(_roundtrip(original.state()))
    for t, v in zip(ts[half:], values[half:], strict=True):
        assert _same(restored.score_one(int(t), float(v)), original.score_one(int(t), float(v)))
        original.learn_one(int(t), float(v))
        restored.learn_one(int(t), float(v))
    assert _roundtrip(restored.state()) == _roundtrip(original.state())


@pytest.mark.parametrize(("cls", "kwargs"), list(_instances()))
def test_restore_rejects_garbage(cls: type, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        cls(**kwargs).restore("not a state")


@pytest.mark.parametrize(("cls", "kwargs"), list(_instances()))
def test_score_many_agrees_with_score_one(cls: type, kwargs: dict[str, object]) -> None:
    scorer = cls(**kwargs)
    ts, values = _series(seed=3)
    half = len(ts) // 2
    for t, v in zip(ts[:half], values[:half], strict=True):
        scorer.learn_one(int(t), float(v))
    before = json.dumps(scorer.state(), sort_keys=True)
    many = scorer.score_many(ts[half:], values[half:])
    assert json.dumps(scorer.state(), sort_keys=True) == before
    one = _score_each(scorer, ts[half:], values[half:])
    assert many.shape == (len(ts) - half,)
    np.testing.assert_allclose(many, one, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize(("cls", "kwargs"), list(_instances()))
def test_scores_are_never_infinite(cls: type, kwargs: dict[str, object]) -> None:
    # NaN means "no opinion" (warming up, a late point) and the stage machine skips it;
    # an infinite score would cross every bound.
    scorer = cls(**kwargs)
    ts, values = _series(seed=5)
    for t, v in zip(ts, values, strict=True):
        score = scorer.score_one(int(t), float(v))
        assert isinstance(score, float)
        assert not math.isinf(score), (t, v, score)
        scorer.learn_one(int(t), float(v))
    assert not np.isinf(scorer.score_many(ts, values)).any()


@pytest.mark.parametrize(("cls", "kwargs"), list(_instances()))
def test_a_plain_series_gets_an_opinion_after_warm_up(cls: type, kwargs: dict[str, object]) -> None:
    # Every 10 s, finite, in order: no excuse for NaN once 50 points are known.
    scorer = cls(**kwargs)
    rng = np.random.default_rng(13)
    ts = np.arange(300, dtype=np.int64) * 10_000 + 1_700_000_000_000
    values = rng.normal(150.0, 20.0, size=300)
    scores = []
    for t, v in zip(ts, values, strict=True):
        scores.append(scorer.score_one(int(t), float(v)))
        scorer.learn_one(int(t), float(v))
    assert np.isfinite(scores[50:]).all()


def _process_many_instances() -> Iterator[object]:
    for cls in SCORERS:
        if not hasattr(cls, "process_many"):
            continue
        params = cls._contract_params() if hasattr(cls, "_contract_params") else [{}]
        for kwargs in params:
            for seed in (1, 2, 3):
                yield pytest.param(cls, kwargs, seed, id=f"{cls.__name__}({kwargs})-{seed}")


def test_the_vectorised_scorers_are_found() -> None:
    names = {cls.__name__ for cls in SCORERS if hasattr(cls, "process_many")}
    assert {"Identity", "RateOfRise", "DriftFromBaseline", "FlatLine", "SensorFault"} <= names


@pytest.mark.parametrize(("cls", "kwargs", "seed"), list(_process_many_instances()))
def test_process_many_equals_the_streaming_loop(
    cls: type, kwargs: dict[str, object], seed: int
) -> None:
    """``process_many`` is ``score_one`` then ``learn_one`` per point, and leaves the same state."""
    ts, values = _irregular(seed)
    if seed == 3:
        ts, values = _series(seed=seed)
    warm = 37 * seed
    streaming, vectorised = cls(**kwargs), cls(**kwargs)
    for t, v in zip(ts[:warm], values[:warm], strict=True):
        streaming.learn_one(int(t), float(v))
        vectorised.learn_one(int(t), float(v))
    expected = []
    for t, v in zip(ts[warm:], values[warm:], strict=True):
        expected.append(streaming.score_one(int(t), float(v)))
        streaming.learn_one(int(t), float(v))
    # In two batches: a batch boundary must not show in the scores.
    cut = warm + (len(ts) - warm) // 3
    got = np.concatenate(
        (
            vectorised.process_many(ts[warm:cut], values[warm:cut]),
            vectorised.process_many(ts[cut:], values[cut:]),
        )
    )
    assert got.shape == (len(ts) - warm,)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9, equal_nan=True)
    assert _roundtrip(vectorised.state()) == _roundtrip(streaming.state())


def _process_groups_instances() -> Iterator[object]:
    for cls in SCORERS:
        if hasattr(cls, "process_groups"):
            params = cls._contract_params() if hasattr(cls, "_contract_params") else [{}]
            for kwargs in params:
                yield pytest.param(cls, kwargs, id=f"{cls.__name__}({kwargs})")


@pytest.mark.parametrize(("cls", "kwargs"), list(_process_groups_instances()))
def test_process_groups_equals_one_process_many_per_series(
    cls: type, kwargs: dict[str, object]
) -> None:
    """A class's all-series-at-once path gives each series what its own ``process_many`` does."""
    ts, values = _irregular(seed=4, n=900)
    keys = np.array([f"s{i % 7}" for i in range(len(ts))])
    alone: dict[str, Scorer] = {}
    together: dict[str, Scorer] = {}
    for key in sorted(set(keys.tolist())):
        for scorers in (alone, together):
            scorers[key] = cls(**kwargs)
            mine = keys == key
            for t, v in zip(ts[mine][:20], values[mine][:20], strict=True):
                scorers[key].learn_one(int(t), float(v))
    rest = np.concatenate([np.flatnonzero(keys == key)[20:] for key in sorted(together)])
    bounds = np.concatenate(([0], np.cumsum([np.sum(keys[rest] == k) for k in sorted(together)])))
    got = cls.process_groups(  # type: ignore[attr-defined]
        [together[k] for k in sorted(together)], ts[rest], values[rest], bounds
    )
    expected = np.concatenate(
        [
            alone[key].process_many(ts[keys == key][20:], values[keys == key][20:])  # type: ignore[attr-defined]
            for key in sorted(alone)
        ]
    )
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9, equal_nan=True)
    for key in alone:
        assert _roundtrip(together[key].state()) == _roundtrip(alone[key].state())
