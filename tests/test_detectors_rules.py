"""Profile rules of every type through the bank, on series whose right answer is known.

Covers the rule layer of issue 3: outside bands, separate clear conditions, schedules
in an explicit zone (midnight-spanning, DST), per-site/per-device overrides, re-raising
after an operator closes an alert, state that survives a restart for every rule type,
and the vectorised path giving exactly the point-by-point result.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from alerts.bus import AlertBus
from alerts.engine import AlertEngine
from alerts.model import AlertClass, Disposition, Severity, Signal, Stage
from alerts.store import AlertStore
from detectors.bank import BATCH_MIN, DetectorBank
from detectors.identity import Identity
from detectors.rules import detector_from_rule, run_rule
from detectors.schedule import Schedule
from detectors.staged import Staged
from gateway.config import Settings
from gateway.model import DeviceEvent, Reading
from gateway.profiles import (
    DEFAULT_PROFILE_DIR,
    RULE_MODELS,
    MetricSpec,
    Profile,
    ThresholdRule,
    load_profile,
)
from gateway.registry_model import Site
from gateway.rule_overrides import RuleOverrideError, RuleOverrides, load_overrides
from gateway.service import Gateway
from gateway.sqlite import SqliteDatabase
from tests.clock import FakeClock

N, P, A = Stage.NORMAL, Stage.PREWARNING, Stage.ALARM
MIN = 60_000
HOUR = 3_600_000

HEAT = load_profile(DEFAULT_PROFILE_DIR / "heat_detector.yaml")
DUST = load_profile(DEFAULT_PROFILE_DIR / "dust_collector_monitor.yaml")
EFM = load_profile(DEFAULT_PROFILE_DIR / "electrical_fire_monitor.yaml")
METER = load_profile(DEFAULT_PROFILE_DIR / "power_meter.yaml")


def bank_of(profile: Profile, **kwargs: Any) -> DetectorBank:
    return DetectorBank(lambda device_id: profile, **kwargs)


def series(
    bank: DetectorBank,
    device: str,
    metric: str,
    values: Sequence[float],
    step_ms: int,
    start_ms: int = 0,
    rule: str | None = None,
) -> list[tuple[int, Signal]]:
    """Feed one reading at a time; (index, signal) for every signal (of ``rule`` if given)."""
    found = []
    for i, v in enumerate(values):
        for s in bank.on_readings([Reading(device, metric, start_ms + i * step_ms, v)]):
            if rule is None or s.rule == rule:
                found.append((i, s))
    return found


def rule_of(profile: Profile, name: str) -> ThresholdRule:
    return next(r for r in profile.rules if r.name == name)


def make_rule(**fields: Any) -> ThresholdRule:
    base = {
        "name": "r",
        "metric": "temperature_c",
        "hazard": "fire",
        "title_zh": "规则",
        "title_en": "Rule",
        "alarm": {"value": 70, "severity": "orange"},
    }
    data = base | fields
    return RULE_MODELS[str(data.get("type", "threshold"))].model_validate(data)


# -- rule types through the bank, with messages a duty officer can act on ----------------------


def test_heat_rate_of_rise_alarms_on_a_fast_rise_and_not_on_one_glitch() -> None:
    bank = bank_of(HEAT)
    # Every 10 s: 25 °C flat for 2 min, then +2.5 °C per report = 15 °C/min from index 13.
    temps = [25.0] * 13 + [25.0 + 2.5 * k for k in range(1, 12)]
    found = series(bank, "hd-1", "temperature_c", temps, 10_000, rule="temperature_rise")
    (i, raised), *rest = found
    # The robust slope (8 newest points) outvotes the first three rising readings by the flat
    # ones, as it would a glitch; the fourth shows 15 °C/min, the fifth confirms it (2 in a
    # row): 40 s after the first rising reading.
    assert i == 13 + 4 and raised.active and raised.severity is Severity.ORANGE
    assert raised.message.startswith("温升过快 / Temperature rising fast: +15.0 °C/min (≥ 10; now")
    assert rest == []
    # One +30 °C glitch in a flat series is not a rise.
    quiet = bank_of(HEAT)
    spiky = [25.0] * 10 + [55.0] + [25.0] * 10
    assert series(quiet, "hd-2", "temperature_c", spiky, 10_000, rule="temperature_rise") == []


def test_dust_collector_drift_learns_its_baseline_and_alarms_beyond_20_percent() -> None:
    bank = bank_of(DUST)
    rng = np.random.default_rng(3)
    learn = (800 + rng.normal(0, 10, 20)).tolist()  # baseline ~800 Pa (20 learn points)
    normal = (800 + rng.normal(0, 10, 30)).tolist()  # within noise: nothing
    clogged = [1000.0] * 5  # +25 %, one a minute: alarm once 60 s have passed
    found = series(
        bank, "dc-1", "pressure_diff_pa", learn + normal + clogged, MIN, rule="pressure_drift"
    )
    [(i, raised)] = found
    assert i == 50 + 1 and raised.active and raised.severity is Severity.ORANGE
    head, baseline = raised.message.split("baseline ")
    assert head == "压差偏离基线 / Pressure difference off baseline: +25 % (≥ +20 %; "
    assert baseline.endswith(" Pa, now 1000 Pa)")
    assert abs(float(baseline.split(" ")[0]) - 800) < 10  # the learnt median, ~800 Pa
    # Torn bags: the other side of the band.
    torn = bank_of(DUST)
    series(torn, "dc-2", "pressure_diff_pa", [800.0] * 20, MIN)
    [(j, low)] = series(
        torn, "dc-2", "pressure_diff_pa", [600.0] * 3, MIN, start_ms=20 * MIN, rule="pressure_drift"
    )
    assert j == 1 and "-25 % (≤ -20 %" in low.message


def test_a_bag_change_event_makes_the_drift_learn_a_new_baseline() -> None:
    bank = bank_of(DUST)
    series(bank, "dc-1", "pressure_diff_pa", [800.0] * 20, MIN)
    bank.on_event(DeviceEvent("dc-1", "bag_change", 20 * MIN))
    # New bags at 600 Pa: learnt as the new normal, not a -25 % drift.
    quiet = series(
        bank,
        "dc-1",
        "pressure_diff_pa",
        [600.0] * 40,
        MIN,
        start_ms=21 * MIN,
        rule="pressure_drift",
    )
    assert quiet == []
    [(_, raised)] = series(
        bank, "dc-1", "pressure_diff_pa", [760.0] * 3, MIN, start_ms=61 * MIN, rule="pressure_drift"
    )
    assert "+27 %" in raised.message and "baseline 600 Pa" in raised.message


def test_cable_temperature_rise_is_a_yellow_prewarning_held_for_two_minutes() -> None:
    bank = bank_of(EFM)
    temps = [30.0 + 3.0 * i for i in range(8)]  # +3 °C per one-minute report
    found = series(bank, "efm-1", "cable_temp_1_c", temps, MIN, rule="cable_temp_1_rise")
    # 4 points give a slope at index 3; it must hold 120 s: index 5.
    assert [(i, s.active, s.severity) for i, s in found] == [(5, True, Severity.YELLOW)]
    assert found[0][1].message.startswith(
        "线缆温度1 温升过快 / Cable temperature 1 rising fast: +3.0 °C/min (≥ 2; now 45 °C)"
    )
    # Reported every second, 0.1 °C steps of noise are no trend.
    noisy = bank_of(EFM)
    rng = np.random.default_rng(8)
    jitter = np.round(40 + rng.choice([-0.1, 0.0, 0.1], 1800), 1).tolist()
    assert series(noisy, "efm-1", "cable_temp_1_c", jitter, 1000, rule="cable_temp_1_rise") == []


def test_flatline_raises_a_blue_fault_after_two_hours_of_the_same_pressure() -> None:
    bank = bank_of(DUST)
    values = [812.0, 815.0] + [813.0] * 125  # one a minute; stuck from index 2
    [(i, raised)] = series(
        bank, "dc-1", "pressure_diff_pa", values, MIN, rule="pressure_diff_stuck"
    )
    assert i == 2 + 120  # 7200 s after the run's first point
    assert (raised.severity, raised.alert_class) == (Severity.BLUE, AlertClass.FAULT)
    assert raised.message == (
        "压差读数长时间不变 / Pressure difference reading stuck: 813 Pa unchanged for 2 h 0 min "
        "(≥ 2 h 0 min)"
    )
    [(_, cleared)] = series(
        bank,
        "dc-1",
        "pressure_diff_pa",
        [830.0],
        MIN,
        start_ms=200 * MIN,
        rule="pressure_diff_stuck",
    )
    assert not cleared.active


def test_sensor_fault_pinned_at_the_range_end_and_impossible_jumps() -> None:
    bank = bank_of(EFM)
    temps = [31.0, 31.2, 200.0, 200.0, 31.5, 31.6]  # a broken PT100 reads its range maximum
    found = series(bank, "efm-1", "cable_temp_2_c", temps, MIN, rule="cable_temp_2_fault")
    # Back from 200 to 31.5 °C within a minute is itself an impossible jump: clear after it.
    assert [(i, s.active) for i, s in found] == [(3, True), (5, False)]
    assert found[0][1].message == (
        "线缆温度2 传感器故障 / Cable temperature 2 sensor fault: 200 °C "
        "卡在量程极限 / pinned at the range limit (-40..200 °C)"
    )
    assert (found[0][1].alert_class, found[0][1].severity) == (AlertClass.FAULT, Severity.YELLOW)
    jumpy = bank_of(EFM)
    # 30 °C to 160 °C within 10 s (13 °C/s > 2 °C/s), twice in a row.
    found = series(
        jumpy,
        "efm-1",
        "cable_temp_2_c",
        [30.0, 160.0, 30.0, 31.0],
        10_000,
        rule="cable_temp_2_fault",
    )
    assert (
        found
        and found[0][0] == 2
        and "跳变不可能 / impossible jump (> 2 °C/s)" in (found[0][1].message)
    )


def test_anomaly_on_load_is_a_blue_hazard_prewarning_after_a_sustained_jump() -> None:
    bank = bank_of(METER)
    rng = np.random.default_rng(5)
    quarter = 15 * MIN
    days = 3 * 96
    t = np.arange(days)
    load = 200 + 80 * np.sin(2 * np.pi * t / 96) + rng.normal(0, 5, days)
    found = series(bank, "pm-1", "active_power_kw", load.tolist(), quarter, rule="load_anomaly")
    learnt_false = [i for i, s in found if s.active and i > 96]
    assert len(learnt_false) <= 1  # after a day of learning, a normal pattern raises ~nothing
    jump = series(
        bank,
        "pm-1",
        "active_power_kw",
        [2000.0] * 6,
        quarter,
        start_ms=days * quarter,
        rule="load_anomaly",
    )
    assert jump and jump[0][1].active
    raised = jump[0][1]
    assert (raised.severity, raised.alert_class, raised.hazard) == (
        Severity.BLUE,
        AlertClass.HAZARD,
        "anomaly",
    )
    assert raised.message.startswith(
        "用电负荷异常 / Unusual electrical load: 2000 kW, anomaly score"
    )


# -- outside a band, clear condition ----------------------------------------------------------


def run(staged: Staged, values: Sequence[float], step_ms: int = 1000) -> list[tuple[int, Stage]]:
    out = []
    for i, v in enumerate(values):
        change = staged.update(i * step_ms, v)
        if change is not None:
            out.append((i, change.new))
    return out


def test_outside_band_raises_on_either_side_in_two_stages() -> None:
    staged = Staged(
        Identity(), direction="outside", prewarning=(-15, 15), alarm=(-20, 20), hysteresis=2
    )
    values = [0, 16, 21, 19, 17, 12, 0, -16, -25, -17, -12]
    assert run(staged, values) == [(1, P), (2, A), (4, P), (5, N), (7, P), (8, A), (9, P), (10, N)]


def test_outside_band_from_a_profile_rule_and_its_validation() -> None:
    rule = make_rule(
        direction="outside",
        metric="pressure_diff_pa",
        alarm={"low": 400, "high": 1500, "severity": "orange"},
    )
    staged = detector_from_rule(rule)
    assert staged.band(A) == (400, 1500)
    assert [c.new for c in (staged.update(0, 350.0), staged.update(1, 900.0)) if c] == [A, N]
    with pytest.raises(ValueError, match="prewarning"):
        make_rule(
            direction="outside",
            alarm={"low": -20, "high": 20, "severity": "orange"},
            prewarning={"low": -25, "high": 15, "severity": "yellow"},
        )


def test_a_separate_clear_condition_holds_the_alarm_until_it_is_met() -> None:
    rule = make_rule(
        metric="hopper_temp_c", alarm={"value": 70, "severity": "orange"}, clear={"value": 60}
    )
    staged = detector_from_rule(rule)
    assert run(staged, [50, 71, 65, 61, 60, 59.9, 71]) == [(1, A), (5, N), (6, A)]
    assert staged.release(A) == 60
    with pytest.raises(ValueError, match="normal side"):
        make_rule(clear={"value": 80})


def test_clear_on_a_two_stage_rule_applies_to_the_lowest_stage() -> None:
    staged = Staged(Identity(), prewarning=60, alarm=75, hysteresis=3, clear=50)
    # 71 leaves the alarm (< 72) but stays pre-warning until below 50.
    assert run(staged, [76, 71, 55, 51, 49]) == [(0, A), (1, P), (4, N)]


# -- schedules: hours, days, zones -------------------------------------------------------------


def at(zone: str, year: int, month: int, day: int, hour: int, minute: int = 0) -> int:
    local = datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone))
    return int(local.timestamp() * 1000)


def test_midnight_spanning_hours_in_shanghai() -> None:
    night = Schedule(
        ["22:00-06:00"], ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "Asia/Shanghai"
    )
    sh = "Asia/Shanghai"
    assert not night.active(at(sh, 2026, 12, 1, 21, 59))
    assert night.active(at(sh, 2026, 12, 1, 22, 0))
    assert night.active(at(sh, 2026, 12, 2, 0, 0))
    assert night.active(at(sh, 2026, 12, 2, 5, 59))
    assert not night.active(at(sh, 2026, 12, 2, 6, 0))
    # The same instant is 15:00 in Berlin (CET): not night there.
    berlin = Schedule(["22:00-06:00"], ["mon"], "Europe/Berlin")
    assert not berlin.active(at(sh, 2026, 12, 1, 22, 0))


def test_a_midnight_range_belongs_to_the_day_it_starts() -> None:
    friday_night = Schedule(["22:00-06:00"], ["fri"], "Asia/Shanghai")
    sh = "Asia/Shanghai"
    assert friday_night.active(at(sh, 2026, 12, 4, 23, 0))  # Friday 23:00
    assert friday_night.active(at(sh, 2026, 12, 5, 5, 0))  # Saturday 05:00, Friday's night
    assert not friday_night.active(at(sh, 2026, 12, 4, 5, 0))  # Friday 05:00 is Thursday's
    assert not friday_night.active(at(sh, 2026, 12, 5, 23, 0))


@pytest.mark.parametrize(("year", "month", "day"), [(2026, 3, 29), (2026, 10, 25)])
def test_berlin_schedule_follows_daylight_saving_time(year: int, month: int, day: int) -> None:
    night = Schedule(
        ["22:00-06:00"], ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "Europe/Berlin"
    )
    be = "Europe/Berlin"
    # 06:00 local ends the night on the day of the change, whatever the offset is that day.
    assert night.active(at(be, year, month, day, 5, 59))
    assert not night.active(at(be, year, month, day, 6, 0))
    # Vectorised == scalar, every 5 minutes over the two days around the change.
    start = at(be, year, month, day - 1, 0, 0)
    ts = np.arange(start, start + 48 * HOUR, 5 * MIN, dtype=np.int64)
    assert night.active_many(ts).tolist() == [night.active(int(t)) for t in ts]
    # Shanghai has no DST: its 06:00 is the same UTC hour all year.
    sh = Schedule(["22:00-06:00"], ["sun"], "Asia/Shanghai")
    end_march, end_dec = at("Asia/Shanghai", 2026, 3, 30, 6, 0), at("Asia/Shanghai", 2026, 12, 7, 6)
    assert (end_march % (24 * HOUR), end_dec % (24 * HOUR)) == (22 * HOUR, 22 * HOUR)
    assert not sh.active(end_march) and sh.active(end_march - 1)


def test_outside_its_schedule_a_rule_judges_nothing_and_its_open_alarm_clears() -> None:
    night_load = make_rule(
        name="night_load",
        metric="active_power_kw",
        hazard="production",
        alarm={"value": 50, "severity": "yellow"},
        schedule={"hours": "22:00-06:00"},
    )
    profile = METER.model_copy(update={"rules": [night_load]})
    bank = bank_of(profile)  # gateway zone Asia/Shanghai
    sh = "Asia/Shanghai"

    def load(ts: int, kw: float) -> list[Signal]:
        return bank.on_readings([Reading("pm-1", "active_power_kw", ts, kw)])

    assert load(at(sh, 2026, 12, 1, 21, 45), 300.0) == []  # daytime work: not judged
    [raised] = load(at(sh, 2026, 12, 1, 22, 0), 300.0)
    assert raised.active and raised.severity is Severity.YELLOW
    assert load(at(sh, 2026, 12, 2, 5, 45), 300.0) == []
    [cleared] = load(at(sh, 2026, 12, 2, 6, 0), 300.0)
    assert not cleared.active and "outside the rule's schedule" in cleared.message
    # A rule's own zone wins over the gateway's: 22:00 in Berlin is 05:00 in Shanghai.
    berlin = night_load.model_copy(update={"timezone": "Europe/Berlin"})
    staged = detector_from_rule(berlin, timezone="Asia/Shanghai")
    be = "Europe/Berlin"
    assert staged.update(at(be, 2026, 12, 1, 21, 59), 300.0) is None
    change = staged.update(at(be, 2026, 12, 1, 22, 0), 300.0)
    assert change is not None and change.new is A


# -- overrides: device over site over profile -------------------------------------------------


def overrides_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_overrides_device_over_site_over_profile(tmp_path: Path) -> None:
    path = overrides_file(
        tmp_path,
        """
sites:
  sawmill:
    hopper_temp: {alarm: {value: 65}}
devices:
  dc-7:
    hopper_temp: {alarm: {value: 55}, prewarning: null}
  dc-8:
    hopper_temp: {enabled: false}
""",
    )
    overrides = load_overrides(path, {"dust_collector_monitor": DUST})
    sites = {"dc-1": "sawmill", "dc-7": "sawmill", "dc-8": "sawmill", "dc-9": "bakery"}
    bank = DetectorBank(lambda d: DUST, site_of=sites.get, overrides=overrides)

    def alarm_at(device: str) -> float | None:
        rule = next((r for r in bank.rules(device, DUST) if r.name == "hopper_temp"), None)
        return None if rule is None else rule.alarm.value

    assert alarm_at("dc-1") == 65  # the site's
    assert alarm_at("dc-7") == 55  # the device's own, over its site
    assert alarm_at("dc-8") is None  # switched off for this device
    assert alarm_at("dc-9") == 70  # another site: the profile's (std)
    # The site's value keeps the profile's severity; the readings follow the effective rules.
    [raised] = series(bank, "dc-1", "hopper_temp_c", [66.0] * 11, 1000, rule="hopper_temp")[:1]
    assert raised[1].severity is Severity.ORANGE and "(≥ 65)" in raised[1].message
    assert (
        series(bank, "dc-9", "hopper_temp_c", [66.0] * 11, 1000, rule="hopper_temp")[0][1].severity
        is Severity.YELLOW
    )  # 66 °C is only a pre-warning under the profile's 70


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            "sites: {s1: {hopper_temp: {alarm: {value: 50}}}}\n",
            "sites.s1.hopper_temp.(rule): Value error, prewarning 60",
        ),
        (
            "devices: {d1: {no_such_rule: {enabled: false}}}\n",
            "devices.d1.no_such_rule: no device profile has a rule 'no_such_rule'",
        ),
        (
            "devices: {d1: {hopper_temp: {metric: inlet_temp_c}}}\n",
            "devices.d1.hopper_temp: metric cannot be overridden",
        ),
        ("devices: {d1: {hopper_temp: {delay_s: -1}}}\n", "devices.d1.hopper_temp.delay_s"),
        ("regions: {}\n", "regions"),
    ],
    ids=["stage-order", "unknown-rule", "fixed-field", "bad-value", "unknown-key"],
)
def test_a_bad_override_names_the_file_and_the_field(tmp_path: Path, text: str, where: str) -> None:
    path = overrides_file(tmp_path, text)
    with pytest.raises(RuleOverrideError) as info:
        load_overrides(path, {"dust_collector_monitor": DUST})
    assert str(path) in str(info.value) and where in str(info.value)


async def test_the_gateway_warns_of_an_override_for_a_site_it_does_not_know(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An engineer types "sawmil" for "sawmill": the start-up log says so, by name."""
    path = overrides_file(
        tmp_path,
        "sites:\n  sawmill: {hopper_temp: {alarm: {value: 65}}}\n"
        "  sawmil: {hopper_temp: {alarm: {value: 65}}}\n",
    )
    async with Gateway(settings) as gateway:
        await gateway.registry.add_site(Site("sawmill", "Sawmill", "east", "factory"), "test")
    with caplog.at_level("WARNING", logger="gateway.service"):
        async with Gateway(settings.model_copy(update={"rule_overrides": path})):
            pass
    warned = [r.getMessage() for r in caplog.records if "is not registered" in r.getMessage()]
    assert warned == [
        f"{path}: sites.sawmil is not registered; its overrides apply only once it is (a typo?)"
    ]


def test_override_of_a_drift_baseline_uses_the_recorded_value() -> None:
    overrides = RuleOverrides(devices={"dc-1": {"pressure_drift": {"baseline": 1000}}})
    bank = DetectorBank(lambda d: DUST, overrides=overrides)
    # No learning period: the recorded baseline judges the first reading.
    found = series(bank, "dc-1", "pressure_diff_pa", [1250.0] * 3, MIN, rule="pressure_drift")
    assert [i for i, _ in found] == [1] and "+25 %" in found[0][1].message


# -- re-raising after an operator closes an alert --------------------------------------------


def leak(ts_ms: int, mA: float) -> Reading:
    return Reading("efm-1", "residual_current_ma", ts_ms, mA)


def test_closing_an_alert_while_it_still_holds_rearms_the_rule() -> None:
    bank = bank_of(EFM)
    raised = [s for t in range(0, 11) for s in bank.on_readings([leak(t * 1000, 350.0)])]
    assert [s.active for s in raised] == [True]
    assert bank.on_readings([leak(11_000, 350.0)]) == []  # still in alarm: nothing new
    assert bank.on_closed("efm-1", "residual_current") is True
    [again] = bank.on_readings([leak(12_000, 350.0)])  # the delay was long met: at once
    assert again.active and again.severity is Severity.ORANGE
    # Closed after it cleared: nothing to re-arm, the next normal reading says nothing.
    assert not bank.on_readings([leak(13_000, 100.0)])[0].active
    assert bank.on_closed("efm-1", "residual_current") is False
    assert bank.on_readings([leak(14_000, 100.0)]) == []


async def test_the_engine_close_path_reaches_the_bank_and_a_new_alert_is_raised(
    db: SqliteDatabase,
) -> None:
    engine = AlertEngine(AlertStore(db), AlertBus(), lambda d: "site-1", clock=FakeClock())
    await engine.start()
    bank = bank_of(EFM)
    engine.add_listener(bank)  # as gateway/service.py wires it
    for t in range(0, 11):
        await engine.handle(bank.on_readings([leak(t * 1000, 350.0)]))
    [first] = engine.open_alerts()
    await engine.close(first.id, "duty-1", Disposition.REAL)
    await engine.handle(bank.on_readings([leak(12_000, 350.0)]))
    [second] = engine.open_alerts()
    assert second.id != first.id and second.rule == "residual_current"
    assert second.raised_at == 12_000


# -- state survives a restart, for every rule type -------------------------------------------


def roundtrip(state: dict[str, object]) -> dict[str, object]:
    result = json.loads(json.dumps(state))
    assert isinstance(result, dict)
    return result


CASES = [
    (
        DUST,
        "pressure_diff_pa",
        "pressure_drift",
        [800.0 + (i % 3) for i in range(25)],
        [1000.0] * 4,
        MIN,
    ),
    (
        HEAT,
        "temperature_c",
        "temperature_rise",
        [25.0, 25.0, 27.0],
        [29.5, 32.0, 34.5, 37.0],
        10_000,
    ),
    (DUST, "pressure_diff_pa", "pressure_diff_stuck", [813.0] * 100, [813.0] * 30, MIN),
    (EFM, "cable_temp_3_c", "cable_temp_3_fault", [30.0, 30.5], [160.0, 30.0, 31.0], 10_000),
    (
        METER,
        "active_power_kw",
        "load_anomaly",
        [200.0 + 50 * np.sin(i / 15) for i in range(200)],
        [3000.0] * 4,
        15 * MIN,
    ),
    (EFM, "residual_current_ma", "residual_current", [350.0] * 5, [350.0] * 8, 1000),
]


@pytest.mark.parametrize(
    ("profile", "metric", "rule", "before", "after", "step"),
    CASES,
    ids=[c[2] for c in CASES],
)
def test_every_rule_type_continues_after_a_restart_exactly_as_without_one(
    profile: Profile, metric: str, rule: str, before: list[float], after: list[float], step: int
) -> None:
    kept = bank_of(profile)
    series(kept, "d1", metric, before, step)
    restarted = bank_of(profile)
    restarted.restore(roundtrip(kept.state()))
    start = len(before) * step
    expected = series(kept, "d1", metric, after, step, start_ms=start, rule=rule)
    got = series(restarted, "d1", metric, after, step, start_ms=start, rule=rule)
    assert got == expected
    assert expected, "the continuation should raise something, or the test proves nothing"
    # A fresh bank (nothing learnt) would not have raised the same (baseline, window, run...).
    fresh = series(bank_of(profile), "d1", metric, after, step, start_ms=start, rule=rule)
    assert fresh != expected
    assert roundtrip(restarted.state()) == roundtrip(kept.state())


def test_a_scorer_state_its_scorer_refuses_keeps_the_stage_and_starts_learning_over() -> None:
    bank = bank_of(DUST)
    series(bank, "dc-1", "pressure_diff_pa", [800.0] * 20 + [1000.0] * 3, MIN)
    assert bank.stage("dc-1", "pressure_drift") is A
    state = roundtrip(bank.state())
    rules = state["rules"]
    assert isinstance(rules, dict)
    rules["dc-1"]["pressure_drift"]["scorer"] = {"baseline": "eight hundred"}
    after = bank_of(DUST)
    after.restore(state)
    # The open alarm is still known; the baseline is learnt again from 20 readings, and the
    # first reading judged after that clears the alert.
    assert after.stage("dc-1", "pressure_drift") is A
    found = series(
        after,
        "dc-1",
        "pressure_diff_pa",
        [800.0] * 22,
        MIN,
        start_ms=30 * MIN,
        rule="pressure_drift",
    )
    assert [(i, s.active) for i, s in found] == [(20, False)]


# -- vectorised == point by point ---------------------------------------------------------------


CONFIGS: list[dict[str, Any]] = [
    {"prewarning": 50, "alarm": 80, "delay_s": 3, "hysteresis": 5},
    {"alarm": 80, "delay_samples": 3, "hysteresis": 10},
    {
        "direction": "below",
        "prewarning": 30,
        "alarm": 10,
        "delay_s": 2,
        "delay_samples": 2,
        "hysteresis": 3,
        "clear": 40,
    },
    {
        "direction": "outside",
        "prewarning": (-15, 15),
        "alarm": (-20, 20),
        "delay_s": 1,
        "hysteresis": 2,
    },
    {"direction": "outside", "alarm": (-20, 20), "clear": (-5, 5), "delay_samples": 2},
    {"prewarning": 60, "alarm": 62, "hysteresis": 5, "clear": 59},
]


@pytest.mark.parametrize("seed", range(12))
def test_process_many_equals_update_point_by_point(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for trial in range(40):
        cfg = CONFIGS[(seed + trial) % len(CONFIGS)]
        n = int(rng.integers(1, 300))
        ts = np.cumsum(rng.integers(0, 2000, n)).astype(np.int64)
        if rng.random() < 0.3:  # late deliveries
            k = rng.integers(0, n, size=max(1, n // 10))
            ts[k] -= rng.integers(0, 5000, size=k.size)
        level = 0.0 if cfg.get("direction") == "outside" else 50.0
        values = level + np.cumsum(rng.normal(0, 8, n))
        if rng.random() < 0.3:
            values[rng.integers(0, n, size=max(1, n // 8))] = np.nan
        active = rng.random(n) > 0.1 if rng.random() < 0.5 else None
        loop, vec = Staged(Identity(), **cfg), Staged(Identity(), **cfg)
        for _ in range(int(rng.integers(0, 20))):  # some history, maybe a restored stage
            t, v = int(rng.integers(-10_000, 0)), float(level + rng.normal(0, 40))
            loop.update(t, v)
            vec.update(t, v)
        if rng.random() < 0.2:
            saved = loop.state()
            saved["stage"] = int(rng.integers(0, 3))
            loop.restore(saved)
            vec.restore(saved)
        changes, stages = [], []
        for i in range(n):
            on = True if active is None else bool(active[i])
            c = loop.update(int(ts[i]), float(values[i]), on)
            if c is not None:
                changes.append((i, c))
            stages.append(int(loop.stage))
        out = vec.process_many(ts, values, active)
        assert list(zip(out.at, out.changes, strict=True)) == changes, cfg
        assert out.stages.tolist() == stages
        assert vec.state() == loop.state()


@pytest.mark.parametrize("rule_name", ["pressure_drift", "pressure_diff_stuck", "hopper_temp"])
def test_run_rule_equals_the_bank_point_by_point(rule_name: str) -> None:
    rng = np.random.default_rng(11)
    rule = rule_of(DUST, rule_name)
    metric = DUST.metrics[rule.metric]
    n = 3000
    ts = np.arange(n, dtype=np.int64) * 20_000
    base = 800.0 if rule.metric == "pressure_diff_pa" else 50.0
    # Slow swings of ±35 % with noise, whole units, and one stuck stretch of 3 h.
    values = np.round(base * (1 + 0.35 * np.sin(np.arange(n) / 120)) + rng.normal(0, 3, n))
    values[1000:1540] = values[1000]
    run = run_rule(rule, ts, values, metric_spec=metric)
    bank = bank_of(DUST)
    one_by_one = series(bank, "dc-1", rule.metric, values.tolist(), 20_000, rule=rule_name)
    assert one_by_one, "the random walk should cross the rule somewhere"
    assert [(c.ts_ms, c.new is not N, c.value) for c in run.changes] == [
        (s.ts_ms, s.active, s.value) for _, s in one_by_one
    ]


def test_a_large_batch_takes_the_vectorised_path_with_the_same_signals() -> None:
    rng = np.random.default_rng(2)
    n = 400
    assert n >= BATCH_MIN
    readings = []
    for i in range(n):
        readings.append(
            Reading("efm-1", "residual_current_ma", i * 1000, float(250 + rng.normal(0, 60)))
        )
        readings.append(Reading("efm-1", "cable_temp_1_c", i * 1000, float(55 + i * 0.25)))
        readings.append(Reading("efm-2", "residual_current_ma", i * 1000, 400.0))
    batch = bank_of(EFM).on_readings(readings)
    loop_bank = bank_of(EFM)
    one_by_one = [s for r in readings for s in loop_bank.on_readings([r])]
    assert batch == one_by_one
    assert len({s.rule for s in batch}) >= 3  # leak, cable temperature, its rise


def test_metric_spec_feeds_sensor_fault_defaults() -> None:
    rule = make_rule(
        type="sensor_fault", metric="cable_temp_1_c", alarm={"value": 0.5, "severity": "yellow"}
    )
    with pytest.raises(ValueError, match="range"):
        detector_from_rule(rule)
    staged = detector_from_rule(rule, MetricSpec(unit="°C", min=-40, max=200))
    assert [c.new for c in (staged.update(0, 20.0), staged.update(1, 200.0)) if c] == [A]


@pytest.mark.parametrize("chunk", [1 << 18, 50])
@pytest.mark.parametrize("seed", range(6))
def test_process_groups_equals_process_many_per_series(
    seed: int, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("detectors.staged._CHUNK_POINTS", chunk)  # blocks of series, too
    rng = np.random.default_rng(100 + seed)
    cfg = CONFIGS[seed % len(CONFIGS)]
    level = 0.0 if cfg.get("direction") == "outside" else 50.0
    groups = int(rng.integers(1, 15))
    together = [Staged(Identity(), **cfg) for _ in range(groups)]
    alone = [Staged(Identity(), **cfg) for _ in range(groups)]
    ts_parts, value_parts = [], []
    for g in range(groups):
        for _ in range(int(rng.integers(0, 10))):  # each its own history
            t, v = int(rng.integers(-10_000, 0)), float(level + rng.normal(0, 40))
            together[g].update(t, v)
            alone[g].update(t, v)
        n = int(rng.integers(0, 120))  # some series empty
        ts = np.cumsum(rng.integers(0, 2000, n)).astype(np.int64)
        if n and rng.random() < 0.4:
            ts[rng.integers(0, n, size=max(1, n // 8))] -= 3000  # late points
        values = level + np.cumsum(rng.normal(0, 8, n))
        if n and rng.random() < 0.4:
            values[rng.integers(0, n, size=max(1, n // 8))] = np.nan
        ts_parts.append(ts)
        value_parts.append(values)
    bounds = np.concatenate(([0], np.cumsum([len(t) for t in ts_parts]))).astype(np.intp)
    done = Staged.process_groups(
        together, np.concatenate(ts_parts), np.concatenate(value_parts), bounds
    )
    assert done is not None and len(done) == groups
    for g in range(groups):
        expected = alone[g].process_many(ts_parts[g], value_parts[g])
        assert done[g].changes == expected.changes and done[g].at == expected.at
        assert done[g].stages.tolist() == expected.stages.tolist()
        assert together[g].state() == alone[g].state()


def test_process_groups_refuses_detectors_of_different_rules() -> None:
    a, b = Staged(Identity(), alarm=10), Staged(Identity(), alarm=20)
    assert (
        Staged.process_groups([a, b], np.zeros(2, np.int64), np.zeros(2), np.array([0, 1, 2]))
        is None
    )
    assert (
        Staged.process_groups([a, a], np.zeros(2, np.int64), np.zeros(2), np.array([0, 1, 2]))
        is None
    )
