"""A real gateway keeps what its detectors learnt across a restart, and survives a bad file.

Readings go through a real Mosquitto into a real gateway; the state file is written
by the gateway itself (periodically and at shutdown) and read by the next one.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiomqtt
import pytest

from gateway.config import Settings
from gateway.detector_state import STATE_FILE
from gateway.model import now_ms
from gateway.registry_model import Device, Site
from tests.conftest import eventually, register, run_gateway

MIN = 60_000
SITE = Site(id="sawmill", name="Sawmill", village="east", industry="dust_factory")
DEVICES = [
    Device(id="dc-1", profile="dust_collector_monitor", site_id="sawmill"),
    Device(id="pm-1", profile="power_meter", site_id="sawmill"),
]


def broker_port(settings: Settings) -> int:
    assert settings.broker_url is not None
    return int(settings.broker_url.rsplit(":", 1)[1])


async def send(settings: Settings, device_id: str, items: list[dict[str, object]]) -> None:
    """One backfill message (a list of readings), QoS 1."""
    async with aiomqtt.Client(
        "127.0.0.1", broker_port(settings), identifier=f"dev-{now_ms()}", timeout=10
    ) as client:
        await client.publish(f"ewg/v1/{device_id}/telemetry", json.dumps(items), qos=1)


def rules_of(state: dict[str, object]) -> dict[str, Any]:
    rules = state["rules"]
    assert isinstance(rules, dict)
    return rules


def pressure(ts_ms: int, pa: float) -> dict[str, object]:
    return {"ts": ts_ms, "values": {"pressure_diff_pa": pa}}


async def test_a_learnt_drift_baseline_and_anomaly_state_survive_a_gateway_restart(
    settings: Settings,
) -> None:
    settings = settings.model_copy(update={"detector_state_interval_s": 0.2})
    state_file = settings.data_dir / STATE_FILE
    start = now_ms() - 60 * MIN
    async with run_gateway(settings) as live:
        await register(live.gateway, [SITE], DEVICES)
        # 20 readings in one message: the baseline (their median, 800 Pa) is learnt.
        await send(settings, "dc-1", [pressure(start + i * MIN, 799.0 + i % 3) for i in range(20)])
        load = [
            {"ts": start + i * MIN, "values": {"active_power_kw": 200.0 + i}} for i in range(30)
        ]
        await send(settings, "pm-1", load)

        async def learnt() -> bool:
            rules = json.loads(state_file.read_text())["rules"] if state_file.exists() else {}
            scorer = rules.get("dc-1", {}).get("pressure_drift", {}).get("scorer", {})
            return scorer.get("baseline") == 800.0 and "load_anomaly" in rules.get("pm-1", {})

        await eventually(learnt)  # written while running, not only at shutdown
        anomaly_before = rules_of(live.gateway.detectors.state())["pm-1"]["load_anomaly"]["scorer"]

    async with run_gateway(settings) as live:
        restored = rules_of(live.gateway.detectors.state())
        assert restored["pm-1"]["load_anomaly"]["scorer"] == anomaly_before
        # +25 % for over a minute: only a gateway that kept the baseline can say so now
        # (a fresh one would be learning its first 20 readings and say nothing).
        await send(settings, "dc-1", [pressure(start + (20 + i) * MIN, 1000.0) for i in range(3)])

        async def drift_alert() -> str | None:
            for alert in live.gateway.alerts.open_alerts():
                if alert.rule == "pressure_drift":
                    return alert.message
            return None

        message = await eventually(drift_alert)
        assert "+25 %" in message and "baseline 800 Pa" in message


async def test_a_corrupt_state_file_is_logged_set_aside_and_the_gateway_starts(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    state_file = settings.data_dir / STATE_FILE
    state_file.write_text('{"version": 2, "offline": {"devices": {}}, "rules": {"dc-1": 7}}')
    with caplog.at_level(logging.ERROR, logger="gateway.detector_state"):
        async with run_gateway(settings) as live:
            await register(live.gateway, [SITE], DEVICES)
            assert (settings.data_dir / (STATE_FILE + ".corrupt")).exists()
            start = now_ms() - 30 * MIN
            await send(settings, "dc-1", [pressure(start + i * MIN, 800.0) for i in range(20)])

            async def learning() -> bool:
                return "pressure_drift" in rules_of(live.gateway.detectors.state()).get("dc-1", {})

            await eventually(learning)
    assert any("unusable" in r.getMessage() for r in caplog.records)
    # The shutdown wrote a good file again.
    saved = json.loads(state_file.read_text())
    assert saved["rules"]["dc-1"]["pressure_drift"]["scorer"]["baseline"] == 800.0


async def test_closing_an_alert_on_the_api_while_it_holds_raises_a_new_one(
    settings: Settings,
) -> None:
    efm = Device(id="efm-1", profile="electrical_fire_monitor", site_id="sawmill")
    async with run_gateway(settings) as live:
        await register(live.gateway, [SITE], [efm])
        start = now_ms() - 10 * MIN
        leak = [
            {"ts": start + i * 1000, "values": {"residual_current_ma": 350.0}} for i in range(12)
        ]
        await send(settings, "efm-1", leak)

        async def open_leak() -> list[dict[str, Any]]:
            rows = (await live.client.get("/api/alerts", params={"state": "open"})).json()
            return [a for a in rows if a["rule"] == "residual_current"]

        [first] = await eventually(open_leak)
        closed = await live.client.post(
            f"/api/alerts/{first['id']}/close", json={"disposition": "false_alarm"}
        )
        assert closed.status_code == 200, closed.text
        # Still 350 mA: the next reading raises a new alert, not silence.
        await send(
            settings, "efm-1", [{"ts": start + 13_000, "values": {"residual_current_ma": 350.0}}]
        )

        async def second() -> list[dict[str, Any]]:
            return [a for a in await open_leak() if a["id"] != first["id"]]

        [again] = await eventually(second)
        assert again["severity"] == "orange"
