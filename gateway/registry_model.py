"""Sites, devices and enterprises (with their hours and shutdown orders) as the registry
holds them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@dataclass(frozen=True, slots=True)
class Site:
    """A place being watched: a shop, a rental house, a factory, a station, the mine."""

    id: str
    name: str
    village: str  # 村/社区, the unit statistics are reported by
    industry: str  # e.g. small_shop, rental_housing, residential, dust_factory, fuel_station, mine
    address: str = ""
    enterprise: str = ""  # owning enterprise (tenant); empty for public premises


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    profile: str
    site_id: str
    name: str = ""
    #: A device behind another one (a fire panel's component behind its transmission device).
    parent_id: str | None = None
    #: The room or space it watches (same site): a smoke alarm and a heat detector in one
    #: room confirm each other (``detectors/correlate.py``).
    room: str | None = None
    #: The electrical circuit it is on (same site): residual current and cable temperature
    #: of one circuit confirm each other.
    circuit: str | None = None


#: The relation kinds a device can carry, as ``Registry.related`` takes them.
RELATION_KINDS = ("room", "circuit")


@dataclass(frozen=True, slots=True)
class DeviceAccess:
    """Whether a device may connect, as EWG records it (the secret's hash stays in SQLite).

    A revoked device stays in the registry, so its history and alerts keep their
    site, but its messages are refused and its id cannot be registered again.
    """

    device_id: str
    #: When the current MQTT secret was issued; None if none was (broker accounts off).
    secret_issued_ms: int | None = None
    revoked_ms: int | None = None
    revoked_by: str | None = None


def parse_hours(text: str) -> tuple[int, int]:
    """``"08:00-18:00"`` as minutes after local midnight; an end before the start is a shift
    that runs past midnight (``"22:00-06:00"``), ``"00:00-24:00"`` is round the clock.

    >>> parse_hours("08:00-18:00"), parse_hours("22:00-06:00")
    ((480, 1080), (1320, 360))
    >>> parse_hours("8-18")
    Traceback (most recent call last):
    ...
    ValueError: working hours '8-18' must look like 08:00-18:00
    """
    try:
        start_text, end_text = text.split("-")
        start, end = _minutes(start_text), _minutes(end_text)
    except ValueError:
        raise ValueError(f"working hours {text!r} must look like 08:00-18:00") from None
    if start == end or start >= 24 * 60:
        raise ValueError(f"working hours {text!r} must have a start before 24:00 and an end")
    return start, end


def _minutes(text: str) -> int:
    hours, minutes = text.strip().split(":")
    if len(hours) != 2 or len(minutes) != 2:
        raise ValueError(text)
    h, m = int(hours), int(minutes)
    if not (0 <= h <= 24 and 0 <= m < 60) or (h == 24 and m):
        raise ValueError(text)
    return h * 60 + m


def parse_days(text: str) -> frozenset[int]:
    """Working days as ISO weekdays (1 = Monday .. 7 = Sunday): ``"1-5"``, ``"1-6"``,
    ``"1,3,5"``; an empty string is no working day at all.

    >>> sorted(parse_days("1-5")), sorted(parse_days("1,2,7"))
    ([1, 2, 3, 4, 5], [1, 2, 7])
    """
    days: set[int] = set()
    for part in (p.strip() for p in text.split(",") if p.strip()):
        first, _, last = part.partition("-")
        try:
            lo, hi = int(first), int(last or first)
        except ValueError:
            raise ValueError(f"working days {text!r} must look like 1-5 or 1,3,5") from None
        if not 1 <= lo <= hi <= 7:
            raise ValueError(f"working days {text!r}: ISO weekdays are 1 (Mon) to 7 (Sun)")
        days.update(range(lo, hi + 1))
    return frozenset(days)


def check_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {name!r} (an IANA name like Asia/Shanghai)") from None


@dataclass(frozen=True, slots=True)
class Enterprise:
    """An enterprise (the ``Site.enterprise`` string is its id) and when it works.

    The baselines are what its power meters draw when it does *not* produce; when
    they are None the production detector learns them from its quiet nights and days.
    """

    id: str
    name: str = ""
    #: Local working hours, e.g. ``08:00-18:00`` (see :func:`parse_hours`).
    hours: str = "08:00-18:00"
    #: Local working days as ISO weekdays, e.g. ``1-5`` (see :func:`parse_days`).
    days: str = "1-5"
    timezone: str = "Asia/Shanghai"
    #: Energy of a non-producing day (kWh, all its meters' own), if the office set one.
    baseline_day_kwh: float | None = None
    #: Load when not producing (kW), if the office set one.
    baseline_load_kw: float | None = None

    def check(self) -> None:
        """Raise ValueError naming the field that cannot be used."""
        if not self.id:
            raise ValueError("an enterprise needs an id (the sites' enterprise name)")
        parse_hours(self.hours)
        parse_days(self.days)
        check_timezone(self.timezone)
        for name in ("baseline_day_kwh", "baseline_load_kw"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")


#: Kinds of periods in which an enterprise must not produce.
PERIOD_KINDS = ("shutdown", "holiday")


@dataclass(frozen=True, slots=True)
class ShutdownPeriod:
    """A time in which the enterprise must not produce: an ordered shutdown (停产整顿,
    ``kind="shutdown"``) or a declared holiday / non-production period (``"holiday"``)."""

    id: int
    enterprise_id: str
    start_ms: int
    end_ms: int
    reason: str = ""
    #: Who ordered it (an authority, a document number); free text.
    ordered_by: str = ""
    kind: str = "shutdown"
    created_by: str = ""
    created_ms: int = 0

    def covers(self, ts_ms: int) -> bool:
        return self.start_ms <= ts_ms < self.end_ms


@dataclass(frozen=True, slots=True)
class LocalDay:
    """One local day of a calendar: date ordinal, [start, end) in epoch ms, ISO weekday."""

    ordinal: int
    start_ms: int
    end_ms: int
    weekday: int

    def contains(self, ts_ms: int) -> bool:
        return self.start_ms <= ts_ms < self.end_ms


@dataclass(frozen=True, slots=True)
class Calendar:
    """An enterprise's working time and its no-production periods, ready for the detector.

    >>> acme = Enterprise("acme", "ACME", hours="08:00-18:00", days="1-5")
    >>> order = ShutdownPeriod(1, "acme", 1796140800000, 1796745600000, "dust", "town")
    >>> cal = Calendar.of(acme, [order])
    >>> t = 1796054400000  # 2026-12-01 (Tuesday) 00:00 Asia/Shanghai
    >>> cal.local_date(t).isoformat(), cal.is_working(t), cal.is_working(t + 9 * 3600_000)
    ('2026-12-01', False, True)
    >>> cal.period_at(t + 86400_000) is order, cal.period_at(t) is None
    (True, True)
    >>> day = cal.day_span(t + 9 * 3600_000)
    >>> day.start_ms == t, day.weekday, cal.is_working_in(day, t + 9 * 3600_000)
    (True, 2, True)
    """

    enterprise: Enterprise
    periods: tuple[ShutdownPeriod, ...] = ()
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    start_min: int = 480
    end_min: int = 1080
    work_days: frozenset[int] = frozenset({1, 2, 3, 4, 5})

    @classmethod
    def of(cls, enterprise: Enterprise, periods: list[ShutdownPeriod]) -> Calendar:
        start, end = parse_hours(enterprise.hours)
        return cls(
            enterprise=enterprise,
            periods=tuple(sorted(periods, key=lambda p: p.start_ms)),
            tz=check_timezone(enterprise.timezone),
            start_min=start,
            end_min=end,
            work_days=parse_days(enterprise.days),
        )

    def local(self, ts_ms: int) -> datetime:
        return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).astimezone(self.tz)

    def local_date(self, ts_ms: int) -> date:
        return self.local(ts_ms).date()

    def is_working(self, ts_ms: int) -> bool:
        """Inside working hours on a working day (ignoring shutdowns; see :meth:`period_at`).

        A shift past midnight belongs to the day it started on.
        """
        t = self.local(ts_ms)
        return self._working(t.hour * 60 + t.minute, t.isoweekday())

    def _working(self, minute: int, weekday: int) -> bool:
        if self.start_min < self.end_min:
            return weekday in self.work_days and self.start_min <= minute < self.end_min
        if minute >= self.start_min:
            return weekday in self.work_days
        yesterday = weekday - 1 or 7
        return minute < self.end_min and yesterday in self.work_days

    def day_span(self, ts_ms: int) -> LocalDay:
        """The local day containing ``ts_ms``: its bounds in epoch ms, so a caller on the
        hot path converts a timestamp once a day instead of once a point."""
        day = self.local_date(ts_ms)
        start = int(datetime.combine(day, time(), tzinfo=self.tz).timestamp() * 1000)
        after = day + timedelta(days=1)
        end = int(datetime.combine(after, time(), tzinfo=self.tz).timestamp() * 1000)
        return LocalDay(day.toordinal(), start, end, day.isoweekday())

    def is_working_in(self, day: LocalDay, ts_ms: int) -> bool:
        """:meth:`is_working` for a ``ts_ms`` inside ``day``, by arithmetic (a day of a DST
        change, 23 or 25 h long, takes the exact path)."""
        if day.end_ms - day.start_ms != 86_400_000:
            return self.is_working(ts_ms)
        return self._working((ts_ms - day.start_ms) // 60_000, day.weekday)

    def is_working_day(self, ts_ms: int) -> bool:
        return self.local(ts_ms).isoweekday() in self.work_days

    def period_at(self, ts_ms: int, kind: str | None = None) -> ShutdownPeriod | None:
        """The no-production period covering ``ts_ms`` (of ``kind``, if given), if any."""
        for period in self.periods:
            if period.start_ms > ts_ms:
                break
            if period.covers(ts_ms) and (kind is None or period.kind == kind):
                return period
        return None
