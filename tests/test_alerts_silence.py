"""Silences: maintenance windows that mark matching alerts silenced and end by themselves.

Real SQLite file (with the audit log), injected clock, no sleeping.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.bus import AlertBus
from alerts.engine import AlertEngine
from alerts.model import AlertClass, AlertState, Disposition, Severity, Signal
from alerts.options import DAY_MS, MINUTE_MS
from alerts.silence import Matchers, Silences, SilenceState
from alerts.store import ALERT_SCHEMA, AlertStore
from gateway.audit import AuditLog
from gateway.errors import ConflictError, NotFoundError
from gateway.sqlite import SqliteDatabase
from tests.clock import FakeClock

T0 = 1_796_083_200_000
HOUR = 60 * MINUTE_MS
SITES = {"emf-1": "workshop", "emf-2": "workshop", "smk-1": "workshop", "smk-9": "shop"}


def leak(device: str = "emf-1", *, ts: int = T0, active: bool = True) -> Signal:
    return Signal(
        device,
        "residual_current",
        active,
        ts,
        320.0,
        Severity.ORANGE,
        AlertClass.HAZARD,
        "leakage",
    )


def battery(device: str = "smk-1", *, ts: int = T0) -> Signal:
    return Signal(device, "battery_low", True, ts, 2.4, Severity.BLUE, AlertClass.FAULT, "battery")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def silences(db: SqliteDatabase, clock: FakeClock) -> Silences:
    found = Silences(db, clock)
    await found.load()
    return found


@pytest.fixture
async def engine(db: SqliteDatabase, clock: FakeClock, silences: Silences) -> AlertEngine:
    eng = AlertEngine(AlertStore(db), AlertBus(), SITES.get, clock=clock, muters=[silences])
    await eng.start()
    return eng


async def silence(silences: Silences, hours: float = 2, **matchers: str) -> int:
    alert_class = matchers.get("alert_class")
    created = await silences.create(
        Matchers(
            site_id=matchers.get("site_id"),
            device_id=matchers.get("device_id"),
            rule=matchers.get("rule"),
            alert_class=None if alert_class is None else AlertClass(alert_class),
        ),
        ends_at=T0 + int(hours * HOUR),
        reason="electrician testing the monitors",
        actor="li",
    )
    return created.id


@pytest.mark.parametrize(
    ("matchers", "silenced", "not_silenced"),
    [
        ({"site_id": "workshop"}, [leak(), battery()], [battery("smk-9")]),
        ({"device_id": "emf-1"}, [leak()], [leak("emf-2"), battery()]),
        ({"rule": "residual_current"}, [leak(), leak("emf-2")], [battery()]),
        ({"alert_class": "fault"}, [battery(), battery("smk-9")], [leak()]),
    ],
    ids=["site", "device", "rule", "class"],
)
async def test_alerts_raised_under_a_silence_are_recorded_as_silenced(
    engine: AlertEngine,
    silences: Silences,
    matchers: dict[str, str],
    silenced: list[Signal],
    not_silenced: list[Signal],
) -> None:
    sid = await silence(silences, 2, **matchers)
    for signal in silenced:
        [change] = await engine.handle([signal])
        assert change.kind == "raised"
        assert change.alert.silenced_by == sid and change.alert.muted
        assert change.alert.state is AlertState.RAISED, "raised, stored and shown all the same"
        [first] = await engine.history(change.alert.id)
        assert first.note == f"silenced by silence {sid}"
    for signal in not_silenced:
        [change] = await engine.handle([signal])
        assert change.alert.silenced_by is None and not change.alert.muted


async def test_all_matchers_must_match(engine: AlertEngine, silences: Silences) -> None:
    await silence(silences, site_id="workshop", rule="battery_low")
    [a] = await engine.handle([leak()])
    [b] = await engine.handle([battery()])
    assert (a.alert.muted, b.alert.muted) == (False, True)


async def test_a_silence_ends_by_itself(
    engine: AlertEngine, silences: Silences, clock: FakeClock
) -> None:
    sid = await silence(silences, hours=1, site_id="workshop")
    [raised] = await engine.handle([leak()])
    assert raised.alert.silenced_by == sid

    clock.now = T0 + HOUR - 1
    assert await engine.tick() == []
    assert (await silences.get(sid)).state(clock.now) is SilenceState.ACTIVE
    clock.now = T0 + HOUR
    [ended] = await engine.tick()
    assert ended.kind == "updated"
    assert ended.alert.silenced_by is None and not ended.alert.muted
    assert ended.alert.state is AlertState.RAISED
    assert (await engine.history(raised.alert.id))[-1].note == f"silence {sid} no longer applies"
    assert (await silences.get(sid)).state(clock.now) is SilenceState.EXPIRED
    # Expired: new alerts are not silenced any more.
    [later] = await engine.handle([battery(ts=T0 + HOUR + 1)])
    assert not later.alert.muted


async def test_a_planned_silence_starts_by_itself(
    engine: AlertEngine, silences: Silences, clock: FakeClock
) -> None:
    [open_alert] = await engine.handle([leak()])
    planned = await silences.create(
        Matchers(device_id="emf-1"),
        starts_at=T0 + HOUR,
        ends_at=T0 + 3 * HOUR,
        reason="panel service",
        actor="li",
    )
    assert planned.state(clock.now) is SilenceState.PENDING
    assert await engine.tick() == []
    clock.now = T0 + HOUR
    [started] = await engine.tick()
    assert started.alert.id == open_alert.alert.id
    assert started.alert.silenced_by == planned.id


async def test_setting_a_silence_covers_alerts_already_open_and_ending_it_frees_them(
    engine: AlertEngine, silences: Silences, clock: FakeClock
) -> None:
    [raised] = await engine.handle([leak()])
    sid = await silence(silences, site_id="workshop")
    [covered] = await engine.remute()
    assert covered.alert.silenced_by == sid

    clock.now = T0 + 10 * MINUTE_MS
    ended = await silences.expire(sid, "wang")
    assert (ended.ends_at, ended.ended_by) == (T0 + 10 * MINUTE_MS, "wang")
    assert ended.state(clock.now) is SilenceState.EXPIRED
    [freed] = await engine.remute()
    assert freed.alert.id == raised.alert.id and not freed.alert.muted

    with pytest.raises(ConflictError, match=f"silence {sid} has already ended"):
        await silences.expire(sid, "wang")
    with pytest.raises(NotFoundError, match="silence 999"):
        await silences.expire(999, "wang")
    # Ended early, but still on record.
    assert [s.id for s in await silences.list(state=SilenceState.EXPIRED)] == [sid]


async def test_every_change_is_audited_with_who(
    db: SqliteDatabase, engine: AlertEngine, silences: Silences
) -> None:
    sid = await silence(silences, site_id="workshop")
    await silences.expire(sid, "wang")
    entries = await AuditLog(db).entries()
    assert [(e.actor, e.action, e.target) for e in entries] == [
        ("wang", "silence.expire", f"silence:{sid}"),
        ("li", "silence.create", f"silence:{sid}"),
    ]
    assert entries[1].detail["matchers"] == {"site_id": "workshop"}
    assert entries[1].detail["reason"] == "electrician testing the monitors"
    assert entries[0].detail["planned_ends_at"] == T0 + 2 * HOUR


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"matchers": Matchers()}, "at least one matcher"),
        ({"reason": "  "}, "reason must not be empty"),
        ({"ends_at": T0 - 1, "starts_at": T0 - HOUR}, "in the past"),
        ({"ends_at": T0 + HOUR, "starts_at": T0 + 2 * HOUR}, "after starts_at"),
        ({"ends_at": T0 + 31 * DAY_MS}, "at most 30 days"),
        ({"actor": ""}, "actor"),
    ],
)
async def test_silences_that_make_no_sense_are_refused(
    silences: Silences, kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {
        "matchers": Matchers(site_id="workshop"),
        "ends_at": T0 + HOUR,
        "reason": "maintenance",
        "actor": "li",
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        await silences.create(**args)  # type: ignore[arg-type]
    assert await silences.list() == []


async def test_silences_survive_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "ewg.db"
    async with SqliteDatabase(path, schema=ALERT_SCHEMA) as db:
        first = Silences(db, clock)
        await first.load()
        sid = await silence(first, site_id="workshop")
    async with SqliteDatabase(path, schema=ALERT_SCHEMA) as db:
        again = Silences(db, clock)
        await again.load()
        engine = AlertEngine(AlertStore(db), AlertBus(), SITES.get, clock=clock, muters=[again])
        await engine.start()
        [raised] = await engine.handle([leak()])
        assert raised.alert.silenced_by == sid


async def test_closing_a_silenced_alert_keeps_the_record(
    engine: AlertEngine, silences: Silences, clock: FakeClock
) -> None:
    sid = await silence(silences, device_id="emf-1")
    [raised] = await engine.handle([leak()])
    closed = await engine.close(raised.alert.id, "li", Disposition.MAINTENANCE, "test")
    assert closed.silenced_by == sid, "the closed alert still shows it was silenced"
