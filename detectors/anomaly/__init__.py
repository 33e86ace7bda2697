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
ValueError: unknown anomaly method 'nope'; known: cusum, robust_ewma, seasonal, seasonal_cusum
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from detectors.anomaly.cusum import Cusum
from detectors.anomaly.ewma import RobustEWMA
from detectors.anomaly.seasonal import SeasonalBaseline
from detectors.anomaly.seasonal_cusum import SeasonalCusum
from detectors.base import Scorer

#: Method name -> constructor (keyword parameters only: numbers, and ``tz`` for the
#: seasonal ones).
METHODS: dict[str, Callable[..., Scorer]] = {
    "robust_ewma": RobustEWMA,
    "seasonal": SeasonalBaseline,
    "cusum": Cusum,
    "seasonal_cusum": SeasonalCusum,
}

#: The method a ``type: anomaly`` rule gets when it names none.
DEFAULT_METHOD: str = "seasonal_cusum"

#: Staged parameters for anomaly rules (keys are :class:`~detectors.staged.Staged`
#: keyword arguments), the best F1 of the debounce grid in ``bench.anomaly_compare``.
#: "Sustained or extreme" is built into the default's score, so no delay is needed:
#: it reaches 0.99 when the summed evidence of a shift does (five points four
#: spreads off, or 24 points two spreads off) or for a single point 7.6 spreads
#: off; only a single point 9.3
#: spreads off reaches 0.999, so sustained shifts pre-warn and extreme points alarm.
#: Keep ``delay_samples`` at 1 with ``prewarning`` 0.99: the shift is accepted as
#: the new normal on the point its evidence reaches 0.99, so a second point at 0.99
#: rarely comes (recall falls from 80 % to 24 % with ``delay_samples=2``).
RECOMMENDED_STAGES: dict[str, float | int] = {
    "prewarning": 0.99,
    "alarm": 0.999,
    "delay_samples": 1,
    "delay_s": 0,
    "hysteresis": 0.2,
}


def _parameters(factory: Callable[..., Scorer]) -> set[str]:
    """Keyword parameters ``factory`` accepts, following ``**kwargs`` up to its bases."""
    inits = [vars(c)["__init__"] for c in getattr(factory, "__mro__", ()) if "__init__" in vars(c)]
    names: set[str] = set()
    for init in inits or [factory]:
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.kind is p.KEYWORD_ONLY}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


def make_anomaly(method: str = DEFAULT_METHOD, **params: float | str) -> Scorer:
    """A fresh scorer of ``method`` with ``params``; ValueError on an unknown method or param."""
    try:
        factory = METHODS[method]
    except KeyError:
        known = ", ".join(sorted(METHODS))
        raise ValueError(f"unknown anomaly method {method!r}; known: {known}") from None
    accepted = _parameters(factory)
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
    "SeasonalCusum",
    "make_anomaly",
]
