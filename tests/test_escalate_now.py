"""The duty officer's "escalate" button: the next step of the chain goes out at once.

A real gateway (Mosquitto, uvicorn) with a chain whose later steps are ten minutes
apart, so only the button can reach them within the test; the notifications arrive at
a real local HTTP receiver and show in the alert's delivery log.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
import yaml

from gateway.config import Settings
from gateway.model import now_ms
from gateway.registry_model import Device, Site
from gateway.scope import Role
from tests.conftest import LiveGateway, eventually, register, with_alerting
from tests.receivers import HttpReceiver

SITE = Site("acme-1", "五金仓库", "东村", "factory", enterprise="acme")
SMOKE = Device("acme-smoke", "smoke_alarm_nbiot", "acme-1")


def alerting_yaml(receiver: HttpReceiver, *, later_steps_s: tuple[float, float]) -> str:
    """A red-fire chain: the site owner at once, then the grid officer and the duty leader."""

    def step(after_s: float, to: str) -> dict[str, Any]:
        return {"after_s": after_s, "notify": [{"to": to, "via": ["town-hook"]}]}

    config = {
        "channels": {"town-hook": {"type": "webhook", "url": receiver.url("/town")}},
        "recipients": {
            "site_owner": {"title_zh": "场所负责人", "title_en": "Site owner"},
            "grid_officer": {"title_zh": "社区网格员", "title_en": "Community grid officer"},
            "duty_leader": {"title_zh": "镇值班领导", "title_en": "Town duty leader"},
        },
        "policies": [
            {
                "name": "red-fire",
                "match": {"severity": ["red"], "hazard": ["fire"]},
                "steps": [
                    step(0, "site_owner"),
                    step(later_steps_s[0], "grid_officer"),
                    step(later_steps_s[1], "duty_leader"),
                ],
            }
        ],
    }
    return yaml.safe_dump(config, allow_unicode=True)


@pytest.fixture
def settings(settings: Settings, tmp_path: Path, receiver: HttpReceiver) -> Settings:
    return with_alerting(settings, tmp_path, alerting_yaml(receiver, later_steps_s=(600, 1200)))


async def client_as(live: LiveGateway, name: str, role: Role, **scope: Any) -> httpx.AsyncClient:
    token = await live.gateway.tokens.create(name, role, **scope)
    return httpx.AsyncClient(
        base_url=live.base_url, timeout=10, headers={"Authorization": f"Bearer {token}"}
    )


async def smoke_alarm(live: LiveGateway) -> int:
    """A real smoke-alarm event over MQTT; returns the red fire alert it raised."""
    assert live.settings.broker_url is not None
    port = int(live.settings.broker_url.rsplit(":", 1)[1])
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"smoke-{now_ms()}") as client:
        body = {"ts": now_ms(), "type": "smoke_alarm", "detail": {}}
        await client.publish(f"ewg/v1/{SMOKE.id}/event", json.dumps(body), qos=1)

    async def raised() -> int | None:
        alerts = (await live.client.get("/api/alerts", params={"device_id": SMOKE.id})).json()
        return int(alerts[0]["id"]) if alerts else None

    return await eventually(raised)


def told(receiver: HttpReceiver) -> list[tuple[str, dict[str, Any]]]:
    """(recipient role, reason) of every message the town's webhook received, in order."""
    return [(b["recipient"]["role"], b["reason"]) for b in (r.json() for r in receiver.at("/town"))]


async def test_escalate_sends_the_next_step_at_once_audited_and_logged(
    live: LiveGateway, receiver: HttpReceiver
) -> None:
    await register(live.gateway, [SITE], [SMOKE])
    alert_id = await smoke_alarm(live)

    async def site_owner_told() -> bool:
        return len(told(receiver)) == 1

    await eventually(site_owner_told)  # at once
    assert [role for role, _ in told(receiver)] == ["site_owner"]

    duty = await client_as(live, "duty-wang", Role.DUTY)
    east = await client_as(live, "east-zhao", Role.COMMUNITY, villages=["东村"])
    west = await client_as(live, "west-li", Role.COMMUNITY, villages=["西村"])
    firm = await client_as(live, "acme-qian", Role.ENTERPRISE, enterprise="acme")
    async with duty, east, west, firm:
        # The grid officer's step is ten minutes away; the duty officer sends it now.
        sent = await duty.post(f"/api/alerts/{alert_id}/escalate")
        assert sent.status_code == 200, sent.text
        body = sent.json()
        assert (body["policy"], body["step"]) == ("red-fire", "step:1")
        assert [n["recipient"] for n in body["notifications"]] == ["grid_officer"]

        async def grid_officer_told() -> bool:
            return len(told(receiver)) == 2

        await eventually(grid_officer_told)
        role, reason = told(receiver)[1]
        assert role == "grid_officer" and reason["by"] == "duty-wang"
        text = receiver.at("/town")[1].json()["texts"]
        assert "escalated now by duty-wang" in text["en"] and "立即升级" in text["zh"]

        # Outside one's scope it is the same 404 as a missing alert; enterprises may not.
        missing = await west.post("/api/alerts/999999/escalate")
        theirs = await west.post(f"/api/alerts/{alert_id}/escalate")
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json()["detail"].replace(str(alert_id), "N") == missing.json()[
            "detail"
        ].replace("999999", "N")
        assert (await firm.post(f"/api/alerts/{alert_id}/escalate")).status_code == 403

        # The village's community officer sends the last step; then nothing is left.
        last = await east.post(f"/api/alerts/{alert_id}/escalate")
        assert last.status_code == 200 and last.json()["step"] == "step:2"
        done = await duty.post(f"/api/alerts/{alert_id}/escalate")
        assert done.status_code == 409 and "every step" in done.json()["detail"]

    async def all_delivered() -> list[dict[str, Any]] | None:
        log = (await live.client.get(f"/api/alerts/{alert_id}/notifications")).json()
        return log if [n["status"] for n in log] == ["delivered"] * 3 else None

    log = await eventually(all_delivered)
    assert [(n["step"], n["recipient"]) for n in log] == [
        ("step:0", "site_owner"),
        ("step:1", "grid_officer"),
        ("step:2", "duty_leader"),
    ]
    assert [role for role, _ in told(receiver)] == ["site_owner", "grid_officer", "duty_leader"]
    audit = [e for e in await live.gateway.audit.entries() if e.action == "alert.escalate"]
    assert [(e.actor, e.target, e.detail["step"]) for e in reversed(audit)] == [
        ("duty-wang", f"alert:{alert_id}", "step:1"),
        ("east-zhao", f"alert:{alert_id}", "step:2"),
    ]


async def test_an_acknowledged_or_closed_alert_is_not_escalated(live: LiveGateway) -> None:
    await register(live.gateway, [SITE], [SMOKE])
    alert_id = await smoke_alarm(live)
    ack = await live.client.post(f"/api/alerts/{alert_id}/ack", json={"note": "on my way"})
    assert ack.status_code == 200
    refused = await live.client.post(f"/api/alerts/{alert_id}/escalate")
    assert refused.status_code == 409 and "acknowledged by admin" in refused.json()["detail"]
    close = {"disposition": "false_alarm", "note": "cooking"}
    assert (await live.client.post(f"/api/alerts/{alert_id}/close", json=close)).status_code == 200
    refused = await live.client.post(f"/api/alerts/{alert_id}/escalate")
    assert refused.status_code == 409 and "closed" in refused.json()["detail"]
    assert not [e for e in await live.gateway.audit.entries() if e.action == "alert.escalate"]
