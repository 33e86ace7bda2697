"""Who gets what from every API route: the expected HTTP status per route and role.

``tests/test_access_matrix.py`` walks every route of the OpenAPI schema against a
live gateway holding two villages with one enterprise each (A: 东村/acme, where the
community officer and the enterprise user belong; B: 西村/zeta, nobody's but the
town's) and checks each status below. **A new route must get a row here**, or that
test fails and says so.

A row gives the status for a request about A's objects by, in this order, an
administrator (bearer token), a duty officer (bearer token), A's community officer
(login cookie + CSRF header) and A's enterprise user (login cookie + CSRF header).
The test adds, unless the row says otherwise:

- no credentials, and a wrong bearer token: 401 (``public=True``: the row's own
  statuses instead, e.g. login);
- the enterprise user's cookie *without* the CSRF header: on GET the enterprise
  user's status, on POST/PUT/PATCH/DELETE 403 (CSRF is checked before anything
  else); for public rows the enterprise user's status;
- the same request about B's objects (``cross=True``, the default whenever the
  path or query names an object): administrators and duty officers as for A;
  the community officer and the enterprise user 404, unless A's answer was already
  a role refusal (401/403), which stays. ``other`` overrides single roles.

Placeholders in ``path``, ``params`` and ``json`` are filled per side: ``{site}``,
``{device}``, ``{alert_id}``, ``{incident_id}``, ``{silence_id}``, ``{item_id}``,
``{evidence_id}``, ``{village}``, ``{enterprise}`` and ``{new}`` (a fresh unique id).
``fresh`` asks for a new object per request where the call consumes it:
``alert`` (a new raised alert), ``red_alert`` (a new red fire, whose escalation chain
has several steps), ``device`` (a new device), ``silence`` (a new
active silence), ``item`` (a new open rectification item), ``reported_item`` (one
whose fix was reported), and ``session`` (log the cookie roles in again afterwards).
``multipart`` sends the json as form fields instead (a fix report).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ROLES = ("admin", "duty", "community", "enterprise")


@dataclass(frozen=True)
class Row:
    admin: int
    duty: int
    community: int
    enterprise: int
    public: bool = False
    cross: bool | None = None
    other: dict[str, int] = field(default_factory=dict)
    fresh: str | None = None
    params: dict[str, Any] | None = None
    json: dict[str, Any] | None = None
    multipart: bool = False

    def own(self, role: str) -> int:
        status: int = getattr(self, role)
        return status


def everyone(status: int, **kwargs: Any) -> Row:
    return Row(status, status, status, status, **kwargs)


def staff(status: int, **kwargs: Any) -> Row:
    """Administrators, duty and community officers; enterprise users get 403."""
    return Row(status, status, status, 403, **kwargs)


def registrars(status: int, **kwargs: Any) -> Row:
    """Administrators, duty officers, enterprise users; community officers get 403."""
    return Row(status, status, 403, status, **kwargs)


def town(status: int, **kwargs: Any) -> Row:
    return Row(status, status, 403, 403, **kwargs)


def admins(status: int, **kwargs: Any) -> Row:
    return Row(status, 403, 403, 403, **kwargs)


NEW_SITE = {"id": "{new}", "name": "新店", "village": "{village}", "industry": "small_shop"}
NEW_DEVICE = {"id": "{new}", "profile": "smoke_alarm_nbiot", "site_id": "{site}"}
NEW_ITEM = {
    "site_id": "{site}",
    "hazard": "堵塞通道",
    "description": "安全出口堵塞",
    "assignee": "王经理",
    "deadline": "2099-01-01",
}
#: Logging in as nobody: everyone gets the same 401 (a fresh name each time, so the
#: per-username throttle never kicks in).
BAD_LOGIN = {"username": "{new}", "password": "not the password"}

MATRIX: dict[tuple[str, str], Row] = {
    ("GET", "/api/health"): everyone(200),
    # -- login: public; "me" answers only to a session cookie --
    ("POST", "/api/auth/login"): everyone(401, public=True, json=BAD_LOGIN),
    ("GET", "/api/auth/me"): Row(401, 401, 200, 200, public=True),
    ("POST", "/api/auth/logout"): everyone(204, public=True, fresh="session"),
    # -- administrators only --
    ("GET", "/api/audit"): admins(200),
    ("GET", "/api/users"): admins(200),
    ("GET", "/metrics"): town(200),
    # -- alerts --
    ("GET", "/api/alerts"): everyone(200, params={"site_id": "{site}"}, cross=False),
    ("GET", "/api/alerts/stream"): everyone(200),
    ("GET", "/api/alerts/{alert_id}"): everyone(200),
    ("GET", "/api/alerts/{alert_id}/history"): everyone(200),
    ("POST", "/api/alerts/{alert_id}/ack"): everyone(200, fresh="alert", json={"note": "on it"}),
    ("POST", "/api/alerts/{alert_id}/close"): staff(
        200, fresh="alert", json={"disposition": "false_alarm", "note": "矩阵"}
    ),
    ("GET", "/api/alerts/{alert_id}/notifications"): everyone(200),
    ("POST", "/api/alerts/{alert_id}/escalate"): staff(200, fresh="red_alert"),
    ("GET", "/api/incidents"): everyone(200),
    ("GET", "/api/incidents/{incident_id}"): everyone(200),
    # -- registry --
    ("GET", "/api/sites"): everyone(200),
    ("POST", "/api/sites"): registrars(201, json=NEW_SITE, cross=False),
    ("GET", "/api/devices"): everyone(200, params={"site_id": "{site}"}, cross=False),
    # B's site in the body reads as an unknown site (422), as for the registry itself.
    ("POST", "/api/devices"): registrars(201, json=NEW_DEVICE, other={"enterprise": 422}),
    ("GET", "/api/devices/{device_id}"): everyone(200),
    # Broker accounts are off in the test gateway: rotating a secret is a 409 for those
    # who may, after the scope check.
    ("POST", "/api/devices/{device_id}/secret"): registrars(409),
    ("POST", "/api/devices/{device_id}/revoke"): registrars(200, fresh="device"),
    ("GET", "/api/profiles"): everyone(200),
    # -- data --
    ("GET", "/api/telemetry"): everyone(
        200, params={"device_id": "{device}", "metric": "smoke_obscuration_pct"}
    ),
    ("GET", "/api/dead-letters"): everyone(200),
    ("GET", "/api/dead-letters/counts"): everyone(200),
    # -- silences: staff set and end them; a community officer only for own sites --
    ("GET", "/api/silences"): everyone(200),
    ("POST", "/api/silences"): staff(
        201,
        json={"site_id": "{site}", "duration_s": 600, "reason": "矩阵"},
        other={"community": 422},
    ),
    ("GET", "/api/silences/{silence_id}"): everyone(200),
    ("DELETE", "/api/silences/{silence_id}"): staff(200, fresh="silence"),
    # -- notifications --
    ("GET", "/api/escalation-policies"): staff(200),
    ("GET", "/api/notification-channels"): staff(200),
    ("GET", "/api/notifications"): everyone(200),
    # -- rectification items: staff list and verify; the enterprise reports the fix --
    ("POST", "/api/rectifications"): staff(201, json=NEW_ITEM, other={"community": 422}),
    ("GET", "/api/rectifications"): everyone(200),
    ("GET", "/api/rectifications/{item_id}"): everyone(200),
    ("POST", "/api/rectifications/{item_id}/report"): everyone(
        200, fresh="item", json={"note": "已整改"}, multipart=True
    ),
    ("POST", "/api/rectifications/{item_id}/verify"): staff(
        200, fresh="reported_item", json={"note": "已销号"}
    ),
    ("POST", "/api/rectifications/{item_id}/send-back"): staff(
        200, fresh="reported_item", json={"reason": "照片不清楚"}
    ),
    ("GET", "/api/rectifications/{item_id}/evidence/{evidence_id}"): everyone(200),
    # -- statistics: over the caller's sites; another enterprise's is a 404 --
    ("GET", "/api/stats"): everyone(200, params={"enterprise": "{enterprise}"}),
    ("GET", "/api/stats.csv"): everyone(200, params={"enterprise": "{enterprise}"}),
    ("GET", "/api/stats/false-alarms"): everyone(200, params={"village": "{village}"}),
    # -- enterprises: hours and shutdown orders (H4); only town-wide roles change them --
    ("GET", "/api/enterprises"): everyone(200),
    ("GET", "/api/enterprises/{enterprise}"): everyone(200),
    ("PUT", "/api/enterprises/{enterprise}"): town(200, json={"name": "矩阵企业"}),
    ("GET", "/api/enterprises/{enterprise}/shutdowns"): everyone(200),
    ("POST", "/api/enterprises/{enterprise}/shutdowns"): town(
        201, json={"start": "2099-01-01T08:00:00", "end": "2099-01-02T08:00:00", "reason": "矩阵"}
    ),
    # -- the enterprise portal (H8) --
    ("GET", "/api/portal/choices"): everyone(200),
    ("POST", "/api/portal/sites"): registrars(
        201, json={"name": "新店", "village": "{village}", "industry": "small_shop"}, cross=False
    ),
    ("POST", "/api/portal/devices"): registrars(
        201, json={"site_id": "{site}", "profile": "smoke_alarm_nbiot"}
    ),
    ("GET", "/api/portal/devices/{device_id}/sheet"): everyone(200),
    ("POST", "/api/portal/devices/{device_id}/secret"): registrars(409),
    # -- the duty console's views (H7) --
    ("GET", "/api/console/sites"): everyone(200),
    ("GET", "/api/console/devices/{device_id}"): everyone(200),
    ("GET", "/api/console/alerts/{alert_id}/context"): everyone(200),
}
