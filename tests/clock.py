"""An injectable clock for engine tests: time moves only when a test says so."""

from __future__ import annotations


class FakeClock:
    """Epoch milliseconds, set by the test (``clock.now += 60_000``)."""

    def __init__(self, now: int = 1_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now
