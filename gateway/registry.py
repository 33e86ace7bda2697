"""The device registry: sites (with village/community, industry, address) and devices.

Held in memory for the hot path and persisted in SQLite. The CLI may add devices
while a gateway runs on the same data directory; a lookup that misses asks SQLite
whether another connection has committed since (``PRAGMA data_version``, cheap) and
re-reads the tables only then, so a newly connected sensor is accepted at once and a
flood of unknown ids costs no table scans. The same check runs at most once a second
on the hot path too, so a device revoked from the CLI is refused within a second.

Each device's access (its MQTT secret's argon2id hash, when it was issued, whether it
is revoked) lives in ``device_access``: a table of its own so databases created before
it existed need no migration, and so the hash never travels with :class:`Device`.
For the same reason a device's relations (its ``room`` and ``circuit``, which the
cross-sensor detector pairs devices by) live in ``device_relations``, and enterprises
with their working hours and shutdown orders in the tables of
:mod:`gateway.registry_enterprises`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace

from gateway import audit, registry_enterprises
from gateway.errors import ConflictError, NotFoundError
from gateway.model import now_ms
from gateway.profiles import Profile
from gateway.registry_enterprises import InvalidEnterpriseError, check_period
from gateway.registry_model import (
    RELATION_KINDS,
    Calendar,
    Device,
    DeviceAccess,
    Enterprise,
    ShutdownPeriod,
    Site,
)
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
CREATE TABLE IF NOT EXISTS device_access (
    device_id TEXT PRIMARY KEY REFERENCES devices (id),
    secret_hash TEXT,
    secret_issued_ms INTEGER,
    revoked_ms INTEGER,
    revoked_by TEXT
);
CREATE TABLE IF NOT EXISTS device_relations (
    device_id TEXT PRIMARY KEY REFERENCES devices (id),
    room TEXT,
    circuit TEXT
);
"""
SCHEMA += registry_enterprises.SCHEMA

#: How often the hot path asks SQLite whether another process changed the registry.
RECHECK_S = 1.0


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


@dataclass(frozen=True, slots=True)
class _Loaded:
    version: int
    sites: list[Site]
    devices: list[Device]
    access: list[DeviceAccess]
    enterprises: list[Enterprise]
    periods: list[ShutdownPeriod]


def _load(conn: sqlite3.Connection) -> _Loaded:
    version = _data_version(conn)
    sites = [
        Site(*row)
        for row in conn.execute(
            "SELECT id, name, village, industry, address, enterprise FROM sites"
        )
    ]
    devices = [
        Device(*row)
        for row in conn.execute(
            "SELECT id, profile, site_id, name, parent_id, room, circuit FROM devices"
            " LEFT JOIN device_relations ON device_relations.device_id = devices.id"
        )
    ]
    access = [
        DeviceAccess(*row)
        for row in conn.execute(
            "SELECT device_id, secret_issued_ms, revoked_ms, revoked_by FROM device_access"
        )
    ]
    enterprises, periods = registry_enterprises.load(conn)
    return _Loaded(version, sites, devices, access, enterprises, periods)


def _insert_site(conn: sqlite3.Connection, site: Site, actor: str) -> None:
    try:
        conn.execute(
            "INSERT INTO sites VALUES (?, ?, ?, ?, ?, ?)",
            (site.id, site.name, site.village, site.industry, site.address, site.enterprise),
        )
    except sqlite3.IntegrityError as exc:
        raise ConflictError(f"site {site.id!r} already exists") from exc
    audit.record(conn, actor, "site.add", site.id, asdict(site))


def _insert_device(
    conn: sqlite3.Connection, device: Device, actor: str, secret_hash: str | None, ts_ms: int
) -> None:
    try:
        conn.execute(
            "INSERT INTO devices VALUES (?, ?, ?, ?, ?)",
            (device.id, device.profile, device.site_id, device.name, device.parent_id),
        )
    except sqlite3.IntegrityError as exc:
        raise ConflictError(f"device {device.id!r} already exists") from exc
    if device.room is not None or device.circuit is not None:
        _write_relations(conn, device.id, device.room, device.circuit)
    detail: dict[str, object] = asdict(device)
    if secret_hash is not None:
        conn.execute(
            "INSERT INTO device_access (device_id, secret_hash, secret_issued_ms) VALUES (?, ?, ?)",
            (device.id, secret_hash, ts_ms),
        )
        detail["mqtt_secret"] = "issued"
    audit.record(conn, actor, "device.add", device.id, detail)


def _write_relations(
    conn: sqlite3.Connection, device_id: str, room: str | None, circuit: str | None
) -> None:
    conn.execute(
        "INSERT INTO device_relations (device_id, room, circuit) VALUES (?, ?, ?)"
        " ON CONFLICT (device_id) DO UPDATE SET room = excluded.room, circuit = excluded.circuit",
        (device_id, room, circuit),
    )


def _set_relations(
    conn: sqlite3.Connection, device: Device, room: str | None, circuit: str | None, actor: str
) -> None:
    _write_relations(conn, device.id, room, circuit)
    audit.record(
        conn,
        actor,
        "device.relate",
        device.id,
        {"room": room, "circuit": circuit, "old_room": device.room, "old_circuit": device.circuit},
    )


def _set_secret(
    conn: sqlite3.Connection, device_id: str, secret_hash: str, actor: str, ts_ms: int
) -> None:
    row = conn.execute(
        "SELECT secret_issued_ms, revoked_ms FROM device_access WHERE device_id = ?", (device_id,)
    ).fetchone()
    if row is not None and row[1] is not None:
        raise ConflictError(f"device {device_id!r} is revoked")
    conn.execute(
        "INSERT INTO device_access (device_id, secret_hash, secret_issued_ms) VALUES (?, ?, ?)"
        " ON CONFLICT (device_id) DO UPDATE"
        " SET secret_hash = excluded.secret_hash, secret_issued_ms = excluded.secret_issued_ms",
        (device_id, secret_hash, ts_ms),
    )
    first = row is None or row[0] is None
    audit.record(conn, actor, "device.secret.rotate", device_id, {"first_secret": first})


def _revoke(conn: sqlite3.Connection, device_id: str, actor: str, ts_ms: int) -> DeviceAccess:
    """Revoke (idempotent: the first revocation's time and actor are kept, each call audited)."""
    conn.execute(
        "INSERT INTO device_access (device_id, revoked_ms, revoked_by) VALUES (?, ?, ?)"
        " ON CONFLICT (device_id) DO UPDATE SET"
        " revoked_ms = coalesce(revoked_ms, excluded.revoked_ms),"
        " revoked_by = coalesce(revoked_by, excluded.revoked_by),"
        " secret_hash = NULL",
        (device_id, ts_ms, actor),
    )
    row = conn.execute(
        "SELECT device_id, secret_issued_ms, revoked_ms, revoked_by FROM device_access"
        " WHERE device_id = ?",
        (device_id,),
    ).fetchone()
    access = DeviceAccess(*row)
    audit.record(conn, actor, "device.revoke", device_id, {"again": access.revoked_ms != ts_ms})
    return access


def _secret_hash(conn: sqlite3.Connection, device_id: str) -> str | None:
    row = conn.execute(
        "SELECT secret_hash FROM device_access WHERE device_id = ?", (device_id,)
    ).fetchone()
    return None if row is None else row[0]


class Registry:
    def __init__(self, db: SqliteDatabase, profiles: Mapping[str, Profile]) -> None:
        self.db = db
        self.profiles = profiles
        self._sites: dict[str, Site] = {}
        self._devices: dict[str, Device] = {}
        self._access: dict[str, DeviceAccess] = {}
        self._enterprises: dict[str, Enterprise] = {}
        self._periods: dict[int, ShutdownPeriod] = {}
        #: Device ids by (site, relation kind, tag), for :meth:`related`.
        self._relations: dict[tuple[str, str, str], list[str]] = {}
        #: Calendars built on demand, dropped whenever enterprises or periods change.
        self._calendars: dict[str, Calendar | None] = {}
        self._data_version = -1
        self._checked_at = 0.0
        self._refresh_lock = asyncio.Lock()
        #: Called with a device id when a device is revoked here or, seen on a refresh,
        #: by another process (the gateway forgets its detectors: no offline alarms).
        self.on_revoke: list[Callable[[str], None]] = []
        #: Called with each device that appears: added here, or seen new on a refresh
        #: (added by another process, e.g. the CLI) so the gateway can expect it.
        self.on_add: list[Callable[[Device], None]] = []

    async def refresh(self) -> None:
        loaded = await self.db.run(_load)
        self._data_version = loaded.version
        sites, devices, access = loaded.sites, loaded.devices, loaded.access
        self._checked_at = time.monotonic()
        was_revoked = {a.device_id for a in self._access.values() if a.revoked_ms is not None}
        known = set(self._devices)
        self._sites = {s.id: s for s in sites}
        self._devices = {d.id: d for d in devices}
        self._access = {a.device_id: a for a in access}
        self._enterprises = {e.id: e for e in loaded.enterprises}
        self._periods = {p.id: p for p in loaded.periods}
        self._calendars.clear()
        self._index_relations()
        for d in devices:
            if d.id not in known:
                self._added(d)
        for a in access:
            if a.revoked_ms is not None and a.device_id not in was_revoked:
                self._revoked(a.device_id)

    async def _refresh_if_changed(self) -> None:
        async with self._refresh_lock:
            self._checked_at = time.monotonic()
            if await self.db.run(_data_version) != self._data_version:
                await self.refresh()

    def _index_relations(self) -> None:
        index: dict[tuple[str, str, str], list[str]] = {}
        for device in self._devices.values():
            for kind in RELATION_KINDS:
                tag = getattr(device, kind)
                if tag:
                    index.setdefault((device.site_id, kind, tag), []).append(device.id)
        for ids in index.values():
            ids.sort()
        self._relations = index

    def _index_device(self, device: Device) -> None:
        """Add one new device to the relation index (bulk registration stays linear)."""
        for kind in RELATION_KINDS:
            tag = getattr(device, kind)
            if tag:
                ids = self._relations.setdefault((device.site_id, kind, tag), [])
                ids.append(device.id)
                ids.sort()

    def _added(self, device: Device) -> None:
        for callback in self.on_add:
            callback(device)

    def _revoked(self, device_id: str) -> None:
        for callback in self.on_revoke:
            callback(device_id)

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

    def access(self, device_id: str) -> DeviceAccess:
        return self._access.get(device_id) or DeviceAccess(device_id)

    def is_revoked(self, device_id: str) -> bool:
        access = self._access.get(device_id)
        return access is not None and access.revoked_ms is not None

    def site_of(self, device_id: str) -> str | None:
        device = self._devices.get(device_id)
        return device.site_id if device else None

    def profile_of(self, device_id: str) -> Profile | None:
        """The device's profile; None for a revoked one, so no detector waits for it."""
        device = self._devices.get(device_id)
        if device is None or self.is_revoked(device_id):
            return None
        return self.profiles.get(device.profile)

    def related_ids(self, device_id: str, kind: str) -> list[str]:
        """Ids of the other devices at the same site with the same ``room`` or ``circuit``
        (``kind``), revoked ones left out; empty for an untagged or unknown device.

        In memory and cheap (an index kept per refresh): the detectors ask on every point.
        """
        device = self._devices.get(device_id)
        if kind not in RELATION_KINDS:
            raise ValueError(f"relation kind {kind!r} unknown; known: {', '.join(RELATION_KINDS)}")
        tag = getattr(device, kind) if device is not None else None
        if device is None or not tag:
            return []
        return [
            other
            for other in self._relations.get((device.site_id, kind, tag), ())
            if other != device_id and not self.is_revoked(other)
        ]

    def related(self, device_id: str, kind: str) -> list[Device]:
        """The devices :meth:`related_ids` names."""
        return [self._devices[i] for i in self.related_ids(device_id, kind)]

    def enterprises(self) -> list[Enterprise]:
        return sorted(self._enterprises.values(), key=lambda e: e.id)

    def find_enterprise(self, enterprise_id: str) -> Enterprise | None:
        return self._enterprises.get(enterprise_id)

    def enterprise(self, enterprise_id: str) -> Enterprise:
        try:
            return self._enterprises[enterprise_id]
        except KeyError:
            raise NotFoundError(f"enterprise {enterprise_id!r} not found") from None

    def shutdowns(self, enterprise_id: str | None = None) -> list[ShutdownPeriod]:
        """No-production periods (shutdown orders and holidays), by start."""
        return sorted(
            (p for p in self._periods.values() if enterprise_id in (None, p.enterprise_id)),
            key=lambda p: (p.start_ms, p.id),
        )

    def calendar(self, enterprise_id: str) -> Calendar | None:
        """The enterprise's :class:`Calendar` (hours, days, periods); None if not registered."""
        if enterprise_id not in self._calendars:
            enterprise = self._enterprises.get(enterprise_id)
            self._calendars[enterprise_id] = (
                None
                if enterprise is None
                else Calendar.of(enterprise, self.shutdowns(enterprise_id))
            )
        return self._calendars[enterprise_id]

    def calendar_of(self, device_id: str) -> Calendar | None:
        """The calendar of the enterprise owning the device's site, if it has one."""
        device = self._devices.get(device_id)
        site = self._sites.get(device.site_id) if device is not None else None
        if site is None or not site.enterprise:
            return None
        return self.calendar(site.enterprise)

    async def find_device(self, device_id: str) -> Device | None:
        """The device; on a miss, re-read the registry if another process (the CLI)
        changed it since we last did."""
        device = self._devices.get(device_id)
        if device is None:
            await self._refresh_if_changed()
            device = self._devices.get(device_id)
        return device

    async def get_device(self, device_id: str) -> Device:
        device = await self.find_device(device_id)
        if device is None:
            raise NotFoundError(f"device {device_id!r} not found")
        return device

    async def lookup(self, device_id: str) -> tuple[Device, Profile] | None:
        """The device and its profile, for the pipeline; None for unknown and revoked ones."""
        if time.monotonic() - self._checked_at >= RECHECK_S:
            await self._refresh_if_changed()
        device = await self.find_device(device_id)
        if device is None or self.is_revoked(device_id):
            return None
        profile = self.profiles.get(device.profile)
        return (device, profile) if profile else None

    # -- writes (audited) --------------------------------------------------------------
    async def add_site(self, site: Site, actor: str) -> Site:
        await self.db.transaction(_insert_site, site, actor)
        self._sites[site.id] = site
        return site

    async def check_new_device(self, device: Device) -> None:
        """Raise what :meth:`add_device` would, without writing (before the broker is asked)."""
        if await self.find_device(device.id) is not None:
            raise ConflictError(f"device {device.id!r} already exists")
        self._check_references(device)
        if device.site_id not in self._sites:
            await self.refresh()
            self.site(device.site_id)

    def _check_references(self, device: Device) -> None:
        if device.profile not in self.profiles:
            raise NotFoundError(
                f"profile {device.profile!r} not found; known: {', '.join(sorted(self.profiles))}"
            )
        if device.parent_id is not None and device.parent_id not in self._devices:
            raise NotFoundError(f"parent device {device.parent_id!r} not found")

    async def add_device(
        self, device: Device, actor: str, *, secret_hash: str | None = None
    ) -> Device:
        """Register (audited); ``secret_hash`` is the argon2id hash of its MQTT secret."""
        self._check_references(device)
        if device.site_id not in self._sites:
            await self.refresh()
            self.site(device.site_id)  # raises NotFoundError
        ts = now_ms()
        await self.db.transaction(_insert_device, device, actor, secret_hash, ts)
        new = device.id not in self._devices  # a concurrent refresh may have seen it already
        self._devices[device.id] = device
        if secret_hash is not None:
            self._access[device.id] = DeviceAccess(device.id, secret_issued_ms=ts)
        if new:
            self._index_device(device)
            self._added(device)
        return device

    async def set_relations(
        self, device_id: str, room: str | None, circuit: str | None, actor: str
    ) -> Device:
        """Set (or, with None, drop) a device's room and circuit tags (audited)."""
        device = await self.get_device(device_id)
        await self.db.transaction(_set_relations, device, room or None, circuit or None, actor)
        updated = replace(device, room=room or None, circuit=circuit or None)
        self._devices[device_id] = updated
        self._index_relations()
        return updated

    async def set_enterprise(self, enterprise: Enterprise, actor: str) -> Enterprise:
        """Register an enterprise or replace its hours and baselines (audited)."""
        try:
            enterprise.check()
        except ValueError as exc:
            raise InvalidEnterpriseError(str(exc)) from None
        await self.db.transaction(registry_enterprises.upsert, enterprise, actor)
        self._enterprises[enterprise.id] = enterprise
        self._calendars.pop(enterprise.id, None)
        return enterprise

    async def add_shutdown(self, period: ShutdownPeriod, actor: str) -> ShutdownPeriod:
        """Record a shutdown order or holiday of a registered enterprise (audited)."""
        check_period(period)
        if period.enterprise_id not in self._enterprises:
            await self.refresh()
            self.enterprise(period.enterprise_id)  # raises NotFoundError
        stored = await self.db.transaction(
            registry_enterprises.add_period,
            replace(period, created_by=actor, created_ms=period.created_ms or now_ms()),
            actor,
        )
        self._periods[stored.id] = stored
        self._calendars.pop(stored.enterprise_id, None)
        return stored

    async def end_shutdown(self, period_id: int, end_ms: int, actor: str) -> ShutdownPeriod:
        """Move a period's end: a shutdown lifted early (or extended); audited."""
        stored = await self.db.transaction(
            registry_enterprises.end_period, period_id, end_ms, actor
        )
        self._periods[stored.id] = stored
        self._calendars.pop(stored.enterprise_id, None)
        return stored

    async def set_secret(self, device_id: str, secret_hash: str, actor: str) -> DeviceAccess:
        """Record a newly issued secret's hash (audited); the old one is forgotten."""
        await self.get_device(device_id)
        ts = now_ms()
        await self.db.transaction(_set_secret, device_id, secret_hash, actor, ts)
        self._access[device_id] = DeviceAccess(device_id, secret_issued_ms=ts)
        return self._access[device_id]

    async def revoke(self, device_id: str, actor: str) -> DeviceAccess:
        """Refuse the device from now on (audited); its secret's hash is dropped."""
        await self.get_device(device_id)
        access = await self.db.transaction(_revoke, device_id, actor, now_ms())
        newly = not self.is_revoked(device_id)
        self._access[device_id] = access
        if newly:
            self._revoked(device_id)
        return access

    async def secret_hash(self, device_id: str) -> str | None:
        return await self.db.run(_secret_hash, device_id)
