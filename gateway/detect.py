"""Stage 4, detect: accepted readings and events go through the detectors.

Signals are queued for the alert engine rather than awaited here, so a slow alert
write never holds up ingestion and a burst of readings never waits for alerting.

Three detectors see each delivery, in this order: the :class:`DetectorBank`
(per-device rules, events, offline), then the :class:`Correlator` (related
devices' readings and the bank's signals confirm or upgrade an alert), then the
:class:`ProductionDetector` (enterprise power meters during shutdowns and off
hours). All their signals go to the same alert engine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence

from alerts.model import Signal
from detectors.bank import DetectorBank
from detectors.correlate import Correlator
from detectors.production import ENERGY_METRIC, POWER_METRIC, CalendarOf, ProductionDetector
from gateway.metrics import Counters
from gateway.model import Reading
from gateway.pipeline import Delivery
from gateway.registry import Registry
from gateway.registry_model import Calendar
from gateway.stores.base import TimeSeriesStore

log = logging.getLogger(__name__)

#: Profiles whose readings the production detector judges (``device_profiles/``).
METER_PROFILES = frozenset({"power_meter"})
#: How far back the production detector's baselines are rebuilt at start-up (a week of
#: learned days, plus the day in progress).
REBUILD_DAYS = 8


class Detect:
    def __init__(
        self,
        bank: DetectorBank,
        signals: asyncio.Queue[list[Signal]],
        counters: Counters,
        *,
        correlator: Correlator | None = None,
        production: ProductionDetector | None = None,
    ) -> None:
        self.bank = bank
        self.signals = signals
        self.counters = counters
        self.correlator = correlator
        self.production = production

    async def __call__(self, d: Delivery) -> None:
        found: list[Signal] = []
        if d.readings:
            found.extend(self.bank.on_readings(d.readings, received_ms=d.message.received_ms))
        for event in d.events:
            found.extend(self.bank.on_event(event, received_ms=d.message.received_ms))
        if d.status is not None:
            found.extend(self.bank.on_status(d.status))
        if self.correlator is not None:
            derived = self.correlator.on_readings(d.readings) if d.readings else []
            if found:
                derived.extend(self.correlator.on_signals(found))
            found.extend(derived)
        if self.production is not None and d.readings:
            found.extend(self.production.on_readings(d.readings))
        if found:
            self.counters.signals += len(found)
            self.signals.put_nowait(found)


def meter_calendars(registry: Registry) -> CalendarOf:
    """The production detector's view of the registry: a power meter's enterprise calendar
    (None for any other device, or one whose site's enterprise is not registered)."""

    def calendar_of(device_id: str) -> Calendar | None:
        profile = registry.profile_of(device_id)
        if profile is None or profile.name not in METER_PROFILES:
            return None
        return registry.calendar_of(device_id)

    return calendar_of


async def rebuild_production(
    production: ProductionDetector,
    store: TimeSeriesStore,
    device_ids: Iterable[str],
    now_ms: int,
    days: int = REBUILD_DAYS,
) -> int:
    """Replay the meters' last ``days`` of stored readings so baselines and today's energy
    survive a restart (or a power cut, where no state file would have been written).

    The signals the replay produces are dropped: those alerts exist already, and
    :meth:`ProductionDetector.resume` is what ties the detector to the open ones.
    A store that fails costs only the baselines (logged once), never the start-up.
    Returns the number of readings replayed.
    """
    series = {d: [POWER_METRIC, ENERGY_METRIC] for d in device_ids}
    start = now_ms - days * 86_400_000
    return await _replay(store, series, start, now_ms, production.on_readings, "production")


async def rebuild_correlator(
    correlator: Correlator, store: TimeSeriesStore, registry: Registry, now_ms: int
) -> int:
    """Replay the last window of the readings the correlator judges, for every device with
    a room or a circuit, so a heat or leakage rise that straddles a restart still counts.

    Call before :meth:`Correlator.resume`: with no alert known yet the replay only fills
    the windows and confirms nothing (a confirmation comes with the next point).
    Returns the number of readings replayed.
    """
    series: dict[str, list[str]] = {}
    for device in registry.devices():
        profile = registry.profile_of(device.id)
        if profile is None or not (device.room or device.circuit):
            continue
        metrics = [m for m in profile.metrics if correlator.watches(m)]
        if metrics:
            series[device.id] = metrics
    start = now_ms - correlator.longest_window_ms
    return await _replay(store, series, start, now_ms, correlator.on_readings, "correlation")


async def _replay(
    store: TimeSeriesStore,
    series: dict[str, list[str]],
    start_ms: int,
    end_ms: int,
    feed: Callable[[Sequence[Reading]], object],
    what: str,
) -> int:
    """Feed each device's stored readings in time order; the signals are dropped.

    A store that is down would time out once per series: the first failure ends the
    replay (logged once), so it costs the rebuilt state, never the start-up.
    """
    replayed = 0
    for device_id, metrics in series.items():
        readings: list[Reading] = []
        try:
            for metric in metrics:
                readings.extend(
                    await store.query(device_id, metric, start_ms, end_ms, limit=100_000)
                )
        except Exception:
            log.warning(
                "store unavailable: %s state starts from scratch (from %s on)",
                what,
                device_id,
                exc_info=True,
            )
            break
        readings.sort(key=lambda r: r.ts_ms)  # stable: a register stays by its load
        feed(readings)
        replayed += len(readings)
    return replayed
