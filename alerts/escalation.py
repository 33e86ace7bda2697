"""Escalation: who is told about an alert, step by step, until somebody acknowledges it.

A policy (configuration, see :mod:`alerts.alerting_config`) is a chain of steps: "at
once, the site owner; after 1 min unacknowledged, the community grid officer; after
3 min, the town's duty leader; after 5 min, the fire station", then reminders every
few minutes while nobody has acknowledged. The "1-3-5" practice is the reason: a micro
fire station must be on scene in 3 minutes, so a silent site owner cannot be the end
of the story.

How it runs:

* :meth:`Escalator.on_change` is the alert engine's listener. It is called synchronously
  for every change and only updates memory: a raised alert starts a chain, an
  acknowledgement or a close stops it at once (before any further step can fire), an
  upgraded severity switches to the policy of the new severity.
* :meth:`Escalator.tick` does the work for a given time: records new chains, fires each
  step that is due (its notifications rendered and written to SQLite in one transaction
  with the step) and hands them to the delivery queue. One background task calls it,
  sleeping until the next step is due; tests call it with a fake clock instead.
* A muted alert (``silenced_by`` or ``suppressed_by`` set, by silences and inhibition) is
  not notified: a step that comes due while it is muted is recorded, with every
  notification it would have sent marked *skipped*, and the chain moves on. If steps
  were skipped and the alert is still active and unacknowledged when the mute ends (a
  maintenance window closes on a smoke alarm still in alarm), a fresh chain starts
  from its first step: nobody has been told yet.
* :meth:`Escalator.escalate_now` is the duty officer's "escalate" button: the chain's
  next step (or reminder) is sent at once instead of at its time, and counts as fired,
  so it is not sent again when its time comes; later steps keep their times.
* Restart-safe: fired steps are in SQLite (``escalation_steps``), so a restarted gateway
  resumes each open chain where it was and never re-sends a step. Steps that came due
  while it was down fire at once; of the reminders missed, only the latest is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from alerts.alerting_config import AlertingConfig, Policy, Target
from alerts.model import Alert, AlertChange, AlertState
from alerts.notify.channels import Channel
from alerts.notify.queue import DeliveryQueue, sleep_until
from alerts.notify.store import Notification, NotifyStore, Planned, Status
from alerts.notify.templates import AlertFacts, Message, Reason, render
from gateway.errors import ConflictError, StoreError
from gateway.model import now_ms

log = logging.getLogger(__name__)

#: Closed alerts remembered so queued notifications for them are cancelled, not sent.
CLOSED_REMEMBERED = 10_000


def muted_by(alert: Alert) -> str | None:
    """Why nobody may be paged for an alert now, or None.

    ``silenced_by`` (a silence's id) and ``suppressed_by`` (the id of the alert that
    explains this one) are read with ``getattr``, so this works on any alert model.
    """
    silenced = getattr(alert, "silenced_by", None)
    if silenced is not None:
        return f"silenced by {_ref('silence', silenced)}"
    suppressed = getattr(alert, "suppressed_by", None)
    if suppressed is not None:
        return f"suppressed by {_ref('alert', suppressed)}"
    return None


def _ref(kind: str, value: object) -> str:
    return f"{kind} {value}" if isinstance(value, int) else str(value)


def step_key(index: int) -> str:
    return f"step:{index}"


def repeat_key(number: int) -> str:
    return f"repeat:{number}"


@dataclass(slots=True)
class Chain:
    """One escalation of one alert under one policy; ``number`` counts an alert's chains."""

    alert: Alert
    policy: Policy
    number: int
    started_ms: int
    fired: set[str] = field(default_factory=set)
    persisted: bool = False

    def step_due(self, index: int) -> int:
        return self.started_ms + int(self.policy.steps[index].after_s * 1000)

    def repeats_fired(self) -> int:
        return max((int(k.split(":")[1]) for k in self.fired if k.startswith("repeat:")), default=0)

    def repeat_due(self, number: int) -> int | None:
        """When reminder ``number`` (1-based) is due; None past ``max_count`` or no repeat."""
        repeat = self.policy.repeat
        if repeat is None or (repeat.max_count is not None and number > repeat.max_count):
            return None
        return self.step_due(len(self.policy.steps) - 1) + int(number * repeat.every_s * 1000)

    def next_due(self) -> int | None:
        for index in range(len(self.policy.steps)):
            if step_key(index) not in self.fired:
                return self.step_due(index)
        return self.repeat_due(self.repeats_fired() + 1)


@dataclass(frozen=True, slots=True)
class Escalated:
    """What :meth:`Escalator.escalate_now` sent: one step or reminder of one chain."""

    alert_id: int
    policy: str
    step: str  # "step:1", "repeat:2", ... as in the delivery log
    notifications: list[Notification]


class Escalator:
    """Drives escalation chains from alert changes; see the module docstring."""

    def __init__(
        self,
        config: AlertingConfig,
        store: NotifyStore,
        queue: DeliveryQueue,
        channels: dict[str, Channel],
        describe: Callable[[Alert], AlertFacts],
        *,
        public_url: str,
        timezone: str,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._config = config
        self._store = store
        self._queue = queue
        self._channels = channels
        self._describe = describe
        self.public_url = config.options.public_url or public_url
        self._timezone = timezone
        self._clock = clock
        self._open: dict[int, Alert] = {}  # every open alert seen, latest snapshot
        self._chains: dict[int, Chain] = {}  # alert id -> its running chain
        self._last: dict[int, tuple[int, str]] = {}  # alert id -> (number, policy) of latest
        self._skipped: set[int] = set()  # alerts whose latest chain skipped a step, muted
        self._closed: dict[int, str] = {}  # alert id -> who closed it (for the queue)
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        queue.set_verdict(self.verdict)

    # -- listener (synchronous, memory only) --------------------------------------------

    def on_change(self, change: AlertChange) -> None:
        alert = change.alert
        before = self._open.get(alert.id)
        if change.kind == "closed" or not alert.is_open:
            self._open.pop(alert.id, None)
            self._chains.pop(alert.id, None)
            self._last.pop(alert.id, None)
            self._skipped.discard(alert.id)
            self._closed[alert.id] = alert.closed_by or "?"
            while len(self._closed) > CLOSED_REMEMBERED:
                del self._closed[next(iter(self._closed))]
            return
        self._open[alert.id] = alert
        chain = self._chains.get(alert.id)
        if alert.acknowledged:
            self._chains.pop(alert.id, None)
            return
        if chain is not None:
            chain.alert = alert
            if chain.policy.stop_on_clear and alert.state is AlertState.CLEARED:
                del self._chains[alert.id]
                return
        policy = self._config.policy_for(alert)
        if policy is None:
            return
        last = self._last.get(alert.id)
        unmuted = before is not None and muted_by(before) and not muted_by(alert)
        if last is not None and last[1] == policy.name:
            # Same policy: go on, unless a mute made the chain skip people and has now ended
            # while the alert is still active: then nobody has been told, so start over.
            if not (unmuted and alert.id in self._skipped and alert.state is AlertState.RAISED):
                return
        # A new alert, one whose severity moved it to another policy, or one that was
        # muted through its steps: a new chain starts now (the old one's steps stay recorded).
        self._start_chain(alert, policy, (last[0] if last else 0) + 1, self._clock())

    def _start_chain(self, alert: Alert, policy: Policy, number: int, started_ms: int) -> Chain:
        chain = Chain(alert, policy, number, started_ms)
        self._chains[alert.id] = chain
        self._last[alert.id] = (number, policy.name)
        self._skipped.discard(alert.id)
        self._wake.set()
        return chain

    # -- what the queue asks before each attempt ----------------------------------------

    def verdict(self, alert_id: int) -> tuple[Status, str] | None:
        """Whether a queued notification may still go out (None) or why not."""
        alert = self._open.get(alert_id)
        if alert is None:
            closer = self._closed.get(alert_id)
            reason = f"alert closed by {closer}" if closer else "alert is no longer open"
            return Status.CANCELLED, reason
        if alert.acknowledged:
            return Status.CANCELLED, f"alert acknowledged by {alert.acknowledged_by or '?'}"
        muted = muted_by(alert)
        if muted:
            return Status.SKIPPED, f"muted: {muted}"
        return None

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, open_alerts: Iterable[Alert]) -> None:
        """Resume the chains of open alerts from SQLite; adopt recent unrecorded ones."""
        now = self._clock()
        chains = await self._store.chains()
        fired = await self._store.fired_steps()
        adopt_ms = int(self._config.options.adopt_max_age_s * 1000)
        for alert in open_alerts:
            self._open[alert.id] = alert
            recorded = chains.get(alert.id, [])
            if recorded:
                number, name, started = recorded[-1]
                self._last[alert.id] = (number, name)
                steps = fired.get((alert.id, number), {})
                if "muted" in steps.values():
                    self._skipped.add(alert.id)
                policy = self._config.policy(name)
                if policy is None or alert.acknowledged:
                    continue  # its policy was removed from the config: nothing to resume
                chain = Chain(alert, policy, number, started, set(steps), persisted=True)
            else:
                policy = self._config.policy_for(alert)
                if policy is None:
                    continue
                if alert.acknowledged or now - alert.raised_at > adopt_ms:
                    # Open before notifications were set up: escalating every old alert at
                    # once would bury today's in yesterday's. Remember it as handled.
                    self._last[alert.id] = (0, policy.name)
                    continue
                chain = Chain(alert, policy, 1, now)
                self._last[alert.id] = (1, policy.name)
            if policy.stop_on_clear and alert.state is AlertState.CLEARED:
                continue
            if chain.next_due() is not None:
                self._chains[alert.id] = chain
        self._wake.set()

    def start_background(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ewg-escalation")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.tick(self._clock())
            except Exception:  # a failed tick is retried on the next wake-up
                log.exception("escalation tick failed")
            now = self._clock()
            await sleep_until(self._wake, self.next_due(), now, self._config.options.max_sleep_s)

    # -- the work -----------------------------------------------------------------------

    def next_due(self) -> int | None:
        """When the next step or reminder of any chain is due (ms), or None."""
        dues = [d for c in self._chains.values() if (d := c.next_due()) is not None]
        if any(not c.persisted for c in self._chains.values()):
            dues.append(self._clock())
        return min(dues, default=None)

    def chains(self) -> list[Chain]:
        """The running chains (a snapshot, for the API and tests)."""
        return list(self._chains.values())

    async def tick(self, now: int | None = None) -> None:
        """Fire every step and reminder due at ``now``; record new chains first."""
        async with self._lock:
            now = self._clock() if now is None else now
            for alert_id, chain in list(self._chains.items()):
                if self._chains.get(alert_id) is not chain:
                    continue  # stopped or replaced while we were writing
                try:
                    await self._advance(chain, now)
                except StoreError:
                    log.exception("escalation of alert %d could not be recorded", alert_id)
                if chain.next_due() is None and self._chains.get(alert_id) is chain:
                    del self._chains[alert_id]  # nothing left to do for this chain

    async def escalate_now(self, alert_id: int, actor: str) -> Escalated:
        """Send the next step of the alert's chain now, because ``actor`` asked for it.

        A duty officer looking at a fire on the board must not have to wait for the
        grid officer's minute to pass before the fire station is on its way. The step
        is recorded as fired like any other (so it is not sent again at its time), its
        messages say who escalated, and later steps keep their times from the chain's
        start. With every step sent, the next reminder goes out instead.

        Refused (ConflictError, with the reason) for an alert that is closed,
        acknowledged by staff (acknowledging stopped its escalation), muted by a silence
        or an explaining alert (nobody is paged for it), or has nothing left to send.
        """
        async with self._lock:
            alert = self._open.get(alert_id)
            if alert is None:
                raise ConflictError(f"alert {alert_id} is closed")
            if alert.acknowledged:
                raise ConflictError(
                    f"alert {alert_id} is acknowledged by {alert.acknowledged_by or '?'}:"
                    " its escalation has stopped"
                )
            muted = muted_by(alert)
            if muted:
                raise ConflictError(f"alert {alert_id} is {muted}: nobody is paged for it")
            chain = self._chains.get(alert_id)
            if chain is None:
                if self._config.policy_for(alert) is None:
                    raise ConflictError(f"no escalation policy applies to alert {alert_id}")
                raise ConflictError(f"every step of alert {alert_id}'s escalation has been sent")
            now = self._clock()
            await self._persist(chain)
            policy = chain.policy
            after_s = max(0, now - chain.started_ms) / 1000
            index = next(
                (i for i in range(len(policy.steps)) if step_key(i) not in chain.fired), None
            )
            if index is not None:
                key, targets = step_key(index), policy.steps[index].notify
                reason = Reason("step", index + 1, after_s, by=actor)
            else:
                number = chain.repeats_fired() + 1
                if policy.repeat is None or chain.repeat_due(number) is None:
                    raise ConflictError(
                        f"every step of alert {alert_id}'s escalation has been sent"
                    )
                key = repeat_key(number)
                targets = policy.repeat.notify or policy.targets_until(len(policy.steps))
                reason = Reason("repeat", number, after_s, by=actor)
            made = await self._fire(chain, key, reason, targets, now)
            if made is None:
                raise ConflictError(f"{key} of alert {alert_id} has just been sent")
            log.info("alert %d: %s sent at once by %s", alert_id, key, actor)
            if chain.next_due() is None and self._chains.get(alert_id) is chain:
                del self._chains[alert_id]
        self._wake.set()  # the next due time moved
        return Escalated(alert_id, policy.name, key, made)

    async def _persist(self, chain: Chain) -> None:
        if not chain.persisted:
            chain.started_ms = await self._store.start_chain(
                chain.alert.id, chain.number, chain.policy.name, chain.started_ms
            )
            chain.persisted = True

    async def _advance(self, chain: Chain, now: int) -> None:
        alert_id = chain.alert.id
        await self._persist(chain)
        policy = chain.policy
        for index, step in enumerate(policy.steps):
            key = step_key(index)
            if key in chain.fired:
                continue
            if chain.step_due(index) > now or self._chains.get(alert_id) is not chain:
                return
            await self._fire(chain, key, Reason("step", index + 1, step.after_s), step.notify, now)
        repeat = policy.repeat
        if repeat is None or self._chains.get(alert_id) is not chain:
            return
        # Only the latest reminder due is sent: after an outage, one reminder, not a burst.
        number = chain.repeats_fired()
        while (due := chain.repeat_due(number + 1)) is not None and due <= now:
            number += 1
        if number > chain.repeats_fired():
            after_s = ((chain.repeat_due(number) or now) - chain.started_ms) / 1000
            targets = repeat.notify or policy.targets_until(len(policy.steps))
            await self._fire(chain, repeat_key(number), Reason("repeat", number, after_s),
                             targets, now)  # fmt: skip

    async def _fire(
        self, chain: Chain, key: str, reason: Reason, targets: list[Target], now: int
    ) -> list[Notification] | None:
        alert = chain.alert
        muted = muted_by(alert)
        facts = self._describe(alert)
        planned: list[Planned] = []
        for target in targets:
            recipient = self._config.recipients[target.to]
            contact = recipient.resolve(alert.site_id, facts.village)
            message = render(
                alert, facts, target.to, recipient, contact, reason,
                self.public_url, self._timezone,
            )  # fmt: skip
            for name in target.via:
                planned.append(self._plan(target.to, name, message, muted, alert.site_id))
        made = await self._store.fire_step(
            alert.id, chain.policy.name, key, now, planned,
            chain=chain.number, outcome="muted" if muted else "fired",
        )  # fmt: skip
        chain.fired.add(key)
        if muted:
            self._skipped.add(alert.id)
        if made is None:
            return None  # fired before (a restart raced us): never send a step twice
        log.info(
            "alert %d %s #%d %s: %s", alert.id, chain.policy.name, chain.number, key,
            ", ".join(f"{n.recipient}/{n.channel}={n.status}" for n in made) or "no targets",
        )  # fmt: skip
        self._queue.push(made)
        return made

    def _plan(
        self, recipient: str, channel_name: str, message: Message, muted: str | None, site: str
    ) -> Planned:
        """A pending notification, or a skipped one saying why it cannot be sent."""
        if muted:
            return Planned(recipient, channel_name, message, Status.SKIPPED, f"muted: {muted}")
        channel = self._channels.get(channel_name)
        who = f"{message.recipient_en} ({site or 'no site'})"
        if channel is not None and channel.needs == "phone" and not message.phones:
            return Planned(recipient, channel_name, message, Status.SKIPPED,
                           f"no phone number for {who}")  # fmt: skip
        if channel is not None and channel.needs == "email" and not message.emails:
            return Planned(recipient, channel_name, message, Status.SKIPPED,
                           f"no e-mail address for {who}")  # fmt: skip
        return Planned(recipient, channel_name, message)
