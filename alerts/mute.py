"""The one "does something mute this alert?" interface shared by silences and inhibition.

A muted alert is *kept and shown* (its state is untouched, it still needs closing);
muting only tells the listeners that page people (escalation, notifications) to
hold off, and the console to show why. Two things mute:

* a **silence** (:mod:`alerts.silence`): a person said "expect noise here until T",
  e.g. a maintenance window; the answer is the silence's id, kept in
  :attr:`~alerts.model.Alert.silenced_by`;
* an **inhibition** (:mod:`alerts.inhibit`): another open alert explains this one
  (the transmission device is offline, so its detectors are too); the answer is
  that alert's id, kept in :attr:`~alerts.model.Alert.suppressed_by`.

The engine asks every muter when an alert is raised and whenever it changes, and
again when a muter says its answers may have changed (:meth:`Muter.dependents`
for changes of other alerts, :meth:`Muter.next_change_ms` for time passing).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Protocol

from alerts.model import Alert


class MuteKind(StrEnum):
    """Which field of the alert a muter's answer goes to."""

    SILENCE = "silence"  # -> Alert.silenced_by (a silence id)
    INHIBITION = "inhibition"  # -> Alert.suppressed_by (an alert id)


class Muter(Protocol):
    """Something that may mute alerts: a set of silences, or the inhibition rules.

    Implementations are called from inside the engine's critical section, so all
    three methods must be quick, synchronous and must not raise.
    """

    @property
    def kind(self) -> MuteKind: ...

    def mutes(self, alert: Alert, now_ms: int) -> int | None:
        """The id of what mutes ``alert`` at ``now_ms`` (a silence or an alert), or None.

        ``alert`` is the version about to be stored; other alerts, where a muter
        looks at them, are as last committed. Should ``alert.silenced_by`` /
        ``suppressed_by`` still apply, return it: keeping the same answer spares
        the history and the listeners a pointless change.
        """
        ...

    def dependents(self, changed: Alert) -> Iterable[int]:
        """Ids of *other* open alerts whose answer may differ now that ``changed`` changed.

        Asked when an alert is raised, changes state (cleared, re-fired, closed, ...) or
        severity: the only changes that may alter what it mutes. Silences depend on no
        alert and return nothing; inhibition returns the alerts that ``changed`` may
        suppress or may have suppressed.
        """
        ...

    def next_change_ms(self, after_ms: int) -> int | None:
        """The first instant after ``after_ms`` at which an answer may change by itself.

        A silence starts or ends on its own; the engine's timer re-asks about every
        open alert once that instant has passed. None when nothing is scheduled.
        """
        ...
