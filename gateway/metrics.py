"""Counters the gateway keeps about itself (shown by /api/health)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class Counters:
    messages_in: int = 0
    readings_accepted: int = 0
    readings_stored: int = 0
    readings_duplicate: int = 0
    events_accepted: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    signals: int = 0
    #: Signals the alert engine could not apply even after retries (each one is logged).
    signals_failed: int = 0
    store_errors: int = 0
    #: Successful store writes and the seconds they took (mean latency = seconds / writes).
    store_writes: int = 0
    store_write_seconds: float = 0.0
    alerts_raised: int = 0
    flushes: int = 0
    last_flush_ms: int | None = None
    last_store_error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "messages_in": self.messages_in,
            "readings_accepted": self.readings_accepted,
            "readings_stored": self.readings_stored,
            "readings_duplicate": self.readings_duplicate,
            "events_accepted": self.events_accepted,
            "dead_letters": dict(self.dead_letters),
            "dead_letters_total": sum(self.dead_letters.values()),
            "signals": self.signals,
            "signals_failed": self.signals_failed,
            "store_errors": self.store_errors,
            "store_writes": self.store_writes,
            "store_write_seconds": round(self.store_write_seconds, 6),
            "alerts_raised": self.alerts_raised,
            "flushes": self.flushes,
            "last_flush_ms": self.last_flush_ms,
            "last_store_error": self.last_store_error,
        }
