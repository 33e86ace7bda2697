"""Anomaly scorers on constructed series whose right answer is known.

``tests/test_detectors_contract.py`` discovers scorers in the top-level modules
of ``detectors``; the anomaly candidates live in a sub-package, so the same
contract checks are applied to them here, by calling that file's checks.
"""

from __future__ import annotations

import numpy as np
import pytest

import tests.test_detectors_contract as contract
from detectors.anomaly import DEFAULT_METHOD, METHODS, RECOMMENDED_STAGES, make_anomaly
from detectors.base import Scorer
from detectors.staged import Staged


def _candidates() -> list[object]:
    out: list[object] = []
    for name, cls in METHODS.items():
        params = cls._contract_params() if hasattr(cls, "_contract_params") else [{}]
        for kwargs in params:
            out.append(pytest.param(cls, kwargs, id=f"{name}({kwargs})"))
    return out


CONTRACT_CHECKS = [
    contract.test_score_one_does_not_change_state,
    contract.test_restored_state_scores_identically,
    contract.test_restore_rejects_garbage,
    contract.test_score_many_agrees_with_score_one,
    contract.test_scores_are_finite_for_finite_input,
]


@pytest.mark.parametrize("check", CONTRACT_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(("cls", "kwargs"), _candidates())
def test_candidates_keep_the_scorer_contract(
    check: object, cls: type, kwargs: dict[str, object]
) -> None:
    assert isinstance(cls(**kwargs), Scorer)
    check(cls, kwargs)  # type: ignore[operator]


@pytest.mark.parametrize(("cls", "kwargs"), _candidates())
def test_process_many_equals_the_streaming_loop(cls: type, kwargs: dict[str, object]) -> None:
    ts, values = contract._series(seed=13, n=600)
    streaming = cls(**kwargs)
    expected = []
    for t, v in zip(ts, values, strict=True):
        expected.append(streaming.score_one(int(t), float(v)))
        streaming.learn_one(int(t), float(v))
    batch = cls(**kwargs)
    half = 250
    got = np.concatenate(
        [batch.process_many(ts[:half], values[:half]), batch.process_many(ts[half:], values[half:])]
    )
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    assert batch.state().keys() == streaming.state().keys()


def test_make_anomaly_names_the_known_methods() -> None:
    with pytest.raises(ValueError, match=DEFAULT_METHOD):
        make_anomaly("no-such-method")
    with pytest.raises(ValueError, match="accepted"):
        make_anomaly(DEFAULT_METHOD, no_such_param=1.0)
    assert isinstance(make_anomaly(), Scorer)


def test_recommended_stages_build_a_staged() -> None:
    staged = Staged(make_anomaly(), **RECOMMENDED_STAGES)  # type: ignore[arg-type]
    assert staged.update(0, 1.0) is None
