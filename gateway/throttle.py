"""Login throttling: after a run of failures, further tries wait, longer each time.

Kept per username and per client address, in memory (a restart forgets it, which
costs an attacker a restart per few guesses: acceptable for one gateway). After
``max_failures`` failures in a row for a key, each further try within
``base_s * 2**(failures - max_failures)`` seconds (at most 15 minutes) of the last
failure is refused without checking the password. A success clears the key.

>>> t = LoginThrottle(max_failures=2, base_s=10, clock=lambda: 0.0)
>>> t.fail("bob"); t.fail("bob"); t.wait_s("bob"), t.wait_s("alice")
(10.0, 0.0)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_WAIT_S = 900.0
#: Keys idle this long are forgotten, so the table cannot grow without bound.
FORGET_AFTER_S = 3600.0


@dataclass(slots=True)
class _Record:
    failures: int
    last_s: float


class LoginThrottle:
    def __init__(
        self,
        max_failures: int = 5,
        base_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.base_s = base_s
        self.clock = clock
        self._records: dict[str, _Record] = {}

    def wait_s(self, *keys: str) -> float:
        """Seconds until any of ``keys`` may try again (0: now)."""
        now = self.clock()
        wait = 0.0
        for key in keys:
            record = self._records.get(key)
            if record is None or record.failures < self.max_failures:
                continue
            backoff = min(self.base_s * 2 ** (record.failures - self.max_failures), MAX_WAIT_S)
            wait = max(wait, record.last_s + backoff - now)
        return max(wait, 0.0)

    def fail(self, *keys: str) -> None:
        now = self.clock()
        self._forget_idle(now)
        for key in keys:
            record = self._records.setdefault(key, _Record(0, now))
            record.failures += 1
            record.last_s = now

    def succeed(self, *keys: str) -> None:
        for key in keys:
            self._records.pop(key, None)

    def _forget_idle(self, now: float) -> None:
        if len(self._records) < 10_000:
            return
        for key in [k for k, r in self._records.items() if now - r.last_s > FORGET_AFTER_S]:
            del self._records[key]
