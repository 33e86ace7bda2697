"""The alert model: what a duty officer sees, acknowledges and closes.

An alert is keyed by (device, rule): there is at most one open alert per key,
repeats bump ``count`` and ``value`` instead of creating a second alert.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum


class Severity(StrEnum):
    """The four warning colours of Chinese emergency plans (red is level 1, the highest)."""

    RED = "red"
    ORANGE = "orange"
    YELLOW = "yellow"
    BLUE = "blue"

    @property
    def rank(self) -> int:
        """Higher is worse: red 4, orange 3, yellow 2, blue 1."""
        return _RANK[self]


_RANK = {Severity.RED: 4, Severity.ORANGE: 3, Severity.YELLOW: 2, Severity.BLUE: 1}


class AlertClass(StrEnum):
    """Hazards (fire, leakage, ...) are triaged apart from equipment faults."""

    HAZARD = "hazard"
    FAULT = "fault"


class AlertState(StrEnum):
    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"
    CLOSED = "closed"


class Disposition(StrEnum):
    """How a closed alert turned out; false-alarm rates are reported from this."""

    REAL = "real"
    FALSE_ALARM = "false_alarm"
    TEST = "test"
    MAINTENANCE = "maintenance"
    DEVICE_FAULT = "device_fault"


class Stage(IntEnum):
    """How far a series is into a rule: normal, pre-warning or alarm."""

    NORMAL = 0
    PREWARNING = 1
    ALARM = 2


@dataclass(frozen=True, slots=True)
class Signal:
    """What a detector tells the alert engine: a rule became active, changed or cleared."""

    device_id: str
    rule: str
    active: bool
    ts_ms: int
    value: float | None
    severity: Severity
    alert_class: AlertClass
    hazard: str
    message: str = ""


@dataclass(slots=True)
class Alert:
    id: int
    device_id: str
    site_id: str
    rule: str
    severity: Severity
    alert_class: AlertClass
    hazard: str
    state: AlertState
    raised_at: int
    updated_at: int
    value: float | None
    message: str = ""
    count: int = 1
    acknowledged: bool = False
    acknowledged_by: str | None = None
    acknowledged_at: int | None = None
    cleared_at: int | None = None
    closed_at: int | None = None
    closed_by: str | None = None
    disposition: Disposition | None = None
    note: str = ""

    @property
    def is_open(self) -> bool:
        return self.state is not AlertState.CLOSED


@dataclass(frozen=True, slots=True)
class Transition:
    """One line of an alert's history: who moved it from which state to which, and when."""

    alert_id: int
    ts_ms: int
    actor: str
    from_state: AlertState | None
    to_state: AlertState
    note: str = ""


@dataclass(frozen=True, slots=True)
class AlertChange:
    """Published on the alert bus (and the SSE stream) whenever an alert changes."""

    kind: str  # "raised", "updated", "acknowledged", "cleared", "closed"
    alert: Alert = field(compare=False)
