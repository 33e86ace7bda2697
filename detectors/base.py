"""The streaming contract every detector follows, and what a staged detector reports.

Modelled on river's ``anomaly`` module: a *scorer* turns a point into a number,
and a separate wrapper (:class:`detectors.staged.Staged`) turns numbers into
pre-warning/alarm stages. Keeping the two apart means a plain threshold, a
drift-from-baseline test and a rate-of-rise test all share one stage machine
(delay, hysteresis, restore) instead of each growing its own.

``score_one`` must not change state, so the wrapper can score a point against
what was known *before* it (an outlier must not first raise the bar it is
measured against) and then ``learn_one`` it. ``state``/``restore`` exist because
the gateway restarts (upgrades, power cuts on site) and a baseline learnt over
weeks, or a pending 10 s delay, must survive that.

Every class in this package that satisfies :class:`Scorer` is found and run
through ``tests/test_detectors_contract.py``. It must be constructible with no
arguments, or define a classmethod ``_contract_params()`` returning a list of
keyword-argument dicts to build it with (as river's ``_unit_test_params``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from alerts.model import Stage

#: Epoch-millisecond timestamps, as everywhere in EWG.
Timestamps = npt.NDArray[np.int64]
#: Values and scores.
Floats = npt.NDArray[np.float64]


@runtime_checkable
class Scorer(Protocol):
    """Scores points of one series; O(1) time and small state per point.

    A larger score means "further towards the alarm side" only in the sense the
    wrapping :class:`~detectors.staged.Staged` is told (``direction``); a scorer
    itself has no thresholds.
    """

    def learn_one(self, ts_ms: int, value: float) -> None:
        """Update the state with one point."""
        ...

    def score_one(self, ts_ms: int, value: float) -> float:
        """Score one point against the current state, *without* changing it."""
        ...

    def score_many(self, ts_ms: Timestamps, values: Floats) -> Floats:
        """``score_one`` over arrays (same state for every point; nothing is learnt)."""
        ...

    def state(self) -> dict[str, object]:
        """A JSON-serialisable snapshot that :meth:`restore` accepts."""
        ...

    def restore(self, state: dict[str, object]) -> None:
        """Replace the state with a snapshot from :meth:`state`; ValueError if it is not one."""
        ...


@dataclass(frozen=True, slots=True)
class StageChange:
    """A series moved between normal, pre-warning and alarm at the point ``ts_ms``.

    ``value`` is the raw reading and ``score`` what the scorer made of it; they are
    the same for a plain threshold, and differ for e.g. a drift detector, where
    duty staff still want to see the reading itself.
    """

    ts_ms: int
    value: float
    score: float
    old: Stage
    new: Stage
