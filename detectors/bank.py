"""All detectors of all devices, behind the four calls the gateway pipeline makes.

The pipeline hands over decoded readings, events and status changes and gets
back :class:`~alerts.model.Signal` objects for the alert engine; it never sees
stages, clocks or profiles' rule lists. Detectors are created lazily from each
device's profile, so adding a device or a rule to a profile needs no code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from alerts.model import Alert, AlertChange, AlertClass, AlertState, Severity, Signal, Stage
from detectors._state import get_dict, get_int
from detectors.base import StageChange
from detectors.identity import Identity
from detectors.offline import OfflineChange, OfflineDetector
from detectors.rules import detector_from_rule, message
from detectors.staged import Staged
from gateway.model import DeviceEvent, Reading, StatusChange
from gateway.profiles import DriftRule, EventSpec, Profile, ThresholdRule
from gateway.rule_overrides import RuleOverrides

log = logging.getLogger(__name__)

#: Looks up a device's profile; None for a device the registry does not know.
ProfileOf = Callable[[str], Profile | None]
#: Looks up a device's site id; None if it has none (then only device overrides apply).
SiteOf = Callable[[str], str | None]

#: The rule name of offline alerts (an equipment fault, not a hazard).
OFFLINE_RULE = "offline"

_STATE_VERSION = 2
#: A batch with at least this many readings of one metric of one device goes through
#: the vectorised path (same result as point by point; cheaper from about here on).
BATCH_MIN = 16

__all__ = ["BATCH_MIN", "OFFLINE_RULE", "DetectorBank", "ProfileOf", "SiteOf", "detector_from_rule"]


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
    timezone
        The town's zone: for times in messages, and for rule schedules that name
        no zone of their own.
    site_of
        The device's site, for per-site rule overrides.
    overrides
        Per-site and per-device changes to the profiles' rules
        (:mod:`gateway.rule_overrides`): device over site over profile.

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

    When an operator closes an alert whose condition still holds, :meth:`on_closed`
    (wired as an alert-engine listener through :meth:`on_change`) forgets that
    rule's stage, so the next point that still crosses raises a new alert instead
    of the rule staying silently "in alarm" with nothing open.

    A batch carrying at least :data:`BATCH_MIN` readings of one (device, metric)
    runs through :meth:`~detectors.staged.Staged.process_many`, which gives the
    same signals as the point-by-point loop.

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

    __slots__ = (
        "_offline",
        "_overrides",
        "_profile_of",
        "_restored",
        "_rules",
        "_site_of",
        "_staged",
        "_tz",
        "_zone_name",
    )

    def __init__(
        self,
        profile_of: ProfileOf,
        timezone: str = "Asia/Shanghai",
        *,
        site_of: SiteOf | None = None,
        overrides: RuleOverrides | None = None,
    ) -> None:
        self._profile_of = profile_of
        self._tz = ZoneInfo(timezone)  # for times in messages a duty officer reads
        self._zone_name = timezone
        self._site_of = site_of
        self._overrides = overrides if overrides is not None else RuleOverrides()
        self._offline = OfflineDetector()
        self._staged: dict[str, dict[str, _Entry]] = {}
        #: Restored detector states not yet needed (applied when the detector is built).
        self._restored: dict[str, dict[str, dict[str, object]]] = {}
        #: Effective rules per device: (profile, site) they were worked out for, and them.
        self._rules: dict[str, tuple[Profile, str | None, tuple[ThresholdRule, ...]]] = {}

    # -- inputs ---------------------------------------------------------------------------

    def on_readings(
        self, readings: Sequence[Reading], *, received_ms: int | None = None
    ) -> list[Signal]:
        """Feed readings to their rules; returns the signals, in reading order.

        Each reading also marks its device as heard from, at ``received_ms`` if
        given, else at the reading's timestamp.
        """
        # (reading index, order within it, signal): sorted at the end, so the vectorised
        # groups and the loop give signals in reading order.
        found: list[tuple[int, int, Signal]] = []
        profiles: dict[str, Profile | None] = {}
        rules_of: dict[str, tuple[ThresholdRule, ...]] = {}
        groups: dict[tuple[str, str], list[int]] = {}
        for i, reading in enumerate(readings):
            device_id = reading.device_id
            if device_id not in profiles:
                profile = self._profile_of(device_id)
                profiles[device_id] = profile
                if profile is not None:
                    rules_of[device_id] = self.rules(device_id, profile)
            profile = profiles[device_id]
            if profile is None:
                continue
            seen_ms = reading.ts_ms if received_ms is None else received_ms
            back = self._offline.seen(device_id, seen_ms, profile.offline_after_s * 1000)
            if back is not None:
                found.append((i, 0, _offline_signal(back, self._tz)))
            groups.setdefault((device_id, reading.metric), []).append(i)
        for (device_id, metric), where in groups.items():
            profile = profiles[device_id]
            assert profile is not None
            arrays = _arrays(readings, where) if len(where) >= BATCH_MIN else None
            for order, rule in enumerate(rules_of[device_id], start=1):
                if rule.metric != metric:
                    continue
                staged = self._detector(device_id, rule, profile)
                if arrays is not None:
                    done = staged.process_many(*arrays)
                    for at, moved in zip(done.at, done.changes, strict=True):
                        signal = self._rule_signal(device_id, profile, rule, staged, moved)
                        found.append((where[at], order, signal))
                    continue
                for i in where:
                    reading = readings[i]
                    change = staged.update(reading.ts_ms, reading.value)
                    if change is not None:
                        signal = self._rule_signal(device_id, profile, rule, staged, change)
                        found.append((i, order, signal))
        found.sort(key=lambda item: (item[0], item[1]))
        return [signal for _, _, signal in found]

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
        for rule in self.rules(event.device_id, profile):
            if isinstance(rule, DriftRule) and event.type in rule.relearn_on:
                reset = getattr(
                    self._detector(event.device_id, rule, profile).scorer, "reset_baseline", None
                )
                if reset is not None:
                    reset()  # e.g. a bag change: the old baseline no longer applies
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
            rules = self.rules(alert.device_id, profile)
            rule = next((r for r in rules if r.name == alert.rule), None)
            if rule is None:
                continue  # an event type, or a rule the profile no longer has
            staged = self._detector(alert.device_id, rule, profile)
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

    def on_closed(self, device_id: str, rule_name: str) -> bool:
        """An operator closed the alert of ``rule_name`` on ``device_id``: forget its stage.

        The pending clocks are kept, so if the condition still holds the next
        crossing point raises a new alert at once (its delay was long met); if it
        no longer holds, nothing happens. Returns whether a raised stage was dropped.
        Offline and event alerts are not rules and are left alone.
        """
        entry = self._staged.get(device_id, {}).get(rule_name)
        if entry is not None:
            return entry.staged.reset_stage() is not Stage.NORMAL
        saved = self._restored.get(device_id, {}).get(rule_name)
        if saved is not None and saved.get("stage") != int(Stage.NORMAL):
            saved["stage"] = int(Stage.NORMAL)
            return True
        return False

    def on_change(self, change: AlertChange) -> None:
        """Alert-engine listener (``AlertEngine.add_listener``): closes reach :meth:`on_closed`."""
        if change.kind == "closed" and change.alert.rule != OFFLINE_RULE:
            self.on_closed(change.alert.device_id, change.alert.rule)

    def rules(self, device_id: str, profile: Profile) -> tuple[ThresholdRule, ...]:
        """The rules in force for a device: its profile's, with its site's and its own
        overrides applied, without those switched off."""
        site = self._site_of(device_id) if self._site_of is not None else None
        cached = self._rules.get(device_id)
        if cached is not None and cached[0] is profile and cached[1] == site:
            return cached[2]
        rules = self._overrides.rules_for(profile, site, device_id)
        self._rules[device_id] = (profile, site, rules)
        return rules

    def forget(self, device_id: str) -> None:
        """Drop every detector of a device removed from the registry."""
        self._staged.pop(device_id, None)
        self._restored.pop(device_id, None)
        self._rules.pop(device_id, None)
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
        """Every detector's state (JSON-safe), to write out before a restart.

        Each rule's entry is its :meth:`Staged.state` (stage, clocks and the
        scorer's state: a learnt baseline, an anomaly model) plus ``rule_type``,
        so a rule whose type changed meanwhile does not get a foreign scorer state.
        """
        rules: dict[str, dict[str, object]] = {}
        for device_id, saved in self._restored.items():
            rules[device_id] = dict(saved)
        for device_id, entries in self._staged.items():
            per = rules.setdefault(device_id, {})
            for rule_name, entry in entries.items():
                per[rule_name] = {**entry.staged.state(), "rule_type": entry.rule.type}
        return {
            "version": _STATE_VERSION,
            "offline": self._offline.state(),
            "rules": rules,
        }

    def restore(self, state: dict[str, object]) -> None:
        """Replace all detector state with a :meth:`state` snapshot.

        Everything is validated first (ValueError names the device and rule), so
        a corrupt file fails here, at start-up, and leaves the bank unchanged.
        Rule states are applied when each detector is next built, because the
        profiles (and so the bounds and the scorer) are only looked up then; a
        scorer state its scorer then refuses is logged and only the stage kept.
        Version 1 files (thresholds only) are read too.
        """
        if not isinstance(state, dict):
            raise ValueError(f"DetectorBank state must be a mapping, got {type(state).__name__}")
        version = get_int(state, "version")
        if version not in (1, _STATE_VERSION):
            raise ValueError(f"unsupported detector state version {version}")
        offline = OfflineDetector()
        offline.restore(get_dict(state, "offline"))
        restored: dict[str, dict[str, dict[str, object]]] = {}
        key = "thresholds" if version == 1 else "rules"
        for device_id, rules in get_dict(state, key).items():
            if not isinstance(rules, dict):
                raise ValueError(f"thresholds of device {device_id!r} must be a mapping")
            per: dict[str, dict[str, object]] = {}
            for rule_name, saved in rules.items():
                if not isinstance(rule_name, str) or not isinstance(saved, dict):
                    raise ValueError(f"threshold {device_id!r}/{rule_name!r} must be a mapping")
                try:
                    # The stage machine's part is checked now (a throwaway over Identity,
                    # bounds are not part of the state); the scorer's when it is built.
                    Staged(Identity(), alarm=0.0).restore({**saved, "scorer": {}})
                    get_dict(saved, "scorer")
                except ValueError as exc:
                    raise ValueError(f"rule {device_id!r}/{rule_name!r}: {exc}") from None
                per[rule_name] = saved
            restored[device_id] = per
        self._offline = offline
        self._restored = restored
        self._staged = {}

    # -- internals ------------------------------------------------------------------------

    def _detector(self, device_id: str, rule: ThresholdRule, profile: Profile) -> Staged:
        entries = self._staged.setdefault(device_id, {})
        entry = entries.get(rule.name)
        if entry is not None:
            if entry.rule is rule:
                return entry.staged
            if entry.rule == rule:
                entry.rule = rule  # same values, new object: take the fast path next time
                return entry.staged
            staged = self._build(device_id, rule, profile)
            if entry.rule.type == rule.type and _same_scorer(entry.rule, rule):
                # Bounds changed, the scorer did not: keep what it learnt.
                self._apply(staged, entry.staged.state(), device_id, rule)
            else:
                self._carry_stage(staged, entry.staged.state())
        else:
            staged = self._build(device_id, rule, profile)
            saved = self._restored.get(device_id, {}).pop(rule.name, None)
            if saved is not None:
                if saved.get("rule_type", "threshold") == rule.type:
                    self._apply(staged, saved, device_id, rule)
                else:
                    self._carry_stage(staged, saved)
        entries[rule.name] = _Entry(rule=rule, staged=staged)
        return staged

    def _build(self, device_id: str, rule: ThresholdRule, profile: Profile) -> Staged:
        return detector_from_rule(rule, profile.metrics.get(rule.metric), self._zone_name)

    @staticmethod
    def _apply(
        staged: Staged, saved: dict[str, object], device_id: str, rule: ThresholdRule
    ) -> None:
        try:
            staged.restore({k: v for k, v in saved.items() if k != "rule_type"})
        except ValueError as exc:
            log.warning(
                "detector state of %s/%s not usable (%s); its stage is kept, "
                "what it learnt starts over",
                device_id,
                rule.name,
                exc,
            )
            DetectorBank._carry_stage(staged, saved)

    @staticmethod
    def _carry_stage(staged: Staged, saved: dict[str, object]) -> None:
        carried = staged.state()
        carried["stage"] = saved.get("stage", carried["stage"])
        carried["last_ts_ms"] = saved.get("last_ts_ms", carried["last_ts_ms"])
        staged.restore(carried)

    def _rule_signal(
        self,
        device_id: str,
        profile: Profile,
        rule: ThresholdRule,
        staged: Staged,
        change: StageChange,
    ) -> Signal:
        active = change.new is not Stage.NORMAL
        # A clear carries the severity of what it clears.
        stage = change.new if active else change.old
        spec = rule.prewarning if stage is Stage.PREWARNING else rule.alarm
        # (a restored pre-warning the profile no longer has: fall back to the alarm's colour)
        severity = (spec or rule.alarm).severity
        return Signal(
            device_id=device_id,
            rule=rule.name,
            active=active,
            ts_ms=change.ts_ms,
            value=change.value,
            severity=severity,
            alert_class=rule.alert_class,
            hazard=rule.hazard,
            message=message(rule, staged, change, profile.metrics.get(rule.metric)),
        )


_STAGE_FIELDS = frozenset(
    {
        "direction",
        "prewarning",
        "alarm",
        "delay_s",
        "delay_samples",
        "hysteresis",
        "clear",
        "schedule",
        "timezone",
        "enabled",
        "alert_class",
        "hazard",
        "title_zh",
        "title_en",
    }
)


def _same_scorer(old: ThresholdRule, new: ThresholdRule) -> bool:
    """Whether two rules differ only in stage-machine fields (so the scorer state carries)."""
    a = old.model_dump(exclude=set(_STAGE_FIELDS))
    b = new.model_dump(exclude=set(_STAGE_FIELDS))
    return a == b


def _arrays(
    readings: Sequence[Reading], where: list[int]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """One series' timestamps and values, built once for all the rules on its metric
    (read-only: every rule's detector reads the same arrays)."""
    ts = np.fromiter((readings[i].ts_ms for i in where), np.int64, len(where))
    vals = np.fromiter((readings[i].value for i in where), np.float64, len(where))
    ts.flags.writeable = False
    vals.flags.writeable = False
    return ts, vals


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
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).astimezone(tz).isoformat(timespec="seconds")
