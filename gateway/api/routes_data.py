"""Telemetry of one series over a time range, and the dead letters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from gateway.api.deps import GatewayDep, PrincipalDep
from gateway.api.schemas import DeadLetterOut, ReadingOut
from gateway.model import now_ms

router = APIRouter(prefix="/api", tags=["data"])


@router.get("/telemetry")
async def telemetry(
    gateway: GatewayDep,
    _: PrincipalDep,
    device_id: str,
    metric: str,
    start_ms: int | None = None,
    end_ms: int | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> list[ReadingOut]:
    await gateway.registry.get_device(device_id)
    end = end_ms if end_ms is not None else now_ms() + 60_000
    start = start_ms if start_ms is not None else end - 6 * 3_600_000
    if start > end:
        raise HTTPException(422, "start_ms must not be after end_ms")
    rows = await gateway.store.query(device_id, metric, start, end, limit)
    return [ReadingOut.of(r, gateway.settings.timezone) for r in rows]


@router.get("/dead-letters")
async def dead_letters(
    gateway: GatewayDep,
    _: PrincipalDep,
    reason: str | None = None,
    device_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> list[DeadLetterOut]:
    letters = await gateway.dead_letters.list(
        reason=reason, device_ids=[device_id] if device_id else None, limit=limit
    )
    return [DeadLetterOut.of(d, gateway.settings.timezone) for d in letters]


@router.get("/dead-letters/counts")
async def dead_letter_counts(gateway: GatewayDep, _: PrincipalDep) -> dict[str, int]:
    return await gateway.dead_letters.counts()
