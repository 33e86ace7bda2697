"""Shared fixtures: a real Mosquitto and a real running gateway with its HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
import uvicorn

from alerts.store import ALERT_SCHEMA
from gateway.app import create_app
from gateway.config import Settings, load_settings
from gateway.registry_model import Device, Site
from gateway.service import Gateway
from gateway.sqlite import SqliteDatabase
from tests.receivers import HttpReceiver
from tests.servers import Mosquitto, free_port

T = TypeVar("T")

TOKEN = "ewg_test_token_0123456789abcdef"


@pytest.fixture(autouse=True)
def _settings_from_the_test_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ``EWG_*`` setting exported in the shell (a zone, session limits, a store) would
    change what the tests see; each test states the settings it runs with."""
    for name in Settings.model_fields:
        monkeypatch.delenv(f"EWG_{name.upper()}", raising=False)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """The alert engine's database file (tests may reopen it to simulate a restart)."""
    return tmp_path / "ewg.db"


@pytest.fixture
async def db(db_path: Path) -> AsyncIterator[SqliteDatabase]:
    async with SqliteDatabase(db_path, schema=ALERT_SCHEMA) as database:
        yield database


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker_dir = tmp_path / "mosquitto"
    broker_dir.mkdir()
    broker = Mosquitto(broker_dir).start()
    yield broker
    broker.stop()


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    """A real HTTP server that records what the notifiers post (webhooks, robots, SMS relay)."""
    server = HttpReceiver().start()
    yield server
    server.stop()


def with_alerting(settings: Settings, tmp_path: Path, alerting_yaml: str) -> Settings:
    """``settings`` with an alerting file (escalation chains, channels) of this text."""
    path = tmp_path / "alerting.yaml"
    path.write_text(alerting_yaml, "utf-8")
    return settings.model_copy(update={"alerting_config": path})


@pytest.fixture
def settings(tmp_path: Path, mosquitto: Mosquitto) -> Settings:
    return load_settings(
        broker_url=mosquitto.url,
        data_dir=tmp_path / "data",
        http_port=free_port(),
        api_token=TOKEN,
        mqtt_client_id=f"ewg-test-{mosquitto.port}",
        offline_sweep_s=0.5,
    )


@dataclass
class LiveGateway:
    gateway: Gateway
    settings: Settings
    client: httpx.AsyncClient

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.http_host}:{self.settings.http_port}"


@contextlib.asynccontextmanager
async def run_gateway(settings: Settings) -> AsyncIterator[LiveGateway]:
    """A gateway with its API served by uvicorn on a real port.

    The port is bound before the gateway starts (not by uvicorn after it), so nothing can
    take it meanwhile; a server that stops while starting fails the test instead of
    leaving it waiting."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((settings.http_host, settings.http_port))
    with listener:
        async with Gateway(settings) as gateway:
            server = uvicorn.Server(
                uvicorn.Config(
                    create_app(settings, gateway),
                    host=settings.http_host,
                    port=settings.http_port,
                    log_level="warning",
                )
            )
            task = asyncio.create_task(server.serve(sockets=[listener]))
            while not server.started:
                if task.done():
                    raise RuntimeError(f"uvicorn did not start on port {settings.http_port}")
                await asyncio.sleep(0.02)
            try:
                await wait_connected(gateway)
                base = f"http://{settings.http_host}:{settings.http_port}"
                async with httpx.AsyncClient(
                    base_url=base, timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}
                ) as client:
                    yield LiveGateway(gateway, settings, client)
            finally:
                server.should_exit = True
                await task


async def wait_connected(gateway: Gateway, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not gateway.source.connected:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # subscriptions are sent right after CONNACK


async def eventually(
    check: Callable[[], Awaitable[T | None]], timeout_s: float = 15.0, interval_s: float = 0.1
) -> T:
    """Await ``check()`` until it returns something truthy, or fail after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while True:
            found = await check()
            if found:
                return found
            await asyncio.sleep(interval_s)


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[LiveGateway]:
    async with run_gateway(settings) as running:
        yield running


async def register(gateway: Gateway, sites: list[Site], devices: list[Device]) -> None:
    for site in sites:
        await gateway.registry.add_site(site, "test")
    for device in devices:
        await gateway.registry.add_device(device, "test")
