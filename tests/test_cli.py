"""The ``ewg`` command line: what an electrician types to connect a sensor."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from gateway.cli import app
from gateway.config import Settings
from tests.conftest import eventually, run_gateway

runner = CliRunner()


def test_profiles_list_names_every_device_type() -> None:
    result = runner.invoke(app, ["profiles", "list"])
    assert result.exit_code == 0
    for name in (
        "smoke_alarm_nbiot",
        "heat_detector",
        "electrical_fire_monitor",
        "dust_collector_monitor",
        "gas_detector",
        "power_meter",
    ):
        assert name in result.output


def test_broken_profile_dir_is_reported_with_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "name: bad\ntitle_zh: x\ntitle_en: x\nheartbeat_s: -1\nmetrics: {}\n", encoding="utf-8"
    )
    result = runner.invoke(app, ["profiles", "list", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "bad.yaml" in result.output and "heartbeat_s" in result.output


def test_device_add_refuses_unknown_site_and_profile(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    result = runner.invoke(
        app, ["device", "add", "d1", "--profile", "power_meter", "--site", "nowhere", *data]
    )
    assert result.exit_code == 2 and "nowhere" in result.output
    runner.invoke(
        app, ["site", "add", "s1", "--name", "n", "--village", "v", "--industry", "i", *data]
    )
    result = runner.invoke(
        app, ["device", "add", "d1", "--profile", "toaster", "--site", "s1", *data]
    )
    assert result.exit_code == 2 and "toaster" in result.output
    dup = runner.invoke(
        app, ["site", "add", "s1", "--name", "n", "--village", "v", "--industry", "i", *data]
    )
    assert dup.exit_code == 2 and "already exists" in dup.output


async def test_device_added_by_cli_is_accepted_by_a_running_gateway(settings: Settings) -> None:
    async with run_gateway(settings) as live:
        data = ["--data-dir", str(settings.data_dir)]
        added = await asyncio.to_thread(
            runner.invoke,
            app,
            [
                "site",
                "add",
                "shop-9",
                "--name",
                "小吃店",
                "--village",
                "陂头村",
                "--industry",
                "small_shop",
                *data,
            ],
        )
        assert added.exit_code == 0, added.output
        added = await asyncio.to_thread(
            runner.invoke,
            app,
            [
                "device",
                "add",
                "efm-9",
                "--profile",
                "electrical_fire_monitor",
                "--site",
                "shop-9",
                *data,
            ],
        )
        assert added.exit_code == 0, added.output
        assert "ewg/v1/efm-9/telemetry" in added.output
        listed = await asyncio.to_thread(runner.invoke, app, ["device", "list", *data])
        assert "efm-9" in listed.output

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="electrician")
        assert settings.broker_url is not None
        port = int(settings.broker_url.rsplit(":", 1)[1])
        client.connect("127.0.0.1", port)
        client.loop_start()
        payload = {"ts": int(time.time() * 1000), "values": {"residual_current_ma": 152}}
        info = client.publish("ewg/v1/efm-9/telemetry", json.dumps(payload), qos=1)
        await asyncio.to_thread(info.wait_for_publish, 5)
        client.loop_stop()

        async def stored() -> list[dict[str, Any]]:
            rows = (
                await live.client.get(
                    "/api/telemetry",
                    params={"device_id": "efm-9", "metric": "residual_current_ma", "start_ms": 0},
                )
            ).json()
            return list(rows)

        rows = await eventually(stored)
        assert [r["value"] for r in rows] == [152.0]
        assert live.gateway.counters.dead_letters == {}
