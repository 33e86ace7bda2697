"""Statistics on constructed alerts whose answers are worked out by hand.

Three sites in two villages and two industries (times are Asia/Shanghai, June 2024):

- shop-1 (陂头村, small_shop), device efm-1: ten fire alarms acknowledged after
  10, 20, ..., 100 s and closed 60 s after that; 3 false alarms, 7 real.
- mill-2 (陂头村, dust_factory), device dust-2: one spark alarm never touched (pending)
  and one offline fault closed as device_fault after 300 s without acknowledging.
- house-3 (新圩社区, small_shop), devices sm-3 and sm-4: on 3 June six false alarms
  from sm-3, one of them at 07:00 local (still 2 June in UTC); on 4 June five false
  alarms and two real fires from sm-4. Each acknowledged after 30 s, closed after 120 s.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import TypeAdapter

from alerts.model import Alert, AlertClass, AlertState, Disposition, Severity
from alerts.rectification import (
    EvidenceFiles,
    NewItem,
    RectificationBook,
    Source,
)
from alerts.stats import (
    UNREGISTERED,
    GroupStats,
    Period,
    Report,
    Statistics,
    parse_instant,
    report_csv,
    rows_csv,
)
from alerts.store import AlertStore
from detectors.bank import DetectorBank
from gateway.model import Reading
from gateway.profiles import DEFAULT_PROFILE_DIR, load_profiles
from gateway.registry import Registry
from gateway.registry_model import Device, Site
from gateway.service import MAIN_SCHEMA
from gateway.sqlite import SqliteDatabase

TZ = "Asia/Shanghai"
S = 1000
JUNE = Period(parse_instant("2024-06-01", TZ), parse_instant("2024-06-30", TZ, end_of_day=True))
NOW = parse_instant("2024-06-10T12:00", TZ)
DAY = 86_400_000


def local(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(TZ)).timestamp() * 1000)


def alert(
    device: str,
    site: str,
    raised_at: int,
    *,
    ack_after_s: int | None,
    close_after_s: int | None,
    disposition: Disposition | None = None,
    alert_class: AlertClass = AlertClass.HAZARD,
    hazard: str = "fire",
) -> Alert:
    closed = close_after_s is not None
    return Alert(
        id=0,
        device_id=device,
        site_id=site,
        rule="smoke_alarm" if alert_class is AlertClass.HAZARD else "offline",
        severity=Severity.RED,
        alert_class=alert_class,
        hazard=hazard,
        state=AlertState.CLOSED if closed else AlertState.RAISED,
        raised_at=raised_at,
        updated_at=raised_at,
        value=None,
        acknowledged=ack_after_s is not None,
        acknowledged_by="duty" if ack_after_s is not None else None,
        acknowledged_at=None if ack_after_s is None else raised_at + ack_after_s * S,
        closed_at=None if close_after_s is None else raised_at + close_after_s * S,
        closed_by="duty" if closed else None,
        disposition=disposition,
    )


@dataclass
class Clock:
    now: int = NOW

    def __call__(self) -> int:
        return self.now


@dataclass
class World:
    stats: Statistics
    book: RectificationBook


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with SqliteDatabase(tmp_path / "ewg.db", MAIN_SCHEMA) as db:
        registry = Registry(db, load_profiles(DEFAULT_PROFILE_DIR))
        for site in (
            Site("shop-1", "五金店", "陂头村", "small_shop", enterprise="五金店"),
            Site("mill-2", "木器厂", "陂头村", "dust_factory", enterprise="木器厂"),
            Site("house-3", "小卖部", "新圩社区", "small_shop", enterprise="小卖部"),
        ):
            await registry.add_site(site, "test")
        for device_id, site_id in (
            ("efm-1", "shop-1"),
            ("dust-2", "mill-2"),
            ("sm-3", "house-3"),
            ("sm-4", "house-3"),
        ):
            await registry.add_device(Device(device_id, "electrical_fire_monitor", site_id), "test")
        await registry.revoke("sm-4", "test")  # revoked: not counted among devices now

        store = AlertStore(db)
        for k in range(1, 11):
            await store.insert(
                alert(
                    "efm-1",
                    "shop-1",
                    local(f"2024-06-02T10:{k:02d}"),
                    ack_after_s=10 * k,
                    close_after_s=10 * k + 60,
                    disposition=Disposition.FALSE_ALARM if k <= 3 else Disposition.REAL,
                )
            )
        await store.insert(
            alert(
                "dust-2",
                "mill-2",
                local("2024-06-05T09:00"),
                ack_after_s=None,
                close_after_s=None,
                hazard="dust_explosion",
            )
        )
        await store.insert(
            alert(
                "dust-2",
                "mill-2",
                local("2024-06-05T10:00"),
                ack_after_s=None,
                close_after_s=300,
                disposition=Disposition.DEVICE_FAULT,
                alert_class=AlertClass.FAULT,
                hazard="offline",
            )
        )
        june_3 = ["07:00", "10:00", "11:00", "12:00", "13:00", "23:50"]
        june_4 = ["08:00", "09:00", "10:00", "11:00", "12:00", "13:00", "14:00"]
        for when in june_3:
            await store.insert(
                alert(
                    "sm-3",
                    "house-3",
                    local(f"2024-06-03T{when}"),
                    ack_after_s=30,
                    close_after_s=120,
                    disposition=Disposition.FALSE_ALARM,
                )
            )
        for n, when in enumerate(june_4):
            await store.insert(
                alert(
                    "sm-4",
                    "house-3",
                    local(f"2024-06-04T{when}"),
                    ack_after_s=30,
                    close_after_s=120,
                    disposition=Disposition.FALSE_ALARM if n < 5 else Disposition.REAL,
                )
            )
        # Outside the period: must not count anywhere.
        await store.insert(
            alert("efm-1", "shop-1", local("2024-05-31T23:59"), ack_after_s=1, close_after_s=2)
        )
        # A device the registry does not know.
        await store.insert(
            alert("ghost-9", "", local("2024-06-06T10:00"), ack_after_s=None, close_after_s=None)
        )

        # Offline now: efm-1 and dust-2 went silent; sm-3 still reports.
        bank = DetectorBank(registry.profile_of, TZ)
        for device in registry.devices():
            bank.expect(device.id, NOW - DAY)
        bank.on_readings([Reading("sm-3", "residual_current_ma", NOW, 20.0)])
        bank.sweep(NOW)

        clock = Clock(local("2024-06-08T09:00"))
        book = RectificationBook(
            db, EvidenceFiles(tmp_path / "evidence"), registry.find_site, store.get, clock=clock
        )
        await book.start(sweep=False)
        fix_by = local("2024-06-09T18:00")
        spark = await book.create(
            NewItem(Source.INSPECTION, "mill-2", "dust", "除尘器积灰", "厂长", fix_by), "li"
        )
        done = await book.create(
            NewItem(Source.INSPECTION, "house-3", "exit", "出口堵塞", "店主", fix_by), "li"
        )
        await book.report(done.id, "店主", "已清理")
        await book.verify(done.id, "li")
        await book.create(
            NewItem(Source.INSPECTION, "house-3", "wiring", "私拉电线", "店主", NOW + DAY), "li"
        )
        clock.now = NOW  # past the first deadline: the spark item is overdue now
        assert spark.is_overdue(NOW)

        yield World(Statistics(db, registry, bank.is_online, book, TZ), book)


def by_key(report: Report) -> dict[str, GroupStats]:
    return {g.key: g for g in report.groups}


async def test_by_village_with_known_answers(world: World) -> None:
    report = await world.stats.report(JUNE, "village")
    groups = by_key(report)
    assert list(groups) == ["新圩社区", "陂头村", UNREGISTERED]
    bt, xw = groups["陂头村"], groups["新圩社区"]

    assert (bt.sites, bt.devices, bt.devices_offline) == (2, 2, 2)
    assert (xw.sites, xw.devices, xw.devices_offline) == (1, 1, 0)  # sm-4 is revoked

    assert bt.alerts == 12
    assert bt.alerts_by_class == {"hazard": 11, "fault": 1}
    assert bt.alerts_by_hazard == {"dust_explosion": 1, "fire": 10, "offline": 1}
    # Acknowledge: 10..100 s, plus the fault closed unacknowledged after 300 s; the
    # untouched spark alarm is pending. Sorted [10, ..., 100, 300]: median is the 6th
    # value, the 90th percentile falls exactly on the 10th (index 0.9 * 10 = 9).
    a = bt.time_to_acknowledge
    assert (a.count, a.median_s, a.p90_s, a.pending) == (11, 60.0, 100.0, 1)
    c = bt.time_to_close
    assert (c.count, c.median_s, c.p90_s, c.pending) == (11, 120.0, 160.0, 1)
    # False alarms over closed hazard alerts only: 3 of shop-1's 10 (the fault is not one).
    assert (bt.closed_hazard_alerts, bt.false_alarms, bt.false_alarm_rate) == (10, 3, 0.3)
    assert bt.false_alarm_site_days == 0

    assert xw.alerts == 13 and xw.alerts_by_class == {"hazard": 13, "fault": 0}
    a, c = xw.time_to_acknowledge, xw.time_to_close
    assert (a.count, a.median_s, a.p90_s, a.pending) == (13, 30.0, 30.0, 0)
    assert (c.median_s, c.p90_s) == (120.0, 120.0)
    assert (xw.closed_hazard_alerts, xw.false_alarms) == (13, 11)
    assert xw.false_alarm_rate == round(11 / 13, 6)
    # 3 June (local) had six false alarms: flagged. 4 June had five: not more than five.
    assert xw.false_alarm_site_days == 1

    ghost = groups[UNREGISTERED]
    assert (ghost.alerts, ghost.sites, ghost.time_to_acknowledge.pending) == (1, 0, 1)

    # Rectification: the spark item is open and overdue; one exit item verified in June.
    assert (bt.rectifications_open, bt.rectifications_overdue) == (1, 1)
    assert (xw.rectifications_open, xw.rectifications_overdue) == (1, 0)
    assert (xw.rectifications_created, xw.rectifications_verified) == (2, 1)

    total = report.total
    assert total.alerts == 26 and total.sites == 3 and total.devices_offline == 2
    assert (total.closed_hazard_alerts, total.false_alarms) == (23, 14)
    assert total.false_alarm_rate == round(14 / 23, 6)
    assert (total.rectifications_open, total.rectifications_overdue) == (2, 1)


async def test_false_alarm_rates_per_site_and_per_device(world: World) -> None:
    report = await world.stats.report(JUNE, "village")
    sites = {
        s.site_id: (s.closed_hazard_alerts, s.false_alarms, s.false_alarm_rate, s.flagged_days)
        for s in report.sites
    }
    assert sites == {
        "house-3": (13, 11, round(11 / 13, 6), 1),
        "mill-2": (0, 0, None, 0),  # nothing closed: no rate rather than 0 %
        "shop-1": (10, 3, 0.3, 0),
    }
    devices = {
        d.device_id: (d.site_id, d.closed_hazard_alerts, d.false_alarm_rate) for d in report.devices
    }
    assert devices == {
        "efm-1": ("shop-1", 10, 0.3),
        "sm-3": ("house-3", 6, 1.0),
        "sm-4": ("house-3", 7, round(5 / 7, 6)),
    }


async def test_by_industry_regroups_the_same_alerts(world: World) -> None:
    groups = by_key(await world.stats.report(JUNE, "industry"))
    assert list(groups) == ["dust_factory", "small_shop", UNREGISTERED]
    shops, mill = groups["small_shop"], groups["dust_factory"]
    assert (shops.sites, shops.alerts, shops.closed_hazard_alerts, shops.false_alarms) == (
        2,
        23,
        23,
        14,
    )
    assert shops.false_alarm_rate == round(14 / 23, 6)
    assert shops.false_alarm_site_days == 1
    assert (mill.alerts, mill.false_alarm_rate, mill.rectifications_overdue) == (2, None, 1)
    assert (mill.time_to_acknowledge.count, mill.time_to_acknowledge.median_s) == (1, 300.0)


async def test_more_than_five_false_alarms_a_day_is_flagged_on_the_local_day(
    world: World,
) -> None:
    [flagged] = await world.stats.false_alarm_days(JUNE)
    assert (flagged.site_id, flagged.village, flagged.day, flagged.false_alarms) == (
        "house-3",
        "新圩社区",
        "2024-06-03",
        6,
    )
    # A lower bar finds the 4th too (five false alarms), worst first.
    days = await world.stats.false_alarm_days(JUNE, limit=4)
    assert [(d.site_id, d.day, d.false_alarms) for d in days] == [
        ("house-3", "2024-06-03", 6),
        ("house-3", "2024-06-04", 5),
    ]
    # The period is respected: 4 June alone flags nothing at the standard limit.
    june_4 = Period(
        parse_instant("2024-06-04", TZ), parse_instant("2024-06-04", TZ, end_of_day=True)
    )
    assert await world.stats.false_alarm_days(june_4) == []


async def test_an_empty_period_has_no_rates_rather_than_zero(world: World) -> None:
    july = Period(parse_instant("2024-07-01", TZ), parse_instant("2024-07-31", TZ, end_of_day=True))
    bt = by_key(await world.stats.report(july, "village"))["陂头村"]
    assert (bt.alerts, bt.false_alarm_rate, bt.time_to_acknowledge.median_s) == (0, None, None)
    # "Now" numbers do not depend on the period.
    assert (bt.devices_offline, bt.rectifications_open, bt.rectifications_overdue) == (2, 1, 1)
    with pytest.raises(ValueError, match="since must be before until"):
        Period(JUNE.until_ms, JUNE.since_ms)


async def test_csv_has_the_same_numbers_as_json(world: World) -> None:
    report = await world.stats.report(JUNE, "village")
    text = report_csv(report)
    assert text.startswith("\ufeff")  # so Excel reads the Chinese names
    rows = {r["village"]: r for r in csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))}
    as_json = TypeAdapter(Report).dump_python(report, mode="json")
    assert set(rows) == {g["key"] for g in as_json["groups"]} | {"(total)"}
    for g in [*as_json["groups"], as_json["total"]]:
        row = rows[g["key"]]
        for name in ("sites", "devices", "devices_offline", "alerts", "false_alarms"):
            assert int(row[name]) == g[name], (g["key"], name)
        for cls, n in g["alerts_by_class"].items():
            assert int(row[f"class_{cls}"]) == n
        for hazard in ("fire", "dust_explosion", "offline"):
            assert int(row[f"hazard_{hazard}"]) == g["alerts_by_hazard"].get(hazard, 0)
        for prefix, key in (("ack", "time_to_acknowledge"), ("close", "time_to_close")):
            for field in ("median_s", "p90_s"):
                want = g[key][field]
                assert row[f"{prefix}_{field}"] == ("" if want is None else str(want))
            assert int(row[f"{prefix}_pending"]) == g[key]["pending"]
        rate = g["false_alarm_rate"]
        assert row["false_alarm_rate"] == ("" if rate is None else str(rate))
        assert int(row["rectifications_overdue"]) == g["rectifications_overdue"]

    sites = list(csv.DictReader(io.StringIO(rows_csv(report.sites).removeprefix("\ufeff"))))
    assert [(s["site_id"], s["false_alarm_rate"]) for s in sites] == [
        ("house-3", str(round(11 / 13, 6))),
        ("mill-2", ""),
        ("shop-1", "0.3"),
    ]
