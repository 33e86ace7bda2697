"""Statistics by village/community (村/社区) and by industry, as the town's plan asks.

The plan wants hazards analysed by area and by industry (分区域、分行业统计分析) and
the standards want a site with more than five false alarms a day followed up. The
duty office reads these numbers in reports and compares them between villages,
so every number has one written definition, here.

Definitions
-----------
Period
    ``[since, until)`` in epoch milliseconds. An alert belongs to the period when it
    was *raised* in it; what happened to it later (acknowledged, closed) counts even
    if that was after ``until``, so a report on last month includes last month's
    alarms closed this morning. A date without a time means local midnight; as
    ``until`` it means the end of that day (see :func:`parse_instant`).
Groups
    An alert, device or item is counted under the village (or industry) of its site
    as the registry holds it now. Alerts whose site is not registered (a device
    unknown when it alarmed) go to the group ``(unregistered)``, so totals add up.
Alerts by class and type
    Counts of alerts raised in the period, by ``alert_class`` (hazard / fault) and by
    ``hazard`` (the rule's hazard type, e.g. ``fire``, ``electrical_leakage``).
Time to acknowledge
    ``acknowledged_at - raised_at`` in seconds. An alert closed without ever being
    acknowledged counts with ``closed_at`` (closing it is the response). An alert
    with neither is *pending*: it is left out of the median and 90th percentile and
    counted in ``pending`` instead, so a fast median with many pending alerts shows.
Time to close
    ``closed_at - raised_at`` in seconds over closed alerts; open ones are ``pending``.
    Both durations are clamped at zero: ``raised_at`` is the device's timestamp, the
    others are the gateway's clock, and a device clock ahead would give negatives.
Median, 90th percentile
    :func:`numpy.percentile` with linear interpolation (numpy's default); ``None``
    when no alert has the duration.
False-alarm rate
    Over *hazard* alerts raised in the period and closed: those closed with
    disposition ``false_alarm`` divided by all closed. Equipment faults are left
    out: "false alarm" is the verdict on an alarm of a hazard, and a site's many
    offline faults closed as ``device_fault`` would otherwise dilute its rate.
    ``None`` when nothing was closed. Reported per group, per site and per device.
More than five false alarms a day
    A site-day is *flagged* when more than :data:`FALSE_ALARM_DAY_LIMIT` hazard
    alerts of that site, raised on that local calendar day (settings timezone),
    were closed as false alarms. Alarms not yet closed are not known to be false,
    so a day's count can still grow after the day.
Devices offline
    Now, not over the period: registered, not revoked devices whose offline
    detector says offline. Devices never heard of since the gateway started and
    not yet past their timeout are not counted.
Rectification items
    ``rectifications_open`` and ``rectifications_overdue`` are now: not verified,
    and not verified past the deadline. ``rectifications_created`` and
    ``rectifications_verified`` count items listed and struck off in the period.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

import numpy as np

from alerts.model import AlertClass, Disposition
from alerts.rectification.book import RectificationBook
from alerts.rectification.model import SiteCounts
from gateway.registry_model import Device, Site
from gateway.sqlite import SqliteDatabase

GroupBy = Literal["village", "industry"]

#: The group of alerts whose site is not in the registry.
UNREGISTERED = "(unregistered)"
#: The key of the total row in CSV.
TOTAL = "(total)"
#: "More than 5 false alarms a day from one site must be followed up" (domain.md).
FALSE_ALARM_DAY_LIMIT = 5


class RegistryView(Protocol):
    """What statistics need of the registry (:class:`gateway.registry.Registry` fits)."""

    def sites(self) -> list[Site]: ...

    def devices(self) -> list[Device]: ...

    def is_revoked(self, device_id: str) -> bool: ...


# -- the period --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Period:
    since_ms: int
    until_ms: int

    def __post_init__(self) -> None:
        if self.since_ms >= self.until_ms:
            raise ValueError("the period is empty: since must be before until")


def parse_instant(text: str, timezone: str, *, end_of_day: bool = False) -> int:
    """Epoch milliseconds from an ISO 8601 date or date-time (or epoch milliseconds).

    Times without an offset are local (``timezone``). A bare date is that day's
    local midnight, or with ``end_of_day`` the next midnight, so
    ``since=2024-06-01&until=2024-06-30`` covers the whole of June.

    >>> parse_instant("2024-06-01", "Asia/Shanghai")
    1717171200000
    >>> parse_instant("2024-06-01", "Asia/Shanghai", end_of_day=True) - 1717171200000
    86400000
    >>> parse_instant("2024-06-01T00:00:00+08:00", "UTC")
    1717171200000
    >>> parse_instant("yesterday", "UTC")
    Traceback (most recent call last):
    ...
    ValueError: 'yesterday' is not an ISO 8601 date or date-time (e.g. 2024-06-01 or \
2024-06-01T08:30)
    """
    text = text.strip()
    tz = ZoneInfo(timezone)
    if text.isdigit():
        return int(text)
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            if end_of_day:
                day += timedelta(days=1)
            moment = datetime.combine(day, time(), tz)
        else:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=tz)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO 8601 date or date-time (e.g. 2024-06-01 or 2024-06-01T08:30)"
        ) from None
    return int(moment.timestamp() * 1000)


def local_iso(ms: int, timezone: str) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(ZoneInfo(timezone)).isoformat()


# -- what a report holds -----------------------------------------------------------------


@dataclass(slots=True)
class Durations:
    """Seconds from raising an alert to a response (or to closing it)."""

    count: int
    median_s: float | None
    p90_s: float | None
    #: Alerts without the response yet (never acknowledged, or not closed).
    pending: int


@dataclass(slots=True)
class GroupStats:
    key: str
    sites: int = 0
    devices: int = 0
    devices_offline: int = 0
    alerts: int = 0
    alerts_by_class: dict[str, int] = field(
        default_factory=lambda: {c.value: 0 for c in AlertClass}
    )
    alerts_by_hazard: dict[str, int] = field(default_factory=dict)
    time_to_acknowledge: Durations = field(default_factory=lambda: Durations(0, None, None, 0))
    time_to_close: Durations = field(default_factory=lambda: Durations(0, None, None, 0))
    #: Hazard alerts closed (the false-alarm rate's denominator).
    closed_hazard_alerts: int = 0
    false_alarms: int = 0
    false_alarm_rate: float | None = None
    #: Site-days with more than FALSE_ALARM_DAY_LIMIT false alarms.
    false_alarm_site_days: int = 0
    rectifications_open: int = 0
    rectifications_overdue: int = 0
    rectifications_created: int = 0
    rectifications_verified: int = 0


@dataclass(slots=True)
class SiteFalseAlarms:
    site_id: str
    name: str
    village: str
    industry: str
    closed_hazard_alerts: int
    false_alarms: int
    false_alarm_rate: float | None
    #: Days in the period with more than FALSE_ALARM_DAY_LIMIT false alarms.
    flagged_days: int


@dataclass(slots=True)
class DeviceFalseAlarms:
    device_id: str
    site_id: str
    closed_hazard_alerts: int
    false_alarms: int
    false_alarm_rate: float | None


@dataclass(slots=True)
class FlaggedDay:
    """A site that had more than the limit of false alarms on one local day."""

    site_id: str
    name: str
    village: str
    industry: str
    day: str
    false_alarms: int


@dataclass(slots=True)
class Report:
    group_by: GroupBy
    since: str
    until: str
    since_ms: int
    until_ms: int
    timezone: str
    groups: list[GroupStats]
    total: GroupStats
    sites: list[SiteFalseAlarms]
    devices: list[DeviceFalseAlarms]
    false_alarm_day_limit: int = FALSE_ALARM_DAY_LIMIT


def durations(values_ms: Iterable[int | None]) -> Durations:
    """Median and 90th percentile (seconds) of the known values; ``None`` ones are pending.

    >>> durations([10_000 * k for k in range(1, 11)] + [None])
    Durations(count=10, median_s=55.0, p90_s=91.0, pending=1)
    >>> durations([None, None])
    Durations(count=0, median_s=None, p90_s=None, pending=2)
    """
    known: list[int] = []
    pending = 0
    for v in values_ms:
        if v is None:
            pending += 1
        else:
            known.append(v)
    if not known:
        return Durations(0, None, None, pending)
    median, p90 = np.percentile(np.asarray(known, dtype=float) / 1000.0, [50, 90])
    return Durations(len(known), round(float(median), 3), round(float(p90), 3), pending)


# -- SQL (in the database thread) --------------------------------------------------------

_IN_PERIOD = "raised_at >= :since AND raised_at < :until"


@dataclass(slots=True)
class _Rows:
    by_type: list[tuple[str, str, str, int]]
    #: Per group key (None: the total): time to acknowledge, time to close.
    durations: dict[str | None, tuple[Durations, Durations]]
    closed: list[tuple[str, str, int, int]]
    false_alarms: list[tuple[str, int]]


def _params(since_ms: int, until_ms: int) -> dict[str, object]:
    return {
        "since": since_ms,
        "until": until_ms,
        "hazard": AlertClass.HAZARD.value,
        "false": Disposition.FALSE_ALARM.value,
    }


def _false_alarm_rows(conn: sqlite3.Connection, since_ms: int, until_ms: int) -> list[Any]:
    return conn.execute(
        "SELECT site_id, raised_at FROM alerts"
        f" WHERE {_IN_PERIOD} AND alert_class = :hazard AND disposition = :false",
        _params(since_ms, until_ms),
    ).fetchall()


def _query(
    conn: sqlite3.Connection,
    since_ms: int,
    until_ms: int,
    group_of: dict[str, str],
    only: frozenset[str] | None = None,
) -> _Rows:
    """Everything a report needs from the alerts table.

    Per-alert durations are grouped and reduced to percentiles here, in the
    database thread, so a month of alerts never loops in the event loop; the
    rest comes back already aggregated by SQL.
    """
    p = _params(since_ms, until_ms)
    by_type = conn.execute(
        f"SELECT site_id, alert_class, hazard, COUNT(*) FROM alerts WHERE {_IN_PERIOD}"
        " GROUP BY site_id, alert_class, hazard",
        p,
    ).fetchall()
    by_type = [r for r in by_type if only is None or r[0] in only]
    # max(0, x) with two arguments is SQLite's scalar max: NULL stays NULL (pending).
    ack: dict[str | None, list[int | None]] = defaultdict(list)
    close: dict[str | None, list[int | None]] = defaultdict(list)
    for site_id, to_ack, to_close in conn.execute(
        "SELECT site_id, max(0, coalesce(acknowledged_at, closed_at) - raised_at),"
        f" max(0, closed_at - raised_at) FROM alerts WHERE {_IN_PERIOD}",
        p,
    ):
        if only is not None and site_id not in only:
            continue
        for key in (group_of.get(site_id, UNREGISTERED), None):
            ack[key].append(to_ack)
            close[key].append(to_close)
    reduced = {key: (durations(ack[key]), durations(close[key])) for key in ack}
    closed = conn.execute(
        "SELECT site_id, device_id, COUNT(*), SUM(disposition = :false) FROM alerts"
        f" WHERE {_IN_PERIOD} AND alert_class = :hazard AND closed_at IS NOT NULL"
        " GROUP BY site_id, device_id",
        p,
    ).fetchall()
    closed = [r for r in closed if only is None or r[0] in only]
    false_alarms = _false_alarm_rows(conn, since_ms, until_ms)
    false_alarms = [r for r in false_alarms if only is None or r[0] in only]
    return _Rows(by_type, reduced, closed, false_alarms)


# -- computing ---------------------------------------------------------------------------


def _rate(false_alarms: int, closed: int) -> float | None:
    return round(false_alarms / closed, 6) if closed else None


class Statistics:
    """Computes reports over the alerts table, the registry and the rectification book.

    Parameters
    ----------
    is_online
        The detector bank's view of a device now (``None``: not watched).
    book
        The rectification book, or ``None`` when items are not in use (their
        columns are then zero).
    """

    def __init__(
        self,
        db: SqliteDatabase,
        registry: RegistryView,
        is_online: Callable[[str], bool | None],
        book: RectificationBook | None,
        timezone: str,
    ) -> None:
        self._db = db
        self._registry = registry
        self._is_online = is_online
        self._book = book
        self.timezone = timezone
        self._tz = ZoneInfo(timezone)

    def _day(self, ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, self._tz).date().isoformat()

    async def report(
        self, period: Period, group_by: GroupBy, site_ids: Collection[str] | None = None
    ) -> Report:
        """The report; with ``site_ids``, over those sites only (a principal's scope)."""
        only = None if site_ids is None else frozenset(site_ids)
        sites = {s.id: s for s in self._registry.sites() if only is None or s.id in only}

        def key_of(site_id: str) -> str:
            site = sites.get(site_id)
            if site is None:
                return UNREGISTERED
            return site.village if group_by == "village" else site.industry

        group_of = {site_id: key_of(site_id) for site_id in sites}
        rows = await self._db.run(_query, period.since_ms, period.until_ms, group_of, only)
        items: dict[str, SiteCounts] = (
            await self._book.counts_by_site(period.since_ms, period.until_ms)
            if self._book is not None
            else {}
        )
        items = {k: v for k, v in items.items() if only is None or k in only}
        groups: dict[str, GroupStats] = {}

        def group(key: str) -> GroupStats:
            if key not in groups:
                groups[key] = GroupStats(key)
            return groups[key]

        total = GroupStats(TOTAL)

        def both(key: str) -> tuple[GroupStats, GroupStats]:
            return group(key), total

        for site_id in sites:
            for g in both(key_of(site_id)):
                g.sites += 1
        for device in self._registry.devices():
            if self._registry.is_revoked(device.id) or (
                only is not None and device.site_id not in only
            ):
                continue
            offline = self._is_online(device.id) is False
            for g in both(key_of(device.site_id)):
                g.devices += 1
                g.devices_offline += int(offline)

        for site_id, alert_class, hazard, n in rows.by_type:
            for g in both(key_of(site_id)):
                g.alerts += n
                g.alerts_by_class[alert_class] = g.alerts_by_class.get(alert_class, 0) + n
                g.alerts_by_hazard[hazard] = g.alerts_by_hazard.get(hazard, 0) + n

        # Every group with alerts exists by now (counted above).
        for key, (to_ack, to_close) in rows.durations.items():
            g = total if key is None else groups[key]
            g.time_to_acknowledge, g.time_to_close = to_ack, to_close

        per_site: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        devices_out: list[DeviceFalseAlarms] = []
        for site_id, device_id, closed, false in rows.closed:
            false = int(false or 0)
            per_site[site_id][0] += closed
            per_site[site_id][1] += false
            devices_out.append(
                DeviceFalseAlarms(device_id, site_id, closed, false, _rate(false, closed))
            )
            for g in both(key_of(site_id)):
                g.closed_hazard_alerts += closed
                g.false_alarms += false

        flagged = _flagged(rows.false_alarms, self._day)
        flagged_per_site: dict[str, int] = defaultdict(int)
        for site_id, _day in flagged:
            flagged_per_site[site_id] += 1
            for g in both(key_of(site_id)):
                g.false_alarm_site_days += 1

        for site_id, counts in items.items():
            for g in both(key_of(site_id)):
                g.rectifications_open += counts.open
                g.rectifications_overdue += counts.overdue
                g.rectifications_created += counts.created
                g.rectifications_verified += counts.verified

        for g in [*groups.values(), total]:
            g.false_alarm_rate = _rate(g.false_alarms, g.closed_hazard_alerts)
            g.alerts_by_hazard = dict(sorted(g.alerts_by_hazard.items()))

        sites_out = []
        for site_id in sorted(set(sites) | set(per_site)):
            known = sites.get(site_id)
            closed, false = per_site.get(site_id, [0, 0])
            sites_out.append(
                SiteFalseAlarms(
                    site_id=site_id,
                    name=known.name if known else "",
                    village=known.village if known else UNREGISTERED,
                    industry=known.industry if known else UNREGISTERED,
                    closed_hazard_alerts=closed,
                    false_alarms=false,
                    false_alarm_rate=_rate(false, closed),
                    flagged_days=flagged_per_site.get(site_id, 0),
                )
            )
        devices_out.sort(key=lambda d: (d.site_id, d.device_id))
        ordered = sorted(groups.values(), key=lambda g: (g.key == UNREGISTERED, g.key))
        return Report(
            group_by=group_by,
            since=local_iso(period.since_ms, self.timezone),
            until=local_iso(period.until_ms, self.timezone),
            since_ms=period.since_ms,
            until_ms=period.until_ms,
            timezone=self.timezone,
            groups=ordered,
            total=total,
            sites=sites_out,
            devices=devices_out,
        )

    async def false_alarm_days(
        self,
        period: Period,
        limit: int = FALSE_ALARM_DAY_LIMIT,
        site_ids: Collection[str] | None = None,
    ) -> list[FlaggedDay]:
        """Site-days in the period with more than ``limit`` false alarms, worst first."""
        rows = await self._db.run(_false_alarm_rows, period.since_ms, period.until_ms)
        if site_ids is not None:
            rows = [r for r in rows if r[0] in site_ids]
        sites = {s.id: s for s in self._registry.sites()}
        out = []
        for (site_id, day), n in _flagged(rows, self._day, limit).items():
            site = sites.get(site_id)
            out.append(
                FlaggedDay(
                    site_id=site_id,
                    name=site.name if site else "",
                    village=site.village if site else UNREGISTERED,
                    industry=site.industry if site else UNREGISTERED,
                    day=day,
                    false_alarms=n,
                )
            )
        out.sort(key=lambda f: (-f.false_alarms, f.day, f.site_id))
        return out


def _flagged(
    rows: Iterable[tuple[str, int]],
    day_of: Callable[[int], str],
    limit: int = FALSE_ALARM_DAY_LIMIT,
) -> dict[tuple[str, str], int]:
    per_day: dict[tuple[str, str], int] = defaultdict(int)
    for site_id, raised_at in rows:
        per_day[(site_id, day_of(raised_at))] += 1
    return {k: n for k, n in per_day.items() if n > limit}


# -- CSV ---------------------------------------------------------------------------------


def report_csv(report: Report) -> str:
    """The report's groups and total as CSV, one row each (UTF-8 with BOM, for Excel).

    Columns mirror the JSON: nested durations become ``ack_*`` / ``close_*``, the
    class and hazard counts ``class_<class>`` and ``hazard_<type>`` (0 when absent),
    an undefined number (no alert to compute it over) an empty cell.
    """
    rows = [*report.groups, report.total]
    classes = sorted({c for g in rows for c in g.alerts_by_class})
    hazards = sorted({h for g in rows for h in g.alerts_by_hazard})
    header = [
        report.group_by,
        "sites",
        "devices",
        "devices_offline",
        "alerts",
        *(f"class_{c}" for c in classes),
        *(f"hazard_{h}" for h in hazards),
        "ack_count",
        "ack_median_s",
        "ack_p90_s",
        "ack_pending",
        "close_count",
        "close_median_s",
        "close_p90_s",
        "close_pending",
        "closed_hazard_alerts",
        "false_alarms",
        "false_alarm_rate",
        "false_alarm_site_days",
        "rectifications_open",
        "rectifications_overdue",
        "rectifications_created",
        "rectifications_verified",
    ]
    lines = []
    for g in rows:
        a, c = g.time_to_acknowledge, g.time_to_close
        lines.append(
            (
                g.key,
                g.sites,
                g.devices,
                g.devices_offline,
                g.alerts,
                *(g.alerts_by_class.get(k, 0) for k in classes),
                *(g.alerts_by_hazard.get(h, 0) for h in hazards),
                a.count,
                a.median_s,
                a.p90_s,
                a.pending,
                c.count,
                c.median_s,
                c.p90_s,
                c.pending,
                g.closed_hazard_alerts,
                g.false_alarms,
                g.false_alarm_rate,
                g.false_alarm_site_days,
                g.rectifications_open,
                g.rectifications_overdue,
                g.rectifications_created,
                g.rectifications_verified,
            )
        )
    return _csv(header, lines)


def rows_csv(rows: Sequence[SiteFalseAlarms] | Sequence[DeviceFalseAlarms]) -> str:
    """Per-site or per-device false-alarm rates as CSV, one column per field."""
    sites = not rows or isinstance(rows[0], SiteFalseAlarms)
    kind = SiteFalseAlarms if sites else DeviceFalseAlarms
    names = [f.name for f in fields(kind)]
    return _csv(names, ([getattr(row, n) for n in names] for row in rows))


def _csv(header: Sequence[str], rows: Iterable[Iterable[object]]) -> str:
    out = io.StringIO()
    out.write("\ufeff")  # Excel needs the BOM to read UTF-8 (village names are Chinese)
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(_cell(v) for v in row)
    return out.getvalue()


def _cell(value: object) -> str:
    """A CSV cell; text that a spreadsheet would run as a formula is quoted with ``'``.

    Village and industry names are typed in by people, and ``=HYPERLINK(...)`` in a
    report opened in Excel must stay text.

    >>> [_cell(None), _cell(0.25), _cell("陂头村"), _cell("=1+1")]
    ['', '0.25', '陂头村', "'=1+1"]
    """
    if value is None:
        return ""
    text = str(value)
    if isinstance(value, str) and text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text
