"""Golden-file cases for decoding and validation (input payload, profile, expected readings).

Each file under ``tests/golden`` is one case; adding a vendor format means adding a file.
The stages run exactly as in the gateway, only fed by hand instead of by MQTT.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.decode import Decode
from gateway.model import InboundMessage
from gateway.pipeline import Delivery
from gateway.profiles import Profile, load_profiles
from gateway.registry_model import Device
from gateway.validate import Limits, Validate

GOLDEN = Path(__file__).parent / "golden"
RECEIVED_MS = 1_796_083_260_000  # 2026-12-01 08:01:00 +08:00
MAX_PAYLOAD = 4096
PROFILES = load_profiles()


async def run_stages(profile: Profile, topic: str, payload: bytes) -> Delivery:
    device = Device("efm-1", profile.name, "site-1")

    async def lookup(device_id: str) -> tuple[Device, Profile] | None:
        return (device, profile) if device_id == device.id else None

    delivery = Delivery(InboundMessage(topic, payload, 1, False, RECEIVED_MS), lambda: None)
    await Decode(lookup, MAX_PAYLOAD)(delivery)
    await Validate(Limits())(delivery)
    return delivery


def cases(kind: str) -> list[Any]:
    found = []
    for path in sorted(GOLDEN.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if ("cases" in data) == (kind == "bad"):
            found.append(pytest.param(data, id=path.stem))
    return found


@pytest.mark.parametrize("case", cases("good"))
async def test_golden_readings(case: dict[str, Any]) -> None:
    d = await run_stages(PROFILES[case["profile"]], case["topic"], case["payload"].encode())
    got = [[r.metric, r.ts_ms, r.value, r.ts_assumed] for r in d.readings]
    assert got == case["readings"]
    assert sorted(r.reason for r in d.rejections) == sorted(case["rejections"])
    for rejection in d.rejections:
        assert rejection.device_id == "efm-1" and rejection.detail


@pytest.mark.parametrize("case", cases("bad"))
async def test_golden_rejections(case: dict[str, Any]) -> None:
    profile = PROFILES[case["profile"]]
    for item in case["cases"]:
        payload = (
            b"x" * (MAX_PAYLOAD + 1) if item["payload"] == "OVERSIZE" else item["payload"].encode()
        )
        d = await run_stages(profile, item["topic"], payload)
        assert [r.reason for r in d.rejections] == [item["reason"]], item
        assert d.readings == [] and d.events == [] and d.status is None
        assert d.rejections[0].detail  # a reason a person can read


async def test_status_and_event_are_accepted() -> None:
    profile = PROFILES["electrical_fire_monitor"]
    status = await run_stages(profile, "ewg/v1/efm-1/status", b"offline")
    assert status.status is not None and status.status.online is False
    event = await run_stages(
        profile,
        "ewg/v1/efm-1/event",
        b'{"ts": 1796083200000, "type": "fault", "detail": {"code": 7}}',
    )
    assert [(e.type, e.ts_ms, e.detail) for e in event.events] == [
        ("fault", 1796083200000, {"code": 7})
    ]
