"""Every window and timing of the alert engine, in one object.

Grouping, flap damping, silences and the engine's timer all depend on durations
that a town may want to tune together (a busy industrial park groups differently
from a row of rental houses). Keeping them in one frozen dataclass means one
place to read them, one place to validate them, and no magic numbers in the rules.

All durations are milliseconds, like every timestamp in the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
DAY_MS = 24 * 60 * MINUTE_MS


@dataclass(frozen=True, slots=True)
class AlertOptions:
    """Timings of incidents, flap damping, silences and the engine's timer.

    >>> AlertOptions().incident_window_ms
    600000
    >>> AlertOptions(flap_transitions=1)
    Traceback (most recent call last):
    ...
    ValueError: flap_transitions must be at least 2, got 1
    """

    #: A new alert joins its site's open incident if it comes within this long of the
    #: incident's latest alert: a fire trips its detectors over minutes, not seconds,
    #: and the duty officer should get one page for it, not one per detector.
    incident_window_ms: int = 10 * MINUTE_MS
    #: Flap detection looks back this far ...
    flap_window_ms: int = 10 * MINUTE_MS
    #: ... and counts every clear and re-fire in it (not the raise); this many make it
    #: flap: cleared and back twice within the window.
    flap_transitions: int = 4
    #: A flapping alert settles once its signal has not flipped for this long, and then
    #: takes the state of the last signal. Half the flap window: a detector flipping every
    #: few minutes stays held, a real clear still shows within minutes.
    flap_settle_ms: int = 5 * MINUTE_MS
    #: How often the engine's timer looks for silences starting or ending and for
    #: flapping alerts that have settled. A silence ends at most this late.
    tick_ms: int = 1 * SECOND_MS
    #: Every alert's mutes are re-evaluated at least this often, so a change the muters
    #: cannot announce (a device moved behind another parent) is picked up anyway.
    mute_refresh_ms: int = 1 * MINUTE_MS
    #: The longest silence that may be set. A maintenance window someone forgot to end
    #: must not keep a site quiet for good.
    max_silence_ms: int = 30 * DAY_MS

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "flap_transitions":
                if value < 2:
                    raise ValueError(f"flap_transitions must be at least 2, got {value}")
            elif value <= 0:
                raise ValueError(f"{f.name} must be > 0, got {value}")
