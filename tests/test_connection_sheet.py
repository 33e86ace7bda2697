"""The connection sheet an electrician gets for a device, checked against a real broker.

What matters to the electrician: the ``mosquitto_pub`` line printed by ``ewg device add``
works as printed (also on an anonymous broker, where it used to print only a topic), the
example payload of every shipped profile is accepted and raises no alarm, and the secret is
on the sheet only when it was just issued. The dynamic-security variant (username, secret,
refusal of a wrong one) runs in ``tests/test_broker_accounts.py`` and the portal's browser test.
"""

from __future__ import annotations

import asyncio
import json
import shlex
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from gateway.broker_accounts import Credentials
from gateway.cli import app
from gateway.connection_sheet import SECRET_PLACEHOLDER, connection_sheet, sheet_for
from gateway.profiles import DEFAULT_PROFILE_DIR, load_profiles
from gateway.registry_model import Device
from tests.conftest import LiveGateway, eventually

runner = CliRunner()
PROFILES = load_profiles(DEFAULT_PROFILE_DIR)


async def run_pasted(line: str) -> tuple[int, str]:
    """Run a command line exactly as pasted into a shell (no shell: shlex splits like one)."""
    process = await asyncio.create_subprocess_exec(
        *shlex.split(line), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode(errors="replace")


async def stored(live: LiveGateway, device_id: str, metric: str) -> list[float]:
    rows = (
        await live.client.get(
            "/api/telemetry", params={"device_id": device_id, "metric": metric, "start_ms": 0}
        )
    ).json()
    return [r["value"] for r in rows]


def payload_of(line: str) -> dict[str, Any]:
    words = shlex.split(line)
    body: dict[str, Any] = json.loads(words[words.index("-m") + 1])
    return body


async def test_cli_on_an_anonymous_broker_prints_a_sheet_whose_example_works(
    live: LiveGateway, tmp_path: Path
) -> None:
    config = tmp_path / "ewg.toml"
    config.write_text(
        f'broker_url = "{live.settings.broker_url}"\ndata_dir = "{live.settings.data_dir}"\n',
        encoding="utf-8",
    )

    async def ewg(*args: str) -> str:
        result = await asyncio.to_thread(runner.invoke, app, [*args, "--config", str(config)])
        assert result.exit_code == 0, result.output
        return result.output

    await ewg("site", "add", "shop-9", "--name", "n", "--village", "v", "--industry", "i")
    out = await ewg(
        "device", "add", "efm-9", "--profile", "electrical_fire_monitor", "--site", "shop-9"
    )
    assert f"broker:    {live.settings.broker_url}" in out
    assert "client id: efm-9" in out and "username:  (none" in out
    assert "secret:" not in out  # nothing to hand out on an anonymous broker
    assert "telemetry: ewg/v1/efm-9/telemetry" in out and "status:    ewg/v1/efm-9/status" in out
    example = next(line.strip() for line in out.splitlines() if "mosquitto_pub" in line)
    assert " -u " not in example and " -P " not in example

    code, said = await run_pasted(example)
    assert code == 0, said
    values = payload_of(example)["values"]

    async def all_arrived() -> bool:
        return all([[v] == await stored(live, "efm-9", m) for m, v in values.items()])

    await eventually(all_arrived)
    assert live.gateway.counters.dead_letters == {}


async def test_every_profiles_example_is_accepted_and_raises_no_alarm(live: LiveGateway) -> None:
    site = {"id": "s1", "name": "n", "village": "v", "industry": "i"}
    assert (await live.client.post("/api/sites", json=site)).status_code == 201
    sheets = []
    for name in sorted(PROFILES):
        device = {"id": f"dev-{name}", "profile": name, "site_id": "s1"}
        assert (await live.client.post("/api/devices", json=device)).status_code == 201
        sheet = sheet_for(live.gateway.accounts, Device(device["id"], name, "s1"))
        sheets.append(sheet)
        code, said = await run_pasted(sheet.mosquitto_pub)
        assert code == 0, said

    for sheet in sheets:
        sent: dict[str, float] = payload_of(sheet.mosquitto_pub)["values"]
        assert sent, sheet.device_id

        async def arrived(
            device_id: str = sheet.device_id, values: dict[str, float] = sent
        ) -> bool:
            return all([[float(v)] == await stored(live, device_id, m) for m, v in values.items()])

        await eventually(arrived)
    assert live.gateway.counters.dead_letters == {}
    assert (await live.client.get("/api/alerts", params={"state": "open"})).json() == []


def test_the_secret_is_on_the_sheet_only_when_it_was_just_issued() -> None:
    device = Device("gas-1", "gas_detector", "station-1")
    profile = PROFILES["gas_detector"]
    url = "mqtts://broker.example:8883"
    issued = Credentials(url, "gas-1", "gas-1", "s3cr3t-Ab_9", ("t",), "unused")

    fresh = connection_sheet(url, device, profile, accounts=True, credentials=issued)
    later = connection_sheet(url, device, profile, accounts=True)

    assert fresh.secret == "s3cr3t-Ab_9" and "-P s3cr3t-Ab_9" in fresh.mosquitto_pub
    assert "  secret:    s3cr3t-Ab_9" in fresh.lines()
    assert later.secret is None and later.to_json()["secret"] is None
    assert f"-P {SECRET_PLACEHOLDER}" in later.mosquitto_pub
    assert not any("s3cr3t" in line for line in later.lines())
    for sheet in (fresh, later):
        words = shlex.split(sheet.mosquitto_pub)
        # TLS broker: host, port and the CA to check it with, as a device's settings ask.
        assert (sheet.broker.host, sheet.broker.port, sheet.broker.tls) == (
            "broker.example",
            8883,
            True,
        )
        assert words[words.index("--cafile") + 1] == "ca.crt"
        assert words[words.index("-i") + 1] == words[words.index("-u") + 1] == "gas-1"
        assert words[words.index("-t") + 1] == "ewg/v1/gas-1/telemetry"
        # 12.5 %LEL: inside 0..100 and below the 25 %LEL level-1 alarm, so a test is quiet.
        assert payload_of(sheet.mosquitto_pub) == {"values": {"gas_lel_pct": 12.5}}
