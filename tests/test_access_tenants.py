"""Tenant isolation in a live gateway: an enterprise user never reaches another's data.

Two enterprises in two villages, real MQTT messages through Mosquitto, and the
enterprise user logged in by cookie as the portal does. Another enterprise's
device, alert, telemetry, statistics, rectification item and incident answer 404
exactly as a missing one does; lists hold only the user's own; and the live SSE
stream never carries the other enterprise's alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiomqtt
import httpx

from gateway.model import now_ms
from gateway.scope import Role
from tests.conftest import LiveGateway, eventually
from tests.test_rectification import png

PASSWORD = "tenant password 0123"
MINE = {"id": "acme-1", "village": "东村", "enterprise": "acme五金", "device": "acme-smoke"}
THEIRS = {"id": "zeta-1", "village": "西村", "enterprise": "zeta化工", "device": "zeta-smoke"}


@dataclass
class Tenant:
    site: str
    device: str
    alert_id: int = 0
    incident_id: int = 0
    item_id: int = 0


def _mqtt(live: LiveGateway) -> aiomqtt.Client:
    assert live.settings.broker_url is not None
    port = int(live.settings.broker_url.rsplit(":", 1)[1])
    return aiomqtt.Client("127.0.0.1", port, identifier=f"tenants-{now_ms()}", timeout=10)


async def _smoke_alarm(live: LiveGateway, device: str) -> int:
    """A real smoke-alarm event over MQTT; returns the alert it raised."""
    async with _mqtt(live) as client:
        body = {"ts": now_ms(), "type": "smoke_alarm", "detail": {}}
        await client.publish(f"ewg/v1/{device}/event", json.dumps(body), qos=1)

    async def raised() -> int | None:
        alerts = (await live.client.get("/api/alerts", params={"device_id": device})).json()
        return int(alerts[0]["id"]) if alerts else None

    return await eventually(raised)


async def _setup(live: LiveGateway) -> tuple[Tenant, Tenant]:
    tenants = []
    for spec in (MINE, THEIRS):
        site = {
            "id": spec["id"],
            "name": f"{spec['enterprise']}厂房",
            "village": spec["village"],
            "industry": "small_shop",
            "enterprise": spec["enterprise"],
        }
        assert (await live.client.post("/api/sites", json=site)).status_code == 201
        device = {"id": spec["device"], "profile": "smoke_alarm_nbiot", "site_id": spec["id"]}
        assert (await live.client.post("/api/devices", json=device)).status_code == 201
        tenant = Tenant(spec["id"], spec["device"])
        async with _mqtt(live) as client:
            reading = {"ts": now_ms(), "values": {"smoke_obscuration_pct": 0.5}}
            await client.publish(f"ewg/v1/{tenant.device}/telemetry", json.dumps(reading), qos=1)
        tenant.alert_id = await _smoke_alarm(live, tenant.device)
        alert = (await live.client.get(f"/api/alerts/{tenant.alert_id}")).json()
        tenant.incident_id = alert["incident_id"]
        item = await live.client.post(
            "/api/rectifications",
            json={"alert_id": tenant.alert_id, "assignee": "厂长", "deadline": "2099-01-01"},
        )
        assert item.status_code == 201, item.text
        tenant.item_id = item.json()["id"]
        tenants.append(tenant)
    await live.gateway.users.add(
        "acme-user", PASSWORD, Role.ENTERPRISE, enterprise=MINE["enterprise"]
    )
    return tenants[0], tenants[1]


@contextlib.asynccontextmanager
async def _logged_in(live: LiveGateway) -> AsyncIterator[httpx.AsyncClient]:
    """The enterprise user's browser: the session cookie, and the CSRF header on every call."""
    async with httpx.AsyncClient(base_url=live.base_url, timeout=10) as client:
        response = await client.post(
            "/api/auth/login", json={"username": "acme-user", "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
        yield client


def _same_404(theirs: httpx.Response, missing: httpx.Response, their_id: Any, fake: Any) -> None:
    """Another tenant's object answers exactly like one that does not exist."""
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["detail"] == missing.json()["detail"].replace(str(fake), str(their_id))


async def test_another_enterprises_objects_answer_404_like_missing_ones(
    live: LiveGateway,
) -> None:
    mine, theirs = await _setup(live)
    async with _logged_in(live) as me:
        for template, own, other, fake in [
            ("/api/devices/{}", mine.device, theirs.device, "no-such-device"),
            ("/api/alerts/{}", mine.alert_id, theirs.alert_id, 999999),
            ("/api/alerts/{}/history", mine.alert_id, theirs.alert_id, 999999),
            ("/api/incidents/{}", mine.incident_id, theirs.incident_id, 999999),
            ("/api/rectifications/{}", mine.item_id, theirs.item_id, 999999),
        ]:
            assert (await me.get(template.format(own))).status_code == 200, template
            _same_404(
                await me.get(template.format(other)),
                await me.get(template.format(fake)),
                other,
                fake,
            )
        metric: dict[str, str | int] = {"metric": "smoke_obscuration_pct", "start_ms": 0}
        own_readings = await me.get("/api/telemetry", params={"device_id": mine.device, **metric})
        assert own_readings.status_code == 200 and len(own_readings.json()) == 1
        _same_404(
            await me.get("/api/telemetry", params={"device_id": theirs.device, **metric}),
            await me.get("/api/telemetry", params={"device_id": "no-such-device", **metric}),
            theirs.device,
            "no-such-device",
        )
        _same_404(
            await me.get("/api/stats", params={"enterprise": THEIRS["enterprise"]}),
            await me.get("/api/stats", params={"enterprise": "nobody-ltd"}),
            THEIRS["enterprise"],
            "nobody-ltd",
        )
        # Acting on their objects is a 404 too, and changes nothing.
        ack = await me.post(f"/api/alerts/{theirs.alert_id}/ack", json={"note": "mine?"})
        assert ack.status_code == 404
        report = await me.post(
            f"/api/rectifications/{theirs.item_id}/report",
            data={"note": "fixed"},
            files=[("files", ("x.png", png(2, 2), "image/png"))],
        )
        assert report.status_code == 404
    theirs_now = (await live.client.get(f"/api/alerts/{theirs.alert_id}")).json()
    assert theirs_now["state"] == "raised"
    item = (await live.client.get(f"/api/rectifications/{theirs.item_id}")).json()
    assert item["state"] == "open" and item["evidence"] == []


async def test_lists_and_statistics_hold_only_the_enterprises_own(live: LiveGateway) -> None:
    mine, theirs = await _setup(live)
    async with _mqtt(live) as client:  # a device nobody registered: a dead letter
        await client.publish("ewg/v1/stranger/telemetry", b'{"values": {"x": 1}}', qos=1)

    async def dead_letter() -> bool:
        letters = (await live.client.get("/api/dead-letters")).json()
        return any(d["topic"] == "ewg/v1/stranger/telemetry" for d in letters)

    await eventually(dead_letter)
    async with _logged_in(live) as me:
        sites = [s["id"] for s in (await me.get("/api/sites")).json()]
        devices = [d["id"] for d in (await me.get("/api/devices")).json()]
        alerts = {a["site_id"] for a in (await me.get("/api/alerts")).json()}
        incidents = {i["site_id"] for i in (await me.get("/api/incidents")).json()}
        items = {i["site_id"] for i in (await me.get("/api/rectifications")).json()}
        letters = (await me.get("/api/dead-letters")).json()
        assert (sites, devices, alerts, incidents, items) == (
            [mine.site],
            [mine.device],
            {mine.site},
            {mine.site},
            {mine.site},
        )
        assert letters == [] and (await me.get("/api/dead-letters/counts")).json() == {}
        filtered = await me.get("/api/alerts", params={"site_id": theirs.site})
        assert filtered.status_code == 200 and filtered.json() == []

        report = (await me.get("/api/stats")).json()
        assert report["total"]["sites"] == 1 and report["total"]["alerts"] == 1
        assert [g["key"] for g in report["groups"]] == [MINE["village"]]
        assert [s["site_id"] for s in report["sites"]] == [mine.site]
        csv = (await me.get("/api/stats.csv", params={"table": "sites"})).text
        assert mine.site in csv and theirs.site not in csv
    town = (await live.client.get("/api/stats")).json()
    assert town["total"]["sites"] == 2 and town["total"]["alerts"] == 2


async def test_notifications_and_health_are_cut_to_the_scope_too(live: LiveGateway) -> None:
    mine, theirs = await _setup(live)

    async def both_notified() -> set[int] | None:
        log = (await live.client.get("/api/notifications")).json()
        told = {n["alert_id"] for n in log}
        return told if {mine.alert_id, theirs.alert_id} <= told else None

    await eventually(both_notified)
    async with _logged_in(live) as me:
        told = {n["alert_id"] for n in (await me.get("/api/notifications")).json()}
        assert told == {mine.alert_id}
        assert (await me.get(f"/api/alerts/{theirs.alert_id}/notifications")).status_code == 404
        health = (await me.get("/api/health")).json()
        assert set(health) == {"status", "degraded"}  # not the town's counters
    assert "counters" in (await live.client.get("/api/health")).json()


async def test_an_enterprise_user_registers_only_for_its_own_enterprise(
    live: LiveGateway,
) -> None:
    mine, theirs = await _setup(live)
    async with _logged_in(live) as me:
        site = {
            "id": "acme-2",
            "name": "二号仓库",
            "village": "西村",
            "industry": "small_shop",
            "enterprise": THEIRS["enterprise"],  # ignored: it is acme's
        }
        # A village the town does not have would hide the site from every community officer.
        typo = await me.post("/api/sites", json={**site, "village": "西"})
        assert typo.status_code == 422 and "西村" in typo.json()["detail"]
        created = await me.post("/api/sites", json=site)
        assert created.status_code == 201 and created.json()["enterprise"] == MINE["enterprise"]
        on_theirs = {"id": "sneaky", "profile": "smoke_alarm_nbiot", "site_id": theirs.site}
        refused = await me.post("/api/devices", json=on_theirs)
        assert refused.status_code == 422 and theirs.site in refused.json()["detail"]
        assert await live.gateway.registry.find_device("sneaky") is None
        # Enterprise users neither close alerts nor silence: that is the office's call.
        close = await me.post(
            f"/api/alerts/{mine.alert_id}/close", json={"disposition": "false_alarm"}
        )
        assert close.status_code == 403
        silence = await me.post("/api/silences", json={"site_id": mine.site, "duration_s": 60})
        assert silence.status_code == 403
        ack = await me.post(f"/api/alerts/{mine.alert_id}/ack", json={"note": "电工已到场"})
        # The owner's acknowledgement is recorded, not the town's (tests/test_owner_ack.py).
        assert ack.status_code == 200 and ack.json()["owner_acknowledged_by"] == "acme-user"
    audit = await live.gateway.audit.entries(limit=100)
    assert ("acme-user", "site.add", "acme-2") in {(e.actor, e.action, e.target) for e in audit}
    assert ("acme-user", "alert.owner_ack") in {(e.actor, e.action) for e in audit}


async def _events(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    event = ""
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            event = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            yield event, json.loads(line.removeprefix("data:").strip())


async def test_the_sse_stream_never_carries_another_enterprises_alert(
    live: LiveGateway,
) -> None:
    mine, theirs = await _setup(live)
    async with _logged_in(live) as me, me.stream("GET", "/api/alerts/stream") as stream:
        assert stream.status_code == 200
        async with live.client.stream("GET", "/api/alerts/stream") as town_stream:
            seen: list[int] = []
            town_seen: list[int] = []
            events = _events(stream)
            town_events = _events(town_stream)
            assert (await anext(events))[0] == "ready"
            assert (await anext(town_events))[0] == "ready"
            # Theirs first, then mine: when mine arrives, theirs would have been sent already.
            their_fire = await _smoke_alarm_on(live, theirs.device)
            my_fire = await _smoke_alarm_on(live, mine.device)

            async def until_mine() -> None:
                async for kind, body in events:
                    if kind == "alert":
                        seen.append(body["alert"]["id"])
                        if body["alert"]["id"] == my_fire:
                            return

            async def until_both() -> None:
                async for kind, body in town_events:
                    if kind == "alert":
                        town_seen.append(body["alert"]["id"])
                        if {their_fire, my_fire} <= set(town_seen):
                            return

            await asyncio.wait_for(asyncio.gather(until_mine(), until_both()), 15)
    assert my_fire in seen and their_fire not in seen
    assert {their_fire, my_fire} <= set(town_seen)


async def _smoke_alarm_on(live: LiveGateway, device: str) -> int:
    """A second fire on a device whose first alert was closed: a new alert id."""
    first = (await live.client.get("/api/alerts", params={"device_id": device})).json()
    for alert in first:
        if alert["state"] != "closed":
            closed = await live.client.post(
                f"/api/alerts/{alert['id']}/close", json={"disposition": "test"}
            )
            assert closed.status_code == 200, closed.text
    known = {a["id"] for a in first}
    async with _mqtt(live) as client:
        body = {"ts": now_ms(), "type": "smoke_alarm", "detail": {}}
        await client.publish(f"ewg/v1/{device}/event", json.dumps(body), qos=1)

    async def new_alert() -> int | None:
        alerts = (await live.client.get("/api/alerts", params={"device_id": device})).json()
        fresh = [a["id"] for a in alerts if a["id"] not in known]
        return int(fresh[0]) if fresh else None

    return await eventually(new_alert)


async def test_an_open_stream_ends_with_its_session(live: LiveGateway) -> None:
    mine, _ = await _setup(live)
    async with _logged_in(live) as me, me.stream("GET", "/api/alerts/stream") as stream:
        events = _events(stream)
        assert (await anext(events))[0] == "ready"
        assert (await me.post("/api/auth/logout")).status_code == 204
        fire = await _smoke_alarm_on(live, mine.device)

        async def rest() -> list[int]:
            return [body["alert"]["id"] async for kind, body in events if kind == "alert"]

        after_logout = await asyncio.wait_for(rest(), 15)  # the stream ends by itself
    assert fire not in after_logout
