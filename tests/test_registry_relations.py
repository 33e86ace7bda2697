"""Relations (room, circuit) and enterprises (hours, shutdown orders) in the registry.

Real SQLite files; a database from before these tables existed; the CLI an officer
types; the API a portal uses; the audit log that records who ordered what.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway import audit, registry
from gateway.audit import AuditLog
from gateway.cli import app
from gateway.errors import NotFoundError
from gateway.profiles import DEFAULT_PROFILE_DIR, load_profiles
from gateway.registry import RECHECK_S, Registry
from gateway.registry_enterprises import InvalidEnterpriseError
from gateway.registry_model import Device, Enterprise, ShutdownPeriod, Site
from gateway.sqlite import SqliteDatabase
from tests.conftest import LiveGateway

PROFILES = load_profiles(DEFAULT_PROFILE_DIR)
DEC1 = 1_796_054_400_000  # 2026-12-01 00:00 Asia/Shanghai
DAY = 86_400_000
runner = CliRunner()


async def open_registry(path: Path) -> tuple[SqliteDatabase, Registry]:
    db = SqliteDatabase(path, registry.SCHEMA + audit.SCHEMA)
    await db.__aenter__()
    reg = Registry(db, PROFILES)
    await reg.refresh()
    return db, reg


@pytest.fixture
async def reg(tmp_path: Path) -> AsyncIterator[Registry]:
    db, r = await open_registry(tmp_path / "ewg.db")
    try:
        yield r
    finally:
        await db.__aexit__(None, None, None)


async def populate(reg: Registry) -> None:
    await reg.add_site(Site("s1", "Shop", "east", "small_shop", enterprise="acme"), "test")
    await reg.add_site(Site("s2", "Next door", "east", "small_shop"), "test")
    for device in [
        Device("smoke-1", "smoke_alarm_nbiot", "s1", room="kitchen"),
        Device("heat-1", "heat_detector", "s1", room="kitchen"),
        Device("heat-2", "heat_detector", "s1", room="store"),
        Device("heat-9", "heat_detector", "s2", room="kitchen"),
        Device("efm-1", "electrical_fire_monitor", "s1", room="kitchen", circuit="L1"),
        Device("efm-2", "electrical_fire_monitor", "s1", circuit="L1"),
        Device("pm-1", "power_meter", "s1"),
    ]:
        await reg.add_device(device, "test")


async def test_related_devices_share_site_and_tag_and_survive_a_reopen(tmp_path: Path) -> None:
    db, reg = await open_registry(tmp_path / "ewg.db")
    await populate(reg)
    assert reg.related_ids("smoke-1", "room") == ["efm-1", "heat-1"]  # not heat-9 (other site)
    assert reg.related_ids("efm-1", "circuit") == ["efm-2"]
    assert reg.related_ids("pm-1", "room") == []  # untagged
    assert reg.related_ids("nobody", "room") == []
    with pytest.raises(ValueError, match="floor"):
        reg.related_ids("smoke-1", "floor")
    await reg.revoke("heat-1", "test")
    assert [d.id for d in reg.related("smoke-1", "room")] == ["efm-1"]
    await db.__aexit__(None, None, None)

    db, again = await open_registry(tmp_path / "ewg.db")
    assert again.device("efm-1") == Device(
        "efm-1", "electrical_fire_monitor", "s1", room="kitchen", circuit="L1"
    )
    assert again.related_ids("heat-2", "room") == []
    await again.set_relations("heat-2", "kitchen", None, "officer")
    assert again.related_ids("smoke-1", "room") == ["efm-1", "heat-2"]
    entries = await AuditLog(again.db).entries()
    assert entries[0].action == "device.relate" and entries[0].actor == "officer"
    assert entries[0].detail == {
        "room": "kitchen",
        "circuit": None,
        "old_room": "store",
        "old_circuit": None,
    }
    await db.__aexit__(None, None, None)


OLD_SCHEMA = """
CREATE TABLE sites (id TEXT PRIMARY KEY, name TEXT NOT NULL, village TEXT NOT NULL,
    industry TEXT NOT NULL, address TEXT NOT NULL DEFAULT '', enterprise TEXT NOT NULL DEFAULT '');
CREATE TABLE devices (id TEXT PRIMARY KEY, profile TEXT NOT NULL,
    site_id TEXT NOT NULL REFERENCES sites (id), name TEXT NOT NULL DEFAULT '',
    parent_id TEXT REFERENCES devices (id));
CREATE TABLE device_access (device_id TEXT PRIMARY KEY REFERENCES devices (id),
    secret_hash TEXT, secret_issued_ms INTEGER, revoked_ms INTEGER, revoked_by TEXT);
INSERT INTO sites VALUES ('s1', 'Shop', 'east', 'small_shop', '', 'acme');
INSERT INTO devices VALUES ('td-1', 'smoke_alarm_nbiot', 's1', 'old one', NULL);
"""


async def test_a_database_from_before_relations_and_enterprises_opens_unchanged(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ewg.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_SCHEMA)
    db, reg = await open_registry(path)
    assert reg.devices() == [Device("td-1", "smoke_alarm_nbiot", "s1", "old one")]
    assert reg.enterprises() == [] and reg.calendar_of("td-1") is None
    await reg.set_relations("td-1", "hall", None, "test")
    assert reg.device("td-1").room == "hall"
    await db.__aexit__(None, None, None)


async def test_enterprises_and_shutdown_orders_are_stored_audited_and_in_the_calendar(
    reg: Registry,
) -> None:
    await populate(reg)
    assert reg.calendar_of("pm-1") is None  # its enterprise is not registered yet
    await reg.set_enterprise(Enterprise("acme", "ACME Casting", hours="07:30-17:30"), "officer")
    calendar = reg.calendar_of("pm-1")
    assert calendar is not None and calendar.enterprise.name == "ACME Casting"
    assert calendar.period_at(DEC1 + DAY) is None
    period = await reg.add_shutdown(
        ShutdownPeriod(0, "acme", DEC1, DEC1 + 7 * DAY, "dust explosion risk", "town office"),
        "officer",
    )
    assert period.id > 0 and period.created_by == "officer" and period.created_ms > 0
    calendar = reg.calendar_of("pm-1")
    assert calendar is not None and calendar.period_at(DEC1 + DAY) == period
    lifted = await reg.end_shutdown(period.id, DEC1 + 3 * DAY, "officer")
    assert lifted.end_ms == DEC1 + 3 * DAY
    calendar = reg.calendar_of("pm-1")
    assert calendar is not None and calendar.period_at(DEC1 + 4 * DAY) is None
    assert reg.shutdowns("acme") == [lifted] and reg.shutdowns("other") == []
    entries = await AuditLog(reg.db).entries()
    assert [e.action for e in reversed(entries[:3])] == [
        "enterprise.add",
        "enterprise.shutdown.add",
        "enterprise.shutdown.end",
    ]
    assert entries[0].detail["old_end_ms"] == DEC1 + 7 * DAY
    assert entries[1].detail["ordered_by"] == "town office"


async def test_bad_hours_periods_and_unknown_enterprises_are_refused(reg: Registry) -> None:
    with pytest.raises(InvalidEnterpriseError, match="08:00-18:00"):
        await reg.set_enterprise(Enterprise("acme", hours="8-18"), "t")
    with pytest.raises(InvalidEnterpriseError, match="weekdays"):
        await reg.set_enterprise(Enterprise("acme", days="1-8"), "t")
    with pytest.raises(InvalidEnterpriseError, match="timezone"):
        await reg.set_enterprise(Enterprise("acme", timezone="Mars/Olympus"), "t")
    with pytest.raises(NotFoundError, match="acme"):
        await reg.add_shutdown(ShutdownPeriod(0, "acme", DEC1, DEC1 + DAY), "t")
    await reg.set_enterprise(Enterprise("acme"), "t")
    with pytest.raises(InvalidEnterpriseError, match="after it starts"):
        await reg.add_shutdown(ShutdownPeriod(0, "acme", DEC1, DEC1), "t")
    with pytest.raises(InvalidEnterpriseError, match="kind"):
        await reg.add_shutdown(ShutdownPeriod(0, "acme", DEC1, DEC1 + DAY, kind="strike"), "t")
    assert reg.shutdowns() == []
    assert [e.action for e in await AuditLog(reg.db).entries()] == ["enterprise.add"]


async def test_a_shutdown_ordered_from_another_process_reaches_the_running_registry(
    tmp_path: Path,
) -> None:
    """The CLI writes through its own connection; the gateway's registry sees it within
    a second on its hot path (``lookup``), no restart."""
    path = tmp_path / "ewg.db"
    db_a, gateway_side = await open_registry(path)
    await populate(gateway_side)
    await gateway_side.set_enterprise(Enterprise("acme"), "t")
    assert gateway_side.calendar_of("pm-1") is not None
    db_b, cli_side = await open_registry(path)
    await cli_side.add_shutdown(ShutdownPeriod(0, "acme", DEC1, DEC1 + DAY), "cli")
    await asyncio.sleep(RECHECK_S + 0.05)
    await gateway_side.lookup("pm-1")
    calendar = gateway_side.calendar_of("pm-1")
    assert calendar is not None and calendar.period_at(DEC1 + 1) is not None
    await db_b.__aexit__(None, None, None)
    await db_a.__aexit__(None, None, None)


def test_cli_registers_relations_enterprises_and_shutdowns(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]

    def ewg(*args: str) -> str:
        result = runner.invoke(app, [*args, *data])
        assert result.exit_code == 0, result.output
        return result.output

    ewg(
        "site",
        "add",
        "s1",
        "--name",
        "ACME",
        "--village",
        "east",
        "--industry",
        "dust_factory",
        "--enterprise",
        "acme",
    )
    ewg(
        "device",
        "add",
        "efm-1",
        "--profile",
        "electrical_fire_monitor",
        "--site",
        "s1",
        "--room",
        "workshop",
        "--circuit",
        "L2",
    )
    ewg("device", "add", "heat-1", "--profile", "heat_detector", "--site", "s1")
    assert "room workshop, circuit -" in ewg("device", "relate", "heat-1", "--room", "workshop")
    assert "room -, circuit L2" in ewg("device", "relate", "efm-1", "--room", "")
    assert "08:00-18:00 on days 1-6" in ewg(
        "enterprise", "set", "acme", "--name", "ACME Casting", "--days", "1-6"
    )
    ewg("enterprise", "set", "acme", "--baseline-load-kw", "12.5")
    listed = ewg("enterprise", "list")
    assert "ACME Casting" in listed and "days 1-6" in listed and "load 12.5 kW" in listed
    added = ewg(
        "enterprise",
        "shutdown",
        "add",
        "acme",
        "--start",
        "2026-12-01 00:00",
        "--end",
        "2026-12-15 00:00",
        "--reason",
        "整改",
        "--ordered-by",
        "镇安监办",
    )
    assert "2026-12-01 00:00 to 2026-12-15 00:00 (Asia/Shanghai)" in added
    assert "0 power meter(s) watched" in added and "nothing can detect production" in added
    shutdowns = ewg("enterprise", "shutdown", "list", "acme")
    assert "整改" in shutdowns and "镇安监办" in shutdowns and "shutdown" in shutdowns
    assert "ends 2026-12-08 12:00" in ewg(
        "enterprise", "shutdown", "end", "1", "--at", "2026-12-08 12:00"
    )

    bad = runner.invoke(app, ["enterprise", "set", "acme", "--hours", "8 to 6", *data])
    assert bad.exit_code == 2 and "08:00-18:00" in bad.output
    bad = runner.invoke(
        app,
        [
            "enterprise",
            "shutdown",
            "add",
            "nobody",
            "--start",
            "2026-12-01",
            "--end",
            "2026-12-02",
            *data,
        ],
    )
    assert bad.exit_code == 2 and "nobody" in bad.output
    bad = runner.invoke(
        app,
        ["enterprise", "shutdown", "add", "acme", "--start", "soon", "--end", "2026-12-02", *data],
    )
    assert bad.exit_code == 2 and "not a time" in bad.output

    async def stored() -> tuple[Device, Device, list[ShutdownPeriod]]:
        db, reg = await open_registry(tmp_path / "ewg.db")
        try:
            return reg.device("efm-1"), reg.device("heat-1"), reg.shutdowns()
        finally:
            await db.__aexit__(None, None, None)

    efm, heat, periods = asyncio.run(stored())
    assert (efm.room, efm.circuit, heat.room) == (None, "L2", "workshop")
    assert [(p.reason, p.ordered_by, p.created_by.startswith("cli")) for p in periods] == [
        ("整改", "镇安监办", True)
    ]


async def test_api_devices_carry_room_and_circuit(live: LiveGateway) -> None:
    site = {"id": "s1", "name": "Shop", "village": "east", "industry": "small_shop"}
    assert (await live.client.post("/api/sites", json=site)).status_code == 201
    device = {
        "id": "efm-1",
        "profile": "electrical_fire_monitor",
        "site_id": "s1",
        "room": "kitchen",
        "circuit": "L1",
    }
    created = await live.client.post("/api/devices", json=device)
    assert created.status_code == 201, created.text
    shown = (await live.client.get("/api/devices/efm-1")).json()
    assert (shown["room"], shown["circuit"]) == ("kitchen", "L1")
    assert live.gateway.registry.device("efm-1").circuit == "L1"
    too_long = await live.client.post(
        "/api/devices", json={**device, "id": "efm-2", "room": "x" * 101}
    )
    assert too_long.status_code == 422
