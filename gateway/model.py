"""The data that flows through the gateway, as small frozen dataclasses.

Pydantic lives at the edges (profiles, API, settings); inside, everything is a
dataclass so the hot path stays cheap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds (the unit of every timestamp in EWG)."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One MQTT message as the gateway sees it, independent of the MQTT library."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    received_ms: int


@dataclass(frozen=True, slots=True)
class Reading:
    """One validated value of one canonical metric of one device at one instant."""

    device_id: str
    metric: str
    ts_ms: int
    value: float
    #: True when the device sent no timestamp and the gateway stamped receive time.
    ts_assumed: bool = False


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """A discrete event a device reported (smoke alarm, tamper, battery low, ...)."""

    device_id: str
    type: str
    ts_ms: int
    detail: dict[str, Any] = field(default_factory=dict)
    ts_assumed: bool = False


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A device's retained ``online`` / ``offline`` status (usually its MQTT will)."""

    device_id: str
    online: bool
    ts_ms: int


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why (part of) a message was not accepted; it goes to the dead-letter store."""

    reason: str
    detail: str
    device_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected message, kept with its raw bytes so nothing is silently dropped."""

    received_ms: int
    topic: str
    payload: bytes
    reason: str
    detail: str
    device_id: str | None = None
    id: int | None = None
