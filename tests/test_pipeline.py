"""The pipeline keeps going when a stage trips over a message: nothing is lost or stuck."""

from __future__ import annotations

from functools import partial

import pytest

from gateway.model import InboundMessage, Reading
from gateway.pipeline import Delivery, StageTimings, build_pipeline


async def test_a_stage_failing_dead_letters_the_message_and_the_next_one_flows() -> None:
    persisted: list[tuple[str, list[str], int]] = []
    acked: list[str] = []

    async def decode(d: Delivery) -> None:
        if d.message.payload == b"boom":
            raise ValueError("a bug in a decoder")
        d.readings = [Reading("d1", "voltage_v", 1, 220.0)]

    async def persist(d: Delivery) -> None:
        persisted.append((d.message.topic, [r.reason for r in d.rejections], len(d.readings)))
        d.ack()

    async def detect(d: Delivery) -> None:
        raise RuntimeError("a bug in a detector")  # after persist: logged, nothing to undo

    timings = StageTimings()
    handle = build_pipeline([("decode", decode), ("persist", persist), ("detect", detect)], timings)
    for n, payload in enumerate([b"boom", b"ok"]):
        topic = f"ewg/v1/d1/telemetry#{n}"
        await handle(InboundMessage(topic, payload, 1, False, 0), partial(acked.append, topic))
    assert persisted == [
        ("ewg/v1/d1/telemetry#0", ["internal"], 0),
        ("ewg/v1/d1/telemetry#1", [], 1),
    ]
    assert acked == ["ewg/v1/d1/telemetry#0", "ewg/v1/d1/telemetry#1"]
    assert timings.messages == 2


async def test_persist_failing_leaves_the_message_unacknowledged() -> None:
    acked: list[int] = []

    async def persist(d: Delivery) -> None:
        raise OSError("disk gone")

    handle = build_pipeline([("persist", persist)], StageTimings())
    with pytest.raises(OSError):
        await handle(InboundMessage("t", b"{}", 1, False, 0), lambda: acked.append(1))
    assert acked == []  # the broker keeps it and delivers it again
