"""Alert latency under load: smoke alarm published -> ``raised`` alert on the SSE stream.

A fresh broker and gateway; background telemetry from ``bench.loadgen`` (its own
process) at a steady rate; then, one every ``interval_s``, a ``smoke_alarm`` event
from a different smoke alarm each time, published at QoS 1 with paho. The clock
starts just before ``publish()`` and stops when the SSE event carrying a
``raised`` alert for that device has been read (httpx + httpx_sse), both taken
with ``time.perf_counter()`` in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
import time
from dataclasses import dataclass, field

import httpx
import paho.mqtt.client as mqtt
from httpx_sse import aconnect_sse
from paho.mqtt.enums import CallbackAPIVersion

from bench.api import GatewayApi
from bench.servers import REPO, GatewayProcess, Workspace, stop_process
from bench.telemetry import PROFILE, SMOKE_PROFILE, device_ids
from gateway.model import now_ms


@dataclass(frozen=True, slots=True)
class LatencyConfig:
    alarms: int = 200
    interval_s: float = 0.05
    #: Background telemetry, messages/s (at ``load_qos``), spread over ``load_devices``.
    load_rate: float = 2_000.0
    load_devices: int = 20
    load_qos: int = 1
    warmup_s: float = 2.0
    #: How long to wait for the last alerts after the last alarm was published.
    timeout_s: float = 15.0


@dataclass(frozen=True, slots=True)
class LatencyResult:
    sent: int
    latencies_ms: list[float] = field(repr=False)
    load_target: float
    load_achieved: float
    load_qos: int

    @property
    def received(self) -> int:
        return len(self.latencies_ms)

    @property
    def lost(self) -> int:
        return self.sent - self.received

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) in ms; alarms whose alert never came count as infinite."""
        return quantile(self.latencies_ms + [math.inf] * self.lost, q)


def quantile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default, "inclusive").

    >>> quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5), quantile([10.0, 20.0], 0.9)
    (3.0, 19.0)
    >>> quantile([], 0.99) is None
    True
    """
    data = sorted(values)
    if not data:
        return None
    position = min(max(q, 0.0), 1.0) * (len(data) - 1)
    low = int(position)
    high = min(low + 1, len(data) - 1)
    if position == low or data[high] == data[low]:
        return data[low]
    if math.isinf(data[high]):
        return math.inf
    return data[low] + (data[high] - data[low]) * (position - low)


def run_latency(config: LatencyConfig) -> LatencyResult:
    with Workspace("latency") as ws:
        gateway = GatewayProcess(ws).start()
        monitors = device_ids(config.load_devices, "efm")
        alarms = device_ids(config.alarms, "smk")
        with GatewayApi(gateway.base_url, gateway.token) as api:
            api.register(monitors, PROFILE, prefix="load-site")
            api.register(alarms, SMOKE_PROFILE, sites=10, prefix="smoke-site")
            load = ws.spawn([sys.executable, "-m", "bench.loadgen", "--port", str(ws.broker.port),
                             "--rate", str(config.load_rate), "--qos", str(config.load_qos),
                             *monitors], cwd=REPO)
            time.sleep(config.warmup_s)
            if load.poll() is not None:
                raise RuntimeError(f"bench.loadgen exited with {load.returncode}")
            before, t_before = api.health(), time.monotonic()
            try:
                latencies = asyncio.run(_measure(gateway, ws.broker.port, alarms, config))
            except Exception as exc:
                raise RuntimeError(f"{exc}\n--- gateway log ---\n{gateway.log_tail()}") from exc
            after, t_after = api.health(), time.monotonic()
            stop_process(load, group=True)
        gateway.stop()
    background = after.messages_in - before.messages_in - config.alarms
    return LatencyResult(
        sent=len(alarms),
        latencies_ms=[latencies[a] * 1000 for a in alarms if a in latencies],
        load_target=config.load_rate,
        load_achieved=max(0, background) / (t_after - t_before),
        load_qos=config.load_qos,
    )


async def _measure(gateway: GatewayProcess, port: int, alarms: list[str],
                   config: LatencyConfig) -> dict[str, float]:
    """Publish one alarm per device; return device -> seconds until its alert arrived."""
    sent: dict[str, float] = {}
    got: dict[str, float] = {}
    ready, complete = asyncio.Event(), asyncio.Event()

    async def listen() -> None:
        url = f"{gateway.base_url}/api/alerts/stream"
        headers = {"Authorization": f"Bearer {gateway.token}"}
        async with (httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None)) as client,
                    aconnect_sse(client, "GET", url, headers=headers) as source):
            async for sse in source.aiter_sse():
                arrived = time.perf_counter()
                if sse.event == "ready":
                    ready.set()
                elif sse.event == "alert":
                    body = json.loads(sse.data)
                    device = body["alert"]["device_id"]
                    if body["kind"] == "raised" and device in sent and device not in got:
                        got[device] = arrived - sent[device]
                        if len(got) == len(alarms):
                            complete.set()

    listener = asyncio.create_task(listen(), name="sse")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"ewg-bench-alarms-{port}")
    try:
        await asyncio.wait_for(ready.wait(), 10)
        client.connect("127.0.0.1", port)
        client.loop_start()
        for _ in range(200):
            if client.is_connected():
                break
            await asyncio.sleep(0.025)
        else:
            raise TimeoutError("paho did not connect to the broker in 5 s")
        for device in alarms:
            payload = json.dumps({"ts": now_ms(), "type": "smoke_alarm", "detail": {}})
            sent[device] = time.perf_counter()
            client.publish(f"ewg/v1/{device}/event", payload, qos=1)
            await asyncio.sleep(config.interval_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(complete.wait(), config.timeout_s)
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await listener
        client.disconnect()
        client.loop_stop()
    return got
