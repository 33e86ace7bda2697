"""What each incident kind does to the simulated world, over time.

An incident touches the world in four ways, each a hook the runner calls:

* ``begin`` / ``end``: one-off actions at its start and end (an event, a status change, a flush);
* ``timed_actions``: more one-off actions in between (a malformed burst spread over its window);
* ``adjust``: change a device's normal readings while active (a ramp towards a peak);
* ``deliver``: take over publishing a telemetry message while active (drop it, buffer it,
  send it twice).

The runner owns MQTT and the clock; incidents only see the small :class:`Outlet` interface,
so they can be driven by a fake in tests. Each incident also reports its ground truth
(:class:`simulator.truth.TruthRecord`), including when its signal actually crossed the threshold.

Planning checks the timing against the profile: a threshold rule with ``delay_s`` only fires
if the condition holds for that long, so a ramp that crosses too late would test nothing and
is refused when the Simulator is built, with the numbers, instead of producing a silent miss.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from gateway.profiles import Profile, StageSpec, ThresholdRule
from simulator.payloads import FieldEncoder, TopicKind, Value, dumps, telemetry, topic
from simulator.scenario import (
    BELOW_THRESHOLD_KINDS,
    BackfillSpec,
    DuplicatesSpec,
    FireSpec,
    IncidentSpec,
    MalformedReason,
    MalformedSpec,
    OfflineSpec,
    ProductionSpec,
    RampSpec,
    Scenario,
    ScenarioError,
    SensorFaultSpec,
)
from simulator.signals import DeviceSignals
from simulator.truth import TruthRecord

#: The size limit the gateway enforces on one MQTT payload (the oversize test goes past it).
MAX_PAYLOAD_BYTES = 256 * 1024
#: How far ahead a ``ts_future`` message claims to be.
FUTURE_S = 7 * 86400
#: No profile sets the offline alert's colour: the gateway raises it as a blue (minor) device
#: fault for every device type (detectors/bank.py), so that is what the truth expects.
OFFLINE_SEVERITY = "blue"
#: A metric no profile has (``unknown_metric``).
UNKNOWN_METRIC = "mystery_sensor_pct"


class Outlet(Protocol):
    """What an incident may do to the world; the runner implements it over MQTT."""

    def ts_ms(self, t_s: float) -> int:
        """Epoch ms of scenario offset ``t_s``."""
        ...

    def publish(
        self,
        topic_name: str,
        payload: bytes,
        kind: TopicKind,
        *,
        retain: bool = False,
        reason: MalformedReason | None = None,
    ) -> None: ...

    def publish_event(
        self, device_id: str, t_s: float, event_type: str, detail: Mapping[str, Any]
    ) -> None: ...

    def publish_status(self, device_id: str, online: bool) -> None: ...

    def publish_telemetry(
        self, device_id: str, body: dict[str, Any] | list[dict[str, Any]], copies: int = 1
    ) -> None:
        """Publish well-formed telemetry (``copies`` identical messages); its readings count
        once towards what the gateway must store."""
        ...


Action = Callable[[Outlet, float], None]


@dataclass(slots=True)
class _Ramp:
    """One metric of one device moving from its normal centre to a peak, then holding."""

    device_id: str
    metric: str
    centre: float
    peak: float
    start_s: float
    ramp_s: float
    rule: ThresholdRule | None = None
    stage: StageSpec | None = None
    crossed_ms: int | None = None
    #: First reading past the pre-warning, when the rule has one below the expected stage.
    prewarning_ms: int | None = None

    def apply(self, t_s: float, values: dict[str, Value]) -> None:
        """Blend the normal reading into the peak. At the peak a quarter of the normal
        signal's deviation from its centre is kept, so the line still wobbles like a real
        sensor but a cold night or a light load cannot pull it back under the threshold."""
        if self.metric not in values:
            return
        if self.ramp_s <= 0:
            frac = 1.0
        else:
            frac = min(1.0, max(0.0, (t_s - self.start_s) / self.ramp_s))
        normal = float(values[self.metric])
        wobble = 0.25 * (normal - self.centre)
        values[self.metric] = (1 - frac) * normal + frac * (self.peak + wobble)

    def observe(self, ts_ms: int, values: Mapping[str, Value]) -> None:
        if self.crossed_ms is not None or self.stage is None or self.rule is None:
            return
        value = values.get(self.metric)
        if value is None:
            return
        above = self.rule.direction == "above"

        def past(threshold: float) -> bool:
            return float(value) > threshold if above else float(value) < threshold

        pre = self.rule.prewarning
        if pre is not None and pre is not self.stage and self.prewarning_ms is None:
            if past(pre.value):
                self.prewarning_ms = ts_ms
        if past(self.stage.value):
            self.crossed_ms = ts_ms

    def detail(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "peak": round(self.peak, 3),
            "centre": round(self.centre, 3),
            "ramp_s": self.ramp_s,
        }
        if self.prewarning_ms is not None:
            out["prewarning_ms"] = self.prewarning_ms
        return out

    def truth_fields(self) -> dict[str, Any]:
        return {
            "expected_rule": self.rule.name if self.rule and self.stage else None,
            "expected_severity": self.stage.severity.value if self.stage else None,
            "metric": self.metric,
            "threshold": self.stage.value if self.stage else None,
            "crossed_ms": self.crossed_ms,
        }


class Incident:
    """Base: an incident on one device, active from ``begin`` until ``end``."""

    #: When several active incidents want a device's telemetry, the highest priority wins.
    priority: ClassVar[int] = 0

    def __init__(self, kind: str, device_id: str, site_id: str, start_s: float, end_s: float):
        self.kind = kind
        self.device_id = device_id
        self.site_id = site_id
        self.start_s = start_s
        self.end_s = end_s
        self.devices: frozenset[str] = frozenset({device_id})
        self.begun = False
        self.ended_s: float | None = None

    @property
    def active(self) -> bool:
        return self.begun and self.ended_s is None

    def begin(self, out: Outlet, t_s: float) -> None:
        self.begun = True
        self._begin(out, t_s)

    def end(self, out: Outlet, t_s: float) -> None:
        """End now: at ``end_s``, or earlier when the run is cut short."""
        if self.ended_s is None:
            self.ended_s = t_s
            self._end(out, t_s)

    def _begin(self, out: Outlet, t_s: float) -> None:
        pass

    def _end(self, out: Outlet, t_s: float) -> None:
        pass

    def timed_actions(self) -> list[tuple[float, Action]]:
        return []

    def adjust(self, device_id: str, t_s: float, values: dict[str, Value]) -> None:
        pass

    def observe(self, device_id: str, ts_ms: int, values: Mapping[str, Value]) -> None:
        pass

    def deliver(self, device_id: str, message: dict[str, Any], out: Outlet) -> bool:
        """Publish (or withhold) ``message`` instead of the runner; True if handled."""
        return False

    #: The scenario's variant name (``IncidentSpec.label``), copied into ``detail.label``.
    label: str = ""

    def _record(self, out: Outlet, **fields: Any) -> TruthRecord:
        if self.label:
            fields["detail"] = {**fields.get("detail", {}), "label": self.label}
        end_s = self.ended_s if self.ended_s is not None else self.end_s
        base: dict[str, Any] = {
            "kind": self.kind,
            "device_id": self.device_id,
            "site_id": self.site_id,
            "start_ms": out.ts_ms(self.start_s),
            "end_ms": out.ts_ms(end_s),
            "expected_rule": None,
            "expected_severity": None,
        }
        base.update(fields)
        return TruthRecord(**base)

    def truth(self, out: Outlet) -> list[TruthRecord]:
        return [self._record(out)]


class RampIncident(Incident):
    """Leakage creep, cable overheating, dust-collector blockage, gas leak, or any ramp."""

    def __init__(self, spec: RampSpec, site_id: str, ramp: _Ramp) -> None:
        super().__init__(spec.kind, spec.device, site_id, spec.at_s, spec.end_s)
        self.ramp = ramp

    def adjust(self, device_id: str, t_s: float, values: dict[str, Value]) -> None:
        if device_id == self.ramp.device_id:
            self.ramp.apply(t_s, values)

    def observe(self, device_id: str, ts_ms: int, values: Mapping[str, Value]) -> None:
        if device_id == self.ramp.device_id:
            self.ramp.observe(ts_ms, values)

    def truth(self, out: Outlet) -> list[TruthRecord]:
        return [self._record(out, detail=self.ramp.detail(), **self.ramp.truth_fields())]


class FireIncident(Incident):
    """The smoke alarm sends ``smoke_alarm`` at once and ``smoke_clear`` at the end; its
    obscuration jumps, and a heat detector at the same site (if any) warms past its alarm."""

    def __init__(
        self,
        spec: FireSpec,
        site_id: str,
        smoke: _Ramp | None,
        heat: _Ramp | None,
        alarm_severity: str | None,
    ) -> None:
        super().__init__("fire", spec.device, site_id, spec.at_s, spec.end_s)
        self.smoke, self.heat = smoke, heat
        self.alarm_severity = alarm_severity
        self.alarm_ms: int | None = None
        if heat is not None:
            self.devices = frozenset({spec.device, heat.device_id})

    def _begin(self, out: Outlet, t_s: float) -> None:
        detail: dict[str, Any] = {}
        if self.smoke is not None:
            detail[self.smoke.metric] = round(self.smoke.peak, 1)
        out.publish_event(self.device_id, t_s, "smoke_alarm", detail)
        self.alarm_ms = out.ts_ms(t_s)

    def _end(self, out: Outlet, t_s: float) -> None:
        out.publish_event(self.device_id, t_s, "smoke_clear", {})

    def adjust(self, device_id: str, t_s: float, values: dict[str, Value]) -> None:
        for ramp in (self.smoke, self.heat):
            if ramp is not None and ramp.device_id == device_id:
                ramp.apply(t_s, values)

    def observe(self, device_id: str, ts_ms: int, values: Mapping[str, Value]) -> None:
        if self.heat is not None and self.heat.device_id == device_id:
            self.heat.observe(ts_ms, values)

    def truth(self, out: Outlet) -> list[TruthRecord]:
        records = [
            self._record(
                out,
                expected_rule="smoke_alarm",
                expected_severity=self.alarm_severity,
                crossed_ms=self.alarm_ms,
            )
        ]
        if self.heat is not None:
            fields = self.heat.truth_fields()
            records.append(
                self._record(
                    out,
                    device_id=self.heat.device_id,
                    detail={**self.heat.detail(), "smoke_device": self.device_id},
                    **fields,
                )
            )
        return records


class OfflineIncident(Incident):
    """Silence: telemetry is dropped, ``offline`` is published retained (what the broker
    would do with the device's MQTT will), and ``online`` again when it comes back."""

    priority = 30

    def __init__(self, spec: OfflineSpec, site_id: str) -> None:
        super().__init__("offline", spec.device, site_id, spec.at_s, spec.end_s)
        self.announce = spec.params.announce
        self.dropped = 0

    def _begin(self, out: Outlet, t_s: float) -> None:
        if self.announce:
            out.publish_status(self.device_id, False)

    def _end(self, out: Outlet, t_s: float) -> None:
        out.publish_status(self.device_id, True)

    def deliver(self, device_id: str, message: dict[str, Any], out: Outlet) -> bool:
        self.dropped += 1
        return True

    def truth(self, out: Outlet) -> list[TruthRecord]:
        return [
            self._record(
                out,
                expected_rule="offline",
                expected_severity=OFFLINE_SEVERITY,
                detail={"announced": self.announce, "dropped": self.dropped},
            )
        ]


class DuplicatesIncident(Incident):
    """Each telemetry message in the window goes out ``copies`` times, byte for byte
    (QoS 1 redelivery after a lost PUBACK looks exactly like this)."""

    priority = 10

    def __init__(self, spec: DuplicatesSpec, site_id: str) -> None:
        super().__init__("duplicates", spec.device, site_id, spec.at_s, spec.end_s)
        self.copies = spec.params.copies
        self.duplicated = 0

    def deliver(self, device_id: str, message: dict[str, Any], out: Outlet) -> bool:
        out.publish_telemetry(device_id, message, copies=self.copies)
        self.duplicated += 1
        return True

    def truth(self, out: Outlet) -> list[TruthRecord]:
        return [self._record(out, messages=self.duplicated, detail={"copies": self.copies})]


class BackfillIncident(Incident):
    """The device loses its uplink but keeps measuring; when it is back it sends the
    buffered readings as JSON list(s) carrying their original timestamps."""

    priority = 20

    def __init__(self, spec: BackfillSpec, site_id: str) -> None:
        super().__init__("backfill", spec.device, site_id, spec.at_s, spec.end_s)
        self.batch = spec.params.batch
        self.buffer: list[dict[str, Any]] = []
        self.buffered = 0
        self.batches = 0

    def deliver(self, device_id: str, message: dict[str, Any], out: Outlet) -> bool:
        self.buffer.append(message)
        self.buffered += 1
        return True

    def _end(self, out: Outlet, t_s: float) -> None:
        size = self.batch or max(1, len(self.buffer))
        for i in range(0, len(self.buffer), size):
            out.publish_telemetry(self.device_id, self.buffer[i : i + size])
            self.batches += 1
        self.buffer = []

    def truth(self, out: Outlet) -> list[TruthRecord]:
        return [self._record(out, messages=self.buffered, detail={"batches": self.batches})]


@dataclass(frozen=True, slots=True)
class _Corruptible:
    """What a malformed burst needs to know about its device to fake believable bad data."""

    typical: dict[str, Value]  # canonical metric -> nominal value
    number_metric: str
    low: float
    high: float


class MalformedIncident(Incident):
    """A burst of bad messages, each with exactly one defect so its rejection reason is
    unambiguous; spread evenly over the window, between the device's normal readings."""

    def __init__(
        self,
        spec: MalformedSpec,
        site_id: str,
        device: _Corruptible,
        encoder: FieldEncoder,
        ghost_id: str,
    ) -> None:
        super().__init__("malformed", spec.device, site_id, spec.at_s, spec.end_s)
        self.sent: Counter[str] = Counter()
        self._device, self._encoder, self.ghost_id = device, encoder, ghost_id
        self._plan: list[tuple[MalformedReason, int]] = [
            (reason, k) for k in range(spec.params.repeat) for reason in spec.params.reasons
        ]

    def timed_actions(self) -> list[tuple[float, Action]]:
        step = (self.end_s - self.start_s) / max(1, len(self._plan))
        actions: list[tuple[float, Action]] = []
        for i, (reason, variant) in enumerate(self._plan):
            actions.append((self.start_s + i * step, self._sender(reason, variant)))
        return actions

    def _sender(self, reason: MalformedReason, variant: int) -> Action:
        def send(out: Outlet, t_s: float) -> None:
            if not self.active:
                return
            topic_name, payload = self.message(reason, variant, out.ts_ms(t_s))
            out.publish(topic_name, payload, "telemetry", reason=reason)
            self.sent[reason] += 1

        return send

    def message(self, reason: MalformedReason, variant: int, ts_ms: int) -> tuple[str, bytes]:
        """The topic and bytes of one bad message (public so tests can see the shapes)."""
        dev, enc = self._device, self._encoder
        own = topic(self.device_id, "telemetry")
        key = enc.field_name(dev.number_metric)
        values = enc.encode(dev.typical)
        if reason == "not_json":
            options = [b"this is not json", b'{"ts": 1700000000000, "values": {', b"\xff\xfe\x00"]
            return own, options[variant % len(options)]
        if reason == "bad_shape":
            shapes: list[Any] = [
                {"ts": ts_ms},
                {"ts": ts_ms, "values": [1, 2]},
                "online",
                [1, 2, 3],
            ]
            return own, dumps(shapes[variant % len(shapes)])
        if reason == "not_finite":
            token = (math.nan, math.inf, -math.inf)[variant % 3]
            text = json.dumps({"ts": ts_ms, "values": {key: token}}, allow_nan=True)
            return own, text.encode()
        if reason == "wrong_type":
            word = ("12.5", "high")[variant % 2]
            return own, dumps({"ts": ts_ms, "values": {key: word}})
        if reason == "out_of_range":
            span = dev.high - dev.low
            bad = dev.high + span if variant % 2 == 0 else dev.low - span
            return own, dumps(telemetry(ts_ms, {key: enc.encode_value(dev.number_metric, bad)}))
        if reason == "ts_future":
            return own, dumps(telemetry(ts_ms + FUTURE_S * 1000, values))
        if reason == "unknown_metric":
            return own, dumps(telemetry(ts_ms, {UNKNOWN_METRIC: 1.0}))
        if reason == "oversize":
            # A valid backfill that is simply too big: the size limit is the only defect.
            item = len(dumps(telemetry(ts_ms, values))) + 1
            count = (MAX_PAYLOAD_BYTES + 32 * 1024) // item + 1
            readings = [telemetry(ts_ms - 1000 * (count - i), values) for i in range(count)]
            return own, dumps(readings)
        if reason == "unknown_device":
            return topic(self.ghost_id, "telemetry"), dumps(telemetry(ts_ms, values))
        raise AssertionError(f"unhandled malformed reason {reason!r}")

    def truth(self, out: Outlet) -> list[TruthRecord]:
        return [
            self._record(
                out,
                malformed=dict(self.sent),
                messages=sum(self.sent.values()),
                detail={"unknown_device_id": self.ghost_id},
            )
        ]


class SensorFaultIncident(Incident):
    """A sensor that lies: stuck on one value, pinned at its range limit, or jumping
    impossibly every other reading. The readings still arrive, which is what makes it a
    fault only a flatline or sensor-fault rule can see (offline detection cannot)."""

    def __init__(
        self,
        spec: SensorFaultSpec,
        site_id: str,
        low: float,
        high: float,
        rule: ThresholdRule | None,
    ) -> None:
        super().__init__(spec.kind, spec.device, site_id, spec.at_s, spec.end_s)
        self.metric = spec.params.metric
        self.low, self.high = low, high
        self.jump = spec.params.jump_frac * (high - low)
        self.rule = rule
        self.held: float | None = None
        self.count = 0
        self.first_ms: int | None = None

    def adjust(self, device_id: str, t_s: float, values: dict[str, Value]) -> None:
        if device_id != self.device_id or self.metric not in values:
            return
        value = float(values[self.metric])
        if self.kind == "stuck":
            if self.held is None:
                self.held = value
            values[self.metric] = self.held
        elif self.kind == "pinned":
            values[self.metric] = self.high
        else:  # spiky
            self.count += 1
            if self.count % 2:
                up = value + self.jump <= self.high
                values[self.metric] = value + self.jump if up else value - self.jump

    def observe(self, device_id: str, ts_ms: int, values: Mapping[str, Value]) -> None:
        if device_id == self.device_id and self.first_ms is None and self.metric in values:
            self.first_ms = ts_ms

    def truth(self, out: Outlet) -> list[TruthRecord]:
        rule = self.rule
        return [
            self._record(
                out,
                expected_rule=rule.name if rule is not None else None,
                expected_severity=rule.alarm.severity.value if rule is not None else None,
                metric=self.metric,
                crossed_ms=self.first_ms,
            )
        ]


class ProductionIncident(Incident):
    """Load at a power meter during its site's shutdown. The load itself is set by whoever
    generates the site's readings (``simulator.batch`` scales the working-day curve); the
    real-time runner has no shutdown calendar, so there it only records the truth."""

    def __init__(self, spec: ProductionSpec, site_id: str) -> None:
        super().__init__(spec.kind, spec.device, site_id, spec.at_s, spec.end_s)
        self.load = spec.load()

    def truth(self, out: Outlet) -> list[TruthRecord]:
        illegal = self.kind == "illegal_production"
        return [
            self._record(
                out,
                expected_rule="illegal_production" if illegal else None,
                expected_severity="orange" if illegal else None,
                metric="active_power_kw",
                crossed_ms=out.ts_ms(self.start_s),
                detail={"load": self.load},
            )
        ]


def _target_stage(rule: ThresholdRule, peak: float) -> StageSpec | None:
    """The highest stage the peak clears by at least the hysteresis (so it stays raised)."""
    above = rule.direction == "above"

    def beyond(threshold: float) -> bool:
        margin = rule.hysteresis
        return peak > threshold + margin if above else peak < threshold - margin

    if beyond(rule.alarm.value):
        return rule.alarm
    if rule.prewarning is not None and beyond(rule.prewarning.value):
        return rule.prewarning
    return None


def _check_hold(where: str, ramp: _Ramp, end_s: float, interval_s: float) -> None:
    """Refuse a ramp whose condition would not last long enough for the rule's delay."""
    if ramp.rule is None or ramp.stage is None:
        return
    span = ramp.peak - ramp.centre
    frac = 0.0 if span == 0 else min(1.0, max(0.0, (ramp.stage.value - ramp.centre) / span))
    crossed_s = ramp.start_s + ramp.ramp_s * frac
    need = ramp.rule.delay_s + interval_s * (ramp.rule.delay_samples + 1)
    hold = end_s - crossed_s
    if hold < need:
        raise ScenarioError(
            f"{where}: {ramp.metric} on {ramp.device_id!r} passes {ramp.stage.value} about "
            f"{crossed_s - ramp.start_s:.1f} s after the start and holds only {hold:.1f} s, but "
            f"rule {ramp.rule.name!r} needs {need:.1f} s (delay_s {ramp.rule.delay_s} + "
            f"{ramp.rule.delay_samples + 1} readings every {interval_s} s); lengthen "
            "duration_s or shorten the ramp"
        )


def _rule_for(profile: Profile, metric: str, name: str | None) -> ThresholdRule | None:
    """The rule ``name`` on ``metric``, or the first plain threshold on it (a ramp's peak is
    a reading, so it is measured against a threshold, not a rate or a drift)."""
    for rule in profile.rules:
        if rule.metric != metric:
            continue
        if rule.name == name or (name is None and rule.type == "threshold"):
            return rule
    return None


def plan_incidents(
    scenario: Scenario,
    profiles: Mapping[str, Profile],
    signals: Mapping[str, DeviceSignals],
) -> list[Incident]:
    """Build the incident objects of a scenario, checking timing against the profiles.

    ``signals`` are the devices' normal-signal models (ramps start from their centres).
    """
    built: list[Incident] = []
    device_ids = {d.id for _, d in scenario.devices()}
    for i, spec in enumerate(scenario.incidents):
        where = f"scenario {scenario.name!r}: incidents.{i} ({spec.kind} on {spec.device!r})"
        site = scenario.site_of(spec.device)
        device = scenario.device(spec.device)
        profile = profiles[device.profile]
        built.append(
            _plan_one(
                where,
                spec,
                scenario,
                site.id,
                device.interval_s,
                profile,
                profiles,
                signals,
                device_ids,
                i,
            )
        )
    return built


def _plan_one(
    where: str,
    spec: IncidentSpec,
    scenario: Scenario,
    site_id: str,
    interval_s: float,
    profile: Profile,
    profiles: Mapping[str, Profile],
    signals: Mapping[str, DeviceSignals],
    device_ids: set[str],
    index: int,
) -> Incident:
    sig = signals[spec.device]
    if isinstance(spec, RampSpec):
        metric = spec.metric()
        centre = sig.centre(metric)
        peak = spec.peak(centre)
        mspec = profile.metrics[metric]
        if not mspec.min <= peak <= mspec.max:
            raise ScenarioError(
                f"{where}: peak {peak:g} is outside {metric}'s valid range "
                f"{mspec.min:g}..{mspec.max:g}"
            )
        rule = _rule_for(profile, metric, spec.params.rule)
        stage = _target_stage(rule, peak) if rule is not None else None
        if stage is None and spec.kind not in BELOW_THRESHOLD_KINDS and spec.kind != "ramp":
            assert rule is not None  # checked at load time
            raise ScenarioError(
                f"{where}: peak {peak:g} does not clear rule {rule.name!r} (alarm "
                f"{rule.alarm.value:g}, hysteresis {rule.hysteresis:g}); raise params.peak"
            )
        ramp = _Ramp(spec.device, metric, centre, peak, spec.at_s, spec.ramp_s(), rule, stage)
        _check_hold(where, ramp, spec.end_s, interval_s)
        return _labelled(RampIncident(spec, site_id, ramp), spec)
    if isinstance(spec, FireSpec):
        smoke = None
        if "smoke_obscuration_pct" in sig.metrics:
            smoke = _Ramp(
                spec.device,
                "smoke_obscuration_pct",
                sig.centre("smoke_obscuration_pct"),
                spec.params.smoke_peak_pct,
                spec.at_s,
                min(2.0, spec.duration_s),
            )
        heat = None
        heat_id = _heat_device(spec, scenario, profiles, signals) if spec.params.heat else None
        if heat_id is not None:
            heat_profile = profiles[scenario.device(heat_id).profile]
            heat_sig = signals[heat_id]
            rule = _rule_for(heat_profile, "temperature_c", None)
            centre = heat_sig.centre("temperature_c")
            peak = spec.params.heat_peak_c
            stage = _target_stage(rule, peak) if rule is not None else None
            heat = _Ramp(
                heat_id, "temperature_c", centre, peak, spec.at_s, spec.rise_s(), rule, stage
            )
            _check_hold(where, heat, spec.end_s, scenario.device(heat_id).interval_s)
        event_spec = profile.events.get("smoke_alarm")
        severity = event_spec.severity.value if event_spec and event_spec.severity else None
        return _labelled(FireIncident(spec, site_id, smoke, heat, severity), spec)
    if isinstance(spec, OfflineSpec):
        return _labelled(OfflineIncident(spec, site_id), spec)
    if isinstance(spec, SensorFaultSpec):
        mspec = profile.metrics[spec.params.metric]
        wanted = "flatline" if spec.kind == "stuck" else "sensor_fault"
        fault_rule = next(
            (
                r
                for r in profile.rules
                if r.metric == spec.params.metric and getattr(r, "type", "") == wanted
            ),
            None,
        )
        fault = SensorFaultIncident(spec, site_id, mspec.min, mspec.max, fault_rule)
        return _labelled(fault, spec)
    if isinstance(spec, ProductionSpec):
        return _labelled(ProductionIncident(spec, site_id), spec)
    if isinstance(spec, DuplicatesSpec):
        return DuplicatesIncident(spec, site_id)
    if isinstance(spec, BackfillSpec):
        return BackfillIncident(spec, site_id)
    number = next(m for m in sig.metrics if profile.metrics[m].kind == "number")
    ghost = f"unregistered-{index}-{spec.device}"[:64]
    while ghost in device_ids:
        ghost = "x" + ghost[:63]
    corruptible = _Corruptible(
        sig.typical(), number, profile.metrics[number].min, profile.metrics[number].max
    )
    return MalformedIncident(spec, site_id, corruptible, FieldEncoder(profile), ghost)


def _labelled(incident: Incident, spec: IncidentSpec) -> Incident:
    incident.label = spec.label
    return incident


def _heat_device(
    spec: FireSpec,
    scenario: Scenario,
    profiles: Mapping[str, Profile],
    signals: Mapping[str, DeviceSignals],
) -> str | None:
    """The heat detector a fire warms: the one named, else the first at the site with a
    rule on ``temperature_c`` (a smoke alarm's own thermometer has none, so it is skipped)."""
    if spec.params.heat_device is not None:
        return spec.params.heat_device
    site = scenario.site_of(spec.device)
    for device in site.devices:
        if device.id == spec.device or "temperature_c" not in signals[device.id].metrics:
            continue
        if _rule_for(profiles[device.profile], "temperature_c", None) is not None:
            return device.id
    return None
