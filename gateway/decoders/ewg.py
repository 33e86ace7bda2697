"""EWG's own device contract.

Telemetry is ``{"ts": ..., "values": {...}}`` or a list of those (a backfill after
an outage); an event is ``{"ts": ..., "type": "...", "detail": {...}}``.

>>> EwgDecoder().telemetry({"ts": 1, "values": {"a_c": 2}})
[RawSample(ts=1, values={'a_c': 2})]
>>> EwgDecoder().telemetry({"values": 3})
Traceback (most recent call last):
...
gateway.decoders.DecodeError: "values" must be an object of metric: number
"""

from __future__ import annotations

from typing import Any

from gateway.decoders import DecodeError, RawEvent, RawSample

MAX_BATCH = 10_000


class EwgDecoder:
    def telemetry(self, body: Any) -> list[RawSample]:
        items = body if isinstance(body, list) else [body]
        if not items:
            raise DecodeError("empty list: a backfill must hold at least one sample")
        if len(items) > MAX_BATCH:
            raise DecodeError(f"a backfill may hold at most {MAX_BATCH} samples, got {len(items)}")
        samples = []
        for item in items:
            if not isinstance(item, dict):
                raise DecodeError(
                    'telemetry must be {"ts": ..., "values": {...}} or a list of them'
                )
            values = item.get("values")
            if not isinstance(values, dict):
                raise DecodeError('"values" must be an object of metric: number')
            if not values:
                raise DecodeError('"values" is empty')
            unknown = set(item) - {"ts", "values"}
            if unknown:
                raise DecodeError(f"unexpected keys {sorted(unknown)}; expected ts and values")
            samples.append(RawSample(item.get("ts"), values))
        return samples

    def event(self, body: Any) -> RawEvent:
        if not isinstance(body, dict) or not isinstance(body.get("type"), str):
            raise DecodeError(
                'an event must be {"ts": ..., "type": "<event type>", "detail": {...}}'
            )
        detail = body.get("detail", {})
        if not isinstance(detail, dict):
            raise DecodeError('"detail" must be an object')
        return RawEvent(body.get("ts"), body["type"], detail)
