"""The HTTP API: every route is authorized, registration works, bad requests get a clear 4xx."""

from __future__ import annotations

import re

import httpx

from alerts.model import AlertClass, Severity, Signal
from gateway.app import create_app
from tests.conftest import TOKEN, LiveGateway


def api_routes() -> list[tuple[str, str]]:
    from gateway.config import load_settings

    schema = create_app(load_settings()).openapi()
    found = []
    for path, operations in schema["paths"].items():
        for method in operations:  # every documented route: the API and /metrics
            found.append((method.upper(), re.sub(r"\{[a-z_]+\}", "1", path)))
    return found


ROUTES = api_routes()


def test_every_api_route_is_listed() -> None:
    paths = {p for _, p in ROUTES}
    assert {
        "/api/health",
        "/api/alerts",
        "/api/alerts/stream",
        "/api/devices",
        "/api/sites",
        "/api/telemetry",
        "/api/dead-letters",
    } <= paths


async def test_every_api_route_refuses_a_missing_or_wrong_token(live: LiveGateway) -> None:
    let_through = []
    async with httpx.AsyncClient(base_url=live.base_url, timeout=5) as anonymous:
        for method, path in ROUTES:
            if path.startswith("/api/auth/"):
                continue  # logging in needs no token (tests/test_access_login.py)
            for headers in ({}, {"Authorization": "Bearer wrong-token"}):
                response = await anonymous.request(method, path, headers=headers, json={})
                if response.status_code != 401 or "token" not in response.json()["detail"]:
                    let_through.append((method, path, headers, response.status_code))
    assert let_through == []


async def test_stream_refuses_any_token_in_the_url(live: LiveGateway) -> None:
    """Even the right token: a URL ends up in access logs, so only a header or cookie counts."""
    async with httpx.AsyncClient(base_url=live.base_url, timeout=5) as anonymous:
        for token in ("nope", TOKEN):
            response = await anonymous.get("/api/alerts/stream", params={"access_token": token})
            assert response.status_code == 401


async def test_register_site_and_device_then_list_them(live: LiveGateway) -> None:
    site = {
        "id": "shop-17",
        "name": "五金店",
        "village": "陂头村",
        "industry": "small_shop",
        "address": "陂头街 17 号",
    }
    assert (await live.client.post("/api/sites", json=site)).status_code == 201
    again = await live.client.post("/api/sites", json=site)
    assert again.status_code == 409 and "already exists" in again.json()["detail"]

    device = {"id": "efm-17-1", "profile": "electrical_fire_monitor", "site_id": "shop-17"}
    created = await live.client.post("/api/devices", json=device)
    assert created.status_code == 201
    assert created.json()["telemetry_topic"] == "ewg/v1/efm-17-1/telemetry"

    bad_profile = await live.client.post(
        "/api/devices", json={**device, "id": "x1", "profile": "toaster"}
    )
    assert bad_profile.status_code == 422 and "toaster" in bad_profile.json()["detail"]
    bad_site = await live.client.post(
        "/api/devices", json={**device, "id": "x2", "site_id": "nowhere"}
    )
    assert bad_site.status_code == 422 and "nowhere" in bad_site.json()["detail"]
    bad_id = await live.client.post("/api/devices", json={**device, "id": "../etc"})
    assert bad_id.status_code == 422

    devices = (await live.client.get("/api/devices")).json()
    assert [d["id"] for d in devices] == ["efm-17-1"]
    assert (await live.client.get("/api/devices/efm-17-1")).json()["site_id"] == "shop-17"
    assert (await live.client.get("/api/devices/nope")).status_code == 404
    sites = (await live.client.get("/api/sites")).json()
    assert sites == [{**site, "enterprise": ""}]

    entries = await live.gateway.audit.entries()
    assert [(e.actor, e.action, e.target) for e in entries][:2] == [
        ("admin", "device.add", "efm-17-1"),
        ("admin", "site.add", "shop-17"),
    ]


async def test_acknowledge_and_close_through_the_api(live: LiveGateway) -> None:
    await live.client.post(
        "/api/sites",
        json={"id": "s1", "name": "出租屋", "village": "长城社区", "industry": "rental_housing"},
    )
    await live.client.post(
        "/api/devices", json={"id": "sm-1", "profile": "smoke_alarm_nbiot", "site_id": "s1"}
    )
    changes = await live.gateway.alerts.handle(
        [
            Signal(
                "sm-1",
                "smoke_alarm",
                True,
                1_796_083_200_000,
                None,
                Severity.RED,
                AlertClass.HAZARD,
                "fire",
                "烟雾火警",
            )
        ]
    )
    alert_id = changes[0].alert.id

    listed = (await live.client.get("/api/alerts", params={"state": "open"})).json()
    assert [(a["id"], a["title_zh"], a["site_name"]) for a in listed] == [
        (alert_id, "烟雾火警", "出租屋")
    ]
    assert (await live.client.get("/api/alerts", params={"state": "bogus"})).status_code == 422

    ack = await live.client.post(f"/api/alerts/{alert_id}/ack", json={"note": "on my way"})
    assert ack.status_code == 200 and ack.json()["state"] == "acknowledged"
    assert ack.json()["acknowledged_by"] == "admin"
    twice = await live.client.post(f"/api/alerts/{alert_id}/ack", json={})
    assert twice.status_code == 409 and "already acknowledged" in twice.json()["detail"]

    bad = await live.client.post(f"/api/alerts/{alert_id}/close", json={"disposition": "oops"})
    assert bad.status_code == 422
    closed = await live.client.post(
        f"/api/alerts/{alert_id}/close", json={"disposition": "test", "note": "monthly test"}
    )
    assert closed.status_code == 200
    assert (closed.json()["state"], closed.json()["disposition"]) == ("closed", "test")
    assert (
        await live.client.post(f"/api/alerts/{alert_id}/close", json={"disposition": "test"})
    ).status_code == 409
    assert (await live.client.post("/api/alerts/999/ack", json={})).status_code == 404

    history = (await live.client.get(f"/api/alerts/{alert_id}/history")).json()
    assert [(h["from_state"], h["to_state"], h["actor"]) for h in history] == [
        (None, "raised", "system"),
        ("raised", "acknowledged", "admin"),
        ("acknowledged", "closed", "admin"),
    ]
    assert (await live.client.get("/api/alerts", params={"state": "open"})).json() == []


async def test_telemetry_query_checks_its_arguments(live: LiveGateway) -> None:
    missing = await live.client.get(
        "/api/telemetry", params={"device_id": "nope", "metric": "voltage_v"}
    )
    assert missing.status_code == 404
    await live.client.post(
        "/api/sites", json={"id": "s1", "name": "n", "village": "v", "industry": "i"}
    )
    await live.client.post(
        "/api/devices", json={"id": "d1", "profile": "power_meter", "site_id": "s1"}
    )
    backwards = await live.client.get(
        "/api/telemetry",
        params={"device_id": "d1", "metric": "active_power_kw", "start_ms": 10, "end_ms": 5},
    )
    assert backwards.status_code == 422


async def test_console_and_docs_are_served(live: LiveGateway) -> None:
    async with httpx.AsyncClient(base_url=live.base_url, timeout=5) as browser:
        page = await browser.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert (await browser.get("/openapi.json")).status_code == 200
