"""Telemetry of one series over a time range, and the dead letters.

Both are cut to the caller's scope: telemetry of a device outside it is a 404, and
a scoped principal sees only the dead letters of its own devices (the ones no
device could be told from, such as unparseable topics, only town-wide roles see).
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from gateway.api.deps import GatewayDep, PrincipalDep, narrow, visible_device, visible_device_ids
from gateway.api.schemas import DeadLetterOut, ReadingOut
from gateway.model import now_ms

router = APIRouter(prefix="/api", tags=["data"])

#: A scoped principal's counts look at this many of its newest dead letters.
COUNT_LIMIT = 100_000


@router.get("/telemetry")
async def telemetry(
    gateway: GatewayDep,
    who: PrincipalDep,
    device_id: str,
    metric: str,
    start_ms: int | None = None,
    end_ms: int | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> list[ReadingOut]:
    await visible_device(gateway, who, device_id)
    end = end_ms if end_ms is not None else now_ms() + 60_000
    start = start_ms if start_ms is not None else end - 6 * 3_600_000
    if start > end:
        raise HTTPException(422, "start_ms must not be after end_ms")
    rows = await gateway.store.query(device_id, metric, start, end, limit)
    return [ReadingOut.of(r, gateway.settings.timezone) for r in rows]


@router.get("/dead-letters")
async def dead_letters(
    gateway: GatewayDep,
    who: PrincipalDep,
    reason: str | None = None,
    device_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> list[DeadLetterOut]:
    device_ids = narrow(device_id, visible_device_ids(gateway, who))
    if device_ids == []:
        return []
    letters = await gateway.dead_letters.list(reason=reason, device_ids=device_ids, limit=limit)
    return [DeadLetterOut.of(d, gateway.settings.timezone) for d in letters]


@router.get("/dead-letters/counts")
async def dead_letter_counts(gateway: GatewayDep, who: PrincipalDep) -> dict[str, int]:
    """Dead letters per reason (a scoped principal: of its own devices)."""
    device_ids = visible_device_ids(gateway, who)
    if device_ids is None:
        return await gateway.dead_letters.counts()
    if not device_ids:
        return {}
    letters = await gateway.dead_letters.list(device_ids=sorted(device_ids), limit=COUNT_LIMIT)
    return dict(Counter(d.reason for d in letters))
