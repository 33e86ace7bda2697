"""The portal's API over a live gateway, as the portal page (cookie + CSRF) and scripts use it.

The browser test (tests/test_portal_browser.py) covers the happy path with per-device broker
accounts; here are the rules around it, which a user meets as refusals: an enterprise
registers only for itself and only in a known village, another enterprise's site or device
answers exactly like a missing one, a community officer may look but not register, and on an
anonymous broker the sheet says no secret is needed.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.config import load_settings
from gateway.scope import Role
from tests.conftest import LiveGateway

PASSWORD = "portal-password-for-tests"
OWN = {
    "id": "acme-works",
    "name": "A",
    "village": "陂头村",
    "industry": "workshop",
    "enterprise": "acme",
}
OTHER = {"id": "rival-works", "name": "R", "village": "陂头村", "industry": "workshop",
         "enterprise": "rival"}  # fmt: skip


@pytest.fixture
async def town(live: LiveGateway) -> AsyncIterator[LiveGateway]:
    for site in (OWN, OTHER):
        assert (await live.client.post("/api/sites", json=site)).status_code == 201
    users = live.gateway.users
    await users.add("acme-li", PASSWORD, Role.ENTERPRISE, enterprise="acme")
    await users.add("grid-chen", PASSWORD, Role.COMMUNITY, villages=["陂头村"])
    yield live


class Browser:
    """What the portal page does: a session cookie, and the CSRF header on changes."""

    def __init__(self, client: httpx.AsyncClient, csrf: str) -> None:
        self.client = client
        self.csrf = csrf

    async def get(self, path: str) -> httpx.Response:
        return await self.client.get(path)

    async def post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.client.post(path, json=body or {}, headers={"X-CSRF-Token": self.csrf})


@pytest.fixture
async def acme(town: LiveGateway) -> AsyncIterator[Browser]:
    async with _session(town, "acme-li") as browser:
        yield browser


class _session:
    def __init__(self, live: LiveGateway, username: str) -> None:
        self.client = httpx.AsyncClient(base_url=live.base_url, timeout=10)
        self.username = username

    async def __aenter__(self) -> Browser:
        login = {"username": self.username, "password": PASSWORD}
        response = await self.client.post("/api/auth/login", json=login)
        assert response.status_code == 200, response.text
        return Browser(self.client, response.json()["csrf_token"])

    async def __aexit__(self, *_: object) -> None:
        await self.client.aclose()


async def test_an_enterprise_registers_sites_for_itself_in_a_known_village(
    town: LiveGateway, acme: Browser
) -> None:
    site = {"name": "二号仓库", "village": "陂头村", "industry": "workshop"}
    foreign = await acme.post("/api/portal/sites", {**site, "enterprise": "rival"})
    assert foreign.status_code == 422 and "own enterprise" in foreign.json()["detail"]
    typo = await acme.post("/api/portal/sites", {**site, "village": "陂头"})
    assert typo.status_code == 422 and "陂头村" in typo.json()["detail"]
    taken = await acme.post("/api/portal/sites", {**site, "id": "rival-works"})
    assert taken.status_code == 409

    created = await acme.post("/api/portal/sites", site)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["enterprise"] == "acme" and body["id"].startswith("site-")
    assert town.gateway.registry.site(body["id"]).enterprise == "acme"
    added = [
        (e.actor, e.target) for e in await town.gateway.audit.entries() if e.action == "site.add"
    ]
    assert ("acme-li", body["id"]) in added
    choices = (await acme.get("/api/portal/choices")).json()
    assert choices["enterprise"] == "acme" and choices["villages"] == ["陂头村"]
    assert choices["accounts"] is False and "workshop" in choices["industries"]


async def test_another_enterprises_site_and_device_answer_like_missing_ones(
    town: LiveGateway, acme: Browser
) -> None:
    rival_device = {"id": "rival-gas", "profile": "gas_detector", "site_id": "rival-works"}
    assert (await town.client.post("/api/devices", json=rival_device)).status_code == 201

    for site_id in ("rival-works", "no-such-site"):
        refused = await acme.post(
            "/api/portal/devices", {"site_id": site_id, "profile": "gas_detector"}
        )
        assert refused.status_code == 404
        assert refused.json() == {"detail": f"site {site_id!r} not found"}
    for device_id in ("rival-gas", "no-such-device"):
        for response in (
            await acme.get(f"/api/portal/devices/{device_id}/sheet"),
            await acme.post(f"/api/portal/devices/{device_id}/secret"),
        ):
            assert response.status_code == 404
            assert response.json() == {"detail": f"device {device_id!r} not found"}
    assert [d.id for d in town.gateway.registry.devices()] == ["rival-gas"]


async def test_on_an_anonymous_broker_the_sheet_needs_no_secret(
    town: LiveGateway, acme: Browser
) -> None:
    created = await acme.post(
        "/api/portal/devices", {"site_id": "acme-works", "profile": "electrical_fire_monitor"}
    )
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    sheet = created.json()["sheet"]
    assert created.json()["device"]["id"] == sheet["device_id"] == "acme-works-01"
    assert (sheet["accounts"], sheet["username"], sheet["secret"]) == (False, None, None)
    assert " -P " not in sheet["mosquitto_pub"] and sheet["telemetry_topic"].endswith("/telemetry")
    assert sheet["last_will"] == {"topic": "ewg/v1/acme-works-01/status", "payload": "offline",
                                  "retain": True}  # fmt: skip
    again = await acme.post(
        "/api/portal/devices", {"site_id": "acme-works", "profile": "gas_detector"}
    )
    assert again.json()["device"]["id"] == "acme-works-02"  # the next free id
    rotate = await acme.post("/api/portal/devices/acme-works-01/secret")
    assert rotate.status_code == 409 and "broker accounts are off" in rotate.json()["detail"]
    unknown = await acme.post(
        "/api/portal/devices", {"site_id": "acme-works", "profile": "toaster"}
    )
    assert unknown.status_code == 422 and "gas_detector" in unknown.json()["detail"]


async def test_a_community_officer_may_look_but_not_register(town: LiveGateway) -> None:
    device = {"id": "acme-gas", "profile": "gas_detector", "site_id": "acme-works"}
    assert (await town.client.post("/api/devices", json=device)).status_code == 201
    async with _session(town, "grid-chen") as grid:
        assert (await grid.get("/api/portal/devices/acme-gas/sheet")).status_code == 200
        refused = await grid.post("/api/portal/devices", {**device, "id": "x"})
        assert refused.status_code == 403
        site = {"name": "n", "village": "陂头村", "industry": "workshop"}
        assert (await grid.post("/api/portal/sites", site)).status_code == 403


async def test_without_a_session_or_csrf_header_nothing_changes(
    town: LiveGateway, acme: Browser
) -> None:
    body = {"site_id": "acme-works", "profile": "gas_detector"}
    async with httpx.AsyncClient(base_url=town.base_url) as stranger:
        assert (await stranger.post("/api/portal/devices", json=body)).status_code == 401
        assert (await stranger.get("/api/portal/choices")).status_code == 401
    forged = await acme.client.post("/api/portal/devices", json=body)  # no X-CSRF-Token
    assert forged.status_code == 403
    assert town.gateway.registry.devices() == []


PORTAL_JS = Path(__file__).resolve().parent.parent / "gateway" / "console" / "portal.js"


def _called_paths(source: str) -> set[str]:
    """The API paths portal.js calls, ``{x}`` for each id it fills in."""
    found = set()
    for literal in re.findall(r"['`](/api/[^'`]*)['`]", source):
        path = re.sub(r"\$\{[^}]*\}", "{x}", literal.split("?")[0])
        found.add(path + "{x}" if path.endswith("/") else path)
    return found


def test_every_api_path_the_portal_page_calls_exists(tmp_path: Path) -> None:
    """A renamed or removed route would leave a portal view silently empty."""
    schema = create_app(load_settings(data_dir=tmp_path)).openapi()
    routes = [re.sub(r"\{[^}]+\}", "{x}", p) for p in schema["paths"]]
    called = _called_paths(PORTAL_JS.read_text(encoding="utf-8"))
    assert len(called) >= 12
    assert sorted(called - set(routes)) == []


def test_every_portal_label_exists_in_both_languages() -> None:
    source = PORTAL_JS.read_text(encoding="utf-8")
    zh = source[source.index("  zh: {") : source.index("  en: {")]
    en = source[source.index("  en: {") : source.index("});")]

    def keys(block: str) -> set[str]:
        return set(re.findall(r"\b(p_[a-z0-9_]+):", block))

    assert keys(zh) == keys(en)
    used = set(re.findall(r"t\('(p_[a-z0-9_]*[a-z0-9])'", source))
    assert used and used <= keys(zh)
