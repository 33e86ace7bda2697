"""Realistic, normal telemetry of electrical fire monitors: the detectors run, nothing alerts.

Values sit well inside the profile's pre-warning bounds (residual current < 240 mA,
cable temperature < 60 °C), so every reading goes through validation and the
threshold detectors without raising an alert.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

PROFILE = "electrical_fire_monitor"
SMOKE_PROFILE = "smoke_alarm_nbiot"


def device_ids(count: int, prefix: str = "efm") -> list[str]:
    """``efm-000``, ``efm-001``, ...

    >>> device_ids(2)
    ['efm-000', 'efm-001']
    """
    return [f"{prefix}-{i:03d}" for i in range(count)]


def values(rng: random.Random, count: int, cable_c: float | None = None) -> dict[str, float]:
    """3 or 4 normal values of an electrical fire monitor.

    ``cable_c`` holds a device's cable temperature steady: the bench sends a device's
    messages milliseconds apart, and a cable whose temperature jumped by degrees between
    them would be, rightly, a broken probe (the profile's sensor-fault rule).

    >>> sorted(values(random.Random(1), 4))
    ['cable_temp_1_c', 'current_a', 'residual_current_ma', 'voltage_v']
    """
    out = {
        "residual_current_ma": round(rng.uniform(80.0, 180.0), 1),
        "cable_temp_1_c": round(rng.uniform(26.0, 45.0), 1) if cable_c is None else cable_c,
        "voltage_v": round(rng.uniform(214.0, 236.0), 1),
    }
    if count >= 4:
        out["current_a"] = round(rng.uniform(4.0, 60.0), 2)
    return out


def line(ts_ms: int, rng: random.Random, count: int, cable_c: float | None = None) -> str:
    """One telemetry message of the README contract, as one line of JSON."""
    return json.dumps(
        {"ts": ts_ms, "values": values(rng, count, cable_c)}, separators=(",", ":")
    )


def values_in(index: int) -> int:
    """Messages alternate between 3 and 4 values (3.5 readings per message on average)."""
    return 3 + index % 2


@dataclass(frozen=True, slots=True)
class Feed:
    """A file of telemetry lines for one device, to pipe into ``mosquitto_pub -l``."""

    device_id: str
    path: Path
    messages: int
    readings: int

    @property
    def topic(self) -> str:
        return f"ewg/v1/{self.device_id}/telemetry"


def split(total: int, parts: int) -> list[int]:
    """``total`` messages over ``parts`` devices, as evenly as possible.

    >>> split(10, 3)
    [4, 3, 3]
    """
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def write_feeds(directory: Path, devices: list[str], total: int, end_ms: int,
                seed: int = 14287) -> list[Feed]:
    """One feed per device, ``total`` messages in all, timestamps distinct and increasing.

    Each device's timestamps end at ``end_ms`` and step evenly back over at most
    100 s, so nothing is a duplicate and no device looks offline (5 missed
    60 s heartbeats) by the time its last reading is in.
    """
    rng = random.Random(seed)
    feeds: list[Feed] = []
    for device_id, count in zip(devices, split(total, len(devices)), strict=True):
        if count == 0:
            continue
        step = max(1, min(1000, 100_000 // count))
        start = end_ms - (count - 1) * step
        readings = 0
        cable_c = round(rng.uniform(26.0, 45.0), 1)
        path = directory / f"{device_id}.jsonl"
        with path.open("w", encoding="utf-8") as out:
            for i in range(count):
                n = values_in(i)
                readings += n
                out.write(line(start + i * step, rng, n, cable_c))
                out.write("\n")
        feeds.append(Feed(device_id, path, count, readings))
    return feeds
