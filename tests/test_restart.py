"""A gateway restart in the middle of a QoS 1 stream loses nothing and stores nothing twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import httpx

from gateway.config import Settings
from gateway.stores.sqlite import SqliteStore
from simulator.runner import Simulator
from simulator.scenario import load_scenario, registrations
from tests.conftest import TOKEN, eventually, run_gateway
from tests.servers import Mosquitto, free_port, wait_for_port
from tests.test_end_to_end import SCENARIOS, register_scenario

STREAM = SCENARIOS / "stream.yaml"


async def stored(data_dir: Path) -> int:
    store = await SqliteStore(data_dir / "readings.db").open()
    try:
        return await store.count()
    finally:
        await store.close()


async def test_graceful_restart_mid_stream_loses_nothing(settings: Settings) -> None:
    # A long flush interval: the last batch is large when the stop comes, so its acks must
    # reach the broker before the disconnect, or it all comes back as duplicates.
    settings = settings.model_copy(update={"flush_interval_s": 2.0})
    scenario = load_scenario(STREAM)
    sim = Simulator(scenario, settings.broker_url or "", qos=1)
    async with run_gateway(settings) as live:
        await register_scenario(live.gateway, scenario)
        running = asyncio.create_task(asyncio.to_thread(sim.run))
        await asyncio.sleep(scenario.duration_s / 3)
    # The gateway is down now; the broker queues the stream for its persistent session.
    await asyncio.sleep(1.5)
    async with run_gateway(settings) as live:
        report = await running
        assert report.failed == 0 and report.unacknowledged == 0

        async def all_stored() -> bool:
            return await live.gateway.store.count() >= report.valid_readings

        async with asyncio.timeout(20):
            while not await all_stored():
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # nothing more trickles in afterwards
        assert await live.gateway.store.count() == report.valid_readings
        assert live.gateway.source.connects == 1
        # The first gateway acknowledged its last batch before it disconnected: nothing it
        # had stored came back from the broker a second time.
        assert live.gateway.counters.readings_duplicate == 0
    assert await stored(settings.data_dir) == report.valid_readings


def test_sigkill_mid_stream_loses_nothing(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """``kill -9`` between receipt and commit: unacknowledged messages come back."""
    data_dir = tmp_path / "data"
    http_port = free_port()
    # A long flush interval keeps received messages in the unflushed batch when the kill
    # lands: only acknowledging after the commit brings them back.
    env = {
        **os.environ,
        "EWG_API_TOKEN": TOKEN,
        "EWG_MQTT_CLIENT_ID": "ewg-kill-test",
        "EWG_FLUSH_INTERVAL_S": "2.0",
    }
    command = [
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--broker",
        mosquitto.url,
        "--data-dir",
        str(data_dir),
        "--http",
        f"127.0.0.1:{http_port}",
    ]

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(http_port, 20)
        return proc

    scenario = load_scenario(STREAM)
    gateway = start()
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{http_port}",
        timeout=10,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    sites, devices = _registrations()
    for site in sites:
        assert client.post("/api/sites", json=site).status_code == 201
    for device in devices:
        assert client.post("/api/devices", json=device).status_code == 201
    _wait_connected(client)

    result: dict[str, object] = {}
    sim = Simulator(scenario, mosquitto.url, qos=1)
    thread = threading.Thread(target=lambda: result.setdefault("report", sim.run()))
    thread.start()
    time.sleep(scenario.duration_s / 3)
    gateway.send_signal(signal.SIGKILL)
    gateway.wait()
    time.sleep(1.0)
    gateway = start()
    try:
        thread.join(scenario.duration_s * 3)
        report = result["report"]
        expected = report.valid_readings  # type: ignore[attr-defined]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and asyncio.run(stored(data_dir)) < expected:
            time.sleep(0.2)
        time.sleep(0.5)  # nothing more trickles in afterwards
        assert asyncio.run(stored(data_dir)) == expected
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(20)
        client.close()


def _registrations() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    sites, devices = registrations(load_scenario(STREAM))
    return [asdict(s) for s in sites], [asdict(d) for d in devices]


def _wait_connected(client: httpx.Client) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if client.get("/api/health").json()["broker"]["connected"]:
            time.sleep(0.3)
            return
        time.sleep(0.05)
    raise TimeoutError("gateway did not connect to the broker")


async def test_broker_restart_mid_stream_loses_nothing(
    settings: Settings, mosquitto: Mosquitto
) -> None:
    """The broker goes away for a moment: the gateway reconnects by itself and resumes."""
    scenario = load_scenario(STREAM)
    sim = Simulator(scenario, mosquitto.url, qos=1)
    async with run_gateway(settings) as live:
        await register_scenario(live.gateway, scenario)
        running = asyncio.create_task(asyncio.to_thread(sim.run))
        await asyncio.sleep(scenario.duration_s / 3)
        await asyncio.to_thread(mosquitto.stop)
        await asyncio.sleep(1.0)
        assert live.gateway.health()["status"] == "degraded"
        await asyncio.to_thread(mosquitto.start)
        report = await running
        assert report.valid_readings > 0

        async def all_stored() -> bool:
            return await live.gateway.store.count() >= report.valid_readings

        await eventually(all_stored, timeout_s=30)
        await asyncio.sleep(0.5)  # nothing more trickles in afterwards
        assert await live.gateway.store.count() == report.valid_readings
        assert live.gateway.source.connects == 2
        assert live.gateway.health()["status"] == "ok"
