"""Login, who am I, logout: the browser's session cookie and its CSRF token.

``POST /api/auth/login`` checks the password (argon2id, timing-safe for unknown
names), opens a server-side session and sets two cookies: ``ewg_session``
(HttpOnly: page scripts cannot read it, so an injected script cannot steal it) and
``ewg_csrf`` (readable: the page sends it back as ``X-CSRF-Token`` on every unsafe
request). Failures are audited and throttled (``gateway.throttle``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from gateway.accounts import MAX_PASSWORD, User
from gateway.api.deps import GatewayDep, current_session
from gateway.config import Settings
from gateway.service import Gateway
from gateway.sessions import CSRF_COOKIE, SESSION_COOKIE, csrf_token
from gateway.throttle import LoginThrottle

router = APIRouter(prefix="/api/auth", tags=["auth"])


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD)


class MeOut(BaseModel):
    username: str
    role: str
    display_name: str
    #: A community officer's villages; None for the other roles.
    villages: list[str] | None
    #: An enterprise user's enterprise; None for the other roles.
    enterprise: str | None
    #: Send this as ``X-CSRF-Token`` with every POST/PUT/PATCH/DELETE.
    csrf_token: str

    @classmethod
    def of(cls, user: User, session_id: str) -> MeOut:
        return cls(
            username=user.username,
            role=user.role.value,
            display_name=user.display_name,
            villages=user.villages,
            enterprise=user.enterprise,
            csrf_token=csrf_token(session_id),
        )


class Throttles:
    """Per username, and (four times as lenient, for offices behind one address) per client."""

    def __init__(self, settings: Settings) -> None:
        self.users = LoginThrottle(settings.login_max_failures, settings.login_backoff_s)
        self.clients = LoginThrottle(4 * settings.login_max_failures, settings.login_backoff_s)


def _throttles(request: Request) -> Throttles:
    state = request.app.state
    if not hasattr(state, "login_throttles"):
        state.login_throttles = Throttles(state.gateway.settings)
    throttles: Throttles = state.login_throttles
    return throttles


ThrottlesDep = Annotated[Throttles, Depends(_throttles)]


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _secure(request: Request, settings: Settings) -> bool:
    if settings.cookie_secure is not None:
        return settings.cookie_secure
    return request.url.scheme == "https"


def _set_cookies(response: Response, session_id: str, secure: bool, max_age: int) -> None:
    common = {"path": "/", "samesite": "lax", "secure": secure, "max_age": max_age}
    response.set_cookie(SESSION_COOKIE, session_id, httponly=True, **common)  # type: ignore[arg-type]
    response.set_cookie(CSRF_COOKIE, csrf_token(session_id), httponly=False, **common)  # type: ignore[arg-type]


async def _audit_name(gateway: Gateway, username: str) -> str:
    """How a failed login names its user in the audit log, which nobody can edit.

    A known username as it is; anything else only by its length: what was typed into the
    username field of a failed login is often the password (typed into the wrong field),
    and the audit log must never hold one, not even hashed (a short hash of a weak
    password is found by trying a dictionary).
    """
    if await gateway.users.get(username) is not None:
        return username
    return f"unknown user ({len(username)} chars)"


@router.post("/login")
async def login(
    body: LoginIn,
    request: Request,
    response: Response,
    gateway: GatewayDep,
    throttles: ThrottlesDep,
) -> MeOut:
    """Check the password and open a session (cookies ``ewg_session`` and ``ewg_csrf``)."""
    username = body.username.strip().lower()
    client = _client(request)
    wait = max(throttles.users.wait_s(username), throttles.clients.wait_s(client))
    if wait > 0:
        who = await _audit_name(gateway, username)
        await gateway.audit.record(
            who, "auth.login_throttled", who, {"client": client, "wait_s": round(wait)}
        )
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many failed logins: wait before trying again",
            headers={"Retry-After": str(max(1, round(wait)))},
        )
    user = await gateway.users.verify(username, body.password)
    if user is None:
        throttles.users.fail(username)
        throttles.clients.fail(client)
        who = await _audit_name(gateway, username)
        await gateway.audit.record(who, "auth.login_failed", who, {"client": client})
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong username or password")
    throttles.users.succeed(username)
    throttles.clients.succeed(client)
    previous = await current_session(request, gateway)
    if previous is not None:  # a new login replaces the browser's old session, never adds one
        await gateway.sessions.end(previous[0], previous[1].user.username)
    session_id = await gateway.sessions.create(user, client)
    settings = gateway.settings
    # The server decides when the session ends; the cookie only must not outlive it by much.
    max_age = max(60, int(settings.session_max_s))
    _set_cookies(response, session_id, _secure(request, settings), max_age)
    response.headers["Cache-Control"] = "no-store"
    return MeOut.of(user, session_id)


@router.get("/me", responses={401: {"description": "no live session"}})
async def me(request: Request, gateway: GatewayDep, response: Response) -> MeOut:
    """Who the session cookie belongs to, and its CSRF token (for a page that reloads)."""
    found = await current_session(request, gateway)
    if found is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "not logged in (no live session)")
    session_id, session = found
    response.headers["Cache-Control"] = "no-store"
    return MeOut.of(session.user, session_id)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(request: Request, gateway: GatewayDep) -> Response:
    """End the session (if any) and clear both cookies. Always 204.

    No CSRF token is needed: the worst a forged logout can do is log the user out.
    """
    found = await current_session(request, gateway)
    if found is not None:
        session_id, session = found
        await gateway.sessions.end(session_id, session.user.username)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    secure = _secure(request, gateway.settings)
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/", secure=secure, samesite="lax")
    return response
