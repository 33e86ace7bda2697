"""Simulator -> real Mosquitto -> gateway -> SQLite -> alerts, seen through the API and SSE."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from gateway.service import Gateway
from simulator.runner import SimulationReport, Simulator
from simulator.scenario import Scenario, load_scenario, registrations
from tests.conftest import TOKEN, LiveGateway, eventually, register

SCENARIOS = Path(__file__).resolve().parent.parent / "simulator" / "scenarios"


async def register_scenario(gateway: Gateway, scenario: Scenario) -> None:
    sites, devices = registrations(scenario)
    await register(gateway, sites, devices)


async def simulate(scenario: Scenario, broker_url: str, **kwargs: Any) -> SimulationReport:
    sim = Simulator(scenario, broker_url, **kwargs)
    return await asyncio.to_thread(sim.run)


@contextlib.asynccontextmanager
async def sse_events(live: LiveGateway) -> AsyncIterator[list[dict[str, Any]]]:
    """Collect the SSE stream's alert events in the background, as the console would."""
    received: list[dict[str, Any]] = []
    ready = asyncio.Event()

    async def listen() -> None:
        async with (
            httpx.AsyncClient(base_url=live.base_url, timeout=None) as client,
            aconnect_sse(
                client, "GET", "/api/alerts/stream", headers={"Authorization": f"Bearer {TOKEN}"}
            ) as source,
        ):
            async for event in source.aiter_sse():
                if event.event == "ready":
                    ready.set()
                elif event.event == "alert":
                    received.append(json.loads(event.data))

    task = asyncio.create_task(listen())
    async with asyncio.timeout(10):
        await ready.wait()
    try:
        yield received
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_scripted_incidents_become_alerts_on_api_and_stream(live: LiveGateway) -> None:
    scenario = load_scenario(SCENARIOS / "incidents.yaml")
    await register_scenario(live.gateway, scenario)
    async with sse_events(live) as stream:
        report = await simulate(scenario, live.gateway.broker_url)
        expected = {
            (t.device_id, t.expected_rule, t.expected_severity)
            for t in report.truth
            if t.expected_rule and t.kind != "malformed"
        }
        assert expected, "the scenario must inject incidents"

        async def raised() -> set[tuple[str, str, str]] | None:
            alerts = (await live.client.get("/api/alerts")).json()
            seen = {(a["device_id"], a["rule"], a["severity"]) for a in alerts}
            return seen if expected <= seen else None

        seen = await eventually(raised, timeout_s=20)
        assert expected <= seen
        streamed = {
            (e["alert"]["device_id"], e["alert"]["rule"]) for e in stream if e["kind"] == "raised"
        }
        assert {(d, r) for d, r, _ in expected} <= streamed

    alerts = (await live.client.get("/api/alerts")).json()
    fire = next(a for a in alerts if a["hazard"] == "fire" and a["rule"] == "smoke_alarm")
    assert fire["severity"] == "red" and fire["site_name"] and fire["village"]
    assert fire["alert_class"] == "hazard"
    offline = [a for a in alerts if a["rule"] == "offline"]
    assert offline and all(a["alert_class"] == "fault" for a in offline)
    # One open alert per device and rule, however many readings crossed the threshold.
    keys = [(a["device_id"], a["rule"]) for a in alerts if a["state"] != "closed"]
    assert len(keys) == len(set(keys))
    metrics = (await live.client.get("/metrics")).text
    assert f"ewg_alerts_raised_total {float(len(alerts))}" in metrics


async def test_malformed_burst_is_dead_lettered_and_valid_traffic_stored(
    live: LiveGateway,
) -> None:
    scenario = load_scenario(SCENARIOS / "malformed.yaml")
    await register_scenario(live.gateway, scenario)
    report = await simulate(scenario, live.gateway.broker_url)
    assert report.malformed, "the scenario must send malformed messages"

    async def settled() -> dict[str, Any] | None:
        health = (await live.client.get("/api/health")).json()
        counters = health["counters"]
        done = (
            counters["dead_letters_total"] >= sum(report.malformed.values())
            and counters["readings_stored"] >= report.valid_readings
        )
        return counters if done else None

    counters = await eventually(settled, timeout_s=15)
    assert counters["dead_letters"] == dict(report.malformed)
    assert counters["readings_stored"] == report.valid_readings
    assert await live.gateway.store.count() == report.valid_readings
    stored_counts = (await live.client.get("/api/dead-letters/counts")).json()
    assert stored_counts == dict(report.malformed)
    letters = (await live.client.get("/api/dead-letters", params={"limit": 1000})).json()
    assert all(letter["detail"] and letter["payload_base64"] is not None for letter in letters)
    oversize = [x for x in letters if x["reason"] == "oversize"]
    assert all(x["topic"].endswith("/telemetry") for x in oversize)
    assert live.gateway.health()["status"] == "ok"

    # The same counts reach Prometheus.
    metrics = (await live.client.get("/metrics")).text
    for reason, n in report.malformed.items():
        assert f'ewg_dead_letters_total{{reason="{reason}"}} {float(n)}' in metrics
    assert f"ewg_readings_stored_total {float(report.valid_readings)}" in metrics
    assert "ewg_broker_connected 1.0" in metrics
