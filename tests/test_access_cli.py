"""`ewg user ...`, `ewg token create --role` and the demo accounts, with a live gateway."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from typer.testing import CliRunner

from gateway.cli import app
from gateway.cli_users import demo_accounts
from gateway.registry_model import Site
from simulator.scenario import registrations
from simulator.town import small_town
from tests.conftest import LiveGateway, register

runner = CliRunner()
PASSWORD = "a long enough password"


def _cli(live: LiveGateway, *args: str, stdin: str | None = None) -> str:
    result = runner.invoke(app, [*args, "--data-dir", str(live.settings.data_dir)], input=stdin)
    assert result.exit_code == 0, result.output
    return result.output


async def _login(live: LiveGateway, username: str, password: str) -> int:
    async with httpx.AsyncClient(base_url=live.base_url, timeout=10) as browser:
        response = await browser.post(
            "/api/auth/login", json={"username": username, "password": password}
        )
        return response.status_code


async def test_users_added_with_the_cli_log_in_and_are_audited(live: LiveGateway) -> None:
    typed = f"{PASSWORD}\n{PASSWORD}\n"
    await asyncio.to_thread(
        _cli, live, "user", "add", "zhao", "--role", "community", "--village", "东村",
        "--name", "赵网格员", stdin=typed,
    )  # fmt: skip
    out = await asyncio.to_thread(_cli, live, "user", "add", "qian", "--role", "duty", "--generate")
    generated = out.strip().splitlines()[-1].removeprefix("password: ")
    assert await _login(live, "zhao", PASSWORD) == 200
    assert await _login(live, "qian", generated) == 200

    listing = await asyncio.to_thread(_cli, live, "user", "list")
    assert "zhao\tcommunity\t东村\tactive\t赵网格员" in listing
    assert PASSWORD not in listing and "argon2" not in listing

    await asyncio.to_thread(_cli, live, "user", "disable", "zhao")
    assert await _login(live, "zhao", PASSWORD) == 401
    await asyncio.to_thread(_cli, live, "user", "enable", "zhao")
    assert await _login(live, "zhao", PASSWORD) == 200
    new = (await asyncio.to_thread(_cli, live, "user", "passwd", "zhao", "--generate")).split()[-1]
    assert await _login(live, "zhao", PASSWORD) == 401
    assert await _login(live, "zhao", new) == 200

    entries = await live.gateway.audit.entries(limit=100)
    actions = [(e.action, e.target) for e in entries if e.actor.startswith("cli")]
    for wanted in ("user.add", "user.disable", "user.enable", "user.passwd"):
        assert (wanted, "zhao") in actions
    assert all(PASSWORD not in str(e.detail) and new not in str(e.detail) for e in entries)


def test_the_cli_refuses_a_scope_that_makes_no_sense(tmp_path: Path) -> None:
    base = ["--data-dir", str(tmp_path)]
    no_village = runner.invoke(
        app, ["user", "add", "sun", "--role", "community", "--generate", *base]
    )
    assert no_village.exit_code == 2 and "village" in no_village.output
    no_firm = runner.invoke(app, ["token", "create", "t", "--role", "enterprise", *base])
    assert no_firm.exit_code == 2 and "enterprise" in no_firm.output
    short = runner.invoke(
        app, ["user", "add", "sun", "--role", "duty", *base], input="short\nshort\n"
    )
    assert short.exit_code == 2 and "at least" in short.output


async def test_a_scoped_token_from_the_cli_sees_only_its_village(live: LiveGateway) -> None:
    await register(
        live.gateway,
        [
            Site("e1", "East shop", "东村", "small_shop"),
            Site("w1", "West shop", "西村", "small_shop"),
        ],
        [],
    )
    out = await asyncio.to_thread(
        _cli, live, "token", "create", "east", "--role", "community", "--village", "东村"
    )
    token = out.strip().splitlines()[-1]
    async with httpx.AsyncClient(
        base_url=live.base_url, timeout=10, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        sites = (await client.get("/api/sites")).json()
        assert [s["id"] for s in sites] == ["e1"]
        assert (await client.get("/api/devices/nothing-here")).status_code == 404


async def test_the_demo_accounts_log_in_with_one_role_each(live: LiveGateway) -> None:
    sites, devices = registrations(small_town())
    await register(live.gateway, sites, devices)
    accounts = await demo_accounts(live.gateway.users, sites)
    assert sorted(a.role.value for a in accounts) == ["admin", "community", "duty", "enterprise"]
    seen: dict[str, int] = {}
    for account in accounts:
        async with httpx.AsyncClient(base_url=live.base_url, timeout=10) as browser:
            me = await browser.post(
                "/api/auth/login",
                json={"username": account.username, "password": account.password},
            )
            assert me.status_code == 200, me.text
            assert me.json()["role"] == account.role.value
            seen[account.role.value] = len((await browser.get("/api/sites")).json())
    assert seen["admin"] == seen["duty"] == len(sites)
    assert 0 < seen["community"] < len(sites) and 0 < seen["enterprise"] < len(sites)
    # A second demo run on the same data directory gives new passwords that work.
    again = await demo_accounts(live.gateway.users, sites)
    assert await _login(live, "duty", again[1].password) == 200
    assert await _login(live, "duty", accounts[1].password) == 401
