"""A site owner's acknowledgement is recorded, but the town is still told.

If an enterprise user's "acknowledge" stopped the chain, a site owner acking a red fire
alarm within the first minute would keep the grid officer, the duty leader and the fire
station from ever hearing of it. So the owner's ack is a line in the alert's history and
a field the portal shows; only staff acknowledgements stop escalation. Real gateway, real
clock (a chain of seconds), a real local HTTP receiver.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway.config import Settings
from gateway.scope import Role
from tests.conftest import LiveGateway, eventually, register, with_alerting
from tests.receivers import HttpReceiver
from tests.test_escalate_now import SITE, SMOKE, alerting_yaml, client_as, smoke_alarm, told

GRID_OFFICER_AFTER_S = 2.0
DUTY_LEADER_AFTER_S = 8.0


@pytest.fixture
def settings(settings: Settings, tmp_path: Path, receiver: HttpReceiver) -> Settings:
    steps = (GRID_OFFICER_AFTER_S, DUTY_LEADER_AFTER_S)
    return with_alerting(settings, tmp_path, alerting_yaml(receiver, later_steps_s=steps))


async def test_an_owners_ack_is_recorded_but_escalation_goes_on_until_staff_ack(
    live: LiveGateway, receiver: HttpReceiver
) -> None:
    await register(live.gateway, [SITE], [SMOKE])
    alert_id = await smoke_alarm(live)
    raised = time.monotonic()
    owner = await client_as(live, "acme-qian", Role.ENTERPRISE, enterprise="acme")
    duty = await client_as(live, "duty-wang", Role.DUTY)
    async with owner, duty:
        acked = await owner.post(f"/api/alerts/{alert_id}/ack", json={"note": "电工已到"})
        assert acked.status_code == 200, acked.text
        shown = acked.json()
        assert (shown["state"], shown["acknowledged"]) == ("raised", False)
        assert shown["owner_acknowledged_by"] == "acme-qian" and shown["owner_acknowledged_at"]
        again = await owner.post(f"/api/alerts/{alert_id}/ack", json={})
        assert again.status_code == 409 and "owner" in again.json()["detail"]

        history = (await owner.get(f"/api/alerts/{alert_id}/history")).json()
        assert (history[-1]["actor"], history[-1]["note"]) == (
            "acme-qian",
            "owner acknowledged: 电工已到",
        )
        assert history[-1]["from_state"] == history[-1]["to_state"] == "raised"

        # The chain goes on: the grid officer is told at their time.
        async def grid_officer_told() -> bool:
            return "grid_officer" in [role for role, _ in told(receiver)]

        await eventually(grid_officer_told)
        assert live.gateway.notify.escalator.chains() != []

        # The duty officer's acknowledgement stops it.
        staff = await duty.post(f"/api/alerts/{alert_id}/ack", json={"note": "on my way"})
        assert staff.status_code == 200
        assert (staff.json()["state"], staff.json()["acknowledged_by"]) == (
            "acknowledged",
            "duty-wang",
        )
        assert staff.json()["owner_acknowledged_by"] == "acme-qian"
    assert live.gateway.notify.escalator.chains() == []

    # Past the duty leader's time: nobody else hears of it.
    while time.monotonic() < raised + DUTY_LEADER_AFTER_S + 1.5:
        await asyncio.sleep(0.1)
    assert [role for role, _ in told(receiver)] == ["site_owner", "grid_officer"]
    actions = [(e.actor, e.action) for e in await live.gateway.audit.entries()]
    assert ("acme-qian", "alert.owner_ack") in actions and ("duty-wang", "alert.ack") in actions
