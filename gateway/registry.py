"""The device registry: sites (with village/community, industry, address) and devices.

Held in memory for the hot path and persisted in SQLite. The CLI may add devices
while a gateway runs on the same data directory; a lookup that misses asks SQLite
whether another connection has committed since (``PRAGMA data_version``, cheap) and
re-reads the tables only then, so a newly connected sensor is accepted at once and a
flood of unknown ids costs no table scans.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping
from dataclasses import asdict

from gateway import audit
from gateway.errors import ConflictError, NotFoundError
from gateway.profiles import Profile
from gateway.registry_model import Device, Site
from gateway.sqlite import SqliteDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS sites (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    village TEXT NOT NULL,
    industry TEXT NOT NULL,
    address TEXT NOT NULL DEFAULT '',
    enterprise TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY,
    profile TEXT NOT NULL,
    site_id TEXT NOT NULL REFERENCES sites (id),
    name TEXT NOT NULL DEFAULT '',
    parent_id TEXT REFERENCES devices (id)
);
"""

def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def _load(conn: sqlite3.Connection) -> tuple[int, list[Site], list[Device]]:
    version = _data_version(conn)
    sites = [
        Site(*row)
        for row in conn.execute(
            "SELECT id, name, village, industry, address, enterprise FROM sites"
        )
    ]
    devices = [
        Device(*row)
        for row in conn.execute("SELECT id, profile, site_id, name, parent_id FROM devices")
    ]
    return version, sites, devices


def _insert_site(conn: sqlite3.Connection, site: Site, actor: str) -> None:
    try:
        conn.execute(
            "INSERT INTO sites VALUES (?, ?, ?, ?, ?, ?)",
            (site.id, site.name, site.village, site.industry, site.address, site.enterprise),
        )
    except sqlite3.IntegrityError as exc:
        raise ConflictError(f"site {site.id!r} already exists") from exc
    audit.record(conn, actor, "site.add", site.id, asdict(site))


def _insert_device(conn: sqlite3.Connection, device: Device, actor: str) -> None:
    try:
        conn.execute(
            "INSERT INTO devices VALUES (?, ?, ?, ?, ?)",
            (device.id, device.profile, device.site_id, device.name, device.parent_id),
        )
    except sqlite3.IntegrityError as exc:
        raise ConflictError(f"device {device.id!r} already exists") from exc
    audit.record(conn, actor, "device.add", device.id, asdict(device))


class Registry:
    def __init__(self, db: SqliteDatabase, profiles: Mapping[str, Profile]) -> None:
        self.db = db
        self.profiles = profiles
        self._sites: dict[str, Site] = {}
        self._devices: dict[str, Device] = {}
        self._data_version = -1
        self._refresh_lock = asyncio.Lock()

    async def refresh(self) -> None:
        self._data_version, sites, devices = await self.db.run(_load)
        self._sites = {s.id: s for s in sites}
        self._devices = {d.id: d for d in devices}

    # -- reads (in memory) -------------------------------------------------------------
    def sites(self) -> list[Site]:
        return sorted(self._sites.values(), key=lambda s: (s.village, s.id))

    def devices(self) -> list[Device]:
        return sorted(self._devices.values(), key=lambda d: (d.site_id, d.id))

    def site(self, site_id: str) -> Site:
        try:
            return self._sites[site_id]
        except KeyError:
            raise NotFoundError(f"site {site_id!r} not found") from None

    def find_site(self, site_id: str) -> Site | None:
        return self._sites.get(site_id)

    def device(self, device_id: str) -> Device:
        try:
            return self._devices[device_id]
        except KeyError:
            raise NotFoundError(f"device {device_id!r} not found") from None

    def site_of(self, device_id: str) -> str | None:
        device = self._devices.get(device_id)
        return device.site_id if device else None

    def profile_of(self, device_id: str) -> Profile | None:
        device = self._devices.get(device_id)
        return self.profiles.get(device.profile) if device else None

    async def find_device(self, device_id: str) -> Device | None:
        """The device; on a miss, re-read the registry if another process (the CLI)
        changed it since we last did."""
        device = self._devices.get(device_id)
        if device is None:
            async with self._refresh_lock:
                if await self.db.run(_data_version) != self._data_version:
                    await self.refresh()
            device = self._devices.get(device_id)
        return device

    async def get_device(self, device_id: str) -> Device:
        device = await self.find_device(device_id)
        if device is None:
            raise NotFoundError(f"device {device_id!r} not found")
        return device

    async def lookup(self, device_id: str) -> tuple[Device, Profile] | None:
        """The device and its profile, for the pipeline."""
        device = await self.find_device(device_id)
        if device is None:
            return None
        profile = self.profiles.get(device.profile)
        return (device, profile) if profile else None

    # -- writes (audited) --------------------------------------------------------------
    async def add_site(self, site: Site, actor: str) -> Site:
        await self.db.transaction(_insert_site, site, actor)
        self._sites[site.id] = site
        return site

    async def add_device(self, device: Device, actor: str) -> Device:
        if device.profile not in self.profiles:
            raise NotFoundError(
                f"profile {device.profile!r} not found; known: {', '.join(sorted(self.profiles))}"
            )
        if device.site_id not in self._sites:
            await self.refresh()
            self.site(device.site_id)  # raises NotFoundError
        if device.parent_id is not None and device.parent_id not in self._devices:
            raise NotFoundError(f"parent device {device.parent_id!r} not found")
        await self.db.transaction(_insert_device, device, actor)
        self._devices[device.id] = device
        return device
