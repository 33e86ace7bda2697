"""Seasonal baseline: a daily profile per time-of-day bucket plus a short-term level.

An enterprise's load is high during the shift and low at night; a cable's
temperature follows it. A detector without a notion of time of day has to learn
a spread wide enough to cover the whole day, and then misses a night-time load
that would be normal at noon (the very sign of production during an ordered
shutdown). This candidate predicts each point as ``level + profile(time of day)``:

* ``profile`` is learnt per time-of-day bucket in the site's time zone and
  interpolated linearly between bucket centres (a load ramping up at 08:00 is
  not one hour-long step), with a memory of ``season_days`` days;
* ``level`` is a short-term EWMA (``tau_level_s``) of what the profile does not
  explain, so a step or a slow change of the whole day becomes the new normal
  within hours, while the profile follows over days (additive Holt-Winters);
* residuals are Huber-clipped at ``clip`` spreads before they are learnt, so a
  spike does not bend the baseline;
* the spread is learnt per bucket (the noise of a working day is larger than at
  night) with a floor at half the overall spread.

A point's weight is ``dt / (dt + tau)`` with ``dt`` the time since the previous
point, capped at ``max_dt_s``: the memory is a span of time whatever the sampling
rate, a repeated timestamp adds nothing, and the first point after a day-long
gap counts as one point, not as a day (the profile does not decay while the
device is away, and the points after the gap are compared with the same hour of
the days before). The weight is a ratio rather than ``1 - exp(-dt / tau)``
because division rounds the same in numpy and in Python, which lets
:meth:`SeasonalBaseline.process_many` compute every weight as one array and
still leave exactly the state the streaming path does.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from detectors._state import get_float, get_int, get_opt_int
from detectors.anomaly._clock import DAY_MS, LocalClock
from detectors.anomaly._common import (
    MAD_TO_SIGMA,
    check_non_negative,
    check_positive,
    check_state,
    get_floats,
    score_from_z,
)
from detectors.base import Floats, Timestamps

_LN10 = math.log(10.0)


class SeasonalBaseline:
    """Interpolated daily profile + short-term level, robust spread, time-weighted.

    Parameters
    ----------
    buckets
        Time-of-day buckets per day (24: hourly centres at hh:30).
    tz
        IANA time zone of the site; buckets are local time of day.
    tau_level_s
        Time constant of the short-term level, in seconds.
    season_days
        Memory of the daily profile, in days.
    spread_tau_s
        Time constant of the overall spread, in seconds.
    max_dt_s
        A point counts for at most this much time (see the module docstring).
    clip
        Residuals are clipped to this many spreads before they are learnt.
    warmup
        Points learnt before the first non-zero score.
    min_visits
        A time of day scores only after both buckets around it have been
        visited this many times.
    min_spread, rel_spread, z_scale
        As for :class:`~detectors.anomaly.ewma.RobustEWMA`.

    Examples
    --------
    Four and a half days of a load that ramps from 20 kW to 100 kW at 08:00 and
    back at 18:00 (Shanghai time), every 15 minutes, starting at midnight; then,
    at noon, the usual 100 kW, a load gone missing, and full load at 01:00:

    >>> import numpy as np
    >>> t0, hour_ms = 1_772_380_800_000, 3_600_000  # 2026-03-02 00:00 in Shanghai
    >>> ts = t0 + np.arange(0, 108 * hour_ms, 900_000)
    >>> hour = (ts - t0) % (24 * hour_ms) / hour_ms
    >>> shift = 1 / (1 + np.exp(-(hour - 8) / 0.3)) - 1 / (1 + np.exp(-(hour - 18) / 0.3))
    >>> rng = np.random.default_rng(1)
    >>> det = SeasonalBaseline()
    >>> _ = det.process_many(ts, 20 + 80 * shift + rng.normal(0, 1, len(ts)))
    >>> noon = int(ts[-1]) + 900_000
    >>> [round(det.score_one(t, kw), 2) for t, kw in
    ...  [(noon, 100.0), (noon, 20.0), (noon + 13 * hour_ms, 100.0)]]
    [0.0, 1.0, 1.0]
    """

    #: SeasonalCusum sets this: score and learn the CUSUM of the residuals too.
    _summed = False

    __slots__ = (
        "_accept",
        "_allowance",
        "_bucket_ms",
        "_buckets",
        "_clip",
        "_clock",
        "_down",
        "_gspread",
        "_h",
        "_last_ts_ms",
        "_level",
        "_max_dt_ms",
        "_min_spread",
        "_min_visits",
        "_n",
        "_profile",
        "_rel_spread",
        "_season_ms",
        "_spread",
        "_spread_tau_ms",
        "_tau_ms",
        "_up",
        "_visits",
        "_warmup",
        "_z_cap",
        "_z_scale",
    )

    def __init__(
        self,
        *,
        buckets: float = 24,
        tz: str = "Asia/Shanghai",
        tau_level_s: float = 3 * 3600.0,
        season_days: float = 7.0,
        spread_tau_s: float = 24 * 3600.0,
        max_dt_s: float = 3600.0,
        clip: float = 3.0,
        warmup: float = 16,
        min_visits: float = 2,
        min_spread: float = 1e-6,
        rel_spread: float = 1e-3,
        z_scale: float = 2.0,
    ) -> None:
        self._buckets = int(check_positive("buckets", buckets))
        if self._buckets < 2 or DAY_MS % self._buckets:
            raise ValueError(f"buckets must be >= 2 and divide a day in whole ms, got {buckets}")
        self._bucket_ms = DAY_MS // self._buckets
        self._clock = LocalClock(tz)
        self._tau_ms = check_positive("tau_level_s", tau_level_s) * 1000.0
        # A bucket collects 1/buckets of each day, so its profile's time constant in
        # "time spent in the bucket" is season_days * bucket_ms.
        self._season_ms = check_positive("season_days", season_days) * self._bucket_ms
        self._spread_tau_ms = check_positive("spread_tau_s", spread_tau_s) * 1000.0
        self._max_dt_ms = check_positive("max_dt_s", max_dt_s) * 1000.0
        self._clip = check_positive("clip", clip)
        self._warmup = int(check_positive("warmup", warmup))
        self._min_visits = int(check_positive("min_visits", min_visits))
        self._min_spread = check_positive("min_spread", min_spread)
        self._rel_spread = check_non_negative("rel_spread", rel_spread)
        self._z_scale = check_positive("z_scale", z_scale)
        # CUSUM parameters and sums; only used when _summed (SeasonalCusum).
        self._allowance, self._h, self._z_cap, self._accept = 1.0, 6.0, 4.0, 2.0
        self._up = 0.0
        self._down = 0.0
        self._n = 0
        self._last_ts_ms: int | None = None
        self._level = 0.0
        self._gspread = 0.0
        self._profile = [0.0] * self._buckets
        self._spread = [0.0] * self._buckets
        self._visits = [0] * self._buckets

    @classmethod
    def _contract_params(cls) -> list[dict[str, object]]:
        return [{}, {"buckets": 48, "tz": "Europe/Berlin", "warmup": 3, "min_visits": 1}]

    # ------------------------------------------------------------------ one point

    def _where(self, ts_ms: int) -> tuple[int, int, float]:
        """The buckets either side of ``ts_ms``'s time of day and the weight of the second."""
        pos = self._clock.ms_of_day(ts_ms) / self._bucket_ms - 0.5
        if pos < 0:
            pos += self._buckets
        b0 = int(pos)
        b1 = b0 + 1 if b0 + 1 < self._buckets else 0
        return b0, b1, pos - b0

    def _residual(self, b0: int, b1: int, f: float, value: float) -> tuple[float, float, bool]:
        """(expected value, spread, warm) at this time of day."""
        profile, spread = self._profile, self._spread
        expected = self._level + (profile[b0] + f * (profile[b1] - profile[b0]))
        sp = max(spread[b0] + f * (spread[b1] - spread[b0]), 0.5 * self._gspread)
        sigma = max(sp * MAD_TO_SIGMA, self._min_spread, self._rel_spread * abs(expected))
        mv = self._min_visits
        warm = self._n >= self._warmup and self._visits[b0] >= mv and self._visits[b1] >= mv
        return expected, sigma, warm

    def _summed_score(self, z: float, up: float, down: float) -> tuple[float, float, float]:
        """The sums after a residual of ``z`` spreads, and the score they give."""
        zc = min(max(z, -self._z_cap), self._z_cap)
        up = max(0.0, up + zc - self._allowance)
        down = max(0.0, down - zc - self._allowance)
        return up, down, -math.expm1(-max(up, down) / self._h * _LN10)

    def score_one(self, ts_ms: int, value: float) -> float:
        if math.isnan(value):
            return math.nan
        b0, b1, f = self._where(int(ts_ms))
        expected, sigma, warm = self._residual(b0, b1, f, value)
        if not warm:
            return 0.0
        z = (value - expected) / sigma
        score = score_from_z(abs(z), self._z_scale)
        if self._summed:
            score = max(score, self._summed_score(z, self._up, self._down)[2])
        return score

    def score_many(self, ts_ms: Timestamps, values: Floats) -> Floats:
        return np.array(
            [self.score_one(int(t), float(v)) for t, v in zip(ts_ms, values, strict=True)],
            dtype=np.float64,
        )

    def learn_one(self, ts_ms: int, value: float) -> None:
        if not math.isfinite(value):
            return
        ts_ms, value = int(ts_ms), float(value)
        b0, b1, f = self._where(ts_ms)
        if self._n == 0 or self._last_ts_ms is None:
            self._n, self._last_ts_ms, self._level = 1, ts_ms, value
            self._visits[b0 if f <= 0.5 else b1] = 1
            return
        dt = ts_ms - self._last_ts_ms
        if dt > 0:
            self._last_ts_ms = ts_ms
        else:
            dt = 0
        dtc = min(float(dt), self._max_dt_ms)
        expected, sigma, warm = self._residual(b0, b1, f, value)
        n = self._n
        self._n = n + 1
        profile, spread, visits = self._profile, self._spread, self._visits
        if visits[b0] == 0 or visits[b1] == 0:
            # A bucket's first point defines its offset from the current level; only
            # the nearer one counts as a visit, the other's offset is provisional.
            for bk, near in ((b0, f <= 0.5), (b1, f >= 0.5)):
                if visits[bk] == 0:
                    profile[bk], spread[bk] = value - self._level, self._gspread
                    if near:
                        visits[bk] = 1
            return
        if self._summed and warm:
            prof = profile[b0] + f * (profile[b1] - profile[b0])
            up, down, _ = self._summed_score((value - expected) / sigma, self._up, self._down)
            if max(up, down) >= self._accept * self._h:
                # Accepted as the new normal: this point becomes exactly as expected.
                self._level = value - prof
                expected = self._level + prof
                up = down = 0.0
            self._up, self._down = up, down
        a = dtc / (dtc + self._tau_ms)
        w = dtc / (dtc + self._season_ms)
        g = dtc / (dtc + self._spread_tau_ms)
        r = value - expected
        ar = abs(r)
        if warm:
            lim = self._clip * sigma
            if ar > lim:
                ar = lim
                r = lim if r > 0 else -lim
        else:
            g = max(g, 1.0 / n)
        w = max(w, 1.0 / (min(visits[b0], visits[b1]) + 1))
        self._level += a * r
        e = w * (r - a * r)
        w0, w1 = w * (1.0 - f), w * f
        profile[b0] += (1.0 - f) * e
        profile[b1] += f * e
        spread[b0] += w0 * (ar - spread[b0])
        spread[b1] += w1 * (ar - spread[b1])
        self._gspread += g * (ar - self._gspread)
        visits[b0] += 1
        visits[b1] += 1

    # ------------------------------------------------------------------ many points

    def _prepare(
        self, ts: Timestamps
    ) -> tuple[Timestamps, Timestamps, Floats, Floats, Floats, Floats]:
        """Buckets, interpolation weights and learning weights of a batch of finite points.

        Advances the newest timestamp seen, so call it once per batch, right before
        running the recursion over the batch (``process_many``, ``process_batch``).
        """
        nb = self._buckets
        pos = self._clock.ms_of_day_many(ts) / self._bucket_ms - 0.5
        pos = np.where(pos < 0, pos + nb, pos)
        b0s = pos.astype(np.int64)
        fs = pos - b0s
        b1s = np.where(b0s + 1 < nb, b0s + 1, 0)
        assert self._last_ts_ms is not None
        prev = np.maximum.accumulate(np.concatenate(([self._last_ts_ms], ts)))
        dts = np.minimum(np.maximum(ts - prev[:-1], 0).astype(np.float64), self._max_dt_ms)
        self._last_ts_ms = int(prev[-1])
        return (
            b0s,
            b1s,
            fs,
            dts / (dts + self._tau_ms),
            dts / (dts + self._season_ms),
            dts / (dts + self._spread_tau_ms),
        )

    def process_many(self, ts_ms: Timestamps, values: Floats) -> Floats:
        """Score each point against what was learnt before it, then learn it.

        Everything that does not depend on the learnt state (time of day,
        buckets, elapsed times, weights) is computed as numpy arrays; the
        recursion itself (buckets interleave, the clip depends on the spread so
        far, the CUSUM is a max-plus recursion) is one tight loop with the
        arithmetic of :meth:`score_one` and :meth:`learn_one` inlined, operation
        for operation, so the scores and the final state are exactly theirs.
        """
        ts = np.asarray(ts_ms, dtype=np.int64)
        vs = np.asarray(values, dtype=np.float64)
        out = np.full(len(vs), np.nan)
        finite = np.isfinite(vs)
        if not finite.all():
            # Non-finite values are never learnt: score them at the state the
            # finite points before them leave, one run of finite points at a time.
            idx = np.flatnonzero(~finite)
            lo = 0
            for i in idx.tolist():
                out[lo:i] = self.process_many(ts[lo:i], vs[lo:i])
                out[i] = self.score_one(int(ts[i]), float(vs[i]))
                lo = i + 1
            out[lo:] = self.process_many(ts[lo:], vs[lo:])
            return out
        if len(ts) == 0:
            return out
        if self._n == 0:
            out[0] = self.score_one(int(ts[0]), float(vs[0]))
            self.learn_one(int(ts[0]), float(vs[0]))
            out[1:] = self.process_many(ts[1:], vs[1:])
            return out
        b0s, b1s, fs, a_s, w_s, g_s = self._prepare(ts)

        profile, spread, visits = self._profile, self._spread, self._visits
        level, gs, n = self._level, self._gspread, self._n
        up, down = self._up, self._down
        summed = self._summed
        warmup, mv, clip, zs = self._warmup, self._min_visits, self._clip, self._z_scale
        min_sp, rel = self._min_spread, self._rel_spread
        k, h, zcap, acc_h = self._allowance, self._h, self._z_cap, self._accept * self._h
        mad = MAD_TO_SIGMA
        exponents = [-1.0] * len(vs)
        rows = zip(
            b0s.tolist(),
            b1s.tolist(),
            fs.tolist(),
            a_s.tolist(),
            w_s.tolist(),
            g_s.tolist(),
            vs.tolist(),
            strict=True,
        )
        # Scores are collected as exponents E (score = 1 - exp(-E), monotonic, so the
        # larger of the single-point and summed scores is the larger E) and mapped
        # once at the end; -1 marks "warming up" (score 0). Builtins (max, abs) are
        # spelt as conditionals: this loop is the cost of the detector.
        half_zs2 = 0.5 / (zs * zs)
        ln10_h = _LN10 / h
        for i, (b0, b1, f, a, w, g, x) in enumerate(rows):
            p0, p1, s0, s1 = profile[b0], profile[b1], spread[b0], spread[b1]
            prof = p0 + f * (p1 - p0)
            expected = level + prof
            sp = s0 + f * (s1 - s0)
            half_gs = 0.5 * gs
            if half_gs > sp:
                sp = half_gs
            sigma = sp * mad
            floor = rel * (expected if expected >= 0.0 else -expected)
            if min_sp > floor:
                floor = min_sp
            if floor > sigma:
                sigma = floor
            v0, v1 = visits[b0], visits[b1]
            warm = n >= warmup and v0 >= mv and v1 >= mv
            if warm:
                z = (x - expected) / sigma
                exponent = z * z * half_zs2
                if summed:
                    zc = zcap if z > zcap else (-zcap if z < -zcap else z)
                    nup = up + zc - k
                    if nup < 0.0:
                        nup = 0.0
                    ndown = down - zc - k
                    if ndown < 0.0:
                        ndown = 0.0
                    evidence = nup if nup > ndown else ndown
                    if evidence * ln10_h > exponent:
                        exponent = evidence * ln10_h
                exponents[i] = exponent
            n_before = n
            n += 1
            if v0 == 0 or v1 == 0:
                if v0 == 0:
                    profile[b0], spread[b0] = x - level, gs
                    if f <= 0.5:
                        visits[b0] = 1
                if v1 == 0:
                    profile[b1], spread[b1] = x - level, gs
                    if f >= 0.5:
                        visits[b1] = 1
                continue
            if summed and warm:
                if evidence >= acc_h:
                    level = x - prof
                    expected = level + prof
                    nup = ndown = 0.0
                up, down = nup, ndown
            r = x - expected
            ar = r if r >= 0.0 else -r
            if warm:
                lim = clip * sigma
                if ar > lim:
                    ar = lim
                    r = lim if r > 0 else -lim
            else:
                inv = 1.0 / n_before
                if inv > g:
                    g = inv
            inv = 1.0 / ((v0 if v0 < v1 else v1) + 1)
            if inv > w:
                w = inv
            level += a * r
            e = w * (r - a * r)
            profile[b0] = p0 + (1.0 - f) * e
            profile[b1] += f * e
            spread[b0] = s0 + w * (1.0 - f) * (ar - s0)
            spread[b1] += w * f * (ar - spread[b1])
            gs += g * (ar - gs)
            visits[b0] = v0 + 1
            visits[b1] += 1
        self._level, self._gspread, self._n, self._up, self._down = level, gs, n, up, down
        ex = np.array(exponents, dtype=np.float64)
        result: Floats = np.where(ex < 0.0, 0.0, -np.expm1(-ex))
        return result

    @classmethod
    def process_groups(
        cls,
        scorers: Sequence[SeasonalBaseline],
        ts_ms: Timestamps,
        values: Floats,
        bounds: npt.NDArray[np.intp],
    ) -> Floats | None:
        """``process_many`` of many series in one numpy pass (``detectors.vectorised``).

        Point ``i`` belongs to ``scorers[g]`` for ``bounds[g] <= i < bounds[g + 1]``;
        see :func:`detectors.anomaly.batch.process_batch`. None (the caller then goes
        series by series) if one scorer appears twice.
        """
        from detectors.anomaly.batch import process_batch

        if len({id(s) for s in scorers}) != len(scorers):
            return None
        series = [(ts_ms[lo:hi], values[lo:hi]) for lo, hi in itertools.pairwise(bounds)]
        parts = process_batch(scorers, series)
        return np.concatenate(parts) if parts else np.empty(0)

    # ------------------------------------------------------------------ state

    def state(self) -> dict[str, object]:
        return {
            "n": self._n,
            "last_ts_ms": self._last_ts_ms,
            "level": self._level,
            "spread": self._gspread,
            "profile": list(self._profile),
            "bucket_spread": list(self._spread),
            "visits": list(self._visits),
        }

    def restore(self, state: dict[str, object]) -> None:
        state = check_state(state, type(self).__name__)
        n = get_int(state, "n")
        last = get_opt_int(state, "last_ts_ms")
        level = get_float(state, "level")
        gspread = get_float(state, "spread")
        profile = get_floats(state, "profile", self._buckets)
        spread = get_floats(state, "bucket_spread", self._buckets)
        raw_visits = state.get("visits")
        if not isinstance(raw_visits, list) or len(raw_visits) != self._buckets:
            raise ValueError(f"state field 'visits' must be a list of {self._buckets} integers")
        visits = [get_int({"visits": v}, "visits") for v in raw_visits]
        if n < 0 or (n > 0) != (last is not None) or min(visits) < 0 or min(spread) < 0:
            raise ValueError(f"{type(self).__name__} state fields disagree")
        self._n, self._last_ts_ms, self._level, self._gspread = n, last, level, gspread
        self._profile, self._spread, self._visits = profile, spread, visits

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(buckets={self._buckets}, tz={self._clock.tz!r}, "
            f"n={self._n}, level={self._level:g})"
        )
