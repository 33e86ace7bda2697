"""Detectors on constructed series whose right answer is known in advance."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest

from alerts.model import AlertClass, Severity, Signal, Stage
from detectors import (
    DetectorBank,
    Identity,
    OfflineChange,
    OfflineDetector,
    Staged,
    threshold_from_rule,
)
from gateway.model import DeviceEvent, Reading, StatusChange
from gateway.profiles import DEFAULT_PROFILE_DIR, Profile, StageSpec, load_profile

N, P, A = Stage.NORMAL, Stage.PREWARNING, Stage.ALARM


def run(
    staged: Staged, values: Sequence[float], step_ms: int = 1000, start_ms: int = 0
) -> list[tuple[int, Stage, Stage]]:
    """(index, old, new) of every stage change over a regularly sampled series."""
    changes = []
    for i, value in enumerate(values):
        change = staged.update(start_ms + i * step_ms, value)
        if change is not None:
            changes.append((i, change.old, change.new))
    return changes


def json_roundtrip(state: dict[str, object]) -> dict[str, object]:
    result = json.loads(json.dumps(state))
    assert isinstance(result, dict)
    return result


# -- Staged --------------------------------------------------------------------------------


def test_step_crosses_prewarning_then_alarm_at_known_indices() -> None:
    staged = Staged(Identity(), prewarning=50, alarm=80)
    values = [10.0] * 5 + [50.0] * 5 + [79.9] * 3 + [80.0] * 3 + [10.0]
    assert run(staged, values) == [(5, N, P), (13, P, A), (16, A, N)]


def test_change_carries_point_value_and_score() -> None:
    staged = Staged(Identity(), alarm=80)
    change = staged.update(1_234, 81.5)
    assert change is not None
    assert (change.ts_ms, change.value, change.score) == (1_234, 81.5, 81.5)
    assert staged.stage is A


def test_delay_s_holds_off_a_short_spike_and_fires_after_exactly_the_delay() -> None:
    staged = Staged(Identity(), alarm=100, delay_s=10)
    values = [50.0] * 30
    values[3:8] = [150.0] * 5  # crossing from 3 s to 7 s: only 4 s
    values[20:] = [120.0] * 10  # sustained from 20 s
    values += [120.0] * 5
    # 10 s after the first crossing point at 20 s, not one sample earlier.
    assert run(staged, values) == [(30, N, A)]


def test_delay_counts_each_stage_from_its_own_first_crossing() -> None:
    staged = Staged(Identity(), prewarning=50, alarm=100, delay_s=10)
    values = [60.0] * 5 + [120.0] * 20  # pre-warning from 0 s, alarm bound from 5 s
    assert run(staged, values) == [(10, N, P), (15, P, A)]


def test_sustained_crossing_escalates_straight_to_alarm_when_both_delays_expire() -> None:
    staged = Staged(Identity(), prewarning=50, alarm=100, delay_s=10)
    assert run(staged, [120.0] * 15) == [(10, N, A)]


def test_delay_samples_needs_consecutive_crossing_points() -> None:
    staged = Staged(Identity(), alarm=100, delay_samples=3)
    values = [120.0, 120.0, 50.0, 120.0, 120.0, 120.0, 120.0]
    assert run(staged, values) == [(5, N, A)]


@pytest.mark.parametrize(
    ("step_ms", "fires_at"),
    [
        (20_000, 2),  # sparse reports: three samples take 40 s, the sample count binds
        (1_000, 10),  # dense reports: three samples in 2 s, the 10 s delay binds
    ],
)
def test_delay_s_and_delay_samples_must_both_hold(step_ms: int, fires_at: int) -> None:
    staged = Staged(Identity(), alarm=100, delay_s=10, delay_samples=3)
    assert run(staged, [120.0] * 20, step_ms=step_ms) == [(fires_at, N, A)]


def test_hysteresis_gives_one_raise_and_one_clear_on_a_noisy_bound() -> None:
    rng = np.random.default_rng(42)
    noisy = (100.0 + rng.uniform(-2.0, 2.0, size=200)).tolist()
    noisy[0] = 101.0  # make sure it starts above
    values = [80.0] * 10 + noisy + [90.0] * 10

    assert run(Staged(Identity(), alarm=100, hysteresis=5), values) == [(10, N, A), (210, A, N)]
    # Without hysteresis the same series flaps: that is what the option is for.
    assert len(run(Staged(Identity(), alarm=100), values)) > 50


def test_hysteresis_release_is_strict_and_may_step_down_to_prewarning() -> None:
    staged = Staged(Identity(), prewarning=240, alarm=300, hysteresis=20)
    values = [310.0, 280.0, 279.9, 220.0, 219.9]
    assert run(staged, values) == [(0, N, A), (2, A, P), (4, P, N)]


def test_falling_far_clears_straight_to_normal() -> None:
    staged = Staged(Identity(), prewarning=240, alarm=300, hysteresis=20)
    assert run(staged, [310.0, 100.0]) == [(0, N, A), (1, A, N)]


def test_de_escalation_is_immediate_despite_the_delay() -> None:
    staged = Staged(Identity(), alarm=100, delay_s=10, delay_samples=3)
    changes = run(staged, [120.0] * 11 + [50.0])
    assert changes == [(10, N, A), (11, A, N)]


def test_direction_below_for_under_voltage() -> None:
    staged = Staged(Identity(), direction="below", prewarning=209, alarm=198, hysteresis=2)
    values = [220.0, 209.0, 195.0, 199.9, 200.1, 211.0, 211.1]
    assert run(staged, values) == [(1, N, P), (2, P, A), (4, A, P), (6, P, N)]


def test_restore_mid_pending_keeps_the_delay_clock() -> None:
    def fresh() -> Staged:
        return Staged(Identity(), alarm=100, delay_s=10, hysteresis=5)

    before = fresh()
    assert run(before, [120.0] * 5) == []  # crossing for 4 s, pending
    after = fresh()
    after.restore(json_roundtrip(before.state()))
    # Continues at 5 s..; fires at 10 s as if there had been no restart.
    assert run(after, [120.0] * 10, start_ms=5_000) == [(5, N, A)]
    # Whereas a detector that lost its state would wait until 15 s.
    assert run(fresh(), [120.0] * 11, start_ms=5_000) == [(10, N, A)]


def test_restore_keeps_an_open_alarm_so_it_can_clear() -> None:
    before = Staged(Identity(), alarm=100, hysteresis=5)
    before.update(0, 120.0)
    after = Staged(Identity(), alarm=100, hysteresis=5)
    after.restore(json_roundtrip(before.state()))
    assert after.stage is A
    assert run(after, [97.0, 90.0], start_ms=1_000) == [(1, A, N)]


def test_restore_rejects_a_corrupt_state_and_keeps_its_own() -> None:
    staged = Staged(Identity(), alarm=100)
    staged.update(0, 120.0)
    good = staged.state()
    for broken in (
        {**good, "stage": 7},
        {**good, "alarm_count": "1"},
        {**good, "alarm_since_ms": None},  # count 1 but no clock
        {k: v for k, v in good.items() if k != "scorer"},
    ):
        with pytest.raises(ValueError):
            staged.restore(broken)
    assert staged.state() == good


def test_out_of_order_points_neither_reset_nor_advance_the_clock() -> None:
    staged = Staged(Identity(), alarm=100, delay_s=10)
    assert staged.update(0, 120.0) is None
    assert staged.update(5_000, 120.0) is None
    assert staged.update(2_000, 50.0) is None  # late and low: would have reset the clock
    assert staged.update(3_000, 120.0) is None  # late and high: nothing either
    assert staged.update(9_999, 120.0) is None
    change = staged.update(10_000, 120.0)
    assert change is not None and change.new is A


def test_nan_is_ignored() -> None:
    staged = Staged(Identity(), alarm=100, delay_samples=2)
    assert staged.update(0, 120.0) is None
    assert staged.update(1_000, float("nan")) is None
    change = staged.update(2_000, 120.0)
    assert change is not None and change.new is A


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prewarning": 300.0, "alarm": 300.0},
        {"direction": "below", "prewarning": 190.0, "alarm": 198.0},
        {"alarm": 100.0, "delay_s": -1.0},
        {"alarm": 100.0, "delay_samples": 0},
        {"alarm": 100.0, "hysteresis": -1.0},
        {"alarm": float("nan")},
        {"alarm": 100.0, "direction": "sideways"},
    ],
)
def test_staged_rejects_impossible_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Staged(Identity(), **kwargs)  # type: ignore[arg-type]


def test_threshold_from_rule_uses_every_rule_field() -> None:
    profile = load_profile(DEFAULT_PROFILE_DIR / "electrical_fire_monitor.yaml")
    rule = next(r for r in profile.rules if r.name == "cable_temp_1")
    staged = threshold_from_rule(rule)
    assert (staged.direction, staged.bound(P), staged.bound(A)) == ("above", 60.0, 75.0)
    assert staged.release(A) == 72.0  # hysteresis 3
    # delay 15 s: a crossing from 0 s alarms at 15 s.
    assert run(staged, [80.0] * 20) == [(15, N, A)]


# -- OfflineDetector ------------------------------------------------------------------------


def test_expected_device_that_never_speaks_goes_offline_once_after_its_timeout() -> None:
    offline = OfflineDetector()
    offline.expect("smoke-1", since_ms=1_000, timeout_ms=60_000)
    assert offline.sweep(61_000) == []
    assert offline.sweep(61_001) == [OfflineChange("smoke-1", True, 61_001, None)]
    assert offline.sweep(500_000) == []
    assert offline.is_offline("smoke-1") is True


def test_unknown_devices_are_not_swept() -> None:
    offline = OfflineDetector()
    assert offline.sweep(10**12) == []
    assert offline.is_offline("ghost") is None


def test_silence_after_last_message_and_back_online_on_the_next() -> None:
    offline = OfflineDetector()
    offline.seen("efm-1", 0, timeout_ms=300_000)
    assert offline.seen("efm-1", 60_000, timeout_ms=300_000) is None
    assert offline.sweep(360_000) == []
    assert offline.sweep(360_001) == [OfflineChange("efm-1", True, 360_001, 60_000)]
    back = offline.seen("efm-1", 400_000, timeout_ms=300_000)
    assert back == OfflineChange("efm-1", False, 400_000, 400_000)
    assert offline.seen("efm-1", 401_000, timeout_ms=300_000) is None
    assert offline.sweep(700_000) == []


def test_expect_again_does_not_restart_a_dead_devices_clock() -> None:
    offline = OfflineDetector()
    offline.expect("smoke-1", since_ms=0, timeout_ms=60_000)
    offline.expect("smoke-1", since_ms=50_000, timeout_ms=60_000)
    assert [c.device_id for c in offline.sweep(61_000)] == ["smoke-1"]


def test_status_offline_is_immediate_and_reported_once() -> None:
    offline = OfflineDetector()
    offline.seen("smoke-1", 0, timeout_ms=86_400_000)
    change = offline.reported("smoke-1", online=False, ts_ms=5_000, timeout_ms=86_400_000)
    assert change == OfflineChange("smoke-1", True, 5_000, 0)
    assert offline.reported("smoke-1", online=False, ts_ms=6_000, timeout_ms=86_400_000) is None
    assert offline.sweep(10**12) == []
    back = offline.reported("smoke-1", online=True, ts_ms=7_000, timeout_ms=86_400_000)
    assert back == OfflineChange("smoke-1", False, 7_000, 7_000)


def test_stale_offline_status_is_ignored() -> None:
    offline = OfflineDetector()
    offline.seen("smoke-1", 10_000, timeout_ms=60_000)
    assert offline.reported("smoke-1", online=False, ts_ms=9_000, timeout_ms=60_000) is None
    assert offline.is_offline("smoke-1") is False


def test_late_message_brings_device_back_but_not_before_it_went_offline() -> None:
    offline = OfflineDetector()
    offline.seen("efm-1", 100_000, timeout_ms=60_000)
    offline.reported("efm-1", online=False, ts_ms=120_000, timeout_ms=60_000)
    back = offline.seen("efm-1", 110_000, timeout_ms=60_000)  # delivered late
    assert back == OfflineChange("efm-1", False, 120_000, 110_000)


def test_forget_stops_watching() -> None:
    offline = OfflineDetector()
    offline.expect("smoke-1", since_ms=0, timeout_ms=60_000)
    offline.forget("smoke-1")
    offline.forget("never-known")
    assert offline.sweep(10**9) == []


def test_offline_state_survives_a_restart() -> None:
    before = OfflineDetector()
    before.expect("a", since_ms=0, timeout_ms=60_000)
    before.seen("b", 0, timeout_ms=60_000)
    before.seen("c", 50_000, timeout_ms=60_000)
    assert {c.device_id for c in before.sweep(70_000)} == {"a", "b"}
    after = OfflineDetector()
    after.restore(json_roundtrip(before.state()))
    assert after.sweep(80_000) == []  # a and b already reported, c not due yet
    assert [c.device_id for c in after.sweep(110_001)] == ["c"]
    assert after.seen("a", 120_000, timeout_ms=60_000) == OfflineChange(
        "a", False, 120_000, 120_000
    )
    with pytest.raises(ValueError):
        after.restore({"devices": {"x": {"timeout_ms": 0, "since_ms": 0, "offline": False}}})


# -- DetectorBank ---------------------------------------------------------------------------

EFM = load_profile(DEFAULT_PROFILE_DIR / "electrical_fire_monitor.yaml")


def leak(ts_ms: int, mA: float, device_id: str = "efm-1") -> Reading:
    return Reading(device_id, "residual_current_ma", ts_ms, mA)


def feed(bank: DetectorBank, values: Sequence[float], start_ms: int = 0) -> list[Signal]:
    """Residual current once a second."""
    signals = []
    for i, mA in enumerate(values):
        signals += bank.on_readings([leak(start_ms + i * 1000, mA)])
    return signals


def test_bank_raises_orange_leakage_after_10_s_above_300_ma_and_clears_below_280() -> None:
    bank = DetectorBank(lambda device_id: EFM)
    assert feed(bank, [150.0] * 10 + [350.0] * 10) == []  # 350 mA from 10 s to 19 s
    raised = bank.on_readings([leak(20_000, 350.0)])
    assert raised == [
        Signal(
            device_id="efm-1",
            rule="residual_current",
            active=True,
            ts_ms=20_000,
            value=350.0,
            severity=Severity.ORANGE,
            alert_class=AlertClass.HAZARD,
            hazard="leakage",
            message="剩余电流超限 / Residual current over limit: 350 mA (≥ 300)",
        )
    ]
    assert feed(bank, [290.0, 280.0], start_ms=21_000) == []  # within the 20 mA hysteresis
    cleared = bank.on_readings([leak(23_000, 150.0)])
    assert len(cleared) == 1
    assert (cleared[0].rule, cleared[0].active, cleared[0].severity) == (
        "residual_current",
        False,
        Severity.ORANGE,
    )
    assert cleared[0].message == "剩余电流超限 / Residual current over limit: 150 mA (< 280)"


def test_bank_alarm_steps_down_to_yellow_prewarning_between_220_and_280() -> None:
    bank = DetectorBank(lambda device_id: EFM)
    feed(bank, [350.0] * 11)
    [step_down] = bank.on_readings([leak(11_000, 270.0)])
    assert (step_down.active, step_down.severity) == (True, Severity.YELLOW)
    assert step_down.message.endswith("270 mA (≥ 240)")
    [clear] = bank.on_readings([leak(12_000, 200.0)])
    assert (clear.active, clear.severity) == (False, Severity.YELLOW)


def test_bank_ignores_other_metrics_devices_without_profile_and_spikes() -> None:
    bank = DetectorBank(lambda device_id: EFM if device_id == "efm-1" else None)
    assert bank.on_readings([leak(0, 900.0, device_id="stranger")]) == []
    assert bank.on_readings([Reading("efm-1", "voltage_v", 0, 900.0)]) == []
    assert feed(bank, [900.0] * 5 + [100.0] * 20) == []  # 4 s spike: under the 10 s delay
    assert bank.stage("efm-1", "residual_current") is N


def test_bank_arc_fault_has_no_delay() -> None:
    bank = DetectorBank(lambda device_id: EFM)
    assert bank.on_readings([Reading("efm-1", "arc_faults_per_s", 0, 9.0)]) == []
    [signal] = bank.on_readings([Reading("efm-1", "arc_faults_per_s", 1_000, 14.0)])
    assert (signal.rule, signal.severity, signal.hazard) == (
        "arc_fault",
        Severity.ORANGE,
        "arc_fault",
    )


def test_bank_events_raise_and_clear() -> None:
    bank = DetectorBank(lambda device_id: EFM)
    [raised] = bank.on_event(DeviceEvent("efm-1", "fault", 1_000))
    assert raised == Signal(
        "efm-1", "fault", True, 1_000, None, Severity.YELLOW, AlertClass.FAULT, "sensor_fault",
        "探测器故障 / Detector fault",
    )  # fmt: skip
    [cleared] = bank.on_event(DeviceEvent("efm-1", "fault_clear", 2_000))
    assert (cleared.rule, cleared.active, cleared.severity) == ("fault", False, Severity.YELLOW)
    assert cleared.message == "故障恢复 / Fault cleared"
    assert bank.on_event(DeviceEvent("efm-1", "self_test", 3_000)) == []
    assert bank.on_event(DeviceEvent("efm-1", "not_in_profile", 3_000)) == []


def test_bank_offline_after_five_missed_heartbeats_and_back_online() -> None:
    bank = DetectorBank(lambda device_id: EFM)  # heartbeat 60 s x 5
    assert bank.expect("efm-1", 0)
    assert (bank.is_online("efm-1"), bank.last_seen("efm-1")) == (True, None)
    assert bank.is_online("never-expected") is None
    assert bank.sweep(300_000) == []
    [offline] = bank.sweep(300_001)
    assert bank.is_online("efm-1") is False
    assert (offline.rule, offline.active, offline.severity) == ("offline", True, Severity.BLUE)
    assert (offline.alert_class, offline.hazard) == (AlertClass.FAULT, "offline")
    assert offline.message == "设备离线 / Device offline (last seen never)"
    assert bank.sweep(400_000) == []
    signals = bank.on_readings([leak(1_700_000_000_000, 120.0)])
    assert [(s.rule, s.active) for s in signals] == [("offline", False)]
    assert (bank.is_online("efm-1"), bank.last_seen("efm-1")) == (True, 1_700_000_000_000)


def test_bank_status_offline_is_immediate() -> None:
    bank = DetectorBank(lambda device_id: EFM)
    bank.on_readings([leak(1_700_000_000_000, 120.0)])
    [signal] = bank.on_status(StatusChange("efm-1", online=False, ts_ms=1_700_000_001_000))
    assert signal.active and signal.rule == "offline"
    assert signal.message == "设备离线 / Device offline (last seen 2023-11-15T06:13:20+08:00)"
    assert bank.on_status(StatusChange("efm-1", online=False, ts_ms=1_700_000_002_000)) == []
    [back] = bank.on_event(DeviceEvent("efm-1", "self_test", 1_700_000_003_000))
    assert (back.rule, back.active) == ("offline", False)


def test_bank_received_ms_protects_against_a_device_clock_that_is_behind() -> None:
    bank = DetectorBank(lambda device_id: EFM)
    day = 86_400_000
    bank.on_readings([leak(0, 120.0)], received_ms=day)  # device clock a day behind
    assert bank.sweep(day + 60_000) == []


def test_bank_state_survives_a_restart_mid_pending_and_mid_alarm() -> None:
    before = DetectorBank(lambda device_id: EFM)
    before.expect("quiet-1", 0)
    feed(before, [350.0] * 5)  # leak pending for 4 s
    before.on_readings([Reading("efm-1", "arc_faults_per_s", 0, 20.0)])  # arc alarm open
    saved = json_roundtrip(before.state())

    after = DetectorBank(lambda device_id: EFM)
    after.restore(saved)
    assert after.stage("efm-1", "arc_fault") is A
    signals = feed(after, [350.0] * 6, start_ms=5_000)
    assert [(s.rule, s.ts_ms) for s in signals] == [("residual_current", 10_000)]
    [clear] = after.on_readings([Reading("efm-1", "arc_faults_per_s", 11_000, 0.0)])
    assert (clear.rule, clear.active) == ("arc_fault", False)
    assert [s.device_id for s in after.sweep(300_001)] == ["quiet-1"]
    # A second save/restore keeps what was restored but not yet used.
    again = DetectorBank(lambda device_id: EFM)
    again.restore(json_roundtrip(after.state()))
    assert again.state() == after.state()


def test_bank_restore_rejects_corrupt_state_and_stays_as_it_was() -> None:
    bank = DetectorBank(lambda device_id: EFM)
    feed(bank, [350.0] * 11)
    good = bank.state()
    broken = json_roundtrip(good)
    rules = broken["rules"]
    assert isinstance(rules, dict)
    rules["efm-1"]["residual_current"]["stage"] = 9
    with pytest.raises(ValueError, match="efm-1"):
        bank.restore(broken)
    with pytest.raises(ValueError, match="version"):
        bank.restore({**good, "version": 99})
    assert bank.state() == good


def test_bank_profile_change_keeps_the_open_alarm_and_clears_it_under_new_bounds() -> None:
    profiles: dict[str, Profile] = {"efm-1": EFM}
    bank = DetectorBank(profiles.get)
    assert len(feed(bank, [350.0] * 11)) == 1
    rules = [
        r.model_copy(update={"alarm": StageSpec(value=400, severity=Severity.RED)})
        if r.name == "residual_current"
        else r
        for r in EFM.rules
    ]
    profiles["efm-1"] = EFM.model_copy(update={"rules": rules})
    [signal] = bank.on_readings([leak(11_000, 350.0)])  # 350 < 400 - 20: alarm over
    assert (signal.active, signal.severity) == (True, Severity.YELLOW)  # still >= 240


def test_bank_forget_drops_the_device() -> None:
    bank = DetectorBank(lambda device_id: EFM)
    bank.expect("efm-1", 0)
    feed(bank, [350.0] * 5)
    bank.forget("efm-1")
    assert bank.sweep(10**9) == []
    assert bank.state() == {"version": 2, "offline": {"devices": {}}, "rules": {}}
