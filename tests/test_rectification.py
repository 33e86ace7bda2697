"""The rectification book on real SQLite: lifecycle, refusals, evidence, overdue, no delete."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.datastructures import UploadFile

from alerts.bus import AlertBus
from alerts.engine import AlertEngine
from alerts.model import AlertClass, Severity, Signal
from alerts.rectification import (
    Action,
    EvidenceDamaged,
    EvidenceFiles,
    EvidenceLimits,
    EvidenceRefused,
    EvidenceTooLarge,
    EvidenceTypeRefused,
    IllegalTransition,
    InvalidItem,
    Item,
    ItemFilter,
    ItemState,
    NewItem,
    RectificationBook,
    Source,
)
from alerts.store import AlertStore
from gateway.audit import AuditLog
from gateway.errors import ConflictError, NotFoundError, StoreError
from gateway.profiles import DEFAULT_PROFILE_DIR, load_profiles
from gateway.registry import Registry
from gateway.registry_model import Device, Site
from gateway.service import MAIN_SCHEMA
from gateway.sqlite import SqliteDatabase

T0 = 1_717_200_000_000  # 2024-06-01 08:00 Asia/Shanghai
HOUR = 3_600_000
DAY = 24 * HOUR


def png(width: int = 1, height: int = 1) -> bytes:
    """A real (tiny, grey) PNG image, as a phone would upload."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def upload(data: bytes, filename: str = "after.png") -> UploadFile:
    return UploadFile(io.BytesIO(data), size=len(data), filename=filename)


@dataclass
class Clock:
    now: int = T0

    def __call__(self) -> int:
        return self.now


@dataclass
class World:
    db: SqliteDatabase
    book: RectificationBook
    engine: AlertEngine
    clock: Clock
    evidence_dir: Path


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with SqliteDatabase(tmp_path / "ewg.db", MAIN_SCHEMA) as db:
        registry = Registry(db, load_profiles(DEFAULT_PROFILE_DIR))
        await registry.add_site(
            Site("shop-1", "五金店", "陂头村", "small_shop", enterprise="陂头五金有限公司"), "test"
        )
        await registry.add_site(Site("house-9", "出租屋", "新圩社区", "rental_housing"), "test")
        await registry.add_device(Device("efm-1", "electrical_fire_monitor", "shop-1"), "test")
        clock = Clock()
        engine = AlertEngine(AlertStore(db), AlertBus(), registry.site_of, clock=clock)
        await engine.start()
        evidence_dir = tmp_path / "evidence"
        book = RectificationBook(
            db,
            EvidenceFiles(evidence_dir, EvidenceLimits(max_bytes=4096, max_files=3)),
            registry.find_site,
            engine.get,
            clock=clock,
        )
        await book.start(sweep=False)
        yield World(db, book, engine, clock, evidence_dir)
        await book.stop()


async def leak_alert(engine: AlertEngine) -> int:
    changes = await engine.handle(
        [
            Signal(
                "efm-1",
                "residual_current",
                True,
                T0 - HOUR,
                420.0,
                Severity.ORANGE,
                AlertClass.HAZARD,
                "electrical_leakage",
                "剩余电流超限 420 mA",
            )
        ]
    )
    return changes[0].alert.id


def finding(**changes: object) -> NewItem:
    values: dict[str, object] = {
        "source": Source.INSPECTION,
        "site_id": "house-9",
        "hazard": "blocked_exit",
        "description": "二楼安全出口被杂物堵塞",
        "assignee": "房东 李先生",
        "deadline_ms": T0 + 7 * DAY,
        "enterprise": "李先生 (房东)",
    }
    values.update(changes)
    return NewItem(**values)  # type: ignore[arg-type]


async def test_an_alert_goes_through_every_state_and_each_step_is_in_its_history(
    world: World,
) -> None:
    book, clock = world.book, world.clock
    alert_id = await leak_alert(world.engine)

    item = await book.create(
        NewItem(
            source=Source.ALERT,
            site_id=None,
            hazard=None,
            description="",
            assignee="王经理",
            deadline_ms=T0 + 3 * DAY,
            alert_id=alert_id,
        ),
        "duty-zhang",
    )
    # Site, hazard, text and the responsible enterprise come from the alert and its site.
    assert (item.state, item.site_id, item.hazard, item.enterprise) == (
        ItemState.OPEN,
        "shop-1",
        "electrical_leakage",
        "陂头五金有限公司",
    )
    assert item.description == "剩余电流超限 420 mA"
    assert (item.created_by, item.created_at) == ("duty-zhang", T0)

    clock.now = T0 + HOUR
    item = await book.report(item.id, "shop-owner", "更换了漏电保护器", [upload(png())])
    assert (item.state, item.reported_by, item.reported_at) == (
        ItemState.FIX_REPORTED,
        "shop-owner",
        T0 + HOUR,
    )

    clock.now = T0 + 2 * HOUR
    item = await book.send_back(item.id, "inspector-li", "照片看不清接线")
    assert (item.state, item.sent_back) == (ItemState.OPEN, 1)

    clock.now = T0 + 3 * HOUR
    item = await book.report(item.id, "shop-owner", "重新拍照", [upload(png(4, 4), "wiring.png")])
    clock.now = T0 + 4 * HOUR
    item = await book.verify(item.id, "inspector-li", "现场核实，已销号")
    assert (item.state, item.verified_by, item.verified_at) == (
        ItemState.VERIFIED,
        "inspector-li",
        T0 + 4 * HOUR,
    )

    history = await book.history(item.id)
    assert [(h.action, h.from_state, h.to_state, h.actor, h.ts_ms, h.note) for h in history] == [
        (Action.CREATE, None, ItemState.OPEN, "duty-zhang", T0, "剩余电流超限 420 mA"),
        (
            Action.REPORT,
            ItemState.OPEN,
            ItemState.FIX_REPORTED,
            "shop-owner",
            T0 + HOUR,
            "更换了漏电保护器",
        ),
        (
            Action.SEND_BACK,
            ItemState.FIX_REPORTED,
            ItemState.OPEN,
            "inspector-li",
            T0 + 2 * HOUR,
            "照片看不清接线",
        ),
        (
            Action.REPORT,
            ItemState.OPEN,
            ItemState.FIX_REPORTED,
            "shop-owner",
            T0 + 3 * HOUR,
            "重新拍照",
        ),
        (
            Action.VERIFY,
            ItemState.FIX_REPORTED,
            ItemState.VERIFIED,
            "inspector-li",
            T0 + 4 * HOUR,
            "现场核实，已销号",
        ),
    ]
    # Each report keeps its own evidence.
    evidence = await book.evidence(item.id)
    assert [(e.filename, e.history_id) for e in evidence] == [
        ("after.png", history[1].id),
        ("wiring.png", history[3].id),
    ]
    # And the audit log says the same, actor by actor.
    entries = [
        e for e in await AuditLog(world.db).entries() if e.target == f"rectification:{item.id}"
    ]
    assert [(e.actor, e.action) for e in reversed(entries)] == [
        ("duty-zhang", "rectification.create"),
        ("shop-owner", "rectification.report"),
        ("inspector-li", "rectification.send_back"),
        ("shop-owner", "rectification.report"),
        ("inspector-li", "rectification.verify"),
    ]


async def test_illegal_transitions_are_refused_and_change_nothing(world: World) -> None:
    book = world.book
    item = await book.create(finding(), "inspector-li")

    with pytest.raises(IllegalTransition, match=r"cannot verify .* it is open"):
        await book.verify(item.id, "inspector-li")
    with pytest.raises(IllegalTransition, match=r"cannot send back .* it is open"):
        await book.send_back(item.id, "inspector-li", "no")

    await book.report(item.id, "landlord", "已清理")
    with pytest.raises(IllegalTransition, match="already reported"):
        await book.report(item.id, "landlord", "again")

    await book.verify(item.id, "inspector-li")
    for attempt in (
        book.report(item.id, "landlord", "x"),
        book.verify(item.id, "inspector-li"),
        book.send_back(item.id, "inspector-li", "reopen"),
    ):
        with pytest.raises(IllegalTransition, match="struck off, which is final"):
            await attempt

    assert (await book.get(item.id)).state is ItemState.VERIFIED
    assert [h.action for h in await book.history(item.id)] == [
        Action.CREATE,
        Action.REPORT,
        Action.VERIFY,
    ]
    with pytest.raises(NotFoundError):
        await book.verify(999, "inspector-li")


async def test_bad_requests_are_refused_with_the_reason(world: World) -> None:
    book = world.book
    with pytest.raises(InvalidItem, match="not registered"):
        await book.create(finding(site_id="nowhere"), "x")
    with pytest.raises(InvalidItem, match="deadline must be in the future"):
        await book.create(finding(deadline_ms=T0 - 1), "x")
    with pytest.raises(InvalidItem, match="hazard must not be empty"):
        await book.create(finding(hazard=" "), "x")
    with pytest.raises(InvalidItem, match="enterprise"):
        await book.create(finding(enterprise=None), "x")  # house-9 has none on record
    with pytest.raises(InvalidItem, match="alert 77 does not exist"):
        await book.create(finding(source=Source.ALERT, alert_id=77), "x")
    with pytest.raises(InvalidItem, match="must have source 'alert'"):
        await book.create(finding(alert_id=1), "x")

    alert_id = await leak_alert(world.engine)
    from_alert = finding(source=Source.ALERT, alert_id=alert_id, site_id=None, hazard=None)
    first = await book.create(from_alert, "x")
    with pytest.raises(ConflictError, match=f"already listed as rectification item {first.id}"):
        await book.create(from_alert, "x")
    with pytest.raises(InvalidItem, match="is at site 'shop-1'"):
        await book.create(finding(source=Source.ALERT, alert_id=alert_id, site_id="house-9"), "x")

    item = await book.create(finding(), "x")
    with pytest.raises(InvalidItem, match="note"):
        await book.report(item.id, "landlord", "  ")
    await book.report(item.id, "landlord", "done")
    with pytest.raises(InvalidItem, match="reason"):
        await book.send_back(item.id, "inspector", "")
    assert len(await book.list()) == 2  # nothing half-made was left behind


async def test_evidence_is_stored_by_its_hash_and_read_back_checked(world: World) -> None:
    book = world.book
    item = await book.create(finding(), "inspector-li")
    photo = png(8, 8)
    await book.report(item.id, "landlord", "已清理通道", [upload(photo, "../../通道.png")])

    [record] = await book.evidence(item.id)
    digest = hashlib.sha256(photo).hexdigest()
    assert (record.filename, record.content_type, record.size, record.sha256) == (
        "通道.png",
        "image/png",
        len(photo),
        digest,
    )
    assert record.uploaded_by == "landlord"
    stored = world.evidence_dir / digest[:2] / digest
    assert stored.read_bytes() == photo

    got, data = await book.evidence_file(item.id, record.id)
    assert (got, data) == (record, photo)
    with pytest.raises(NotFoundError):
        await book.evidence_file(item.id, record.id + 1)

    # A file changed on disk is not served as evidence any more.
    stored.write_bytes(photo[:-1] + b"\x00")
    with pytest.raises(EvidenceDamaged, match="no longer matches"):
        await book.evidence_file(item.id, record.id)


async def test_too_large_wrong_type_empty_or_too_many_files_are_refused_whole(
    world: World,
) -> None:
    book = world.book
    item = await book.create(finding(), "inspector-li")
    good = upload(png())
    cases: list[tuple[list[UploadFile], type[EvidenceRefused], str]] = [
        ([good, upload(b"\x89PNG\r\n\x1a\n" + b"\x00" * 4096)], EvidenceTooLarge, "limit is 4096"),
        ([upload(b"MZ\x90\x00 a program", "photo.jpg")], EvidenceTypeRefused, "not an accepted"),
        ([upload(b"", "empty.png")], EvidenceRefused, "is empty"),
        ([upload(png()) for _ in range(4)], EvidenceRefused, "at most 3 files"),
    ]
    for files, error, message in cases:
        with pytest.raises(error, match=message):
            await book.report(item.id, "landlord", "fixed", files)

    # The item did not move, and nothing was written, not even the good photo.
    assert (await book.get(item.id)).state is ItemState.OPEN
    assert await book.evidence(item.id) == []
    assert not world.evidence_dir.exists() or not any(world.evidence_dir.rglob("*"))


async def test_overdue_items_are_flagged_listed_and_recorded_once(world: World) -> None:
    book, clock = world.book, world.clock
    seen: list[Item] = []

    class Listener:
        def on_overdue(self, item: Item) -> None:
            seen.append(item)

    book.add_listener(Listener())
    late = await book.create(finding(deadline_ms=T0 + DAY), "inspector-li")
    on_time = await book.create(finding(deadline_ms=T0 + 10 * DAY, hazard="wiring"), "inspector-li")
    assert not late.is_overdue(clock())
    assert await book.list(ItemFilter(overdue=True)) == []
    assert await book.sweep() == []

    clock.now = T0 + DAY  # the deadline itself is still in time
    assert await book.list(ItemFilter(overdue=True)) == []
    clock.now = T0 + DAY + 1
    [listed] = await book.list(ItemFilter(overdue=True))
    assert listed.id == late.id and listed.is_overdue(clock())
    assert [i.id for i in await book.list(ItemFilter(overdue=False))] == [on_time.id]

    [swept] = await book.sweep()
    assert (swept.id, swept.overdue_at) == (late.id, T0 + DAY + 1)
    assert [i.id for i in seen] == [late.id]
    clock.now += HOUR
    assert await book.sweep() == []  # recorded once, not every sweep
    line = (await book.history(late.id))[-1]
    assert (line.action, line.actor, line.from_state, line.to_state) == (
        Action.OVERDUE,
        "system",
        ItemState.OPEN,
        ItemState.OPEN,
    )

    # A reported fix does not stop the clock; only verification does, and it stays on record.
    await book.report(late.id, "landlord", "done late")
    assert (await book.get(late.id)).is_overdue(clock())
    counts = await book.counts_by_site(T0, T0 + 30 * DAY)
    assert (counts["house-9"].open, counts["house-9"].overdue) == (2, 1)
    verified = await book.verify(late.id, "inspector-li")
    assert not verified.is_overdue(clock()) and verified.overdue_at == T0 + DAY + 1
    counts = await book.counts_by_site(T0, T0 + 30 * DAY)
    assert (counts["house-9"].open, counts["house-9"].overdue) == (1, 0)
    assert (counts["house-9"].created, counts["house-9"].verified) == (2, 1)


async def test_items_history_and_evidence_cannot_be_deleted_or_rewritten(world: World) -> None:
    book, db = world.book, world.db
    item = await book.create(finding(), "inspector-li")
    await book.report(item.id, "landlord", "done", [upload(png())])
    await book.verify(item.id, "inspector-li")

    refused = [
        ("DELETE FROM rectifications", "never deleted"),
        ("DELETE FROM rectification_history", "append-only"),
        ("UPDATE rectification_history SET actor = 'nobody'", "append-only"),
        ("DELETE FROM rectification_evidence", "never deleted"),
        ("UPDATE rectification_evidence SET sha256 = 'x'", "never changed"),
        ("UPDATE rectifications SET state = 'open'", "illegal rectification state change"),
        ("UPDATE rectifications SET created_by = 'nobody'", "cannot be changed"),
        # REPLACE deletes the old row without firing DELETE triggers: refused on its own.
        (
            "REPLACE INTO rectifications (id, source, site_id, enterprise, hazard, description,"
            " assignee, deadline_ms, state, created_at, created_by, updated_at)"
            " SELECT id, source, site_id, enterprise, hazard, description, assignee,"
            " deadline_ms, 'open', created_at, created_by, updated_at FROM rectifications",
            "never replaced",
        ),
        (
            "INSERT OR REPLACE INTO rectification_history SELECT id, item_id, ts_ms, 'nobody',"
            " action, from_state, to_state, note FROM rectification_history",
            "append-only",
        ),
        (
            "REPLACE INTO rectification_evidence SELECT id, item_id, history_id, filename,"
            " content_type, size, 'x', uploaded_at, uploaded_by FROM rectification_evidence",
            "never changed",
        ),
    ]
    for sql, message in refused:
        with pytest.raises(StoreError, match=message):
            await db.run(lambda c, s=sql: c.execute(s))

    assert (await book.get(item.id)).state is ItemState.VERIFIED
    history = await book.history(item.id)
    assert len(history) == 3 and "nobody" not in {h.actor for h in history}
    (evidence,) = await book.evidence(item.id)
    assert evidence.sha256 != "x"


async def test_items_survive_a_restart(world: World, tmp_path: Path) -> None:
    item = await world.book.create(finding(), "inspector-li")
    await world.db.close()
    async with SqliteDatabase(tmp_path / "ewg.db", MAIN_SCHEMA) as db:
        again = RectificationBook(
            db,
            EvidenceFiles(world.evidence_dir),
            lambda _site: None,
            world.engine.get,
            clock=world.clock,
        )
        await again.start(sweep=False)
        assert await again.get(item.id) == item
        assert [h.action for h in await again.history(item.id)] == [Action.CREATE]
