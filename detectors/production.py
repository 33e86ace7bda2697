"""Production during an ordered shutdown (安全生产电力监测): a power meter against its baseline.

An enterprise ordered to stop (停产整顿) that keeps producing shows it in its
electricity: the meter keeps drawing a load far above what the idle plant draws
(lights, guards' room, a compressor kept warm). The usual test is the ratio of a
day's energy to a baseline day's energy, and the night-time load on a day it
should be idle (practice; there is no national number, so both ratios are
parameters, 3x by default, with an absolute margin so a tiny baseline times 3 is
not an alarm).

Two rules per meter, both ``hazard="illegal_production"``, orange:

* ``illegal_production_energy``: during a *shutdown* period, the energy of the
  local day used while the order was in force exceeds ``energy_ratio`` x the
  baseline day (and the baseline by ``min_excess_kwh``). Raised as soon as the
  running total gets there (it only grows), cleared when the day ends, with the
  day's final figure in the message.
* ``illegal_production_night``: outside working hours, on a non-working day or in a
  shutdown / holiday period, the load exceeds ``load_ratio`` x the baseline load
  (and the baseline by ``min_excess_kw``) for ``load_samples`` readings in a row.
  Cleared when the load falls back under 80 % of that bound or legitimate working time
  begins (working hours of a working day outside any period).

Baselines are configured per enterprise (``Enterprise.baseline_day_kwh`` /
``baseline_load_kw``) or learned, from days without an alert only. The *shutdown
baseline* proper is what the plant draws on a non-production day (shutdown,
holiday, non-working weekday, covered for ``min_day_coverage_h``): the baseline load
is the median of the mean load of the last ``learn_days`` such days (from
``min_idle_days`` on). Until the meter has seen one, it is the median of the mean
off-hours load of the last ordinary days (at least ``min_learned``): higher where a
plant runs compressors at night, i.e. erring towards fewer alarms. The baseline day
is the median energy of the last non-production days (at least ``min_learned``),
else 24 h x the baseline load.

Day energy comes from the cumulative register (``energy_kwh``; a drop is a reset
or roll-over and is skipped); a meter that never sent one has its load integrated
instead (trapezoids over gaps up to ``max_gap_s``). An interval that spans local
midnight is split between the two days in proportion to time (register and load of
one instant should come in one batch, as one message carries them: the first reading
past midnight closes the day). Days are the
enterprise's local days (its ``timezone``, Asia/Shanghai by default).

Per meter the state is a handful of numbers and two rings of ``learn_days``
floats; every point is O(1) (plus a scan of the enterprise's few periods).
Restarts: :meth:`ProductionDetector.state`/``restore`` carry everything; the
gateway instead rebuilds it by replaying the last days from the store
(``gateway/detect.py``), then :meth:`resume` picks up alerts still open.

Examples
--------
A plant whose idle load is 10 kW at night, ordered to stop from 1 December,
runs 200 kW round the clock on 2 December:

>>> import textwrap
>>> from gateway.model import Reading
>>> from gateway.registry_model import Calendar, Enterprise, ShutdownPeriod
>>> acme = Enterprise("acme", "ACME Casting", baseline_load_kw=10.0)
>>> day = 86_400_000
>>> dec1 = 1796054400000  # 2026-12-01 00:00 Asia/Shanghai
>>> order = ShutdownPeriod(1, "acme", dec1, dec1 + 10 * day, "dust explosion risk", "town")
>>> detector = ProductionDetector(lambda device_id: Calendar.of(acme, [order]))
>>> kwh, found = 0.0, []
>>> for i in range(2 * 96):  # a reading every 15 minutes
...     ts = dec1 + i * 900_000
...     kw = 10.0 if ts < dec1 + day else 200.0
...     kwh += kw / 4
...     found += detector.on_readings(
...         [Reading("pm-1", "active_power_kw", ts, kw), Reading("pm-1", "energy_kwh", ts, kwh)]
...     )
>>> for s in found:
...     print(s.rule, s.severity.value, s.active, s.value)
illegal_production_night orange True 200.0
illegal_production_energy orange True 750.0
>>> print(textwrap.fill(found[1].message.split(" / ")[1], 92))
Production during an ordered shutdown: ACME Casting (acme) used 750 kWh on 2026-12-02 while
ordered to stop, 3.1x its baseline day of 240 kWh (reason: dust explosion risk; ordered by:
town)
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from alerts.model import Alert, AlertClass, AlertState, Severity, Signal
from detectors._state import (
    get_bool,
    get_each,
    get_float,
    get_float_list,
    get_int,
    get_opt_float,
    get_opt_int,
)
from gateway.model import Reading
from gateway.registry_model import Calendar, LocalDay, ShutdownPeriod

ENERGY_RULE = "illegal_production_energy"
NIGHT_RULE = "illegal_production_night"
RULES = (ENERGY_RULE, NIGHT_RULE)
HAZARD = "illegal_production"
POWER_METRIC = "active_power_kw"
ENERGY_METRIC = "energy_kwh"

#: A power meter's enterprise calendar; None for devices that are not watched this way.
CalendarOf = Callable[[str], Calendar | None]

_STATE_VERSION = 1
_HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class ProductionParams:
    """Thresholds of the two rules (practice: no national number exists; tune by backtest)."""

    #: Day energy during a shutdown / baseline day above which production is assumed.
    energy_ratio: float = 3.0
    #: ... and at least this far above the baseline day (kWh).
    min_excess_kwh: float = 20.0
    #: Off-hours load / baseline load above which production is assumed.
    load_ratio: float = 3.0
    #: ... and at least this far above the baseline load (kW).
    min_excess_kw: float = 5.0
    #: Readings in a row over the load bound before raising (2 = 15-30 min at 15 min).
    load_samples: int = 2
    #: How many learned days the baselines keep (median of these).
    learn_days: int = 7
    #: Ordinary nights needed before they make a baseline load (or a baseline day).
    min_learned: int = 3
    #: Non-production days (weekend, holiday, shutdown) that make the baseline load instead.
    min_idle_days: int = 1
    #: Off-hours load readings a day needs to count towards the baseline load.
    min_quiet_samples: int = 4
    #: Hours of a day the meter must cover for it to count towards the baseline day.
    min_day_coverage_h: float = 20.0
    #: Longest gap between load readings that is integrated (meters without a register).
    max_gap_s: float = 3600.0
    severity: Severity = Severity.ORANGE


@dataclass(slots=True)
class _Meter:
    day: int | None = None  # local date ordinal
    day_first_ms: int | None = None
    day_last_ms: int | None = None
    day_kwh: float = 0.0  # whole day
    shutdown_kwh: float = 0.0  # while a shutdown order was in force
    quiet_sum: float = 0.0  # load readings of the day when idle (off hours, or all day)
    quiet_n: int = 0
    quiet_day: bool = False  # a day without production: shutdown, holiday, non-working
    alerted: bool = False  # an alert was active at some point of the day
    has_register: bool = False
    last_energy: float | None = None
    last_energy_ms: int | None = None
    last_power: float | None = None
    last_power_ms: int | None = None
    energy_active: bool = False
    energy_baseline: float | None = None
    night_active: bool = False
    night_run: int = 0
    nights: list[float] = field(default_factory=list)  # ordinary days' off-hours load
    idle: list[float] = field(default_factory=list)  # non-production days' load
    days: list[float] = field(default_factory=list)
    #: The local day's bounds (a cache, not state: recomputed after a restore).
    local: LocalDay | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "day": self.day,
            "day_first_ms": self.day_first_ms,
            "day_last_ms": self.day_last_ms,
            "day_kwh": self.day_kwh,
            "shutdown_kwh": self.shutdown_kwh,
            "quiet_sum": self.quiet_sum,
            "quiet_n": self.quiet_n,
            "quiet_day": self.quiet_day,
            "alerted": self.alerted,
            "has_register": self.has_register,
            "last_energy": self.last_energy,
            "last_energy_ms": self.last_energy_ms,
            "last_power": self.last_power,
            "last_power_ms": self.last_power_ms,
            "energy_active": self.energy_active,
            "energy_baseline": self.energy_baseline,
            "night_active": self.night_active,
            "night_run": self.night_run,
            "nights": list(self.nights),
            "idle": list(self.idle),
            "days": list(self.days),
        }

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> _Meter:
        return cls(
            day=get_opt_int(raw, "day"),
            day_first_ms=get_opt_int(raw, "day_first_ms"),
            day_last_ms=get_opt_int(raw, "day_last_ms"),
            day_kwh=get_float(raw, "day_kwh"),
            shutdown_kwh=get_float(raw, "shutdown_kwh"),
            quiet_sum=get_float(raw, "quiet_sum"),
            quiet_n=get_int(raw, "quiet_n"),
            quiet_day=get_bool(raw, "quiet_day"),
            alerted=get_bool(raw, "alerted"),
            has_register=get_bool(raw, "has_register"),
            last_energy=get_opt_float(raw, "last_energy"),
            last_energy_ms=get_opt_int(raw, "last_energy_ms"),
            last_power=get_opt_float(raw, "last_power"),
            last_power_ms=get_opt_int(raw, "last_power_ms"),
            energy_active=get_bool(raw, "energy_active"),
            energy_baseline=get_opt_float(raw, "energy_baseline"),
            night_active=get_bool(raw, "night_active"),
            night_run=get_int(raw, "night_run"),
            nights=get_float_list(raw, "nights"),
            idle=get_float_list(raw, "idle"),
            days=get_float_list(raw, "days"),
        )


class ProductionDetector:
    """Both rules for every power meter that has an enterprise calendar (see module doc).

    ``calendar_of`` is asked on every reading, so a shutdown ordered while the
    gateway runs applies from the next reading on.
    """

    __slots__ = ("_calendar_of", "_meters", "params")

    def __init__(self, calendar_of: CalendarOf, *, params: ProductionParams | None = None) -> None:
        self._calendar_of = calendar_of
        self.params = params or ProductionParams()
        self._meters: dict[str, _Meter] = {}

    # -- inputs ---------------------------------------------------------------------------

    def on_readings(self, readings: Sequence[Reading]) -> list[Signal]:
        """Feed a batch (in time order per meter); returns raise/clear signals."""
        signals: list[Signal] = []
        calendars: dict[str, Calendar | None] = {}
        # A meter's register reading goes before its load reading of the same instant, so
        # the interval that ends at local midnight is counted before that day is closed.
        ours = [r for r in readings if r.metric in (POWER_METRIC, ENERGY_METRIC)]
        ours.sort(key=lambda r: (r.device_id, r.ts_ms, r.metric != ENERGY_METRIC))
        for reading in ours:
            device_id = reading.device_id
            if device_id not in calendars:
                calendars[device_id] = self._calendar_of(device_id)
            calendar = calendars[device_id]
            if calendar is not None:
                self._one(device_id, calendar, reading, signals)
        return signals

    def baselines(self, device_id: str) -> tuple[float | None, float | None]:
        """The (baseline day kWh, baseline load kW) the meter is judged against now."""
        calendar = self._calendar_of(device_id)
        meter = self._meters.get(device_id)
        if calendar is None or meter is None:
            return None, None
        return self._baseline_day(meter, calendar), self._baseline_load(meter, calendar)

    def resume(self, alerts: Iterable[Alert]) -> None:
        """Pick up alerts still open from before a restart, so they clear (see bank.resume).

        An energy alert is taken to be about the day it was raised on: it clears
        when that day ends, as it would have without the restart.
        """
        for alert in alerts:
            if alert.rule not in RULES or alert.state not in (
                AlertState.RAISED,
                AlertState.ACKNOWLEDGED,
            ):
                continue
            calendar = self._calendar_of(alert.device_id)
            if calendar is None:
                continue
            meter = self._meters.setdefault(alert.device_id, _Meter())
            meter.alerted = True
            if alert.rule == ENERGY_RULE:
                meter.energy_active = True
                if meter.day is None:
                    meter.day = calendar.local_date(alert.raised_at).toordinal()
                if meter.energy_baseline is None:
                    meter.energy_baseline = self._baseline_day(meter, calendar)
            else:
                meter.night_active = True

    def forget(self, device_id: str) -> None:
        self._meters.pop(device_id, None)

    # -- persistence ----------------------------------------------------------------------

    def state(self) -> dict[str, object]:
        return {
            "version": _STATE_VERSION,
            "meters": {device_id: m.to_json() for device_id, m in self._meters.items()},
        }

    def restore(self, state: dict[str, object]) -> None:
        """Replace all state with a :meth:`state` snapshot; ValueError (nothing changed) if
        it is not one."""
        if not isinstance(state, dict):
            raise ValueError("ProductionDetector state must be a mapping")
        if get_int(state, "version") != _STATE_VERSION:
            raise ValueError(f"unsupported production state version {state.get('version')}")
        self._meters = get_each(state, "meters", _Meter.from_json, "production state of")

    # -- internals ------------------------------------------------------------------------

    def _one(
        self, device_id: str, calendar: Calendar, reading: Reading, signals: list[Signal]
    ) -> None:
        meter = self._meters.get(device_id)
        if meter is None:
            meter = self._meters[device_id] = _Meter()
        ts = reading.ts_ms
        local = meter.local
        if local is None or not local.contains(ts):
            local = calendar.day_span(ts)
            if meter.day is not None and local.ordinal < meter.day:
                return  # a late reading of a day already judged
            if meter.day != local.ordinal:
                self._new_day(device_id, meter, calendar, reading, local, signals)
            meter.local = local
        shutdown = calendar.period_at(ts, "shutdown")
        if reading.metric == ENERGY_METRIC:
            self._energy(meter, calendar, ts, reading.value, shutdown is not None)
        else:
            self._power(device_id, meter, calendar, ts, reading.value, shutdown, signals)
        meter.day_first_ms = ts if meter.day_first_ms is None else meter.day_first_ms
        meter.day_last_ms = ts if meter.day_last_ms is None else max(meter.day_last_ms, ts)
        if shutdown is not None and not meter.energy_active:
            self._check_energy(device_id, meter, calendar, ts, shutdown, signals)

    def _new_day(
        self,
        device_id: str,
        meter: _Meter,
        calendar: Calendar,
        reading: Reading,
        day: LocalDay,
        signals: list[Signal],
    ) -> None:
        """Give the old day its share of the interval across midnight, close it (learn,
        clear), open the new one (whose share the reading adds when it is counted)."""
        ts = reading.ts_ms
        midnight = day.start_ms
        if meter.day is not None:
            interval = self._interval_kwh(meter, reading.metric, ts, reading.value)
            if interval is not None and interval[0] < midnight:
                start, kwh = interval
                share = kwh * (min(midnight, ts) - start) / (ts - start)
                meter.day_kwh += share
                ending = calendar.period_at(midnight - 1, "shutdown")
                if ending is not None:
                    meter.shutdown_kwh += share
                    if not meter.energy_active:
                        # The old day's last share may be what takes it over the line.
                        self._check_energy(
                            device_id, meter, calendar, midnight - 1, ending, signals
                        )
            self._close_day(device_id, meter, calendar, midnight, signals)
        meter.day = day.ordinal
        meter.day_first_ms = None
        meter.day_last_ms = None
        meter.day_kwh = 0.0
        meter.shutdown_kwh = 0.0
        meter.quiet_sum = 0.0
        meter.quiet_n = 0
        meter.alerted = meter.night_active
        meter.quiet_day = (
            day.weekday not in calendar.work_days or calendar.period_at(ts) is not None
        )

    def _interval_kwh(
        self, meter: _Meter, metric: str, ts: int, value: float
    ) -> tuple[int, float] | None:
        """(start, kWh) of the interval a reading ends, as it will be counted; None if it
        counts nothing. Reads the state, changes nothing."""
        if metric == ENERGY_METRIC:
            last, last_ms = meter.last_energy, meter.last_energy_ms
            if last is None or last_ms is None or ts <= last_ms or value < last:
                return None
            return last_ms, value - last
        last, last_ms = meter.last_power, meter.last_power_ms
        if (
            meter.has_register
            or last is None
            or last_ms is None
            or ts <= last_ms
            or ts - last_ms > self.params.max_gap_s * 1000
        ):
            return None
        return last_ms, max((last + value) / 2 * (ts - last_ms) / _HOUR_MS, 0.0)

    def _close_day(
        self, device_id: str, meter: _Meter, calendar: Calendar, end_ms: int, signals: list[Signal]
    ) -> None:
        p = self.params
        covered_h = (
            0.0
            if meter.day_first_ms is None or meter.day_last_ms is None
            else (meter.day_last_ms - meter.day_first_ms) / _HOUR_MS
        )
        learn = meter.quiet_n >= p.min_quiet_samples and not meter.alerted
        if learn and not meter.quiet_day:
            _push(meter.nights, meter.quiet_sum / meter.quiet_n, p.learn_days)
        if learn and meter.quiet_day and covered_h >= p.min_day_coverage_h:
            _push(meter.idle, meter.quiet_sum / meter.quiet_n, p.learn_days)
        if meter.quiet_day and not meter.alerted and covered_h >= p.min_day_coverage_h:
            _push(meter.days, meter.day_kwh, p.learn_days)
        if meter.energy_active:
            meter.energy_active = False
            signals.append(
                self._energy_signal(device_id, calendar, end_ms - 1, meter, None, active=False)
            )

    def _energy(
        self, meter: _Meter, calendar: Calendar, ts: int, value: float, in_shutdown: bool
    ) -> None:
        if meter.last_energy_ms is not None and ts <= meter.last_energy_ms:
            return  # repeated or out of order: the register tells nothing new
        # (a drop is a reset or roll-over: nothing to count, the new value is the base)
        interval = self._interval_kwh(meter, ENERGY_METRIC, ts, value)
        meter.has_register = True
        meter.last_energy, meter.last_energy_ms = value, ts
        if interval is not None:
            self._add(meter, calendar, interval[0], ts, interval[1], in_shutdown)

    def _power(
        self,
        device_id: str,
        meter: _Meter,
        calendar: Calendar,
        ts: int,
        kw: float,
        shutdown: ShutdownPeriod | None,
        signals: list[Signal],
    ) -> None:
        if meter.last_power_ms is not None and ts <= meter.last_power_ms:
            return
        interval = self._interval_kwh(meter, POWER_METRIC, ts, kw)
        meter.last_power, meter.last_power_ms = kw, ts
        if interval is not None:
            self._add(meter, calendar, interval[0], ts, interval[1], shutdown is not None)
        assert meter.local is not None
        working = calendar.is_working_in(meter.local, ts)
        if (meter.quiet_day or not working) and not meter.night_active:
            meter.quiet_sum += kw
            meter.quiet_n += 1
        period = shutdown or calendar.period_at(ts)
        idle = not working and (period is not None or meter.local.weekday not in calendar.work_days)
        # Working hours inside a shutdown are not idle (the energy rule judges them) but
        # not legitimate either: an alert raised the night before holds through them.
        legit = working and period is None
        self._check_night(device_id, meter, calendar, ts, kw, idle, legit, period, signals)

    def _add(
        self,
        meter: _Meter,
        calendar: Calendar,
        start_ms: int,
        end_ms: int,
        kwh: float,
        in_shutdown: bool,
    ) -> None:
        """Count an interval's energy towards the current day; the part before its local
        midnight was given to the day before (:meth:`_new_day`)."""
        assert meter.local is not None
        midnight = meter.local.start_ms
        if start_ms < midnight < end_ms:
            kwh *= (end_ms - midnight) / (end_ms - start_ms)
        elif end_ms <= midnight:
            return
        meter.day_kwh += kwh
        if in_shutdown:
            meter.shutdown_kwh += kwh

    def _baseline_load(self, meter: _Meter, calendar: Calendar) -> float | None:
        configured = calendar.enterprise.baseline_load_kw
        if configured is not None:
            return configured
        if len(meter.idle) >= self.params.min_idle_days:
            return statistics.median(meter.idle)
        if len(meter.nights) >= self.params.min_learned:
            return statistics.median(meter.nights)
        return None

    def _baseline_day(self, meter: _Meter, calendar: Calendar) -> float | None:
        configured = calendar.enterprise.baseline_day_kwh
        if configured is not None:
            return configured
        if len(meter.days) >= self.params.min_learned:
            return statistics.median(meter.days)
        load = self._baseline_load(meter, calendar)
        return None if load is None else 24 * load

    def _check_energy(
        self,
        device_id: str,
        meter: _Meter,
        calendar: Calendar,
        ts: int,
        shutdown: ShutdownPeriod,
        signals: list[Signal],
    ) -> None:
        p = self.params
        baseline = self._baseline_day(meter, calendar)
        if baseline is None:
            return
        kwh = meter.shutdown_kwh
        if kwh > p.energy_ratio * baseline and kwh - baseline > p.min_excess_kwh:
            meter.energy_active = True
            meter.energy_baseline = baseline
            meter.alerted = True
            signals.append(
                self._energy_signal(device_id, calendar, ts, meter, shutdown, active=True)
            )

    def _check_night(
        self,
        device_id: str,
        meter: _Meter,
        calendar: Calendar,
        ts: int,
        kw: float,
        idle: bool,
        legit: bool,
        period: ShutdownPeriod | None,
        signals: list[Signal],
    ) -> None:
        p = self.params
        baseline = self._baseline_load(meter, calendar)
        bound = (
            None if baseline is None else max(p.load_ratio * baseline, baseline + p.min_excess_kw)
        )
        if meter.night_active:
            if legit or bound is None or kw < 0.8 * bound:
                meter.night_active = False
                meter.night_run = 0
                signals.append(
                    self._night_signal(device_id, calendar, ts, kw, baseline, period, active=False)
                )
            return
        if not idle or bound is None or kw <= bound:
            meter.night_run = 0
            return
        meter.night_run += 1
        if meter.night_run >= p.load_samples:
            meter.night_active = True
            meter.alerted = True
            signals.append(
                self._night_signal(device_id, calendar, ts, kw, baseline, period, active=True)
            )

    def _energy_signal(
        self,
        device_id: str,
        calendar: Calendar,
        ts: int,
        meter: _Meter,
        shutdown: ShutdownPeriod | None,
        *,
        active: bool,
    ) -> Signal:
        """The energy rule's signal about the shutdown day ``meter`` is counting."""
        assert meter.day is not None
        day = date.fromordinal(meter.day)
        who_zh, who_en = _who(calendar)
        kwh = meter.shutdown_kwh
        baseline = meter.energy_baseline or 0.0
        ratio = kwh / baseline if baseline > 0 else float("inf")
        if active:
            order_zh = order_en = ""
            if shutdown is not None:
                reason, by = shutdown.reason or "-", shutdown.ordered_by or "-"
                order_zh = f"（停产原因：{reason}；责令单位：{by}）"
                order_en = f" (reason: {reason}; ordered by: {by})"
            message = (
                f"停产整顿期间疑似生产：{who_zh}{day.isoformat()} 停产期间用电 {kwh:.0f} kWh，"
                f"为基线日 {baseline:.0f} kWh 的 {ratio:.1f} 倍{order_zh} / "
                f"Production during an ordered shutdown: {who_en} used {kwh:.0f} kWh on "
                f"{day.isoformat()} while ordered to stop, {ratio:.1f}x its baseline day of "
                f"{baseline:.0f} kWh{order_en}"
            )
        else:
            message = (
                f"停产日结束：{who_zh}{day.isoformat()} 停产期间共用电 {kwh:.0f} kWh，"
                f"基线日 {baseline:.0f} kWh（{ratio:.1f} 倍） / "
                f"Shutdown day over: {who_en} used {kwh:.0f} kWh on {day.isoformat()} while "
                f"ordered to stop, baseline day {baseline:.0f} kWh ({ratio:.1f}x)"
            )
        return self._signal(device_id, ENERGY_RULE, ts, round(kwh, 3), message, active=active)

    def _night_signal(
        self,
        device_id: str,
        calendar: Calendar,
        ts: int,
        kw: float,
        baseline: float | None,
        period: ShutdownPeriod | None,
        *,
        active: bool,
    ) -> Signal:
        who_zh, who_en = _who(calendar)
        when = calendar.local(ts).strftime("%Y-%m-%d %H:%M")
        if period is not None and period.kind == "shutdown":
            why_zh, why_en = "停产整顿期间", "during an ordered shutdown"
        elif period is not None:
            why_zh, why_en = "节假日停产期间", "on a declared holiday"
        else:
            why_zh, why_en = "休息日", "on a non-working day"
        base = baseline or 0.0
        ratio = kw / base if base > 0 else float("inf")
        if active:
            message = (
                f"非生产时段疑似生产：{who_zh}负荷 {kw:.0f} kW，为基线 {base:.0f} kW 的 "
                f"{ratio:.1f} 倍（{when}，{why_zh}） / Load outside working hours: {who_en} "
                f"draws {kw:.0f} kW, {ratio:.1f}x its baseline of {base:.0f} kW ({when}, {why_en})"
            )
        else:
            message = (
                f"非生产时段负荷恢复：{who_zh}负荷 {kw:.0f} kW，基线 {base:.0f} kW（{when}） / "
                f"Load back to idle or working time: {who_en} draws {kw:.0f} kW, "
                f"baseline {base:.0f} kW ({when})"
            )
        return self._signal(device_id, NIGHT_RULE, ts, kw, message, active=active)

    def _signal(
        self, device_id: str, rule: str, ts: int, value: float, message: str, *, active: bool
    ) -> Signal:
        """Both rules raise the same kind of alert: a hazard of the configured colour."""
        return Signal(
            device_id=device_id,
            rule=rule,
            active=active,
            ts_ms=ts,
            value=value,
            severity=self.params.severity,
            alert_class=AlertClass.HAZARD,
            hazard=HAZARD,
            message=message,
        )


def _who(calendar: Calendar) -> tuple[str, str]:
    """The enterprise as the messages name it, zh and en: its name and, after it, its id."""
    e = calendar.enterprise
    return f"{e.name or e.id}（{e.id}）", f"{e.name or e.id} ({e.id})"


def _push(ring: list[float], value: float, size: int) -> None:
    ring.append(value)
    if len(ring) > size:
        del ring[: len(ring) - size]
