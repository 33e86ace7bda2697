"""The data path, built in one place from stages that share one signature.

    MQTT message -> decode -> validate -> persist (store, dead letters) -> detect -> alerts

Each stage is ``async (Delivery) -> None``: it reads what the stages before it
left on the delivery and adds its own part. Every stage runs for every delivery,
so a rejected message still reaches ``persist`` (its dead letter is written and
the broker acknowledged) instead of vanishing half-way.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter

from gateway.decoders import RawEvent, RawSample
from gateway.model import DeviceEvent, InboundMessage, Reading, Rejection, StatusChange
from gateway.profiles import Profile
from gateway.reasons import Reason
from gateway.registry_model import Device

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Delivery:
    """One MQTT message on its way through the pipeline, and what became of it."""

    message: InboundMessage
    ack: Callable[[], None]
    kind: str = ""  # telemetry | event | status
    device: Device | None = None
    profile: Profile | None = None
    body: object = None
    samples: list[RawSample] = field(default_factory=list)
    raw_event: RawEvent | None = None
    readings: list[Reading] = field(default_factory=list)
    events: list[DeviceEvent] = field(default_factory=list)
    status: StatusChange | None = None
    rejections: list[Rejection] = field(default_factory=list)

    def reject(self, reason: str, detail: str) -> None:
        self.rejections.append(Rejection(reason, detail, self.device.id if self.device else None))

    @property
    def rejected(self) -> bool:
        """True when the message as a whole was refused (nothing left to process)."""
        return bool(self.rejections) and not (self.samples or self.raw_event or self.status)


Stage = Callable[[Delivery], Awaitable[None]]
Handler = Callable[[InboundMessage, Callable[[], None]], Awaitable[None]]


@dataclass(slots=True)
class StageTimings:
    """Seconds spent in each stage, summed over messages (exported as Prometheus counters)."""

    seconds: dict[str, float] = field(default_factory=dict)
    messages: int = 0


def build_pipeline(
    stages: Sequence[tuple[str, Stage]], timings: StageTimings, persist_stage: str = "persist"
) -> Handler:
    """Compose the named stages into the handler the MQTT source calls per message."""
    chain = tuple(stages)
    seconds = timings.seconds
    for name, _ in chain:
        seconds.setdefault(name, 0.0)

    async def handle(message: InboundMessage, ack: Callable[[], None]) -> None:
        delivery = Delivery(message, ack)
        timings.messages += 1
        persisted = False
        for name, stage in chain:
            started = perf_counter()
            try:
                await stage(delivery)
            except Exception as exc:
                # A message that trips a bug must not stop ingestion: it becomes a dead letter
                # (with its raw bytes, to replay once fixed) and the remaining stages, persist
                # among them, still run. Only persist itself failing leaves it unacknowledged.
                if name == persist_stage:
                    raise
                log.exception("stage %s failed on %s", name, message.topic)
                if not persisted:  # after persist the readings are stored: nothing to keep
                    _fail(delivery, name, exc)
            persisted = persisted or name == persist_stage
            seconds[name] += perf_counter() - started

    return handle


def _fail(delivery: Delivery, stage: str, exc: Exception) -> None:
    """Drop what the failed stage may have half-built and record why."""
    delivery.samples, delivery.raw_event, delivery.status = [], None, None
    delivery.readings, delivery.events = [], []
    delivery.reject(Reason.INTERNAL, f"{stage} failed: {type(exc).__name__}: {exc}"[:500])
