"""What every anomaly scorer shares: the score scale and typed reads of a restored state.

One score scale for all candidates, so the stage bounds in
:data:`detectors.anomaly.RECOMMENDED_STAGES` mean the same thing whichever method a
rule picks: a robust z-score (distance from the expected value in units of the
learnt spread) mapped through the Rayleigh CDF ``1 - exp(-(z / z_scale)**2 / 2)``.
With the default ``z_scale = 2`` a score of 0.9 is z = 4.3 and 0.99 is z = 6.1,
which is where a heavy-tailed field signal (a motor start, a tariff switch) stops
being ordinary.

>>> round(score_from_z(0.0), 3), round(score_from_z(4.29), 3), round(score_from_z(6.07), 3)
(0.0, 0.9, 0.99)
"""

from __future__ import annotations

import math

import numpy as np

from detectors.base import Floats

#: Scale factor from a mean absolute deviation to a Gaussian standard deviation.
MAD_TO_SIGMA = math.sqrt(math.pi / 2.0)


def score_from_z(z: float, z_scale: float = 2.0) -> float:
    """Map a non-negative z-score into [0, 1) (monotonic; 0 at z = 0)."""
    q = z / z_scale
    return -math.expm1(-0.5 * q * q)


def scores_from_z(z: Floats, z_scale: float = 2.0) -> Floats:
    """:func:`score_from_z` over an array."""
    q = z / z_scale
    result: Floats = -np.expm1(-0.5 * q * q)
    return result


def check_state(state: object, kind: str) -> dict[str, object]:
    """``state`` as a mapping, or ValueError naming the scorer it was meant for."""
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ValueError(f"{kind} state must be a mapping, got {type(state).__name__}")
    return state


def get_float(state: dict[str, object], key: str) -> float:
    """``state[key]`` as a finite float (ints accepted, bools rejected)."""
    value = state.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"state field {key!r} must be a number, got {type(value).__name__}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"state field {key!r} must be finite, got {result}")
    return result


def get_floats(state: dict[str, object], key: str, length: int) -> list[float]:
    """``state[key]`` as a list of ``length`` finite floats."""
    value = state.get(key)
    if not isinstance(value, list) or len(value) != length:
        raise ValueError(f"state field {key!r} must be a list of {length} numbers")
    return [get_float({key: item}, key) for item in value]


def check_positive(name: str, value: float) -> float:
    """A finite, strictly positive parameter, or ValueError naming it."""
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return float(value)
