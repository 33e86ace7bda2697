"""The enterprise portal in a real browser, over the real stack with per-device broker accounts.

Debian Chromium (Playwright) -> the gateway's API and pages -> a real Mosquitto with the
dynamic-security plugin. What is checked is what an enterprise's staff would notice: they log
in and land on their portal, see only their own sites, register a device and copy its
credentials off the page; the copied ``mosquitto_pub`` line, run as pasted, gets a reading
through the broker onto the device page, while a wrong secret is refused by the broker; the
secret is gone once they leave the sheet; another enterprise's alert or device opened by URL
is "not found" (the API says 404); acknowledging an own alert and answering a rectification
item with a photo work and are recorded under their name.
Screenshots land in artifacts/screenshots/ (and, for the README, docs/screenshots/).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shlex
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.browser import CHROMIUM

if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing (Debian package chromium; scripts/test.sh installs it)",
        allow_module_level=True,
    )

from playwright.async_api import Browser, FilePayload, Page, expect

from gateway.scope import Role
from tests import test_broker_accounts as broker_accounts
from tests.browser import chromium, publish, screenshot
from tests.conftest import LiveGateway, eventually, run_gateway
from tests.servers import Mosquitto

# The real broker with dynamic security, and the settings that make the gateway manage it
# (fixtures and helpers of tests/test_broker_accounts.py, reused rather than copied).
dynsec_broker = broker_accounts.dynsec_broker
secured_settings = broker_accounts.secured_settings

expect.set_options(timeout=15_000)

PASSWORD = "portal-password-for-tests"
VILLAGE = "陂头村"
OWN_SITE = {
    "id": "acme-works",
    "name": "安美五金加工厂",
    "village": VILLAGE,
    "industry": "workshop",
    "address": "陂头工业区 3 号",
    "enterprise": "acme",
}
OTHER_SITE = {
    "id": "rival-works",
    "name": "对面的加工厂",
    "village": VILLAGE,
    "industry": "workshop",
    "enterprise": "rival",
}
#: 60 %LEL is above the 50 %LEL level-2 alarm of the gas detector profile: a red alert at once.
GAS_ALARM = 60.0


@dataclass
class Portal:
    live: LiveGateway
    broker: Mosquitto
    browser: Browser


@pytest.fixture
async def portal(tmp_path: Path, dynsec_broker: Mosquitto) -> AsyncIterator[Portal]:
    async with run_gateway(secured_settings(tmp_path, dynsec_broker)) as live:
        for site in (OWN_SITE, OTHER_SITE):
            assert (await live.client.post("/api/sites", json=site)).status_code == 201
        users = live.gateway.users
        await users.add(
            "acme-li", PASSWORD, Role.ENTERPRISE, display_name="李工", enterprise="acme"
        )
        await users.add("rival-wu", PASSWORD, Role.ENTERPRISE, enterprise="rival")
        async with chromium() as browser:
            yield Portal(live, dynsec_broker, browser)


async def signed_in(portal: Portal, username: str = "acme-li", **context: Any) -> Page:
    """A fresh browser that logs in on the login page and is sent on to the portal."""
    ctx = await portal.browser.new_context(
        locale="zh-CN", viewport=context.pop("viewport", {"width": 1280, "height": 900}), **context
    )
    await ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=portal.live.base_url)
    page = await ctx.new_page()
    await page.goto(f"{portal.live.base_url}/login.html")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/portal.html**")
    await expect(page.locator("#user")).to_contain_text("企业用户")
    return page


async def enrol(live: LiveGateway, device_id: str, site_id: str) -> str:
    """Register a gas detector as the office would (admin token); its secret."""
    body = {
        "id": device_id,
        "profile": "gas_detector",
        "site_id": site_id,
        "name": "储罐区气体探测",
    }
    response = await live.client.post("/api/devices", json=body)
    assert response.status_code == 201, response.text
    secret: str = response.json()["credentials"]["secret"]
    return secret


async def publish_gas(broker: Mosquitto, device_id: str, secret: str, value: float) -> None:
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, identifier=device_id, username=device_id, password=secret
    ) as client:
        body = json.dumps({"values": {"gas_lel_pct": value}})
        await client.publish(f"ewg/v1/{device_id}/telemetry", body, qos=1)


async def open_alert_of(live: LiveGateway, device_id: str) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        alerts = (await live.client.get("/api/alerts", params={"device_id": device_id})).json()
        return alerts[0] if alerts else None

    return await eventually(found)


async def clipboard_after(page: Page, button: str) -> str:
    await page.click(button)
    await expect(page.locator(button)).to_have_attribute("data-copied", "true")
    text: str = await page.evaluate("navigator.clipboard.readText()")
    return text


async def run_pasted(line: str) -> tuple[int, str]:
    """Run a command line as pasted into a shell (shlex splits it like one)."""
    process = await asyncio.create_subprocess_exec(
        *shlex.split(line), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode(errors="replace")


async def snap(page: Page, name: str) -> None:
    publish(await screenshot(page, name), name)


async def test_an_enterprise_user_registers_a_device_and_its_copied_credentials_work(
    portal: Portal,
) -> None:
    live = portal.live
    page = await signed_in(portal)

    # Own sites only: the other enterprise's site in the same village is not listed.
    site_card = page.locator('[data-site-id="acme-works"]')
    await expect(site_card).to_contain_text("安美五金加工厂")
    await expect(page.locator('[data-site-id="rival-works"]')).to_have_count(0)
    # English one click away, and back (the choice is the console's, shared with it).
    await page.click("#lang-en")
    await expect(page.locator("#sites h2")).to_have_text("My sites and devices")
    await expect(site_card.get_by_role("link", name="Register a device here")).to_be_visible()
    await page.click("#lang-zh")

    await site_card.get_by_role("link", name="在此场所登记设备").click()
    form = page.locator("#device-form")
    await expect(form.locator("select[name=site_id]")).to_have_value("acme-works")
    await form.locator("select[name=profile]").select_option("gas_detector")
    await expect(page.locator("#profile-about")).to_contain_text("gas_lel_pct (%LEL)")
    await form.locator("input[name=name]").fill("储气间可燃气体探测器")
    await snap(page, "portal-register")
    async with page.expect_response("**/api/portal/devices") as answer:
        await form.get_by_role("button", name="登记并获取连接信息").click()
    registered = await answer.value
    assert registered.status == 201 and registered.headers["cache-control"] == "no-store"

    # The sheet: the secret with a clear warning, every field with a copy button.
    await expect(page.locator("#secret-warning")).to_contain_text("密钥只显示这一次")
    device_id = "acme-works-01"  # the portal picked a free id at the user's site
    await expect(page.locator('[data-field="client_id"] .value')).to_have_text(device_id)
    await expect(page.locator('[data-field="username"] .value')).to_have_text(device_id)
    await expect(page.locator('[data-field="port"] .value')).to_have_text(str(portal.broker.port))
    await snap(page, "portal-sheet")
    secret = await clipboard_after(page, '[data-copy="secret"]')
    command = await clipboard_after(page, '[data-copy="mosquitto_pub"]')
    assert len(secret) >= 40 and f"-P {secret}" in command
    # Clicking away before saving it asks first; saying no keeps the secret on screen.
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.dismiss()))
    await page.get_by_role("link", name="我的告警").click()
    await expect(page.locator('[data-field="secret"] .value')).to_have_text(secret)

    # The copied command, run as pasted, publishes through the broker with those credentials.
    code, said = await run_pasted(command)
    assert code == 0, said
    # One character off, and the broker refuses the connection.
    wrong = command.replace(f"-P {secret}", f"-P {secret[:-1]}{'x' if secret[-1] != 'x' else 'y'}")
    code, said = await run_pasted(wrong)
    assert code != 0 and "not authori" in said.lower(), said

    # Leaving the sheet forgets the secret; the device page shows the reading that came in.
    await page.get_by_role("button", name="我已保存，前往设备页").click()
    await page.wait_for_url(f"**/portal.html#/device/{device_id}")
    reading = page.locator('#latest [data-metric="gas_lel_pct"]')
    await expect(reading).to_have_attribute("data-value", "12.5")
    await expect(page.locator("#device-online")).to_contain_text("在线")
    await expect(page.locator("#chart")).to_have_attribute("data-points", "1")
    await expect(page.locator("#secret-gone")).to_be_visible()
    assert secret not in await page.content()
    # A second reading shows up without reloading the page (it refreshes every few seconds).
    await publish_gas(portal.broker, device_id, secret, 7.5)
    await expect(reading).to_have_attribute("data-value", "7.5")
    await expect(page.locator("#chart")).to_have_attribute("data-points", "2")
    await snap(page, "portal-device")

    # Recorded under the user's name; the registry keeps only a hash of the secret.
    shown = (await live.client.get(f"/api/devices/{device_id}")).json()
    assert (shown["site_id"], shown["profile"]) == ("acme-works", "gas_detector")
    entries = await live.gateway.audit.entries()
    assert ("acme-li", "device.add", device_id) in [(e.actor, e.action, e.target) for e in entries]
    assert all(secret not in json.dumps(e.detail) for e in entries)
    assert await live.gateway.accounts.verify(device_id, secret)


async def test_a_new_secret_from_the_device_page_replaces_the_old_one(portal: Portal) -> None:
    old = await enrol(portal.live, "acme-gas-2", "acme-works")
    page = await signed_in(portal)
    await page.goto(f"{portal.live.base_url}/portal.html#/device/acme-gas-2")
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.get_by_role("button", name="重新生成密钥").click()
    await expect(page.locator("#secret-warning")).to_be_visible()
    new = (await page.locator('[data-field="secret"] .value').text_content() or "").strip()
    assert new and new != old
    assert await portal.live.gateway.accounts.verify("acme-gas-2", new)
    assert not await portal.live.gateway.accounts.verify("acme-gas-2", old)
    rotated = [
        (e.actor, e.target)
        for e in await portal.live.gateway.audit.entries()
        if e.action == "device.secret.rotate"
    ]
    assert rotated == [("acme-li", "acme-gas-2")]


async def test_own_alerts_can_be_acknowledged_and_another_enterprises_are_not_found(
    portal: Portal,
) -> None:
    live = portal.live
    own_secret = await enrol(live, "acme-gas", "acme-works")
    other_secret = await enrol(live, "rival-gas", "rival-works")
    await publish_gas(portal.broker, "acme-gas", own_secret, GAS_ALARM)
    await publish_gas(portal.broker, "rival-gas", other_secret, GAS_ALARM)
    own = await open_alert_of(live, "acme-gas")
    other = await open_alert_of(live, "rival-gas")

    page = await signed_in(portal)
    # The home page counts the user's own alerts only (the other enterprise's red one is not).
    await expect(page.locator("#summary")).to_contain_text("未关闭告警 1 条（红色 1）")
    await expect(page.locator('[data-device-id="acme-gas"] .reading')).to_contain_text("60 %LEL")
    await expect(page.locator('[data-site-id="rival-works"]')).to_have_count(0)
    await snap(page, "portal-home")
    await page.get_by_role("link", name="我的告警").click()
    row = page.locator(f'#alerts-open [data-alert-id="{own["id"]}"]')
    await expect(row).to_have_attribute("data-severity", "red")
    await expect(page.locator(f'[data-alert-id="{other["id"]}"]')).to_have_count(0)
    await snap(page, "portal-alerts")

    await row.get_by_role("link").click()
    await expect(page.locator("#alert-chart")).to_have_attribute("data-points", "1")  # the 60 %LEL
    await page.locator("#ack-form input[name=note]").fill("已安排电工到场检查")
    await page.get_by_role("button", name="确认收到").click()
    # The owner's acknowledgement is recorded and shown, but the alert stays raised for the
    # town (its escalation and the duty board's alarm go on until staff acknowledge).
    await expect(page.locator("#alert-owner-acked-by")).to_contain_text("acme-li")
    await expect(page.locator("#alert-state")).to_have_attribute("data-state", "raised")
    await expect(page.locator("#notice")).to_contain_text("已确认收到")
    await expect(page.locator("#ack-form")).to_have_count(0)
    await snap(page, "portal-alert")
    await expect(page.locator("#alert-history")).to_contain_text("acme-li")
    await expect(page.locator("#alert-history")).to_contain_text("已安排电工到场检查")
    acked = (await live.client.get(f"/api/alerts/{own['id']}")).json()
    assert (acked["state"], acked["acknowledged"]) == ("raised", False)
    assert acked["owner_acknowledged_by"] == "acme-li"

    # Another enterprise's alert and device, opened by URL: "not found", and 404 from the API.
    await page.goto(f"{live.base_url}/portal.html#/alert/{other['id']}")
    await expect(page.locator("#notfound")).to_contain_text("未找到")
    await expect(page.locator("#notice")).to_be_hidden()
    assert "rival" not in (await page.locator("main").inner_text()).lower()
    await snap(page, "portal-notfound")
    status = await page.evaluate(f"fetch('/api/alerts/{other['id']}').then(r => r.status)")
    assert status == 404
    await page.goto(f"{live.base_url}/portal.html#/device/rival-gas")
    await expect(page.locator("#notfound")).to_be_visible()
    sheet = await page.evaluate("fetch('/api/portal/devices/rival-gas/sheet').then(r => r.status)")
    assert sheet == 404
    # The other enterprise's alert stays untouched.
    untouched = (await live.client.get(f"/api/alerts/{other['id']}")).json()
    assert untouched["acknowledged"] is False

    # A new alarm at the user's site shows up on the open list without reloading (the alert
    # stream triggers the redraw); one at the other enterprise's site does not.
    await page.goto(f"{live.base_url}/portal.html#/alerts")
    await expect(page.locator("#alerts-open [data-alert-id]")).to_have_count(1)
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    second = await enrol(live, "acme-gas-2", "acme-works")
    rival_second = await enrol(live, "rival-gas-2", "rival-works")
    await publish_gas(portal.broker, "rival-gas-2", rival_second, GAS_ALARM)
    await publish_gas(portal.broker, "acme-gas-2", second, GAS_ALARM)
    fresh = await open_alert_of(live, "acme-gas-2")
    await expect(page.locator(f'#alerts-open [data-alert-id="{fresh["id"]}"]')).to_be_visible()
    await expect(page.locator("#alerts-open [data-alert-id]")).to_have_count(2)


async def test_a_rectification_item_is_answered_with_a_photo_and_a_note(portal: Portal) -> None:
    live = portal.live
    created = await live.client.post(
        "/api/rectifications",
        json={
            "site_id": "acme-works",
            "hazard": "配电箱电线私拉乱接",
            "description": "二楼配电箱内有临时接线，需规范整改",
            "assignee": "李工",
            "deadline": "2099-12-31",
        },
    )
    assert created.status_code == 201, created.text
    item_id = created.json()["id"]

    page = await signed_in(portal, viewport={"width": 390, "height": 844}, is_mobile=True)
    await snap(page, "portal-phone")
    await page.get_by_role("link", name="整改事项").click()
    await page.locator(f'[data-item-id="{item_id}"] a').click()
    await expect(page.locator("#item-state")).to_have_attribute("data-state", "open")

    photo = await page.screenshot(type="png")  # a real PNG, as a phone's camera would give
    form = page.locator("#report-form")
    await form.locator("textarea[name=note]").fill("已拆除临时接线，按规范重新布线并加装漏电保护")
    await form.locator("input[type=file]").set_input_files(
        [FilePayload(name="整改后.png", mimeType="image/png", buffer=photo)]
    )
    await form.get_by_role("button", name="提交整改报告").click()
    await expect(page.locator("#report-done")).to_be_visible()
    await expect(page.locator("#item-state")).to_have_attribute("data-state", "fix_reported")
    await expect(page.locator("#evidence img")).to_have_count(1)
    await snap(page, "portal-rectification")

    item = (await live.client.get(f"/api/rectifications/{item_id}")).json()
    assert (item["state"], item["reported_by"]) == ("fix_reported", "acme-li")
    assert [e["sha256"] for e in item["evidence"]] == [hashlib.sha256(photo).hexdigest()]
    assert item["history"][-1]["note"].startswith("已拆除临时接线")

    # The other enterprise cannot open it, by URL or API.
    rival = await signed_in(portal, "rival-wu")
    await rival.goto(f"{live.base_url}/portal.html#/rectification/{item_id}")
    await expect(rival.locator("#notfound")).to_be_visible()
    status = await rival.evaluate(f"fetch('/api/rectifications/{item_id}').then(r => r.status)")
    assert status == 404


async def test_an_enterprise_user_registers_a_site_from_a_phone(portal: Portal) -> None:
    page = await signed_in(portal, viewport={"width": 390, "height": 844}, is_mobile=True)
    await page.get_by_role("link", name="登记场所").click()
    form = page.locator("#site-form")
    await form.locator("input[name=name]").fill("安美二号仓库")
    # The town's villages to choose from (no typos that would hide the site from its officer).
    await expect(form.locator("select[name=village] option")).to_have_text(["请选择…", VILLAGE])
    await form.locator("select[name=village]").select_option(VILLAGE)
    await form.locator("select[name=industry]").select_option("dust_factory")
    await form.locator("input[name=address]").fill("陂头工业区 5 号")
    await expect(form.locator("input[name=enterprise]")).to_have_count(0)  # always their own
    await snap(page, "portal-site-form")
    await form.get_by_role("button", name="登记场所").click()

    # Straight on to registering a device there.
    await expect(page.locator("#device-form select[name=site_id] option:checked")).to_contain_text(
        "安美二号仓库"
    )
    sites = [s for s in portal.live.gateway.registry.sites() if s.name == "安美二号仓库"]
    assert [(s.enterprise, s.village, s.industry) for s in sites] == [
        ("acme", VILLAGE, "dust_factory")
    ]
    await page.get_by_role("link", name="我的场所与设备").click()
    await expect(page.locator(f'[data-site-id="{sites[0].id}"]')).to_contain_text("粉尘涉爆企业")
