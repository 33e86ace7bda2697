"""Statistics by village/community and by industry, as JSON or CSV; flagged false-alarm sites.

The definitions of every number are in :mod:`alerts.stats`. The period defaults
to the 30 days up to now.

Every number is computed over the sites the caller may see only, so a community
officer's totals are their villages' and an enterprise user's their own sites'.
``village=`` or ``enterprise=`` narrows the report further; one the caller has no
site of (another enterprise, say) is a 404, exactly like one that does not exist.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel

from alerts.stats import (
    FALSE_ALARM_DAY_LIMIT,
    FlaggedDay,
    GroupBy,
    Period,
    Report,
    local_iso,
    parse_instant,
    report_csv,
    rows_csv,
)
from gateway.api.deps import GatewayDep, PrincipalDep, visible_sites
from gateway.auth import Principal
from gateway.errors import NotFoundError
from gateway.service import Gateway

router = APIRouter(prefix="/api/stats", tags=["statistics"])

DEFAULT_DAYS = 30

Since = Annotated[
    str | None,
    Query(description="ISO 8601 date or date-time (local without an offset); default 30 days ago"),
]
Until = Annotated[
    str | None,
    Query(description="exclusive; a bare date means the end of that day; default now"),
]


Village = Annotated[str | None, Query(description="only the sites of this village/community")]
Enterprise = Annotated[str | None, Query(description="only the sites of this enterprise")]


def _sites(
    gateway: Gateway, who: Principal, village: str | None, enterprise: str | None
) -> list[str] | None:
    """The site ids to compute over; None: every site (a town-wide caller, no filter)."""
    if who.scope.town_wide and village is None and enterprise is None:
        return None
    sites = visible_sites(gateway, who)
    for attribute, wanted, what in (
        ("village", village, "village"),
        ("enterprise", enterprise, "enterprise"),
    ):
        if wanted is not None:
            sites = [s for s in sites if getattr(s, attribute) == wanted]
            if not sites:
                raise NotFoundError(f"{what} {wanted!r} not found")
    return [s.id for s in sites]


def _period(since: str | None, until: str | None, timezone: str, now_ms: int) -> Period:
    try:
        until_ms = now_ms if until is None else parse_instant(until, timezone, end_of_day=True)
        since_ms = (
            until_ms - DEFAULT_DAYS * 86_400_000
            if since is None
            else parse_instant(since, timezone)
        )
        return Period(since_ms, until_ms)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc


@router.get("")
async def stats(
    gateway: GatewayDep,
    who: PrincipalDep,
    group_by: GroupBy = "village",
    since: Since = None,
    until: Until = None,
    village: Village = None,
    enterprise: Enterprise = None,
) -> Report:
    """Alerts, response times, false-alarm rates, offline devices and items per group."""
    sites = _sites(gateway, who, village, enterprise)
    period = _period(since, until, gateway.settings.timezone, gateway.rectifications.clock())
    return await gateway.stats.report(period, group_by, sites)


@router.get(".csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
async def stats_csv(
    gateway: GatewayDep,
    who: PrincipalDep,
    group_by: GroupBy = "village",
    since: Since = None,
    until: Until = None,
    village: Village = None,
    enterprise: Enterprise = None,
    table: Annotated[
        Literal["groups", "sites", "devices"],
        Query(description="groups (and a total row), or false-alarm rates per site or device"),
    ] = "groups",
) -> Response:
    """The same report as CSV (UTF-8 with a BOM, so Excel shows Chinese names)."""
    sites = _sites(gateway, who, village, enterprise)
    period = _period(since, until, gateway.settings.timezone, gateway.rectifications.clock())
    report = await gateway.stats.report(period, group_by, sites)
    if table == "groups":
        text = report_csv(report)
    elif table == "sites":
        text = rows_csv(report.sites)
    else:
        text = rows_csv(report.devices)
    day = local_iso(period.until_ms, report.timezone)[:10]
    return Response(
        content=text.encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="ewg-stats-{table}-{day}.csv"'},
    )


class FalseAlarmSites(BaseModel):
    since: str
    until: str
    #: A site-day is listed when it had more false alarms than this.
    limit: int
    days: list[FlaggedDay]


@router.get("/false-alarms")
async def false_alarms(
    gateway: GatewayDep,
    who: PrincipalDep,
    since: Since = None,
    until: Until = None,
    village: Village = None,
    enterprise: Enterprise = None,
    limit: Annotated[
        int, Query(ge=0, description="list site-days with more false alarms than this")
    ] = FALSE_ALARM_DAY_LIMIT,
) -> FalseAlarmSites:
    """Sites to follow up: more than ``limit`` (default 5) false alarms on one day."""
    tz = gateway.settings.timezone
    period = _period(since, until, tz, gateway.rectifications.clock())
    sites = _sites(gateway, who, village, enterprise)
    days = await gateway.stats.false_alarm_days(period, limit, sites)
    return FalseAlarmSites(
        since=local_iso(period.since_ms, tz),
        until=local_iso(period.until_ms, tz),
        limit=limit,
        days=days,
    )
