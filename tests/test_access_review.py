"""Findings of the hostile access review (R1), each pinned by the test that found it.

Live gateway, real Mosquitto, real HTTP: a community officer or an enterprise user
trying to reach what is not theirs through the side doors of routes that are
already scoped (nested lists, request bodies shaped like a browser form).
"""

from __future__ import annotations

import json

import httpx
import pytest

from gateway.errors import StoreError
from gateway.registry_model import Device, Site
from gateway.scope import Role
from tests.conftest import LiveGateway, register


async def _client_as(
    live: LiveGateway, name: str, role: Role, **scope: object
) -> httpx.AsyncClient:
    token = await live.gateway.tokens.create(name, role, **scope)  # type: ignore[arg-type]
    return httpx.AsyncClient(
        base_url=live.base_url, timeout=10, headers={"Authorization": f"Bearer {token}"}
    )


async def test_a_community_officer_sees_only_the_meters_of_its_own_villages(
    live: LiveGateway,
) -> None:
    """An enterprise with sites in two villages: the east officer sees acme (it has a site
    in the east), but the meter at acme's west site is the west officer's to see."""
    await register(
        live.gateway,
        [
            Site("acme-east", "ACME east works", "东村", "factory", enterprise="acme"),
            Site("acme-west", "ACME west works", "西村", "factory", enterprise="acme"),
        ],
        [
            Device("pm-east", "power_meter", "acme-east"),
            Device("pm-west", "power_meter", "acme-west"),
        ],
    )
    assert (
        await live.client.put("/api/enterprises/acme", json={"name": "ACME"})
    ).status_code == 200
    east = await _client_as(live, "east-officer", Role.COMMUNITY, villages=["东村"])
    firm = await _client_as(live, "acme-user", Role.ENTERPRISE, enterprise="acme")
    async with east, firm:
        assert (await east.get("/api/devices/pm-west")).status_code == 404
        one = (await east.get("/api/enterprises/acme")).json()
        assert [m["device_id"] for m in one["meters"]] == ["pm-east"]
        (listed,) = (await east.get("/api/enterprises")).json()
        assert [m["device_id"] for m in listed["meters"]] == ["pm-east"]
        # The enterprise itself (and the town) still see every meter of the enterprise.
        own = (await firm.get("/api/enterprises/acme")).json()
        assert sorted(m["device_id"] for m in own["meters"]) == ["pm-east", "pm-west"]
        town = (await live.client.get("/api/enterprises/acme")).json()
        assert sorted(m["device_id"] for m in town["meters"]) == ["pm-east", "pm-west"]


async def test_a_cross_site_form_cannot_log_a_browser_in(live: LiveGateway) -> None:
    """Login CSRF: a hostile page's <form enctype="text/plain"> can post a JSON-looking body
    (the only body a form sends without a preflight); it must not open a session."""
    await live.gateway.users.add("mallory", "mallory password 1", Role.ENTERPRISE, enterprise="m")
    body = json.dumps({"username": "mallory", "password": "mallory password 1"})
    async with httpx.AsyncClient(base_url=live.base_url, timeout=10) as browser:
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            answer = await browser.post(
                "/api/auth/login", content=body, headers={"Content-Type": content_type}
            )
            assert answer.status_code == 422, (content_type, answer.text)
            assert "ewg_session" not in answer.headers.get("set-cookie", "")
        assert await live.gateway.sessions.count("mallory") == 0


async def test_no_statement_rewrites_the_audit_log(live: LiveGateway) -> None:
    """UPDATE and DELETE are refused by triggers; INSERT OR REPLACE with an existing id
    would delete the old entry without firing the DELETE trigger (SQLite runs delete
    triggers for REPLACE only with recursive_triggers on), so it is refused too."""
    await live.gateway.audit.record("wang", "alert.close", "alert:1", {"note": "真火警"})
    (entry,) = await live.gateway.audit.entries(limit=1)
    forged = (entry.id, entry.ts_ms, "nobody", "alert.close", "alert:1", "{}")
    for sql, args in [
        ("UPDATE audit_log SET actor = 'nobody'", ()),
        ("DELETE FROM audit_log", ()),
        ("INSERT OR REPLACE INTO audit_log VALUES (?, ?, ?, ?, ?, ?)", forged),
        ("REPLACE INTO audit_log VALUES (?, ?, ?, ?, ?, ?)", forged),
    ]:
        with pytest.raises(StoreError, match="append-only"):
            await live.gateway.db.run(lambda c, s=sql, a=args: c.execute(s, a))
    (after,) = await live.gateway.audit.entries(limit=1)
    assert after == entry


async def test_the_plain_api_holds_enterprise_sites_to_known_villages_like_the_portal(
    live: LiveGateway,
) -> None:
    """The portal refuses an enterprise user's site in a village the town does not have (it
    would be hidden from every community officer); ``POST /api/sites`` is the same door."""
    await register(live.gateway, [Site("acme-1", "ACME", "东村", "factory", enterprise="acme")], [])
    firm = await _client_as(live, "acme-user", Role.ENTERPRISE, enterprise="acme")
    east = await _client_as(live, "east-officer", Role.COMMUNITY, villages=["东村"])
    async with firm, east:
        hidden = {"id": "acme-2", "name": "二号仓库", "village": "东材", "industry": "factory"}
        refused = await firm.post("/api/sites", json=hidden)
        assert refused.status_code == 422 and "东村" in refused.json()["detail"]
        assert live.gateway.registry.find_site("acme-2") is None
        seen = await firm.post("/api/sites", json={**hidden, "village": "东村"})
        assert seen.status_code == 201
        assert "acme-2" in [s["id"] for s in (await east.get("/api/sites")).json()]
    # Town roles may open a new village (a new community joins the scheme).
    new = {"id": "north-1", "name": "北店", "village": "北村", "industry": "small_shop"}
    assert (await live.client.post("/api/sites", json=new)).status_code == 201
