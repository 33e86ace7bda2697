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
    for info in pkgutil.iter_modules(detectors.__path__):
        module = importlib.import_module(f"{detectors.__name__}.{info.name}")
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


def _score_each(scorer: Scorer, ts: np.ndarray, values: np.ndarray) -> list[float]:
    return [scorer.score_one(int(t), float(v)) for t, v in zip(ts, values, strict=True)]


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
    assert again == first


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
        assert restored.score_one(int(t), float(v)) == original.score_one(int(t), float(v))
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
def test_scores_are_finite_for_finite_input(cls: type, kwargs: dict[str, object]) -> None:
    scorer = cls(**kwargs)
    ts, values = _series(seed=5)
    for t, v in zip(ts, values, strict=True):
        score = scorer.score_one(int(t), float(v))
        assert isinstance(score, float)
        assert math.isfinite(score), (t, v, score)
        scorer.learn_one(int(t), float(v))
    assert np.isfinite(scorer.score_many(ts, values)).all()
