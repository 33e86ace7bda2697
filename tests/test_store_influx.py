"""The influx store against a real VictoriaMetrics: writes over /api/v2/write, reads back.

Every test starts its own VictoriaMetrics (free loopback port, temp data directory)
the way operators are told to run it, with ``-dedup.minScrapeInterval=1ms``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.config import Settings
from gateway.model import DeviceEvent, Reading, now_ms
from gateway.stores.influx import InfluxStore, selector
from simulator.scenario import load_scenario
from tests.conftest import eventually, run_gateway
from tests.servers import VictoriaMetrics
from tests.test_end_to_end import SCENARIOS, register_scenario, simulate

#: An hour ago: old enough that no query adjusts "recent" points, well inside retention.
BASE = (now_ms() // 60_000 - 60) * 60_000


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    vm = VictoriaMetrics(tmp_path / "victoria-metrics").start()
    yield vm
    vm.stop()


@pytest.fixture
async def influx(victoria: VictoriaMetrics) -> AsyncIterator[InfluxStore]:
    store = await InfluxStore(victoria.url, timeout_s=10).open()
    yield store
    await store.close()


async def stored(store: InfluxStore, vm: VictoriaMetrics, expected: int) -> int:
    """``store.count()`` once it reaches ``expected`` (samples turn searchable within ~1 s)."""

    async def reached() -> int | None:
        await asyncio.to_thread(vm.flush)
        n = await store.count()
        return n if n >= expected else None

    return await eventually(reached, timeout_s=15)


def sample_batch() -> tuple[list[Reading], list[DeviceEvent]]:
    readings = [
        Reading("st1-gas", "gas_lel_pct", BASE + 1_000, 3.5),
        Reading("st1-gas", "temperature_c", BASE + 1_000, 21.25),
        Reading("st1-gas", "gas_lel_pct", BASE + 2_000, 4.0),
        # No timestamp from the device: the gateway stamped it (a series of its own in VM).
        Reading("st1-gas", "gas_lel_pct", BASE + 2_500, 7.75, ts_assumed=True),
        Reading("st1-gas", "temperature_c", BASE + 3_000, 21.5),
        Reading("st2 烟感", "smoke_obscuration_pct", BASE + 1_000, 0.0),
    ]
    events = [
        DeviceEvent("st1-gas", "tamper", BASE + 1_500, {"opened": True}),
        DeviceEvent("st1-gas", "battery_low", BASE + 2_000, {}, ts_assumed=True),
        DeviceEvent("st2 烟感", "smoke_alarm", BASE + 1_000, {"zone": 1}),
    ]
    return readings, events


async def test_round_trip_write_query_latest_events_count(
    influx: InfluxStore, victoria: VictoriaMetrics
) -> None:
    readings, events = sample_batch()
    assert await influx.write(readings, events) == len(readings)
    assert await stored(influx, victoria, len(readings)) == len(readings)

    gas = await influx.query("st1-gas", "gas_lel_pct", BASE, BASE + 10_000)
    assert gas == [readings[0], readings[2], readings[3]]
    assert await influx.query("st1-gas", "gas_lel_pct", BASE + 1_500, BASE + 2_000) == [readings[2]]
    assert await influx.query("st1-gas", "gas_lel_pct", BASE, BASE + 10_000, limit=2) == gas[:2]
    # Device ids are label values: anything goes, spaces and Chinese included.
    assert await influx.query("st2 烟感", "smoke_obscuration_pct", BASE, BASE + 10_000) == [
        readings[5]
    ]
    assert await influx.query("st1-gas", "no_such_metric", BASE, BASE + 10_000) == []

    assert await influx.latest("st1-gas") == {
        "gas_lel_pct": readings[3],
        "temperature_c": readings[4],
    }
    assert await influx.latest("nobody") == {}

    # Detail is not kept by VictoriaMetrics (documented): events come back with {}.
    assert await influx.events("st1-gas", BASE, BASE + 10_000) == [
        DeviceEvent("st1-gas", "tamper", BASE + 1_500, {}),
        DeviceEvent("st1-gas", "battery_low", BASE + 2_000, {}, ts_assumed=True),
    ]
    assert await influx.events("st1-gas", BASE + 1_600, BASE + 10_000) == [
        DeviceEvent("st1-gas", "battery_low", BASE + 2_000, {}, ts_assumed=True)
    ]
    assert await influx.events("st2 烟感", BASE, BASE + 10_000) == [
        DeviceEvent("st2 烟感", "smoke_alarm", BASE + 1_000, {})
    ]


async def test_the_same_batch_written_twice_is_stored_once(
    influx: InfluxStore, victoria: VictoriaMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    readings, events = sample_batch()
    with caplog.at_level(logging.WARNING, logger="gateway.stores.influx"):
        assert await influx.write(readings, events) == len(readings)
    assert "dedup" not in caplog.text  # the server is set up right: no warning
    # A redelivery or a spool replay: the server cannot say it was a duplicate...
    assert await influx.write(readings, events) == len(readings)
    await stored(influx, victoria, len(readings))
    # ...but it keeps one sample per series and timestamp.
    assert await influx.count() == len(readings)
    series = await influx.export(selector(name_regex="ewg_.+"), BASE, BASE + 10_000)
    for s in series:
        assert len(s.timestamps) == len(set(s.timestamps)), s.labels
    assert sum(len(s.timestamps) for s in series) == len(readings) + len(events)
    assert len(await influx.events("st1-gas", BASE, BASE + 10_000)) == 2


async def test_without_dedup_flag_duplicates_are_kept_and_the_store_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Why operators must set ``-dedup.minScrapeInterval``: this is what happens without it."""
    vm = VictoriaMetrics(tmp_path / "vm-no-dedup", flags=()).start()
    store = await InfluxStore(vm.url).open()
    try:
        readings, events = sample_batch()
        with caplog.at_level(logging.WARNING, logger="gateway.stores.influx"):
            await store.write(readings, events)
        assert "-dedup.minScrapeInterval" in caplog.text
        await store.write(readings, events)
        assert await stored(store, vm, 2 * len(readings)) == 2 * len(readings)
    finally:
        await store.close()
        vm.stop()


async def test_query_range_downsamples_exactly(
    influx: InfluxStore, victoria: VictoriaMetrics
) -> None:
    # One reading a second for a minute: 0, 1, ... 59; the last five stamped by the gateway.
    readings = [
        Reading("d1", "gas_lel_pct", BASE + i * 1_000, float(i), ts_assumed=i >= 55)
        for i in range(60)
    ]
    await influx.write(readings, [])
    await stored(influx, victoria, 60)

    start, step = BASE + 10_000, 10_000
    points = [start + k * step for k in range(6)]
    # Each point covers the step before it, (t - step, t]: readings t-9 s .. t.
    window = [[r for r in readings if t - step < r.ts_ms <= t] for t in points]
    maxima = await influx.query_range("d1", "gas_lel_pct", start, points[-1], step)
    assert maxima == [(t, max(r.value for r in w)) for t, w in zip(points, window, strict=True)]
    counts = await influx.query_range("d1", "gas_lel_pct", start, points[-1], step, "count")
    assert counts == [(t, 10.0) for t in points[:-1]] + [(points[-1], 9.0)]
    minima = await influx.query_range("d1", "gas_lel_pct", start, points[-1], step, "min")
    assert minima == [(t, min(r.value for r in w)) for t, w in zip(points, window, strict=True)]
    # Steps without readings are left out rather than invented.
    late = await influx.query_range("d1", "gas_lel_pct", BASE + 50_000, BASE + 120_000, step)
    assert late == [(BASE + 50_000, 50.0), (BASE + 60_000, 59.0)]


async def test_export_returns_every_raw_series_with_its_labels(
    influx: InfluxStore, victoria: VictoriaMetrics
) -> None:
    readings, events = sample_batch()
    await influx.write(readings, events)
    await stored(influx, victoria, len(readings))
    gas = await influx.export(selector("ewg_gas_lel_pct", device_id="st1-gas"), BASE, BASE + 10_000)
    by_labels = {tuple(sorted(s.labels.items())): (s.timestamps, s.values) for s in gas}
    assert by_labels == {
        (("__name__", "ewg_gas_lel_pct"), ("device_id", "st1-gas")): (
            [BASE + 1_000, BASE + 2_000],
            [3.5, 4.0],
        ),
        (("__name__", "ewg_gas_lel_pct"), ("device_id", "st1-gas"), ("ts_assumed", "1")): (
            [BASE + 2_500],
            [7.75],
        ),
    }
    smoke = await influx.export(selector("ewg_event_value", type="smoke_alarm"), BASE, BASE + 5_000)
    assert [(s.labels["device_id"], s.timestamps, s.values) for s in smoke] == [
        ("st2 烟感", [BASE + 1_000], [1.0])
    ]


async def test_gateway_on_influx_stores_the_simulated_stream_exactly(
    settings: Settings, victoria: VictoriaMetrics
) -> None:
    settings = settings.model_copy(update={"store": "influx", "influx_url": victoria.url})
    async with run_gateway(settings) as live:
        scenario = load_scenario(SCENARIOS / "stream.yaml")
        await register_scenario(live.gateway, scenario)
        report = await simulate(scenario, live.gateway.broker_url, qos=1)
        assert report.valid_readings > 0 and report.failed == 0
        store = live.gateway.store
        assert isinstance(store, InfluxStore)
        await stored(store, victoria, report.valid_readings)
        await asyncio.sleep(0.5)  # nothing more trickles in afterwards
        await asyncio.to_thread(victoria.flush)
        assert await store.count() == report.valid_readings

        health = (await live.client.get("/api/health")).json()
        assert health["status"] == "ok"
        assert health["store"]["kind"] == "influx" and health["store"]["ok"] is True
        assert health["store"]["spool"]["batches"] == 0
        assert health["counters"]["readings_stored"] == report.valid_readings

        # What a person charting a device sees comes back from VictoriaMetrics.
        device = scenario.sites[0].devices[0].id
        rows = (
            await live.client.get(
                "/api/telemetry", params={"device_id": device, "metric": "residual_current_ma"}
            )
        ).json()
        ours = await store.query(device, "residual_current_ma", 0, now_ms() + 60_000)
        assert len(rows) == len(ours) > 0
        assert [r["value"] for r in rows] == [r.value for r in ours]
