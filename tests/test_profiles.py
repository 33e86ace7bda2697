"""Shipped device profiles: they load, their numbers agree with the standards, and a broken
profile is reported with its file, field and reason (an electrician must be able to fix it
from the message alone)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.model import AlertClass, Severity
from gateway.errors import ProfileError
from gateway.profiles import (
    DEFAULT_PROFILE_DIR,
    DriftRule,
    Profile,
    ThresholdRule,
    load_profile,
    load_profiles,
)

SHIPPED = sorted(DEFAULT_PROFILE_DIR.glob("*.yaml"))
EXPECTED = {
    "dust_collector_monitor",
    "electrical_fire_monitor",
    "gas_detector",
    "heat_detector",
    "power_meter",
    "smoke_alarm_nbiot",
    "smoke_alarm_tuya",
}


@pytest.fixture(scope="module")
def profiles() -> dict[str, Profile]:
    return load_profiles()


def rule(profile: Profile, name: str) -> ThresholdRule:
    matches = [r for r in profile.rules if r.name == name]
    assert matches, f"{profile.name} has no rule {name!r}"
    return matches[0]


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_profile_loads(path: Path) -> None:
    profile = load_profile(path)
    assert profile.name == path.stem
    assert profile.title_zh and profile.title_en and profile.standard


def test_the_expected_device_types_ship(profiles: dict[str, Profile]) -> None:
    assert EXPECTED <= set(profiles)


# --- numbers fixed by the standards (domain.md) -------------------------------------------


def test_residual_current_alarm_within_the_standard_band(profiles: dict[str, Profile]) -> None:
    r = rule(profiles["electrical_fire_monitor"], "residual_current")
    assert 300 <= r.alarm.value <= 500  # GB 14287: alarm 300-500 mA
    assert r.prewarning is not None
    assert 0.1 <= r.prewarning.value / r.alarm.value <= 0.8  # pre-warning ratio (practice)
    assert r.delay_s <= 30  # alarm within 30 s of crossing


def test_arc_fault_alarms_at_14_per_second(profiles: dict[str, Profile]) -> None:
    r = rule(profiles["electrical_fire_monitor"], "arc_fault")
    assert r.alarm.value == 14
    assert r.alarm.value - r.hysteresis > 9  # <= 9 per second must not alarm


def test_hopper_temperature_alarms_at_70(profiles: dict[str, Profile]) -> None:
    r = rule(profiles["dust_collector_monitor"], "hopper_temp")
    assert r.alarm.value == 70
    assert r.direction == "above"


def test_any_spark_alarms(profiles: dict[str, Profile]) -> None:
    r = rule(profiles["dust_collector_monitor"], "spark")
    assert 0 < r.alarm.value <= 1 and r.prewarning is None


def test_pressure_difference_is_20_percent_over_a_1200_pa_baseline(
    profiles: dict[str, Profile],
) -> None:
    r = rule(profiles["dust_collector_monitor"], "pressure_diff")
    assert r.prewarning is not None and r.prewarning.value == pytest.approx(1200 * 1.2)
    assert r.hazard == "blockage"


def test_dust_concentration_is_25_and_50_percent_of_one_lower_limit(
    profiles: dict[str, Profile],
) -> None:
    r = rule(profiles["dust_collector_monitor"], "dust_concentration")
    assert r.prewarning is not None
    assert r.prewarning.value * 2 == pytest.approx(r.alarm.value)


def test_gas_levels_are_25_and_50_percent_lel(profiles: dict[str, Profile]) -> None:
    r = rule(profiles["gas_detector"], "gas_lel")
    assert r.prewarning is not None
    assert (r.prewarning.value, r.alarm.value) == (25, 50)  # GB/T 50493 level 1 / level 2
    assert r.alarm.severity is Severity.RED and r.hazard == "gas"


def test_heat_detector_alarms_inside_the_a1_band(profiles: dict[str, Profile]) -> None:
    r = rule(profiles["heat_detector"], "temperature")
    assert 54 <= r.alarm.value <= 65  # GB 4716 class A1 static response 54-65 °C
    assert r.prewarning is not None and r.prewarning.value >= 50  # above max application temp
    assert r.alarm.severity is Severity.RED and r.hazard == "fire"
    assert r.delay_s <= 40  # GB 50166: temperature type within 40 s


# --- severities used honestly -----------------------------------------------------------


def test_smoke_alarm_events(profiles: dict[str, Profile]) -> None:
    for name in ("smoke_alarm_nbiot", "smoke_alarm_tuya"):
        events = profiles[name].events
        fire = events["smoke_alarm"]
        assert (fire.severity, fire.alert_class, fire.hazard) == (
            Severity.RED,
            AlertClass.HAZARD,
            "fire",
        )
        assert events["smoke_clear"].clears == "smoke_alarm"
        assert events["tamper_clear"].clears == "tamper"
        assert events["battery_ok"].clears == "battery_low"
        for fault in ("tamper", "battery_low"):
            assert events[fault].alert_class is AlertClass.FAULT
            assert events[fault].severity in (Severity.YELLOW, Severity.BLUE)
        assert events["self_test"].severity is None and events["silenced"].severity is None


def test_smoke_alarm_heartbeat_is_a_day(profiles: dict[str, Profile]) -> None:
    assert profiles["smoke_alarm_nbiot"].heartbeat_s == 86400


def test_faults_are_never_red_and_clearing_events_raise_nothing(
    profiles: dict[str, Profile],
) -> None:
    for profile in profiles.values():
        for r in profile.rules:
            if r.alert_class is AlertClass.FAULT:
                assert r.alarm.severity is not Severity.RED, (profile.name, r.name)
        for etype, event in profile.events.items():
            if event.clears is not None:
                assert event.severity is None, (profile.name, etype)
            if event.alert_class is AlertClass.FAULT:
                assert event.severity is not Severity.RED, (profile.name, etype)


def test_red_is_kept_for_fire_explosion_and_gas(profiles: dict[str, Profile]) -> None:
    for profile in profiles.values():
        for r in profile.rules:
            for stage in (r.prewarning, r.alarm):
                if stage is not None and stage.severity is Severity.RED:
                    assert r.hazard in {"fire", "explosion", "gas"}, (profile.name, r.name)


def test_thresholds_lie_inside_the_valid_range(profiles: dict[str, Profile]) -> None:
    """A rule whose threshold the validator would reject as out of range could never fire."""
    for profile in profiles.values():
        for r in profile.rules:
            if r.type != "threshold":
                continue  # other types bound a score (°C/min, %, s), not the reading
            spec = profile.metrics[r.metric]
            for stage in (r.prewarning, r.alarm):
                if stage is not None:
                    assert spec.min < stage.value < spec.max, (profile.name, r.name)


def test_valid_ranges_catch_wrong_units(profiles: dict[str, Profile]) -> None:
    nbiot = profiles["smoke_alarm_nbiot"].metrics
    assert not nbiot["battery_voltage_v"].min <= 3600 <= nbiot["battery_voltage_v"].max  # mV
    gas = profiles["gas_detector"].metrics["gas_lel_pct"]
    assert not gas.min <= 12500 <= gas.max  # ppm instead of %LEL
    heat = profiles["heat_detector"].metrics["temperature_c"]
    assert not heat.min <= 235 <= heat.max  # 0.1 °C sent unscaled


def test_tuya_fields_map_vendor_points_onto_canonical_metrics(
    profiles: dict[str, Profile],
) -> None:
    tuya = profiles["smoke_alarm_tuya"]
    assert tuya.fields["battery_percentage"].metric == "battery_pct"
    assert tuya.fields["smoke_sensor_value"].metric == "smoke_obscuration_pct"
    temp = tuya.fields["temp_current"]
    assert temp.metric == "temperature_c"
    assert 235 * temp.scale + temp.offset == pytest.approx(23.5)
    assert {m.metric for m in tuya.fields.values()} == set(tuya.metrics)


# --- broken profiles -----------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _unknown_rule_metric(data: dict[str, Any]) -> None:
    data["rules"][0]["metric"] = "bogus_ma"


def _min_not_below_max(data: dict[str, Any]) -> None:
    data["metrics"]["residual_current_ma"]["min"] = 5000


def _bad_severity(data: dict[str, Any]) -> None:
    data["rules"][0]["alarm"]["severity"] = "purple"


def _wrong_name(data: dict[str, Any]) -> None:
    data["name"] = "something_else"


def _bad_metric_name(data: dict[str, Any]) -> None:
    data["metrics"]["Leakage"] = {"unit": "mA", "min": 0, "max": 1}


@pytest.mark.parametrize(
    ("mutate", "where", "reason"),
    [
        (_unknown_rule_metric, "residual_current", "unknown metric 'bogus_ma'"),
        (_min_not_below_max, "metrics.residual_current_ma", "must be below max"),
        (_bad_severity, "rules.0.alarm.severity", "'red', 'orange', 'yellow' or 'blue'"),
        (_wrong_name, "name", "must match the file name"),
        (_bad_metric_name, "Leakage", "unit suffix"),
    ],
    ids=["unknown-rule-metric", "min>=max", "bad-severity", "name-vs-file", "metric-name"],
)
def test_broken_profile_names_file_field_and_reason(
    tmp_path: Path, mutate: Mutation, where: str, reason: str
) -> None:
    source = DEFAULT_PROFILE_DIR / "electrical_fire_monitor.yaml"
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    mutate(data)
    shutil.copy(DEFAULT_PROFILE_DIR / "gas_detector.yaml", tmp_path)  # a good neighbour
    broken = tmp_path / "electrical_fire_monitor.yaml"
    broken.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        load_profiles(tmp_path)
    message = str(info.value)
    assert str(broken) in message
    assert where in message
    assert reason in message


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "heat_detector.yaml"
    broken.write_text("name: heat_detector\nmetrics: {temperature_c: [unclosed\n", encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        load_profiles(tmp_path)
    message = str(info.value)
    assert str(broken) in message and "cannot read profile" in message and "line" in message


def test_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="no device profiles"):
        load_profiles(tmp_path)


# --- rule types beyond plain thresholds (issue 3) -----------------------------------------


def test_heat_detector_rate_of_rise_is_about_10_c_per_minute(profiles: dict[str, Profile]) -> None:
    r = rule(profiles["heat_detector"], "temperature_rise")
    assert r.type == "rate_of_rise" and r.alarm.value == 10  # class R, ~10 °C/min (practice)
    assert r.hazard == "fire" and r.alarm.severity is Severity.ORANGE  # the device's event is red


def test_dust_collector_drift_is_plus_minus_20_percent_of_baseline(
    profiles: dict[str, Profile],
) -> None:
    r = rule(profiles["dust_collector_monitor"], "pressure_drift")
    assert r.type == "drift" and r.direction == "outside"
    assert (r.alarm.low, r.alarm.high) == (-20, 20)  # AQ 4273 (std)
    assert isinstance(r, DriftRule)
    assert "bag_change" in r.relearn_on  # a bag change records a new baseline
    assert "bag_change" in profiles["dust_collector_monitor"].events


def test_anomaly_rules_are_blue_prewarnings_not_hazard_alarms(profiles: dict[str, Profile]) -> None:
    anomalies = [(p, r) for p in profiles.values() for r in p.rules if r.type == "anomaly"]
    assert {(p.name, r.metric) for p, r in anomalies} >= {
        ("power_meter", "active_power_kw"),
        ("electrical_fire_monitor", "cable_temp_1_c"),
    }
    for _, r in anomalies:
        assert r.alarm.severity is Severity.BLUE and r.prewarning is None
        assert r.hazard == "anomaly"
        assert 0 < r.alarm.value <= 1  # anomaly scores are in [0, 1]


def test_sensor_faults_and_flatlines_are_faults(profiles: dict[str, Profile]) -> None:
    kinds = {"sensor_fault", "flatline"}
    found = [r for p in profiles.values() for r in p.rules if r.type in kinds]
    assert {r.type for r in found} == kinds
    for r in found:
        assert r.alert_class is AlertClass.FAULT and r.alarm.severity is not Severity.RED


@pytest.mark.parametrize(
    ("change", "where", "reason"),
    [
        ({"type": "sideways"}, "rules.0", "sideways"),
        ({"direction": "outside"}, "rules.0", "outside needs low and high"),
        ({"clear": {"value": 500}}, "rules.0", "normal side"),
        ({"schedule": {"hours": "25:00-06:00"}}, "rules.0.schedule.hours", "impossible time"),
        ({"schedule": {"days": ["someday"]}}, "rules.0.schedule.days.0", "mon"),
        ({"timezone": "Mars/Olympus"}, "rules.0", "unknown time zone"),
    ],
    ids=["type", "outside-band", "clear-side", "hours", "days", "zone"],
)
def test_broken_rule_fields_name_the_field(
    tmp_path: Path, change: dict[str, Any], where: str, reason: str
) -> None:
    data = yaml.safe_load(
        (DEFAULT_PROFILE_DIR / "electrical_fire_monitor.yaml").read_text(encoding="utf-8")
    )
    data["rules"][0].update(change)
    broken = tmp_path / "electrical_fire_monitor.yaml"
    broken.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        load_profile(broken)
    message = str(info.value)
    assert str(broken) in message and where in message and reason in message
