"""Plausible normal readings for every canonical metric.

Detectors are only worth something if they stay quiet on a normal day, so normal signals
here look like the field: load follows a working day (China time, UTC+8), temperatures sit
near ambient with a daily swing, residual current hovers in the 100-200 mA of healthy
installations, a bag filter's pressure difference saws up and down around its baseline as
pulse-jet cleaning runs, batteries decay slowly. Normal values always stay inside the
profile's valid range and short of every rule's pre-warning, so any alert in a simulated run
comes from an injected incident.

Randomness comes from a numpy ``Generator`` seeded with ``(scenario seed, crc32(device id))``:
the same scenario gives the same readings, and adding a device does not change the others.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gateway.profiles import MetricSpec, Profile
from simulator.payloads import Value

#: The town is in China; working-day curves are in local time.
LOCAL_UTC_OFFSET_S = 8 * 3600

# Knots (hour, fraction of rated load) of a small enterprise's working day: quiet night,
# start at 7-8, lunch dip, evening wind-down. Shops and houses are close enough for a demo.
_LOAD_HOURS = np.array([0, 6, 8, 11.5, 12, 13.5, 14, 18, 20, 23, 24], dtype=float)
_LOAD_LEVEL = np.array([0.2, 0.2, 0.85, 0.9, 0.6, 0.6, 0.9, 0.85, 0.45, 0.25, 0.2])

#: Decimal places by unit suffix: what a device's ADC and firmware would plausibly report.
_DECIMALS = {
    "c": 1,
    "ma": 1,
    "a": 2,
    "v": 2,
    "kw": 2,
    "kwh": 2,
    "pa": 0,
    "pct": 1,
    "lel": 1,
    "pctlel": 1,
    "dbm": 0,
    "db": 1,
    "gm3": 2,
    "count": 0,
    "per_s": 0,
    "m": 2,
    "m3h": 1,
}
_DECIMALS_BY_NAME = {"battery_voltage_v": 3, "battery_pct": 0}


def device_rng(seed: int, device_id: str, stream: str = "signals") -> np.random.Generator:
    """A generator for one device (and one purpose), independent of every other device.

    >>> a = device_rng(7, "d1").normal()
    >>> a == device_rng(7, "d1").normal() and a != device_rng(7, "d2").normal()
    True
    """
    key = zlib.crc32(f"{device_id}#{stream}".encode())
    return np.random.default_rng([seed, key])


def local_hour(ts_ms: int) -> float:
    """Hour of the day (0-24, fractional) in the town's time zone.

    >>> local_hour(0)  # 1970-01-01 00:00 UTC is 08:00 in China
    8.0
    """
    return ((ts_ms / 1000 + LOCAL_UTC_OFFSET_S) % 86400) / 3600


def load_factor(hour: float) -> float:
    """Fraction of rated load at this local hour (0.2 at night, ~0.9 at work).

    >>> load_factor(3.0), load_factor(10.0)
    (0.2, 0.878571)
    """
    return round(float(np.interp(hour % 24, _LOAD_HOURS, _LOAD_LEVEL)), 6)


def decimals(metric: str) -> int:
    """How many decimals a reading of this metric is published with.

    >>> decimals("residual_current_ma"), decimals("pressure_diff_pa"), decimals("arc_faults_per_s")
    (1, 0, 0)
    """
    if metric in _DECIMALS_BY_NAME:
        return _DECIMALS_BY_NAME[metric]
    for suffix in sorted(_DECIMALS, key=len, reverse=True):
        if metric.endswith("_" + suffix):
            return _DECIMALS[suffix]
    return 2


@dataclass(frozen=True, slots=True)
class _Ctx:
    """What every metric model of one sample shares, so related metrics move together."""

    ts_ms: int
    load: float
    ambient_c: float
    dt_s: float
    days: float  # since the device's first sample
    rng: np.random.Generator


@dataclass(frozen=True, slots=True)
class _ManyCtx:
    """:class:`_Ctx` for a whole array of samples at once (``DeviceSignals.sample_many``)."""

    ts_ms: npt.NDArray[np.int64]
    load: npt.NDArray[np.float64]
    ambient_c: npt.NDArray[np.float64]
    dt_s: npt.NDArray[np.float64]
    days: npt.NDArray[np.float64]
    rng: np.random.Generator

    def normal(self, scale: float) -> npt.NDArray[np.float64]:
        return self.rng.normal(0.0, scale, size=self.ts_ms.size)


Arr = npt.NDArray[np.float64]


class _Model:
    centre: float

    def value(self, ctx: _Ctx) -> float:
        raise NotImplementedError

    def values(self, ctx: _ManyCtx) -> Arr:
        """``value`` over arrays (same model, its own random draws)."""
        raise NotImplementedError


class _Around(_Model):
    """A level with noise, a slow sinusoidal drift and optionally some load dependence."""

    def __init__(
        self,
        centre: float,
        noise: float,
        drift: float = 0.0,
        drift_period_s: float = 6 * 3600,
        phase: float = 0.0,
        load_gain: float = 0.0,
        floor: float | None = None,
    ) -> None:
        self.centre = centre + load_gain * 0.5
        self._base = centre
        self._noise, self._drift, self._period = noise, drift, drift_period_s
        self._phase, self._load_gain, self._floor = phase, load_gain, floor

    def value(self, ctx: _Ctx) -> float:
        angle = 2 * math.pi * (ctx.ts_ms / 1000) / self._period + self._phase
        v = self._base + self._load_gain * ctx.load + self._drift * math.sin(angle)
        v += float(ctx.rng.normal(0.0, self._noise))
        if self._floor is not None:
            v = max(self._floor, v)
        return v

    def values(self, ctx: _ManyCtx) -> Arr:
        angle = 2 * np.pi * (ctx.ts_ms / 1000) / self._period + self._phase
        v = self._base + self._load_gain * ctx.load + self._drift * np.sin(angle)
        v = v + ctx.normal(self._noise)
        return v if self._floor is None else np.maximum(self._floor, v)


class _Thermal(_Model):
    """Ambient plus a fixed rise plus I²R heating with load (cables, hoppers, rooms)."""

    def __init__(self, rise: float, load_gain: float, noise: float, base: float | None) -> None:
        self._rise, self._load_gain, self._noise, self._base = rise, load_gain, noise, base
        self.centre = (base if base is not None else 24.0 + rise) + load_gain * 0.5

    def value(self, ctx: _Ctx) -> float:
        level = self._base + (ctx.ambient_c - 24.0) if self._base is not None else ctx.ambient_c
        extra = 0.0 if self._base is not None else self._rise
        return (
            level + extra + self._load_gain * ctx.load**2 + float(ctx.rng.normal(0.0, self._noise))
        )

    def values(self, ctx: _ManyCtx) -> Arr:
        level = self._base + (ctx.ambient_c - 24.0) if self._base is not None else ctx.ambient_c
        extra = 0.0 if self._base is not None else self._rise
        return level + extra + self._load_gain * ctx.load**2 + ctx.normal(self._noise)


class _Load(_Model):
    """Proportional to the working-day load curve: current, power."""

    def __init__(self, rated: float, noise_frac: float) -> None:
        self._rated, self._noise = rated, noise_frac
        self.centre = rated * 0.6

    def value(self, ctx: _Ctx) -> float:
        return self._rated * ctx.load * (1.0 + float(ctx.rng.normal(0.0, self._noise)))

    def values(self, ctx: _ManyCtx) -> Arr:
        return self._rated * ctx.load * (1.0 + ctx.normal(self._noise))


class _Sawtooth(_Model):
    """Bag-filter pressure difference: bags load up and pulse-jet cleaning knocks it back."""

    def __init__(
        self, centre: float, amplitude_frac: float, period_s: float, noise_frac: float, phase: float
    ) -> None:
        self.centre = centre
        self._amp, self._period, self._noise, self._phase = (
            amplitude_frac,
            period_s,
            noise_frac,
            phase,
        )

    def value(self, ctx: _Ctx) -> float:
        position = ((ctx.ts_ms / 1000) / self._period + self._phase) % 1.0
        v = self.centre * (1.0 + self._amp * (2.0 * position - 1.0))
        return v * (1.0 + float(ctx.rng.normal(0.0, self._noise)))

    def values(self, ctx: _ManyCtx) -> Arr:
        position = ((ctx.ts_ms / 1000) / self._period + self._phase) % 1.0
        v = self.centre * (1.0 + self._amp * (2.0 * position - 1.0))
        return v * (1.0 + ctx.normal(self._noise))


class _Counter(_Model):
    """A cumulative energy register: only ever goes up, by rated power x load x time."""

    def __init__(self, start: float, rated_kw: float) -> None:
        self.centre = start
        self._total, self._rated = start, rated_kw

    def value(self, ctx: _Ctx) -> float:
        self._total += self._rated * ctx.load * ctx.dt_s / 3600.0
        return self._total

    def values(self, ctx: _ManyCtx) -> Arr:
        totals = self._total + np.cumsum(self._rated * ctx.load * ctx.dt_s / 3600.0)
        if totals.size:
            self._total = float(totals[-1])
        return totals


class _Decay(_Model):
    """Slowly falling: battery voltage or charge."""

    def __init__(self, start: float, per_day: float, noise: float) -> None:
        self.centre = start
        self._per_day, self._noise = per_day, noise

    def value(self, ctx: _Ctx) -> float:
        noise = float(ctx.rng.normal(0.0, self._noise)) if self._noise else 0.0
        return self.centre - self._per_day * ctx.days + noise

    def values(self, ctx: _ManyCtx) -> Arr:
        noise = ctx.normal(self._noise) if self._noise else 0.0
        return self.centre - self._per_day * ctx.days + noise


class _Rare(_Model):
    """Mostly zero with rare small counts (arc detectors see the odd half-cycle)."""

    def __init__(self, rate: float, cap: int) -> None:
        self.centre = 0.0
        self._rate, self._cap = rate, cap

    def value(self, ctx: _Ctx) -> float:
        return float(min(self._cap, int(ctx.rng.poisson(self._rate))))

    def values(self, ctx: _ManyCtx) -> Arr:
        counts = ctx.rng.poisson(self._rate, size=ctx.ts_ms.size)
        return np.minimum(self._cap, counts).astype(np.float64)


class _Const(_Model):
    def __init__(self, value: float) -> None:
        self.centre = value

    def value(self, ctx: _Ctx) -> float:
        return self.centre

    def values(self, ctx: _ManyCtx) -> Arr:
        return np.full(ctx.ts_ms.size, self.centre)


_CABLE_TEMP = re.compile(r"^cable_temp_\d+_c$")


class DeviceSignals:
    """The normal readings of one simulated device, sample by sample.

    ``sample`` is stateful (energy counters, battery age), so call it once per published
    reading with increasing timestamps; two instances built alike return the same sequence.
    """

    def __init__(
        self,
        profile: Profile,
        device_id: str,
        seed: int,
        baseline: Mapping[str, float] | None = None,
        metrics: Sequence[str] | None = None,
    ) -> None:
        self.profile = profile
        self.device_id = device_id
        self.metrics: tuple[str, ...] = (
            tuple(metrics) if metrics is not None else tuple(profile.metrics)
        )
        self._rng = device_rng(seed, device_id)
        base = dict(baseline or {})
        draw = self._rng.uniform
        self._ambient_offset = float(draw(-2.0, 2.0))
        self._ambient_phase = float(draw(-0.5, 0.5))
        # Rated load shared by current, power and energy so they agree with each other.
        rated_a = base.get("current_a", float(draw(20.0, 80.0)))
        if "current_a" in profile.metrics:
            rated_kw = 0.22 * 0.92 * rated_a  # 220 V, power factor 0.92
        else:
            rated_kw = base.get("active_power_kw", float(draw(40.0, 400.0)))
        self._models: dict[str, _Model] = {
            m: self._model(m, profile.metrics[m], base, rated_a, rated_kw) for m in self.metrics
        }
        self._first_ms: int | None = None
        self._last_ms: int | None = None

    def _model(
        self,
        metric: str,
        spec: MetricSpec,
        base: dict[str, float],
        rated_a: float,
        rated_kw: float,
    ) -> _Model:
        draw = self._rng.uniform
        given = base.get(metric)

        def level(lo: float, hi: float) -> float:
            return given if given is not None else float(draw(lo, hi))

        phase = float(draw(0.0, 2 * math.pi))
        if spec.kind == "bool":
            default = 1.0 if "running" in metric else 0.0
            return _Const(given if given is not None else default)
        if metric == "residual_current_ma":
            # Healthy installations leak 100-200 mA (domain.md); slow drift with humidity.
            return _Around(level(120.0, 150.0), noise=3.0, drift=8.0, phase=phase, load_gain=10.0)
        if _CABLE_TEMP.match(metric):
            return _Thermal(rise=float(draw(3.0, 6.0)), load_gain=15.0, noise=0.3, base=given)
        if metric == "temperature_c":
            return _Thermal(rise=float(draw(0.0, 2.0)), load_gain=0.0, noise=0.15, base=given)
        if metric == "inlet_temp_c":
            return _Thermal(rise=8.0, load_gain=6.0, noise=0.4, base=given)
        if metric == "hopper_temp_c":
            return _Thermal(rise=12.0, load_gain=6.0, noise=0.3, base=given)
        if metric == "voltage_v":
            return _Around(
                level(217.0, 223.0), noise=1.2, drift=2.0, drift_period_s=86400, phase=phase
            )
        if metric == "current_a":
            return _Load(rated_a, noise_frac=0.03)
        if metric == "active_power_kw":
            return _Load(rated_kw, noise_frac=0.03)
        if metric == "energy_kwh":
            return _Counter(level(1.0e4, 5.0e5), rated_kw)
        if metric == "arc_faults_per_s":
            return _Rare(rate=0.02, cap=3)  # <= 9 per s must never alarm (std)
        if metric == "spark_count":
            return _Const(0.0)
        if metric == "smoke_obscuration_pct":
            return _Around(level(0.2, 0.4), noise=0.05, floor=0.0)
        if metric == "battery_voltage_v":
            return _Decay(level(3.45, 3.6), per_day=0.0003, noise=0.003)
        if metric == "battery_pct":
            return _Decay(
                given if given is not None else float(round(draw(55, 100))), per_day=0.02, noise=0.0
            )
        if metric == "rsrp_dbm":
            return _Around(level(-100.0, -75.0), noise=1.5, drift=2.0, phase=phase)
        if metric == "sinr_db":
            return _Around(level(5.0, 20.0), noise=1.0, phase=phase)
        if metric == "pressure_diff_pa":
            return _Sawtooth(
                level(1000.0, 1200.0),
                amplitude_frac=0.04,
                period_s=float(draw(90.0, 150.0)),
                noise_frac=0.01,
                phase=float(draw(0.0, 1.0)),
            )
        if metric == "dust_concentration_gm3":
            return _Around(level(1.0, 2.0), noise=0.1, load_gain=1.5, floor=0.0)
        if metric == "gas_lel_pct":
            return _Around(level(0.2, 1.0), noise=0.15, drift=0.3, phase=phase, floor=0.0)
        return self._generic(metric, spec, given)

    def _generic(self, metric: str, spec: MetricSpec, given: float | None) -> _Model:
        """A metric this module has no model for: a quiet level low in its valid range,
        and below half of the lowest threshold watching it, so it raises nothing."""
        low = 0.0 if spec.min <= 0.0 <= spec.max else spec.min
        centre = low + 0.1 * (spec.max - low)
        for rule in self.profile.rules:
            if rule.metric == metric and rule.type == "threshold" and rule.direction == "above":
                first = rule.prewarning.value if rule.prewarning else rule.alarm.value
                centre = min(centre, low + 0.5 * (first - low))
        if given is not None:
            centre = given
        return _Around(centre, noise=0.002 * (spec.max - spec.min))

    def centre(self, metric: str) -> float:
        """The nominal normal value, from which incidents ramp."""
        return self._models[metric].centre

    def typical(self) -> dict[str, Value]:
        """Nominal values of every metric, for hand-built messages that must not alter state."""
        return {m: self.finish(m, self._models[m].centre) for m in self.metrics}

    def finish(self, metric: str, value: float) -> Value:
        """Clip into the valid range and round as the device would (bools become bools)."""
        spec = self.profile.metrics[metric]
        if spec.kind == "bool":
            return bool(value >= 0.5)
        clipped = min(spec.max, max(spec.min, value))
        places = decimals(metric)
        if places == 0:
            return round(clipped)
        return round(clipped, places)

    def sample(self, ts_ms: int) -> dict[str, Value]:
        """The normal reading of every metric at ``ts_ms`` (call with increasing times)."""
        if self._first_ms is None:
            self._first_ms = ts_ms
        dt_s = 0.0 if self._last_ms is None else max(0.0, (ts_ms - self._last_ms) / 1000)
        self._last_ms = ts_ms
        hour = local_hour(ts_ms) + self._ambient_phase
        ctx = _Ctx(
            ts_ms=ts_ms,
            load=load_factor(hour),
            ambient_c=24.0 + 4.0 * math.sin(2 * math.pi * (hour - 9.0) / 24) + self._ambient_offset,
            dt_s=dt_s,
            days=(ts_ms - self._first_ms) / 86_400_000,
            rng=self._rng,
        )
        return {m: self.finish(m, model.value(ctx)) for m, model in self._models.items()}

    def sample_many(
        self, ts_ms: npt.NDArray[np.int64], load_scale: Arr | None = None
    ) -> dict[str, Arr]:
        """Normal readings of every metric at each of ``ts_ms`` (increasing), as arrays.

        The same models as :meth:`sample`, drawn an array at a time: about a hundred times
        faster, for in-process evaluations over simulated weeks. The random draws differ from
        calling :meth:`sample` point by point (still reproducible from the seed). Values are
        clipped and rounded as :meth:`finish` does; bools are 0.0/1.0. ``load_scale``
        multiplies the working-day load per sample (a site under a shutdown order runs at a
        few per cent of it). Like :meth:`sample`, it continues from the previous call.
        """
        ts = np.asarray(ts_ms, dtype=np.int64)
        if ts.size == 0:
            return {m: np.zeros(0) for m in self.metrics}
        if self._first_ms is None:
            self._first_ms = int(ts[0])
        previous = self._last_ms if self._last_ms is not None else int(ts[0])
        dt_s = np.maximum(0.0, np.diff(ts, prepend=previous) / 1000)
        self._last_ms = int(ts[-1])
        hour = ((ts / 1000 + LOCAL_UTC_OFFSET_S) % 86400) / 3600 + self._ambient_phase
        load = np.round(np.interp(hour % 24, _LOAD_HOURS, _LOAD_LEVEL), 6)
        if load_scale is not None:
            load = load * load_scale
        ctx = _ManyCtx(
            ts_ms=ts,
            load=load,
            ambient_c=24.0 + 4.0 * np.sin(2 * np.pi * (hour - 9.0) / 24) + self._ambient_offset,
            dt_s=dt_s,
            days=(ts - self._first_ms) / 86_400_000,
            rng=self._rng,
        )
        return {m: self.finish_many(m, model.values(ctx)) for m, model in self._models.items()}

    def finish_many(self, metric: str, values: Arr) -> Arr:
        """:meth:`finish` over an array (bools become 0.0/1.0)."""
        spec = self.profile.metrics[metric]
        if spec.kind == "bool":
            return (values >= 0.5).astype(np.float64)
        clipped = np.clip(values, spec.min, spec.max).astype(np.float64)
        return np.asarray(np.round(clipped, decimals(metric)), dtype=np.float64)
