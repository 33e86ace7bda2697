"""A fire panel's components behind its transmission device, over Mosquitto and a live gateway.

When the transmission device loses its link, its components go quiet too; their
offline alerts are folded into the transmission device's (``suppressed_by`` its
alert, nobody paged for them). When it is back and a component is *still*
silent, that component's offline alert stands on its own and pages.

The two profiles are written for the test (short heartbeats, so it takes seconds):
what is tested is the gateway's offline detection and inhibition, not a profile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.config import Settings
from gateway.model import now_ms
from gateway.registry_model import Device, Site
from tests.conftest import LiveGateway, eventually, register, run_gateway

TRANSMISSION = """
name: transmission_device
title_zh: 用户信息传输装置
title_en: Fire alarm transmission device
heartbeat_s: 1
offline_after_heartbeats: 2
metrics:
  rsrp_dbm: {unit: dBm, min: -160, max: -30}
"""
COMPONENT = """
name: fire_panel_component
title_zh: 火灾报警控制器部件
title_en: Fire panel component
heartbeat_s: 1
offline_after_heartbeats: 3
metrics:
  temperature_c: {unit: °C, min: -30, max: 125}
"""


@pytest.fixture
async def panel(settings: Settings, tmp_path: Path) -> AsyncIterator[LiveGateway]:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "transmission_device.yaml").write_text(TRANSMISSION, encoding="utf-8")
    (profiles / "fire_panel_component.yaml").write_text(COMPONENT, encoding="utf-8")
    async with run_gateway(settings.model_copy(update={"profiles_dir": profiles})) as live:
        yield live


async def register_panel(live: LiveGateway) -> None:
    """Registered while the heartbeats already run: a device's offline clock starts at its
    registration, so a slow test start cannot make it look silent for 2 s."""
    await register(
        live.gateway,
        [Site("factory", "Paper mill", "west", "factory")],
        [
            Device("td-1", "transmission_device", "factory"),
            Device("panel-c1", "fire_panel_component", "factory", parent_id="td-1"),
            Device("panel-c2", "fire_panel_component", "factory", parent_id="td-1"),
        ],
    )


@contextlib.asynccontextmanager
async def heartbeats(client: aiomqtt.Client, talking: set[str]) -> AsyncIterator[None]:
    """Every device in ``talking`` reports every 0.3 s (the set may change meanwhile)."""

    async def beat() -> None:
        while True:
            for device_id in sorted(talking):
                metric = "rsrp_dbm" if device_id == "td-1" else "temperature_c"
                body = {"ts": now_ms(), "values": {metric: -90.0 if device_id == "td-1" else 21.0}}
                await client.publish(f"ewg/v1/{device_id}/telemetry", json.dumps(body), qos=1)
            await asyncio.sleep(0.3)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def offline_alerts(live: LiveGateway) -> dict[str, dict[str, Any]]:
    alerts = (await live.client.get("/api/alerts")).json()
    return {a["device_id"]: a for a in alerts if a["rule"] == "offline"}


def when(live: LiveGateway, ok: Any) -> Any:
    async def check() -> dict[str, dict[str, Any]] | None:
        alerts = await offline_alerts(live)
        return alerts if ok(alerts) else None

    return check


def raised(alerts: dict[str, dict[str, Any]], ids: Iterable[str]) -> bool:
    return all(i in alerts and alerts[i]["state"] == "raised" for i in ids)


async def test_children_fold_into_the_offline_parent_and_page_once_it_is_back(
    panel: LiveGateway,
) -> None:
    live = panel
    assert live.settings.broker_url is not None
    host, port = live.settings.broker_url.removeprefix("mqtt://").rsplit(":", 1)
    talking = {"td-1", "panel-c1", "panel-c2"}
    async with (
        aiomqtt.Client(host, int(port), identifier="h4-panel") as client,
        heartbeats(client, talking),
    ):
        await register_panel(live)
        await asyncio.sleep(1.5)
        assert await offline_alerts(live) == {}  # all reporting: nothing offline
        # The transmission device's link drops: its last will says offline, all go quiet.
        talking.clear()
        await client.publish("ewg/v1/td-1/status", b"offline", qos=1)
        alerts = await eventually(
            when(live, lambda a: raised(a, ["td-1", "panel-c1", "panel-c2"])), timeout_s=15
        )
        parent = alerts["td-1"]
        assert parent["suppressed_by"] is None  # the one alert to act on
        for child in ("panel-c1", "panel-c2"):
            assert alerts[child]["suppressed_by"] == parent["id"], alerts[child]

        # The transmission device is back; panel-c2 stays silent (its loop is cut).
        talking.update({"td-1", "panel-c1"})
        await client.publish("ewg/v1/td-1/status", b"online", qos=1)

        def settled(a: dict[str, dict[str, Any]]) -> bool:
            return (
                a["td-1"]["state"] == "cleared"
                and a["panel-c1"]["state"] == "cleared"
                and a["panel-c2"]["state"] == "raised"
                and a["panel-c2"]["suppressed_by"] is None
            )

        alerts = await eventually(when(live, settled), timeout_s=15)
    # panel-c2 now stands on its own: shown unmuted, so escalation pages for it.
    assert alerts["panel-c2"]["suppressed_by"] is None
    stored = await live.gateway.alerts.get(alerts["panel-c2"]["id"])
    assert not stored.muted
