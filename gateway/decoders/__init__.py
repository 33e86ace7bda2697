"""Payload decoders, chosen by name in a device profile (``decoder: ewg``).

A decoder turns a parsed JSON body into :class:`RawSample` s (timestamp as sent,
vendor field names as sent). Mapping names and scales, and every check, happen
later in :mod:`gateway.validate`, so a new vendor format is one small file here
plus its name in :data:`DECODERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


class DecodeError(ValueError):
    """The body parsed as JSON but is not the shape this decoder expects."""


@dataclass(frozen=True, slots=True)
class RawSample:
    ts: object  # as sent: epoch ms, ISO-8601 string, or None
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RawEvent:
    ts: object
    type: str
    detail: dict[str, Any]


class Decoder(Protocol):
    def telemetry(self, body: Any) -> list[RawSample]: ...

    def event(self, body: Any) -> RawEvent: ...


def _registry() -> dict[str, Callable[[], Decoder]]:
    from gateway.decoders.alink import AlinkDecoder
    from gateway.decoders.ewg import EwgDecoder

    return {"ewg": EwgDecoder, "alink": AlinkDecoder}


DECODERS: dict[str, Callable[[], Decoder]] = _registry()


def get_decoder(name: str) -> Decoder:
    try:
        return DECODERS[name]()
    except KeyError:
        raise KeyError(f"unknown decoder {name!r}; known: {', '.join(sorted(DECODERS))}") from None
