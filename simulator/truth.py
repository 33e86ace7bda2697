"""Ground truth: what the simulator injected, so a test can score what the gateway raised.

One JSON object per line, one line per injected incident and affected device (a fire writes
one for the smoke alarm and one for the heat detector that warms up with it)::

    {"kind": "leakage_creep", "device_id": "v1-s1-efm", "site_id": "v1-s1",
     "start_ms": ..., "end_ms": ..., "expected_rule": "residual_current",
     "expected_severity": "orange", "metric": "residual_current_ma", "threshold": 300.0,
     "crossed_ms": ..., "malformed": {}, "messages": 0, "detail": {...}}

``expected_rule`` is the profile rule or event name the gateway should raise (``offline``, a
blue fault, for an offline incident), or null when nothing should be raised (duplicates,
backfill, malformed: those test de-duplication, late data and rejection instead).
``crossed_ms`` is the timestamp of the first published reading past ``threshold`` (or of the
alarm event), the clock from which the gateway's detection latency is measured; when the rule
also has a lower pre-warning stage, ``detail.prewarning_ms`` says when that was passed (an
alert may be raised there first and escalated later). ``malformed`` counts bad messages per
rejection reason; ``messages`` counts duplicated messages or backfilled readings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class TruthRecord:
    kind: str
    device_id: str
    site_id: str
    start_ms: int
    end_ms: int
    expected_rule: str | None
    expected_severity: str | None
    metric: str | None = None
    threshold: float | None = None
    crossed_ms: int | None = None
    malformed: dict[str, int] = field(default_factory=dict)
    messages: int = 0
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TruthRecord:
        return cls(**data)


def write_truth(path: Path, records: Iterable[TruthRecord]) -> None:
    """Write records as JSONL (UTF-8, one record per line), replacing the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record.to_json(), ensure_ascii=False, sort_keys=True) + "\n")


def read_truth(path: Path) -> list[TruthRecord]:
    """Read a truth file written by :func:`write_truth`."""
    with path.open(encoding="utf-8") as src:
        return [TruthRecord.from_json(json.loads(line)) for line in src if line.strip()]
