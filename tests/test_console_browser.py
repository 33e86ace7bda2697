"""The duty console in a real browser, over the real stack.

Simulator -> real Mosquitto -> gateway -> SSE -> Debian Chromium driven by Playwright. Every
check is something a duty officer would notice: signing in, a fire showing up red on the board
without a reload within 2 s of the publish, the banner and the beep until someone acknowledges,
closing with a disposition and the history saying so, the chart drawing the stored readings,
filters, a community officer seeing only their village, an enterprise user finding nothing at
another enterprise's alert, the board noticing a lost connection. Screenshots land in
artifacts/screenshots/ (and, for the README, docs/screenshots/).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.browser import CHROMIUM

if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing (Debian package chromium; scripts/test.sh installs it)",
        allow_module_level=True,
    )

from playwright.async_api import Browser, BrowserContext, Locator, Page, expect

from gateway.scope import Role
from simulator.runner import SimulationReport, Simulator
from simulator.scenario import Scenario, parse_scenario
from tests.browser import chromium, login, publish, screenshot
from tests.conftest import TOKEN, LiveGateway, eventually
from tests.test_end_to_end import register_scenario

#: The issue's acceptance criterion: the alert is on the board within 2 s of the publish.
BOARD_WITHIN_MS = 2_000
# Page checks that are not about speed get room for a busy CI machine (default 5 s).
expect.set_options(timeout=10_000)
#: Scenario offset at which the fire's smoke alarm event is published.
FIRE_AT_S = 1.0
CLOSE_NOTE = "现场核查：厨房油烟触发，无明火 / kitchen fumes, no fire"
PASSWORD = "correct horse battery staple"

DUTY = ("wang.duty", "王值班")
COMMUNITY = ("li.bt", "李网格员")
ENTERPRISE = ("zhao.hw", "赵店长")
HARDWARE = "长城五金有限公司"
FUEL = "新圩石油有限公司"

#: Set by the page watcher the moment the first red row is in the hazard table.
WATCH_RED_ROW = """() => {
  window.__redRowSeenMs = null;
  const seen = () => {
    if (window.__redRowSeenMs === null
        && document.querySelector('#hazards tbody tr[data-alert-id][data-severity="red"]')) {
      window.__redRowSeenMs = Date.now();
    }
  };
  new MutationObserver(seen).observe(document.getElementById('hazards'),
                                     { subtree: true, childList: true, attributes: true });
  seen();
}"""


def _site(site_id: str, name: str, village: str, industry: str, **extra: Any) -> dict[str, Any]:
    return {"id": site_id, "name": name, "village": village, "industry": industry, **extra}


def _house() -> dict[str, Any]:
    house = _site("bt1", "陂头村建设路出租屋", "陂头村", "rental_housing", address="建设路12号")
    house["devices"] = [
        {"id": "bt1-smoke", "profile": "smoke_alarm_nbiot", "interval_s": 1, "name": "三楼楼道烟感"}
    ]
    return house


def fire_scenario() -> Scenario:
    """One rental house, one NB-IoT smoke alarm, a fire at 1 s that lasts until stopped."""
    return parse_scenario(
        {
            "name": "browser-fire",
            "duration_s": 120,
            "sites": [_house()],
            "incidents": [
                {"kind": "fire", "device": "bt1-smoke", "at_s": FIRE_AT_S, "duration_s": 118}
            ],
        },
        "fire_scenario()",
    )


def town_scenario() -> Scenario:
    """A small board: a fire (red) in 陂头村, a gas level-1 alarm (orange) at 新圩村's station and
    a smoke alarm gone offline (blue equipment fault) at 长城社区's shop; two enterprises."""
    station = _site(
        "xw3", "新圩村环城路加油站", "新圩村", "fuel_station", address="环城路3号", enterprise=FUEL
    )
    station["devices"] = [
        {"id": "xw3-gas", "profile": "gas_detector", "interval_s": 0.5, "name": "加油岛可燃气体"}
    ]
    shop = _site(
        "cc8",
        "长城社区五金店",
        "长城社区",
        "small_shop",
        address="工业大道8号",
        enterprise=HARDWARE,
    )
    shop["devices"] = [
        {"id": "cc8-smoke", "profile": "smoke_alarm_nbiot", "interval_s": 1, "name": "店内烟感"}
    ]
    return parse_scenario(
        {
            "name": "browser-town",
            "duration_s": 120,
            "sites": [_house(), station, shop],
            "incidents": [
                {"kind": "fire", "device": "bt1-smoke", "at_s": FIRE_AT_S, "duration_s": 118},
                # 35 %LEL: past level 1 (25, orange), below level 2 (50, red).
                {
                    "kind": "gas_leak",
                    "device": "xw3-gas",
                    "at_s": 0.5,
                    "duration_s": 118,
                    "params": {"peak": 35, "ramp_s": 1},
                },
                {"kind": "offline", "device": "cc8-smoke", "at_s": 0.5, "duration_s": 118},
            ],
        },
        "town_scenario()",
    )


@dataclass
class Run:
    """A simulator running in a thread; ``report`` is set once it has stopped."""

    start_ms: int
    report: SimulationReport | None = field(default=None)

    def at_ms(self, offset_s: float) -> int:
        return self.start_ms + round(offset_s * 1000)


@contextlib.asynccontextmanager
async def simulation(live: LiveGateway, scenario: Scenario) -> AsyncIterator[Run]:
    """Register the scenario and run the simulator against the real broker until the block
    ends. Offset 0 is fixed 0.5 s ahead, so a test knows when each incident is published."""
    await register_scenario(live.gateway, scenario)
    run = Run(start_ms=time.time_ns() // 1_000_000 + 500)
    sim = Simulator(scenario, live.gateway.broker_url, start_ms=run.start_ms)
    stop = threading.Event()
    task = asyncio.create_task(asyncio.to_thread(sim.run, stop))
    try:
        yield run
    finally:
        stop.set()
        run.report = await task


async def sleep_until(epoch_ms: int) -> None:
    await asyncio.sleep(max(0.0, epoch_ms / 1000 - time.time()))


@pytest.fixture
async def users(live: LiveGateway) -> LiveGateway:
    """One account per role the console serves (the enterprise user owns the hardware shop)."""
    add = live.gateway.users.add
    await add(DUTY[0], PASSWORD, Role.DUTY, display_name=DUTY[1])
    await add(
        COMMUNITY[0], PASSWORD, Role.COMMUNITY, display_name=COMMUNITY[1], villages=["陂头村"]
    )
    await add(
        ENTERPRISE[0], PASSWORD, Role.ENTERPRISE, display_name=ENTERPRISE[1], enterprise=HARDWARE
    )
    return live


@pytest.fixture
async def browser(live: LiveGateway) -> AsyncIterator[Browser]:
    # Depends on ``live`` so the browser (and its open event stream) goes before the server.
    async with chromium() as b:
        yield b


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(
        viewport={"width": 1366, "height": 768},
        locale="zh-CN",
        timezone_id="Asia/Shanghai",
        accept_downloads=True,
    )
    ctx.set_default_timeout(10_000)
    yield ctx
    await ctx.close()


@pytest.fixture
async def page(context: BrowserContext) -> AsyncIterator[Page]:
    """A fresh tab (empty storage); an uncaught script error or a CSP refusal fails the test."""
    p = await context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.on(
        "console",
        lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None,
    )
    yield p
    assert not errors, f"script errors on a console page: {errors}"


def hazard_rows(page: Page) -> Locator:
    return page.locator("#hazards tbody tr[data-alert-id]")


def fault_rows(page: Page) -> Locator:
    return page.locator("#faults tbody tr[data-alert-id]")


async def open_board(page: Page, live: LiveGateway, user: str = DUTY[0]) -> None:
    await login(page, live.base_url, user, PASSWORD)
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")


async def open_alerts(live: LiveGateway, count: int) -> list[dict[str, Any]]:
    """The open alerts (admin view), once there are ``count`` of them."""

    async def enough() -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = (
            await live.client.get("/api/alerts", params={"state": "open"})
        ).json()
        return found if len(found) >= count else None

    return await eventually(enough, timeout_s=15)


def by_device(alerts: list[dict[str, Any]], device_id: str) -> dict[str, Any]:
    return next(a for a in alerts if a["device_id"] == device_id)


async def assert_fits(page: Page, width: int) -> None:
    """Nothing is wider than the screen, and every row's buttons are on it."""
    overflow = await page.evaluate("document.documentElement.scrollWidth - innerWidth")
    assert overflow <= 0, f"{width} px: {overflow} px too wide: {await too_wide(page)}"
    for button in await page.locator("tr[data-alert-id] .col-actions > *").all():
        box = await button.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width


async def too_wide(page: Page) -> list[str]:
    """The elements sticking out on the right (to say what broke a narrow layout)."""
    found: list[str] = await page.evaluate(
        """[...document.querySelectorAll('body *')]
             .filter(e => e.getBoundingClientRect().right > innerWidth + 1).slice(0, 8)
             .map(e => `${e.tagName}#${e.id}.${e.className}`)"""
    )
    return found


async def beeps(page: Page) -> int:
    return int(await page.evaluate("window.__ewgSound.beeps"))


async def test_login_sends_each_role_to_its_page_and_refuses_a_wrong_password(
    users: LiveGateway, page: Page
) -> None:
    live = users
    # No session: the board sends the browser to the login page, with no data on it.
    await page.goto(f"{live.base_url}/")
    await page.wait_for_url(f"{live.base_url}/login.html")
    await expect(page.locator("input[name=username]")).to_be_focused()
    await expect(page.locator("h2")).to_have_text("登录")
    publish(await screenshot(page, "login-zh"), "console-login")

    await page.locator("input[name=username]").fill(DUTY[0])
    await page.locator("input[name=password]").fill("not the password")
    await page.locator("#login-form button[type=submit]").click()
    await expect(page.locator("#login-error")).to_have_text("用户名或密码错误")
    assert page.url == f"{live.base_url}/login.html"
    await expect(page.locator("input[name=password]")).to_have_value("")

    # A page opened without a session comes back after login (the ?next= address).
    await page.goto(f"{live.base_url}/stats.html")
    await page.wait_for_url(f"{live.base_url}/login.html?next=%2Fstats.html")
    await page.locator("input[name=username]").fill(DUTY[0])
    await page.locator("input[name=password]").fill(PASSWORD)
    await page.locator("#login-form button[type=submit]").click()
    await page.wait_for_url(f"{live.base_url}/stats.html")
    await expect(page.locator("#user")).to_have_text("王值班 · 值班员")

    # Signing out ends the session: the board is out of reach again.
    await page.locator("#logout").click()
    await page.wait_for_url(f"{live.base_url}/login.html")
    await page.goto(f"{live.base_url}/")
    await page.wait_for_url(f"{live.base_url}/login.html")

    # A link with an API token in it (an old bookmark, the demo's printout) does not sign
    # anyone in, and the token leaves the address at once (not carried on into ?next=).
    await page.goto(f"{live.base_url}/#token={TOKEN}")
    await page.wait_for_url(f"{live.base_url}/login.html")
    assert TOKEN not in page.url

    # ?next= never leads off the site.
    await page.goto(f"{live.base_url}/login.html?next=//evil.example/")
    await page.locator("input[name=username]").fill(DUTY[0])
    await page.locator("input[name=password]").fill(PASSWORD)
    await page.locator("#login-form button[type=submit]").click()
    await page.wait_for_url(f"{live.base_url}/")
    await page.locator("#logout").click()
    await page.wait_for_url(f"{live.base_url}/login.html")

    # An enterprise user goes to the portal, not to the duty board.
    await login(page, live.base_url, ENTERPRISE[0], PASSWORD, lands_on="/portal.html")


async def test_fire_reaches_the_board_within_2_s_then_is_acknowledged_and_closed(
    users: LiveGateway, page: Page, record_property: Any
) -> None:
    live = users
    await open_board(page, live)
    await expect(hazard_rows(page)).to_have_count(0)
    await expect(page.locator("#red-banner")).to_be_hidden()
    await page.evaluate("window.__noReload = 1")
    await page.evaluate(WATCH_RED_ROW)
    assert await beeps(page) == 0

    async with simulation(live, fire_scenario()) as run:
        await sleep_until(run.at_ms(FIRE_AT_S))
        red = hazard_rows(page).and_(page.locator('[data-severity="red"]'))
        await expect(red).to_have_count(1, timeout=BOARD_WITHIN_MS + 1_000)
        seen_ms = await page.evaluate("window.__redRowSeenMs")
        assert isinstance(seen_ms, int)
        assert await page.evaluate("window.__noReload") == 1  # updated in place, not reloaded
        alert_id = int(await red.get_attribute("data-alert-id") or "0")
        await expect(red).to_have_attribute("data-state", "raised")
        await expect(red).to_contain_text("烟雾火警")
        await expect(red).to_contain_text("陂头村建设路出租屋")
        await expect(red).to_contain_text("bt1-smoke")
        await expect(page.locator("#count-red")).to_have_text("1")
        await expect(page.locator("#incidents .incident-list li")).to_have_count(1)
        await expect(page).to_have_title("(1) EWG 安全生产预警值班台")

        # A banner and a beep, and the beep repeats until someone acknowledges.
        banner = page.locator("#red-banner")
        await expect(banner).to_be_visible()
        await expect(banner).to_contain_text("烟雾火警")
        await expect(banner).to_contain_text("陂头村建设路出租屋")
        first = await beeps(page)
        assert first >= 1
        await eventually(lambda: _more(page, first), timeout_s=5)
        publish(await screenshot(page, "board-fire"), "console-board-fire")

        await banner.locator("#banner-ack").click()
        await expect(banner).to_be_hidden()
        await expect(red).to_have_attribute("data-state", "acknowledged")
        await expect(red.locator("button.ack")).to_have_count(0)
        after_ack = await beeps(page)
        await page.wait_for_timeout(2_500)  # longer than the beep interval (2 s)
        assert await beeps(page) == after_ack, "the beep goes on after acknowledging"

        # The detail page: where, what, the chart from the store, and closing it.
        await red.locator("a.details").click()
        await page.wait_for_url(f"{live.base_url}/alert.html?id={alert_id}")
        await expect(page.locator("#a-title")).to_have_text("烟雾火警")
        await expect(page.locator("#a-state")).to_have_text("已确认")
        await expect(page.locator("#site-facts")).to_contain_text("建设路12号")
        await expect(page.locator("#site-facts")).to_contain_text("陂头村")
        await expect(page.locator("#device-facts")).to_contain_text("bt1-smoke")
        await expect(page.locator("#device-facts")).to_contain_text("在线")
        chart = page.locator("#alert-chart")
        await expect(chart).to_have_attribute("data-metric", "smoke_obscuration_pct")
        await expect(chart.locator("canvas")).to_have_count(1)
        stored = (
            await live.client.get(
                "/api/telemetry",
                params={"device_id": "bt1-smoke", "metric": "smoke_obscuration_pct"},
            )
        ).json()
        assert stored, "the simulator's readings are in the store"
        assert int(await chart.get_attribute("data-points") or "0") >= 1
        history = page.locator("#history tbody tr")
        await expect(history).to_have_count(2)
        await expect(history.nth(1)).to_contain_text("新告警 → 已确认")
        await expect(history.nth(1)).to_contain_text(DUTY[0])
        publish(await screenshot(page, "alert-detail"), "console-alert")

        await page.locator("#act-close").click()
        dialog = page.locator("#close-dialog")
        await expect(dialog).to_be_visible()
        await dialog.locator("button.confirm").click()  # no disposition: refused, in words
        await expect(dialog.locator(".form-error")).to_have_text("请选择处置结果")
        await dialog.locator("select[name=disposition]").select_option("false_alarm")
        await expect(dialog.locator(".form-error")).to_be_hidden()
        await dialog.locator("textarea[name=note]").fill(CLOSE_NOTE)
        publish(await screenshot(page, "close-dialog"), "console-close")
        await dialog.locator("button.confirm").click()
        await expect(dialog).to_be_hidden()
        await expect(page.locator("#a-state")).to_have_text("已关闭")
        await expect(history).to_have_count(3)
        await expect(history.nth(2)).to_contain_text("已确认 → 已关闭")
        await expect(history.nth(2)).to_contain_text(CLOSE_NOTE)
        await expect(page.locator("#alert-facts")).to_contain_text("误报")
        # Who was told: the shipped alerting config pages the site owner through the log.
        notified = page.locator("#notifications tbody tr").first
        await expect(notified).to_contain_text("场所负责人")
        await expect(notified).to_contain_text("已送达")
        await expect(page.locator("#act-close")).to_be_hidden()
        # A notification's link (/#alert=ID) leads to this page.
        await page.goto(f"{live.base_url}/#alert={alert_id}")
        await page.wait_for_url(f"{live.base_url}/alert.html?id={alert_id}")
        await expect(page.locator("#a-state")).to_have_text("已关闭")

    # The record says the same as the page.
    alert = (await live.client.get(f"/api/alerts/{alert_id}")).json()
    assert (alert["state"], alert["disposition"], alert["note"]) == (
        "closed",
        "false_alarm",
        CLOSE_NOTE,
    )
    assert alert["acknowledged_by"] == alert["closed_by"] == DUTY[0]

    assert run.report is not None
    truth = next(t for t in run.report.truth if t.expected_rule == "smoke_alarm")
    assert truth.crossed_ms == run.at_ms(FIRE_AT_S)
    latency_ms = seen_ms - truth.crossed_ms
    record_property("publish_to_board_ms", latency_ms)
    print(f"smoke alarm published -> red row on the board: {latency_ms} ms")
    assert 0 <= latency_ms <= BOARD_WITHIN_MS


async def _more(page: Page, than: int) -> bool:
    return await beeps(page) > than


async def test_filters_incidents_phone_and_english(users: LiveGateway, page: Page) -> None:
    live = users
    async with simulation(live, town_scenario()) as run:
        await open_board(page, live)
        await sleep_until(run.at_ms(FIRE_AT_S))
        await expect(hazard_rows(page)).to_have_count(2)
        await expect(fault_rows(page)).to_have_count(1)
        severities = [await r.get_attribute("data-severity") for r in await hazard_rows(page).all()]
        assert severities == ["red", "orange"]  # red first, whatever came first
        for sev, n in {"red": "1", "orange": "1", "yellow": "0", "blue": "1"}.items():
            await expect(page.locator(f"#count-{sev}")).to_have_text(n)
        await expect(page.locator("#incidents .incident-list li")).to_have_count(3)
        await page.locator("#banner-ack").click()  # quiet the fire for the screenshots
        await expect(page.locator("#red-banner")).to_be_hidden()
        publish(await screenshot(page, "board-zh"), "console-board")

        filters = page.locator("#filters")
        await filters.locator("select[name=village]").select_option("新圩村")
        await expect(hazard_rows(page)).to_have_count(1)
        await expect(hazard_rows(page).first).to_contain_text("新圩村环城路加油站")
        await expect(fault_rows(page)).to_have_count(0)
        await expect(page.locator("#count-orange")).to_have_text("1")
        await expect(page.locator("#count-red")).to_have_text("0")
        await expect(page.locator("#incidents .incident-list li")).to_have_count(1)
        # The filter is in the address: a reload keeps it.
        await page.reload()
        await expect(page.locator("#live")).to_have_attribute("data-state", "live")
        await expect(filters.locator("select[name=village]")).to_have_value("新圩村")
        await expect(hazard_rows(page)).to_have_count(1)

        await filters.locator("button[type=reset]").click()
        await expect(hazard_rows(page)).to_have_count(2)
        await filters.locator("select[name=class]").select_option("fault")
        await expect(hazard_rows(page)).to_have_count(0)
        await expect(fault_rows(page)).to_have_count(1)
        await filters.locator("select[name=class]").select_option("")
        await filters.locator("select[name=industry]").select_option("rental_housing")
        await expect(hazard_rows(page)).to_have_count(1)
        await expect(hazard_rows(page).first).to_have_attribute("data-severity", "red")
        await filters.locator("select[name=industry]").select_option("")
        await filters.locator("select[name=state]").select_option("acknowledged")
        await expect(hazard_rows(page)).to_have_count(1)  # the fire, acknowledged above
        await filters.locator("select[name=state]").select_option("raised")
        await expect(hazard_rows(page)).to_have_count(1)
        await expect(hazard_rows(page).first).to_have_attribute("data-severity", "orange")
        await filters.locator("button[type=reset]").click()

        # A phone: cards instead of a table, nothing off screen.
        await page.set_viewport_size({"width": 390, "height": 844})
        await expect(hazard_rows(page)).to_have_count(2)
        await assert_fits(page, 390)
        publish(await screenshot(page, "board-phone"), "console-board-phone")
        for width in (1024, 1280, 1920):
            await page.set_viewport_size({"width": width, "height": 900})
            await assert_fits(page, width)
        publish(await screenshot(page, "board-wall"), "console-board-wall")  # 1920 px
        await page.set_viewport_size({"width": 1366, "height": 768})

        # English, remembered after a reload.
        await page.locator("#lang-en").click()
        await expect(page.locator("h1")).to_have_text("Safety early-warning console")
        await expect(page.locator("#hazards h2")).to_contain_text("Hazard alarms")
        await expect(hazard_rows(page).first).to_contain_text("Smoke fire alarm")
        await page.reload()
        await expect(page.locator("#live")).to_have_attribute("data-state", "live")
        await expect(page.locator("#faults h2")).to_contain_text("Equipment faults")
        await expect(page.locator("#lang-en")).to_have_attribute("aria-pressed", "true")
        await page.locator("#lang-zh").click()
        await expect(page.locator("h1")).to_have_text("安全生产预警值班台")


async def test_community_officer_sees_only_their_village(users: LiveGateway, page: Page) -> None:
    live = users
    await open_board(page, live, COMMUNITY[0])
    await expect(page.locator("#user")).to_contain_text("社区网格员")
    async with simulation(live, town_scenario()) as run:
        await sleep_until(run.at_ms(FIRE_AT_S))
        alerts = await open_alerts(live, 3)
        # All three were raised while the board was live: the stream carried only the one in
        # the officer's village (give the others time to arrive, if they were coming).
        await expect(hazard_rows(page)).to_have_count(1)
        await page.wait_for_timeout(1_000)
        await expect(hazard_rows(page)).to_have_count(1)
        await expect(hazard_rows(page).first).to_contain_text("陂头村建设路出租屋")
        await expect(fault_rows(page)).to_have_count(0)
        await expect(page.locator("#incidents .incident-list li")).to_have_count(1)
        await expect(page.locator("#count-orange")).to_have_text("0")
        options = await page.locator("#filters select[name=village] option").all_text_contents()
        assert options[1:] == ["陂头村"]

        await page.goto(f"{live.base_url}/sites.html")
        await expect(page.locator("section.village")).to_have_count(1)
        await expect(page.locator("section.village")).to_have_attribute("data-village", "陂头村")
        await expect(page.locator(".site-card")).to_have_count(1)

        # Another village's alert, by URL: not found, and nothing of it on the page.
        gas = by_device(alerts, "xw3-gas")
        await page.goto(f"{live.base_url}/alert.html?id={gas['id']}")
        await expect(page.locator("#notfound")).to_be_visible()
        await expect(page.locator("#notfound")).to_contain_text("不在您的权限范围内")
        assert "加油站" not in await page.content()
        await page.goto(f"{live.base_url}/device.html?id=xw3-gas")
        await expect(page.locator("#notfound")).to_be_visible()


async def test_enterprise_user_cannot_open_another_enterprises_alert(
    users: LiveGateway, page: Page
) -> None:
    live = users
    async with simulation(live, town_scenario()) as run:
        await sleep_until(run.at_ms(FIRE_AT_S))
        alerts = await open_alerts(live, 3)
        await login(page, live.base_url, ENTERPRISE[0], PASSWORD, lands_on="/portal.html")
        # The shop's own offline alert opens...
        own = by_device(alerts, "cc8-smoke")
        await page.goto(f"{live.base_url}/alert.html?id={own['id']}")
        await expect(page.locator("#a-title")).to_have_text("设备离线")
        await expect(page.locator("#site-facts")).to_contain_text("长城社区五金店")
        # The shop may acknowledge its own alert; closing and the rest are the office's.
        await expect(page.locator("#act-ack")).to_be_visible()
        for action in ("close", "silence", "escalate", "rectify"):
            await expect(page.locator(f"#act-{action}")).to_be_hidden()
        await page.locator("#act-ack").click()
        # The owner's acknowledgement is recorded and shown, but the alert stays raised for
        # the duty office: a site owner must not be able to stop the town's response.
        await expect(page.locator("#history tbody tr").last).to_contain_text(ENTERPRISE[0])
        await expect(page.locator("body")).to_contain_text("企业已确认收到")
        await expect(page.locator("#a-state")).not_to_contain_text("已确认")
        # ...the fuel station's gas alarm does not, and nothing of it leaks onto the page.
        gas = by_device(alerts, "xw3-gas")
        await page.goto(f"{live.base_url}/alert.html?id={gas['id']}")
        await expect(page.locator("#notfound")).to_be_visible()
        await expect(page.locator("#notfound h2")).to_have_text("未找到")
        content = await page.content()
        assert "加油站" not in content and "xw3" not in content
        await screenshot(page, "alert-not-yours")


async def test_sites_device_and_statistics_pages(
    users: LiveGateway, page: Page, tmp_path: Path
) -> None:
    live = users
    async with simulation(live, town_scenario()) as run:
        await sleep_until(run.at_ms(FIRE_AT_S))
        alerts = await open_alerts(live, 3)
        # One false alarm closed, so the statistics have something to show.
        fire = by_device(alerts, "bt1-smoke")
        closed = await live.client.post(
            f"/api/alerts/{fire['id']}/close", json={"disposition": "false_alarm", "note": "测试"}
        )
        assert closed.status_code == 200, closed.text
        await open_board(page, live)

        await page.locator("header .nav a", has_text="场所与设备").click()
        await page.wait_for_url(f"{live.base_url}/sites.html")
        villages = page.locator("section.village")
        await expect(villages).to_have_count(3)
        names = await villages.evaluate_all("vs => vs.map(v => v.dataset.village)")
        assert sorted(names) == sorted(["陂头村", "新圩村", "长城社区"])
        gas_row = page.locator('tr[data-device-id="xw3-gas"]')
        await expect(gas_row.locator(".online")).to_have_text("在线")
        await expect(gas_row.locator(".last-reading")).to_contain_text("%LEL")
        offline_row = page.locator('tr[data-device-id="cc8-smoke"]')
        await expect(offline_row.locator(".online")).to_have_text("离线")
        station = page.locator('.site-card[data-site-id="xw3"]')
        await expect(station).to_have_attribute("data-severity", "orange")
        await page.locator("#sites-filter select[name=village]").select_option("新圩村")
        await expect(villages).to_have_count(1)
        await page.locator("#sites-filter select[name=village]").select_option("")
        await expect(villages).to_have_count(3)
        publish(await screenshot(page, "sites"), "console-sites")

        await gas_row.locator("a").click()
        await page.wait_for_url(f"{live.base_url}/device.html?id=xw3-gas")
        await expect(page.locator("#d-id")).to_have_text("xw3-gas")
        await expect(page.locator("#device-facts")).to_contain_text("在线")
        await expect(page.locator("#open-alerts li")).to_have_count(1)
        chart = page.locator('figure[data-metric="gas_lel_pct"] .chart')
        await expect(chart.locator("canvas")).to_have_count(1)
        assert int(await chart.get_attribute("data-points") or "0") >= 2
        publish(await screenshot(page, "device"), "console-device")

        # Zoom by dragging across the chart; a double-click shows the whole range again.
        full = [int(await chart.get_attribute(a) or "0") for a in ("data-min-ms", "data-max-ms")]
        over = await chart.locator(".u-over").bounding_box()
        assert over is not None
        y = over["y"] + over["height"] / 2
        await page.mouse.move(over["x"] + over["width"] * 0.3, y)
        await page.mouse.down()
        await page.mouse.move(over["x"] + over["width"] * 0.6, y, steps=5)
        await page.mouse.up()
        await expect(chart).to_have_attribute("data-zoomed", "true")
        await expect(chart).not_to_have_attribute("data-min-ms", str(full[0]))
        zoomed = [int(await chart.get_attribute(a) or "0") for a in ("data-min-ms", "data-max-ms")]
        assert full[0] < zoomed[0] < zoomed[1] < full[1]
        assert zoomed[1] - zoomed[0] < (full[1] - full[0]) * 0.4
        await page.mouse.dblclick(over["x"] + over["width"] / 2, y)
        await expect(chart).not_to_have_attribute("data-zoomed", "true")
        await expect(chart).to_have_attribute("data-min-ms", str(full[0]))
        assert [
            int(await chart.get_attribute(a) or "0") for a in ("data-min-ms", "data-max-ms")
        ] == full

        # The gas alarm's own page charts the rule's metric with its two levels.
        gas = by_device(alerts, "xw3-gas")
        await page.locator("#open-alerts a").click()
        await page.wait_for_url(f"{live.base_url}/alert.html?id={gas['id']}")
        chart = page.locator("#alert-chart")
        await expect(chart).to_have_attribute("data-metric", "gas_lel_pct")
        await expect(chart.locator(".u-legend")).to_contain_text("报警值 50 %LEL")
        await expect(chart.locator(".u-legend")).to_contain_text("预警值 25 %LEL")
        assert int(await chart.get_attribute("data-points") or "0") >= 2

        await page.locator("header .nav a", has_text="统计").click()
        await page.wait_for_url(f"{live.base_url}/stats.html")
        table = page.locator("#stats-table")
        await expect(table.locator("tbody tr")).to_have_count(4)  # three villages and the total
        bt = table.locator('tr[data-group="陂头村"]')
        await expect(bt.locator("td").nth(9)).to_have_text("1")  # one false alarm
        await expect(page.locator("#chart-alerts canvas")).to_have_count(1)
        await expect(page.locator("#chart-false canvas")).to_have_count(1)
        publish(await screenshot(page, "stats"), "console-stats")
        async with page.expect_download() as download_info:
            await page.locator("#csv-groups").click()
        download = await download_info.value
        assert download.suggested_filename.startswith("ewg-stats-groups-")
        saved = tmp_path / download.suggested_filename
        await download.save_as(saved)
        text = saved.read_text(encoding="utf-8-sig")
        lines = text.splitlines()
        assert len(lines) == 5 and any(line.startswith("陂头村,") for line in lines)
        await page.locator("#stats-form select[name=group_by]").select_option("industry")
        await expect(table.locator('tr[data-group="fuel_station"] td').first).to_have_text(
            "加油加气站"
        )

        # Every page fits a phone (wide tables scroll inside their own boxes).
        await page.set_viewport_size({"width": 390, "height": 844})
        for path, ready in (
            ("/stats.html", "#chart-alerts canvas"),
            ("/sites.html", ".site-card"),
            ("/device.html?id=xw3-gas", "#charts canvas"),
        ):
            await page.goto(live.base_url + path)
            await expect(page.locator(ready).first).to_be_visible()
            await page.wait_for_timeout(300)  # charts follow their box's width
            overflow = await page.evaluate("document.documentElement.scrollWidth - innerWidth")
            assert overflow <= 0, f"{path}: {overflow} px too wide: {await too_wide(page)}"


async def test_board_shows_a_lost_connection_and_catches_up(
    users: LiveGateway, page: Page, context: BrowserContext
) -> None:
    live = users
    await open_board(page, live)
    await expect(page.locator("#conn-lost")).to_be_hidden()
    await context.set_offline(True)
    await expect(page.locator("#conn-lost")).to_be_visible()
    await expect(page.locator("#live")).not_to_have_attribute("data-state", "live")
    async with simulation(live, fire_scenario()) as run:
        await sleep_until(run.at_ms(FIRE_AT_S))
        await open_alerts(live, 1)  # raised while the board was cut off
        await expect(hazard_rows(page)).to_have_count(0)
        await context.set_offline(False)
        await expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=15_000)
        await expect(page.locator("#conn-lost")).to_be_hidden()
        await expect(hazard_rows(page)).to_have_count(1)


async def test_silence_and_rectification_item_from_the_alert_page(
    users: LiveGateway, page: Page
) -> None:
    live = users
    async with simulation(live, town_scenario()) as run:
        await sleep_until(run.at_ms(FIRE_AT_S))
        gas = by_device(await open_alerts(live, 3), "xw3-gas")
        await open_board(page, live)
        await page.goto(f"{live.base_url}/alert.html?id={gas['id']}")
        await expect(page.locator("#a-title")).to_have_text("可燃气体浓度超限")

        # The escalation chain that applies, in words; "escalate now" sends its next step
        # (the grid officer, due only after 10 minutes) at once, into the page's history.
        await page.locator("#act-escalate").click()
        await expect(page.locator("#escalate-dialog")).to_be_visible()
        chain = page.locator("#escalate-list")
        await expect(chain.locator("h3")).to_have_text(["orange-hazard"])  # the first that matches
        await expect(chain.locator("li")).to_have_text(
            ["0 秒后: 场所负责人 (gateway-log)", "600 秒后: 社区网格员 (gateway-log)"]
        )
        notified = page.locator("#notifications tbody tr")
        await expect(notified).to_have_count(1)
        await page.locator("#escalate-now").click()
        await expect(page.locator("#escalate-dialog")).to_be_hidden()
        await expect(page.locator("#message")).to_contain_text("已立即发送第 2 级通知：社区网格员")
        await expect(notified).to_have_count(2)
        await expect(notified.nth(1)).to_contain_text("社区网格员")
        escalated = [e for e in await live.gateway.audit.entries() if e.action == "alert.escalate"]
        assert [(e.actor, e.target) for e in escalated] == [(DUTY[0], f"alert:{gas['id']}")]

        # A maintenance window on the detector: the alert stays, marked muted.
        await page.locator("#act-silence").click()
        dialog = page.locator("#silence-dialog")
        await dialog.locator("select[name=duration]").select_option("1800")
        await dialog.locator("input[name=reason]").fill("检修加油岛探测器")
        await dialog.locator("button.confirm").click()
        await expect(dialog).to_be_hidden()
        await expect(page.locator("#message")).to_contain_text("已静默至")
        await expect(page.locator("#a-flags")).to_contain_text("已静默")
        silences = (await live.client.get("/api/silences")).json()
        assert [(s["device_id"], s["reason"], s["created_by"]) for s in silences] == [
            ("xw3-gas", "检修加油岛探测器", DUTY[0])
        ]
        assert silences[0]["ends_at_ms"] - silences[0]["starts_at_ms"] == 1_800_000
        assert silences[0]["muted_alert_ids"] == [gas["id"]]

        # The hazard goes on the enterprise's rectification list.
        await page.locator("#act-rectify").click()
        dialog = page.locator("#rectify-dialog")
        await expect(dialog.locator("input[name=assignee]")).to_have_value(FUEL)
        await dialog.locator("input[name=deadline]").fill("2099-01-31")
        await dialog.locator("button.confirm").click()
        await expect(dialog).to_be_hidden()
        await expect(page.locator("#message")).to_contain_text("已生成整改单")
        items = (await live.client.get("/api/rectifications")).json()
        assert [(i["alert_id"], i["site_id"], i["assignee"], i["created_by"]) for i in items] == [
            (gas["id"], "xw3", FUEL, DUTY[0])
        ]
        # A bare date is the end of that day (the API's rule).
        assert items[0]["deadline"] == "2099-02-01T00:00:00.000+08:00"

        # On a phone the alert page fits the screen (tables scroll inside their boxes).
        await page.set_viewport_size({"width": 390, "height": 844})
        await expect(page.locator("#alert-chart canvas")).to_have_count(1)
        await page.wait_for_timeout(300)  # the chart follows its box's new width
        overflow = await page.evaluate("document.documentElement.scrollWidth - innerWidth")
        assert overflow <= 0, (
            f"the alert page is {overflow} px wider than a phone: {await too_wide(page)}"
        )
        chart_box = await page.locator("#alert-chart canvas").bounding_box()
        assert chart_box is not None and chart_box["x"] + chart_box["width"] <= 390
        await screenshot(page, "alert-phone")


async def test_a_session_ended_elsewhere_sends_the_board_to_the_login_page(
    users: LiveGateway, page: Page, context: BrowserContext
) -> None:
    live = users
    await open_board(page, live)
    # Signed out in another tab of the same browser: the open board notices by itself.
    other = await context.new_page()
    await other.goto(f"{live.base_url}/sites.html")
    landed: list[str] = []
    other.on("framenavigated", lambda f: landed.append(f.url) if f == other.main_frame else None)
    await other.locator("#logout").click()
    await other.wait_for_url(f"{live.base_url}/login.html")
    # One trip: the 401s the logout causes on that tab (its stream) do not start a second.
    await asyncio.sleep(0.5)
    assert landed == [f"{live.base_url}/login.html"]
    await page.wait_for_url(f"{live.base_url}/login.html", timeout=15_000)
    await expect(page.locator("#login-form")).to_be_visible()
