"""Every route of the OpenAPI schema, for every role, against ``tests/access_matrix.py``.

A live gateway holds two villages with one enterprise each; each route is called
about A's objects by every kind of caller, and about B's by every role, and the
statuses must be the table's. Mismatches are collected and shown together.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import httpx

from alerts.model import AlertClass, Severity, Signal
from gateway.app import create_app
from gateway.config import load_settings
from gateway.model import now_ms
from gateway.scope import Role
from tests.access_matrix import MATRIX, ROLES, Row
from tests.conftest import LiveGateway
from tests.test_rectification import png

PASSWORD = "matrix password 0123"
SAFE = {"GET", "HEAD", "OPTIONS"}
_ids = itertools.count(1)


def schema_routes() -> list[tuple[str, str]]:
    schema = create_app(load_settings()).openapi()
    return [(m.upper(), path) for path, ops in schema["paths"].items() for m in ops]


def test_every_route_of_the_schema_has_a_row_and_every_row_a_route() -> None:
    routes = set(schema_routes())
    missing = sorted(routes - set(MATRIX))
    stale = sorted(set(MATRIX) - routes)
    assert not missing, (
        f"routes without a row in tests/access_matrix.py: {missing}. Add one per route: the"
        " status each role gets (see the module docstring); every route must be authorized."
    )
    assert not stale, f"rows in tests/access_matrix.py for routes that do not exist: {stale}"


@dataclass
class Side:
    key: str
    site: str
    village: str
    enterprise: str
    device: str
    alert_id: int = 0
    incident_id: int = 0
    silence_id: int = 0
    item_id: int = 0
    evidence_id: int = 0

    def values(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "village": self.village,
            "enterprise": self.enterprise,
            "device": self.device,
            "alert_id": self.alert_id,
            "incident_id": self.incident_id,
            "silence_id": self.silence_id,
            "item_id": self.item_id,
            "evidence_id": self.evidence_id,
        }


@dataclass
class World:
    live: LiveGateway
    a: Side
    b: Side
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    @property
    def admin(self) -> httpx.AsyncClient:
        return self.live.client

    async def raise_alert(self, side: Side, severity: Severity = Severity.YELLOW) -> int:
        changes = await self.live.gateway.alerts.handle(
            [
                Signal(
                    side.device,
                    f"matrix_{next(_ids)}",
                    True,
                    now_ms(),
                    None,
                    severity,
                    AlertClass.HAZARD,
                    "fire",
                    "矩阵告警",
                )
            ]
        )
        return changes[0].alert.id

    async def add_device(self, side: Side) -> str:
        device_id = f"m{next(_ids)}-{side.key}"
        body = {"id": device_id, "profile": "smoke_alarm_nbiot", "site_id": side.site}
        response = await self.admin.post("/api/devices", json=body)
        assert response.status_code == 201, response.text
        return device_id

    async def add_silence(self, side: Side) -> int:
        body = {"site_id": side.site, "duration_s": 3600, "reason": "matrix"}
        response = await self.admin.post("/api/silences", json=body)
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    async def end_silences(self, side: Side) -> None:
        """End the silences earlier rows left on the side's site (a muted alert is not paged)."""
        params = {"site_id": side.site, "state": "active"}
        silences = (await self.admin.get("/api/silences", params=params)).json()
        for silence in silences:
            response = await self.admin.delete(f"/api/silences/{silence['id']}")
            assert response.status_code == 200, response.text

    async def add_item(self, side: Side) -> int:
        body = {
            "site_id": side.site,
            "hazard": f"隐患{next(_ids)}",
            "description": "堵塞",
            "assignee": "x",
        }
        response = await self.admin.post(
            "/api/rectifications", json={**body, "deadline": "2099-01-01"}
        )
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    async def report(self, item_id: int) -> dict[str, Any]:
        response = await self.admin.post(
            f"/api/rectifications/{item_id}/report",
            data={"note": "整改完成"},
            files=[("files", ("fix.png", png(4, 4), "image/png"))],
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def fresh(self, kind: str | None, side: Side) -> dict[str, Any]:
        """Placeholder values for an object the request consumes."""
        if kind == "alert":
            return {"alert_id": await self.raise_alert(side)}
        if kind == "red_alert":  # a red fire with a chain to escalate: unsilenced, new
            await self.end_silences(side)
            return {"alert_id": await self.raise_alert(side, Severity.RED)}
        if kind == "device":
            return {"device": await self.add_device(side)}
        if kind == "silence":
            return {"silence_id": await self.add_silence(side)}
        if kind == "item":
            return {"item_id": await self.add_item(side)}
        if kind == "reported_item":
            item_id = await self.add_item(side)
            await self.report(item_id)
            return {"item_id": item_id}
        return {}

    async def log_in_again(self) -> None:
        for name, username in (
            ("community", "zhao"),
            ("enterprise", "qian"),
            ("no_csrf", "qian"),
        ):
            await _log_in(self.clients[name], username, csrf=name != "no_csrf")


async def _log_in(client: httpx.AsyncClient, username: str, *, csrf: bool) -> None:
    client.cookies.clear()
    response = await client.post(
        "/api/auth/login", json={"username": username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    if csrf:
        client.headers["X-CSRF-Token"] = response.json()["csrf_token"]


async def build_world(live: LiveGateway) -> World:
    """Two villages, one enterprise each, with a device, alert, incident, silence, item."""
    a = Side("a", "a-shop", "东村", "acme", "a-smoke")
    b = Side("b", "b-shop", "西村", "zeta", "b-smoke")
    world = World(live, a, b)
    for side in (a, b):
        site = {
            "id": side.site,
            "name": f"{side.enterprise}门店",
            "village": side.village,
            "industry": "small_shop",
            "enterprise": side.enterprise,
        }
        assert (await world.admin.post("/api/sites", json=site)).status_code == 201
        device = {"id": side.device, "profile": "smoke_alarm_nbiot", "site_id": side.site}
        assert (await world.admin.post("/api/devices", json=device)).status_code == 201
        side.alert_id = await world.raise_alert(side)
        alert = (await world.admin.get(f"/api/alerts/{side.alert_id}")).json()
        side.incident_id = int(alert["incident_id"])
        side.silence_id = await world.add_silence(side)
        side.item_id = await world.add_item(side)
        side.evidence_id = int((await world.report(side.item_id))["evidence"][0]["id"])

    gateway = live.gateway
    await gateway.users.add("zhao", PASSWORD, Role.COMMUNITY, villages=[a.village])
    await gateway.users.add("qian", PASSWORD, Role.ENTERPRISE, enterprise=a.enterprise)
    duty = await gateway.tokens.create("matrix-duty", Role.DUTY)

    def client(headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=live.base_url, timeout=10, headers=headers)

    world.clients = {
        "admin": live.client,
        "duty": client({"Authorization": f"Bearer {duty}"}),
        "community": client(),
        "enterprise": client(),
        "no_csrf": client(),
        "none": client(),
        "wrong_token": client({"Authorization": "Bearer ewg_wrong_token"}),
    }
    await world.log_in_again()
    return world


def _fill(value: Any, values: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return value.format_map(values)
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    return value


async def _call(
    world: World, caller: str, method: str, path: str, row: Row, side: Side
) -> tuple[str, int, str]:
    """One request; returns the URL asked, the status and the start of the answer."""
    values = {**side.values(), **await world.fresh(row.fresh, side), "new": f"m{next(_ids)}"}
    values["device_id"] = values["device"]  # the path's name for it
    url = _fill(path, values)
    kwargs: dict[str, Any] = {"params": _fill(row.params, values)}
    body = _fill(row.json, values)
    if row.multipart:
        kwargs["data"] = body
        kwargs["files"] = [("files", ("fix.png", png(3, 3), "image/png"))]
    elif body is not None:
        kwargs["json"] = body
    elif method not in SAFE:
        kwargs["json"] = {}
    async with world.clients[caller].stream(method, url, **kwargs) as response:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            text = "(event stream)"
        else:
            text = (await response.aread()).decode(errors="replace")[:160]
    if row.fresh == "session":
        await world.log_in_again()
    return url, response.status_code, text


def _expected(row: Row, caller: str, method: str) -> int:
    if caller in ROLES:
        return row.own(caller)
    if caller == "no_csrf":
        return row.enterprise if row.public or method in SAFE else 403
    return row.admin if row.public else 401  # none, wrong_token


def _cross(row: Row, path: str) -> bool:
    if row.cross is not None:
        return row.cross
    named = re.search(r"\{[a-z_]+\}", path) or any(
        "{" in str(v) for v in (row.params or {}).values()
    )
    return bool(named) or any("{site}" in str(v) for v in (row.json or {}).values())


def _expected_other(row: Row, role: str) -> int:
    if role in row.other:
        return row.other[role]
    own = row.own(role)
    if role in ("admin", "duty") or own in (401, 403):
        return own
    return 404


async def test_every_route_answers_every_role_as_the_matrix_says(live: LiveGateway) -> None:
    world = await build_world(live)
    wrong: list[str] = []
    callers = (*ROLES, "no_csrf", "none", "wrong_token")
    checked = 0
    for method, path in schema_routes():
        row = MATRIX.get((method, path))
        if row is None:
            continue  # reported by the test above
        for caller in callers:
            url, got, text = await _call(world, caller, method, path, row, world.a)
            want = _expected(row, caller, method)
            checked += 1
            if got != want:
                wrong.append(f"{method} {url} as {caller}: {got}, expected {want}: {text}")
        if not _cross(row, path):
            continue
        for role in ROLES:
            url, got, text = await _call(world, role, method, path, row, world.b)
            want = _expected_other(row, role)
            checked += 1
            if got != want:
                wrong.append(
                    f"{method} {url} (other tenant) as {role}: {got}, expected {want}: {text}"
                )
    for name, client in world.clients.items():
        if name != "admin":
            await client.aclose()
    assert not wrong, f"{len(wrong)} of {checked} answers differ:\n" + "\n".join(wrong)
    assert checked > 7 * len(MATRIX)
