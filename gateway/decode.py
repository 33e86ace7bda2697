"""Stage 1, decode: topic -> device and profile, bytes -> JSON -> raw samples.

Anything that stops a message as a whole is decided here: oversize, a topic
outside the contract, an unknown device, a body that is not JSON or not the
shape the device's decoder expects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable

from gateway.decoders import DecodeError, Decoder, get_decoder
from gateway.pipeline import Delivery
from gateway.profiles import Profile
from gateway.reasons import Reason
from gateway.registry_model import Device

TOPIC = re.compile(
    r"^ewg/v1/(?P<device>[A-Za-z0-9][A-Za-z0-9_.:-]{0,63})/(?P<kind>telemetry|event|status)$"
)

Lookup = Callable[[str], Awaitable[tuple[Device, Profile] | None]]


class Decode:
    def __init__(self, lookup: Lookup, max_payload_bytes: int) -> None:
        self._lookup = lookup
        self._max = max_payload_bytes
        self._decoders: dict[str, Decoder] = {}

    def _decoder(self, name: str) -> Decoder:
        if name not in self._decoders:
            self._decoders[name] = get_decoder(name)
        return self._decoders[name]

    async def __call__(self, d: Delivery) -> None:
        message = d.message
        match = TOPIC.match(message.topic)
        if match is None:
            d.reject(
                Reason.BAD_TOPIC,
                f"topic {message.topic!r} is not ewg/v1/<device_id>/(telemetry|event|status)",
            )
            return
        d.kind = match["kind"]
        found = await self._lookup(match["device"])
        if found is None:
            d.reject(
                Reason.UNKNOWN_DEVICE,
                f"device {match['device']!r} is not registered (ewg device add ...)",
            )
            return
        d.device, d.profile = found
        if len(message.payload) > self._max:
            d.reject(
                Reason.OVERSIZE,
                f"payload of {len(message.payload)} bytes exceeds the {self._max}-byte limit",
            )
            return
        if d.kind == "status":
            return  # plain text, validated in the next stage
        try:
            d.body = json.loads(message.payload)
        except (UnicodeDecodeError, ValueError) as exc:
            d.reject(Reason.NOT_JSON, f"payload is not JSON: {exc}")
            return
        decoder = self._decoder(d.profile.decoder)
        try:
            if d.kind == "telemetry":
                d.samples = decoder.telemetry(d.body)
            else:
                d.raw_event = decoder.event(d.body)
        except DecodeError as exc:
            d.reject(Reason.BAD_SHAPE, str(exc))
