"""A scenario's readings generated in process, an array at a time, for scored evaluations.

The real-time runner (:mod:`simulator.runner`) publishes one message per sample through
MQTT, which is right for end-to-end tests and far too slow for a week of a town's readings.
Here the normal signal of each device comes from :meth:`DeviceSignals.sample_many` (the same
models, drawn as arrays), and only the samples inside an incident's window go through the
incidents' own hooks (:mod:`simulator.incidents`: ``adjust``, ``observe``, ``deliver``), so
ramps, fires, outages, backfills and their ground truth are exactly the runner's. What
comes out is what the gateway's detectors would be handed after decoding and validation:
canonical readings, events and status changes, each with the time it would arrive.

Sites with working ``days`` and ``shutdowns`` (see :class:`~simulator.scenario.SiteSpec`) run
their devices' load at the shutdown level on non-working days and during a shutdown, and at
the incident's level during an ``illegal_production`` or ``holiday_load`` incident: that is
what the production detector compares with the enterprise's calendar.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.model import DeviceEvent, StatusChange
from gateway.profiles import Profile, load_profiles
from gateway.registry_model import parse_days
from simulator.incidents import Incident, Outlet, ProductionIncident, plan_incidents
from simulator.payloads import TopicKind, Value, telemetry
from simulator.scenario import MalformedReason, Scenario, SiteSpec, check_against_profiles
from simulator.signals import LOCAL_UTC_OFFSET_S, DeviceSignals, device_rng
from simulator.truth import TruthRecord

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


@dataclass(slots=True)
class Batch:
    """Everything a scenario produced, in arrival order.

    Readings are parallel arrays (``device`` and ``metric`` index ``device_ids`` and
    ``metrics``) sorted by ``arrival_ms``: a backfill arrives long after it was measured.
    """

    scenario: Scenario
    start_ms: int
    end_ms: int
    device_ids: list[str]
    metrics: list[str]
    arrival_ms: Ints
    device: npt.NDArray[np.int32]
    metric: npt.NDArray[np.int32]
    ts_ms: Ints
    value: Floats
    events: list[tuple[int, DeviceEvent]]
    statuses: list[tuple[int, StatusChange]]
    truth: list[TruthRecord]
    #: Messages an incident meant to be refused (malformed): not generated here, only counted.
    malformed: Counter[str] = field(default_factory=Counter)

    @property
    def readings(self) -> int:
        return int(self.ts_ms.size)


class _Collector(Outlet):
    """The incidents' Outlet: collects what they send, stamped with the current time."""

    def __init__(self, start_ms: int) -> None:
        self.start_ms = start_ms
        self.now_ms = start_ms
        self.rows: list[tuple[int, str, str, int, float]] = []
        self.events: list[tuple[int, DeviceEvent]] = []
        self.statuses: list[tuple[int, StatusChange]] = []
        self.malformed: Counter[str] = Counter()

    def ts_ms(self, t_s: float) -> int:
        return self.start_ms + round(t_s * 1000)

    def publish(
        self,
        topic_name: str,
        payload: bytes,
        kind: TopicKind,
        *,
        retain: bool = False,
        reason: MalformedReason | None = None,
    ) -> None:
        if reason is not None:
            self.malformed[reason] += 1

    def publish_event(
        self, device_id: str, t_s: float, event_type: str, detail: Mapping[str, Any]
    ) -> None:
        ts = self.ts_ms(t_s)
        self.events.append((ts, DeviceEvent(device_id, event_type, ts, dict(detail))))

    def publish_status(self, device_id: str, online: bool) -> None:
        self.statuses.append((self.now_ms, StatusChange(device_id, online, self.now_ms)))

    def publish_telemetry(
        self, device_id: str, body: dict[str, Any] | list[dict[str, Any]], copies: int = 1
    ) -> None:
        items = body if isinstance(body, list) else [body]
        for _ in range(copies):
            for item in items:
                for metric, value in item["values"].items():
                    self.rows.append((self.now_ms, device_id, metric, item["ts"], float(value)))


def _weekday(ts_ms: Ints) -> Ints:
    """ISO weekday (1 = Monday) in the town's zone; 1970-01-01 was a Thursday."""
    days = (ts_ms // 1000 + LOCAL_UTC_OFFSET_S) // 86400
    return np.asarray((days + 3) % 7 + 1, dtype=np.int64)


def _load_scale(
    site: SiteSpec, device_id: str, ts: Ints, offset_s: Floats, incidents: list[Incident]
) -> Floats | None:
    """Per-sample load multiplier of a site's device (None: the plain working-day curve)."""
    if not site.shutdowns and not site.days:
        return None
    scale = np.ones(ts.size)
    # The registry's format; a site that names no days works every day.
    working = np.isin(_weekday(ts), sorted(parse_days(site.days.strip() or "1-7")))
    idle = min((p.load for p in site.shutdowns), default=0.05)
    scale[~working] = idle
    for period in site.shutdowns:
        scale[(offset_s >= period.at_s) & (offset_s < period.end_s)] = period.load
    for inc in incidents:
        if isinstance(inc, ProductionIncident) and inc.device_id == device_id:
            scale[(offset_s >= inc.start_s) & (offset_s < inc.end_s)] = inc.load
    return scale


def generate(
    scenario: Scenario,
    start_ms: int,
    profiles: Mapping[str, Profile] | None = None,
) -> Batch:
    """Every reading, event and status change of ``scenario`` started at ``start_ms``."""
    profiles = dict(load_profiles() if profiles is None else profiles)
    check_against_profiles(scenario, profiles, f"scenario {scenario.name!r}")
    seed = scenario.seed
    signals = {
        d.id: DeviceSignals(profiles[d.profile], d.id, seed, d.baseline, d.metrics)
        for _, d in scenario.devices()
    }
    incidents = plan_incidents(scenario, profiles, signals)
    out = _Collector(start_ms)
    duration = scenario.duration_s
    device_ids = [d.id for _, d in scenario.devices()]
    metric_names = sorted({m for s in signals.values() for m in s.metrics})
    dev_index = {d: i for i, d in enumerate(device_ids)}
    met_index = {m: i for i, m in enumerate(metric_names)}
    parts: list[tuple[Ints, Ints, Ints, Floats]] = []  # (device, metric, ts, value)
    # Samples inside an incident window: (offset_s, order, seq, action), run in time order.
    heap: list[tuple[float, int, int, Callable[[], None]]] = []
    seq = itertools.count()

    def at(t_s: float, order: int, action: Callable[[], None]) -> None:
        heapq.heappush(heap, (t_s, order, next(seq), action))

    for incident in incidents:
        at(incident.start_s, 0, lambda inc=incident: inc.begin(out, inc.start_s))  # type: ignore[misc]
        at(incident.end_s, 0, lambda inc=incident: inc.end(out, inc.end_s))  # type: ignore[misc]
        for t_s, step in incident.timed_actions():
            at(t_s, 1, lambda s=step, t=t_s: s(out, t))  # type: ignore[misc]

    for site, spec in scenario.devices():
        sig = signals[spec.id]
        phase = float(device_rng(seed, spec.id, "phase").uniform(0, min(spec.interval_s, 1)))
        count = int(np.ceil((duration - phase) / spec.interval_s))
        offset_s: Floats = phase + np.arange(max(0, count), dtype=np.float64) * spec.interval_s
        offset_s = offset_s[offset_s < duration]
        ts = start_ms + np.round(offset_s * 1000).astype(np.int64)
        mine = sorted(
            (inc for inc in incidents if spec.id in inc.devices), key=lambda inc: -inc.priority
        )
        normal = sig.sample_many(ts, _load_scale(site, spec.id, ts, offset_s, mine))
        in_window = np.zeros(ts.size, dtype=np.bool_)
        for inc in mine:
            # from when it starts until a little after it ends (a backfill is sent at the end)
            in_window |= (offset_s >= inc.start_s) & (offset_s <= inc.end_s)
        plain = ~in_window
        d = dev_index[spec.id]
        for metric, values in normal.items():
            parts.append(
                (
                    np.full(int(plain.sum()), d, dtype=np.int64),
                    np.full(int(plain.sum()), met_index[metric], dtype=np.int64),
                    ts[plain],
                    values[plain],
                )
            )
        for i in np.flatnonzero(in_window).tolist():
            sample = {m: _value(sig, m, float(normal[m][i])) for m in sig.metrics}
            at(
                float(offset_s[i]),
                2,
                lambda dev=spec.id, t=float(offset_s[i]), ms=int(ts[i]), v=sample, s=sig, m=mine: (
                    _window_sample(out, dev, t, ms, v, s, m)  # type: ignore[misc]
                ),
            )
    for device_id in device_ids:
        out.statuses.append((start_ms, StatusChange(device_id, True, start_ms)))
    while heap:
        t_s, _, _, job = heapq.heappop(heap)
        if t_s >= duration:
            break
        out.now_ms = out.ts_ms(t_s)
        job()
    out.now_ms = out.ts_ms(duration)
    for incident in incidents:
        if incident.begun:
            incident.end(out, min(duration, incident.end_s))
    truth = [r for inc in incidents if inc.begun for r in inc.truth(out)]

    if out.rows:
        arr, dev_ids, mets, tss, vals = zip(*out.rows, strict=True)
        window = (
            np.array(arr, dtype=np.int64),
            np.array([dev_index[x] for x in dev_ids], dtype=np.int64),
            np.array([met_index[x] for x in mets], dtype=np.int64),
            np.array(tss, dtype=np.int64),
            np.array(vals, dtype=np.float64),
        )
    else:
        none = np.zeros(0, dtype=np.int64)
        window = (none, none, none, none, np.zeros(0))
    devices = np.concatenate([p[0] for p in parts] + [window[1]])
    metrics = np.concatenate([p[1] for p in parts] + [window[2]])
    ts_all = np.concatenate([p[2] for p in parts] + [window[3]])
    values = np.concatenate([p[3] for p in parts] + [window[4]])
    arrival = np.concatenate([p[2] for p in parts] + [window[0]])
    order = np.lexsort((ts_all, arrival))
    return Batch(
        scenario=scenario,
        start_ms=start_ms,
        end_ms=out.ts_ms(duration),
        device_ids=device_ids,
        metrics=metric_names,
        arrival_ms=arrival[order],
        device=devices[order].astype(np.int32),
        metric=metrics[order].astype(np.int32),
        ts_ms=ts_all[order],
        value=values[order],
        events=sorted(out.events, key=lambda e: e[0]),
        statuses=sorted(out.statuses, key=lambda e: e[0]),
        truth=truth,
        malformed=out.malformed,
    )


def _value(sig: DeviceSignals, metric: str, value: float) -> Value:
    return sig.finish(metric, value)


def _window_sample(
    out: _Collector,
    device_id: str,
    t_s: float,
    ts_ms: int,
    values: dict[str, Value],
    sig: DeviceSignals,
    incidents: list[Incident],
) -> None:
    """One sample inside an incident window: what ``Simulator._publish_reading`` does."""
    active = [inc for inc in incidents if inc.active]
    if active:
        adjusted: dict[str, Value] = dict(values)
        for inc in active:
            inc.adjust(device_id, t_s, adjusted)
        values = {m: sig.finish(m, float(v)) for m, v in adjusted.items()}
        for inc in active:
            inc.observe(device_id, ts_ms, values)
    message = telemetry(ts_ms, values)
    for inc in active:
        if inc.deliver(device_id, message, out):
            return
    out.publish_telemetry(device_id, message)
