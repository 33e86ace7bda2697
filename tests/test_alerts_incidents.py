"""Incidents: one site's alerts close in time are one incident, worst severity on top.

Real SQLite file, injected clock, no sleeping.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from alerts.bus import AlertBus
from alerts.engine import AlertEngine
from alerts.model import AlertClass, AlertState, Disposition, Severity, Signal
from alerts.options import MINUTE_MS, AlertOptions
from alerts.store import ALERT_SCHEMA, AlertStore
from gateway.errors import NotFoundError
from gateway.sqlite import SqliteDatabase
from tests.clock import FakeClock

T0 = 1_796_083_200_000  # 2026-12-01 00:00 +08:00
WINDOW = 10 * MINUTE_MS
SITES = {
    "emf-1": "workshop",  # electrical fire monitor
    "heat-1": "workshop",
    "smk-1": "workshop",
    "smk-2": "workshop",
    "smk-9": "rental-house",
}


def fire_signal(
    device: str,
    ts: int,
    *,
    rule: str = "smoke_alarm",
    severity: Severity = Severity.RED,
    hazard: str = "fire",
    active: bool = True,
) -> Signal:
    return Signal(device, rule, active, ts, None, severity, AlertClass.HAZARD, hazard, rule)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def engine(db: SqliteDatabase, clock: FakeClock) -> AlertEngine:
    eng = AlertEngine(AlertStore(db), AlertBus(), SITES.get, clock=clock)
    await eng.start()
    return eng


async def test_one_fire_is_one_incident_with_red_on_top(engine: AlertEngine) -> None:
    # Cable overheating pre-warns, then the smoke alarm and the heat detector go off.
    [pre] = await engine.handle(
        [
            fire_signal(
                "emf-1", T0, rule="cable_temp_1", severity=Severity.YELLOW, hazard="overheating"
            )
        ]
    )
    incident_id = pre.alert.incident_id
    assert incident_id is not None
    held = engine.incident(incident_id)
    assert held is not None and held.severity is Severity.YELLOW

    [pre2] = await engine.handle(
        [fire_signal("heat-1", T0 + 60_000, rule="temperature", severity=Severity.YELLOW)]
    )
    [smoke] = await engine.handle([fire_signal("smk-1", T0 + 3 * MINUTE_MS)])
    [heat] = await engine.handle([fire_signal("heat-1", T0 + 4 * MINUTE_MS, rule="heat_alarm")])

    assert {c.alert.incident_id for c in (pre2, smoke, heat)} == {incident_id}
    [incident] = await engine.list_incidents()
    assert incident.id == incident_id
    assert incident.site_id == "workshop"
    assert incident.opened_at == T0
    assert incident.closed_at is None
    assert incident.severity is Severity.RED, "the worst open alert is on top"
    assert set(incident.alert_ids) == {pre.alert.id, pre2.alert.id, smoke.alert.id, heat.alert.id}
    assert engine.incident(incident_id) == incident


async def test_another_site_gets_another_incident(engine: AlertEngine) -> None:
    [a] = await engine.handle([fire_signal("smk-1", T0)])
    [b] = await engine.handle([fire_signal("smk-9", T0 + 1000)])
    assert a.alert.incident_id != b.alert.incident_id
    incidents = await engine.list_incidents()
    assert sorted(i.site_id for i in incidents) == ["rental-house", "workshop"]
    assert [i.site_id for i in await engine.list_incidents(site_ids=["rental-house"])] == [
        "rental-house"
    ]


async def test_after_a_quiet_window_a_new_incident_opens(engine: AlertEngine) -> None:
    # Alerts keep coming within the window of the latest one: one incident, however long.
    [first] = await engine.handle([fire_signal("smk-1", T0)])
    [second] = await engine.handle([fire_signal("smk-2", T0 + WINDOW)])
    [third] = await engine.handle([fire_signal("heat-1", T0 + 2 * WINDOW, rule="heat_alarm")])
    assert first.alert.incident_id == second.alert.incident_id == third.alert.incident_id

    # Then a window passes with nothing new: the next alert is another incident.
    [later] = await engine.handle(
        [
            fire_signal(
                "emf-1",
                T0 + 3 * WINDOW + 1,
                rule="arc_fault",
                severity=Severity.ORANGE,
                hazard="arc_fault",
            )
        ]
    )
    assert later.alert.incident_id != first.alert.incident_id
    assert len(await engine.list_incidents()) == 2


async def test_window_comes_from_the_options(db: SqliteDatabase, clock: FakeClock) -> None:
    engine = AlertEngine(
        AlertStore(db),
        AlertBus(),
        SITES.get,
        clock=clock,
        options=AlertOptions(incident_window_ms=60_000),
    )
    await engine.start()
    [a] = await engine.handle([fire_signal("smk-1", T0)])
    [b] = await engine.handle([fire_signal("smk-2", T0 + 60_001)])
    assert a.alert.incident_id != b.alert.incident_id


async def test_severity_follows_open_alerts_and_closing_all_closes_it(
    engine: AlertEngine, clock: FakeClock
) -> None:
    [pre] = await engine.handle(
        [
            fire_signal(
                "emf-1", T0, rule="cable_temp_1", severity=Severity.YELLOW, hazard="overheating"
            )
        ]
    )
    [smoke] = await engine.handle([fire_signal("smk-1", T0 + 1000)])
    incident_id = smoke.alert.incident_id
    assert incident_id is not None

    # A cleared alert is still open: it still counts.
    await engine.handle([fire_signal("smk-1", T0 + 2000, active=False)])
    assert (await engine.get_incident(incident_id)).severity is Severity.RED

    clock.now = T0 + 5 * MINUTE_MS
    await engine.close(smoke.alert.id, "li", Disposition.FALSE_ALARM, "cooking")
    incident = await engine.get_incident(incident_id)
    assert incident.severity is Severity.YELLOW, "the red alert is closed: yellow is the worst"
    assert incident.closed_at is None

    clock.now = T0 + 6 * MINUTE_MS
    await engine.close(pre.alert.id, "li", Disposition.REAL, "loose terminal tightened")
    incident = await engine.get_incident(incident_id)
    assert incident.closed_at == T0 + 6 * MINUTE_MS
    assert engine.incident(incident_id) is None

    # The site's incident is closed: a new alert, even inside the window, opens another.
    [again] = await engine.handle([fire_signal("smk-2", T0 + 7 * MINUTE_MS)])
    assert again.alert.incident_id not in (None, incident_id)
    listed = await engine.list_incidents()
    assert [(i.id == again.alert.incident_id, i.closed_at is None) for i in listed] == [
        (True, True),
        (False, False),
    ], "open incidents first"


async def test_incident_list_is_open_first_then_worst_first(engine: AlertEngine) -> None:
    await engine.handle(
        [fire_signal("smk-9", T0, rule="battery_low", severity=Severity.BLUE, hazard="battery")]
    )
    await engine.handle([fire_signal("smk-1", T0 + 1000)])
    listed = await engine.list_incidents(is_open=True)
    assert [(i.site_id, i.severity) for i in listed] == [
        ("workshop", Severity.RED),
        ("rental-house", Severity.BLUE),
    ]
    assert await engine.list_incidents(is_open=False) == []


async def test_alerts_of_unknown_devices_are_not_lumped_together(engine: AlertEngine) -> None:
    [a] = await engine.handle([fire_signal("stray-1", T0)])
    [b] = await engine.handle([fire_signal("stray-2", T0 + 1000)])
    assert a.alert.site_id == b.alert.site_id == ""
    assert a.alert.incident_id != b.alert.incident_id


async def test_incidents_survive_a_restart(db_path: Path, clock: FakeClock) -> None:
    async with SqliteDatabase(db_path, schema=ALERT_SCHEMA) as db:
        engine = AlertEngine(AlertStore(db), AlertBus(), SITES.get, clock=clock)
        await engine.start()
        [smoke] = await engine.handle([fire_signal("smk-1", T0)])

    async with SqliteDatabase(db_path, schema=ALERT_SCHEMA) as db:
        engine = AlertEngine(AlertStore(db), AlertBus(), SITES.get, clock=clock)
        await engine.start()
        [heat] = await engine.handle([fire_signal("heat-1", T0 + 2 * MINUTE_MS, rule="heat_alarm")])
        assert heat.alert.incident_id == smoke.alert.incident_id
        assert heat.alert.incident_id is not None
        incident = await engine.get_incident(heat.alert.incident_id)
        assert incident.alert_ids == (smoke.alert.id, heat.alert.id)
        assert [a.id for a in await engine.list(incident_id=incident.id)] == [
            heat.alert.id,
            smoke.alert.id,
        ]


async def test_unknown_incident_is_not_found(engine: AlertEngine) -> None:
    with pytest.raises(NotFoundError, match="incident 99"):
        await engine.get_incident(99)


#: The alerts table as the first release created it, before incidents, silences and flaps.
OLD_ALERTS = """
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, site_id TEXT NOT NULL,
    rule TEXT NOT NULL, severity TEXT NOT NULL, alert_class TEXT NOT NULL,
    hazard TEXT NOT NULL, state TEXT NOT NULL, raised_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL, value REAL, message TEXT NOT NULL DEFAULT '',
    count INTEGER NOT NULL DEFAULT 1, acknowledged INTEGER NOT NULL DEFAULT 0,
    acknowledged_by TEXT, acknowledged_at INTEGER, cleared_at INTEGER, closed_at INTEGER,
    closed_by TEXT, disposition TEXT, note TEXT NOT NULL DEFAULT ''
);
INSERT INTO alerts (device_id, site_id, rule, severity, alert_class, hazard, state,
                    raised_at, updated_at)
VALUES ('smk-1', 'workshop', 'smoke_alarm', 'red', 'hazard', 'fire', 'raised', 1000, 1000);
"""


async def test_a_database_from_before_incidents_is_upgraded(
    db_path: Path, clock: FakeClock
) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.executescript(OLD_ALERTS)
    async with SqliteDatabase(db_path, schema=ALERT_SCHEMA) as db:
        engine = AlertEngine(AlertStore(db), AlertBus(), SITES.get, clock=clock)
        await engine.start()
        [old] = engine.open_alerts()
        assert (old.incident_id, old.muted, old.flapping) == (None, False, False)
        [repeat] = await engine.handle([fire_signal("smk-1", 2000)])
        assert repeat.kind == "updated" and repeat.alert.id == old.id
        [new] = await engine.handle([fire_signal("heat-1", 3000, rule="heat_alarm")])
        assert new.alert.incident_id is not None
        await engine.close(old.id, "li", Disposition.TEST)
        assert (await engine.get(old.id)).state is AlertState.CLOSED
