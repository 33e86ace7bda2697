"""The identity scorer: the score of a point is its value."""

from __future__ import annotations

import numpy as np

from detectors.base import Floats, Timestamps


class Identity:
    """Scores a point by its own value; stateless.

    Most rules in ``domain.md`` are fixed limits (residual current >= 300 mA,
    hopper temperature > 70 °C, gas >= 25 %LEL). Wrapping this scorer in
    :class:`~detectors.staged.Staged` gives exactly such a threshold, with the
    same delay and hysteresis as every other detector, rather than a second
    threshold implementation to keep in step.

    Examples
    --------
    >>> scorer = Identity()
    >>> scorer.score_one(0, 312.5)
    312.5
    >>> scorer.learn_one(0, 312.5)  # nothing to learn
    >>> scorer.score_many(np.array([0, 1]), np.array([1.0, 2.0])).tolist()
    [1.0, 2.0]
    >>> scorer.state()
    {}
    """

    __slots__ = ()

    def learn_one(self, ts_ms: int, value: float) -> None:
        return None

    def score_one(self, ts_ms: int, value: float) -> float:
        return float(value)

    def score_many(self, ts_ms: Timestamps, values: Floats) -> Floats:
        return np.array(values, dtype=np.float64, copy=True)

    def process_many(self, ts_ms: Timestamps, values: Floats) -> Floats:
        """Score then learn each point in order: with nothing to learn, just the values."""
        return np.array(values, dtype=np.float64, copy=True)

    def state(self) -> dict[str, object]:
        return {}

    def restore(self, state: dict[str, object]) -> None:
        if not isinstance(state, dict):
            raise ValueError(f"Identity state must be a mapping, got {type(state).__name__}")

    def __repr__(self) -> str:
        return "Identity()"
