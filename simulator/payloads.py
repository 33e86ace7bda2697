"""The EWG device contract on the wire: topics, JSON shapes, and vendor field names.

Kept apart from the signal models and the MQTT runner so that tests (and the gateway's own
tests) can build and decode exactly what a simulated device sends without a broker.

Topics::

    ewg/v1/{device_id}/telemetry   {"ts": <epoch ms>, "values": {"<metric>": <number|bool>}}
                                   or a JSON list of such objects (a backfill)
    ewg/v1/{device_id}/event       {"ts": <epoch ms>, "type": "<event type>", "detail": {...}}
    ewg/v1/{device_id}/status      "online" / "offline" (plain text, retained)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from gateway.profiles import Profile

TOPIC_PREFIX = "ewg/v1"

TopicKind = Literal["telemetry", "event", "status"]
TOPIC_KINDS: tuple[TopicKind, ...] = ("telemetry", "event", "status")

#: A reading as published: numbers for measurements, booleans for ``*_bool`` metrics.
Value = float | int | bool


def topic(device_id: str, kind: TopicKind) -> str:
    """The device's topic of one kind.

    >>> topic("v1-s1-efm", "telemetry")
    'ewg/v1/v1-s1-efm/telemetry'
    """
    return f"{TOPIC_PREFIX}/{device_id}/{kind}"


def split_topic(name: str) -> tuple[str, str] | None:
    """``(device_id, kind)`` of an EWG topic, or None for anything else.

    >>> split_topic("ewg/v1/gas-1/event")
    ('gas-1', 'event')
    >>> split_topic("other/topic") is None
    True
    """
    parts = name.split("/")
    if len(parts) != 4 or "/".join(parts[:2]) != TOPIC_PREFIX:
        return None
    return parts[2], parts[3]


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON; refuses NaN so a normal message can never carry one by accident."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def telemetry(ts_ms: int, values: Mapping[str, Value]) -> dict[str, Any]:
    return {"ts": ts_ms, "values": dict(values)}


def event(ts_ms: int, event_type: str, detail: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"ts": ts_ms, "type": event_type, "detail": dict(detail or {})}


class FieldEncoder:
    """Canonical metrics to a profile's vendor field names and scales, and back.

    A profile maps ``canonical = raw * scale + offset``; a simulated vendor device must send
    ``raw = (canonical - offset) / scale``. Scales below 1 mean the vendor sends integers
    (0.1 °C steps, ...), so such raw values are rounded to whole numbers as a real device would.
    Metrics without a field mapping go out under their canonical name.

    >>> from gateway.profiles import FieldMap, MetricSpec, Profile
    >>> p = Profile(name="t", title_zh="t", title_en="t", heartbeat_s=60,
    ...     fields={"temp_current": FieldMap(metric="temperature_c", scale=0.1)},
    ...     metrics={"temperature_c": MetricSpec(unit="°C", min=-20, max=100),
    ...              "battery_pct": MetricSpec(unit="%", min=0, max=100)})
    >>> enc = FieldEncoder(p)
    >>> enc.encode({"temperature_c": 23.46, "battery_pct": 80})
    {'temp_current': 235, 'battery_pct': 80}
    >>> enc.decode({"temp_current": 235, "battery_pct": 80})
    {'temperature_c': 23.5, 'battery_pct': 80}
    """

    def __init__(self, profile: Profile) -> None:
        self._out: dict[str, tuple[str, float, float]] = {}
        for raw, mapping in profile.fields.items():
            self._out.setdefault(mapping.metric, (raw, mapping.scale, mapping.offset))
        self._in = {raw: (m.metric, m.scale, m.offset) for raw, m in profile.fields.items()}
        self._bools = {name for name, spec in profile.metrics.items() if spec.kind == "bool"}

    def field_name(self, metric: str) -> str:
        """The key this metric is published under."""
        mapped = self._out.get(metric)
        return mapped[0] if mapped is not None else metric

    def encode_value(self, metric: str, value: Value) -> Value:
        mapped = self._out.get(metric)
        if mapped is None or isinstance(value, bool):
            return value
        _, scale, offset = mapped
        raw = (float(value) - offset) / scale
        if abs(scale) < 1 or (isinstance(value, int) and raw.is_integer()):
            return round(raw)
        return round(raw, 6)

    def encode(self, values: Mapping[str, Value]) -> dict[str, Value]:
        return {self.field_name(m): self.encode_value(m, v) for m, v in values.items()}

    def decode(self, raw: Mapping[str, Value]) -> dict[str, Value]:
        """Vendor keys back to canonical metrics (what the gateway's decoder must do)."""
        out: dict[str, Value] = {}
        for key, value in raw.items():
            mapped = self._in.get(key)
            if mapped is None or isinstance(value, bool):
                out[key] = value
                continue
            metric, scale, offset = mapped
            out[metric] = round(float(value) * scale + offset, 9)
        return out
