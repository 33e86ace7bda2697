"""Sites and devices as the registry holds them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Site:
    """A place being watched: a shop, a rental house, a factory, a station, the mine."""

    id: str
    name: str
    village: str  # 村/社区, the unit statistics are reported by
    industry: str  # e.g. small_shop, rental_housing, residential, dust_factory, fuel_station, mine
    address: str = ""
    enterprise: str = ""  # owning enterprise (tenant); empty for public premises


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    profile: str
    site_id: str
    name: str = ""
    #: A device behind another one (a fire panel's component behind its transmission device).
    parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceAccess:
    """Whether a device may connect, as EWG records it (the secret's hash stays in SQLite).

    A revoked device stays in the registry, so its history and alerts keep their
    site, but its messages are refused and its id cannot be registered again.
    """

    device_id: str
    #: When the current MQTT secret was issued; None if none was (broker accounts off).
    secret_issued_ms: int | None = None
    revoked_ms: int | None = None
    revoked_by: str | None = None
