"""DetectorBank.resume: alerts open before a restart clear by themselves afterwards."""

from __future__ import annotations

import pytest

from alerts.model import Alert, AlertClass, AlertState, Severity, Stage
from detectors import OFFLINE_RULE, DetectorBank
from gateway.model import Reading
from gateway.profiles import DEFAULT_PROFILE_DIR, Profile, load_profile

DEVICE = "efm-1"
START_MS = 1_000_000


@pytest.fixture(scope="module")
def monitor() -> Profile:
    return load_profile(DEFAULT_PROFILE_DIR / "electrical_fire_monitor.yaml")


def bank_for(monitor: Profile) -> DetectorBank:
    bank = DetectorBank(lambda device_id: monitor if device_id == DEVICE else None)
    assert bank.expect(DEVICE, START_MS)
    return bank


def alert(
    rule: str,
    severity: Severity,
    state: AlertState = AlertState.RAISED,
    device_id: str = DEVICE,
    alert_class: AlertClass = AlertClass.HAZARD,
) -> Alert:
    return Alert(
        id=1,
        device_id=device_id,
        site_id="site-1",
        rule=rule,
        severity=severity,
        alert_class=alert_class,
        hazard="leakage",
        state=state,
        raised_at=START_MS - 60_000,
        updated_at=START_MS - 60_000,
        value=320.0,
    )


def leak(ts_ms: int, mA: float) -> Reading:
    return Reading(DEVICE, "residual_current_ma", ts_ms, mA)


@pytest.mark.parametrize("state", [AlertState.RAISED, AlertState.ACKNOWLEDGED])
def test_resumed_alarm_clears_on_first_normal_reading(monitor: Profile, state: AlertState) -> None:
    bank = bank_for(monitor)
    bank.resume([alert("residual_current", Severity.ORANGE, state)], START_MS)
    assert bank.stage(DEVICE, "residual_current") is Stage.ALARM

    signals = bank.on_readings([leak(START_MS + 1_000, 150.0)])

    assert len(signals) == 1
    (signal,) = signals
    assert signal.rule == "residual_current"
    assert signal.active is False
    assert signal.severity is Severity.ORANGE
    assert bank.stage(DEVICE, "residual_current") is Stage.NORMAL


def test_resumed_alarm_does_not_reraise(monitor: Profile) -> None:
    bank = bank_for(monitor)
    bank.resume([alert("residual_current", Severity.ORANGE)], START_MS)

    for i in range(5):  # well past the 10 s delay
        assert bank.on_readings([leak(START_MS + i * 5_000, 330.0)]) == []
    assert bank.stage(DEVICE, "residual_current") is Stage.ALARM


def test_resumed_prewarning_starts_in_prewarning(monitor: Profile) -> None:
    bank = bank_for(monitor)
    bank.resume([alert("residual_current", Severity.YELLOW)], START_MS)
    assert bank.stage(DEVICE, "residual_current") is Stage.PREWARNING

    assert bank.on_readings([leak(START_MS + 1_000, 250.0)]) == []
    (signal,) = bank.on_readings([leak(START_MS + 2_000, 150.0)])
    assert (signal.rule, signal.active, signal.severity) == (
        "residual_current",
        False,
        Severity.YELLOW,
    )


def test_unmatched_severity_resumes_alarm(monitor: Profile) -> None:
    bank = bank_for(monitor)
    bank.resume([alert("residual_current", Severity.RED)], START_MS)
    assert bank.stage(DEVICE, "residual_current") is Stage.ALARM


def test_resumed_offline_comes_back_online(monitor: Profile) -> None:
    bank = bank_for(monitor)
    offline = alert(OFFLINE_RULE, Severity.BLUE, alert_class=AlertClass.FAULT)
    bank.resume([offline], START_MS)
    assert bank.is_online(DEVICE) is False

    timeout_ms = monitor.offline_after_s * 1000
    assert bank.sweep(START_MS + timeout_ms + 1) == []

    signals = bank.on_readings([leak(START_MS + timeout_ms + 2_000, 150.0)])
    (signal,) = signals
    assert signal.rule == OFFLINE_RULE
    assert signal.active is False
    assert signal.device_id == DEVICE
    assert bank.is_online(DEVICE) is True
    # Back online: a later silence is reported again, once.
    later = START_MS + 3 * timeout_ms
    assert [(s.rule, s.active) for s in bank.sweep(later)] == [(OFFLINE_RULE, True)]


def test_resumed_offline_of_unexpected_device(monitor: Profile) -> None:
    bank = DetectorBank(lambda device_id: monitor)
    bank.resume([alert(OFFLINE_RULE, Severity.BLUE, device_id="efm-2")], START_MS)
    assert bank.is_online("efm-2") is False
    assert bank.sweep(START_MS + 10 * monitor.offline_after_s * 1000) == []


def test_cleared_alert_resumes_nothing(monitor: Profile) -> None:
    bank = bank_for(monitor)
    bank.resume(
        [
            alert("residual_current", Severity.ORANGE, AlertState.CLEARED),
            alert(OFFLINE_RULE, Severity.BLUE, AlertState.CLEARED),
        ],
        START_MS,
    )
    assert bank.stage(DEVICE, "residual_current") is Stage.NORMAL
    assert bank.is_online(DEVICE) is True
    assert bank.on_readings([leak(START_MS + 1_000, 150.0)]) == []


def test_unknown_rule_event_and_device_are_ignored(monitor: Profile) -> None:
    bank = bank_for(monitor)
    bank.resume(
        [
            alert("no_such_rule", Severity.ORANGE),
            alert("fault", Severity.YELLOW, alert_class=AlertClass.FAULT),  # an event type
            alert("residual_current", Severity.ORANGE, device_id="unknown-9"),
            alert(OFFLINE_RULE, Severity.BLUE, device_id="unknown-9"),
        ],
        START_MS,
    )
    assert bank.is_online(DEVICE) is True
    assert bank.is_online("unknown-9") is None
    assert bank.stage(DEVICE, "residual_current") is Stage.NORMAL
    assert bank.stage("unknown-9", "residual_current") is Stage.NORMAL
    assert bank.on_readings([leak(START_MS + 1_000, 150.0)]) == []
