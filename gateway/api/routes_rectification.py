"""Rectification items (隐患整改): list a hazard, report its fix with evidence, verify or send back.

Items are never deleted, so there is no DELETE route; the only way off the list is
``verify`` (销号) after a reported fix. Every change records its actor (the caller's
token name) in the item's history and in the audit log.

The fix report is multipart (a ``note`` field and ``files``). It is parsed here,
after the token was checked and the declared size was found acceptable, rather
than by FastAPI before any dependency runs: otherwise anyone, token or not, could
make the gateway spool an arbitrarily large upload to disk.

Scope and roles: every item is cut to the caller's scope by its site (others answer
404, like a missing item). The office's staff list, verify and send back items; an
enterprise user sees its own items and reports their fix with evidence.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile  # what Request.form() yields (not FastAPI's)

from alerts.rectification import (
    Action,
    Evidence,
    EvidenceDamaged,
    EvidenceRefused,
    HistoryLine,
    InvalidItem,
    Item,
    ItemFilter,
    ItemState,
    NewItem,
    Source,
)
from alerts.stats import parse_instant
from gateway.api.deps import (
    GatewayDep,
    PrincipalDep,
    StaffDep,
    site_visible,
    visible_alert,
    visible_site_ids,
)
from gateway.api.schemas import ID, iso
from gateway.auth import Principal
from gateway.errors import ConflictError, NotFoundError
from gateway.service import Gateway

router = APIRouter(prefix="/api/rectifications", tags=["rectifications"])

NOTE_MAX = 4000


class RectificationIn(BaseModel):
    """A hazard to list: from an alert (``alert_id``) or a finding (``site_id`` and ``hazard``)."""

    model_config = ConfigDict(extra="forbid")

    alert_id: int | None = Field(default=None, ge=1)
    #: Defaults to ``alert`` with an alert_id, else ``inspection``.
    source: Source | None = None
    site_id: str | None = Field(default=None, pattern=ID)
    hazard: str | None = Field(default=None, max_length=200)
    description: str = Field(default="", max_length=NOTE_MAX)
    enterprise: str | None = Field(default=None, max_length=200)
    assignee: str = Field(min_length=1, max_length=200)
    deadline: str = Field(
        max_length=40,
        description="ISO 8601 date or date-time (local time without an offset);"
        " a bare date means the end of that day",
    )
    major: bool = False


class VerifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(default="", max_length=NOTE_MAX)


class SendBackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=NOTE_MAX)


class ItemOut(BaseModel):
    id: int
    source: Source
    alert_id: int | None
    site_id: str
    site_name: str
    village: str
    industry: str
    enterprise: str
    hazard: str
    description: str
    major: bool
    assignee: str
    deadline: str
    deadline_ms: int
    state: ItemState
    #: Past the deadline and not verified, now.
    overdue: bool
    #: When the overdue sweep first found it late (kept after a late verification).
    overdue_since: str | None
    created_at: str
    created_by: str
    updated_at: str
    reported_at: str | None
    reported_by: str | None
    verified_at: str | None
    verified_by: str | None
    #: How many times a reported fix was sent back.
    sent_back: int

    @classmethod
    def of(cls, item: Item, gateway: Gateway) -> ItemOut:
        tz = gateway.settings.timezone
        site = gateway.registry.find_site(item.site_id)
        return cls(
            id=item.id,
            source=item.source,
            alert_id=item.alert_id,
            site_id=item.site_id,
            site_name=site.name if site else "",
            village=site.village if site else "",
            industry=site.industry if site else "",
            enterprise=item.enterprise,
            hazard=item.hazard,
            description=item.description,
            major=item.major,
            assignee=item.assignee,
            deadline=iso(item.deadline_ms, tz) or "",
            deadline_ms=item.deadline_ms,
            state=item.state,
            overdue=item.is_overdue(gateway.rectifications.clock()),
            overdue_since=iso(item.overdue_at, tz),
            created_at=iso(item.created_at, tz) or "",
            created_by=item.created_by,
            updated_at=iso(item.updated_at, tz) or "",
            reported_at=iso(item.reported_at, tz),
            reported_by=item.reported_by,
            verified_at=iso(item.verified_at, tz),
            verified_by=item.verified_by,
            sent_back=item.sent_back,
        )


class EvidenceOut(BaseModel):
    id: int
    history_id: int
    filename: str
    content_type: str
    size: int
    sha256: str
    uploaded_at: str
    uploaded_by: str
    url: str

    @classmethod
    def of(cls, e: Evidence, tz: str) -> EvidenceOut:
        return cls(
            id=e.id,
            history_id=e.history_id,
            filename=e.filename,
            content_type=e.content_type,
            size=e.size,
            sha256=e.sha256,
            uploaded_at=iso(e.uploaded_at, tz) or "",
            uploaded_by=e.uploaded_by,
            url=f"/api/rectifications/{e.item_id}/evidence/{e.id}",
        )


class HistoryOut(BaseModel):
    id: int
    ts: str
    ts_ms: int
    actor: str
    action: Action
    from_state: ItemState | None
    to_state: ItemState
    note: str
    #: Evidence attached with this line (a fix report).
    evidence_ids: list[int]

    @classmethod
    def of(cls, line: HistoryLine, evidence: list[Evidence], tz: str) -> HistoryOut:
        return cls(
            id=line.id,
            ts=iso(line.ts_ms, tz) or "",
            ts_ms=line.ts_ms,
            actor=line.actor,
            action=line.action,
            from_state=line.from_state,
            to_state=line.to_state,
            note=line.note,
            evidence_ids=[e.id for e in evidence if e.history_id == line.id],
        )


class ItemDetailOut(ItemOut):
    history: list[HistoryOut]
    evidence: list[EvidenceOut]


@contextmanager
def _answers() -> Iterator[None]:
    """The book's errors as the HTTP statuses a client can act on."""
    try:
        yield
    except NotFoundError as exc:
        raise HTTPException(404, str(exc)) from exc
    except ConflictError as exc:  # includes IllegalTransition
        raise HTTPException(409, str(exc)) from exc
    except InvalidItem as exc:
        raise HTTPException(422, str(exc)) from exc
    except EvidenceRefused as exc:
        raise HTTPException(exc.status, str(exc)) from exc
    except EvidenceDamaged as exc:
        raise HTTPException(500, str(exc)) from exc


async def _detail(item: Item, gateway: Gateway) -> ItemDetailOut:
    book = gateway.rectifications
    tz = gateway.settings.timezone
    evidence = await book.evidence(item.id)
    history = await book.history(item.id)
    return ItemDetailOut(
        **ItemOut.of(item, gateway).model_dump(),
        history=[HistoryOut.of(line, evidence, tz) for line in history],
        evidence=[EvidenceOut.of(e, tz) for e in evidence],
    )


async def _visible_item(gateway: Gateway, who: Principal, item_id: int) -> Item:
    """The item, or the book's own 404 if it is missing *or* its site is out of scope."""
    with _answers():
        item = await gateway.rectifications.get(item_id)
    if not site_visible(gateway, who, item.site_id):
        raise HTTPException(404, f"rectification item {item_id} does not exist")
    return item


@router.post("", status_code=201)
async def create(body: RectificationIn, gateway: GatewayDep, who: StaffDep) -> ItemDetailOut:
    """List a hazard. From an alert, site and hazard default to the alert's."""
    # Out of scope reads exactly like the book's "does not exist" / "not registered".
    if body.alert_id is not None:
        try:
            await visible_alert(gateway, who, body.alert_id)
        except NotFoundError as exc:
            raise HTTPException(422, str(exc)) from exc
    if body.site_id is not None and not site_visible(gateway, who, body.site_id):
        raise HTTPException(422, f"site {body.site_id!r} is not registered; register it first")
    try:
        deadline_ms = parse_instant(body.deadline, gateway.settings.timezone, end_of_day=True)
    except ValueError as exc:
        raise HTTPException(422, f"deadline: {exc}") from exc
    source = body.source or (Source.ALERT if body.alert_id is not None else Source.INSPECTION)
    new = NewItem(
        source=source,
        site_id=body.site_id,
        hazard=body.hazard,
        description=body.description,
        assignee=body.assignee,
        deadline_ms=deadline_ms,
        alert_id=body.alert_id,
        enterprise=body.enterprise,
        major=body.major,
    )
    with _answers():
        item = await gateway.rectifications.create(new, who.name)
        return await _detail(item, gateway)


@router.get("")
async def list_items(
    gateway: GatewayDep,
    who: PrincipalDep,
    state: ItemState | None = None,
    site_id: str | None = None,
    village: str | None = None,
    industry: str | None = None,
    overdue: Annotated[
        bool | None, Query(description="true: only overdue items; false: none of them")
    ] = None,
    source: Source | None = None,
    major: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[ItemOut]:
    """The checklist, earliest deadline first; ``overdue=true`` is the overdue listing."""
    site_ids: set[str] | None = None
    if site_id is not None:
        site_ids = {site_id}
    for attribute, wanted in (("village", village), ("industry", industry)):
        if wanted is not None:
            matching = {s.id for s in gateway.registry.sites() if getattr(s, attribute) == wanted}
            site_ids = matching if site_ids is None else site_ids & matching
    visible = visible_site_ids(gateway, who)
    if visible is not None:
        site_ids = visible if site_ids is None else site_ids & visible
    items = await gateway.rectifications.list(
        ItemFilter(
            states=None if state is None else [state],
            site_ids=site_ids,
            overdue=overdue,
            source=source,
            major=major,
            limit=limit,
        )
    )
    return [ItemOut.of(item, gateway) for item in items]


@router.get("/{item_id}")
async def get_item(item_id: int, gateway: GatewayDep, who: PrincipalDep) -> ItemDetailOut:
    """One item with its full history and the list of its evidence."""
    item = await _visible_item(gateway, who, item_id)
    with _answers():
        return await _detail(item, gateway)


_REPORT_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["note"],
                    "properties": {
                        "note": {"type": "string", "maxLength": NOTE_MAX},
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "JPEG, PNG or WebP photos, or PDF documents",
                        },
                    },
                }
            }
        },
    }
}


@router.post("/{item_id}/report", openapi_extra=_REPORT_FORM)
async def report(
    item_id: int, request: Request, gateway: GatewayDep, who: PrincipalDep
) -> ItemDetailOut:
    """The enterprise reports the fix: open -> fix_reported, with a note and evidence files."""
    await _visible_item(gateway, who, item_id)
    limits = gateway.rectifications.files.limits
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise HTTPException(
            415, "send the fix report as multipart/form-data: a 'note' field and 'files'"
        )
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise HTTPException(411, "a fix report needs a Content-Length header")
    if int(length) > limits.max_request_bytes():
        raise HTTPException(
            413,
            f"the report is {length} bytes; at most {limits.max_files} files of"
            f" {limits.max_bytes} bytes each can be attached",
        )
    async with request.form(max_files=limits.max_files, max_fields=4) as form:
        unknown = sorted({k for k in form if k not in ("note", "files")})
        if unknown:
            raise HTTPException(
                422, f"unknown form field(s) {unknown}; send 'note' and the photos as 'files'"
            )
        note = form.get("note")
        if not isinstance(note, str) or not note.strip():
            raise HTTPException(422, "the 'note' field (what was fixed, and how) is required")
        if len(note) > NOTE_MAX:
            raise HTTPException(422, f"the note is longer than {NOTE_MAX} characters")
        # A form whose file input was left empty still sends one nameless, empty part.
        files = [f for f in form.getlist("files") if f != ""]
        uploads = [f for f in files if isinstance(f, UploadFile)]
        if len(uploads) != len(files):
            raise HTTPException(422, "'files' must be file uploads, not text fields")
        uploads = [u for u in uploads if u.filename or u.size]
        with _answers():
            item = await gateway.rectifications.report(item_id, who.name, note, uploads)
            return await _detail(item, gateway)


@router.post("/{item_id}/verify")
async def verify(item_id: int, body: VerifyIn, gateway: GatewayDep, who: StaffDep) -> ItemDetailOut:
    """Strike the item off (销号): fix_reported -> verified. Final."""
    await _visible_item(gateway, who, item_id)
    with _answers():
        item = await gateway.rectifications.verify(item_id, who.name, body.note)
        return await _detail(item, gateway)


@router.post("/{item_id}/send-back")
async def send_back(
    item_id: int, body: SendBackIn, gateway: GatewayDep, who: StaffDep
) -> ItemDetailOut:
    """The fix is not accepted: fix_reported -> open, with the reason."""
    await _visible_item(gateway, who, item_id)
    with _answers():
        item = await gateway.rectifications.send_back(item_id, who.name, body.reason)
        return await _detail(item, gateway)


@router.get(
    "/{item_id}/evidence/{evidence_id}",
    response_class=Response,
    responses={200: {"content": {t: {} for t in ("image/jpeg", "application/pdf")}}},
)
async def download_evidence(
    item_id: int, evidence_id: int, gateway: GatewayDep, who: PrincipalDep
) -> Response:
    """The evidence file as uploaded, after checking it still matches its recorded hash."""
    await _visible_item(gateway, who, item_id)
    with _answers():
        record, data = await gateway.rectifications.evidence_file(item_id, evidence_id)
    ascii_name = record.filename.encode("ascii", "ignore").decode() or "evidence"
    return Response(
        content=data,
        media_type=record.content_type,
        headers={
            "Content-Disposition": (
                f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(record.filename)}"
            ),
            "ETag": f'"{record.sha256}"',
            "X-Content-SHA256": record.sha256,
            "X-Content-Type-Options": "nosniff",
        },
    )
