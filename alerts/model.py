"""The alert model: what a duty officer sees, acknowledges and closes.

An alert is keyed by (device, rule): there is at most one open alert per key,
repeats bump ``count`` and ``value`` instead of creating a second alert.

Beyond its lifecycle state an alert carries four facts that decide whether anyone
should be *paged* for it; none of them changes its state or hides it from the console:

* ``incident_id``: alerts at one site close together in time form one incident
  (:mod:`alerts.incidents`): one fire, one page.
* ``silenced_by``: the id of the silence (maintenance window) it was raised under or
  that now covers it (:mod:`alerts.silence`).
* ``suppressed_by``: the id of the alert that explains it (parent device offline,
  confirmed fire at the site; :mod:`alerts.inhibit`).
* ``flapping``: its signal keeps flipping, so it is held open as one alert until it
  settles (:mod:`alerts.flap`).

For listeners (escalation, notifications) every :class:`AlertChange` carries the
alert as stored, so they can tell: skip paging while ``alert.muted`` (silenced or
suppressed); a change from muted to not muted comes as an ``"updated"`` change, and
is the moment to page for an alert still active. Entering and leaving flapping also
come as ``"updated"`` (or ``"cleared"`` when it settles clear); while ``flapping``,
the state is held and flips are not published as clears or re-fires.
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
    #: The incident this alert belongs to (alerts at one site within the incident window).
    incident_id: int | None = None
    #: The silence muting this alert, if any; it is still shown and still needs closing.
    silenced_by: int | None = None
    #: The open alert that explains this one and so suppresses it (state unchanged).
    suppressed_by: int | None = None
    #: Held open as one alert because its signal keeps raising and clearing.
    flapping: bool = False
    #: While flapping: whether the last signal was active, i.e. the state it settles into.
    flap_active: bool | None = None
    #: While flapping: when its signal last flipped; it settles once quiet for a while.
    flap_changed_at: int | None = None
    #: The site's own people said "we are on it" (an enterprise user). Recorded and shown,
    #: but it is not an acknowledgement: the town's escalation and the duty board go on
    #: until the office's staff acknowledge.
    owner_acknowledged_by: str | None = None
    owner_acknowledged_at: int | None = None

    @property
    def is_open(self) -> bool:
        return self.state is not AlertState.CLOSED

    @property
    def muted(self) -> bool:
        """Silenced or suppressed: shown and kept, but nobody should be paged for it."""
        return self.silenced_by is not None or self.suppressed_by is not None


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
    """Published on the alert bus (and the SSE stream) whenever an alert changes.

    ``"updated"`` also covers changes that leave the state alone: a repeat, becoming
    muted or unmuted (``alert.muted``), starting to flap or settling while active.
    """

    kind: str  # "raised", "updated", "acknowledged", "cleared", "closed"
    alert: Alert = field(compare=False)
