"""The enterprise API: hours and shutdown orders, cut to each caller's scope.

Live gateway, real bearer tokens per role: an enterprise user sees its own
enterprise only (another's is 404, as if it did not exist), a community officer the
enterprises of its villages; only administrators and duty officers order shutdowns.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from gateway.audit import AuditLog
from gateway.registry_model import Device, Site
from gateway.scope import Role
from tests.conftest import LiveGateway, register


async def client_as(live: LiveGateway, name: str, role: Role, **scope: object) -> httpx.AsyncClient:
    token = await live.gateway.tokens.create(name, role, **scope)  # type: ignore[arg-type]
    return httpx.AsyncClient(
        base_url=live.base_url, timeout=10, headers={"Authorization": f"Bearer {token}"}
    )


async def world(live: LiveGateway) -> None:
    await register(
        live.gateway,
        [
            Site("s-a", "ACME works", "东村", "dust_factory", enterprise="acme"),
            Site("s-b", "Zeta works", "西村", "dust_factory", enterprise="zeta"),
        ],
        [Device("pm-a", "power_meter", "s-a"), Device("pm-b", "power_meter", "s-b")],
    )


def order(days_from_now: int = -1, length_days: int = 7) -> dict[str, object]:
    start = datetime.now(UTC) + timedelta(days=days_from_now)
    return {
        "start": start.isoformat(),
        "end": (start + timedelta(days=length_days)).isoformat(),
        "reason": "粉尘防爆整改",
        "ordered_by": "镇应急办 2026-17号",
    }


async def test_town_roles_set_hours_and_order_shutdowns_others_may_not(live: LiveGateway) -> None:
    await world(live)
    duty = await client_as(live, "duty-1", Role.DUTY)
    firm = await client_as(live, "acme-user", Role.ENTERPRISE, enterprise="acme")
    community = await client_as(live, "east-officer", Role.COMMUNITY, villages=["东村"])
    async with duty, firm, community:
        # Before anyone registers it, the enterprise its sites name is shown with defaults.
        shown = (await duty.get("/api/enterprises/acme")).json()
        assert (shown["hours"], shown["current"], shown["shutdowns"]) == ("08:00-18:00", None, [])
        hours = {"name": "ACME Casting", "hours": "07:00-19:00", "days": "1-6"}
        assert (await firm.put("/api/enterprises/acme", json=hours)).status_code == 403
        assert (await community.put("/api/enterprises/acme", json=hours)).status_code == 403
        set_ = await live.client.put("/api/enterprises/acme", json=hours)  # admin
        assert set_.status_code == 200 and set_.json()["hours"] == "07:00-19:00"
        assert (await firm.post("/api/enterprises/acme/shutdowns", json=order())).status_code == 403
        created = await duty.post("/api/enterprises/acme/shutdowns", json=order())
        assert created.status_code == 201, created.text
        period = created.json()
        assert period["created_by"] == "duty-1" and period["kind"] == "shutdown"

        # The enterprise user sees the order in force, and its meter, but not zeta.
        own = (await firm.get("/api/enterprises/acme")).json()
        assert own["name"] == "ACME Casting" and own["current"]["id"] == period["id"]
        assert own["current"]["ordered_by"] == "镇应急办 2026-17号"
        assert own["meters"] == [
            {"device_id": "pm-a", "baseline_day_kwh": None, "baseline_load_kw": None}
        ]
        assert [e["id"] for e in (await firm.get("/api/enterprises")).json()] == ["acme"]
        assert (await firm.get("/api/enterprises/zeta")).status_code == 404
        assert (await firm.get("/api/enterprises/zeta/shutdowns")).status_code == 404
        assert (await firm.get("/api/enterprises/nobody")).status_code == 404
        listed = (await firm.get("/api/enterprises/acme/shutdowns")).json()
        assert [p["reason"] for p in listed] == ["粉尘防爆整改"]
        # The community officer of 东村 sees acme only; the duty officer both.
        assert [e["id"] for e in (await community.get("/api/enterprises")).json()] == ["acme"]
        assert (await community.get("/api/enterprises/zeta")).status_code == 404
        assert [e["id"] for e in (await duty.get("/api/enterprises")).json()] == ["acme", "zeta"]
        # An order for zeta (only named by its site) registers it first; both audited.
        assert (
            await duty.post("/api/enterprises/zeta/shutdowns", json=order(2))
        ).status_code == 201
        zeta = (await duty.get("/api/enterprises/zeta")).json()
        assert zeta["current"] is None and len(zeta["shutdowns"]) == 1  # starts in two days
    actions = [(e.actor, e.action, e.target) for e in await AuditLog(live.gateway.db).entries()]
    assert ("admin", "enterprise.add", "acme") in actions
    assert ("duty-1", "enterprise.shutdown.add", "acme") in actions
    assert ("duty-1", "enterprise.add", "zeta") in actions
    # ... and the production detector sees the order on acme's meter at once.
    calendar = live.gateway.registry.calendar_of("pm-a")
    assert calendar is not None and calendar.period_at(
        live.gateway.registry.shutdowns("acme")[0].start_ms + 1
    )


async def test_bad_hours_and_periods_get_a_clear_422(live: LiveGateway) -> None:
    await world(live)
    bad = await live.client.put("/api/enterprises/acme", json={"hours": "8 to 6"})
    assert bad.status_code == 422 and "08:00-18:00" in bad.text
    bad = await live.client.put("/api/enterprises/acme", json={"timezone": "Mars/Olympus"})
    assert bad.status_code == 422 and "timezone" in bad.text
    # One order, its end set before its start (two order() calls read the clock twice,
    # which made "end" a few microseconds after "start" and the period valid).
    one = order()
    backwards = {**one, "end": one["start"]}
    bad = await live.client.post("/api/enterprises/acme/shutdowns", json=backwards)
    assert bad.status_code == 422 and "after it starts" in bad.text
    bad = await live.client.post(
        "/api/enterprises/acme/shutdowns", json={**order(), "kind": "strike"}
    )
    assert bad.status_code == 422
    assert live.gateway.registry.shutdowns() == []
