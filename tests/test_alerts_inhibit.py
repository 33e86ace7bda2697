"""Inhibition: a parent offline, or a confirmed fire, suppresses what it explains.

Suppressed alerts are kept and shown with ``suppressed_by``; their state never changes.
Real SQLite file, injected clock, no sleeping.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.bus import AlertBus
from alerts.engine import AlertEngine
from alerts.inhibit import OFFLINE_RULE, Inhibitor, parents_from
from alerts.model import AlertChange, AlertClass, AlertState, Disposition, Severity, Signal
from alerts.store import ALERT_SCHEMA, AlertStore
from detectors.bank import OFFLINE_RULE as DETECTOR_OFFLINE_RULE
from gateway.errors import NotFoundError
from gateway.registry_model import Device
from gateway.sqlite import SqliteDatabase
from tests.clock import FakeClock

T0 = 1_796_083_200_000

#: A fire panel's transmission device behind the town's NB-IoT gateway, two panel
#: components behind the transmission device; smoke alarms and a monitor at a shop.
DEVICES = {
    d.id: d
    for d in [
        Device("gw-1", "gateway", "depot"),
        Device("td-1", "transmission_device", "factory", parent_id="gw-1"),
        Device("panel-c1", "fire_panel_component", "factory", parent_id="td-1"),
        Device("panel-c2", "fire_panel_component", "factory", parent_id="td-1"),
        Device("loop-a", "x", "factory", parent_id="loop-b"),
        Device("loop-b", "x", "factory", parent_id="loop-a"),
        Device("smk-1", "smoke_alarm_nbiot", "shop"),
        Device("heat-1", "heat_detector", "shop"),
        Device("emf-1", "electrical_fire_monitor", "shop"),
        Device("emf-9", "electrical_fire_monitor", "other-shop"),
    ]
}


def device(device_id: str) -> Device:
    try:
        return DEVICES[device_id]
    except KeyError:
        raise NotFoundError(f"device {device_id!r} not found") from None


def site_of(device_id: str) -> str | None:
    found = DEVICES.get(device_id)
    return found.site_id if found else None


def offline(device_id: str, ts: int, *, active: bool = True) -> Signal:
    return Signal(
        device_id, OFFLINE_RULE, active, ts, None, Severity.BLUE, AlertClass.FAULT, "offline"
    )


def hazard(
    device_id: str,
    rule: str,
    severity: Severity,
    hazard: str,
    ts: int,
    *,
    active: bool = True,
) -> Signal:
    return Signal(device_id, rule, active, ts, None, severity, AlertClass.HAZARD, hazard)


class Recorder:
    def __init__(self) -> None:
        self.changes: list[AlertChange] = []

    def on_change(self, change: AlertChange) -> None:
        self.changes.append(change)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def engine(db: SqliteDatabase, clock: FakeClock) -> AlertEngine:
    eng = AlertEngine(AlertStore(db), AlertBus(), site_of, clock=clock)
    eng.add_muter(Inhibitor(eng.view, parents_from(device)))
    await eng.start()
    return eng


def test_offline_rule_is_the_detectors_one() -> None:
    assert OFFLINE_RULE == DETECTOR_OFFLINE_RULE


async def test_parent_offline_suppresses_children_and_they_return_when_it_does(
    engine: AlertEngine,
) -> None:
    listener = Recorder()
    engine.add_listener(listener)
    # The sweep finds the components silent first, then their transmission device.
    [c1, c2] = await engine.handle([offline("panel-c1", T0), offline("panel-c2", T0)])
    assert not c1.alert.muted and not c2.alert.muted
    changes = await engine.handle([offline("td-1", T0 + 1000)])
    parent = changes[0]
    assert parent.kind == "raised" and not parent.alert.muted
    knock_on = {c.alert.id: c for c in changes[1:]}
    assert set(knock_on) == {c1.alert.id, c2.alert.id}
    for change in knock_on.values():
        assert change.kind == "updated"
        assert change.alert.suppressed_by == parent.alert.id
        assert change.alert.state is AlertState.RAISED, "state unchanged, still shown"
        assert change.alert.muted

    # A component that goes offline while the parent is offline is suppressed from the start.
    listener.changes.clear()
    await engine.handle([offline("panel-c1", T0 + 2000, active=False)])
    [late] = await engine.handle([offline("panel-c1", T0 + 3000)])
    assert late.alert.suppressed_by == parent.alert.id
    assert [(c.kind, c.alert.muted) for c in listener.changes] == [
        ("cleared", True),
        ("updated", True),
    ], "listeners can tell the alert is muted"

    # The transmission device comes back; the components are still offline: now they count.
    changes = await engine.handle([offline("td-1", T0 + 60_000, active=False)])
    assert changes[0].kind == "cleared"
    back = {c.alert.id: c.alert for c in changes[1:]}
    assert set(back) == {c1.alert.id, c2.alert.id}
    assert all(a.suppressed_by is None and not a.muted for a in back.values())
    assert all(a.state is AlertState.RAISED for a in back.values())

    history = await engine.history(c2.alert.id)
    assert [(t.from_state, t.to_state, t.note) for t in history[1:]] == [
        (AlertState.RAISED, AlertState.RAISED, f"suppressed by alert {parent.alert.id}"),
        (AlertState.RAISED, AlertState.RAISED, f"no longer suppressed by alert {parent.alert.id}"),
    ]


async def test_grandparent_offline_suppresses_the_whole_tree(engine: AlertEngine) -> None:
    [gw] = await engine.handle([offline("gw-1", T0)])
    changes = await engine.handle(
        [offline("td-1", T0 + 1), offline("panel-c1", T0 + 2), offline("smk-1", T0 + 3)]
    )
    by_device = {c.alert.device_id: c.alert for c in changes}
    assert by_device["td-1"].suppressed_by == gw.alert.id
    # The nearest offline ancestor explains it; either way it is muted.
    assert by_device["panel-c1"].suppressed_by in {gw.alert.id, by_device["td-1"].id}
    assert by_device["smk-1"].suppressed_by is None, "not behind the gateway"

    # Closing the gateway's alert (it was replaced) also lets go of what it suppressed.
    td = by_device["td-1"]
    await engine.close(gw.alert.id, "li", Disposition.DEVICE_FAULT, "gateway replaced")
    assert (await engine.get(td.id)).suppressed_by is None
    assert (await engine.get(by_device["panel-c1"].id)).suppressed_by == td.id


async def test_a_loop_in_the_registry_suppresses_nobody(engine: AlertEngine) -> None:
    changes = await engine.handle([offline("loop-a", T0), offline("loop-b", T0)])
    assert [c.alert.muted for c in changes] == [False, False]


async def test_confirmed_fire_suppresses_the_prewarnings_it_explains(
    engine: AlertEngine,
) -> None:
    [cable] = await engine.handle(
        [hazard("emf-1", "cable_temp_1", Severity.YELLOW, "overheating", T0)]
    )
    [temp] = await engine.handle([hazard("heat-1", "temperature", Severity.YELLOW, "fire", T0)])
    [leak] = await engine.handle(
        [hazard("emf-1", "residual_current", Severity.ORANGE, "leakage", T0)]
    )
    [elsewhere] = await engine.handle(
        [hazard("emf-9", "cable_temp_1", Severity.ORANGE, "overheating", T0)]
    )

    changes = await engine.handle([hazard("smk-1", "smoke_alarm", Severity.RED, "fire", T0 + 1)])
    fire = changes[0].alert
    assert not fire.muted, "the fire alarm itself is never suppressed"
    suppressed = {c.alert.id for c in changes[1:] if c.alert.suppressed_by == fire.id}
    assert suppressed == {cable.alert.id, temp.alert.id}
    assert not (await engine.get(leak.alert.id)).muted, "leakage is not explained by a fire"
    assert not (await engine.get(elsewhere.alert.id)).muted, "another site"

    # A pre-warning raised during the fire is suppressed from the start.
    [late] = await engine.handle(
        [hazard("emf-1", "cable_temp_2", Severity.ORANGE, "overheating", T0 + 2)]
    )
    assert late.kind == "raised" and late.alert.suppressed_by == fire.id

    # The temperature reaches the alarm stage: red, a fire in its own right, not suppressed.
    [up] = await engine.handle([hazard("heat-1", "temperature", Severity.RED, "fire", T0 + 3)])
    assert up.alert.severity is Severity.RED and up.alert.suppressed_by is None

    # The smoke alarm resets: the heat alarm still confirms the fire, so nothing is freed.
    changes = await engine.handle(
        [hazard("smk-1", "smoke_alarm", Severity.RED, "fire", T0 + 4, active=False)]
    )
    assert (await engine.get(cable.alert.id)).suppressed_by == up.alert.id
    # Once no fire alarm is active, the pre-warnings still present count again.
    changes = await engine.handle(
        [hazard("heat-1", "temperature", Severity.RED, "fire", T0 + 5, active=False)]
    )
    freed = {c.alert.id for c in changes if c.kind == "updated"}
    assert freed == {cable.alert.id, late.alert.id}
    for alert_id in freed:
        alert = await engine.get(alert_id)
        assert alert.suppressed_by is None and alert.state is AlertState.RAISED


async def test_suppression_survives_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "ewg.db"
    async with SqliteDatabase(path, schema=ALERT_SCHEMA) as db:
        engine = AlertEngine(AlertStore(db), AlertBus(), site_of, clock=clock)
        engine.add_muter(Inhibitor(engine.view, parents_from(device)))
        await engine.start()
        [parent] = await engine.handle([offline("td-1", T0)])
        [child] = await engine.handle([offline("panel-c1", T0 + 1)])
        assert child.alert.suppressed_by == parent.alert.id

    async with SqliteDatabase(path, schema=ALERT_SCHEMA) as db:
        engine = AlertEngine(AlertStore(db), AlertBus(), site_of, clock=clock)
        engine.add_muter(Inhibitor(engine.view, parents_from(device)))
        await engine.start()
        assert await engine.remute() == [], "nothing changed while it was down"
        assert (await engine.get(child.alert.id)).suppressed_by == parent.alert.id
        changes = await engine.handle([offline("td-1", T0 + 5000, active=False)])
        assert [c.alert.id for c in changes] == [parent.alert.id, child.alert.id]
        assert changes[1].alert.suppressed_by is None
