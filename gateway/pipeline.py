"""The data path, built in one place from stages that share one signature.

    MQTT message -> decode -> validate -> persist (store, dead letters) -> detect -> alerts

Each stage is ``async (Delivery) -> None``: it reads what the stages before it
left on the delivery and adds its own part. Every stage runs for every delivery,
so a rejected message still reaches ``persist`` (its dead letter is written and
the broker acknowledged) instead of vanishing half-way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from gateway.decoders import RawEvent, RawSample
from gateway.model import DeviceEvent, InboundMessage, Reading, Rejection, StatusChange
from gateway.profiles import Profile
from gateway.registry_model import Device


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


def build_pipeline(
    stages: Sequence[Stage],
) -> Callable[[InboundMessage, Callable[[], None]], Awaitable[None]]:
    """Compose the stages into the handler the MQTT source calls per message."""
    chain = tuple(stages)

    async def handle(message: InboundMessage, ack: Callable[[], None]) -> None:
        delivery = Delivery(message, ack)
        for stage in chain:
            await stage(delivery)

    return handle
