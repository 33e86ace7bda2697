"""Production during an ordered shutdown: constructed meter series with known answers.

A plant draws 200 kW in working hours (08:00-18:00, Monday to Friday) and 10 kW
otherwise, so its idle day is 240 kWh and its idle load 10 kW; each test changes
one thing and checks what a duty officer would see.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt
import pytest

from alerts.model import AlertClass, Severity, Signal
from detectors.production import (
    ENERGY_RULE,
    HAZARD,
    NIGHT_RULE,
    ProductionDetector,
)
from gateway.config import Settings
from gateway.model import Reading, now_ms
from gateway.registry_model import Calendar, Device, Enterprise, ShutdownPeriod, Site
from gateway.service import Gateway
from tests.conftest import LiveGateway, eventually

Q = 900_000  # a reading every 15 minutes (power_meter.yaml)
DAY = 86_400_000
SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(text: str, tz: str = "Asia/Shanghai") -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def plant(ts: int) -> float:
    """The ordinary load at ``ts`` (the meter's energy register counts it for the 15 min
    before)."""
    t = datetime.fromtimestamp(ts / 1000, tz=SHANGHAI)
    return 200.0 if t.isoweekday() <= 5 and 8 <= t.hour < 18 else 10.0


def idle(ts: int) -> float:
    return 10.0


Load = Callable[[int], float]


class Meter:
    """One power meter sending load and its cumulative register every 15 minutes."""

    def __init__(
        self, detector: ProductionDetector, device_id: str = "pm-1", *, register: bool = True
    ) -> None:
        self.detector = detector
        self.device_id = device_id
        self.register = register
        self.kwh = 5_000.0
        self.signals: list[Signal] = []

    def run(self, start_ms: int, end_ms: int, load: Load) -> list[Signal]:
        found: list[Signal] = []
        for ts in range(start_ms + Q, end_ms + 1, Q):
            kw = load(ts)
            self.kwh += kw * Q / 3_600_000
            readings = [Reading(self.device_id, "active_power_kw", ts, kw)]
            if self.register:
                readings.append(Reading(self.device_id, "energy_kwh", ts, round(self.kwh, 3)))
            found.extend(self.detector.on_readings(readings))
        self.signals.extend(found)
        return found


def detector_for(enterprise: Enterprise, *periods: ShutdownPeriod) -> ProductionDetector:
    calendar = Calendar.of(enterprise, list(periods))
    return ProductionDetector(lambda device_id: calendar if device_id.startswith("pm") else None)


ACME = Enterprise("acme", "ACME Casting", hours="08:00-18:00", days="1-5")


def order(
    start: str, end: str, kind: str = "shutdown", tz: str = "Asia/Shanghai"
) -> ShutdownPeriod:
    return ShutdownPeriod(
        1, "acme", at(start, tz), at(end, tz), "dust explosion risk", "town", kind
    )


def test_a_shutdown_day_with_five_times_the_baseline_energy_alerts_naming_the_enterprise() -> None:
    shutdown = order("2026-11-30T00:00", "2026-12-07T00:00")
    meter = Meter(detector_for(ACME, shutdown))
    # Two ordinary weeks: it learns its idle nights and weekend days, and raises nothing.
    assert meter.run(at("2026-11-16T00:00"), at("2026-11-30T00:00"), plant) == []
    day_kwh, load_kw = meter.detector.baselines("pm-1")
    assert (day_kwh, load_kw) == (240.0, 10.0)  # weekend days and nights, learned
    # Monday, the first shutdown day: idle, as ordered.
    assert meter.run(at("2026-11-30T00:00"), at("2026-12-01T00:00"), idle) == []

    # Tuesday: 106 kW through working hours, 10 kW otherwise = 1200 kWh = 5x the baseline.
    def production(ts: int) -> float:
        t = datetime.fromtimestamp(ts / 1000, tz=SHANGHAI)
        return 106.0 if 8 <= t.hour < 18 else 10.0

    found = meter.run(at("2026-12-01T00:00"), at("2026-12-02T00:00"), production)
    found += meter.run(at("2026-12-02T00:00"), at("2026-12-02T01:00"), idle)
    assert [(s.rule, s.active) for s in found] == [(ENERGY_RULE, True), (ENERGY_RULE, False)]
    raised, cleared = found
    assert raised.severity is Severity.ORANGE and raised.alert_class is AlertClass.HAZARD
    assert raised.hazard == HAZARD and raised.device_id == "pm-1"
    # raised on Tuesday, as soon as the day passed 3x (720 kWh) of its 240 kWh baseline
    assert at("2026-12-01T08:00") < raised.ts_ms < at("2026-12-01T18:00")
    assert 720 < (raised.value or 0) < 780
    for text in ("ACME Casting", "acme", "2026-12-01", "240 kWh", "dust explosion risk", "town"):
        assert text in raised.message
    assert "停产整顿" in raised.message and "ordered shutdown" in raised.message
    # ... and closed at local midnight with the day's full figure: 1200 kWh, 5.0x.
    assert cleared.ts_ms == at("2026-12-02T00:00") - 1
    assert cleared.value == pytest.approx(1200.0)
    assert "1200 kWh" in cleared.message and "5.0x" in cleared.message


def test_an_ordinary_working_day_raises_nothing_and_the_same_day_under_an_order_does() -> None:
    free = Meter(detector_for(ACME))
    ordered = Meter(detector_for(ACME, order("2026-11-30T00:00", "2026-12-07T00:00")))
    for meter in (free, ordered):
        meter.run(at("2026-11-16T00:00"), at("2026-11-30T00:00"), plant)
        meter.run(at("2026-11-30T00:00"), at("2026-12-01T00:00"), plant)  # Monday at work
    assert free.signals == []  # 200 kW x 10 h = 2140 kWh on a working day is fine
    assert [s.rule for s in ordered.signals] == [ENERGY_RULE, ENERGY_RULE]


def test_night_load_on_a_holiday_or_a_weekend_alerts_on_a_working_night_not() -> None:
    holiday = order("2026-12-02T00:00", "2026-12-03T00:00", kind="holiday")  # a Wednesday
    meter = Meter(detector_for(ACME, holiday))
    meter.run(at("2026-11-16T00:00"), at("2026-12-02T00:00"), plant)
    assert meter.signals == []

    def evening_run(day: str) -> Load:
        start, end = at(f"{day}T20:00"), at(f"{day}T23:00")
        return lambda ts: 80.0 if start < ts <= end else plant(ts)

    # The holiday: 80 kW from 20:00 to 23:00, 8x the 10 kW idle load.
    found = meter.run(at("2026-12-02T00:00"), at("2026-12-03T00:00"), evening_run("2026-12-02"))
    assert [(s.rule, s.active) for s in found] == [(NIGHT_RULE, True), (NIGHT_RULE, False)]
    raised, cleared = found
    assert raised.ts_ms == at("2026-12-02T20:30")  # the second reading over the bound
    assert raised.value == 80.0 and raised.severity is Severity.ORANGE
    for text in ("ACME Casting", "80 kW", "baseline of 10 kW", "8.0x", "holiday", "节假日"):
        assert text in raised.message
    assert cleared.ts_ms == at("2026-12-02T23:15")
    # The same evening on an ordinary Thursday (overtime) is not judged at all.
    assert (
        meter.run(at("2026-12-03T00:00"), at("2026-12-04T00:00"), evening_run("2026-12-03")) == []
    )
    # Saturday is not a working day: its evening load is.
    meter.run(at("2026-12-04T00:00"), at("2026-12-05T00:00"), plant)
    found = meter.run(at("2026-12-05T00:00"), at("2026-12-06T00:00"), evening_run("2026-12-05"))
    assert [(s.rule, s.active) for s in found] == [(NIGHT_RULE, True), (NIGHT_RULE, False)]
    assert "non-working day" in found[0].message and "休息日" in found[0].message


def test_a_single_spike_at_night_is_not_production() -> None:
    meter = Meter(detector_for(ACME))
    meter.run(at("2026-11-16T00:00"), at("2026-11-28T00:00"), plant)
    spike = at("2026-11-28T02:00")  # Saturday night: one 15-minute reading at 300 kW
    assert (
        meter.run(
            at("2026-11-28T00:00"),
            at("2026-11-29T00:00"),
            lambda ts: 300.0 if ts == spike else 10.0,
        )
        == []
    )


@pytest.mark.parametrize(
    ("zone", "alerts"),
    [("Asia/Shanghai", True), ("UTC", False)],
)
def test_the_day_boundary_is_local_midnight_of_the_enterprises_zone(
    zone: str, alerts: bool
) -> None:
    """A 4-hour run straight after local midnight belongs to the shutdown day; the same
    instants are the evening before for an enterprise that keeps its days in UTC."""
    enterprise = Enterprise("acme", "ACME Casting", timezone=zone, baseline_day_kwh=100.0)
    shutdown = order("2026-12-02T00:00", "2026-12-09T00:00", tz=zone)
    meter = Meter(detector_for(enterprise, shutdown))
    start, end = at("2026-12-02T00:00"), at("2026-12-02T04:00")  # Shanghai time
    found = meter.run(
        at("2026-12-01T00:00"),
        at("2026-12-03T12:00"),
        lambda ts: 100.0 if start < ts <= end else 1.0,
    )
    energy = [s for s in found if s.rule == ENERGY_RULE and s.active]
    assert bool(energy) is alerts
    if alerts:
        assert "2026-12-02" in energy[0].message


def test_a_run_ending_at_midnight_counts_for_the_day_before() -> None:
    enterprise = Enterprise("acme", "ACME Casting", baseline_day_kwh=100.0)
    meter = Meter(detector_for(enterprise, order("2026-12-02T00:00", "2026-12-09T00:00")))
    start, end = at("2026-12-01T20:00"), at("2026-12-02T00:00")  # 400 kWh, before the order
    found = meter.run(
        at("2026-12-01T00:00"),
        at("2026-12-03T00:00"),
        lambda ts: 100.0 if start < ts <= end else 1.0,
    )
    assert [s for s in found if s.rule == ENERGY_RULE] == []
    # One more interval past midnight tips the shutdown day's share over 3 x 100 kWh.
    meter = Meter(detector_for(enterprise, order("2026-12-02T00:00", "2026-12-09T00:00")))
    late = at("2026-12-02T04:00")
    found = meter.run(
        at("2026-12-01T00:00"),
        at("2026-12-03T00:00"),
        lambda ts: 100.0 if at("2026-12-02T00:00") < ts <= late else 1.0,
    )
    assert [s.active for s in found if s.rule == ENERGY_RULE] == [True, False]


def test_a_shutdown_day_the_midnight_interval_takes_over_the_line_still_alerts() -> None:
    """The register read at 23:30 and again at 00:10: the 40 minutes' 80 kWh are split at
    midnight, and the old day's 60 kWh are what take it past 3 x 10 kWh (the new day's 20
    stay under). The day is judged
    when it closes, not lost because no later reading of it will come."""
    enterprise = Enterprise("acme", "ACME Casting", baseline_day_kwh=10.0)
    detector = detector_for(enterprise, order("2026-12-01T00:00", "2026-12-09T00:00"))
    before, after = at("2026-12-01T23:30"), at("2026-12-02T00:10")
    assert detector.on_readings([Reading("pm-1", "energy_kwh", before, 1_000.0)]) == []
    found = detector.on_readings([Reading("pm-1", "energy_kwh", after, 1_080.0)])
    assert [(s.rule, s.active) for s in found] == [(ENERGY_RULE, True), (ENERGY_RULE, False)]
    assert found[0].ts_ms == at("2026-12-02T00:00") - 1 and "2026-12-01" in found[0].message
    assert found[0].value == pytest.approx(60.0)


def test_a_meter_without_register_is_integrated_and_a_register_reset_is_not_negative() -> None:
    enterprise = Enterprise("acme", "ACME Casting", baseline_day_kwh=240.0)
    shutdown = order("2026-12-01T00:00", "2026-12-09T00:00")
    power_only = Meter(detector_for(enterprise, shutdown), register=False)
    found = power_only.run(at("2026-12-01T00:00"), at("2026-12-02T00:00"), lambda ts: 50.0)
    assert [s.active for s in found] == [True, False]
    assert found[0].value == pytest.approx(720.0, abs=12.5)  # raised passing 3 x 240 kWh
    # 50 kW integrated from the first reading (00:15) to midnight: 23.75 h, 1187.5 kWh
    assert found[1].value == pytest.approx(1187.5)

    meter = Meter(detector_for(enterprise, shutdown))
    meter.run(at("2026-12-01T00:00"), at("2026-12-01T06:00"), idle)
    meter.kwh = 0.0  # the register is reset (meter replaced): a drop of 5000 kWh
    assert meter.run(at("2026-12-01T06:00"), at("2026-12-01T23:50"), idle) == []
    # Readings 00:15..23:45 are 94 intervals of 2.5 kWh; the one with the drop counts
    # nothing (not -5000 kWh), every other one counts.
    meters = meter.detector.state()["meters"]
    assert isinstance(meters, dict)
    assert meters["pm-1"]["day_kwh"] == pytest.approx(93 * 2.5)


def test_state_survives_a_json_round_trip_mid_series() -> None:
    shutdown = order("2026-11-30T00:00", "2026-12-07T00:00")
    whole = Meter(detector_for(ACME, shutdown))
    whole.run(at("2026-11-16T00:00"), at("2026-12-01T00:00"), plant)
    expected = whole.run(at("2026-12-01T00:00"), at("2026-12-03T00:00"), lambda ts: 60.0)
    assert expected  # production all day and night: both rules fire

    first = Meter(detector_for(ACME, shutdown))
    first.run(at("2026-11-16T00:00"), at("2026-12-01T00:00"), plant)
    restarted = Meter(detector_for(ACME, shutdown))
    restarted.kwh = first.kwh
    restarted.detector.restore(json.loads(json.dumps(first.detector.state())))
    assert (
        restarted.run(at("2026-12-01T00:00"), at("2026-12-03T00:00"), lambda ts: 60.0) == expected
    )


def test_a_corrupt_state_is_refused_and_changes_nothing() -> None:
    meter = Meter(detector_for(ACME))
    meter.run(at("2026-11-16T00:00"), at("2026-11-20T00:00"), plant)
    before = meter.detector.state()
    broken = json.loads(json.dumps(before))
    broken["meters"]["pm-1"]["nights"] = ["ten"]
    with pytest.raises(ValueError, match=r"pm-1.*nights"):
        meter.detector.restore(broken)
    assert meter.detector.state() == before


def test_other_devices_and_metrics_are_ignored() -> None:
    detector = detector_for(ACME, order("2026-11-30T00:00", "2026-12-07T00:00"))
    readings = [
        Reading("efm-1", "active_power_kw", at("2026-12-01T03:00") + i * Q, 900.0) for i in range(8)
    ]
    readings += [
        Reading("pm-1", "voltage_v", at("2026-12-01T03:00") + i * Q, 900.0) for i in range(8)
    ]
    assert detector.on_readings(readings) == []
    assert detector.state()["meters"] == {}


async def test_the_gateway_rebuilds_baselines_from_the_store_after_a_restart(
    settings: Settings,
) -> None:
    now = now_ms()
    start = now - 8 * DAY
    start -= start % Q
    meter_readings: list[Reading] = []
    kwh = 0.0
    for ts in range(start, now, Q):
        kw = plant(ts)
        kwh += kw / 4
        meter_readings += [
            Reading("pm-1", "active_power_kw", ts, kw),
            Reading("pm-1", "energy_kwh", ts, kwh),
        ]
    async with Gateway(settings) as gateway:
        await gateway.registry.add_site(
            Site("s1", "ACME works", "east", "dust_factory", enterprise="acme"), "test"
        )
        await gateway.registry.set_enterprise(ACME, "test")
        await gateway.registry.add_device(Device("pm-1", "power_meter", "s1"), "test")
        await gateway.store.write(meter_readings, [])
        assert gateway.production.baselines("pm-1") == (None, None)  # nothing seen live
    async with Gateway(settings) as gateway:
        day_kwh, load_kw = gateway.production.baselines("pm-1")
    assert load_kw == pytest.approx(10.0)
    assert day_kwh == pytest.approx(240.0)


def test_an_energy_alert_open_before_a_restart_clears_when_its_day_ends() -> None:
    """No rebuild (an empty store): the open alert is resumed, not raised a second time,
    and cleared at local midnight as it would have been."""
    from alerts.model import Alert, AlertState

    enterprise = Enterprise("acme", "ACME Casting", baseline_day_kwh=100.0)
    meter = Meter(detector_for(enterprise, order("2026-12-01T00:00", "2026-12-09T00:00")))
    raised_at = at("2026-12-01T10:00")
    open_alert = Alert(
        7,
        "pm-1",
        "s1",
        ENERGY_RULE,
        Severity.ORANGE,
        AlertClass.HAZARD,
        HAZARD,
        AlertState.RAISED,
        raised_at,
        raised_at,
        400.0,
    )
    meter.detector.resume([open_alert])
    found = meter.run(at("2026-12-01T12:00"), at("2026-12-02T00:30"), lambda ts: 50.0)
    assert [(s.rule, s.active, s.ts_ms) for s in found] == [
        (ENERGY_RULE, False, at("2026-12-02T00:00") - 1)
    ]
    assert "100 kWh" in found[0].message  # the baseline it was judged against


async def test_live_meter_during_a_shutdown_pages_naming_the_enterprise(
    live: LiveGateway,
) -> None:
    """Mosquitto -> gateway -> alert engine -> API: a meter still drawing 1 MW while its
    enterprise is ordered to stop."""
    registry = live.gateway.registry
    await registry.add_site(
        Site("s1", "ACME works", "east", "dust_factory", enterprise="acme"), "test"
    )
    await registry.set_enterprise(Enterprise("acme", "ACME Casting", baseline_day_kwh=10.0), "test")
    now = now_ms()
    await registry.add_shutdown(
        ShutdownPeriod(0, "acme", now - DAY, now + DAY, "整改", "镇应急办"), "test"
    )
    await registry.add_device(Device("pm-1", "power_meter", "s1"), "test")
    assert live.settings.broker_url is not None
    host, port = live.settings.broker_url.removeprefix("mqtt://").rsplit(":", 1)
    async with aiomqtt.Client(host, int(port), identifier="h4-meter") as client:
        # Both readings on one local day of the order: from a minute ago, or, straight
        # after Shanghai midnight, from just before it (a split 50 kWh alerts on neither day).
        midnight = Calendar.of(ACME, []).day_span(now).start_ms
        first = now - 60_000 if now - 60_000 >= midnight else midnight - 120_000
        for i, kwh in enumerate([20_000.0, 20_050.0]):  # 50 kWh in 30 s: about 6 MW
            body = {
                "ts": first + i * 30_000,
                "values": {"active_power_kw": 1000.0, "energy_kwh": kwh},
            }
            await client.publish("ewg/v1/pm-1/telemetry", json.dumps(body), qos=1)

    async def paged() -> list[dict[str, Any]] | None:
        alerts = (await live.client.get("/api/alerts")).json()
        return [a for a in alerts if a["rule"] == ENERGY_RULE] or None

    (alert,) = await eventually(paged)
    assert (alert["device_id"], alert["site_id"], alert["severity"]) == ("pm-1", "s1", "orange")
    assert alert["hazard"] == "illegal_production" and alert["alert_class"] == "hazard"
    assert "ACME Casting" in alert["message"] and "镇应急办" in alert["message"]


def test_the_baseline_is_the_idle_plant_not_its_busy_ordinary_nights() -> None:
    """Compressors run at 40 kW on working nights, the plant idles at 10 kW on Sundays: a
    shutdown night at 60 kW is 6x the idle plant (alert), though only 1.5x a working night."""

    def compressors(ts: int) -> float:
        t = datetime.fromtimestamp(ts / 1000, tz=SHANGHAI)
        if t.isoweekday() > 5:
            return 10.0
        return 200.0 if 8 <= t.hour < 18 else 40.0

    shutdown = order("2026-11-30T00:00", "2026-12-07T00:00")
    meter = Meter(detector_for(ACME, shutdown))
    assert meter.run(at("2026-11-23T00:00"), at("2026-11-28T00:00"), compressors) == []
    assert meter.detector.baselines("pm-1")[1] == 40.0  # only working nights seen so far
    meter.run(at("2026-11-28T00:00"), at("2026-11-30T00:00"), compressors)  # the weekend
    assert meter.detector.baselines("pm-1")[1] == 10.0
    start, end = at("2026-11-30T20:00"), at("2026-12-01T02:00")
    found = meter.run(
        at("2026-11-30T00:00"),
        at("2026-12-01T06:00"),
        lambda ts: 60.0 if start < ts <= end else 10.0,
    )
    assert [(s.rule, s.active) for s in found] == [(NIGHT_RULE, True), (NIGHT_RULE, False)]
    assert "6.0x its baseline of 10 kW" in found[0].message


async def test_a_store_that_is_down_costs_the_baselines_not_the_start_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """VictoriaMetrics unreachable (nothing listens on the port): the rebuild gives up after
    the first meter instead of waiting out a timeout per meter, and says so once."""
    from gateway.detect import rebuild_production
    from gateway.stores.influx import InfluxStore
    from tests.servers import free_port

    store = await InfluxStore(f"http://127.0.0.1:{free_port()}", timeout_s=2).open()
    detector = detector_for(ACME)
    try:
        with caplog.at_level("WARNING", logger="gateway.detect"):
            replayed = await rebuild_production(detector, store, ["pm-1", "pm-2", "pm-3"], now_ms())
    finally:
        await store.close()
    assert replayed == 0 and detector.baselines("pm-1") == (None, None)
    warnings = [r for r in caplog.records if r.name == "gateway.detect"]
    assert len(warnings) == 1 and "store unavailable" in warnings[0].getMessage()
