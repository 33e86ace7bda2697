"""Flap damping: an alert that keeps raising and clearing is held as one until it settles.

Real SQLite file, injected clock, no sleeping: the engine's timer is driven by
calling ``tick()`` after moving the clock.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.bus import AlertBus
from alerts.engine import AlertEngine
from alerts.model import AlertChange, AlertClass, AlertState, Severity, Signal
from alerts.options import MINUTE_MS, AlertOptions
from alerts.store import ALERT_SCHEMA, AlertStore
from gateway.sqlite import SqliteDatabase
from tests.clock import FakeClock

T0 = 1_796_083_200_000
S = 1000
SETTLE = AlertOptions().flap_settle_ms
SITES = {"smk-1": "rental-house"}


def smoke(ts: int, active: bool = True) -> Signal:
    """A smoke alarm with a loose contact."""
    return Signal("smk-1", "smoke_alarm", active, ts, None, Severity.RED, AlertClass.HAZARD, "fire")


def flapping_sequence(start: int) -> list[Signal]:
    """Raise, then clear / re-fire / clear / re-fire every 10 s: the 4th change flaps."""
    return [smoke(start + i * 10 * S, active=i % 2 == 0) for i in range(5)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def engine(db: SqliteDatabase, clock: FakeClock) -> AlertEngine:
    eng = AlertEngine(AlertStore(db), AlertBus(), SITES.get, clock=clock)
    await eng.start()
    return eng


def kinds(changes: list[AlertChange]) -> list[tuple[str, AlertState, bool]]:
    return [(c.kind, c.alert.state, c.alert.flapping) for c in changes]


async def test_flapping_alert_is_held_as_one_then_settles_clear(
    engine: AlertEngine, clock: FakeClock
) -> None:
    changes = await engine.handle(flapping_sequence(T0))
    assert kinds(changes) == [
        ("raised", AlertState.RAISED, False),
        ("cleared", AlertState.CLEARED, False),
        ("updated", AlertState.RAISED, False),
        ("cleared", AlertState.CLEARED, False),
        ("updated", AlertState.RAISED, True),  # cleared and back twice: flapping
    ]
    alert_id = changes[0].alert.id
    lines = len(await engine.history(alert_id))

    # It goes on flipping: no more clears, no re-fires, no history lines; it stays open.
    more = await engine.handle(
        [smoke(T0 + 50 * S, False), smoke(T0 + 60 * S), smoke(T0 + 70 * S, False)]
    )
    assert kinds(more) == [("updated", AlertState.RAISED, True)] * 3
    assert len(await engine.history(alert_id)) == lines
    assert [a.id for a in engine.open_alerts()] == [alert_id]

    # Quiet since the last flip at +70 s: just before the settle period nothing happens ...
    clock.now = T0 + 70 * S + SETTLE - 1
    assert await engine.tick() == []
    # ... then it settles into the state of the last signal: clear.
    clock.now = T0 + 70 * S + SETTLE + 3 * S  # the timer may notice it a little late
    [settled] = await engine.tick()
    assert settled.kind == "cleared"
    alert = settled.alert
    assert (alert.state, alert.flapping, alert.cleared_at) == (
        AlertState.CLEARED,
        False,
        T0 + 70 * S,
    )
    last = (await engine.history(alert_id))[-1]
    assert (last.from_state, last.to_state, last.note) == (
        AlertState.RAISED,
        AlertState.CLEARED,
        "settled after flapping: clear",
    )
    assert last.ts_ms == T0 + 70 * S + SETTLE, "settles when it became quiet, not when seen"
    assert len(await engine.list()) == 1, "one alert throughout"


async def test_flapping_alert_that_stays_active_settles_active(
    engine: AlertEngine, clock: FakeClock
) -> None:
    changes = await engine.handle(flapping_sequence(T0))
    assert changes[-1].alert.flapping
    # Active repeats are not flips: they do not hold off settling.
    await engine.handle([smoke(T0 + 2 * MINUTE_MS), smoke(T0 + 3 * MINUTE_MS)])
    clock.now = T0 + 40 * S + SETTLE
    [settled] = await engine.tick()
    assert settled.kind == "updated"
    assert (settled.alert.state, settled.alert.flapping) == (AlertState.RAISED, False)
    assert settled.alert.count == 5


async def test_the_next_signal_settles_it_without_the_timer(engine: AlertEngine) -> None:
    await engine.handle(flapping_sequence(T0))
    await engine.handle([smoke(T0 + 50 * S, False)])
    # Long after, the alarm fires again: first it settles (clear), then it re-fires.
    changes = await engine.handle([smoke(T0 + 50 * S + SETTLE + MINUTE_MS)])
    assert kinds(changes) == [
        ("cleared", AlertState.CLEARED, False),
        ("updated", AlertState.RAISED, False),
    ]


async def test_slow_changes_never_flap(engine: AlertEngine) -> None:
    gap = 4 * MINUTE_MS  # four changes span more than the 10 min window
    changes = await engine.handle([smoke(T0 + i * gap, active=i % 2 == 0) for i in range(7)])
    assert not any(c.alert.flapping for c in changes)
    assert [c.kind for c in changes] == ["raised"] + ["cleared", "updated"] * 3


async def test_flap_thresholds_come_from_the_options(db: SqliteDatabase, clock: FakeClock) -> None:
    engine = AlertEngine(
        AlertStore(db),
        AlertBus(),
        SITES.get,
        clock=clock,
        options=AlertOptions(flap_transitions=2, flap_settle_ms=MINUTE_MS),
    )
    await engine.start()
    changes = await engine.handle([smoke(T0), smoke(T0 + S, False), smoke(T0 + 2 * S)])
    assert kinds(changes)[-1] == ("updated", AlertState.RAISED, True)
    clock.now = T0 + 2 * S + MINUTE_MS
    [settled] = await engine.tick()
    assert not settled.alert.flapping


async def test_a_restart_mid_flap_settles_into_the_right_state(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "ewg.db"
    async with SqliteDatabase(path, schema=ALERT_SCHEMA) as db:
        engine = AlertEngine(AlertStore(db), AlertBus(), SITES.get, clock=clock)
        await engine.start()
        await engine.handle(flapping_sequence(T0))
        await engine.handle([smoke(T0 + 50 * S, False)])

    async with SqliteDatabase(path, schema=ALERT_SCHEMA) as db:
        engine = AlertEngine(AlertStore(db), AlertBus(), SITES.get, clock=clock)
        await engine.start()
        [held] = engine.open_alerts()
        assert (held.state, held.flapping, held.flap_active) == (AlertState.RAISED, True, False)
        clock.now = T0 + 50 * S + SETTLE
        [settled] = await engine.tick()
        assert settled.alert.state is AlertState.CLEARED
