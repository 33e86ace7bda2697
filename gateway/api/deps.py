"""Dependencies shared by the routers, as ``Annotated`` aliases: who is calling, may they.

Authentication (every route depends on :data:`PrincipalDep` or a role alias):

- ``Authorization: Bearer <token>``: API clients and scripts; no CSRF check (a
  browser never adds this header on its own, so a hostile page cannot forge it).
- the ``ewg_session`` cookie: the browser; an unsafe method (POST, PUT, PATCH,
  DELETE) must also carry ``X-CSRF-Token`` matching the session, or gets 403.

Authorization, in this order, so the answer never depends on whether an object the
caller may not see exists:

1. role: a role that may never do an action gets 403 before anything is looked up
   (``require_role`` and the ``*Dep`` aliases below);
2. scope: an object outside the principal's scope is answered exactly like a
   missing one, 404 with the same sentence (``visible_site``, ``visible_device``,
   ``visible_alert``, ``visible_incident``); lists are filtered
   (``visible_site_ids``, ``visible_device_ids``, ``alert_visible``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from alerts.incidents import Incident
from alerts.model import Alert
from gateway.auth import Principal
from gateway.errors import NotFoundError
from gateway.registry_model import Device, Site
from gateway.scope import Role
from gateway.service import Gateway
from gateway.sessions import CSRF_HEADER, SESSION_COOKIE, Session, csrf_matches

_bearer = HTTPBearer(auto_error=False)

#: Methods a browser may send cross-site without the page reading anything back.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


def _unauthorized(detail: str = "missing or invalid access token or session") -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def current_session(request: Request, gateway: Gateway) -> tuple[str, Session] | None:
    """The request's login session (its id and the session), if its cookie is live."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        return None
    session = await gateway.sessions.resolve(session_id)
    return None if session is None else (session_id, session)


async def require_principal(
    request: Request,
    gateway: GatewayDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Every API route depends on this: no token or session, no data."""
    if credentials is not None:
        principal = await gateway.tokens.authenticate(credentials.credentials)
        if principal is None:
            raise _unauthorized()
        return principal
    found = await current_session(request, gateway)
    if found is None:
        if request.cookies.get(SESSION_COOKIE):
            raise _unauthorized("the session has ended (expired or logged out): log in again")
        raise _unauthorized()
    session_id, session = found
    if request.method not in SAFE_METHODS and not csrf_matches(
        session_id, request.headers.get(CSRF_HEADER)
    ):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"missing or wrong {CSRF_HEADER} header: send the ewg_csrf cookie's value",
        )
    return session.user.principal()


PrincipalDep = Annotated[Principal, Depends(require_principal)]


async def still_authorized(request: Request, gateway: Gateway) -> bool:
    """Whether the request's credentials still hold (for a long-lived SSE stream).

    A stream outlives the check made when it opened: after a logout, a disabled user,
    a changed password or a replaced token it must stop rather than go on talking.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        return await gateway.tokens.authenticate(token) is not None
    return await current_session(request, gateway) is not None


#: The SSE stream is authorized like every route (the cookie, or a bearer header).
StreamPrincipalDep = PrincipalDep


def require_role(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency admitting only ``roles`` (403 for the others, before any lookup)."""
    allowed = frozenset(roles)
    names = ", ".join(r.value for r in roles)

    async def check(principal: PrincipalDep) -> Principal:
        if principal.role not in allowed:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"the {principal.role.value} role may not do this (only: {names})",
            )
        return principal

    return check


#: Administrators only: users, tokens, the audit log.
AdminDep = Annotated[Principal, Depends(require_role(Role.ADMIN))]
#: Town-wide roles: administrators and duty officers.
TownDep = Annotated[Principal, Depends(require_role(Role.ADMIN, Role.DUTY))]
#: The office's staff, who run operations within their scope: close alerts, silence,
#: list and verify rectification items. Not enterprise users.
StaffDep = Annotated[Principal, Depends(require_role(Role.ADMIN, Role.DUTY, Role.COMMUNITY))]
#: Who registers sites and devices: administrators, duty officers, and enterprise users
#: for their own enterprise.
RegistrarDep = Annotated[Principal, Depends(require_role(Role.ADMIN, Role.DUTY, Role.ENTERPRISE))]


# -- scope ---------------------------------------------------------------------------------


def site_visible(gateway: Gateway, principal: Principal, site_id: str) -> bool:
    """Whether the principal may see this site (an unregistered one: town-wide roles only)."""
    if principal.scope.town_wide:
        return True
    site = gateway.registry.find_site(site_id)
    return site is not None and principal.scope.allows_site(site)


def known_villages(gateway: Gateway) -> list[str]:
    """The villages/communities the town's sites are in (names of the town, not data)."""
    return sorted({s.village for s in gateway.registry.sites()})


def require_known_village(gateway: Gateway, village: str) -> None:
    """422 for an enterprise's new site in a village the town does not have: it would be
    hidden from every community officer. (A town with no sites yet knows none.)"""
    known = known_villages(gateway)
    if known and village not in known:
        raise HTTPException(
            422, f"unknown village/community {village!r}; choose one of: {', '.join(known)}"
        )


def visible_sites(gateway: Gateway, principal: Principal) -> list[Site]:
    return [s for s in gateway.registry.sites() if principal.scope.allows_site(s)]


def visible_site_ids(gateway: Gateway, principal: Principal) -> set[str] | None:
    """The ids of the sites the principal may see; None: every site (town-wide)."""
    if principal.scope.town_wide:
        return None
    return {s.id for s in visible_sites(gateway, principal)}


def visible_device_ids(gateway: Gateway, principal: Principal) -> set[str] | None:
    """The ids of the devices at visible sites; None: every device (town-wide)."""
    sites = visible_site_ids(gateway, principal)
    if sites is None:
        return None
    return {d.id for d in gateway.registry.devices() if d.site_id in sites}


def narrow(wanted: str | None, visible: set[str] | None) -> list[str] | None:
    """A list filter: the one id asked for (if visible) and/or the visible ids.

    >>> narrow(None, None), narrow("a", None), narrow("a", {"b"}), narrow(None, {"b"})
    (None, ['a'], [], ['b'])
    """
    if wanted is not None:
        return [wanted] if visible is None or wanted in visible else []
    return None if visible is None else sorted(visible)


def visible_site(gateway: Gateway, principal: Principal, site_id: str) -> Site:
    """The site, or NotFoundError (404) if it is missing *or* outside the scope."""
    site = gateway.registry.find_site(site_id)
    if site is None or not principal.scope.allows_site(site):
        raise NotFoundError(f"site {site_id!r} not found")
    return site


async def visible_device(gateway: Gateway, principal: Principal, device_id: str) -> Device:
    """The device, or NotFoundError (404) if it is missing *or* its site is out of scope."""
    device = await gateway.registry.find_device(device_id)
    if device is None or not site_visible(gateway, principal, device.site_id):
        raise NotFoundError(f"device {device_id!r} not found")
    return device


def alert_visible(gateway: Gateway, principal: Principal, alert: Alert) -> bool:
    return site_visible(gateway, principal, alert.site_id)


_T = TypeVar("_T")


async def visible_or_404(
    found: Awaitable[_T | None], visible: Callable[[_T], bool], missing: str
) -> _T:
    """What ``found`` fetches, or NotFoundError(missing) (404) if it is missing *or*
    ``visible`` says it is out of scope: the two answer alike, so an id tells a
    caller nothing about another enterprise's objects."""
    try:
        obj = await found
    except NotFoundError:
        obj = None
    if obj is None or not visible(obj):
        raise NotFoundError(missing)
    return obj


async def visible_alert(gateway: Gateway, principal: Principal, alert_id: int) -> Alert:
    """The alert, or NotFoundError (404) if it is missing *or* its site is out of scope."""
    return await visible_or_404(
        gateway.alerts.get(alert_id),
        lambda alert: alert_visible(gateway, principal, alert),
        f"alert {alert_id} does not exist",
    )


async def visible_incident(gateway: Gateway, principal: Principal, incident_id: int) -> Incident:
    return await visible_or_404(
        gateway.alerts.get_incident(incident_id),
        lambda incident: site_visible(gateway, principal, incident.site_id),
        f"incident {incident_id} does not exist",
    )
