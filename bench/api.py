"""The few gateway API calls the benches make: register sites and devices, read health."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx


@dataclass(frozen=True, slots=True)
class Health:
    """The counters the benches follow, from GET /api/health."""

    messages_in: int
    readings_stored: int
    readings_duplicate: int
    dead_letters: int
    signals: int
    last_flush_ms: int | None

    @classmethod
    def of(cls, body: dict[str, Any]) -> Health:
        c = body["counters"]
        return cls(int(c["messages_in"]), int(c["readings_stored"]),
                   int(c["readings_duplicate"]), int(c["dead_letters_total"]),
                   int(c["signals"]), c["last_flush_ms"])


class GatewayApi:
    """A small synchronous client with the admin token."""

    def __init__(self, base_url: str, token: str) -> None:
        self._client = httpx.Client(base_url=base_url, timeout=30,
                                    headers={"Authorization": f"Bearer {token}"})

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._client.close()

    def health(self) -> Health:
        response = self._client.get("/api/health")
        response.raise_for_status()
        return Health.of(response.json())

    def add_site(self, site_id: str, village: str) -> None:
        self._post("/api/sites", {"id": site_id, "name": f"bench site {site_id}",
                                  "village": village, "industry": "small_shop"})

    def add_device(self, device_id: str, profile: str, site_id: str) -> None:
        self._post("/api/devices", {"id": device_id, "profile": profile, "site_id": site_id})

    def register(self, devices: list[str], profile: str, *, sites: int = 5,
                 prefix: str = "bench-site") -> None:
        """Register ``devices`` with ``profile``, spread over ``sites`` new sites."""
        site_ids = [f"{prefix}-{i:02d}" for i in range(max(1, min(sites, len(devices))))]
        for i, site_id in enumerate(site_ids):
            self.add_site(site_id, f"village-{i % 3}")
        for i, device_id in enumerate(devices):
            self.add_device(device_id, profile, site_ids[i % len(site_ids)])

    def _post(self, path: str, body: dict[str, Any]) -> None:
        response = self._client.post(path, json=body)
        if response.status_code != 201:
            raise RuntimeError(f"POST {path} {body.get('id')}: {response.status_code} "
                               f"{response.text[:200]}")
