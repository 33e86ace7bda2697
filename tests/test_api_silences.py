"""Silences, incidents and inhibition through the real running gateway and its HTTP API."""

from __future__ import annotations

from typing import Any

import httpx

from alerts.model import AlertClass, Severity, Signal
from gateway.model import now_ms
from tests.conftest import LiveGateway

HOUR_S = 3600


async def setup_site(live: LiveGateway, site_id: str, devices: dict[str, str]) -> None:
    site = {"id": site_id, "name": f"{site_id} 五金厂", "village": "陂头村", "industry": "workshop"}
    assert (await live.client.post("/api/sites", json=site)).status_code == 201
    for device_id, profile in devices.items():
        body: dict[str, Any] = {"id": device_id, "profile": profile, "site_id": site_id}
        parent, _, profile = profile.rpartition(">")
        body["profile"] = profile
        if parent:
            body["parent_id"] = parent
        response = await live.client.post("/api/devices", json=body)
        assert response.status_code == 201, response.text


def signal(
    device: str,
    rule: str,
    severity: Severity,
    hazard: str,
    *,
    alert_class: AlertClass = AlertClass.HAZARD,
    active: bool = True,
) -> Signal:
    return Signal(device, rule, active, now_ms(), None, severity, alert_class, hazard, rule)


async def alert_of(live: LiveGateway, alert_id: int) -> dict[str, Any]:
    response = await live.client.get(f"/api/alerts/{alert_id}")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_set_see_and_end_a_silence(live: LiveGateway) -> None:
    await setup_site(live, "shop-17", {"emf-17": "electrical_fire_monitor"})
    [before] = await live.gateway.alerts.handle(
        [signal("emf-17", "residual_current", Severity.ORANGE, "leakage")]
    )

    created = await live.client.post(
        "/api/silences",
        json={"site_id": "shop-17", "duration_s": HOUR_S, "reason": "电工检修 electrician"},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    sid = body["id"]
    assert (body["state"], body["created_by"], body["site_id"]) == ("active", "admin", "shop-17")
    assert body["ends_at_ms"] - body["starts_at_ms"] == HOUR_S * 1000
    assert body["muted_alert_ids"] == [before.alert.id], "covers the alert already open"

    # An alert raised under the silence is raised, listed, and marked silenced.
    [during] = await live.gateway.alerts.handle(
        [signal("emf-17", "cable_temp_1", Severity.YELLOW, "overheating")]
    )
    shown = await alert_of(live, during.alert.id)
    assert (shown["state"], shown["silenced_by"], shown["muted"]) == ("raised", sid, True)
    listed = (await live.client.get("/api/alerts", params={"state": "open"})).json()
    assert {a["id"] for a in listed} == {before.alert.id, during.alert.id}

    assert [s["id"] for s in (await live.client.get("/api/silences")).json()] == [sid]
    active = await live.client.get("/api/silences", params={"state": "active"})
    assert [s["id"] for s in active.json()] == [sid]
    assert (await live.client.get("/api/silences", params={"state": "expired"})).json() == []
    one = (await live.client.get(f"/api/silences/{sid}")).json()
    assert one["muted_alert_ids"] == sorted([before.alert.id, during.alert.id])

    # Ending it early: kept on record, with who ended it; the alerts count again at once.
    ended = await live.client.delete(f"/api/silences/{sid}")
    assert ended.status_code == 200
    assert (ended.json()["state"], ended.json()["ended_by"]) == ("expired", "admin")
    assert ended.json()["muted_alert_ids"] == []
    assert (await alert_of(live, during.alert.id))["muted"] is False
    again = await live.client.delete(f"/api/silences/{sid}")
    assert again.status_code == 409 and "already ended" in again.json()["detail"]
    assert (await live.client.get("/api/silences", params={"state": "expired"})).json()[0][
        "id"
    ] == sid

    entries = await live.gateway.audit.entries()
    mine = [(e.actor, e.action, e.target) for e in entries if e.action.startswith("silence.")]
    assert mine == [
        ("admin", "silence.expire", f"silence:{sid}"),
        ("admin", "silence.create", f"silence:{sid}"),
    ]
    created_entry = next(e for e in entries if e.action == "silence.create")
    assert created_entry.detail["reason"] == "电工检修 electrician"
    history = (await live.client.get(f"/api/alerts/{during.alert.id}/history")).json()
    assert [h["note"] for h in history] == [
        f"silenced by silence {sid}",
        f"silence {sid} no longer applies",
    ]


async def test_bad_silences_get_a_clear_4xx(live: LiveGateway) -> None:
    await setup_site(live, "shop-18", {"smk-18": "smoke_alarm_nbiot"})
    good = {"site_id": "shop-18", "duration_s": HOUR_S, "reason": "maintenance"}

    async def refused(body: dict[str, Any], status: int = 422) -> str:
        response = await live.client.post("/api/silences", json=body)
        assert response.status_code == status, response.text
        return str(response.json()["detail"])

    assert "at least one matcher" in await refused({"duration_s": HOUR_S, "reason": "x"})
    assert "not found" in await refused({**good, "site_id": "nowhere"})
    assert "not found" in await refused({**good, "device_id": "ghost-1"})
    assert "exactly one" in await refused({**good, "ends_at_ms": now_ms() + 1000})
    assert "exactly one" in await refused({"site_id": "shop-18", "reason": "x"})
    assert "in the past" in await refused(
        {"site_id": "shop-18", "ends_at_ms": now_ms() - 1000, "starts_at_ms": 0, "reason": "x"}
    )
    assert "at most 30 days" in await refused({**good, "duration_s": 31 * 24 * HOUR_S})
    assert "reason" in await refused({**good, "reason": "   "})
    # A misspelt matcher must not quietly widen the silence to the whole site.
    assert "devce_id" in await refused({**good, "devce_id": "smk-18"})
    assert "alert_class" in await refused({**good, "alert_class": "panic"})
    assert (await live.client.get("/api/silences")).json() == []

    assert (await live.client.get("/api/silences", params={"state": "bogus"})).status_code == 422
    assert (await live.client.get("/api/silences/999")).status_code == 404
    assert (await live.client.delete("/api/silences/999")).status_code == 404


async def test_silence_and_incident_routes_refuse_a_missing_token(live: LiveGateway) -> None:
    async with httpx.AsyncClient(base_url=live.base_url, timeout=5) as anonymous:
        for method, path in [
            ("GET", "/api/silences"),
            ("POST", "/api/silences"),
            ("GET", "/api/silences/1"),
            ("DELETE", "/api/silences/1"),
            ("GET", "/api/incidents"),
            ("GET", "/api/incidents/1"),
        ]:
            response = await anonymous.request(
                method, path, json={"site_id": "x", "duration_s": 60, "reason": "x"}
            )
            assert response.status_code == 401, (method, path)
    assert await live.gateway.silences.list() == [], "nothing was set without a token"


async def test_one_fire_is_one_incident_with_red_on_top(live: LiveGateway) -> None:
    await setup_site(
        live,
        "factory",
        {
            "emf-1": "electrical_fire_monitor",
            "smk-1": "smoke_alarm_nbiot",
            "heat-1": "heat_detector",
        },
    )
    await setup_site(live, "house", {"smk-9": "smoke_alarm_nbiot"})
    handle = live.gateway.alerts.handle
    [pre] = await handle([signal("emf-1", "cable_temp_1", Severity.YELLOW, "overheating")])
    [battery] = await handle(
        [signal("smk-9", "battery_low", Severity.BLUE, "battery", alert_class=AlertClass.FAULT)]
    )
    [smoke, *_] = await handle([signal("smk-1", "smoke_alarm", Severity.RED, "fire")])
    [heat] = await handle([signal("heat-1", "heat_alarm", Severity.RED, "fire")])

    listed = (await live.client.get("/api/incidents")).json()
    assert [(i["site_id"], i["severity"], i["state"]) for i in listed] == [
        ("factory", "red", "open"),
        ("house", "blue", "open"),
    ], "worst first"
    factory = listed[0]
    assert sorted(factory["alert_ids"]) == sorted([pre.alert.id, smoke.alert.id, heat.alert.id])
    assert factory["site_name"] == "factory 五金厂" and factory["village"] == "陂头村"
    assert listed[1]["alert_ids"] == [battery.alert.id]

    detail = (await live.client.get(f"/api/incidents/{factory['id']}")).json()
    alerts = detail["alerts"]
    assert [a["severity"] for a in alerts] == ["red", "red", "yellow"], "red on top"
    assert {a["incident_id"] for a in alerts} == {factory["id"]}
    # The confirmed fire suppresses the pre-warning it explains: shown, not paged.
    prewarning = alerts[-1]
    assert (prewarning["id"], prewarning["suppressed_by"], prewarning["muted"]) == (
        pre.alert.id,
        smoke.alert.id,
        True,
    )
    assert (await alert_of(live, smoke.alert.id))["incident_id"] == factory["id"]

    only = await live.client.get("/api/incidents", params={"site_id": "house"})
    assert [i["site_id"] for i in only.json()] == ["house"]
    assert (await live.client.get("/api/incidents", params={"state": "closed"})).json() == []
    assert (await live.client.get("/api/incidents", params={"state": "bogus"})).status_code == 422
    assert (await live.client.get("/api/incidents/999")).status_code == 404

    # Closing the house's only alert closes its incident; open ones stay first.
    closed = await live.client.post(
        f"/api/alerts/{battery.alert.id}/close", json={"disposition": "device_fault"}
    )
    assert closed.status_code == 200
    listed = (await live.client.get("/api/incidents")).json()
    assert [(i["site_id"], i["state"]) for i in listed] == [
        ("factory", "open"),
        ("house", "closed"),
    ]
    assert listed[1]["closed_at"] is not None


async def test_parent_offline_suppresses_children_in_the_running_gateway(
    live: LiveGateway,
) -> None:
    await setup_site(
        live,
        "plant",
        {
            "td-1": "power_meter",  # stands in for the panel's transmission device
            "c-1": "td-1>heat_detector",
            "c-2": "td-1>heat_detector",
        },
    )

    def offline(device: str, active: bool = True) -> Signal:
        return signal(
            device,
            "offline",
            Severity.BLUE,
            "offline",
            alert_class=AlertClass.FAULT,
            active=active,
        )

    [parent] = await live.gateway.alerts.handle([offline("td-1")])
    children = await live.gateway.alerts.handle([offline("c-1"), offline("c-2")])
    for child in children:
        shown = await alert_of(live, child.alert.id)
        assert (shown["suppressed_by"], shown["muted"], shown["state"]) == (
            parent.alert.id,
            True,
            "raised",
        )
    await live.gateway.alerts.handle([offline("td-1", active=False)])
    for child in children:
        assert (await alert_of(live, child.alert.id))["muted"] is False
