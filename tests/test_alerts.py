"""The alert engine against a real SQLite file, with an injected clock (no sleeping)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from alerts import (
    ALERT_SCHEMA,
    Alert,
    AlertBus,
    AlertClass,
    AlertEngine,
    AlertState,
    AlertStore,
    Disposition,
    Severity,
    Signal,
    Transition,
)
from gateway.errors import ConflictError, NotFoundError, StoreError
from gateway.sqlite import SqliteDatabase
from tests.clock import FakeClock

SITES = {"emf-1": "site-a", "emf-2": "site-b", "gas-1": "site-b"}
RULE = "residual_current"


def sig(
    ts: int,
    *,
    active: bool = True,
    value: float | None = 350.0,
    severity: Severity = Severity.YELLOW,
    device: str = "emf-1",
    rule: str = RULE,
    alert_class: AlertClass = AlertClass.HAZARD,
) -> Signal:
    return Signal(
        device_id=device,
        rule=rule,
        active=active,
        ts_ms=ts,
        value=value,
        severity=severity,
        alert_class=alert_class,
        hazard="electrical_leakage",
        message=f"residual current {value} mA",
    )


def steps(history: list[Transition]) -> list[tuple[str, AlertState | None, AlertState, int]]:
    return [(t.actor, t.from_state, t.to_state, t.ts_ms) for t in history]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def bus() -> AlertBus:
    return AlertBus()


@pytest.fixture
async def engine(db: SqliteDatabase, bus: AlertBus, clock: FakeClock) -> AlertEngine:
    eng = AlertEngine(AlertStore(db), bus, SITES.get, clock=clock)
    await eng.start()
    return eng


async def test_full_lifecycle_is_recorded_step_by_step(
    engine: AlertEngine, clock: FakeClock
) -> None:
    [raised] = await engine.handle([sig(1000, value=350.0)])
    assert raised.kind == "raised"
    alert_id = raised.alert.id
    assert raised.alert.state is AlertState.RAISED
    assert raised.alert.site_id == "site-a"
    assert raised.alert.raised_at == 1000
    assert raised.alert.count == 1

    changes = await engine.handle([sig(2000, value=360.0), sig(3000, value=420.0)])
    assert [c.kind for c in changes] == ["updated", "updated"]
    alert = await engine.get(alert_id)
    assert (alert.count, alert.value, alert.updated_at) == (3, 420.0, 3000)

    await engine.handle([sig(4000, value=480.0, severity=Severity.ORANGE)])
    assert (await engine.get(alert_id)).severity is Severity.ORANGE
    await engine.handle([sig(5000, value=400.0, severity=Severity.YELLOW)])
    alert = await engine.get(alert_id)
    assert alert.severity is Severity.ORANGE, "never downgraded while open"
    assert alert.count == 5

    [cleared] = await engine.handle([sig(6000, active=False, value=120.0)])
    assert cleared.kind == "cleared"
    assert cleared.alert.state is AlertState.CLEARED
    assert cleared.alert.cleared_at == 6000

    [refired] = await engine.handle([sig(7000, value=390.0)])
    assert refired.kind == "updated"
    assert refired.alert.state is AlertState.RAISED
    assert refired.alert.cleared_at is None
    assert refired.alert.id == alert_id

    clock.now = 8000
    acked = await engine.acknowledge(alert_id, "li", "on my way")
    assert acked.state is AlertState.ACKNOWLEDGED
    assert (acked.acknowledged, acked.acknowledged_by, acked.acknowledged_at) == (True, "li", 8000)

    clock.now = 9000
    closed = await engine.close(alert_id, "wang", Disposition.FALSE_ALARM, "dust on the sensor")
    assert closed.state is AlertState.CLOSED
    assert closed.disposition is Disposition.FALSE_ALARM
    assert (closed.closed_by, closed.closed_at, closed.note) == ("wang", 9000, "dust on the sensor")
    assert await engine.get(alert_id) == closed
    assert engine.open_alerts() == []

    history = await engine.history(alert_id)
    assert steps(history) == [
        ("system", None, AlertState.RAISED, 1000),
        ("system", AlertState.RAISED, AlertState.RAISED, 4000),
        ("system", AlertState.RAISED, AlertState.CLEARED, 6000),
        ("system", AlertState.CLEARED, AlertState.RAISED, 7000),
        ("li", AlertState.RAISED, AlertState.ACKNOWLEDGED, 8000),
        ("wang", AlertState.ACKNOWLEDGED, AlertState.CLOSED, 9000),
    ]
    assert history[1].note == "severity yellow -> orange"
    assert history[4].note == "on my way"
    assert history[5].note == "dust on the sensor"
    assert all(t.alert_id == alert_id for t in history)


async def test_acknowledging_a_cleared_alert_keeps_it_cleared_and_it_refires_acknowledged(
    engine: AlertEngine, clock: FakeClock
) -> None:
    [raised] = await engine.handle([sig(1000)])
    alert_id = raised.alert.id
    await engine.handle([sig(2000, active=False)])

    clock.now = 3000
    acked = await engine.acknowledge(alert_id, "li")
    assert acked.state is AlertState.CLEARED
    assert acked.acknowledged and acked.acknowledged_by == "li"

    [refired] = await engine.handle([sig(4000)])
    assert refired.alert.state is AlertState.ACKNOWLEDGED
    [cleared] = await engine.handle([sig(5000, active=False)])
    assert cleared.alert.state is AlertState.CLEARED

    history = await engine.history(alert_id)
    assert steps(history)[2:] == [
        ("li", AlertState.CLEARED, AlertState.CLEARED, 3000),
        ("system", AlertState.CLEARED, AlertState.ACKNOWLEDGED, 4000),
        ("system", AlertState.ACKNOWLEDGED, AlertState.CLEARED, 5000),
    ]
    assert history[2].note == "acknowledged"


async def test_illegal_transitions_are_refused(engine: AlertEngine) -> None:
    [raised] = await engine.handle([sig(1000)])
    alert_id = raised.alert.id
    await engine.acknowledge(alert_id, "li")
    with pytest.raises(ConflictError, match=f"alert {alert_id} is already acknowledged"):
        await engine.acknowledge(alert_id, "wang")

    await engine.handle([sig(2000, active=False)])
    with pytest.raises(ConflictError, match="already acknowledged"):
        await engine.acknowledge(alert_id, "wang")  # cleared but acknowledged before

    await engine.close(alert_id, "wang", Disposition.REAL)
    with pytest.raises(ConflictError, match=f"alert {alert_id} is closed"):
        await engine.close(alert_id, "wang", Disposition.REAL)
    with pytest.raises(ConflictError, match=f"alert {alert_id} is closed"):
        await engine.acknowledge(alert_id, "li")

    # The refusals wrote nothing.
    assert len(await engine.history(alert_id)) == 4


async def test_unknown_alert_id_is_not_found(engine: AlertEngine) -> None:
    with pytest.raises(NotFoundError):
        await engine.get(999)
    with pytest.raises(NotFoundError):
        await engine.acknowledge(999, "li")
    with pytest.raises(NotFoundError):
        await engine.close(999, "li", Disposition.TEST)
    with pytest.raises(NotFoundError):
        await engine.history(999)


async def test_actions_need_an_actor(engine: AlertEngine) -> None:
    [raised] = await engine.handle([sig(1000)])
    with pytest.raises(ValueError, match="actor"):
        await engine.acknowledge(raised.alert.id, " ")
    with pytest.raises(ValueError, match="actor"):
        await engine.close(raised.alert.id, "", Disposition.TEST)


async def test_inactive_signals_without_a_clearable_alert_are_ignored(
    engine: AlertEngine,
) -> None:
    assert await engine.handle([sig(1000, active=False)]) == []
    await engine.handle([sig(2000), sig(3000, active=False)])
    assert await engine.handle([sig(4000, active=False)]) == [], "already cleared"
    assert len(await engine.list()) == 1


async def test_signal_after_close_raises_a_new_alert(engine: AlertEngine) -> None:
    [first] = await engine.handle([sig(1000)])
    await engine.close(first.alert.id, "li", Disposition.MAINTENANCE)

    [second] = await engine.handle([sig(2000)])
    assert second.kind == "raised"
    assert second.alert.id != first.alert.id
    assert second.alert.count == 1
    assert (await engine.get(first.alert.id)).state is AlertState.CLOSED
    assert [a.id for a in engine.open_alerts()] == [second.alert.id]


async def test_unknown_device_gets_an_empty_site(engine: AlertEngine) -> None:
    [raised] = await engine.handle([sig(1000, device="stray-9")])
    assert raised.alert.site_id == ""


async def test_keys_are_device_and_rule(engine: AlertEngine) -> None:
    changes = await engine.handle(
        [sig(1000), sig(1000, rule="cable_temp_1"), sig(1000, device="emf-2")]
    )
    assert [c.kind for c in changes] == ["raised"] * 3
    assert len({c.alert.id for c in changes}) == 3


async def test_restart_updates_the_same_open_alert(db_path: Path, clock: FakeClock) -> None:
    async with SqliteDatabase(db_path, schema=ALERT_SCHEMA) as db:
        engine = AlertEngine(AlertStore(db), AlertBus(), SITES.get, clock=clock)
        await engine.start()
        [raised] = await engine.handle([sig(1000)])
        await engine.acknowledge(raised.alert.id, "li")
        await engine.handle([sig(2000, active=False)])

    async with SqliteDatabase(db_path, schema=ALERT_SCHEMA) as db:
        engine = AlertEngine(AlertStore(db), AlertBus(), SITES.get, clock=clock)
        await engine.start()
        [change] = await engine.handle([sig(3000, value=500.0)])
        assert change.kind == "updated"
        assert change.alert.id == raised.alert.id
        assert change.alert.count == 2
        assert change.alert.state is AlertState.ACKNOWLEDGED, "acknowledgement survives restart"
        assert len(await engine.list()) == 1


async def test_handle_before_start_is_refused(db: SqliteDatabase, clock: FakeClock) -> None:
    engine = AlertEngine(AlertStore(db), AlertBus(), SITES.get, clock=clock)
    with pytest.raises(RuntimeError, match="start"):
        await engine.handle([sig(1000)])


async def test_concurrent_signals_for_one_key_make_exactly_one_alert(
    engine: AlertEngine,
) -> None:
    results = await asyncio.gather(*(engine.handle([sig(1000 + i)]) for i in range(200)))

    kinds = [change.kind for changes in results for change in changes]
    assert kinds.count("raised") == 1
    assert kinds.count("updated") == 199
    [alert] = await engine.list()
    assert alert.count == 200
    assert alert.updated_at == 1199
    assert len(engine.open_alerts()) == 1


async def test_concurrent_signals_and_close_lose_no_repeat(engine: AlertEngine) -> None:
    [first] = await engine.handle([sig(0)])

    async def close_first() -> None:
        await engine.close(first.alert.id, "li", Disposition.TEST)

    tasks = [engine.handle([sig(i)]) for i in range(1, 100)]
    await asyncio.gather(*tasks[:50], close_first(), *tasks[50:])

    alerts = await engine.list()
    assert sum(a.count for a in alerts) == 100, "every signal counted exactly once"
    assert len([a for a in alerts if a.is_open]) == 1


async def test_subscriber_sees_changes_in_order(engine: AlertEngine, bus: AlertBus) -> None:
    async with bus.subscribe() as changes:
        await engine.handle([sig(1000), sig(2000)])
        await engine.handle([sig(3000, active=False)])
        bus.close()
        received = [(c.kind, c.alert.count, c.alert.state) async for c in changes]
    assert received == [
        ("raised", 1, AlertState.RAISED),
        ("updated", 2, AlertState.RAISED),
        ("cleared", 2, AlertState.CLEARED),
    ]


async def test_returned_alerts_are_copies(engine: AlertEngine) -> None:
    [raised] = await engine.handle([sig(1000)])
    raised.alert.count = 99
    acked = await engine.acknowledge(raised.alert.id, "li")
    acked.state = AlertState.CLOSED
    engine.open_alerts()[0].severity = Severity.BLUE

    [change] = await engine.handle([sig(2000)])
    assert change.alert.count == 2
    assert change.alert.state is AlertState.ACKNOWLEDGED
    assert change.alert.severity is Severity.YELLOW


class FailingStore(AlertStore):
    """Fails the next save, like a full disk would."""

    fail_next = False

    async def save(self, alert: Alert, transition: Transition) -> None:
        if self.fail_next:
            self.fail_next = False
            raise StoreError("disk full")
        await super().save(alert, transition)


async def test_failed_write_changes_nothing(
    db: SqliteDatabase, bus: AlertBus, clock: FakeClock
) -> None:
    store = FailingStore(db)
    engine = AlertEngine(store, bus, SITES.get, clock=clock)
    await engine.start()
    [raised] = await engine.handle([sig(1000)])

    async with bus.subscribe() as changes:
        store.fail_next = True
        with pytest.raises(StoreError):
            await engine.acknowledge(raised.alert.id, "li")
        assert engine.open_alerts()[0].state is AlertState.RAISED
        assert (await engine.get(raised.alert.id)).state is AlertState.RAISED

        acked = await engine.acknowledge(raised.alert.id, "li")
        assert acked.state is AlertState.ACKNOWLEDGED
        bus.close()
        assert [c.kind async for c in changes] == ["acknowledged"], "nothing published on failure"


async def test_list_passes_filters_through(engine: AlertEngine) -> None:
    await engine.handle(
        [
            sig(1000, device="emf-1"),
            sig(2000, device="emf-2", severity=Severity.RED),
            sig(3000, device="gas-1", rule="lel", alert_class=AlertClass.FAULT),
        ]
    )
    assert [a.device_id for a in await engine.list(site_ids=["site-b"])] == ["gas-1", "emf-2"]
    assert [a.device_id for a in await engine.list(severity=Severity.RED)] == ["emf-2"]
    assert [a.device_id for a in await engine.list(alert_class=AlertClass.FAULT)] == ["gas-1"]
    assert [a.device_id for a in await engine.list(states=[AlertState.RAISED], limit=1)] == [
        "gas-1"
    ]


async def test_start_indexes_the_newest_of_duplicate_open_alerts(
    db: SqliteDatabase, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = AlertStore(db)
    seed = AlertEngine(store, AlertBus(), SITES.get, clock=clock)
    await seed.start()
    [old] = await seed.handle([sig(1000)])
    # A second open alert for the same key, as an older version or a manual fix might leave.
    dup = await store.insert(dataclasses.replace(old.alert, raised_at=2000))

    engine = AlertEngine(store, AlertBus(), SITES.get, clock=clock)
    await engine.start()
    assert "both open" in caplog.text
    [change] = await engine.handle([sig(3000)])
    assert change.alert.id == dup.id

    await engine.close(old.alert.id, "li", Disposition.DEVICE_FAULT, "duplicate")
    assert [a.id for a in engine.open_alerts()] == [dup.id], "closing the stray keeps the index"


async def test_listeners_see_every_change_and_a_broken_one_harms_nothing(
    engine: AlertEngine,
) -> None:
    from alerts.model import AlertChange

    class Recorder:
        def __init__(self) -> None:
            self.kinds: list[str] = []

        def on_change(self, change: AlertChange) -> None:
            self.kinds.append(change.kind)

    class Broken:
        def on_change(self, change: AlertChange) -> None:
            raise RuntimeError("listener bug")

    recorder = Recorder()
    engine.add_listener(Broken())
    engine.add_listener(recorder)
    [raised] = await engine.handle([sig(1_000)])
    await engine.acknowledge(raised.alert.id, "duty")
    await engine.close(raised.alert.id, "duty", Disposition.TEST)
    assert recorder.kinds == ["raised", "acknowledged", "closed"]
    assert (await engine.get(raised.alert.id)).state is AlertState.CLOSED
