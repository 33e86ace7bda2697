"""Flap damping: an alert whose signal keeps raising and clearing is held as one.

A loose smoke-alarm contact, a residual-current reading hovering on its
threshold, an NB-IoT link dropping in and out: each flip would otherwise reach
the duty officer as a clear and a re-fire, and after a while nobody looks. Once
an alert has made :attr:`~alerts.options.AlertOptions.flap_transitions` transitions
(clears and re-fires; the raise itself is not one) within ``flap_window_ms``, it is
*flapping*: held in its active state (the safe side: a flapping fire alarm is
still a fire alarm) with ``flapping=True``, and further flips only update it
(``"updated"``, no history line, no ``"cleared"``).

It settles once its signal has not flipped for ``flap_settle_ms``: then
``flapping`` goes back to False and it takes the state of the last signal,
cleared if that was inactive. Settling is judged by signal time, so it happens
at the same instant whether the engine's timer or the next signal notices it.

:class:`FlapDamper` only counts transitions in memory. What a flapping alert
needs to settle correctly (``flap_active``, ``flap_changed_at``) is stored on the
alert itself, so a restart mid-flap settles it into the right state; the count
towards flapping starts afresh after a restart, which at worst takes one more
window to notice.
"""

from __future__ import annotations

import dataclasses
from collections import deque

from alerts.model import Alert, AlertState
from alerts.options import MINUTE_MS, AlertOptions


class FlapDamper:
    """Transition times per open alert, and the rules for holding and settling."""

    def __init__(self, options: AlertOptions) -> None:
        self._window_ms = options.flap_window_ms
        self._threshold = options.flap_transitions
        self._settle_ms = options.flap_settle_ms
        self._times: dict[int, deque[int]] = {}

    def clear(self) -> None:
        self._times.clear()

    def would_flap(self, alert_id: int, ts_ms: int) -> bool:
        """Would one more transition at ``ts_ms`` make the alert flap? Changes nothing."""
        times = self._times.get(alert_id, ())
        recent = sum(1 for t in times if ts_ms - t < self._window_ms)
        return recent + 1 >= self._threshold

    def record(self, alert_id: int, ts_ms: int) -> None:
        """Count a transition (after it was stored); old ones fall out of the window."""
        times = self._times.setdefault(alert_id, deque())
        times.append(ts_ms)
        while times and ts_ms - times[0] >= self._window_ms:
            times.popleft()

    def forget(self, alert_id: int) -> None:
        """The alert closed or settled: start counting afresh."""
        self._times.pop(alert_id, None)

    def settles_at(self, alert: Alert) -> int | None:
        """When a flapping alert settles if its signal flips no more; None if not flapping."""
        if not alert.flapping:
            return None
        return (alert.flap_changed_at or alert.updated_at) + self._settle_ms

    def note(self) -> str:
        """The history line for an alert that starts flapping."""
        return (
            f"flapping: {self._threshold} changes within {_minutes(self._window_ms)}; "
            f"held open until quiet for {_minutes(self._settle_ms)}"
        )

    @staticmethod
    def start(alert: Alert, ts_ms: int, active: bool) -> Alert:
        """The alert, now flapping; its state is held (made active if it was not)."""
        state = alert.state
        if state is AlertState.CLEARED:
            state = AlertState.ACKNOWLEDGED if alert.acknowledged else AlertState.RAISED
        return dataclasses.replace(
            alert,
            state=state,
            cleared_at=None,
            flapping=True,
            flap_active=active,
            flap_changed_at=ts_ms,
        )

    @staticmethod
    def flip(alert: Alert, ts_ms: int, active: bool) -> Alert:
        """A flapping alert's signal changed: remember it; the state stays held."""
        return dataclasses.replace(alert, flap_active=active, flap_changed_at=ts_ms)

    @staticmethod
    def settle(alert: Alert, at_ms: int) -> Alert:
        """The alert, settled into the state of its last signal."""
        state = alert.state
        cleared_at = alert.cleared_at
        if alert.flap_active is False:
            state = AlertState.CLEARED
            cleared_at = alert.flap_changed_at
        return dataclasses.replace(
            alert,
            state=state,
            cleared_at=cleared_at,
            flapping=False,
            flap_active=None,
            flap_changed_at=None,
            updated_at=max(alert.updated_at, at_ms),
        )


def _minutes(ms: int) -> str:
    return f"{ms / MINUTE_MS:g} min"
