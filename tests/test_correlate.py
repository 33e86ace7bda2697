"""Cross-sensor confirmation: related devices confirm a fire or upgrade an electrical alert.

The relations come from a real registry (SQLite file), the signals from the real
DetectorBank over the shipped profiles, and both go through ``gateway.detect.Detect``
as the gateway runs it. The last test runs the same through Mosquitto and a live
gateway, seen on the HTTP API.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from alerts.model import AlertClass, Severity, Signal
from detectors.bank import DetectorBank
from detectors.correlate import ELECTRICAL_RULE, FIRE_RULE, Correlator
from gateway import audit, registry
from gateway.config import Settings
from gateway.detect import Detect
from gateway.metrics import Counters
from gateway.model import DeviceEvent, InboundMessage, Reading, now_ms
from gateway.pipeline import Delivery
from gateway.profiles import DEFAULT_PROFILE_DIR, load_profiles
from gateway.registry import Registry
from gateway.registry_model import Device, Site
from gateway.sqlite import SqliteDatabase
from tests.conftest import LiveGateway, eventually, register, run_gateway

T0 = 1_796_083_200_000
S = 1000

SITES = [
    Site("s1", "Noodle shop", "east", "small_shop"),
    Site("s2", "Next door", "east", "small_shop"),
]
DEVICES = [
    Device("smoke-k", "smoke_alarm_nbiot", "s1", room="kitchen"),
    Device("heat-k", "heat_detector", "s1", room="kitchen"),
    Device("smoke-b", "smoke_alarm_nbiot", "s1", room="bedroom"),
    Device("heat-other-site", "heat_detector", "s2", room="kitchen"),  # same tag, other site
    Device("efm-a1", "electrical_fire_monitor", "s1", circuit="A"),
    Device("efm-a2", "electrical_fire_monitor", "s1", circuit="A"),
    Device("efm-b", "electrical_fire_monitor", "s1", circuit="B"),
]


@dataclass
class Rig:
    registry: Registry
    detect: Detect
    queue: asyncio.Queue[list[Signal]]

    async def feed(
        self, readings: list[Reading] | None = None, events: list[DeviceEvent] | None = None
    ) -> list[Signal]:
        """One delivery through the detect stage; the signals it queued for the engine."""
        last = max([r.ts_ms for r in readings or []] + [e.ts_ms for e in events or []])
        delivery = Delivery(
            message=InboundMessage("ewg/v1/x/telemetry", b"", 1, False, last),
            ack=lambda: None,
            readings=readings or [],
            events=events or [],
        )
        await self.detect(delivery)
        found: list[Signal] = []
        while not self.queue.empty():
            found.extend(self.queue.get_nowait())
        return found

    async def series(
        self, device_id: str, metric: str, start_ms: int, values: list[float], step_s: int
    ) -> list[Signal]:
        found: list[Signal] = []
        for i, value in enumerate(values):
            found += await self.feed([Reading(device_id, metric, start_ms + i * step_s * S, value)])
        return found


def mqtt_client(live: LiveGateway, identifier: str) -> aiomqtt.Client:
    assert live.settings.broker_url is not None
    host, port = live.settings.broker_url.removeprefix("mqtt://").rsplit(":", 1)
    return aiomqtt.Client(host, int(port), identifier=identifier)


def ours(signals: list[Signal]) -> list[tuple[str, str, bool]]:
    return [
        (s.device_id, s.rule, s.active) for s in signals if s.rule in (FIRE_RULE, ELECTRICAL_RULE)
    ]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with SqliteDatabase(tmp_path / "ewg.db", registry.SCHEMA + audit.SCHEMA) as db:
        reg = Registry(db, load_profiles(DEFAULT_PROFILE_DIR))
        await reg.refresh()
        for site in SITES:
            await reg.add_site(site, "test")
        for device in DEVICES:
            await reg.add_device(device, "test")
        queue: asyncio.Queue[list[Signal]] = asyncio.Queue()
        detect = Detect(
            DetectorBank(reg.profile_of), queue, Counters(), correlator=Correlator(reg.related_ids)
        )
        yield Rig(reg, detect, queue)


def smoke(device_id: str, ts_ms: int, kind: str = "smoke_alarm") -> list[DeviceEvent]:
    return [DeviceEvent(device_id, kind, ts_ms)]


async def test_smoke_and_a_heat_rise_in_the_same_room_is_one_confirmed_red_fire(rig: Rig) -> None:
    # The kitchen heat detector climbs from 24 to 36 °C over three minutes (below its own
    # 54 °C pre-warning: alone it raises nothing).
    temps = [24.0, 25.0, 27.0, 29.0, 31.0, 33.0, 34.5, 36.0]
    assert await rig.series("heat-k", "temperature_c", T0, temps, step_s=30) == []
    found = await rig.feed(events=smoke("smoke-k", T0 + 200 * S))
    assert ours(found) == [("smoke-k", FIRE_RULE, True)]
    fire = next(s for s in found if s.rule == FIRE_RULE)
    assert fire.severity is Severity.RED and fire.alert_class is AlertClass.HAZARD
    assert fire.hazard == "fire"
    assert "smoke-k" in fire.message and "heat-k" in fire.message
    assert "24.0 → 36.0 °C" in fire.message and "确认火警" in fire.message
    # More heat, a repeated smoke event: still one confirmed fire.
    more = await rig.series("heat-k", "temperature_c", T0 + 240 * S, [40.0, 45.0], step_s=30)
    more += await rig.feed(events=smoke("smoke-k", T0 + 300 * S))
    assert ours(more) == []
    # The smoke alarm is reset: the confirmation clears with it.
    cleared = await rig.feed(events=smoke("smoke-k", T0 + 900 * S, "smoke_clear"))
    assert ours(cleared) == [("smoke-k", FIRE_RULE, False)]


async def test_smoke_in_another_room_or_site_is_not_confirmed(rig: Rig) -> None:
    await rig.series("heat-k", "temperature_c", T0, [24.0, 30.0, 36.0], step_s=60)
    await rig.series("heat-other-site", "temperature_c", T0, [24.0, 30.0, 36.0], step_s=60)
    found = await rig.feed(events=smoke("smoke-b", T0 + 150 * S))  # the bedroom
    assert [s.rule for s in found] == ["smoke_alarm"]  # the alarm itself, nothing confirmed
    assert ours(found) == []


async def test_heat_first_or_smoke_first_both_confirm_but_not_an_old_rise(rig: Rig) -> None:
    # Smoke first; the heat rise follows within the window.
    assert ours(await rig.feed(events=smoke("smoke-k", T0))) == []
    found = await rig.series("heat-k", "temperature_c", T0 + 10 * S, [22.0, 26.0, 31.0], step_s=60)
    assert ours(found) == [("smoke-k", FIRE_RULE, True)]
    # A rise that ended 20 minutes before the bedroom's smoke alarm confirms nothing.
    # (the bedroom alarm is moved into the kitchen, next to the heat detector)
    await rig.registry.set_relations("smoke-b", "kitchen", None, "test")
    found = await rig.feed(events=smoke("smoke-b", T0 + 140 * S + 20 * 60 * S))
    assert ours(found) == []


async def test_a_heat_alarm_event_nearby_confirms_too(rig: Rig) -> None:
    await rig.feed(events=[DeviceEvent("heat-k", "heat_alarm", T0)])
    found = await rig.feed(events=smoke("smoke-k", T0 + 30 * S))
    assert ours(found) == [("smoke-k", FIRE_RULE, True)]
    assert "heat_alarm" in next(s for s in found if s.rule == FIRE_RULE).message


async def leak(rig: Rig, device_id: str, start_ms: int) -> list[Signal]:
    """320 mA for 20 s: the bank's orange residual-current alarm (300 mA, 10 s delay)."""
    return await rig.series(
        device_id, "residual_current_ma", start_ms, [150.0, 320.0, 325.0, 330.0], step_s=10
    )


async def test_residual_current_with_a_cable_temperature_rise_on_the_same_circuit_is_upgraded(
    rig: Rig,
) -> None:
    alarm = await leak(rig, "efm-a1", T0)
    assert [(s.rule, s.severity) for s in alarm] == [("residual_current", Severity.ORANGE)]
    # The other monitor on circuit A: its cable warms 40 -> 55 °C in 4 min (no alarm of its own).
    found = await rig.series(
        "efm-a2", "cable_temp_1_c", T0, [40.0, 44.0, 48.0, 52.0, 55.0], step_s=60
    )
    assert ours(found) == [("efm-a1", ELECTRICAL_RULE, True)]
    upgraded = next(s for s in found if s.rule == ELECTRICAL_RULE)
    assert upgraded.severity is Severity.RED and upgraded.hazard == "electrical_fire"
    assert "efm-a1" in upgraded.message and "efm-a2" in upgraded.message
    assert "residual_current" in upgraded.message and "40.0 → 52.0 °C" in upgraded.message
    # The leakage goes away: the upgrade clears with it.
    back = await rig.series("efm-a1", "residual_current_ma", T0 + 300 * S, [150.0], step_s=10)
    assert ours(back) == [("efm-a1", ELECTRICAL_RULE, False)]


async def test_a_cable_temperature_rise_on_another_circuit_upgrades_nothing(rig: Rig) -> None:
    await leak(rig, "efm-a1", T0)
    found = await rig.series(
        "efm-b", "cable_temp_1_c", T0, [40.0, 44.0, 48.0, 52.0, 55.0], step_s=60
    )
    assert ours(found) == []


async def test_the_monitors_own_cable_temperature_alarm_upgrades_its_leakage(rig: Rig) -> None:
    # A cable temperature alarm (75 °C for 15 s) first, then the residual current rises by
    # 150 mA within minutes on the same monitor: the leakage evidence is its own.
    await rig.series("efm-b", "cable_temp_2_c", T0, [70.0, 80.0, 81.0, 82.0], step_s=10)
    found = await rig.series(
        "efm-b", "residual_current_ma", T0 + 60 * S, [100.0, 180.0, 250.0], step_s=30
    )
    assert ours(found) == [("efm-b", ELECTRICAL_RULE, True)]


async def test_resume_after_restart_clears_an_open_confirmation_with_its_cause(rig: Rig) -> None:
    """A restart loses the value windows, not the alerts: open alerts are resumed."""
    from alerts.model import Alert, AlertState

    def alert(id_: int, device_id: str, rule: str, hazard: str) -> Alert:
        return Alert(
            id_,
            device_id,
            "s1",
            rule,
            Severity.RED,
            AlertClass.HAZARD,
            hazard,
            AlertState.RAISED,
            T0,
            T0,
            None,
        )

    correlator = Correlator(rig.registry.related_ids)
    correlator.resume(
        [alert(1, "smoke-k", "smoke_alarm", "fire"), alert(2, "smoke-k", FIRE_RULE, "fire")]
    )
    clear = Signal(
        "smoke-k", "smoke_alarm", False, T0 + 60 * S, None, Severity.RED, AlertClass.HAZARD, "fire"
    )
    assert [(s.rule, s.active) for s in correlator.on_signals([clear])] == [(FIRE_RULE, False)]
    # ... and state() round-trips through JSON with its windows.
    correlator.on_readings(
        [Reading("heat-k", "temperature_c", T0 + i * 30 * S, 24.0 + i) for i in range(5)]
    )
    copy = Correlator(rig.registry.related_ids)
    copy.restore(json.loads(json.dumps(correlator.state())))
    assert copy.state() == correlator.state()
    with pytest.raises(ValueError, match="smoke-k"):
        copy.restore({"version": 1, "devices": {"smoke-k": {"alerts": {"x": "y"}}}})


async def test_live_smoke_and_heat_in_one_room_page_as_a_confirmed_fire(live: LiveGateway) -> None:
    """Through Mosquitto and the running gateway: the API shows one red confirmed fire."""
    await register(live.gateway, [SITES[0]], DEVICES[:3])
    assert live.settings.broker_url is not None
    host, port = live.settings.broker_url.removeprefix("mqtt://").rsplit(":", 1)
    t = now_ms() - 180 * S
    async with aiomqtt.Client(host, int(port), identifier="h4-test-devices") as client:
        for i, value in enumerate([24.0, 27.0, 31.0, 35.0]):
            body: dict[str, Any] = {"ts": t + i * 30 * S, "values": {"temperature_c": value}}
            await client.publish("ewg/v1/heat-k/telemetry", json.dumps(body), qos=1)
        await asyncio.sleep(0.5)  # readings before the alarm, as in the room
        event = {"ts": t + 120 * S, "type": "smoke_alarm"}
        await client.publish("ewg/v1/smoke-k/event", json.dumps(event), qos=1)
        await client.publish("ewg/v1/smoke-b/event", json.dumps(event), qos=1)

    async def confirmed() -> list[dict[str, Any]] | None:
        alerts = (await live.client.get("/api/alerts")).json()
        fires = [a for a in alerts if a["rule"] == FIRE_RULE]
        smokes = [a for a in alerts if a["rule"] == "smoke_alarm"]
        return fires if fires and len(smokes) == 2 else None

    fires = await eventually(confirmed)
    assert [(a["device_id"], a["severity"], a["hazard"]) for a in fires] == [
        ("smoke-k", "red", "fire")
    ]
    assert "heat-k" in fires[0]["message"]


async def test_a_heat_rise_before_a_restart_still_confirms_the_smoke_after_it(
    settings: Settings,
) -> None:
    """The heat detector's rise reached the store, then the gateway restarted; the smoke
    alarm that follows is confirmed from the replayed window."""
    t = now_ms() - 150 * S
    async with run_gateway(settings) as live:
        await register(live.gateway, [SITES[0]], DEVICES[:2])
        async with mqtt_client(live, "h4-before") as client:
            for i, value in enumerate([24.0, 28.0, 33.0, 37.0]):
                body = {"ts": t + i * 30 * S, "values": {"temperature_c": value}}
                await client.publish("ewg/v1/heat-k/telemetry", json.dumps(body), qos=1)

        async def stored() -> bool:
            rows = await live.gateway.store.query("heat-k", "temperature_c", t, t + 200 * S)
            return len(rows) == 4

        await eventually(stored)
    async with run_gateway(settings) as live:
        async with mqtt_client(live, "h4-after") as client:
            event = {"ts": t + 140 * S, "type": "smoke_alarm"}
            await client.publish("ewg/v1/smoke-k/event", json.dumps(event), qos=1)

        async def confirmed() -> list[dict[str, Any]] | None:
            alerts = (await live.client.get("/api/alerts")).json()
            return [a for a in alerts if a["rule"] == FIRE_RULE] or None

        (fire,) = await eventually(confirmed)
        assert fire["device_id"] == "smoke-k" and "24.0 → 37.0 °C" in fire["message"]
