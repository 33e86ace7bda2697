"""All detectors of all devices, behind the four calls the gateway pipeline makes.

The pipeline hands over decoded readings, events and status changes and gets
back :class:`~alerts.model.Signal` objects for the alert engine; it never sees
stages, clocks or profiles' rule lists. Detectors are created lazily from each
device's profile, so adding a device or a rule to a profile needs no code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

from alerts.model import Alert, AlertClass, AlertState, Severity, Signal, Stage
from detectors._state import get_dict, get_int
from detectors.base import StageChange
from detectors.identity import Identity
from detectors.offline import OfflineChange, OfflineDetector
from detectors.staged import Staged
from detectors.threshold import threshold_from_rule
from gateway.model import DeviceEvent, Reading, StatusChange
from gateway.profiles import EventSpec, Profile, ThresholdRule

#: Looks up a device's profile; None for a device the registry does not know.
ProfileOf = Callable[[str], Profile | None]

#: The rule name of offline alerts (an equipment fault, not a hazard).
OFFLINE_RULE = "offline"

_STATE_VERSION = 1


@dataclass(slots=True)
class _Entry:
    """A rule's detector, with the rule it was built from (to notice a profile change)."""

    rule: ThresholdRule
    staged: Staged


class DetectorBank:
    """One :class:`~detectors.staged.Staged` per (device, rule) plus one offline detector.

    Parameters
    ----------
    profile_of
        The device's current profile. Devices without one (not registered) are
        ignored: there is no rule to apply and no timeout to wait for.

    Notes
    -----
    Threshold delays run on the readings' own timestamps, so a batch of buffered
    readings is judged on when it was measured. Offline detection compares with
    ``sweep(now_ms)``, i.e. gateway time; pass ``received_ms`` to
    :meth:`on_readings` / :meth:`on_event` so a device whose clock is off is not
    swept offline (clock behind) or kept online (clock ahead) by mistake.

    If a device's profile changes, its detectors are rebuilt from the new rules
    on the next reading; the current stage is kept, so an open alarm is cleared
    by the next point under the new bounds rather than forgotten.

    Examples
    --------
    >>> from gateway.profiles import DEFAULT_PROFILE_DIR, load_profile
    >>> from gateway.model import Reading
    >>> monitor = load_profile(DEFAULT_PROFILE_DIR / "electrical_fire_monitor.yaml")
    >>> bank = DetectorBank(lambda device_id: monitor)
    >>> def leak(ts_ms, mA):
    ...     return Reading("efm-1", "residual_current_ma", ts_ms, mA)
    >>> for s in range(0, 21, 5):
    ...     for signal in bank.on_readings([leak(s * 1000, 320.0)]):
    ...         print(s, signal.severity, signal.active, signal.message)
    10 orange True 剩余电流超限 / Residual current over limit: 320 mA (≥ 300)
    >>> for signal in bank.on_readings([leak(25_000, 150.0)]):
    ...     print(signal.severity, signal.active, signal.message)
    orange False 剩余电流超限 / Residual current over limit: 150 mA (< 280)
    """

    __slots__ = ("_offline", "_profile_of", "_restored", "_staged", "_tz")

    def __init__(self, profile_of: ProfileOf, timezone: str = "Asia/Shanghai") -> None:
        self._profile_of = profile_of
        self._tz = ZoneInfo(timezone)  # for times in messages a duty officer reads
        self._offline = OfflineDetector()
        self._staged: dict[str, dict[str, _Entry]] = {}
        #: Restored detector states not yet needed (applied when the detector is built).
        self._restored: dict[str, dict[str, dict[str, object]]] = {}

    # -- inputs ---------------------------------------------------------------------------

    def on_readings(
        self, readings: Sequence[Reading], *, received_ms: int | None = None
    ) -> list[Signal]:
        """Feed readings to their rules; returns the signals, in reading order.

        Each reading also marks its device as heard from, at ``received_ms`` if
        given, else at the reading's timestamp.
        """
        signals: list[Signal] = []
        profiles: dict[str, Profile | None] = {}
        for reading in readings:
            device_id = reading.device_id
            if device_id not in profiles:
                profiles[device_id] = self._profile_of(device_id)
            profile = profiles[device_id]
            if profile is None:
                continue
            seen_ms = reading.ts_ms if received_ms is None else received_ms
            back = self._offline.seen(device_id, seen_ms, profile.offline_after_s * 1000)
            if back is not None:
                signals.append(_offline_signal(back, self._tz))
            for rule in profile.rules:
                if rule.metric != reading.metric:
                    continue
                staged = self._detector(device_id, rule)
                change = staged.update(reading.ts_ms, reading.value)
                if change is not None:
                    signals.append(_threshold_signal(device_id, profile, rule, staged, change))
        return signals

    def on_event(self, event: DeviceEvent, *, received_ms: int | None = None) -> list[Signal]:
        """A device event: raises its profile's alert, or clears the one it ``clears``.

        Event types the profile lists without a severity or ``clears`` (a
        self-test, say) only mark the device as heard from.
        """
        profile = self._profile_of(event.device_id)
        if profile is None:
            return []
        signals: list[Signal] = []
        seen_ms = event.ts_ms if received_ms is None else received_ms
        back = self._offline.seen(event.device_id, seen_ms, profile.offline_after_s * 1000)
        if back is not None:
            signals.append(_offline_signal(back, self._tz))
        spec = profile.events.get(event.type)
        if spec is None:
            return signals
        message = f"{spec.title_zh} / {spec.title_en}"

        def signal(rule: str, active: bool, raised_by: EventSpec, severity: Severity) -> Signal:
            return Signal(
                device_id=event.device_id,
                rule=rule,
                active=active,
                ts_ms=event.ts_ms,
                value=None,
                severity=severity,
                alert_class=raised_by.alert_class,
                hazard=raised_by.hazard,
                message=message,
            )

        if spec.clears is not None:
            cleared = profile.events.get(spec.clears)
            # A cleared type without a severity never raised anything, so there is nothing to end.
            if cleared is not None and cleared.severity is not None:
                signals.append(signal(spec.clears, False, cleared, cleared.severity))
        if spec.severity is not None:
            signals.append(signal(event.type, True, spec, spec.severity))
        return signals

    def on_status(self, status: StatusChange) -> list[Signal]:
        """A retained status / last will: ``offline`` raises the offline alert at once."""
        profile = self._profile_of(status.device_id)
        if profile is None:
            return []
        change = self._offline.reported(
            status.device_id, status.online, status.ts_ms, profile.offline_after_s * 1000
        )
        return [] if change is None else [_offline_signal(change, self._tz)]

    def sweep(self, now_ms: int) -> list[Signal]:
        """Offline alerts for devices silent longer than their profile allows."""
        return [_offline_signal(change, self._tz) for change in self._offline.sweep(now_ms)]

    # -- registry -------------------------------------------------------------------------

    def expect(self, device_id: str, now_ms: int) -> bool:
        """Watch a registered device from ``now_ms``, so it goes offline if it never speaks.

        Returns False (and watches nothing) if the device has no profile.
        """
        profile = self._profile_of(device_id)
        if profile is None:
            return False
        self._offline.expect(device_id, now_ms, profile.offline_after_s * 1000)
        return True

    def resume(self, alerts: Iterable[Alert], now_ms: int) -> None:
        """Pick up the alerts still open from before a restart, so they can clear.

        Call once at start-up, after :meth:`expect` (and :meth:`restore`, if any),
        with the alert engine's open alerts. For each alert whose condition is
        still active (raised or acknowledged):

        * an offline alert marks its device offline, so its next message reports
          it back online and :meth:`sweep` does not raise it again;
        * a threshold alert puts that rule's detector into the stage matching the
          alert's severity (alarm, else pre-warning if that stage has the colour,
          else alarm), so the next normal reading clears it and a reading still
          beyond the bound raises nothing new. A detector already in a raised
          stage (from a restored snapshot) keeps it.

        Event alerts, cleared alerts and unknown devices or rules are ignored.
        Nothing is returned: no signal is due, the alerts are already open.
        """
        for alert in alerts:
            if alert.state not in (AlertState.RAISED, AlertState.ACKNOWLEDGED):
                continue
            profile = self._profile_of(alert.device_id)
            if profile is None:
                continue
            if alert.rule == OFFLINE_RULE:
                self._offline.resume_offline(
                    alert.device_id, min(alert.raised_at, now_ms), profile.offline_after_s * 1000
                )
                continue
            rule = next((r for r in profile.rules if r.name == alert.rule), None)
            if rule is None:
                continue  # an event type, or a rule the profile no longer has
            staged = self._detector(alert.device_id, rule)
            if staged.stage is not Stage.NORMAL:
                continue
            if alert.severity == rule.alarm.severity:
                stage = Stage.ALARM
            elif rule.prewarning is not None and alert.severity == rule.prewarning.severity:
                stage = Stage.PREWARNING
            else:
                stage = Stage.ALARM
            saved = staged.state()
            saved["stage"] = int(stage)
            staged.restore(saved)

    def forget(self, device_id: str) -> None:
        """Drop every detector of a device removed from the registry."""
        self._staged.pop(device_id, None)
        self._restored.pop(device_id, None)
        self._offline.forget(device_id)

    def is_online(self, device_id: str) -> bool | None:
        """Whether the device is online; None if it has never been seen, reported or expected."""
        offline = self._offline.is_offline(device_id)
        return None if offline is None else not offline

    def last_seen(self, device_id: str) -> int | None:
        """When any message from the device last arrived; None if never."""
        return self._offline.last_seen(device_id)

    def stage(self, device_id: str, rule_name: str) -> Stage:
        """The current stage of one rule of one device (NORMAL if it has seen nothing)."""
        entry = self._staged.get(device_id, {}).get(rule_name)
        if entry is not None:
            return entry.staged.stage
        saved = self._restored.get(device_id, {}).get(rule_name)
        return Stage.NORMAL if saved is None else Stage(get_int(saved, "stage"))

    # -- persistence ----------------------------------------------------------------------

    def state(self) -> dict[str, object]:
        """Every detector's state (JSON-safe), to write out before a restart."""
        thresholds: dict[str, dict[str, object]] = {}
        for device_id, saved in self._restored.items():
            thresholds[device_id] = dict(saved)
        for device_id, entries in self._staged.items():
            per = thresholds.setdefault(device_id, {})
            for rule_name, entry in entries.items():
                per[rule_name] = entry.staged.state()
        return {
            "version": _STATE_VERSION,
            "offline": self._offline.state(),
            "thresholds": thresholds,
        }

    def restore(self, state: dict[str, object]) -> None:
        """Replace all detector state with a :meth:`state` snapshot.

        Everything is validated first (ValueError names the device and rule), so
        a corrupt file fails here, at start-up, and leaves the bank unchanged.
        Threshold states are applied when each detector is next built, because
        the profiles (and so the bounds) are only looked up then.
        """
        if not isinstance(state, dict):
            raise ValueError(f"DetectorBank state must be a mapping, got {type(state).__name__}")
        version = get_int(state, "version")
        if version != _STATE_VERSION:
            raise ValueError(f"unsupported detector state version {version}")
        offline = OfflineDetector()
        offline.restore(get_dict(state, "offline"))
        restored: dict[str, dict[str, dict[str, object]]] = {}
        for device_id, rules in get_dict(state, "thresholds").items():
            if not isinstance(rules, dict):
                raise ValueError(f"thresholds of device {device_id!r} must be a mapping")
            per: dict[str, dict[str, object]] = {}
            for rule_name, saved in rules.items():
                if not isinstance(rule_name, str) or not isinstance(saved, dict):
                    raise ValueError(f"threshold {device_id!r}/{rule_name!r} must be a mapping")
                try:
                    # Every bank rule is a threshold over Identity, so a throwaway one
                    # checks the structure now; bounds are not part of the state.
                    Staged(Identity(), alarm=0.0).restore(saved)
                except ValueError as exc:
                    raise ValueError(f"threshold {device_id!r}/{rule_name!r}: {exc}") from None
                per[rule_name] = saved
            restored[device_id] = per
        self._offline = offline
        self._restored = restored
        self._staged = {}

    # -- internals ------------------------------------------------------------------------

    def _detector(self, device_id: str, rule: ThresholdRule) -> Staged:
        entries = self._staged.setdefault(device_id, {})
        entry = entries.get(rule.name)
        if entry is not None:
            if entry.rule is rule:
                return entry.staged
            if entry.rule == rule:
                entry.rule = rule  # same values, new object: take the fast path next time
                return entry.staged
            staged = threshold_from_rule(rule)
            carried = staged.state()
            old = entry.staged.state()
            carried["stage"] = old["stage"]
            carried["last_ts_ms"] = old["last_ts_ms"]
            staged.restore(carried)
        else:
            staged = threshold_from_rule(rule)
            saved = self._restored.get(device_id, {}).pop(rule.name, None)
            if saved is not None:
                staged.restore(saved)
        entries[rule.name] = _Entry(rule=rule, staged=staged)
        return staged


def _threshold_signal(
    device_id: str, profile: Profile, rule: ThresholdRule, staged: Staged, change: StageChange
) -> Signal:
    active = change.new is not Stage.NORMAL
    # A clear carries the severity of what it clears.
    stage = change.new if active else change.old
    spec = rule.prewarning if stage is Stage.PREWARNING else rule.alarm
    # (a restored pre-warning the profile no longer has: fall back to the alarm's colour)
    severity = (spec or rule.alarm).severity
    above = rule.direction == "above"
    if active:
        symbol, bound = ("≥" if above else "≤"), staged.bound(change.new)
    else:
        symbol, bound = ("<" if above else ">"), staged.release(change.old)
    metric = profile.metrics.get(rule.metric)
    reading = " ".join(p for p in (f"{change.value:g}", metric.unit if metric else "") if p)
    limit = f" ({symbol} {bound:g})" if bound is not None else ""
    return Signal(
        device_id=device_id,
        rule=rule.name,
        active=active,
        ts_ms=change.ts_ms,
        value=change.value,
        severity=severity,
        alert_class=rule.alert_class,
        hazard=rule.hazard,
        message=f"{rule.title_zh} / {rule.title_en}: {reading}{limit}",
    )


def _offline_signal(change: OfflineChange, tz: tzinfo) -> Signal:
    last_seen = "never" if change.last_seen_ms is None else _local(change.last_seen_ms, tz)
    if change.offline:
        message = f"设备离线 / Device offline (last seen {last_seen})"
    else:
        message = f"设备恢复在线 / Device back online (last seen {last_seen})"
    return Signal(
        device_id=change.device_id,
        rule=OFFLINE_RULE,
        active=change.offline,
        ts_ms=change.ts_ms,
        value=None,
        severity=Severity.BLUE,
        alert_class=AlertClass.FAULT,
        hazard="offline",
        message=message,
    )


def _local(ts_ms: int, tz: tzinfo) -> str:
    """ISO 8601 in the town's zone, with its offset: what the console shows beside it."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).astimezone(tz).isoformat(
        timespec="seconds")
