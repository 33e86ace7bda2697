"""Rectification items (隐患整改): the data, its states and the legal moves between them.

The town's plan asks for a hazard database run as a checklist: every hazard found is
listed, assigned to whoever must fix it with a deadline, fixed, checked by the
office and only then struck off (清单管理、动态更新、照单销号). An item is that
line of the checklist. Its state machine is small on purpose::

    (new) --create--> OPEN --report--> FIX_REPORTED --verify--> VERIFIED (struck off, final)
                        ^                   |
                        +----send_back------+   (with the reason)

Nothing else moves an item, and nothing removes one: a hazard that "disappears"
from the list without a verified fix is exactly what the plan forbids.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gateway.errors import ConflictError, EwgError


class ItemState(StrEnum):
    OPEN = "open"
    FIX_REPORTED = "fix_reported"
    VERIFIED = "verified"


class Source(StrEnum):
    """Where a hazard came from: the plan's channels (自查上报、督导检查、群众举报) or an alert."""

    ALERT = "alert"
    INSPECTION = "inspection"
    SELF_REPORT = "self_report"
    PUBLIC_REPORT = "public_report"


class Action(StrEnum):
    """What a history line records; ``overdue`` is the only one the system makes itself."""

    CREATE = "create"
    REPORT = "report"
    VERIFY = "verify"
    SEND_BACK = "send_back"
    OVERDUE = "overdue"


#: The only legal moves: action -> (from state, to state). Kept as data so the
#: check, the error message and the docs cannot disagree.
MOVES: dict[Action, tuple[ItemState, ItemState]] = {
    Action.REPORT: (ItemState.OPEN, ItemState.FIX_REPORTED),
    Action.VERIFY: (ItemState.FIX_REPORTED, ItemState.VERIFIED),
    Action.SEND_BACK: (ItemState.FIX_REPORTED, ItemState.OPEN),
}

_VERBS = {
    Action.REPORT: "report a fix for",
    Action.VERIFY: "verify",
    Action.SEND_BACK: "send back",
}


class IllegalTransition(ConflictError):
    """The item is not in the state the action needs (HTTP 409)."""


class InvalidItem(EwgError, ValueError):
    """A request that cannot become an item or a transition as given (HTTP 422)."""


def check_move(item_id: int, action: Action, state: ItemState) -> ItemState:
    """The state ``action`` leads to from ``state``, or IllegalTransition saying why not.

    >>> check_move(3, Action.VERIFY, ItemState.FIX_REPORTED)
    <ItemState.VERIFIED: 'verified'>
    >>> check_move(3, Action.VERIFY, ItemState.OPEN)
    Traceback (most recent call last):
    ...
    alerts.rectification.model.IllegalTransition: cannot verify rectification item 3: it is \
open; only an item in state fix_reported can (no fix has been reported yet)
    """
    need, to = MOVES[action]
    if state is need:
        return to
    if state is ItemState.VERIFIED:
        why = "it has been verified and struck off, which is final"
    elif state is ItemState.FIX_REPORTED:
        why = "a fix is already reported and waits to be verified or sent back"
    else:
        why = "no fix has been reported yet"
    raise IllegalTransition(
        f"cannot {_VERBS[action]} rectification item {item_id}: it is {state}; "
        f"only an item in state {need} can ({why})"
    )


@dataclass(frozen=True, slots=True)
class NewItem:
    """What a person asks for when listing a hazard (validated by the book)."""

    source: Source
    site_id: str | None
    hazard: str | None
    description: str
    assignee: str
    deadline_ms: int
    alert_id: int | None = None
    enterprise: str | None = None
    major: bool = False


@dataclass(frozen=True, slots=True)
class Item:
    id: int
    source: Source
    alert_id: int | None
    site_id: str
    #: Who must fix it (defaults to the site's enterprise when listed).
    enterprise: str
    hazard: str
    description: str
    #: 重大事故隐患: the plan tracks major hazards separately.
    major: bool
    #: The person at the enterprise who has to do the fix.
    assignee: str
    deadline_ms: int
    state: ItemState
    created_at: int
    created_by: str
    updated_at: int
    reported_at: int | None = None
    reported_by: str | None = None
    verified_at: int | None = None
    verified_by: str | None = None
    sent_back: int = 0
    #: When the overdue sweep first found it past its deadline unverified (it stays set:
    #: an item verified late was still late).
    overdue_at: int | None = None

    def is_overdue(self, now_ms: int) -> bool:
        """Past its deadline and not struck off (a reported but unverified fix still counts)."""
        return self.state is not ItemState.VERIFIED and now_ms > self.deadline_ms


@dataclass(frozen=True, slots=True)
class HistoryLine:
    id: int
    item_id: int
    ts_ms: int
    actor: str
    action: Action
    from_state: ItemState | None
    to_state: ItemState
    note: str


@dataclass(frozen=True, slots=True)
class Evidence:
    """One file attached to a fix report; the bytes live under ``evidence/`` by their hash."""

    id: int
    item_id: int
    #: The history line (the ``report``) it was attached to.
    history_id: int
    filename: str
    content_type: str
    size: int
    sha256: str
    uploaded_at: int
    uploaded_by: str


@dataclass(frozen=True, slots=True)
class SiteCounts:
    """One site's items for statistics: open and overdue now; listed and struck off in a period."""

    open: int = 0
    overdue: int = 0
    created: int = 0
    verified: int = 0
