"""Stage 2, validate: raw samples -> readings, against the device's profile.

Each value is checked on its own: a NaN in one field rejects that value (kept as
a dead letter with its reason) while the rest of the message is accepted, so a
flaky RSRP field never hides a cable temperature that is climbing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from gateway.model import DeviceEvent, Reading, StatusChange
from gateway.pipeline import Delivery
from gateway.profiles import Profile
from gateway.reasons import Reason

DAY_MS = 86_400_000
#: Beyond year 5000 in epoch ms: no clock means this (and huge ints would overflow floats).
MAX_EPOCH_MS = 1e14


@dataclass(frozen=True, slots=True)
class Limits:
    max_future_ms: int = DAY_MS
    max_age_ms: int = 30 * DAY_MS
    timezone: str = "Asia/Shanghai"  # for ISO timestamps sent without an offset


class TimestampError(ValueError):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def parse_ts(raw: object, received_ms: int, limits: Limits, tz: tzinfo) -> tuple[int, bool]:
    """Epoch ms or ISO-8601 -> (epoch ms, assumed); ``None`` means "stamp receive time".

    >>> lim, tz = Limits(), ZoneInfo("Asia/Shanghai")
    >>> parse_ts("2026-12-01T08:00:00+08:00", 1_796_083_200_000, lim, tz)
    (1796083200000, False)
    >>> parse_ts("2026-12-01 08:00:00", 1_796_083_200_000, lim, tz)  # local time, no offset
    (1796083200000, False)
    >>> parse_ts(None, 5, lim, tz)
    (5, True)
    """
    if raw is None:
        return received_ms, True
    if isinstance(raw, bool):
        raise TimestampError(Reason.BAD_TIMESTAMP, f"ts {raw!r} is not a time")
    if isinstance(raw, int | float):
        if abs(raw) > MAX_EPOCH_MS or not math.isfinite(raw):  # (int compare first: no overflow)
            raise TimestampError(Reason.BAD_TIMESTAMP, f"ts {str(raw)[:40]!r} is not a time")
        ts = int(raw)
    elif isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            raise TimestampError(
                Reason.BAD_TIMESTAMP, f"ts {raw!r} is neither epoch ms nor ISO-8601"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=tz)
        ts = int(parsed.timestamp() * 1000)
    else:
        raise TimestampError(Reason.BAD_TIMESTAMP, f"ts {raw!r} is neither epoch ms nor ISO-8601")
    if ts > received_ms + limits.max_future_ms:
        raise TimestampError(
            Reason.TS_FUTURE,
            f"ts {raw!r} is {(ts - received_ms) / 3_600_000:.1f} h in the future (device clock?)",
        )
    if ts < received_ms - limits.max_age_ms:
        raise TimestampError(
            Reason.TS_TOO_OLD,
            f"ts {raw!r} is {(received_ms - ts) / DAY_MS:.0f} days old "
            "(ts must be epoch milliseconds, not seconds)",
        )
    return ts, False


def _number(profile: Profile, name: str, raw: object) -> tuple[str, float] | tuple[Reason, str]:
    """Map one vendor value onto its canonical metric, or say why not."""
    mapping = profile.fields.get(name)
    metric = mapping.metric if mapping else name
    spec = profile.metrics.get(metric)
    if spec is None:
        known = ", ".join(sorted(set(profile.metrics) | set(profile.fields)))
        return (
            Reason.UNKNOWN_METRIC,
            f"{name!r} is not a metric of profile {profile.name} ({known})",
        )
    if isinstance(raw, bool):
        value = 1.0 if raw else 0.0
    elif isinstance(raw, int | float):
        try:
            value = float(raw)
        except OverflowError:  # a JSON integer with hundreds of digits
            return Reason.NOT_FINITE, f"{name}: {str(raw)[:40]}... is too large to be a reading"
    else:
        return Reason.WRONG_TYPE, f"{name}: {raw!r} is a {type(raw).__name__}, expected a number"
    if not math.isfinite(value):
        return Reason.NOT_FINITE, f"{name}: {raw!r} is not a finite number"
    if mapping is not None:
        value = value * mapping.scale + mapping.offset
    if spec.kind == "bool" and value not in (0.0, 1.0):
        return Reason.WRONG_TYPE, f"{name}: {raw!r} must be true/false (or 1/0)"
    if not spec.min <= value <= spec.max:
        return (
            Reason.OUT_OF_RANGE,
            f"{metric}: {value:g} {spec.unit} is outside the valid range "
            f"{spec.min:g}..{spec.max:g} {spec.unit} (wrong unit or scale?)",
        )
    return metric, value


class Validate:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._tz = ZoneInfo(limits.timezone)

    async def __call__(self, d: Delivery) -> None:
        if d.device is None or d.profile is None:
            return
        if d.kind == "status":
            self._status(d)
        elif d.samples:
            self._telemetry(d)
        elif d.raw_event is not None:
            self._event(d)

    def _status(self, d: Delivery) -> None:
        assert d.device is not None
        text = d.message.payload.decode("utf-8", "replace").strip().strip('"').lower()
        if text not in ("online", "offline"):
            d.reject(Reason.BAD_STATUS, f"status must be 'online' or 'offline', got {text[:40]!r}")
            return
        d.status = StatusChange(d.device.id, text == "online", d.message.received_ms)

    def _telemetry(self, d: Delivery) -> None:
        assert d.device is not None and d.profile is not None
        received = d.message.received_ms
        for sample in d.samples:
            try:
                ts, assumed = parse_ts(sample.ts, received, self.limits, self._tz)
            except TimestampError as exc:
                d.reject(exc.reason, str(exc))
                continue
            for name, raw in sample.values.items():
                checked = _number(d.profile, name, raw)
                if isinstance(checked[0], Reason):
                    d.reject(checked[0], str(checked[1]))
                else:
                    metric, value = checked
                    d.readings.append(Reading(d.device.id, str(metric), ts, float(value), assumed))

    def _event(self, d: Delivery) -> None:
        assert d.device is not None and d.profile is not None and d.raw_event is not None
        event = d.raw_event
        if event.type not in d.profile.events:
            known = ", ".join(sorted(d.profile.events)) or "none"
            d.reject(
                Reason.UNKNOWN_EVENT,
                f"event type {event.type!r} is not defined for {d.profile.name} ({known})",
            )
            return
        try:
            ts, assumed = parse_ts(event.ts, d.message.received_ms, self.limits, self._tz)
        except TimestampError as exc:
            d.reject(exc.reason, str(exc))
            return
        d.events.append(DeviceEvent(d.device.id, event.type, ts, event.detail, assumed))
