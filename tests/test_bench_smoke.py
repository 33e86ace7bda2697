"""The ingest bench end to end on a tiny stream: a correctness check, never a timing one.

Real Mosquitto, ``ewg serve`` as a subprocess, ``mosquitto_pub``/``mosquitto_sub``:
every published reading must be stored exactly once and the table must show it.
"""

from __future__ import annotations

import pytest

from bench.ingest import IngestConfig, run_ingest
from bench.report import ingest_section, render

pytestmark = pytest.mark.integration


def test_ingest_bench_stores_every_published_reading() -> None:
    result = run_ingest(IngestConfig(messages=2_000, qos=1, devices=10))

    raw, gateway = result.raw, result.gateway
    assert raw.published == raw.received == 2_000
    assert gateway.published == gateway.messages_in == 2_000
    # 200 messages per device alternating 3 and 4 values: 3.5 readings per message.
    assert gateway.readings_expected == 7_000
    assert gateway.readings_stored == 7_000
    assert gateway.complete
    # Normal values, distinct timestamps, registered devices: nothing else happened.
    assert (gateway.dead_letters, gateway.readings_duplicate, gateway.signals) == (0, 0, 0)

    section = ingest_section(result)
    table = render([section], ["header"])
    assert "ingest, QoS 1" in table and "INCOMPLETE" not in table
    for row in section.rows:
        assert row.label in table
    for label in (
        "raw: mosquitto_sub receive rate",
        "gateway: sustained rate",
        "gateway: readings stored rate",
        "gateway / raw",
    ):
        assert any(row.label == label for row in section.rows)
    assert "7,000 / 7,000" in table
