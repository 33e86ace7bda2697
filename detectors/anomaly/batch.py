"""The seasonal scorers over many series at once: one numpy recursion across series.

A seasonal baseline's recursion cannot be vectorised along time (buckets
interleave, the clip depends on the spread learnt so far, the CUSUM is a max-plus
recursion), so :meth:`SeasonalBaseline.process_many` is a tight loop over points.
Across *series* it vectorises perfectly: step ``j`` of every series is the same
arithmetic on different state. :func:`process_batch` gathers the state of many
scorers into arrays, runs the recursion one time step at a time with numpy over
all series still having points, and scatters the state back.

The learning weights are ratios (``dt / (dt + tau)``, see ``seasonal.py``) and
the state recursion uses only ``+ - * /`` and comparisons, which numpy rounds
exactly as Python does: every scorer ends in exactly the state its own
``process_many`` would leave, and the scores agree to the last bits of
``expm1``. That is what lets a backtest or a reconnect burst of 10,000 series
run at numpy speed through the same detector the gateway runs point by point.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detectors.anomaly._common import MAD_TO_SIGMA
from detectors.anomaly.seasonal import _LN10, SeasonalBaseline
from detectors.base import Floats, Timestamps


def _params(s: SeasonalBaseline) -> tuple[object, ...]:
    return (
        type(s),
        s._buckets,
        s._clock.tz,
        s._tau_ms,
        s._season_ms,
        s._spread_tau_ms,
        s._max_dt_ms,
        s._clip,
        s._warmup,
        s._min_visits,
        s._min_spread,
        s._rel_spread,
        s._z_scale,
        s._allowance,
        s._h,
        s._z_cap,
        s._accept,
    )


def process_batch(
    scorers: Sequence[SeasonalBaseline], series: Sequence[tuple[Timestamps, Floats]]
) -> list[Floats]:
    """``[s.process_many(ts, values) for s, (ts, values) in zip(scorers, series)]``, fast.

    Scorers with different parameters are processed in separate groups; a series
    with a non-finite value, or a scorer that has learnt nothing yet, takes its
    own ``process_many`` for the parts the shared recursion does not cover.

    >>> import numpy as np
    >>> from detectors.anomaly import SeasonalCusum
    >>> rng = np.random.default_rng(3)
    >>> ts = 1_772_380_800_000 + np.arange(0, 4 * 86_400_000, 900_000)
    >>> series = [(ts, 50 + rng.normal(0, 2, len(ts))) for _ in range(3)]
    >>> one = [SeasonalCusum() for _ in series]
    >>> many = [SeasonalCusum() for _ in series]
    >>> expected = [s.process_many(t, v) for s, (t, v) in zip(one, series)]
    >>> got = process_batch(many, series)
    >>> all(np.allclose(a, b, rtol=1e-12) for a, b in zip(got, expected))
    True
    >>> [a.state() == b.state() for a, b in zip(one, many)]
    [True, True, True]
    """
    if len(scorers) != len(series):
        raise ValueError(f"{len(scorers)} scorers for {len(series)} series")
    if len({id(s) for s in scorers}) != len(scorers):
        # One scorer fed twice: its series must follow each other, not run side by side.
        return [s.process_many(t, v) for s, (t, v) in zip(scorers, series, strict=True)]
    out: list[Floats] = [np.empty(0)] * len(scorers)
    first: dict[int, int] = {}  # points of series i its scorer has already processed
    groups: dict[tuple[object, ...], list[int]] = {}
    for i, (scorer, (ts, values)) in enumerate(zip(scorers, series, strict=True)):
        ts = np.asarray(ts, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        if ts.shape != values.shape:
            raise ValueError(f"series {i}: {len(ts)} timestamps for {len(values)} values")
        if not np.isfinite(values).all() or len(values) < 2:
            out[i] = scorer.process_many(ts, values)
            continue
        out[i] = np.empty(len(ts))
        first[i] = 0
        if scorer._n == 0:
            # The first point only initialises the level: let the scorer do it.
            out[i][0] = scorer.score_one(int(ts[0]), float(values[0]))
            scorer.learn_one(int(ts[0]), float(values[0]))
            first[i] = 1
        groups.setdefault(_params(scorer), []).append(i)
    for members in groups.values():
        _run_group(scorers, series, members, first, out)
    return out


def _run_group(
    scorers: Sequence[SeasonalBaseline],
    series: Sequence[tuple[Timestamps, Floats]],
    members: list[int],
    first: dict[int, int],
    out: list[Floats],
) -> None:
    # Longest series first, so the series still running at step j are rows [0, m_j).
    order = sorted(members, key=lambda i: len(series[i][0]) - first[i], reverse=True)
    lengths = np.array([len(series[i][0]) - first[i] for i in order], dtype=np.int64)
    rows, width = len(order), int(lengths[0])
    ref = scorers[order[0]]
    nb = ref._buckets

    # Every per-point input as a (width, rows) array, so step j is one contiguous
    # row; exactly what SeasonalBaseline._prepare computes, for all series at once.
    tsm = np.empty((rows, width), dtype=np.int64)
    xs = np.zeros((rows, width))
    for row, i in enumerate(order):
        ts = np.asarray(series[i][0], dtype=np.int64)[first[i] :]
        tsm[row, : len(ts)] = ts
        tsm[row, len(ts) :] = ts[-1]  # padding: neither advances the clock nor is read
        xs[row, : len(ts)] = np.asarray(series[i][1], dtype=np.float64)[first[i] :]
    last = np.array([scorers[i]._last_ts_ms for i in order], dtype=np.int64)
    pos = ref._clock.ms_of_day_many(tsm.ravel()).reshape(rows, width) / ref._bucket_ms - 0.5
    pos = np.where(pos < 0, pos + nb, pos)
    b0 = pos.astype(np.int64)
    fs = pos - b0
    b1 = np.where(b0 + 1 < nb, b0 + 1, 0)
    prev = np.maximum.accumulate(np.concatenate((last[:, None], tsm), axis=1), axis=1)
    dts = np.minimum(np.maximum(tsm - prev[:, :-1], 0).astype(np.float64), ref._max_dt_ms)
    for row, i in enumerate(order):
        scorers[i]._last_ts_ms = int(prev[row, lengths[row]])
    base = (np.arange(rows, dtype=np.int64) * nb)[:, None]
    i0t, i1t = np.ascontiguousarray((base + b0).T), np.ascontiguousarray((base + b1).T)
    ft, xt = np.ascontiguousarray(fs.T), np.ascontiguousarray(xs.T)
    dtt = np.ascontiguousarray(dts.T)
    at = dtt / (dtt + ref._tau_ms)
    wt = dtt / (dtt + ref._season_ms)
    gt = dtt / (dtt + ref._spread_tau_ms)

    profile = np.array([scorers[i]._profile for i in order], dtype=np.float64).ravel()
    spread = np.array([scorers[i]._spread for i in order], dtype=np.float64).ravel()
    visits = np.array([scorers[i]._visits for i in order], dtype=np.int64).ravel()
    level = np.array([scorers[i]._level for i in order], dtype=np.float64)
    gs = np.array([scorers[i]._gspread for i in order], dtype=np.float64)
    count = np.array([scorers[i]._n for i in order], dtype=np.int64)
    up = np.array([scorers[i]._up for i in order], dtype=np.float64)
    down = np.array([scorers[i]._down for i in order], dtype=np.float64)

    summed = ref._summed
    warmup, mv, clip, zs = ref._warmup, ref._min_visits, ref._clip, ref._z_scale
    min_sp, rel = ref._min_spread, ref._rel_spread
    k, h, zcap, acc_h = ref._allowance, ref._h, ref._z_cap, ref._accept * ref._h
    half_zs2 = 0.5 / (zs * zs)
    ln10_h = _LN10 / h
    exponents = np.full((width, rows), -1.0)
    # Rows still running at each step: lengths are sorted descending.
    active = np.searchsorted(-lengths, -np.arange(1, width + 1), side="right").tolist()
    where = np.where

    for j in range(width):
        m = active[j]
        k0, k1 = i0t[j, :m], i1t[j, :m]
        f, x, a, w, g = ft[j, :m], xt[j, :m], at[j, :m], wt[j, :m], gt[j, :m]
        lv, gsv, nv = level[:m], gs[:m], count[:m]
        p0, p1 = profile.take(k0), profile.take(k1)
        s0, s1 = spread.take(k0), spread.take(k1)
        v0, v1 = visits.take(k0), visits.take(k1)
        prof = p0 + f * (p1 - p0)
        expected = lv + prof
        sp = s0 + f * (s1 - s0)
        half_gs = 0.5 * gsv
        sp = where(half_gs > sp, half_gs, sp)
        sigma = sp * MAD_TO_SIGMA
        floor = rel * where(expected >= 0.0, expected, -expected)
        floor = where(min_sp > floor, min_sp, floor)
        sigma = where(floor > sigma, floor, sigma)
        warm = (nv >= warmup) & (v0 >= mv) & (v1 >= mv)
        z = (x - expected) / sigma
        exponent = z * z * half_zs2
        fresh = (v0 == 0) | (v1 == 0)
        any_fresh = bool(fresh.any())
        keep_warm = warm & ~fresh if any_fresh else warm
        if summed:
            zc = where(z > zcap, zcap, where(z < -zcap, -zcap, z))
            nup = up[:m] + zc - k
            nup = where(nup < 0.0, 0.0, nup)
            ndown = down[:m] - zc - k
            ndown = where(ndown < 0.0, 0.0, ndown)
            evidence = where(nup > ndown, nup, ndown)
            exponent = where(evidence * ln10_h > exponent, evidence * ln10_h, exponent)
            accepted = keep_warm & (evidence >= acc_h)
            if accepted.any():
                lv = where(accepted, x - prof, lv)
                expected = where(accepted, lv + prof, expected)
                nup = where(accepted, 0.0, nup)
                ndown = where(accepted, 0.0, ndown)
            up[:m] = where(keep_warm, nup, up[:m])
            down[:m] = where(keep_warm, ndown, down[:m])
        exponents[j, :m] = where(warm, exponent, -1.0)
        r = x - expected
        ar = where(r >= 0.0, r, -r)
        lim = clip * sigma
        over = warm & (ar > lim)
        ar = where(over, lim, ar)
        r = where(over, where(r > 0, lim, -lim), r)
        inv = 1.0 / nv
        g = where(~warm & (inv > g), inv, g)
        inv = 1.0 / (where(v0 < v1, v0, v1) + 1)
        w = where(inv > w, inv, w)
        new_level = lv + a * r
        e = w * (r - a * r)
        new_p0 = p0 + (1.0 - f) * e
        new_p1 = p1 + f * e
        new_s0 = s0 + w * (1.0 - f) * (ar - s0)
        new_s1 = s1 + w * f * (ar - s1)
        new_gs = gsv + g * (ar - gsv)
        new_v0, new_v1 = v0 + 1, v1 + 1
        if any_fresh:
            # A bucket's first point defines its offset (SeasonalBaseline.learn_one).
            offset = x - lv
            z0, z1 = v0 == 0, v1 == 0
            new_p0 = where(fresh, where(z0, offset, p0), new_p0)
            new_p1 = where(fresh, where(z1, offset, p1), new_p1)
            new_s0 = where(fresh, where(z0, gsv, s0), new_s0)
            new_s1 = where(fresh, where(z1, gsv, s1), new_s1)
            new_v0 = where(fresh, where(z0 & (f <= 0.5), 1, v0), new_v0)
            new_v1 = where(fresh, where(z1 & (f >= 0.5), 1, v1), new_v1)
            new_level = where(fresh, lv, new_level)
            new_gs = where(fresh, gsv, new_gs)
        profile[k0], profile[k1] = new_p0, new_p1
        spread[k0], spread[k1] = new_s0, new_s1
        visits[k0], visits[k1] = new_v0, new_v1
        level[:m], gs[:m], count[:m] = new_level, new_gs, nv + 1

    scores = where(exponents < 0.0, 0.0, -np.expm1(-exponents)).T
    profile2, spread2, visits2 = (a.reshape(rows, nb) for a in (profile, spread, visits))
    for row, i in enumerate(order):
        s = scorers[i]
        n = int(lengths[row])
        out[i][first[i] :] = scores[row, :n]
        s._profile = profile2[row].tolist()
        s._spread = spread2[row].tolist()
        s._visits = visits2[row].tolist()
        s._level, s._gspread, s._n = float(level[row]), float(gs[row]), int(count[row])
        s._up, s._down = float(up[row]), float(down[row])
