"""Store-and-forward: a time-series store outage loses no accepted reading.

Real VictoriaMetrics, real Mosquitto, the simulator's QoS 1 stream. The outage
lasts ``OUTAGE_S`` seconds: 10 by default to keep the suite short; the issue's
60 s scenario is ``EWG_TEST_OUTAGE_S=60 pytest tests/test_store_outage.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway import deadletter
from gateway.config import Settings
from gateway.deadletter import DeadLetterStore
from gateway.metrics import Counters
from gateway.model import InboundMessage, Reading, now_ms
from gateway.persist import Persist, PersistOptions
from gateway.pipeline import Delivery
from gateway.spool import Spool, encode_batch
from gateway.sqlite import SqliteDatabase
from gateway.stores.influx import InfluxStore
from simulator.runner import Simulator
from simulator.scenario import load_scenario
from tests.conftest import TOKEN, eventually, run_gateway
from tests.servers import Mosquitto, VictoriaMetrics, free_port, wait_for_port
from tests.test_end_to_end import register_scenario
from tests.test_restart import STREAM, _registrations, _wait_connected
from tests.test_store_influx import stored

#: How long the store stays down under load (seconds).
OUTAGE_S = float(os.environ.get("EWG_TEST_OUTAGE_S", "10"))


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    vm = VictoriaMetrics(tmp_path / "victoria-metrics").start()
    yield vm
    vm.stop()


def on_influx(settings: Settings, vm: VictoriaMetrics) -> Settings:
    return settings.model_copy(
        update={
            "store": "influx",
            "influx_url": vm.url,
            "influx_timeout_s": 3.0,
            "store_write_timeout_s": 3.0,
            "store_retry_max_s": 0.5,
        }
    )


async def test_outage_under_load_is_spooled_then_replayed_exactly_once(
    settings: Settings, victoria: VictoriaMetrics
) -> None:
    settings = on_influx(settings, victoria)
    scenario = load_scenario(STREAM)
    loop = asyncio.get_running_loop()
    async with run_gateway(settings) as live:
        gateway = live.gateway
        await register_scenario(gateway, scenario)
        sim = Simulator(scenario, settings.broker_url or "", qos=1)
        running = asyncio.create_task(asyncio.to_thread(sim.run))

        async def some_stored() -> bool:
            return gateway.counters.readings_stored > 0

        await eventually(some_stored)
        await asyncio.to_thread(victoria.stop)
        down_since = loop.time()
        taken_when_down = gateway.counters.messages_in

        async def spooling() -> dict[str, Any] | None:
            health = (await live.client.get("/api/health")).json()
            return health if health["store"]["spool"]["readings"] > 0 else None

        health = await eventually(spooling)
        assert health["status"] == "degraded"
        assert health["store"]["ok"] is False
        assert any(p.startswith("store: unreachable") for p in health["degraded"])

        await asyncio.sleep(max(0.0, OUTAGE_S - (loop.time() - down_since)))
        health = (await live.client.get("/api/health")).json()
        spool = health["store"]["spool"]
        # Ingestion (and with it alerting) went on: messages were taken and acknowledged.
        assert health["counters"]["messages_in"] > taken_when_down
        assert spool["readings"] == spool["spooled_readings"] > 0
        assert spool["batches"] == spool["spooled_batches"] > 0
        assert spool["bytes"] > 0 and spool["oldest_age_s"] > 0 and spool["full"] is False
        assert spool["replayed_readings"] == 0
        metrics = (await live.client.get("/metrics")).text  # the backlog reaches Prometheus too
        assert f"ewg_spool_backlog_readings {float(spool['readings'])}" in metrics
        assert "ewg_store_ok 0.0" in metrics

        await asyncio.to_thread(victoria.start)  # same port, same data directory
        report = await running
        assert report.failed == 0 and report.unacknowledged == 0
        store = gateway.store
        assert isinstance(store, InfluxStore)
        await stored(store, victoria, report.valid_readings)

        async def drained() -> dict[str, Any] | None:
            health = (await live.client.get("/api/health")).json()
            return health if health["store"]["spool"]["batches"] == 0 else None

        health = await eventually(drained)
        await asyncio.sleep(0.5)  # nothing more trickles in afterwards
        await asyncio.to_thread(victoria.flush)
        assert await store.count() == report.valid_readings
        spool = health["store"]["spool"]
        assert spool["replayed_readings"] == spool["spooled_readings"]
        assert spool["readings"] == 0 and spool["bytes"] == 0 and spool["oldest_age_s"] is None
        assert spool["full_events"] == 0
        metrics = (await live.client.get("/metrics")).text
        assert f"ewg_spool_replayed_readings_total {float(spool['replayed_readings'])}" in metrics
        assert "ewg_spool_backlog_readings 0.0" in metrics
        health = (await live.client.get("/api/health")).json()
        assert health["status"] == "ok" and health["store"]["ok"] is True


def test_gateway_killed_with_a_spool_backlog_replays_it_after_restart(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    """``kill -9`` while acknowledged readings wait in the spool: the restart delivers them."""
    data_dir = tmp_path / "data"
    http_port = free_port()
    env = {
        **os.environ,
        "EWG_API_TOKEN": TOKEN,
        "EWG_MQTT_CLIENT_ID": "ewg-spool-kill-test",
        "EWG_STORE": "influx",
        "EWG_INFLUX_URL": victoria.url,
        "EWG_INFLUX_TIMEOUT_S": "3",
        "EWG_STORE_RETRY_MAX_S": "0.5",
    }
    command = [
        *(sys.executable, "-m", "gateway", "serve", "--broker", mosquitto.url),
        *("--data-dir", str(data_dir), "--http", f"127.0.0.1:{http_port}"),
    ]

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(http_port, 20)
        return proc

    gateway = start()
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{http_port}",
        timeout=10,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    try:
        sites, devices = _registrations()
        for site in sites:
            assert client.post("/api/sites", json=site).status_code == 201
        for device in devices:
            assert client.post("/api/devices", json=device).status_code == 201
        _wait_connected(client)

        victoria.stop()
        result: dict[str, Any] = {}
        sim = Simulator(load_scenario(STREAM), mosquitto.url, qos=1)
        thread = threading.Thread(target=lambda: result.setdefault("report", sim.run()))
        thread.start()
        wait_until(lambda: client.get("/api/health").json()["store"]["spool"]["readings"] >= 200)
        gateway.send_signal(signal.SIGKILL)
        gateway.wait()

        # What the killed gateway acknowledged but could not store is on disk, and only there.
        left = asyncio.run(spooled_readings(data_dir / "spool.db"))
        assert left >= 200

        # The gateway comes back while the store is still down: it starts all the same,
        # and the backlog of the killed run is in its health.
        gateway = start()
        _wait_connected(client)
        health = client.get("/api/health").json()
        assert health["status"] == "degraded"
        assert health["store"]["spool"]["readings"] >= left
        assert health["store"]["spool"]["replayed_readings"] == 0

        victoria.start()
        thread.join(60)
        expected = result["report"].valid_readings

        def drained() -> bool:
            return bool(client.get("/api/health").json()["store"]["spool"]["batches"] == 0)

        wait_until(drained)
        assert asyncio.run(count_when(victoria, expected)) == expected
        time.sleep(0.5)  # nothing more trickles in afterwards
        assert asyncio.run(count_when(victoria, expected)) == expected
        spool = client.get("/api/health").json()["store"]["spool"]
        assert spool["replayed_readings"] == left + spool["spooled_readings"]
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(20)
        client.close()


def wait_until(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.1)


async def spooled_readings(path: Path) -> int:
    spool = await Spool(path, max_bytes=1).open()
    try:
        return spool.readings
    finally:
        await spool.close()


async def count_when(vm: VictoriaMetrics, expected: int) -> int:
    store = await InfluxStore(vm.url).open()
    try:
        return await stored(store, vm, expected)
    finally:
        await store.close()


# -- the persist stage on its own: full spool and slow store --


#: Ten minutes ago, fixed, so a batch encodes to the same size every time it is built.
T0 = now_ms() - 600_000


def delivery(n: int, acked: list[int], size: int = 20) -> Delivery:
    base = T0 + n * 1_000
    message = InboundMessage(f"ewg/v1/dev-{n}/telemetry", b"{}", 1, False, base)
    d = Delivery(message, lambda: acked.append(n))
    d.readings = [Reading(f"dev-{n % 2}", "gas_lel_pct", base + i, float(i)) for i in range(size)]
    return d


@contextlib.asynccontextmanager
async def persist_on(store: InfluxStore, tmp_path: Path, **options: Any) -> AsyncIterator[Persist]:
    async with SqliteDatabase(tmp_path / "ewg.db", deadletter.SCHEMA) as db:
        persist = Persist(
            store,
            DeadLetterStore(db),
            Counters(),
            # Batches are flushed by the test itself, one delivery each.
            PersistOptions(flush_interval_s=3600, spool_path=tmp_path / "spool.db", **options),
        )
        await persist.start()
        try:
            yield persist
        finally:
            await persist.stop()


async def test_full_spool_stops_acknowledging_until_the_store_is_back(tmp_path: Path) -> None:
    vm = VictoriaMetrics(tmp_path / "vm")  # its port is chosen, but nothing listens yet
    store = await InfluxStore(vm.url, timeout_s=3).open()
    acked: list[int] = []
    sizes = [len(encode_batch(delivery(n, []).readings, [])) for n in range(4)]
    try:
        async with persist_on(
            store, tmp_path, max_backoff_s=0.2, spool_max_bytes=sum(sizes) - 1
        ) as persist:
            for n in range(3):
                await persist(delivery(n, acked))
                await persist.flush()
            assert acked == [0, 1, 2]  # durable in the spool, so acknowledged
            assert persist.spool is not None and persist.spool.batches == 3
            assert persist.store_ok is False and persist.spool_full is False

            # Batch 3 does not fit: it is held, unacknowledged (the broker keeps it).
            await persist(delivery(3, acked))
            held = asyncio.create_task(persist.flush())

            async def full() -> bool:
                return persist.spool_full

            await eventually(full)
            assert acked == [0, 1, 2]
            assert persist.spool_counters.full_events == 1
            assert any(p.startswith("spool full") for p in persist.problems())
            # Deliveries are still taken meanwhile (until max_pending applies back-pressure).
            await persist(delivery(4, acked))
            assert persist.pending == 20

            await asyncio.to_thread(vm.start)
            async with asyncio.timeout(20):
                await held
            assert acked == [0, 1, 2, 3]

            async def empty() -> bool:
                return persist.spool is not None and persist.spool.empty

            await eventually(empty)
            await persist.flush()  # no backlog left: batch 4 goes straight to the store
            assert acked == [0, 1, 2, 3, 4]
            assert await stored(store, vm, 100) == 100
            assert persist.spool_counters.full_events == 1
            # The three spooled batches were replayed in one write; the held batch then found
            # no backlog ahead of it and went straight to the store, as did batch 4.
            assert persist.spool_counters.replayed_readings == 60
            assert persist.counters.readings_stored == 100
            assert persist.spool_full is False and persist.problems() == []
    finally:
        await store.close()
        vm.stop()


async def test_a_store_that_does_not_answer_in_time_is_spooled(tmp_path: Path) -> None:
    """A store that accepts the connection and then says nothing, like a hung server."""
    hung: list[asyncio.StreamWriter] = []

    async def swallow(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hung.append(writer)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = await InfluxStore(f"http://127.0.0.1:{port}", timeout_s=30).open()
    acked: list[int] = []
    try:
        async with persist_on(store, tmp_path, write_timeout_s=0.2) as persist:
            await persist(delivery(0, acked))
            await persist.flush()
            assert acked == [0]
            assert persist.spool is not None and persist.spool.readings == 20
            assert persist.counters.last_store_error == "TimeoutError: no answer in time"
            assert persist.counters.readings_stored == 0
    finally:
        await store.close()
        for writer in hung:
            writer.close()
        server.close()
        await server.wait_closed()
