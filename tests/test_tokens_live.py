"""Tokens and devices created by another process (the CLI) while the gateway runs.

The gateway keeps its token table and registry in memory; both re-read SQLite when
another connection has committed (``PRAGMA data_version``), so a token created with
``ewg token create`` works at once, a replaced one stops working at once, and a device
added from the CLI is announced through ``Registry.on_add``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from typer.testing import CliRunner

from gateway.auth import TokenStore
from gateway.cli import app
from gateway.config import Settings, load_settings
from gateway.profiles import load_profiles
from gateway.registry import Registry
from gateway.registry_model import Device, Site
from gateway.service import open_main_db
from tests.conftest import LiveGateway

runner = CliRunner()


async def _status(live: LiveGateway, token: str) -> int:
    async with httpx.AsyncClient(base_url=live.base_url, timeout=5) as client:
        response = await client.get("/api/health", headers={"Authorization": f"Bearer {token}"})
    return response.status_code


async def _create_elsewhere(settings: Settings, name: str) -> str:
    """Create a token the way the CLI does: a separate connection to the same file."""
    async with open_main_db(settings) as db:
        return await TokenStore(db).create(name, "admin", actor="cli")


def _cli_create(settings: Settings, name: str) -> str:
    result = runner.invoke(app, ["token", "create", name, "--data-dir", str(settings.data_dir)])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


async def test_a_token_created_elsewhere_works_at_once(live: LiveGateway) -> None:
    assert await _status(live, "ewg_not_yet") == 401
    token = await _create_elsewhere(live.settings, "night")
    assert await _status(live, token) == 200
    assert await _status(live, token + "x") == 401


async def test_a_token_replaced_elsewhere_stops_working_at_once(live: LiveGateway) -> None:
    old = await _create_elsewhere(live.settings, "night")
    assert await _status(live, old) == 200
    new = await _create_elsewhere(live.settings, "night")
    assert await _status(live, old) == 401
    assert await _status(live, new) == 200


async def test_a_token_created_with_the_cli_works_at_once(live: LiveGateway) -> None:
    token = await asyncio.to_thread(_cli_create, live.settings, "night")
    assert token.startswith("ewg_")
    assert await _status(live, token) == 200
    replaced = await asyncio.to_thread(_cli_create, live.settings, "night")
    assert await _status(live, token) == 401
    assert await _status(live, replaced) == 200
    assert await _status(live, "wrong-token") == 401


async def test_the_admin_token_keeps_working_across_reloads(live: LiveGateway) -> None:
    await _create_elsewhere(live.settings, "other")
    assert (await live.client.get("/api/health")).status_code == 200


async def test_a_device_added_elsewhere_is_announced_on_refresh(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    profiles = load_profiles(settings.profiles_dir)
    site = Site("s1", "Shop", "Village", "small_shop")
    async with open_main_db(settings) as gateway_db, open_main_db(settings) as cli_db:
        registry = Registry(gateway_db, profiles)
        await registry.refresh()
        added: list[Device] = []
        registry.on_add.append(added.append)

        mine = Device("d0", "power_meter", "s1")
        await registry.add_site(site, "test")
        await registry.add_device(mine, "test")
        assert added == [mine]

        cli = Registry(cli_db, profiles)
        await cli.refresh()
        theirs = Device("d1", "power_meter", "s1")
        await cli.add_device(theirs, "cli")

        await registry.refresh()
        assert added == [mine, theirs]
        await registry.refresh()  # nothing new: no second announcement
        assert added == [mine, theirs]

        late = Device("d2", "power_meter", "s1")
        await cli.add_device(late, "cli")
        assert await registry.find_device("d2") == late  # a lookup miss refreshes too
        assert added == [mine, theirs, late]
