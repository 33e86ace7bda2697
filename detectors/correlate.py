"""Cross-sensor confirmation: related devices' readings and alerts confirm or upgrade one.

One smoke alarm can be a burnt toast; a smoke alarm *and* a heat detector in the
same room whose temperature climbs is a fire. One residual-current alarm can be a
damp junction box; the same circuit's cable getting hot as well is a developing
electrical fire. Duty staff act on the second kind first, so it gets its own red
alert naming both devices and the evidence:

* ``confirmed_fire`` (red, hazard ``fire``, on the smoke alarm): an active smoke
  alarm (a signal whose rule is in ``smoke_rules``) while another device in the
  same room (``Device.room``, same site) shows heat: its temperature rose by at
  least ``heat_rise_c`` within ``window_s``, or reads ``heat_bound_c`` or more, or it
  has an active fire/overheating alert of its own (heat alarm, temperature rule,
  rate of rise). Either may come first; the heat must be within ``window_s`` of
  the moment of confirmation. Cleared when the smoke alarm clears. Because it is a
  red fire alarm, the inhibitor (``alerts/inhibit.py``) folds the site's yellow and
  orange fire pre-warnings into it.
* ``electrical_confirmed`` (red, hazard ``electrical_fire``, on the device whose
  alert it upgrades): an active residual-current (``leakage``) or cable-temperature
  (``overheating``) alert, while the same circuit (``Device.circuit``, same site; the
  device itself counts: one monitor measures both on its circuit) shows the other
  kind: an active alert of it, or a rise of the residual current by
  ``leak_rise_ma`` / of a cable temperature by ``cable_rise_c`` within
  ``electrical_window_s``. Cleared when the device's last electrical alert clears.
  One upgrade per circuit at a time: the second monitor's alert about the same
  fault is not upgraded again.

Defaults (practice; no standard fixes them): 5 min and 8 °C for a room (rate-of-rise
heat detectors respond near 10 °C/min, GB 4716, so a fire under the ceiling gets there
well within the window) and 54 °C (the lower end of the A1 static band, GB 4716);
10 min, 100 mA (half the normal 100-200 mA leakage band, domain.md) and 10 °C for a
circuit.

State is per device: the active alerts it was told about, when it last showed heat
or a rise, and a window of recent values per metric kept as a monotonic deque (the
window's minimum in O(1) amortised, at most ``max_points`` values). After a restart
the gateway replays the last window of stored readings of every device with a room
or circuit (``gateway/detect.py``), then :meth:`Correlator.resume` takes the
engine's open alerts, so a rise that straddles the restart still counts.
``state()``/``restore()`` carry everything if a caller wants to persist it.

Examples
--------
>>> import textwrap
>>> from alerts.model import AlertClass, Severity, Signal
>>> from gateway.model import Reading
>>> rooms = {"smoke-1": ["heat-1"], "heat-1": ["smoke-1"]}
>>> def peers(device_id, kind):
...     return rooms.get(device_id, []) if kind == "room" else []
>>> correlator = Correlator(peers)
>>> t0 = 1796054400000
>>> smoke = Signal(
...     "smoke-1", "smoke_alarm", True, t0, None, Severity.RED, AlertClass.HAZARD, "fire"
... )
>>> correlator.on_signals([smoke])  # smoke alone: nothing to confirm yet
[]
>>> found = correlator.on_readings(
...     [Reading("heat-1", "temperature_c", t0 + s * 1000, 24 + s / 15) for s in range(0, 121, 30)]
... )
>>> [(s.device_id, s.rule, s.severity.value, s.active) for s in found]
[('smoke-1', 'confirmed_fire', 'red', True)]
>>> print(textwrap.fill(found[0].message.split(" / ")[1], 90))
Confirmed fire: smoke alarm smoke-1 and heat-1 in the same room: temperature 24.0 → 32.0
°C (+8.0 °C within 300 s)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from alerts.model import Alert, AlertClass, AlertState, Severity, Signal
from detectors._state import get_dict, get_each, get_float_list, get_int, get_int_list, get_opt_int
from gateway.model import Reading

FIRE_RULE = "confirmed_fire"
ELECTRICAL_RULE = "electrical_confirmed"
RULES = (FIRE_RULE, ELECTRICAL_RULE)
FIRE_HAZARD = "fire"
ELECTRICAL_HAZARD = "electrical_fire"
#: Hazards of the alerts that show heat in a room (heat alarm, temperature rule, rate of rise).
HEAT_HAZARDS = frozenset({"fire", "overheating"})
#: Hazard of an electrical alert, by the evidence kind it is.
LEAK_HAZARD = "leakage"
CABLE_HAZARD = "overheating"

#: Ids of the devices related to one (same site) by ``"room"`` or ``"circuit"``, not itself.
PeersOf = Callable[[str, str], Sequence[str]]

_STATE_VERSION = 1
_ACTIVE = (AlertState.RAISED, AlertState.ACKNOWLEDGED)


@dataclass(frozen=True, slots=True)
class CorrelateParams:
    """Windows and deltas (practice; see the module doc for why these defaults)."""

    window_s: float = 300.0
    heat_rise_c: float = 8.0
    heat_bound_c: float = 54.0
    electrical_window_s: float = 600.0
    leak_rise_ma: float = 100.0
    cable_rise_c: float = 10.0
    #: Rules of the signals that are a smoke alarm (the device decided "smoke").
    smoke_rules: frozenset[str] = frozenset({"smoke_alarm"})
    #: Room temperature metrics (heat detectors, combined alarms' ambient temperature).
    temperature_metrics: frozenset[str] = frozenset({"temperature_c"})
    residual_metric: str = "residual_current_ma"
    #: Cable temperature metrics start with this (cable_temp_1_c .. cable_temp_4_c).
    cable_prefix: str = "cable_temp_"
    #: Values kept per metric window, whatever the sampling rate.
    max_points: int = 512


class _Window:
    """Recent values of one series, as a deque whose values increase: its head is the
    window's minimum, so "how far did it rise within the window" is O(1) amortised."""

    __slots__ = ("points",)

    def __init__(self) -> None:
        self.points: deque[tuple[int, float]] = deque()

    def add(self, ts_ms: int, value: float, window_ms: int, max_points: int) -> float:
        """Add a point; return the lowest value within ``window_ms`` before it (incl. itself)."""
        points = self.points
        if points and ts_ms < points[-1][0]:
            return value  # out of order: does not move the window
        while points and points[-1][1] >= value:
            points.pop()
        points.append((ts_ms, value))
        while points[0][0] < ts_ms - window_ms or len(points) > max_points:
            points.popleft()
        return points[0][1]


@dataclass(slots=True)
class _Evidence:
    """When a device last showed something, and what, in both languages."""

    ts_ms: int
    zh: str
    en: str


@dataclass(slots=True)
class _Device:
    #: Active alerts this device has, by rule: (hazard, since).
    alerts: dict[str, tuple[str, int]] = field(default_factory=dict)
    windows: dict[str, _Window] = field(default_factory=dict)
    heat: _Evidence | None = None
    leak: _Evidence | None = None
    cable: _Evidence | None = None
    fire_confirmed: bool = False
    electrical_confirmed: bool = False

    def smoke(self, smoke_rules: frozenset[str]) -> bool:
        return any(rule in smoke_rules for rule in self.alerts)

    def has_hazard(self, hazards: frozenset[str], smoke_rules: frozenset[str]) -> str | None:
        for rule, (hazard, _) in self.alerts.items():
            if hazard in hazards and rule not in smoke_rules:
                return rule
        return None


class Correlator:
    """Both confirmations over every device with a room or circuit (see module doc)."""

    __slots__ = ("_devices", "_peers", "params")

    def __init__(self, peers: PeersOf, *, params: CorrelateParams | None = None) -> None:
        self._peers = peers
        self.params = params or CorrelateParams()
        self._devices: dict[str, _Device] = {}

    # -- inputs ---------------------------------------------------------------------------

    def on_readings(self, readings: Sequence[Reading]) -> list[Signal]:
        """Update the value windows; a new rise may confirm a related device's alert."""
        p = self.params
        signals: list[Signal] = []
        for r in readings:
            metric = r.metric
            if metric in p.temperature_metrics:
                kind, window_s, rise, bound = "heat", p.window_s, p.heat_rise_c, p.heat_bound_c
            elif metric == p.residual_metric:
                kind, window_s, rise, bound = "leak", p.electrical_window_s, p.leak_rise_ma, None
            elif metric.startswith(p.cable_prefix):
                kind, window_s, rise = "cable", p.electrical_window_s, p.cable_rise_c
                bound = None
            else:
                continue
            device = self._device(r.device_id)
            window = device.windows.get(metric)
            if window is None:
                window = device.windows[metric] = _Window()
            low = window.add(r.ts_ms, r.value, int(window_s * 1000), p.max_points)
            evidence = _rise(metric, low, r.value, rise, bound, window_s)
            if evidence is None:
                continue
            found = _Evidence(r.ts_ms, *evidence)
            if kind == "heat":
                device.heat = found
                for peer in self._peers(r.device_id, "room"):
                    signals.extend(self._check_fire(peer, r.ts_ms))
            else:
                if kind == "leak":
                    device.leak = found
                else:
                    device.cable = found
                for other in (r.device_id, *self._peers(r.device_id, "circuit")):
                    signals.extend(self._check_electrical(other, r.ts_ms))
        return signals

    def on_signals(self, signals: Sequence[Signal]) -> list[Signal]:
        """Track the alerts other detectors raised and cleared; confirm or clear ours."""
        p = self.params
        out: list[Signal] = []
        for s in signals:
            if s.rule in RULES or s.alert_class is not AlertClass.HAZARD:
                continue
            device = self._device(s.device_id)
            if s.active:
                since = device.alerts.get(s.rule, (s.hazard, s.ts_ms))[1]
                device.alerts[s.rule] = (s.hazard, since)
            else:
                device.alerts.pop(s.rule, None)
            if s.rule in p.smoke_rules:
                if s.active:
                    out.extend(self._check_fire(s.device_id, s.ts_ms))
                elif device.fire_confirmed and not device.smoke(p.smoke_rules):
                    device.fire_confirmed = False
                    out.append(self._fire_signal(s.device_id, s.ts_ms, None, None, active=False))
            elif s.hazard in HEAT_HAZARDS:
                if s.active:
                    device.heat = _Evidence(
                        s.ts_ms, f"{s.rule} 报警", f"its {s.rule} alert is active"
                    )
                    for peer in self._peers(s.device_id, "room"):
                        out.extend(self._check_fire(peer, s.ts_ms))
            if s.hazard in (LEAK_HAZARD, CABLE_HAZARD):
                if s.active:
                    for other in (s.device_id, *self._peers(s.device_id, "circuit")):
                        out.extend(self._check_electrical(other, s.ts_ms))
                elif device.electrical_confirmed and self._electrical_rule(device) is None:
                    device.electrical_confirmed = False
                    out.append(
                        self._electrical_signal(s.device_id, s.ts_ms, "", None, active=False)
                    )
        return out

    def watches(self, metric: str) -> bool:
        """Whether readings of ``metric`` are evidence here (to rebuild windows from a store)."""
        p = self.params
        return (
            metric in p.temperature_metrics
            or metric == p.residual_metric
            or metric.startswith(p.cable_prefix)
        )

    @property
    def longest_window_ms(self) -> int:
        return int(max(self.params.window_s, self.params.electrical_window_s) * 1000)

    def resume(self, alerts: Iterable[Alert]) -> None:
        """Take the engine's open alerts after a restart: active ones count as evidence
        again, and our own open confirmations clear when their cause does."""
        for alert in alerts:
            if alert.state not in _ACTIVE:
                continue
            device = self._device(alert.device_id)
            if alert.rule == FIRE_RULE:
                device.fire_confirmed = True
            elif alert.rule == ELECTRICAL_RULE:
                device.electrical_confirmed = True
            elif alert.alert_class is AlertClass.HAZARD:
                device.alerts[alert.rule] = (alert.hazard, alert.raised_at)

    def forget(self, device_id: str) -> None:
        self._devices.pop(device_id, None)

    # -- persistence ----------------------------------------------------------------------

    def state(self) -> dict[str, object]:
        devices: dict[str, object] = {}
        for device_id, d in self._devices.items():
            devices[device_id] = {
                "alerts": {rule: [hazard, since] for rule, (hazard, since) in d.alerts.items()},
                "windows": {
                    metric: {"ts": [t for t, _ in w.points], "values": [v for _, v in w.points]}
                    for metric, w in d.windows.items()
                },
                "evidence": {
                    kind: None if e is None else [e.ts_ms, e.zh, e.en]
                    for kind, e in (("heat", d.heat), ("leak", d.leak), ("cable", d.cable))
                },
                "fire_confirmed": d.fire_confirmed,
                "electrical_confirmed": d.electrical_confirmed,
            }
        return {"version": _STATE_VERSION, "devices": devices}

    def restore(self, state: dict[str, object]) -> None:
        """Replace all state with a :meth:`state` snapshot; ValueError (nothing changed) if
        it is not one."""
        if not isinstance(state, dict) or get_int(state, "version") != _STATE_VERSION:
            raise ValueError("not a Correlator state (version 1)")
        self._devices = get_each(
            state,
            "devices",
            _device_from_json,
            "correlator state of",
            (ValueError, TypeError, IndexError),
        )

    # -- internals ------------------------------------------------------------------------

    def _device(self, device_id: str) -> _Device:
        device = self._devices.get(device_id)
        if device is None:
            device = self._devices[device_id] = _Device()
        return device

    def _check_fire(self, smoke_id: str, now_ms: int) -> list[Signal]:
        p = self.params
        smoke = self._devices.get(smoke_id)
        if smoke is None or smoke.fire_confirmed or not smoke.smoke(p.smoke_rules):
            return []
        window_ms = int(p.window_s * 1000)
        for peer_id in self._peers(smoke_id, "room"):
            peer = self._devices.get(peer_id)
            if peer is None:
                continue
            evidence = peer.heat
            if peer.has_hazard(HEAT_HAZARDS, p.smoke_rules) is None and (
                evidence is None or evidence.ts_ms < now_ms - window_ms
            ):
                continue
            smoke.fire_confirmed = True
            return [self._fire_signal(smoke_id, now_ms, peer_id, evidence, active=True)]
        return []

    def _confirmed(self, device_id: str) -> bool:
        device = self._devices.get(device_id)
        return device is not None and device.electrical_confirmed

    def _electrical_rule(self, device: _Device) -> str | None:
        """The device's active electrical alert, leakage first."""
        rule = device.has_hazard(frozenset({LEAK_HAZARD}), self.params.smoke_rules)
        return rule or device.has_hazard(frozenset({CABLE_HAZARD}), self.params.smoke_rules)

    def _check_electrical(self, device_id: str, now_ms: int) -> list[Signal]:
        """Upgrade ``device_id``'s electrical alert if its circuit shows the other kind."""
        device = self._devices.get(device_id)
        if device is None or device.electrical_confirmed:
            return []
        rule = self._electrical_rule(device)
        if rule is None:
            return []
        circuit = (device_id, *self._peers(device_id, "circuit"))
        if any(self._confirmed(other) for other in circuit):
            return []  # one upgrade per circuit: one developing fault, one red alert
        hazard = device.alerts[rule][0]
        other_kind = "cable" if hazard == LEAK_HAZARD else "leak"
        other_hazard = CABLE_HAZARD if hazard == LEAK_HAZARD else LEAK_HAZARD
        window_ms = int(self.params.electrical_window_s * 1000)
        for other_id in circuit:
            other = self._devices.get(other_id)
            if other is None:
                continue
            alert_rule = other.has_hazard(frozenset({other_hazard}), self.params.smoke_rules)
            evidence: _Evidence | None = getattr(other, other_kind)
            if alert_rule is not None:
                evidence = _Evidence(
                    now_ms, f"{other_id} {alert_rule} 报警", f"{other_id} has {alert_rule} active"
                )
            elif evidence is not None and evidence.ts_ms >= now_ms - window_ms:
                evidence = _Evidence(
                    evidence.ts_ms, f"{other_id} {evidence.zh}", f"{other_id} {evidence.en}"
                )
            else:
                continue
            device.electrical_confirmed = True
            return [self._electrical_signal(device_id, now_ms, rule, evidence, active=True)]
        return []

    def _fire_signal(
        self,
        smoke_id: str,
        ts_ms: int,
        heat_id: str | None,
        evidence: _Evidence | None,
        *,
        active: bool,
    ) -> Signal:
        if active:
            zh = evidence.zh if evidence else "温度报警"
            en = evidence.en if evidence else "a heat alert is active"
            message = (
                f"确认火警：烟感 {smoke_id} 报警，同一房间 {heat_id} {zh} / "
                f"Confirmed fire: smoke alarm {smoke_id} and {heat_id} in the same room: {en}"
            )
        else:
            message = (
                f"确认火警解除：烟感 {smoke_id} 已复位 / "
                f"Confirmed fire cleared: smoke alarm {smoke_id} reset"
            )
        return _confirmed(smoke_id, FIRE_RULE, FIRE_HAZARD, ts_ms, message, active=active)

    def _electrical_signal(
        self, device_id: str, ts_ms: int, rule: str, evidence: _Evidence | None, *, active: bool
    ) -> Signal:
        if active and evidence is not None:
            message = (
                f"电气火灾风险升级：{device_id} {rule} 报警，同一回路 {evidence.zh} / "
                f"Electrical alert upgraded: {device_id} {rule} and on the same circuit "
                f"{evidence.en}"
            )
        else:
            message = (
                f"电气火灾风险解除：{device_id} 电气报警已恢复 / "
                f"Electrical upgrade cleared: {device_id} has no electrical alert left"
            )
        return _confirmed(
            device_id, ELECTRICAL_RULE, ELECTRICAL_HAZARD, ts_ms, message, active=active
        )


def _confirmed(
    device_id: str, rule: str, hazard: str, ts_ms: int, message: str, *, active: bool
) -> Signal:
    """A confirmed hazard (or its clear): red, whatever the alerts that confirm it were."""
    return Signal(
        device_id=device_id,
        rule=rule,
        active=active,
        ts_ms=ts_ms,
        value=None,
        severity=Severity.RED,
        alert_class=AlertClass.HAZARD,
        hazard=hazard,
        message=message,
    )


def _rise(
    metric: str, low: float, value: float, rise: float, bound: float | None, window_s: float
) -> tuple[str, str] | None:
    """The evidence a value shows (rise within the window, or over the bound), zh and en."""
    unit = "°C" if metric.endswith("_c") else "mA" if metric.endswith("_ma") else ""
    name_zh = "剩余电流" if unit == "mA" else "温度"
    name_en = "residual current" if unit == "mA" else "temperature"
    if value - low >= rise:
        d = value - low
        return (
            f"{name_zh} {low:.1f}→{value:.1f} {unit}（{window_s:.0f} s 内升 {d:.1f} {unit}）",
            f"{name_en} {low:.1f} → {value:.1f} {unit} (+{d:.1f} {unit} within {window_s:.0f} s)",
        )
    if bound is not None and value >= bound:
        return (
            f"{name_zh} {value:.1f} {unit}（≥ {bound:g}）",
            f"{name_en} {value:.1f} {unit} (≥ {bound:g})",
        )
    return None


def _device_from_json(raw: object) -> _Device:
    if not isinstance(raw, dict):
        raise ValueError("must be a mapping")
    device = _Device()
    for rule, pair in get_dict(raw, "alerts").items():
        if not isinstance(pair, list) or not isinstance(pair[0], str):
            raise ValueError(f"alert {rule!r} must be [hazard, since]")
        device.alerts[rule] = (pair[0], get_int({"since": pair[1]}, "since"))
    for metric, w in get_dict(raw, "windows").items():
        if not isinstance(w, dict):
            raise ValueError(f"window {metric!r} must be a mapping")
        ts, values = get_int_list(w, "ts"), get_float_list(w, "values")
        if len(ts) != len(values):
            raise ValueError(f"window {metric!r}: ts and values differ in length")
        window = _Window()
        window.points.extend(zip(ts, values, strict=True))
        device.windows[metric] = window
    evidence = get_dict(raw, "evidence")
    for kind in ("heat", "leak", "cable"):
        item = evidence.get(kind)
        if item is None:
            continue
        if not isinstance(item, list) or len(item) != 3:
            raise ValueError(f"evidence {kind!r} must be [ts, zh, en]")
        ts_ms = get_opt_int({"ts": item[0]}, "ts")
        if ts_ms is None or not isinstance(item[1], str) or not isinstance(item[2], str):
            raise ValueError(f"evidence {kind!r} must be [ts, zh, en]")
        setattr(device, kind, _Evidence(ts_ms, item[1], item[2]))
    for flag in ("fire_confirmed", "electrical_confirmed"):
        value = raw.get(flag)
        if not isinstance(value, bool):
            raise ValueError(f"{flag} must be a boolean")
        setattr(device, flag, value)
    return device
