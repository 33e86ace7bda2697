"""The duty console in a real browser, over the real stack.

Simulator -> real Mosquitto -> gateway -> SSE -> Debian Chromium driven by Playwright. Every
check is something the duty officer would notice: the board goes live, a fire shows up red
without reloading the page (within the 10 s field requirement), acknowledging and closing
change the board and the record, a wrong token is refused, and the language choice sticks.
Screenshots land in artifacts/screenshots/ (and, for the README, docs/screenshots/).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.browser import CHROMIUM

if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing (Debian package chromium; scripts/test.sh installs it)",
        allow_module_level=True,
    )

from playwright.async_api import Browser, BrowserContext, Locator, Page, Route, expect

from simulator.runner import SimulationReport, Simulator
from simulator.scenario import Scenario, parse_scenario
from tests.browser import chromium, publish, screenshot
from tests.conftest import TOKEN, LiveGateway, eventually
from tests.test_end_to_end import register_scenario

#: Field requirement: an alarm is on the duty board within 10 s of the device sending it.
BOARD_WITHIN_MS = 10_000
# Page checks that are not about speed get room for a busy CI machine (default 5 s).
expect.set_options(timeout=10_000)
#: Scenario offset at which the fire's smoke alarm event is published.
FIRE_AT_S = 1.0
CLOSE_NOTE = "现场核查：厨房油烟触发，无明火 / kitchen fumes, no fire"

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


def fire_scenario() -> Scenario:
    """One rental house, one NB-IoT smoke alarm, a fire at 1 s that lasts until stopped."""
    house = _site("bt1", "陂头村建设路出租屋", "陂头村", "rental_housing", address="建设路12号")
    house["devices"] = [
        {"id": "bt1-smoke", "profile": "smoke_alarm_nbiot", "interval_s": 1, "name": "三楼楼道烟感"}
    ]
    return parse_scenario(
        {
            "name": "browser-fire",
            "duration_s": 120,
            "sites": [house],
            "incidents": [
                {"kind": "fire", "device": "bt1-smoke", "at_s": FIRE_AT_S, "duration_s": 118}
            ],
        },
        "fire_scenario()",
    )


def town_scenario() -> Scenario:
    """A small board for the screenshots: a fire (red), a gas level-1 alarm (orange) and a
    smoke alarm gone offline (blue equipment fault), at three places."""
    house = _site("bt1", "陂头村建设路出租屋", "陂头村", "rental_housing", address="建设路12号")
    house["devices"] = [
        {"id": "bt1-smoke", "profile": "smoke_alarm_nbiot", "interval_s": 1, "name": "三楼楼道烟感"}
    ]
    station = _site(
        "xw3",
        "新圩村环城路加油站",
        "新圩村",
        "fuel_station",
        address="环城路3号",
        enterprise="新圩石油有限公司",
    )
    station["devices"] = [
        {"id": "xw3-gas", "profile": "gas_detector", "interval_s": 0.5, "name": "加油岛可燃气体"}
    ]
    shop = _site("cc8", "长城社区五金店", "长城社区", "small_shop", address="工业大道8号")
    shop["devices"] = [
        {"id": "cc8-smoke", "profile": "smoke_alarm_nbiot", "interval_s": 1, "name": "店内烟感"}
    ]
    return parse_scenario(
        {
            "name": "browser-town",
            "duration_s": 120,
            "sites": [house, station, shop],
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
    )
    ctx.set_default_timeout(10_000)
    yield ctx
    await ctx.close()


@pytest.fixture
async def page(context: BrowserContext) -> AsyncIterator[Page]:
    """A fresh tab (empty storage); any uncaught script error fails the test."""
    p = await context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    yield p
    assert not errors, f"script errors on the console page: {errors}"


def hazard_rows(page: Page) -> Locator:
    return page.locator("#hazards tbody tr[data-alert-id]")


async def open_board(page: Page, live: LiveGateway) -> None:
    """What the duty officer's bookmark does: the console with the token in the fragment."""
    await page.goto(f"{live.base_url}/#token={TOKEN}")
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await expect(page.locator("#board")).to_be_visible()
    await expect(page.locator("#signin")).to_be_hidden()
    # The token is taken out of the address bar at once (no token in history or screenshots).
    assert TOKEN not in page.url


async def assert_board_fits(page: Page, width: int) -> None:
    """No alert table is wider than its box, and every row's buttons are on screen."""
    overflow = await page.evaluate(
        "[...document.querySelectorAll('.group')].map(g => g.scrollWidth - g.clientWidth)"
    )
    assert overflow == [0, 0], f"{width} px: the alert tables overflow by {overflow} px"
    for button in await page.locator("tr[data-alert-id] button").all():
        box = await button.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width


async def fire_on_board(page: Page, live: LiveGateway, run: Run) -> tuple[Locator, int, int]:
    """Wait (at most the field requirement, from the alarm's publish) for the red row; return
    the row, its alert id and when the page first showed it (epoch ms, browser clock)."""
    await sleep_until(run.at_ms(FIRE_AT_S))
    red = hazard_rows(page).and_(page.locator('[data-severity="red"]'))
    await expect(red).to_have_count(1, timeout=BOARD_WITHIN_MS)
    seen_ms = await page.evaluate("window.__redRowSeenMs")
    assert isinstance(seen_ms, int)
    alert_id = int(await red.get_attribute("data-alert-id") or "0")
    alert = (await live.client.get(f"/api/alerts/{alert_id}")).json()
    assert (alert["device_id"], alert["rule"], alert["severity"]) == (
        "bt1-smoke",
        "smoke_alarm",
        "red",
    )
    return red, alert_id, seen_ms


async def test_fire_alarm_appears_on_the_board_live(
    live: LiveGateway, page: Page, record_property: Any
) -> None:
    await open_board(page, live)
    await expect(hazard_rows(page)).to_have_count(0)
    await expect(page.locator("#hazards .empty")).to_be_visible()
    await page.evaluate("window.__noReload = 1")
    await page.evaluate(WATCH_RED_ROW)

    async with simulation(live, fire_scenario()) as run:
        row, _, seen_ms = await fire_on_board(page, live, run)
        # The page was updated in place, not reloaded.
        assert await page.evaluate("window.__noReload") == 1
        await expect(row).to_have_attribute("data-state", "raised")
        await expect(row).to_contain_text("烟雾火警")
        await expect(row).to_contain_text("陂头村建设路出租屋")
        await expect(row).to_contain_text("bt1-smoke")
        await expect(row.locator("button.ack")).to_be_visible()
        await expect(page.locator("#count-red")).to_have_text("1")
        await expect(page.locator("#hazards .group-n")).to_have_text("1")
        await expect(page.locator("#hazards .empty")).to_be_hidden()
        await expect(page).to_have_title("(1) EWG 安全生产预警值班台")
        await screenshot(page, "board-live-fire")

    assert run.report is not None
    truth = next(t for t in run.report.truth if t.expected_rule == "smoke_alarm")
    assert truth.crossed_ms == run.at_ms(FIRE_AT_S)
    latency_ms = seen_ms - truth.crossed_ms
    record_property("publish_to_board_ms", latency_ms)
    print(f"smoke alarm published -> red row on the board: {latency_ms} ms")
    assert 0 <= latency_ms < BOARD_WITHIN_MS


async def test_officer_acknowledges_then_closes_as_false_alarm(
    live: LiveGateway, page: Page
) -> None:
    await open_board(page, live)
    await page.evaluate(WATCH_RED_ROW)
    async with simulation(live, fire_scenario()) as run:
        row, alert_id, _ = await fire_on_board(page, live, run)

        await row.locator("button.ack").click()
        await expect(row).to_have_attribute("data-state", "acknowledged")
        await expect(row.locator(".state-label")).to_have_text("已确认")
        await expect(row.locator("button.ack")).to_have_count(0)  # nothing left to acknowledge
        await expect(page).to_have_title("EWG 安全生产预警值班台")

        await row.locator("button.close").click()
        dialog = page.locator("#close-dialog")
        await expect(dialog).to_be_visible()
        await expect(dialog.locator(".close-target")).to_contain_text(f"#{alert_id}")
        await expect(dialog.locator(".close-target")).to_contain_text("烟雾火警")
        # Confirming without a disposition is refused, in words, and the dialog stays open.
        await dialog.locator("button.confirm-close").click()
        await expect(dialog.locator(".form-error")).to_have_text("请选择处置结果")
        await expect(dialog).to_be_visible()

        await dialog.locator("select[name=disposition]").select_option("false_alarm")
        await expect(dialog.locator(".form-error")).to_be_hidden()  # answered: no stale error
        await dialog.locator("textarea[name=note]").fill(CLOSE_NOTE)
        publish(await screenshot(page, "close-dialog-zh"), "console-close")
        await dialog.locator("button.confirm-close").click()
        await expect(dialog).to_be_hidden()
        await expect(page.locator(f'tr[data-alert-id="{alert_id}"]')).to_have_count(0)
        await expect(page.locator("#count-red")).to_have_text("0")
        await expect(page.locator("#hazards .empty")).to_be_visible()

        # The record says the same as the board.
        alert = (await live.client.get(f"/api/alerts/{alert_id}")).json()
        assert alert["state"] == "closed"
        assert alert["disposition"] == "false_alarm"
        assert alert["note"] == CLOSE_NOTE
        assert alert["acknowledged"] and alert["acknowledged_by"] == "admin"
        assert alert["closed_by"] == "admin"
        history = (await live.client.get(f"/api/alerts/{alert_id}/history")).json()
        steps = [(h["from_state"], h["to_state"], h["actor"]) for h in history]
        assert steps == [
            (None, "raised", "system"),
            ("raised", "acknowledged", "admin"),
            ("acknowledged", "closed", "admin"),
        ]
        assert history[-1]["note"] == CLOSE_NOTE

        # Closed for good: a reload (another officer's screen) does not bring it back.
        await page.reload()
        await expect(page.locator("#live")).to_have_attribute("data-state", "live")
        await expect(page.locator("#hazards .empty")).to_be_visible()
        await expect(hazard_rows(page)).to_have_count(0)


async def slow_if_refused(route: Route) -> None:
    """Delay requests with a wrong token: the health check by 0.1 s, the alert list by 0.4 s."""
    if route.request.headers.get("authorization") != f"Bearer {TOKEN}":
        await asyncio.sleep(0.1 if route.request.url.endswith("/api/health") else 0.4)
    await route.continue_()


async def test_sign_in_refuses_a_wrong_token_and_accepts_the_right_one(
    live: LiveGateway, page: Page
) -> None:
    async with simulation(live, fire_scenario()) as run:

        async def raised() -> bool:
            return bool((await live.client.get("/api/alerts", params={"state": "open"})).json())

        await sleep_until(run.at_ms(FIRE_AT_S))
        await eventually(raised, timeout_s=BOARD_WITHIN_MS / 1000)

        # No token: the sign-in box, and not a single alert on the page.
        await page.goto(f"{live.base_url}/")
        signin, board = page.locator("#signin"), page.locator("#board")
        await expect(signin).to_be_visible()
        await expect(board).to_be_hidden()
        await expect(page.locator("tr[data-alert-id]")).to_have_count(0)
        await expect(page.locator("#live")).to_have_attribute("data-state", "offline")
        await expect(page.locator("input[name=token]")).to_be_focused()
        # Signed out there is no system state to show (no "…" placeholders either).
        await expect(page.locator("#health-status")).to_be_hidden()
        await expect(page.locator("#health-broker")).to_be_hidden()
        await screenshot(page, "signin-zh")

        # A wrong token: refused with a message, still no alerts.
        await page.locator("input[name=token]").fill("not-the-token")
        # The health and list calls answer after the event stream (as on a slow link): the
        # refused stream makes the page ask for the list again, after the reason is shown,
        # and that must not wipe the reason off the screen.
        await page.route("**/api/alerts?state=open", slow_if_refused)
        await page.route("**/api/health", slow_if_refused)
        async with page.expect_response(lambda r: r.url.endswith("?state=open")) as listed:
            await page.locator("input[name=token]").press("Enter")
        assert (await listed.value).status == 401
        await page.evaluate("() => new Promise((done) => setTimeout(done, 200))")  # page handles it
        error = page.locator(".signin-error")
        await expect(error).to_be_visible()
        await expect(error).to_contain_text("访问令牌无效或已过期")
        await expect(signin).to_be_visible()
        await expect(board).to_be_hidden()
        await expect(page.locator("tr[data-alert-id]")).to_have_count(0)
        await page.unroute_all()

        # The right one: the board, live, with the open fire.
        await page.locator("input[name=token]").fill(TOKEN)
        await page.locator("#signin button[type=submit]").click()
        await expect(board).to_be_visible()
        await expect(signin).to_be_hidden()
        await expect(page.locator("#live")).to_have_attribute("data-state", "live")
        await expect(hazard_rows(page)).to_have_count(1)
        await expect(page.locator("#count-red")).to_have_text("1")
        await expect(page.locator("#health-status")).to_have_text("系统正常")
        await expect(page.locator("#health-broker")).to_have_text("消息总线已连接")

        # A notification's link (/#alert=ID) points the officer at that very alert.
        alerts = (await live.client.get("/api/alerts", params={"state": "open"})).json()
        linked = page.locator(f'tr[data-alert-id="{alerts[0]["id"]}"]')
        await expect(linked).not_to_have_class(re.compile("linked"))
        await page.goto(f"{live.base_url}/#alert={alerts[0]['id']}")
        await expect(linked).to_have_class(re.compile("linked"))


async def test_english_labels_are_remembered_after_reload(live: LiveGateway, page: Page) -> None:
    async with simulation(live, town_scenario()) as run:
        await open_board(page, live)
        await sleep_until(run.at_ms(FIRE_AT_S))
        await expect(hazard_rows(page)).to_have_count(2)
        await expect(page.locator("#faults tbody tr[data-alert-id]")).to_have_count(1)
        # Red before orange, whatever came first.
        severities = [await r.get_attribute("data-severity") for r in await hazard_rows(page).all()]
        assert severities == ["red", "orange"]
        for sev, n in {"red": "1", "orange": "1", "yellow": "0", "blue": "1"}.items():
            await expect(page.locator(f"#count-{sev}")).to_have_text(n)

        h1, hazards_h2 = page.locator("h1"), page.locator("#hazards h2")
        await expect(h1).to_have_text("安全生产预警值班台")
        await expect(hazards_h2).to_contain_text("隐患告警")
        await expect(page.locator("#live")).to_have_text("实时推送中")
        publish(await screenshot(page, "board-zh"), "console-board")

        await page.locator("#lang-en").click()
        await expect(page.locator("#lang-en")).to_have_attribute("aria-pressed", "true")
        await expect(h1).to_have_text("Safety early-warning console")
        await expect(hazards_h2).to_contain_text("Hazard alarms")
        await expect(page.locator("#faults h2")).to_contain_text("Equipment faults")
        await expect(page.locator("#hazards thead th").first).to_have_text("Level")
        await expect(page.locator("#live")).to_have_text("Live")
        await expect(hazard_rows(page).first).to_contain_text("Smoke fire alarm")
        await expect(page.locator("html")).to_have_attribute("lang", "en")
        await screenshot(page, "board-en")
        # English labels are longer: on a small desktop every button must still be on screen.
        for width in (1024, 1280):
            await page.set_viewport_size({"width": width, "height": 768})
            await assert_board_fits(page, width)
        await page.set_viewport_size({"width": 1366, "height": 768})

        await page.reload()
        await expect(page.locator("#live")).to_have_attribute("data-state", "live")
        await expect(h1).to_have_text("Safety early-warning console")
        await expect(hazards_h2).to_contain_text("Hazard alarms")
        await expect(page.locator("#lang-en")).to_have_attribute("aria-pressed", "true")
        await expect(hazard_rows(page).first).to_contain_text("Smoke fire alarm")

        await page.locator("#lang-zh").click()
        await expect(h1).to_have_text("安全生产预警值班台")
