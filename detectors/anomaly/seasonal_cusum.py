"""Seasonal CUSUM: the seasonal baseline's residuals, judged alone *and* added up.

The seasonal baseline (:mod:`detectors.anomaly.seasonal`) predicts each point
from its time of day and a short-term level. Judging each residual alone, as it
does, has two weaknesses the comparison showed: a slow drift is absorbed by the
short-term level before any single residual is large, and with heavy-tailed
noise sampled every minute or two, a bound low enough to see a moderate shift is
crossed by chance several times a day. This candidate keeps the same baseline and
scores a point by the larger of

* its own residual on a wider scale (``z_scale``): only an *extreme* point
  scores high alone (a spike, night-time production at full load), and
* a two-sided CUSUM of the residuals, each capped at ``z_cap`` spreads: a
  *sustained* moderate shift (a step, a drift, a pressure creeping within noise)
  adds up to the bound in a few points, and one outlier cannot.

When the summed evidence reaches ``accept * h`` the shift is accepted: the level
jumps to the current point and the sums restart, so a step raises one alert and
is then the new normal instead of alarming until the level catches up.
"""

from __future__ import annotations

from detectors._state import get_float
from detectors.anomaly._common import check_cusum, check_state
from detectors.anomaly.seasonal import SeasonalBaseline


class SeasonalCusum(SeasonalBaseline):
    """:class:`SeasonalBaseline` plus a CUSUM over its residuals with change acceptance.

    Parameters
    ----------
    allowance
        Residuals within this many spreads add no evidence.
    h
        Summed evidence (in spreads) that scores 0.9; ``2 h`` scores 0.99.
    z_cap
        One point adds at most ``z_cap - allowance`` spreads of evidence.
    accept
        Evidence of ``accept * h`` makes the shift the new normal.
    tau_level_s, z_scale, **baseline
        As for :class:`SeasonalBaseline` (a longer level memory and a wider
        single-point scale by default: the sums see what those give up).

    Examples
    --------
    A pressure difference of 800 Pa (+/- 10) every 2 min for three days, then a
    shift of 30 Pa: no single point is extreme, the evidence adds up, and once it
    is overwhelming the new level is accepted:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = SeasonalCusum()
    >>> ts = np.arange(0, 3 * 86_400_000, 120_000)
    >>> _ = det.process_many(ts, 800 + rng.normal(0, 10, len(ts)))
    >>> later = ts[-1] + 120_000 * np.arange(1, 13)
    >>> det.process_many(later, 830 + rng.normal(0, 10, 12)).round(2).tolist()
    [0.67, 0.74, 0.8, 0.92, 0.96, 0.98, 0.99, 1.0, 0.15, 0.05, 0.0, 0.04]
    """

    _summed = True
    __slots__ = ()

    def __init__(
        self,
        *,
        allowance: float = 1.5,
        h: float = 6.0,
        z_cap: float = 4.0,
        accept: float = 2.0,
        tau_level_s: float = 24 * 3600.0,
        z_scale: float = 2.5,
        **baseline: float | str,
    ) -> None:
        super().__init__(tau_level_s=tau_level_s, z_scale=z_scale, **baseline)  # type: ignore[arg-type]
        self._allowance, self._h, self._z_cap, self._accept = check_cusum(
            allowance, h, z_cap, accept
        )

    @classmethod
    def _contract_params(cls) -> list[dict[str, object]]:
        return [{}, {"buckets": 48, "tz": "Europe/Berlin", "warmup": 3, "min_visits": 1, "h": 3}]

    def state(self) -> dict[str, object]:
        return {
            **super().state(),
            "up": self._up,
            "down": self._down,
        }

    def restore(self, state: dict[str, object]) -> None:
        state = check_state(state, "SeasonalCusum")
        up, down = get_float(state, "up"), get_float(state, "down")
        if min(up, down) < 0:
            raise ValueError("SeasonalCusum state fields up/down must be >= 0")
        super().restore(state)
        self._up, self._down = up, down
