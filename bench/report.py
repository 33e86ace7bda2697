"""The results as an aligned plain-text table (and as JSON), with the design targets.

A target's verdict is PASS or BELOW (short of the target). It is information for
people: nothing here fails the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bench.ingest import IngestResult
from bench.latency import LatencyResult

#: Design targets: messages/s in one gateway process, by QoS.
INGEST_TARGET = {0: 20_000.0, 1: 10_000.0}
P99_TARGET_MS = 250.0
#: The field requirement: a fire alarm on the duty console within 10 s.
FIELD_TARGET_MS = 10_000.0


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    value: str
    target: str = ""
    verdict: str = ""


@dataclass(frozen=True, slots=True)
class Section:
    title: str
    rows: list[Row]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "BELOW"


def count(n: float) -> str:
    """
    >>> count(12345.6), count(0.42)
    ('12,346', '0.42')
    """
    return f"{n:,.0f}" if abs(n) >= 10 else f"{n:.2g}"


def ms(value: float | None) -> str:
    """
    >>> ms(3.14159), ms(1234.5), ms(math.inf), ms(None)
    ('3.1 ms', '1,234 ms', 'lost', 'n/a')
    """
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "lost"
    return f"{value:.1f} ms" if value < 1000 else f"{value:,.0f} ms"


def ingest_section(r: IngestResult) -> Section:
    raw, gw = r.raw, r.gateway
    target = INGEST_TARGET[r.qos]
    publish = f"{raw.publish_seconds:.2f} s" if raw.publish_seconds is not None else "n/a"
    rows = [
        Row("raw: mosquitto_sub receive rate", f"{count(raw.rate)} msg/s"),
        Row("raw: delivered / published", f"{raw.received:,} / {raw.published:,}"),
        Row(f"raw: {r.devices} publishers done after", publish),
        Row("gateway: sustained rate", f"{count(gw.rate)} msg/s", f">= {count(target)} msg/s",
            verdict(gw.rate >= target)),
        Row("gateway: readings stored rate", f"{count(gw.readings_rate)} readings/s"),
        Row("gateway: messages in / published", f"{gw.messages_in:,} / {gw.published:,}"),
        Row("gateway: readings stored / expected",
            f"{gw.readings_stored:,} / {gw.readings_expected:,}"),
        Row("gateway: time to last reading stored", f"{gw.seconds:.2f} s"),
        Row("gateway: dead letters, duplicates, signals",
            f"{gw.dead_letters}, {gw.readings_duplicate}, {gw.signals}"),
        Row("gateway / raw", f"{r.ratio:.3f}"),
    ]
    title = f"ingest, QoS {r.qos}"
    if not gw.complete or raw.received < raw.published:
        title += "  (INCOMPLETE: not everything published arrived; see delivered rows)"
    return Section(title, rows)


def latency_section(r: LatencyResult, interval_ms: float, load_note: str = "") -> Section:
    p99, worst = r.quantile(0.99), r.quantile(1.0)
    rows = [
        Row("background load: target", f"{count(r.load_target)} msg/s, QoS {r.load_qos}"),
        Row("background load: achieved (gateway)", f"{count(r.load_achieved)} msg/s"),
        Row("alerts raised / alarms published", f"{r.received} / {r.sent}"),
        Row("median", ms(r.quantile(0.5))),
        Row("p90", ms(r.quantile(0.9))),
        Row("p99", ms(p99), f"<= {P99_TARGET_MS:.0f} ms",
            verdict(p99 is not None and p99 <= P99_TARGET_MS)),
        Row("max", ms(worst), f"<= {FIELD_TARGET_MS / 1000:.0f} s (field)",
            verdict(worst is not None and worst <= FIELD_TARGET_MS)),
    ]
    title = (f"alert latency: smoke_alarm event -> SSE 'raised', {r.sent} alarms "
             f"{interval_ms:.0f} ms apart, QoS 1" + (f"\n  (background load: {load_note})"
                                                     if load_note else ""))
    return Section(title, rows)


def render(sections: list[Section], header: list[str]) -> str:
    rows = [row for s in sections for row in s.rows]
    widths = [max([len(h), *(len(getattr(r, name)) for r in rows)])
              for h, name in (("measure", "label"), ("value", "value"),
                              ("target", "target"), ("verdict", "verdict"))]
    widths[0] += 2  # rows are indented under their section

    def fmt(*cells: str) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    lines = [*header, "", fmt("measure", "value", "target", "verdict"),
             fmt(*("-" * w for w in widths))]
    for section in sections:
        lines.append(section.title)
        lines.extend(fmt("  " + r.label, r.value, r.target, r.verdict) for r in section.rows)
    return "\n".join(lines)


def ingest_json(r: IngestResult) -> dict[str, Any]:
    raw, gw = r.raw, r.gateway
    return {
        "qos": r.qos, "devices": r.devices, "ratio": r.ratio,
        "raw": {"published": raw.published, "received": raw.received, "seconds": raw.seconds,
                "since_publish_s": raw.since_publish_s, "rate": raw.rate,
                "publish_seconds": raw.publish_seconds},
        "gateway": {"published": gw.published, "messages_in": gw.messages_in,
                    "readings_expected": gw.readings_expected,
                    "readings_stored": gw.readings_stored,
                    "readings_duplicate": gw.readings_duplicate,
                    "dead_letters": gw.dead_letters, "signals": gw.signals,
                    "seconds": gw.seconds, "rate": gw.rate, "readings_rate": gw.readings_rate,
                    "publish_seconds": gw.publish_seconds, "complete": gw.complete},
        "target_msg_per_s": INGEST_TARGET[r.qos],
        "pass": r.gateway.rate >= INGEST_TARGET[r.qos],
    }


def latency_json(r: LatencyResult) -> dict[str, Any]:
    def finite(v: float | None) -> float | None:
        return None if v is None or math.isinf(v) else v

    p99 = r.quantile(0.99)
    return {
        "sent": r.sent, "received": r.received, "lost": r.lost,
        "load_target": r.load_target, "load_achieved": r.load_achieved, "load_qos": r.load_qos,
        "median_ms": finite(r.quantile(0.5)), "p90_ms": finite(r.quantile(0.9)),
        "p99_ms": finite(p99), "max_ms": finite(r.quantile(1.0)),
        "latencies_ms": r.latencies_ms,
        "p99_target_ms": P99_TARGET_MS,
        "pass": p99 is not None and p99 <= P99_TARGET_MS,
    }
