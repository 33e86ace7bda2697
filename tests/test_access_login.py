"""Login sessions in a live gateway: cookies, CSRF, logout, expiry, throttling, audit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.config import Settings
from gateway.model import now_ms
from gateway.scope import Role
from tests.clock import FakeClock
from tests.conftest import LiveGateway, run_gateway

PASSWORD = "correct horse battery"


async def _add_duty(live: LiveGateway, username: str = "wang") -> None:
    await live.gateway.users.add(username, PASSWORD, Role.DUTY, display_name="Wang Wei")


def _browser(live: LiveGateway) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=live.base_url, timeout=10)


async def _login(
    browser: httpx.AsyncClient, username: str = "wang", password: str = PASSWORD
) -> httpx.Response:
    return await browser.post("/api/auth/login", json={"username": username, "password": password})


async def test_login_sets_the_session_and_csrf_cookies(live: LiveGateway) -> None:
    await _add_duty(live)
    async with _browser(live) as browser:
        assert (await browser.get("/api/auth/me")).status_code == 401
        response = await _login(browser)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["username"] == "wang" and body["role"] == "duty"
        assert body["display_name"] == "Wang Wei"
        assert body["villages"] is None and body["enterprise"] is None
        cookies = response.headers.get_list("set-cookie")
        session = next(c for c in cookies if c.startswith("ewg_session="))
        csrf = next(c for c in cookies if c.startswith("ewg_csrf="))
        assert "HttpOnly" in session and "samesite=lax" in session.lower()
        assert "Path=/" in session and "Secure" not in session  # plain http on loopback
        assert "HttpOnly" not in csrf
        assert browser.cookies["ewg_csrf"] == body["csrf_token"]
        assert PASSWORD not in response.text

        me = await browser.get("/api/auth/me")
        assert me.status_code == 200 and me.json() == body
        # The cookie alone authenticates reads.
        assert (await browser.get("/api/alerts")).status_code == 200
        # Logging in again replaces the session (a new id, so a planted one is useless).
        first = browser.cookies["ewg_session"]
        again = await _login(browser)
        assert again.json()["csrf_token"] != body["csrf_token"]
        assert browser.cookies["ewg_session"] != first
        assert await live.gateway.sessions.count("wang") == 1


async def test_an_unsafe_request_by_cookie_needs_the_csrf_header(live: LiveGateway) -> None:
    await _add_duty(live)
    site = {"id": "shop-1", "name": "Shop", "village": "east", "industry": "small_shop"}
    async with _browser(live) as browser:
        token = (await _login(browser)).json()["csrf_token"]
        refused = await browser.post("/api/sites", json=site)
        assert refused.status_code == 403 and "X-CSRF-Token" in refused.json()["detail"]
        wrong = await browser.post("/api/sites", json=site, headers={"X-CSRF-Token": "0" * 64})
        assert wrong.status_code == 403
        assert live.gateway.registry.find_site("shop-1") is None
        ok = await browser.post("/api/sites", json=site, headers={"X-CSRF-Token": token})
        assert ok.status_code == 201, ok.text
    # Bearer clients need no CSRF token.
    other = {**site, "id": "shop-2"}
    assert (await live.client.post("/api/sites", json=other)).status_code == 201
    added = {
        e.target: e.actor for e in await live.gateway.audit.entries() if e.action == "site.add"
    }
    assert added == {"shop-1": "wang", "shop-2": "admin"}


async def test_logout_ends_the_session_on_the_server(live: LiveGateway) -> None:
    await _add_duty(live)
    async with _browser(live) as browser:
        await _login(browser)
        stolen = browser.cookies["ewg_session"]
        out = await browser.post("/api/auth/logout")
        assert out.status_code == 204
        assert "ewg_session" not in browser.cookies
        assert (await browser.get("/api/auth/me")).status_code == 401
    # A copy of the cookie taken before the logout opens nothing either.
    async with _browser(live) as thief:
        thief.cookies.set("ewg_session", stolen)
        response = await thief.get("/api/alerts")
        assert response.status_code == 401 and "log in again" in response.json()["detail"]
    actions = [e.action for e in await live.gateway.audit.entries()]
    assert "auth.login" in actions and "auth.logout" in actions


async def test_wrong_passwords_and_unknown_users_get_the_same_401(live: LiveGateway) -> None:
    await _add_duty(live)
    async with _browser(live) as browser:
        wrong = await _login(browser, password="not the password")
        unknown = await _login(browser, username="nobody")
        assert wrong.status_code == unknown.status_code == 401
        assert wrong.json() == unknown.json()
        assert "ewg_session" not in browser.cookies
        # A password typed into the username field: refused like any unknown user...
        typed = await _login(browser, username="Hunter2-Secret-Pw")
        assert typed.json() == wrong.json()
    # ...and the audit log, which nobody can edit, keeps known names but never what was
    # typed for an unknown one: only its length.
    failures = [e for e in await live.gateway.audit.entries() if e.action == "auth.login_failed"]
    assert sorted(e.target for e in failures) == [
        "unknown user (17 chars)",
        "unknown user (6 chars)",
        "wang",
    ]
    assert {e.actor for e in failures} == {e.target for e in failures}
    everything = str(await live.gateway.audit.entries())
    assert "not the password" not in everything and "hunter2" not in everything.lower()


async def test_a_disabled_user_or_a_changed_password_ends_the_sessions(live: LiveGateway) -> None:
    await _add_duty(live)
    await _add_duty(live, "li")
    async with _browser(live) as wang, _browser(live) as li:
        await _login(wang)
        await _login(li, "li")
        await live.gateway.users.set_password("wang", "a brand new password", "admin")
        assert (await wang.get("/api/alerts")).status_code == 401
        assert (await _login(wang)).status_code == 401
        assert (await _login(wang, password="a brand new password")).status_code == 200
        await live.gateway.users.set_disabled("li", True, "admin")
        assert (await li.get("/api/alerts")).status_code == 401
        assert (await _login(li, "li")).status_code == 401
        assert (await wang.get("/api/alerts")).status_code == 200


@pytest.fixture
async def quick_backoff(settings: Settings) -> AsyncIterator[LiveGateway]:
    async with run_gateway(settings.model_copy(update={"login_backoff_s": 2.0})) as running:
        yield running


async def test_sessions_expire_when_idle_and_after_their_maximum(live: LiveGateway) -> None:
    """The shipped limits (8 h idle, 14 h in all) on the session store's own clock, moved
    by the test: a loaded machine cannot make a request late enough to matter."""
    await _add_duty(live)
    idle_ms, max_ms = live.settings.session_idle_s * 1000, live.settings.session_max_s * 1000
    clock = FakeClock(now_ms() + 1)  # after the user's password was set
    live.gateway.sessions.clock = clock
    async with _browser(live) as idle:
        await _login(idle)
        clock.now += int(idle_ms) + 1
        assert (await idle.get("/api/auth/me")).status_code == 401
    async with _browser(live) as busy:
        await _login(busy)
        step = int(idle_ms // 2)
        for _ in range(int(max_ms // step)):  # busy, but not for longer than the maximum
            clock.now += step
            assert (await busy.get("/api/auth/me")).status_code == 200
        clock.now += step
        assert (await busy.get("/api/auth/me")).status_code == 401


async def test_repeated_failures_are_throttled_and_audited(quick_backoff: LiveGateway) -> None:
    live = quick_backoff
    await _add_duty(live)
    async with _browser(live) as browser:
        for _ in range(live.settings.login_max_failures):
            assert (await _login(browser, password="guess guess guess")).status_code == 401
        # Even the right password is not checked while the backoff runs.
        throttled = await _login(browser)
        assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
        await asyncio.sleep(live.settings.login_backoff_s + 0.1)
        assert (await _login(browser)).status_code == 200
    actions = [e.action for e in await live.gateway.audit.entries(limit=50)]
    assert actions.count("auth.login_failed") == live.settings.login_max_failures
    assert "auth.login_throttled" in actions
