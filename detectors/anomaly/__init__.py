"""Anomaly scorers: learn each series' normal behaviour online, score new points in [0, 1].

Several candidates live side by side (one algorithm per file) because the right
one was chosen on evidence (``python -m bench.anomaly_compare``), and the
comparison must keep being runnable when someone changes one of them.
:data:`DEFAULT_METHOD` is the winner; profile rules with ``type: anomaly`` pick
a method by name through :func:`make_anomaly` and wrap it in
:class:`detectors.staged.Staged` with :data:`RECOMMENDED_STAGES` unless the rule
says otherwise.

>>> det = make_anomaly()
>>> 0.0 <= det.score_one(0, 1.0) <= 1.0
True
>>> make_anomaly("nope")
Traceback (most recent call last):
...
ValueError: unknown anomaly method 'nope'; known: cusum, robust_ewma, seasonal
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from detectors.anomaly.cusum import Cusum
from detectors.anomaly.ewma import RobustEWMA
from detectors.anomaly.seasonal import SeasonalBaseline
from detectors.base import Scorer

#: Method name -> constructor (keyword parameters only, all numbers).
METHODS: dict[str, Callable[..., Scorer]] = {
    "robust_ewma": RobustEWMA,
    "seasonal": SeasonalBaseline,
    "cusum": Cusum,
}

#: The method a ``type: anomaly`` rule gets when it names none.
DEFAULT_METHOD: str = "robust_ewma"

#: Staged parameters for anomaly rules: what the evaluation found raises alerts
#: only on sustained or extreme anomalies. Keys are :class:`~detectors.staged.Staged`
#: keyword arguments.
RECOMMENDED_STAGES: dict[str, float | int] = {
    "prewarning": 0.9,
    "alarm": 0.99,
    "delay_samples": 2,
    "delay_s": 0,
    "hysteresis": 0.2,
}


def make_anomaly(method: str = DEFAULT_METHOD, **params: float | str) -> Scorer:
    """A fresh scorer of ``method`` with ``params``; ValueError on an unknown method or param."""
    try:
        factory = METHODS[method]
    except KeyError:
        known = ", ".join(sorted(METHODS))
        raise ValueError(f"unknown anomaly method {method!r}; known: {known}") from None
    accepted = set(inspect.signature(factory).parameters)
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for anomaly method {method!r}; "
            f"accepted: {', '.join(sorted(accepted))}"
        )
    return factory(**params)


__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "RECOMMENDED_STAGES",
    "Cusum",
    "RobustEWMA",
    "SeasonalBaseline",
    "make_anomaly",
]
