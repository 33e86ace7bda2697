"""Ingest throughput: the gateway against a raw ``mosquitto_sub`` on the same stream.

One workspace (broker + temp dir) per QoS, two passes over the same pre-generated feeds:

1. **raw**: only ``mosquitto_sub`` is subscribed; its rate is messages over the time
   from the first to the last message it received (``-F %U`` timestamps).
2. **gateway**: ``ewg serve`` (started only after the raw pass, so it never sees
   that stream) with the devices registered through its API; its rate is messages
   over the time from the first publish to the flush that stored the last reading
   (``counters.last_flush_ms``).

The passes run one after the other rather than concurrently, so neither competes
with the other for the broker or the CPU. At QoS 0 the broker may drop messages
under overload: each pass then stops once nothing has arrived for ``stall_s`` and
reports what arrived.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path

from bench.api import GatewayApi, Health
from bench.publish import Publishers, publish_once
from bench.servers import MOSQUITTO_SUB, GatewayProcess, Workspace
from bench.telemetry import PROFILE, Feed, device_ids, write_feeds
from gateway.model import now_ms

RAW_TOPIC = "ewg/v1/+/telemetry"
SUB_PROBE = "bench/probe"
#: An unregistered device: the gateway dead-letters it, which shows it is subscribed.
GATEWAY_PROBE = "ewg/v1/bench-probe/telemetry"


@dataclass(frozen=True, slots=True)
class IngestConfig:
    messages: int = 100_000
    qos: int = 1
    devices: int = 50
    #: A pass ends this long after the last progress once the publishers are done.
    stall_s: float = 8.0
    poll_s: float = 0.1

    @property
    def timeout_s(self) -> float:
        """Hard limit of one pass: generous (>= 500 msg/s), stalls end it much sooner."""
        return 60.0 + self.messages / 500


@dataclass(frozen=True, slots=True)
class RawPass:
    published: int
    received: int
    #: From the first to the last message mosquitto_sub received.
    seconds: float
    #: From the first publish to the last message received (includes starting publishers).
    since_publish_s: float
    publish_seconds: float | None

    @property
    def rate(self) -> float:
        return (self.received - 1) / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class GatewayPass:
    published: int
    messages_in: int
    readings_expected: int
    readings_stored: int
    readings_duplicate: int
    dead_letters: int
    signals: int
    seconds: float
    publish_seconds: float | None

    @property
    def complete(self) -> bool:
        return self.readings_stored == self.readings_expected

    @property
    def rate(self) -> float:
        return self.messages_in / self.seconds if self.seconds > 0 else 0.0

    @property
    def readings_rate(self) -> float:
        return self.readings_stored / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class IngestResult:
    qos: int
    devices: int
    raw: RawPass
    gateway: GatewayPass

    @property
    def ratio(self) -> float:
        return self.gateway.rate / self.raw.rate if self.raw.rate > 0 else 0.0


def run_ingest(config: IngestConfig) -> IngestResult:
    with Workspace(f"ingest-q{config.qos}") as ws:
        feeds = write_feeds(ws.path("feeds"), device_ids(config.devices), config.messages,
                            end_ms=now_ms())
        raw = raw_pass(ws, feeds, config)
        gateway = gateway_pass(ws, feeds, config)
    return IngestResult(config.qos, len(feeds), raw, gateway)


# -- raw ------------------------------------------------------------------------------------

class SubOutput:
    """Follows the file ``mosquitto_sub -F '%U %t'`` writes: counts, last receive time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self.probes = 0
        self.first_s = 0.0
        self.last_s = 0.0
        self._offset = 0
        self._rest = b""

    def update(self) -> int:
        with self.path.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        self._offset += len(chunk)
        lines = (self._rest + chunk).split(b"\n")
        self._rest = lines.pop()
        for raw in lines:
            stamp, _, topic = raw.partition(b" ")
            if topic == SUB_PROBE.encode():
                self.probes += 1
            else:
                self.count += 1
                self.last_s = float(stamp)
                if self.count == 1:
                    self.first_s = self.last_s
        return self.count


def raw_pass(ws: Workspace, feeds: list[Feed], config: IngestConfig) -> RawPass:
    out_path = ws.directory / f"mosquitto_sub-q{config.qos}.txt"
    out = ws.open(out_path, "wb")
    sub = ws.spawn([MOSQUITTO_SUB, "-h", "127.0.0.1", "-p", str(ws.broker.port),
                    "-q", str(config.qos), "-F", "%U %t", "-t", RAW_TOPIC, "-t", SUB_PROBE],
                   stdout=out)
    seen = SubOutput(out_path)
    deadline = time.monotonic() + 10
    while seen.update() == 0 and seen.probes == 0:
        if time.monotonic() > deadline or sub.poll() is not None:
            raise RuntimeError("mosquitto_sub did not subscribe within 10 s")
        publish_once(ws.broker.port, SUB_PROBE, "ready")
        time.sleep(0.1)

    publishers = Publishers(ws, feeds, config.qos).start()
    expected = publishers.messages
    _follow(lambda: (seen.update() >= expected, seen.count), publishers, config)
    publishers.wait()
    sub.terminate()
    sub.wait(10)
    seen.update()
    since_publish = seen.last_s - publishers.started if seen.count else 0.0
    return RawPass(expected, seen.count, seen.last_s - seen.first_s, since_publish,
                   publishers.seconds)


def _follow(poll: Callable[[], tuple[bool, Hashable]], publishers: Publishers,
            config: IngestConfig) -> None:
    """Call ``poll()`` -> (done, progress) until done, stalled or out of time.

    A stall is ``progress`` unchanged for ``stall_s`` once every publisher exited.
    """
    start = time.monotonic()
    last: Hashable = None
    last_change = start
    while True:
        done, progress = poll()
        now = time.monotonic()
        if done:
            return
        if progress != last:
            last, last_change = progress, now
        if publishers.done() and now - last_change > config.stall_s:
            return
        if now - start > config.timeout_s:
            return
        time.sleep(config.poll_s)


# -- gateway --------------------------------------------------------------------------------

def gateway_pass(ws: Workspace, feeds: list[Feed], config: IngestConfig) -> GatewayPass:
    gateway = GatewayProcess(ws).start()
    try:
        with GatewayApi(gateway.base_url, gateway.token) as api:
            api.register([f.device_id for f in feeds], PROFILE)
            base = _wait_subscribed(api, ws.broker.port)
            publishers = Publishers(ws, feeds, config.qos).start()
            expected_readings = sum(f.readings for f in feeds)

            def poll() -> tuple[bool, Hashable]:
                h = api.health()
                done = h.readings_stored - base.readings_stored >= expected_readings
                return done, (h.messages_in, h.readings_stored)

            _follow(poll, publishers, config)
            end = api.health()
    except Exception as exc:
        raise RuntimeError(f"{exc}\n--- gateway log ---\n{gateway.log_tail()}") from exc
    finally:
        gateway.stop()
    last_flush_s = (end.last_flush_ms or 0) / 1000
    return GatewayPass(
        published=publishers.messages,
        messages_in=end.messages_in - base.messages_in,
        readings_expected=expected_readings,
        readings_stored=end.readings_stored - base.readings_stored,
        readings_duplicate=end.readings_duplicate - base.readings_duplicate,
        dead_letters=end.dead_letters - base.dead_letters,
        signals=end.signals - base.signals,
        seconds=max(0.0, last_flush_s - publishers.started),
        publish_seconds=publishers.seconds,
    )


def _wait_subscribed(api: GatewayApi, port: int, timeout_s: float = 10.0) -> Health:
    """Publish probes until the gateway counts one; return the health after it settled."""
    deadline = time.monotonic() + timeout_s
    while api.health().messages_in == 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gateway counted no probe message in {timeout_s}s")
        publish_once(port, GATEWAY_PROBE, '{"ts": null, "values": {"x": 0}}')
        time.sleep(0.1)
    time.sleep(0.2)  # let the probes' flush happen, so the baseline is stable
    return api.health()


