"""AlertStore against a real SQLite file: round trips, atomicity and list filters."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from alerts import (
    ALERT_SCHEMA,
    Alert,
    AlertClass,
    AlertState,
    AlertStore,
    Disposition,
    Severity,
    Transition,
)
from gateway.errors import NotFoundError
from gateway.sqlite import SqliteDatabase

OTHER_SCHEMA = "CREATE TABLE IF NOT EXISTS readings (device_id TEXT, ts_ms INTEGER, value REAL);"


def draft(
    *,
    device: str = "emf-1",
    site: str = "site-a",
    rule: str = "residual_current",
    severity: Severity = Severity.YELLOW,
    alert_class: AlertClass = AlertClass.HAZARD,
    state: AlertState = AlertState.RAISED,
    raised_at: int = 1000,
) -> Alert:
    return Alert(
        id=0,
        device_id=device,
        site_id=site,
        rule=rule,
        severity=severity,
        alert_class=alert_class,
        hazard="electrical_leakage",
        state=state,
        raised_at=raised_at,
        updated_at=raised_at,
        value=350.0,
        message="residual current 350 mA",
    )


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    async with SqliteDatabase(tmp_path / "ewg.db", schema=ALERT_SCHEMA + OTHER_SCHEMA) as database:
        yield database


@pytest.fixture
def store(db: SqliteDatabase) -> AlertStore:
    return AlertStore(db)


async def test_schema_has_a_column_for_every_alert_field(db: SqliteDatabase) -> None:
    rows = await db.run(lambda c: c.execute("PRAGMA table_info(alerts)").fetchall())
    assert [r[1] for r in rows] == [f.name for f in dataclasses.fields(Alert)]
    rows = await db.run(lambda c: c.execute("PRAGMA table_info(alert_history)").fetchall())
    assert [r[1] for r in rows] == ["id"] + [f.name for f in dataclasses.fields(Transition)]


async def test_schema_concatenates_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "twice.db"
    for _ in range(2):
        async with SqliteDatabase(path, schema=ALERT_SCHEMA + OTHER_SCHEMA) as db:
            await AlertStore(db).insert(draft())
    async with SqliteDatabase(path, schema=OTHER_SCHEMA + ALERT_SCHEMA) as db:
        assert len(await AlertStore(db).list()) == 2


async def test_insert_assigns_ids_and_writes_the_first_history_line(store: AlertStore) -> None:
    first = await store.insert(draft())
    second = await store.insert(draft(raised_at=2000), actor="importer", note="migrated")
    assert first.id > 0 and second.id > first.id
    assert await store.get(first.id) == first
    assert await store.history(second.id) == [
        Transition(second.id, 2000, "importer", None, AlertState.RAISED, "migrated")
    ]


async def test_every_field_round_trips(store: AlertStore) -> None:
    alert = await store.insert(draft())
    full = dataclasses.replace(
        alert,
        severity=Severity.RED,
        state=AlertState.CLOSED,
        value=None,
        count=7,
        acknowledged=True,
        acknowledged_by="li",
        acknowledged_at=1500,
        cleared_at=1600,
        closed_at=1700,
        closed_by="wang",
        disposition=Disposition.DEVICE_FAULT,
        note="replaced the sensor",
        updated_at=1700,
    )
    await store.update(full)
    got = await store.get(alert.id)
    assert got == full
    assert isinstance(got.state, AlertState) and isinstance(got.disposition, Disposition)
    assert got.acknowledged is True


async def test_missing_alerts_are_not_found(store: AlertStore) -> None:
    ghost = dataclasses.replace(draft(), id=42)
    with pytest.raises(NotFoundError, match="alert 42"):
        await store.get(42)
    with pytest.raises(NotFoundError):
        await store.update(ghost)
    with pytest.raises(NotFoundError):
        await store.add_transition(Transition(42, 1, "li", None, AlertState.RAISED))
    with pytest.raises(NotFoundError):
        await store.save(ghost, Transition(42, 1, "li", AlertState.RAISED, AlertState.CLOSED))
    with pytest.raises(NotFoundError):
        await store.history(42)


async def test_save_is_atomic(store: AlertStore) -> None:
    alert = await store.insert(draft())
    closed = dataclasses.replace(alert, state=AlertState.CLOSED)
    wrong = Transition(alert.id + 1, 2000, "li", AlertState.RAISED, AlertState.CLOSED)
    with pytest.raises(ValueError, match="transition is for alert"):
        await store.save(closed, wrong)
    assert (await store.get(alert.id)).state is AlertState.RAISED
    assert len(await store.history(alert.id)) == 1

    right = dataclasses.replace(wrong, alert_id=alert.id)
    await store.save(closed, right)
    assert (await store.get(alert.id)).state is AlertState.CLOSED
    assert (await store.history(alert.id))[-1] == right


async def test_history_is_oldest_first(store: AlertStore) -> None:
    alert = await store.insert(draft())
    for ts, state in ((3000, AlertState.ACKNOWLEDGED), (2000, AlertState.CLEARED)):
        await store.add_transition(Transition(alert.id, ts, "li", AlertState.RAISED, state))
    # Insertion order, not timestamp order: a device clock running behind must not
    # reorder what actually happened.
    assert [t.to_state for t in await store.history(alert.id)] == [
        AlertState.RAISED,
        AlertState.ACKNOWLEDGED,
        AlertState.CLEARED,
    ]


@pytest.fixture
async def sample(store: AlertStore) -> dict[str, int]:
    """Five alerts over two sites, in every state, raised at 1000..5000."""
    ids: dict[str, int] = {}
    for name, alert in {
        "a-raised": draft(device="emf-1", site="site-a", raised_at=1000),
        "a-red": draft(device="emf-2", site="site-a", severity=Severity.RED, raised_at=2000),
        "b-fault": draft(
            device="gas-1", site="site-b", alert_class=AlertClass.FAULT, raised_at=3000
        ),
        "b-closed": draft(device="gas-2", site="site-b", state=AlertState.CLOSED, raised_at=4000),
        "c-cleared": draft(device="smk-1", site="site-c", state=AlertState.CLEARED, raised_at=5000),
    }.items():
        ids[name] = (await store.insert(alert)).id
    return ids


async def names(store: AlertStore, ids: dict[str, int], **filters: Any) -> list[str]:
    by_id = {v: k for k, v in ids.items()}
    return [by_id[a.id] for a in await store.list(**filters)]


async def test_list_is_newest_first(store: AlertStore, sample: dict[str, int]) -> None:
    assert await names(store, sample) == ["c-cleared", "b-closed", "b-fault", "a-red", "a-raised"]
    assert await names(store, sample, limit=2) == ["c-cleared", "b-closed"]


async def test_list_filters(store: AlertStore, sample: dict[str, int]) -> None:
    assert await names(store, sample, states=[AlertState.RAISED]) == [
        "b-fault",
        "a-red",
        "a-raised",
    ]
    assert await names(store, sample, states={AlertState.CLOSED, AlertState.CLEARED}) == [
        "c-cleared",
        "b-closed",
    ]
    assert await names(store, sample, site_ids=["site-b", "site-c"]) == [
        "c-cleared",
        "b-closed",
        "b-fault",
    ]
    assert await names(store, sample, severity=Severity.RED) == ["a-red"]
    assert await names(store, sample, alert_class=AlertClass.FAULT) == ["b-fault"]
    assert await names(store, sample, device_id="emf-1") == ["a-raised"]
    assert await names(store, sample, since_ms=4000) == ["c-cleared", "b-closed"]
    assert await names(
        store, sample, site_ids=["site-a"], states=[AlertState.RAISED], severity=Severity.YELLOW
    ) == ["a-raised"]


async def test_empty_filter_collections_match_nothing(
    store: AlertStore, sample: dict[str, int]
) -> None:
    assert await store.list(site_ids=[]) == []
    assert await store.list(states=()) == []


async def test_open_alerts_excludes_closed(store: AlertStore, sample: dict[str, int]) -> None:
    opened = await store.open_alerts()
    assert [a.id for a in opened] == [
        sample["a-raised"],
        sample["a-red"],
        sample["b-fault"],
        sample["c-cleared"],
    ]


async def test_negative_limit_is_refused(store: AlertStore) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.list(limit=-1)
