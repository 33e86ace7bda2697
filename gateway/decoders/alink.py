"""Alibaba Alink property posts: ``{"id", "version", "params": {k: {"value", "time"}}, "method"}``.

Each property carries its own time; properties sharing a time become one sample.

>>> body = {"id": "1", "version": "1.0", "method": "thing.event.property.post",
...         "params": {"t1": {"value": 23.5, "time": 1700000000000},
...                    "leak": {"value": 120, "time": 1700000000000}}}
>>> AlinkDecoder().telemetry(body)
[RawSample(ts=1700000000000, values={'t1': 23.5, 'leak': 120})]
"""

from __future__ import annotations

from typing import Any

from gateway.decoders import DecodeError, RawEvent, RawSample


class AlinkDecoder:
    def telemetry(self, body: Any) -> list[RawSample]:
        params = body.get("params") if isinstance(body, dict) else None
        if not isinstance(params, dict) or not params:
            raise DecodeError('Alink telemetry needs "params": {name: {"value", "time"}}')
        by_time: dict[object, dict[str, Any]] = {}
        for name, prop in params.items():
            if isinstance(prop, dict) and "value" in prop:
                time = prop.get("time")
                if not isinstance(time, int | float | str | None):
                    raise DecodeError(f'{name}: "time" must be epoch ms or ISO-8601')
                by_time.setdefault(time, {})[name] = prop["value"]
            else:
                by_time.setdefault(None, {})[name] = prop
        return [RawSample(ts, values) for ts, values in by_time.items()]

    def event(self, body: Any) -> RawEvent:
        if not isinstance(body, dict) or not isinstance(body.get("identifier"), str):
            raise DecodeError('Alink events need "identifier" and "params"')
        params = body.get("params", {})
        return RawEvent(
            body.get("time"), body["identifier"], params if isinstance(params, dict) else {}
        )
