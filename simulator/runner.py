"""Run a scenario in real time against any MQTT broker.

One shared MQTT connection carries every simulated device: a town has hundreds of devices
and one connection each would test the broker, not the gateway. The price is the MQTT will:
a connection has one will, so there is no per-device ``offline`` will. Instead the simulator
publishes the retained ``offline`` itself when a scenario takes a device offline, and a
simulator that dies leaves its devices' ``online`` retained; the gateway must then notice
the silence by its heartbeat timeout, which is exactly the check it needs for real devices
whose will got lost. ``offline_on_exit=True`` marks every device offline when a run ends.

The loop is a plain blocking scheduler (a heap of due times) with paho's network thread
(``loop_start``) doing the I/O, so ``run`` works from a pytest thread, a CLI, or an asyncio
program via ``await asyncio.to_thread(sim.run, stop_event)``. Timestamps are the scheduled
wall-clock times in epoch ms; a ``start_ms`` in the past replays the overdue part at once.
``replay`` runs the same schedule with no broker and no sleeping, into a callable.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.errors import BrokerError, ConfigError
from gateway.profiles import Profile, load_profiles
from simulator.incidents import Incident, Outlet, plan_incidents
from simulator.payloads import FieldEncoder, TopicKind, Value, dumps, event, telemetry, topic
from simulator.scenario import (
    DeviceSpec,
    MalformedReason,
    Scenario,
    check_against_profiles,
    load_scenario,
)
from simulator.signals import DeviceSignals, device_rng
from simulator.truth import TruthRecord, write_truth

log = logging.getLogger(__name__)

#: Seconds to wait for the broker's CONNACK, and for outstanding QoS 1/2 acknowledgements.
CONNECT_TIMEOUT_S = 10.0
ACK_TIMEOUT_S = 30.0


def parse_broker_url(url: str) -> tuple[str, int]:
    """``mqtt://host:port`` to ``(host, port)``; the port defaults to 1883.

    >>> parse_broker_url("mqtt://127.0.0.1:18830")
    ('127.0.0.1', 18830)
    >>> parse_broker_url("mqtt://broker")
    ('broker', 1883)
    """
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise ConfigError(f"broker URL {url!r}: expected mqtt://host[:port]")
    try:
        port = parts.port or 1883
    except ValueError as exc:
        raise ConfigError(f"broker URL {url!r}: {exc}") from exc
    return parts.hostname, port


@dataclass(slots=True)
class SimulationReport:
    """What a run published, and its ground truth."""

    started_ms: int = 0
    ended_ms: int = 0
    #: Messages published per topic kind (telemetry, event, status), malformed ones included.
    published: Counter[str] = field(default_factory=Counter)
    #: Malformed messages per rejection reason.
    malformed: Counter[str] = field(default_factory=Counter)
    truth: list[TruthRecord] = field(default_factory=list)
    #: Canonical readings in well-formed telemetry, each (device, metric, ts) counted once:
    #: duplicates once, backfilled readings included, malformed and dropped ones not. This is
    #: exactly how many readings a correct gateway stores.
    valid_readings: int = 0
    #: Publishes the client refused (not connected) or the broker never acknowledged.
    failed: int = 0
    unacknowledged: int = 0
    stopped_early: bool = False

    @property
    def total(self) -> int:
        return sum(self.published.values())

    def summary(self) -> str:
        """One paragraph for a terminal."""
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.published.items()))
        bad = ", ".join(f"{k} {n}" for k, n in sorted(self.malformed.items())) or "none"
        seconds = (self.ended_ms - self.started_ms) / 1000
        return (
            f"published {self.total} messages in {seconds:.1f} s ({kinds}); "
            f"{self.valid_readings} valid readings; malformed: {bad}; "
            f"{len(self.truth)} truth records; failed {self.failed}, "
            f"unacknowledged {self.unacknowledged}"
            + ("; stopped early" if self.stopped_early else "")
        )


#: Where a broker-free replay sends each message: ``(topic, payload, retain)``.
Sink = Callable[[str, bytes, bool], None]


class _Session(Outlet):
    """One run: the clock origin, the counters, and where messages go. Implements Outlet."""

    def __init__(self, start_ms: int, report: SimulationReport) -> None:
        self.start_ms, self.report = start_ms, report

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
        self.report.published[kind] += 1
        if reason is not None:
            self.report.malformed[reason] += 1
        self._send(topic_name, payload, retain)

    def _send(self, topic_name: str, payload: bytes, retain: bool) -> None:
        raise NotImplementedError

    def publish_event(
        self, device_id: str, t_s: float, event_type: str, detail: Mapping[str, Any]
    ) -> None:
        payload = dumps(event(self.ts_ms(t_s), event_type, detail))
        self.publish(topic(device_id, "event"), payload, "event")

    def publish_status(self, device_id: str, online: bool) -> None:
        payload = b"online" if online else b"offline"
        self.publish(topic(device_id, "status"), payload, "status", retain=True)

    def publish_telemetry(
        self, device_id: str, body: dict[str, Any] | list[dict[str, Any]], copies: int = 1
    ) -> None:
        items = body if isinstance(body, list) else [body]
        self.report.valid_readings += sum(len(item["values"]) for item in items)
        payload = dumps(body)
        for _ in range(copies):
            self.publish(topic(device_id, "telemetry"), payload, "telemetry")

    def wait_acknowledged(self, timeout_s: float) -> None:
        pass


class _MqttSession(_Session):
    def __init__(
        self, client: mqtt.Client, qos: int, start_ms: int, report: SimulationReport
    ) -> None:
        super().__init__(start_ms, report)
        self.client, self.qos = client, qos
        self._pending: list[mqtt.MQTTMessageInfo] = []

    def _send(self, topic_name: str, payload: bytes, retain: bool) -> None:
        info = self.client.publish(topic_name, payload, qos=self.qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            # Not connected: paho may still send a QoS 1 message later, but we cannot know.
            self.report.failed += 1
            log.warning("publish to %s refused: %s", topic_name, mqtt.error_string(info.rc))
        elif self.qos > 0:
            self._pending.append(info)
            if len(self._pending) >= 1000:
                self._pending = [i for i in self._pending if not i.is_published()]

    def wait_acknowledged(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for info in self._pending:
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                self.report.failed += 1
                continue
            if not info.is_published():
                self.report.unacknowledged += 1
        self._pending = []


class _SinkSession(_Session):
    def __init__(self, sink: Sink, start_ms: int, report: SimulationReport) -> None:
        super().__init__(start_ms, report)
        self.sink = sink

    def _send(self, topic_name: str, payload: bytes, retain: bool) -> None:
        self.sink(topic_name, payload, retain)


@dataclass(slots=True)
class _SimDevice:
    spec: DeviceSpec
    signals: DeviceSignals
    encoder: FieldEncoder
    incidents: list[Incident]
    phase_s: float


class Simulator:
    """Publishes a scenario's devices and incidents over MQTT, in real time.

    ``start_ms`` fixes the wall-clock time of scenario offset 0 (default: when ``run`` starts);
    ``duration_s`` overrides the scenario's. Construction validates everything (profiles,
    incident timing) so a bad scenario fails before any connection is made.
    """

    def __init__(
        self,
        scenario: Scenario,
        broker_url: str,
        qos: int = 1,
        truth_path: Path | None = None,
        start_ms: int | None = None,
        *,
        duration_s: float | None = None,
        profiles: Mapping[str, Profile] | None = None,
        client_id: str | None = None,
        offline_on_exit: bool = False,
    ) -> None:
        if qos not in (0, 1, 2):
            raise ConfigError(f"qos must be 0, 1 or 2, got {qos}")
        if duration_s is not None and duration_s <= 0:
            raise ConfigError(f"duration_s must be positive, got {duration_s}")
        self.scenario = scenario
        self.host, self.port = parse_broker_url(broker_url)
        self.qos = qos
        self.truth_path = truth_path
        self.start_ms = start_ms
        self.duration_s = duration_s if duration_s is not None else scenario.duration_s
        self.profiles = dict(load_profiles() if profiles is None else profiles)
        check_against_profiles(scenario, self.profiles, f"scenario {scenario.name!r}")
        self.client_id = client_id or f"ewg-sim-{uuid.uuid4().hex[:8]}"
        self.offline_on_exit = offline_on_exit
        self._stop = threading.Event()
        self._build()  # incident timing vs. profile delays: fail now, not mid-run

    def request_stop(self) -> None:
        """Ask a running ``run()`` (without its own stop event) to finish early."""
        self._stop.set()

    def run_for(self, seconds: float, stop: threading.Event | None = None) -> SimulationReport:
        """Run only the first ``seconds`` of the scenario."""
        saved = self.duration_s
        self.duration_s = seconds
        try:
            return self.run(stop)
        finally:
            self.duration_s = saved

    def _build(self) -> tuple[dict[str, _SimDevice], list[Incident]]:
        """Fresh signal models and incidents for one run (so runs are repeatable)."""
        seed = self.scenario.seed
        signals = {
            d.id: DeviceSignals(self.profiles[d.profile], d.id, seed, d.baseline, d.metrics)
            for _, d in self.scenario.devices()
        }
        incidents = plan_incidents(self.scenario, self.profiles, signals)
        devices: dict[str, _SimDevice] = {}
        for _, spec in self.scenario.devices():
            mine = sorted(
                (inc for inc in incidents if spec.id in inc.devices),
                key=lambda inc: -inc.priority,
            )
            phase = float(device_rng(seed, spec.id, "phase").uniform(0, min(spec.interval_s, 1)))
            devices[spec.id] = _SimDevice(
                spec, signals[spec.id], FieldEncoder(self.profiles[spec.profile]), mine, phase
            )
        return devices, incidents

    def _connect(self) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id)
        client.max_inflight_messages_set(100)
        client.reconnect_delay_set(1, 10)
        connected = threading.Event()
        refused: list[str] = []

        def on_connect(
            c: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
        ) -> None:
            if reason.is_failure:
                refused.append(str(reason))
            else:
                log.info("simulator connected to %s:%s as %s", self.host, self.port, self.client_id)
            connected.set()

        def on_disconnect(
            c: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
        ) -> None:
            if reason.is_failure:
                log.warning("simulator lost the broker: %s (paho reconnects)", reason)

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        try:
            client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise BrokerError(f"cannot reach MQTT broker {self.host}:{self.port}: {exc}") from exc
        client.loop_start()
        if not connected.wait(CONNECT_TIMEOUT_S) or refused:
            client.loop_stop()
            client.disconnect()
            why = refused[0] if refused else f"no CONNACK within {CONNECT_TIMEOUT_S} s"
            raise BrokerError(f"MQTT broker {self.host}:{self.port} refused us: {why}")
        return client

    def run(self, stop: threading.Event | None = None) -> SimulationReport:
        """Publish the scenario in real time until its duration or ``stop``; blocks.

        Returns after every QoS 1/2 publish is acknowledged (or ``ACK_TIMEOUT_S`` passed) and
        the truth file, if any, is written.
        """
        stop = stop if stop is not None else self._stop
        client = self._connect()
        start_ms = self.start_ms if self.start_ms is not None else time.time_ns() // 1_000_000
        session = _MqttSession(client, self.qos, start_ms, SimulationReport())
        try:
            return self._run(session, stop, realtime=True)
        finally:
            client.disconnect()
            client.loop_stop()

    def replay(self, sink: Sink, start_ms: int | None = None) -> SimulationReport:
        """Run the whole scenario at once, without a broker or sleeping, into ``sink``.

        Same messages, timestamps and truth as a real-time run starting at ``start_ms``
        (default: the constructor's, else now): for deterministic tests, benchmarks, or
        feeding a gateway pipeline directly.
        """
        if start_ms is None:
            start_ms = self.start_ms if self.start_ms is not None else time.time_ns() // 1_000_000
        session = _SinkSession(sink, start_ms, SimulationReport())
        return self._run(session, threading.Event(), realtime=False)

    def _run(self, session: _Session, stop: threading.Event, realtime: bool) -> SimulationReport:
        devices, incidents = self._build()
        report = session.report
        report.started_ms = session.start_ms
        cut_s = self._loop(session, devices, incidents, stop, realtime)
        report.stopped_early = cut_s < self.duration_s
        for incident in incidents:
            if incident.begun:
                incident.end(session, cut_s)
        if self.offline_on_exit:
            for device_id in devices:
                session.publish_status(device_id, False)
        session.wait_acknowledged(ACK_TIMEOUT_S)
        report.ended_ms = session.ts_ms(cut_s)
        for incident in incidents:
            if incident.begun:
                report.truth.extend(incident.truth(session))
        if self.truth_path is not None:
            write_truth(self.truth_path, report.truth)
        log.info("simulation done: %s", dict(report.published))
        return report

    def _loop(
        self,
        session: _Session,
        devices: dict[str, _SimDevice],
        incidents: list[Incident],
        stop: threading.Event,
        realtime: bool,
    ) -> float:
        """The scheduler; returns the scenario offset at which it stopped."""
        # (due offset, order at equal times: incident actions before readings, seq, action)
        heap: list[tuple[float, int, int, Callable[[float], None]]] = []
        seq = itertools.count()

        def at(t_s: float, order: int, action: Callable[[float], None]) -> None:
            heapq.heappush(heap, (t_s, order, next(seq), action))

        for device_id in devices:
            session.publish_status(device_id, True)
        for incident in incidents:
            at(incident.start_s, 0, partial(self._begin, incident, session))
            at(incident.end_s, 0, partial(incident.end, session))
            for t_s, step in incident.timed_actions():
                at(t_s, 1, partial(step, session))
        for device in devices.values():
            at(device.phase_s, 2, self._ticker(device, session, at, 0))

        origin = session.start_ms / 1000
        while heap:
            due_s = heap[0][0]
            if due_s >= self.duration_s:
                break
            delay = origin + due_s - time.time() if realtime else 0.0
            if delay > 0:
                if stop.wait(min(delay, 1.0)):
                    return min(self.duration_s, max(0.0, time.time() - origin))
                continue
            if stop.is_set():
                return min(self.duration_s, max(0.0, time.time() - origin))
            _, _, _, job = heapq.heappop(heap)
            job(due_s)
        remaining = origin + self.duration_s - time.time() if realtime else 0.0
        if remaining > 0 and stop.wait(remaining):
            return min(self.duration_s, max(0.0, time.time() - origin))
        return self.duration_s

    @staticmethod
    def _begin(incident: Incident, session: _Session, t_s: float) -> None:
        log.info("incident %s on %s begins", incident.kind, incident.device_id)
        incident.begin(session, t_s)

    def _ticker(
        self,
        device: _SimDevice,
        session: _Session,
        at: Callable[[float, int, Callable[[float], None]], None],
        n: int,
    ) -> Callable[[float], None]:
        def tick(t_s: float) -> None:
            self._publish_reading(device, session, t_s)
            nxt = device.phase_s + (n + 1) * device.spec.interval_s
            at(nxt, 2, self._ticker(device, session, at, n + 1))

        return tick

    @staticmethod
    def _publish_reading(device: _SimDevice, session: _Session, t_s: float) -> None:
        ts_ms = session.ts_ms(t_s)
        values = device.signals.sample(ts_ms)
        active = [inc for inc in device.incidents if inc.active]
        if active:
            adjusted: dict[str, Value] = dict(values)
            for inc in active:
                inc.adjust(device.spec.id, t_s, adjusted)
            values = {m: device.signals.finish(m, float(v)) for m, v in adjusted.items()}
            for inc in active:
                inc.observe(device.spec.id, ts_ms, values)
        message = telemetry(ts_ms, device.encoder.encode(values))
        for inc in active:
            if inc.deliver(device.spec.id, message, session):
                return
        session.publish_telemetry(device.spec.id, message)


def simulate(
    broker_url: str,
    scenario_path: Path,
    truth_path: Path | None,
    duration_s: float | None,
    qos: int = 1,
) -> SimulationReport:
    """Load a scenario file and run it against a broker (what ``ewg simulate`` calls)."""
    profiles = load_profiles()
    scenario = load_scenario(scenario_path, profiles)
    sim = Simulator(scenario, broker_url, qos, truth_path, duration_s=duration_s, profiles=profiles)
    return sim.run()
