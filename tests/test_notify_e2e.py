"""A simulated fire through the real gateway: escalation reaches people in order until acknowledged.

Simulator -> Mosquitto -> gateway -> alert -> escalation steps -> a local HTTP receiver
(standing in for the town's webhook and a DingTalk robot); acknowledged through the API,
after which nobody else is called. The chain's delays are seconds here and the clock is
real, so the test asserts order and count, not timing.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.config import Settings
from simulator.scenario import parse_scenario
from tests.conftest import LiveGateway, eventually, with_alerting
from tests.receivers import HttpReceiver
from tests.test_end_to_end import register_scenario, simulate

FIRE_STATION_AFTER_S = 5.0
DINGTALK_TOKEN = "e2e-secret-token"

SCENARIO = {
    "name": "one-fire",
    "seed": 7,
    "duration_s": 6,
    "sites": [
        {
            "id": "t1",
            "name": "陂头村测试出租屋",
            "village": "陂头村",
            "industry": "rental_housing",
            "address": "陂头村建设路1号",
            "devices": [
                {"id": "t1-smoke", "profile": "smoke_alarm_nbiot", "interval_s": 1,
                 "name": "楼道烟感"},
            ],
        }
    ],
    "incidents": [
        {"kind": "fire", "device": "t1-smoke", "at_s": 1, "duration_s": 4, "params": {"rise_s": 1}}
    ],
}  # fmt: skip


def alerting_yaml(receiver: HttpReceiver) -> dict[str, Any]:
    def step(after_s: float, to: str, via: list[str]) -> dict[str, Any]:
        return {"after_s": after_s, "notify": [{"to": to, "via": via}]}

    return {
        "options": {"retry": {"max_attempts": 3, "initial_backoff_s": 0.2}},
        "channels": {
            "town-hook": {"type": "webhook", "url": receiver.url("/town")},
            "town-dingtalk": {
                "type": "dingtalk",
                "url": receiver.url(f"/robot/send?access_token={DINGTALK_TOKEN}"),
                "secret": "SEC-e2e",
            },
        },
        "recipients": {
            "site_owner": {"title_zh": "场所负责人", "title_en": "Site owner",
                           "by_site": {"t1": {"name": "王老板", "phones": ["13800000017"]}}},
            "grid_officer": {"title_zh": "社区网格员", "title_en": "Community grid officer"},
            "duty_leader": {"title_zh": "镇值班领导", "title_en": "Town duty leader"},
            "fire_station": {"title_zh": "镇专职消防队", "title_en": "Town fire station"},
        },
        "policies": [
            {
                "name": "red-fire",
                "match": {"severity": ["red"], "hazard": ["fire"]},
                "steps": [
                    step(0, "site_owner", ["town-hook", "town-dingtalk"]),
                    step(1, "grid_officer", ["town-hook"]),
                    step(2, "duty_leader", ["town-hook"]),
                    step(FIRE_STATION_AFTER_S, "fire_station", ["town-hook"]),
                ],
                "repeat": {"every_s": 2},
            }
        ],
    }  # fmt: skip


@pytest.fixture
def settings(settings: Settings, tmp_path: Path, receiver: HttpReceiver) -> Settings:
    """The shared live-gateway settings, with this test's alerting file."""
    text = yaml.safe_dump(alerting_yaml(receiver), allow_unicode=True)
    return with_alerting(settings, tmp_path, text)


async def test_fire_escalates_in_order_until_acknowledged_through_the_api(
    live: LiveGateway, receiver: HttpReceiver
) -> None:
    scenario = parse_scenario(SCENARIO, "one-fire")
    await register_scenario(live.gateway, scenario)
    simulation = asyncio.create_task(simulate(scenario, live.gateway.broker_url))

    def town() -> list[dict[str, Any]]:
        return [r.json() for r in receiver.at("/town")]

    async def reached(role: str) -> list[dict[str, Any]] | None:
        bodies = town()
        return bodies if any(b["recipient"]["role"] == role for b in bodies) else None

    first = await eventually(lambda: reached("site_owner"), timeout_s=20, interval_s=0.05)
    first_seen = time.monotonic()
    alert_id = first[0]["alert"]["id"]
    await eventually(lambda: reached("duty_leader"), timeout_s=10, interval_s=0.05)
    ack = await live.client.post(f"/api/alerts/{alert_id}/ack", json={"note": "on my way"})
    assert ack.status_code == 200, ack.text
    assert live.gateway.notify.escalator.chains() == []

    # Past the moment the fire station (and a first reminder) would have been called:
    # nobody else hears of it.
    while time.monotonic() < first_seen + FIRE_STATION_AFTER_S + 1.5:
        await asyncio.sleep(0.1)
    await simulation

    # The fire is one incident at its site: one page, not one per reading.
    incidents = (await live.client.get("/api/incidents")).json()
    assert [(i["site_id"], i["severity"], i["alert_ids"]) for i in incidents] == [
        ("t1", "red", [alert_id])
    ]

    bodies = town()
    assert [b["recipient"]["role"] for b in bodies] == [
        "site_owner",
        "grid_officer",
        "duty_leader",
    ]
    assert [b["reason"]["number"] for b in bodies] == [1, 2, 3]
    fire = bodies[0]["alert"]
    assert (fire["site_name"], fire["village"], fire["device_name"]) == (
        "陂头村测试出租屋",
        "陂头村",
        "楼道烟感",
    )
    assert (fire["severity"], fire["hazard"], fire["title_zh"]) == ("red", "fire", "烟雾火警")
    assert bodies[0]["link"].endswith(f"/#alert={alert_id}")
    assert bodies[0]["titles"]["zh"] == "【红色预警】陂头村测试出租屋 烟雾火警"
    assert "场所：陂头村测试出租屋（陂头村）" in bodies[0]["texts"]["zh"]
    assert "Site: 陂头村测试出租屋 (陂头村)" in bodies[0]["texts"]["en"]

    [robot] = receiver.at("/robot/send")
    card = robot.json()
    assert card["msgtype"] == "markdown" and "@13800000017" in card["markdown"]["text"]
    assert robot.query["access_token"] == DINGTALK_TOKEN and robot.query["sign"]

    # The delivery log, as the console would read it.
    log = (await live.client.get(f"/api/alerts/{alert_id}/notifications")).json()
    assert [(n["step"], n["recipient"], n["channel"], n["status"]) for n in log] == [
        ("step:0", "site_owner", "town-hook", "delivered"),
        ("step:0", "site_owner", "town-dingtalk", "delivered"),
        ("step:1", "grid_officer", "town-hook", "delivered"),
        ("step:2", "duty_leader", "town-hook", "delivered"),
    ]
    assert all([a["ok"] for a in n["attempts"]] == [True] for n in log)
    assert log[1]["attempts"][0]["detail"] == "HTTP 200, errcode 0"
    assert log[0]["addresses"] == ["138****0017"]

    policies = (await live.client.get("/api/escalation-policies")).json()
    assert [s["after_s"] for s in policies[0]["steps"]] == [0, 1, 2, FIRE_STATION_AFTER_S]
    assert policies[0]["steps"][3]["notify"][0]["title_zh"] == "镇专职消防队"

    channels = (await live.client.get("/api/notification-channels")).json()
    assert {c["name"]: c["delivered"] for c in channels} == {"town-hook": 3, "town-dingtalk": 1}
    shown = str(channels)
    assert DINGTALK_TOKEN not in shown and "SEC-e2e" not in shown
    assert channels[0]["endpoint"] == f"http://127.0.0.1:{receiver.port}"

    recent = (await live.client.get("/api/notifications", params={"status": "failed"})).json()
    assert recent == []
    async with httpx.AsyncClient(base_url=live.base_url) as anonymous:
        for path in (
            "/api/escalation-policies",
            "/api/notification-channels",
            f"/api/alerts/{alert_id}/notifications",
            "/api/notifications",
        ):
            assert (await anonymous.get(path)).status_code == 401  # fmt: skip
