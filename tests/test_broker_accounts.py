"""Per-device MQTT accounts, enforced by a real Mosquitto with the dynamic-security plugin.

What is asserted is what the people involved would notice: the electrician gets a
secret once and it works; a device cannot speak for another one or listen to
anyone; a wrong, rotated or revoked secret is refused by the broker; the gateway
never sees what the broker refused (its store and counters say so).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.config import Settings, load_settings
from gateway.connection_sheet import SECRET_PLACEHOLDER, sheet_for
from gateway.errors import BrokerError
from gateway.service import Gateway
from tests.conftest import TOKEN, LiveGateway, eventually, run_gateway
from tests.servers import Mosquitto, dynsec_config, free_port

ADMIN, ADMIN_PASSWORD = "ewg-admin", "admin-pw-for-tests-only"
GATEWAY_USER, GATEWAY_PASSWORD = "ewg-gateway", "gateway-pw-for-tests-only"
SITE = {"id": "shop-1", "name": "五金店", "village": "陂头村", "industry": "small_shop"}
METRIC = "residual_current_ma"

runner = CliRunner()


@pytest.fixture
def dynsec_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    directory = tmp_path / "mosquitto"
    directory.mkdir()
    broker = Mosquitto(
        directory,
        allow_anonymous=False,
        extra_config=dynsec_config(directory, ADMIN, ADMIN_PASSWORD),
    ).start()
    yield broker
    broker.stop()


def secured_settings(tmp_path: Path, broker: Mosquitto, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "broker_url": f"mqtt://{GATEWAY_USER}:{GATEWAY_PASSWORD}@127.0.0.1:{broker.port}",
        "broker_accounts": "dynsec",
        "broker_admin_username": ADMIN,
        "broker_admin_password": ADMIN_PASSWORD,
        "data_dir": tmp_path / "data",
        "http_port": free_port(),
        "api_token": TOKEN,
        "mqtt_client_id": f"ewg-test-{broker.port}",
        "offline_sweep_s": 0.5,
    }
    return load_settings(**{**values, **overrides})


@pytest.fixture
async def secured(tmp_path: Path, dynsec_broker: Mosquitto) -> AsyncIterator[LiveGateway]:
    async with run_gateway(secured_settings(tmp_path, dynsec_broker)) as live:
        assert (await live.client.post("/api/sites", json=SITE)).status_code == 201
        yield live


async def enrol(live: LiveGateway, device_id: str) -> dict[str, Any]:
    response = await live.client.post(
        "/api/devices",
        json={"id": device_id, "profile": "electrical_fire_monitor", "site_id": SITE["id"]},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def device(port: int, username: str | None, secret: str | None, client_id: str = "") -> Any:
    return aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=client_id or username or "anonymous-device",
        username=username,
        password=secret,
        timeout=10,
    )


def port_of(live: LiveGateway) -> int:
    assert live.settings.broker_url is not None
    return int(live.settings.broker_url.rsplit(":", 1)[1])


async def publish(client: aiomqtt.Client, device_id: str, value: float) -> None:
    """QoS 1: returns once the broker has the message (accepted or, silently, refused)."""
    body = json.dumps({"values": {METRIC: value}})
    await client.publish(f"ewg/v1/{device_id}/telemetry", body, qos=1)


async def readings(live: LiveGateway, device_id: str) -> list[float]:
    rows = (
        await live.client.get(
            "/api/telemetry", params={"device_id": device_id, "metric": METRIC, "start_ms": 0}
        )
    ).json()
    return [r["value"] for r in rows]


async def arrived(live: LiveGateway, device_id: str, value: float) -> None:
    async def check() -> bool:
        return value in await readings(live, device_id)

    await eventually(check)


#: CONNACK refusal "not authorised" (MQTT 3.1.1 return code 5, reported by paho as 0x87).
NOT_AUTHORIZED = 0x87


async def refused(client: aiomqtt.Client) -> int:
    """The broker's CONNACK refusal code, as the device's MQTT library reports it."""
    with pytest.raises(aiomqtt.MqttCodeError) as caught:
        async with client:
            pass
    rc = caught.value.rc
    return rc if isinstance(rc, int) else int(getattr(rc, "value", -1))


async def cut_off(client: aiomqtt.Client) -> None:
    """Wait until the broker closes this client's connection (it subscribes to nothing)."""
    with pytest.raises(aiomqtt.MqttError, match="Disconnected"):
        async with asyncio.timeout(15):
            async for _ in client.messages:
                pass


async def test_secret_is_shown_once_works_and_only_its_hash_is_kept(
    secured: LiveGateway, dynsec_broker: Mosquitto
) -> None:
    created = await enrol(secured, "efm-1")
    creds = created["credentials"]
    secret = creds["secret"]
    assert (creds["username"], creds["client_id"]) == ("efm-1", "efm-1")
    assert creds["broker_url"] == f"mqtt://127.0.0.1:{dynsec_broker.port}"
    assert creds["topics"] == [
        "ewg/v1/efm-1/telemetry",
        "ewg/v1/efm-1/event",
        "ewg/v1/efm-1/status",
    ]
    assert len(secret) >= 40 and f"-P {secret}" in creds["mosquitto_pub"]
    assert created["secret_issued_at"] is not None
    # The example is the connection sheet's (the portal and `ewg device add` print the same),
    # with this secret in it; and it works as pasted.
    efm1 = await secured.gateway.registry.get_device("efm-1")
    sheet = sheet_for(secured.gateway.accounts, efm1).mosquitto_pub
    assert creds["mosquitto_pub"] == sheet.replace(SECRET_PLACEHOLDER, shlex.quote(secret))
    words = shlex.split(creds["mosquitto_pub"])
    pasted = await asyncio.create_subprocess_exec(*words, stderr=asyncio.subprocess.PIPE)
    assert await pasted.wait() == 0
    await arrived(secured, "efm-1", json.loads(words[words.index("-m") + 1])["values"][METRIC])

    # It works: the device connects with it and its reading is stored.
    async with device(dynsec_broker.port, "efm-1", secret) as efm:
        await publish(efm, "efm-1", 152)
    await arrived(secured, "efm-1", 152)

    # Never shown again, and nowhere on our side in plain text.
    shown = await secured.client.get("/api/devices/efm-1")
    listed = await secured.client.get("/api/devices")
    assert secret not in shown.text and secret not in listed.text
    assert "secret" not in shown.json() and shown.json()["secret_issued_at"] is not None
    entries = await secured.gateway.audit.entries()
    assert all(secret not in json.dumps(e.detail) for e in entries)
    add = next(e for e in entries if e.action == "device.add")
    assert (add.actor, add.target, add.detail["mqtt_secret"]) == ("admin", "efm-1", "issued")
    data_dir = secured.settings.data_dir
    for path in data_dir.iterdir():
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    stored = await secured.gateway.registry.secret_hash("efm-1")
    assert stored is not None and stored.startswith("$argon2id$")
    assert await secured.gateway.accounts.verify("efm-1", secret)
    assert not await secured.gateway.accounts.verify("efm-1", secret[:-1] + "x")
    # Mosquitto keeps its own salted hash, not the secret.
    assert secret not in (dynsec_broker.directory / "dynamic-security.json").read_text()

    again = await secured.client.post(
        "/api/devices", json={"id": "efm-1", "profile": "electrical_fire_monitor", "site_id": "x"}
    )
    assert again.status_code == 409 and secret not in again.text


async def test_wrong_secret_client_id_or_no_credentials_cannot_connect(
    secured: LiveGateway, dynsec_broker: Mosquitto
) -> None:
    secret = (await enrol(secured, "efm-1"))["credentials"]["secret"]
    port = dynsec_broker.port
    assert await refused(device(port, "efm-1", "not-the-secret")) == NOT_AUTHORIZED
    assert await refused(device(port, "efm-1", secret, client_id="efm-2")) == NOT_AUTHORIZED
    assert await refused(device(port, "efm-2", secret)) == NOT_AUTHORIZED
    assert await refused(device(port, None, None)) == NOT_AUTHORIZED
    assert await refused(device(port, GATEWAY_USER, "guess")) == NOT_AUTHORIZED


async def test_a_device_cannot_publish_under_another_devices_id(
    secured: LiveGateway, dynsec_broker: Mosquitto
) -> None:
    secret_1 = (await enrol(secured, "efm-1"))["credentials"]["secret"]
    await enrol(secured, "efm-2")
    async with device(dynsec_broker.port, "efm-1", secret_1) as efm_1:
        await publish(efm_1, "efm-2", 999)  # forged: efm-1 speaking for efm-2
        await publish(efm_1, "efm-1", 10)  # its own, sent after: it arrives after, too
    await arrived(secured, "efm-1", 10)

    assert await readings(secured, "efm-2") == []
    counters = secured.gateway.counters
    assert counters.messages_in == 1 and counters.dead_letters == {}
    assert "Denied PUBLISH from efm-1" in dynsec_broker.log_text()


async def test_a_device_can_read_nothing(secured: LiveGateway, dynsec_broker: Mosquitto) -> None:
    secret_1 = (await enrol(secured, "efm-1"))["credentials"]["secret"]
    secret_2 = (await enrol(secured, "efm-2"))["credentials"]["secret"]
    port = dynsec_broker.port
    async with device(port, "efm-2", secret_2) as snoop:
        for topic in ("ewg/v1/efm-1/telemetry", "ewg/v1/#", "ewg/v1/efm-2/#", "#"):
            granted = await snoop.subscribe(topic, qos=1)
            assert [getattr(g, "value", g) for g in granted] == [0x80], topic  # SUBACK: refused
        async with device(port, "efm-1", secret_1) as efm_1:
            await publish(efm_1, "efm-1", 42)
        await arrived(secured, "efm-1", 42)
        assert len(snoop.messages) == 0


async def test_revoked_device_is_cut_off_at_once_and_cannot_come_back(
    secured: LiveGateway, dynsec_broker: Mosquitto
) -> None:
    secret = (await enrol(secured, "efm-1"))["credentials"]["secret"]
    port = dynsec_broker.port
    efm = device(port, "efm-1", secret)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(efm)
        await publish(efm, "efm-1", 1)
        await arrived(secured, "efm-1", 1)

        revoked = await secured.client.post("/api/devices/efm-1/revoke")
        assert revoked.status_code == 200
        assert revoked.json()["revoked_at"] and revoked.json()["revoked_by"] == "admin"
        await cut_off(efm)
        stack.pop_all()  # the broker closed it; nothing left to disconnect

    assert await refused(device(port, "efm-1", secret)) == NOT_AUTHORIZED
    rotate = await secured.client.post("/api/devices/efm-1/secret")
    assert rotate.status_code == 409 and "revoked" in rotate.json()["detail"]
    assert (await secured.client.post("/api/devices/efm-1/revoke")).status_code == 200  # again
    assert (await secured.client.post("/api/devices/nope/revoke")).status_code == 404
    actions = [(e.actor, e.action, e.target) for e in await secured.gateway.audit.entries()]
    assert actions.count(("admin", "device.revoke", "efm-1")) == 2
    assert await readings(secured, "efm-1") == [1.0]


async def test_rotating_makes_the_old_secret_fail_and_the_new_one_work(
    secured: LiveGateway, dynsec_broker: Mosquitto
) -> None:
    old = (await enrol(secured, "efm-1"))["credentials"]["secret"]
    port = dynsec_broker.port
    session = device(port, "efm-1", old)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(session)
        rotated = await secured.client.post("/api/devices/efm-1/secret")
        assert rotated.status_code == 200 and rotated.headers["cache-control"] == "no-store"
        await cut_off(session)  # the session opened with the old secret is closed too
        stack.pop_all()
    new = rotated.json()["secret"]
    assert new != old

    assert await refused(device(port, "efm-1", old)) == NOT_AUTHORIZED
    async with device(port, "efm-1", new) as efm:
        await publish(efm, "efm-1", 7)
    await arrived(secured, "efm-1", 7)
    assert await secured.gateway.accounts.verify("efm-1", new)
    assert not await secured.gateway.accounts.verify("efm-1", old)
    entries = await secured.gateway.audit.entries()
    assert [(e.actor, e.target) for e in entries if e.action == "device.secret.rotate"] == [
        ("admin", "efm-1")
    ]
    assert (await secured.client.post("/api/devices/nope/secret")).status_code == 404


async def test_cli_prints_working_connection_details_rotates_and_revokes(
    tmp_path: Path, dynsec_broker: Mosquitto
) -> None:
    settings = secured_settings(tmp_path, dynsec_broker)
    config = tmp_path / "ewg.toml"
    config.write_text(
        f'broker_url = "{settings.broker_url}"\n'
        'broker_accounts = "dynsec"\n'
        f'broker_admin_username = "{ADMIN}"\n'
        f'broker_admin_password = "{ADMIN_PASSWORD}"\n'
        f'data_dir = "{settings.data_dir}"\n',
        encoding="utf-8",
    )
    cli = ["--config", str(config)]

    async def ewg(*args: str) -> str:
        result = await asyncio.to_thread(runner.invoke, app, [*args, *cli])
        assert result.exit_code == 0, result.output
        return result.output

    def field(output: str, name: str) -> str:
        return next(line.split(":", 1)[1].strip() for line in output.splitlines() if name in line)

    async with run_gateway(settings) as live:
        await ewg("site", "add", "shop-1", "--name", "n", "--village", "v", "--industry", "i")
        added = await ewg(
            "device", "add", "efm-9", "--profile", "electrical_fire_monitor", "--site", "shop-1"
        )
        assert "shown only now" in added
        assert field(added, "username:") == "efm-9" and field(added, "client id:") == "efm-9"
        secret = field(added, "secret:")
        # The printed example, run as printed, gets a reading into the gateway.
        example = next(line.strip() for line in added.splitlines() if "mosquitto_pub" in line)
        pub = await asyncio.create_subprocess_exec(
            *shlex.split(example), stderr=asyncio.subprocess.PIPE
        )
        _, err = await pub.communicate()
        assert pub.returncode == 0, err
        sent = json.loads(shlex.split(example)[-1])["values"][METRIC]
        await arrived(live, "efm-9", sent)

        rotated = await ewg("device", "rotate-secret", "efm-9")
        new = field(rotated, "secret:")
        assert new != secret
        assert await refused(device(dynsec_broker.port, "efm-9", secret)) == NOT_AUTHORIZED
        async with device(dynsec_broker.port, "efm-9", new):
            pass

        assert "cut it off" in await ewg("device", "revoke", "efm-9")
        assert await refused(device(dynsec_broker.port, "efm-9", new)) == NOT_AUTHORIZED
        actions = {(e.action, e.actor.split(":")[0]) for e in await live.gateway.audit.entries()}
        assert actions >= {
            ("device.add", "cli"),
            ("device.secret.rotate", "cli"),
            ("device.revoke", "cli"),
        }


async def test_revoking_while_the_broker_is_down_is_finished_when_the_gateway_starts(
    tmp_path: Path, dynsec_broker: Mosquitto
) -> None:
    settings = secured_settings(tmp_path, dynsec_broker)
    async with run_gateway(settings) as live:
        assert (await live.client.post("/api/sites", json=SITE)).status_code == 201
        secret = (await enrol(live, "efm-1"))["credentials"]["secret"]
        dynsec_broker.stop()
        down = await live.client.post("/api/devices/efm-1/revoke")
        assert down.status_code == 503 and "broker" in down.json()["detail"]
        shown = (await live.client.get("/api/devices/efm-1")).json()
        assert shown["revoked_at"] is not None  # the registry has it: its messages are ignored
    dynsec_broker.start()
    async with device(dynsec_broker.port, "efm-1", secret):
        pass  # the broker never heard of the revocation ...
    async with run_gateway(settings):
        pass  # ... until the gateway starts and reconciles
    assert await refused(device(dynsec_broker.port, "efm-1", secret)) == NOT_AUTHORIZED


async def test_the_gateway_refuses_to_start_with_a_wrong_admin_password(
    tmp_path: Path, dynsec_broker: Mosquitto
) -> None:
    settings = secured_settings(tmp_path, dynsec_broker, broker_admin_password="wrong")
    with pytest.raises(BrokerError, match=r"as 'ewg-admin': .*Not authorized"):
        async with Gateway(settings):
            pass


async def test_with_accounts_off_no_secret_is_issued_and_revoke_still_ignores_the_device(
    live: LiveGateway,
) -> None:
    """The default (anonymous broker): nothing to hand out, but revocation still holds."""
    assert (await live.client.post("/api/sites", json=SITE)).status_code == 201
    created = await enrol(live, "efm-1")
    assert created["credentials"] is None and created["secret_issued_at"] is None
    rotate = await live.client.post("/api/devices/efm-1/secret")
    assert rotate.status_code == 409 and "broker accounts are off" in rotate.json()["detail"]
    assert (await live.client.post("/api/devices/efm-1/revoke")).status_code == 200

    async with device(port_of(live), None, None, client_id="efm-1") as efm:
        await publish(efm, "efm-1", 5)

    async def refused_as_unknown() -> bool:
        return live.gateway.counters.dead_letters.get("unknown_device", 0) == 1

    await eventually(refused_as_unknown)
    assert await readings(live, "efm-1") == []
