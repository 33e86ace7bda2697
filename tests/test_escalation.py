"""Escalation chains with a fake clock: a real alert engine, SQLite and a local HTTP receiver.

Time only moves when a test says so: ``town.at(ms)`` runs the escalator's tick and the
delivery queue for that moment and returns what the receiver got since the last call,
so each assertion reads like the night shift's phone log.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from alerts.alerting_config import (
    DEFAULT_PATH,
    AlertingConfig,
    AlertingConfigError,
    load_alerting_config,
    parse_alerting_config,
)
from alerts.bus import AlertBus
from alerts.engine import AlertEngine
from alerts.model import Alert, AlertChange, AlertClass, Disposition, Severity, Signal
from alerts.notify.service import NotifyService
from alerts.notify.store import Status
from alerts.notify.templates import describe_alert
from alerts.store import AlertStore
from gateway.config import load_settings
from gateway.profiles import load_profiles
from gateway.registry import Registry
from gateway.registry_model import Device, Site
from gateway.service import MAIN_SCHEMA, Gateway
from gateway.sqlite import SqliteDatabase
from tests.clock import FakeClock
from tests.conftest import TOKEN
from tests.receivers import HttpReceiver

T0 = 1_764_554_400_000
S = 1000  # one second in ms
MIN = 60 * S


def alerting(receiver: HttpReceiver) -> dict[str, Any]:
    """The example chain, with every channel pointing at the local receiver."""
    hook = [{"to": "site_owner", "via": ["hook"]}]
    return {
        "options": {"retry": {"max_attempts": 3, "initial_backoff_s": 1, "multiplier": 2}},
        "channels": {
            "hook": {"type": "webhook", "url": receiver.url("/hook")},
            "sms": {"type": "sms", "url": receiver.url("/sms")},
        },
        "recipients": {
            "site_owner": {
                "title_zh": "场所负责人",
                "title_en": "Site owner",
                "by_site": {"t1": {"name": "王老板", "phones": ["13800000017"]}},
            },
            "grid_officer": {
                "title_zh": "社区网格员",
                "title_en": "Community grid officer",
                "by_village": {"陂头村": {"name": "李网格员", "phones": ["13900000001"]}},
            },
            "duty_leader": {
                "title_zh": "镇值班领导",
                "title_en": "Town duty leader",
                "contact": {"name": "值班领导", "phones": ["13700000003"]},
            },
            "fire_station": {
                "title_zh": "镇专职消防队",
                "title_en": "Town fire station",
                "contact": {"name": "消防队值班室"},
            },
        },
        "policies": [
            {
                "name": "red-fire",
                "match": {"severity": ["red"], "alert_class": ["hazard"], "hazard": ["fire"]},
                "steps": [
                    {"after_s": 0, "notify": hook},
                    {"after_s": 60, "notify": [{"to": "grid_officer", "via": ["hook"]}]},
                    {"after_s": 180, "notify": [{"to": "duty_leader", "via": ["hook", "sms"]}]},
                    {"after_s": 300, "notify": [{"to": "fire_station", "via": ["hook", "sms"]}]},
                ],
                "repeat": {"every_s": 300},
            },
            {"name": "orange", "match": {"severity": ["orange"]},
             "steps": [{"after_s": 0, "notify": hook}]},
            {
                "name": "fault",
                "match": {"alert_class": ["fault"]},
                "stop_on_clear": True,
                "steps": [
                    {"after_s": 0, "notify": hook},
                    {"after_s": 60, "notify": [{"to": "grid_officer", "via": ["hook"]}]},
                ],
            },
        ],
    }  # fmt: skip


@dataclass
class Town:
    engine: AlertEngine
    notify: NotifyService
    clock: FakeClock
    receiver: HttpReceiver
    seen: int = 0

    async def at(self, ms: int) -> list[tuple[str, str]]:
        """Move time to ``ms``, run what is due; (recipient, why) of each new webhook POST."""
        self.clock.now = ms
        await self.notify.escalator.tick(ms)
        await self.notify.queue.run_due(ms)
        bodies = [r.json() for r in self.receiver.at("/hook")]
        new, self.seen = bodies[self.seen :], len(bodies)
        return [(b["recipient"]["role"], _why(b["reason"])) for b in new]

    async def signal(
        self,
        *,
        severity: Severity = Severity.RED,
        active: bool = True,
        device: str = "t1-smoke",
        rule: str = "smoke_alarm",
        alert_class: AlertClass = AlertClass.HAZARD,
        hazard: str = "fire",
    ) -> Alert:
        sig = Signal(device, rule, active, self.clock.now, 1.0, severity, alert_class, hazard)
        await self.engine.handle([sig])
        [alert] = [a for a in self.engine.open_alerts() if a.device_id == device]
        return alert


def _why(reason: dict[str, Any]) -> str:
    return f"{reason['kind']} {reason['number']}"


@contextlib.asynccontextmanager
async def open_town(
    path: Path, receiver: HttpReceiver, config: AlertingConfig, clock: FakeClock
) -> AsyncIterator[Town]:
    async with SqliteDatabase(path, MAIN_SCHEMA) as db:
        registry = Registry(db, load_profiles())
        await registry.refresh()
        if registry.find_site("t1") is None:
            await registry.add_site(Site("t1", "陂头村测试出租屋", "陂头村", "rental_housing",
                                         "陂头村建设路1号"), "test")  # fmt: skip
            await registry.add_device(Device("t1-smoke", "smoke_alarm_nbiot", "t1", "楼道烟感"),
                                      "test")  # fmt: skip
            await registry.add_device(Device("t1-efm", "electrical_fire_monitor", "t1"), "test")
        engine = AlertEngine(AlertStore(db), AlertBus(), registry.site_of, clock=clock)
        await engine.start()
        notify = NotifyService(
            config, db, lambda a: describe_alert(a, registry),
            public_url="http://127.0.0.1:8000", timezone="Asia/Shanghai", clock=clock,
        )  # fmt: skip
        await notify.start(engine, background=False)
        try:
            yield Town(engine, notify, clock, receiver)
        finally:
            await notify.stop()


@pytest.fixture
async def town(tmp_path: Path, receiver: HttpReceiver) -> AsyncIterator[Town]:
    config = parse_alerting_config(alerting(receiver), "test")
    async with open_town(tmp_path / "ewg.db", receiver, config, FakeClock(T0)) as t:
        yield t


def muted(alert: Alert, silence_id: int) -> Alert:
    """The alert as the engine publishes it under a silence (``silenced_by`` set).

    Fed to the escalator directly, so these tests do not depend on how silences are made.
    """
    if "silenced_by" in {f.name for f in dataclasses.fields(Alert)}:
        return dataclasses.replace(alert, silenced_by=silence_id)
    values = {f.name: getattr(alert, f.name) for f in dataclasses.fields(Alert)}
    return _Silenced(**values, silenced_by=silence_id)


@dataclass(slots=True)
class _Silenced(Alert):
    silenced_by: int | None = None


# -- the chain -------------------------------------------------------------------------------


async def test_fire_escalates_step_by_step_and_stops_at_acknowledgement(town: Town) -> None:
    fire = await town.signal()
    assert await town.at(T0) == [("site_owner", "step 1")]
    assert await town.at(T0 + 59 * S) == []
    assert await town.at(T0 + 1 * MIN) == [("grid_officer", "step 2")]
    assert await town.at(T0 + 3 * MIN) == [("duty_leader", "step 3")]
    town.clock.now = T0 + 4 * MIN
    await town.engine.acknowledge(fire.id, "duty-officer")
    assert await town.at(T0 + 5 * MIN) == []  # the fire station is not called
    assert await town.at(T0 + 60 * MIN) == []  # nor reminded
    sms = [r.json() for r in town.receiver.at("/sms")]
    assert [b["phones"] for b in sms] == [["13700000003"]]  # the duty leader, by SMS too
    log = await town.notify.store.for_alert(fire.id)
    assert [(n.step, n.recipient, n.channel, n.status) for n in log] == [
        ("step:0", "site_owner", "hook", Status.DELIVERED),
        ("step:1", "grid_officer", "hook", Status.DELIVERED),
        ("step:2", "duty_leader", "hook", Status.DELIVERED),
        ("step:2", "duty_leader", "sms", Status.DELIVERED),
    ]
    assert town.notify.escalator.chains() == []


async def test_contacts_are_resolved_by_site_and_village(town: Town) -> None:
    await town.signal()
    await town.at(T0)
    await town.at(T0 + MIN)
    owner, officer = [r.json()["recipient"] for r in town.receiver.at("/hook")]
    assert (owner["name"], owner["phones"]) == ("王老板", ["13800000017"])
    assert (officer["name"], officer["phones"]) == ("李网格员", ["13900000001"])


async def test_a_person_without_a_phone_is_skipped_on_sms_with_the_reason(town: Town) -> None:
    fire = await town.signal()
    # A gateway that was busy fires every overdue step at once (delivered concurrently).
    assert sorted(await town.at(T0 + 5 * MIN)) == [
        ("duty_leader", "step 3"),
        ("fire_station", "step 4"),
        ("grid_officer", "step 2"),
        ("site_owner", "step 1"),
    ]
    log = await town.notify.store.for_alert(fire.id)
    assert [(n.step, n.recipient, n.channel, n.status) for n in log] == [
        ("step:0", "site_owner", "hook", Status.DELIVERED),
        ("step:1", "grid_officer", "hook", Status.DELIVERED),
        ("step:2", "duty_leader", "hook", Status.DELIVERED),
        ("step:2", "duty_leader", "sms", Status.DELIVERED),
        ("step:3", "fire_station", "hook", Status.DELIVERED),
        ("step:3", "fire_station", "sms", Status.SKIPPED),
    ]
    assert log[-1].reason == "no phone number for Town fire station (t1)"


async def test_unacknowledged_red_alert_is_repeated_until_acknowledged(town: Town) -> None:
    fire = await town.signal()
    await town.at(T0 + 5 * MIN)
    everybody = [
        ("site_owner", "repeat 1"),
        ("grid_officer", "repeat 1"),
        ("duty_leader", "repeat 1"),
        ("fire_station", "repeat 1"),
    ]
    assert await town.at(T0 + 9 * MIN) == []
    assert sorted(await town.at(T0 + 10 * MIN)) == sorted(everybody)  # sent concurrently
    assert await town.at(T0 + 14 * MIN) == []
    assert [w for _, w in await town.at(T0 + 15 * MIN)] == ["repeat 2"] * 4
    # After a long gap (the gateway was stopped), one reminder, not one per missed interval.
    assert [w for _, w in await town.at(T0 + 31 * MIN)] == ["repeat 5"] * 4
    town.clock.now = T0 + 32 * MIN
    await town.engine.acknowledge(fire.id, "duty-officer")
    assert await town.at(T0 + 60 * MIN) == []


async def test_orange_alert_is_not_repeated(town: Town) -> None:
    await town.signal(severity=Severity.ORANGE, device="t1-efm", rule="leakage", hazard="leakage")
    assert await town.at(T0) == [("site_owner", "step 1")]
    assert await town.at(T0 + 120 * MIN) == []


async def test_severity_upgrade_starts_the_red_chain(town: Town) -> None:
    alert = await town.signal(severity=Severity.ORANGE)
    assert await town.at(T0) == [("site_owner", "step 1")]
    town.clock.now = T0 + 10 * MIN
    await town.signal(severity=Severity.RED)
    assert await town.at(T0 + 10 * MIN) == [("site_owner", "step 1")]
    assert await town.at(T0 + 11 * MIN) == [("grid_officer", "step 2")]
    policies = [n.policy for n in await town.notify.store.for_alert(alert.id)]
    assert policies == ["orange", "red-fire", "red-fire"]


async def test_repeats_of_the_same_alert_do_not_restart_its_chain(town: Town) -> None:
    await town.signal()
    await town.at(T0)
    town.clock.now = T0 + 30 * S
    await town.signal()  # the detector fires again: count + 1, same alert
    assert await town.at(T0 + 30 * S) == []
    assert await town.at(T0 + MIN) == [("grid_officer", "step 2")]


async def test_close_stops_the_chain_and_cancels_a_pending_retry(town: Town) -> None:
    town.receiver.answer("/hook", 500, {"error": "down"})
    fire = await town.signal()
    assert await town.at(T0) == [("site_owner", "step 1")]  # it arrived, answered 500
    town.clock.now = T0 + 500
    await town.engine.close(fire.id, "duty-officer", Disposition.FALSE_ALARM)
    town.receiver.answer("/hook", 200)
    assert await town.at(T0 + 10 * MIN) == []
    [n] = await town.notify.store.for_alert(fire.id)
    assert (n.status, n.reason, n.attempts) == (
        Status.CANCELLED,
        "alert closed by duty-officer",
        1,
    )


async def test_a_cleared_fire_keeps_escalating_but_a_cleared_fault_stops(town: Town) -> None:
    await town.signal()
    await town.signal(device="t1-efm", rule="offline", alert_class=AlertClass.FAULT,
                      severity=Severity.BLUE, hazard="offline")  # fmt: skip
    assert sorted(await town.at(T0)) == [("site_owner", "step 1")] * 2
    await town.signal(active=False)
    await town.signal(
        active=False, device="t1-efm", rule="offline", alert_class=AlertClass.FAULT,
        severity=Severity.BLUE, hazard="offline",
    )  # fmt: skip
    # A cleared smoke alarm may be a fire nobody has looked at; the fault is over.
    assert await town.at(T0 + MIN) == [("grid_officer", "step 2")]
    last = town.receiver.at("/hook")[-1].json()
    assert last["alert"]["device_id"] == "t1-smoke"


# -- muted alerts ----------------------------------------------------------------------------


async def test_a_silenced_alert_is_not_notified_but_its_steps_are_logged_as_skipped(
    town: Town,
) -> None:
    fire = await town.signal()
    town.notify.escalator.on_change(AlertChange("updated", muted(fire, 7)))
    assert await town.at(T0) == []
    assert await town.at(T0 + MIN) == []
    log = await town.notify.store.for_alert(fire.id)
    assert [(n.step, n.status, n.reason) for n in log] == [
        ("step:0", Status.SKIPPED, "muted: silenced by silence 7"),
        ("step:1", Status.SKIPPED, "muted: silenced by silence 7"),
    ]
    assert town.receiver.at("/hook") == []
    # The silence ends with the smoke alarm still in alarm: nobody has been told, so the
    # chain starts again from the site owner.
    town.clock.now = T0 + 2 * MIN
    town.notify.escalator.on_change(AlertChange("updated", fire))
    assert await town.at(T0 + 2 * MIN) == [("site_owner", "step 1")]
    assert await town.at(T0 + 3 * MIN) == [("grid_officer", "step 2")]
    chains = [(n.chain, n.step, n.status) for n in await town.notify.store.for_alert(fire.id)]
    assert chains[2:] == [(2, "step:0", Status.DELIVERED), (2, "step:1", Status.DELIVERED)]


async def test_a_short_mute_between_steps_does_not_restart_the_chain(town: Town) -> None:
    fire = await town.signal()
    assert await town.at(T0) == [("site_owner", "step 1")]
    town.notify.escalator.on_change(AlertChange("updated", muted(fire, 3)))
    town.notify.escalator.on_change(AlertChange("updated", fire))
    assert await town.at(T0 + 30 * S) == []
    assert await town.at(T0 + MIN) == [("grid_officer", "step 2")]


async def test_a_retry_for_an_alert_silenced_meanwhile_is_skipped(town: Town) -> None:
    town.receiver.answer("/hook", 500, {"error": "down"})
    fire = await town.signal()
    await town.at(T0)
    town.notify.escalator.on_change(AlertChange("updated", muted(fire, 8)))
    town.receiver.answer("/hook", 200)
    assert await town.at(T0 + 10 * S) == []
    [n] = await town.notify.store.for_alert(fire.id)
    assert (n.status, n.reason) == (Status.SKIPPED, "muted: silenced by silence 8")


# -- restarts --------------------------------------------------------------------------------


async def test_a_restarted_gateway_does_not_resend_steps_already_sent(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    config = parse_alerting_config(alerting(receiver), "test")
    path = tmp_path / "ewg.db"
    async with open_town(path, receiver, config, FakeClock(T0)) as town:
        fire = await town.signal()
        assert sorted(await town.at(T0 + MIN)) == [
            ("grid_officer", "step 2"),
            ("site_owner", "step 1"),
        ]
    # Back two minutes later: the chain keeps its original start, nothing is sent twice.
    async with open_town(path, receiver, config, FakeClock(T0 + 3 * MIN)) as town:
        town.seen = 2
        assert await town.at(T0 + 3 * MIN) == [("duty_leader", "step 3")]
        assert await town.at(T0 + 4 * MIN) == []
        town.clock.now = T0 + 4 * MIN
        await town.engine.acknowledge(fire.id, "duty-officer")
    async with open_town(path, receiver, config, FakeClock(T0 + 20 * MIN)) as town:
        town.seen = 3
        assert await town.at(T0 + 20 * MIN) == []  # acknowledged before the restart
    assert len(receiver.at("/hook")) == 3


async def test_a_step_written_but_not_delivered_before_a_stop_is_delivered_once(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    config = parse_alerting_config(alerting(receiver), "test")
    path = tmp_path / "ewg.db"
    async with open_town(path, receiver, config, FakeClock(T0)) as town:
        fire = await town.signal()
        await town.notify.escalator.tick(T0)  # fired and stored; the queue never ran
    async with open_town(path, receiver, config, FakeClock(T0 + 5 * S)) as town:
        assert await town.at(T0 + 5 * S) == [("site_owner", "step 1")]
        [n] = await town.notify.store.for_alert(fire.id)
        assert n.status is Status.DELIVERED


async def test_old_open_alerts_are_not_escalated_when_notifications_are_switched_on(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    quiet = parse_alerting_config({"policies": []}, "none")
    config = parse_alerting_config(alerting(receiver), "test")
    path = tmp_path / "ewg.db"
    async with open_town(path, receiver, quiet, FakeClock(T0)) as town:
        await town.signal()
    async with open_town(path, receiver, config, FakeClock(T0 + 2 * 3600 * S)) as town:
        assert await town.at(T0 + 3 * 3600 * S) == []
        town.clock.now = T0 + 3 * 3600 * S + 1
        await town.signal()  # still burning: an update, not a new alert
        assert await town.at(T0 + 4 * 3600 * S) == []


# -- the configuration -----------------------------------------------------------------------


def test_the_shipped_default_loads_with_the_1_3_5_chain() -> None:
    config = load_alerting_config(DEFAULT_PATH)
    fire = config.policy("red-fire")
    assert fire is not None
    assert [s.after_s for s in fire.steps] == [0, 60, 180, 300]
    assert [s.notify[0].to for s in fire.steps] == [
        "site_owner", "grid_officer", "duty_leader", "fire_station",
    ]  # fmt: skip
    assert fire.repeat is not None and fire.repeat.every_s == 300
    assert {c.type for c in config.channels.values()} == {"log"}  # sends nothing anywhere


def test_a_policy_naming_an_unknown_recipient_or_channel_is_refused(
    receiver: HttpReceiver,
) -> None:
    data = alerting(receiver)
    data["policies"][0]["steps"][1]["notify"] = [{"to": "mayor", "via": ["fax"]}]
    with pytest.raises(AlertingConfigError) as err:
        parse_alerting_config(data, "town.yaml")
    assert "town.yaml" in str(err.value)
    assert "unknown recipient 'mayor'" in str(err.value)
    assert "unknown channel 'fax'" in str(err.value)


def test_steps_out_of_order_are_refused(receiver: HttpReceiver) -> None:
    data = alerting(receiver)
    data["policies"][0]["steps"].reverse()
    with pytest.raises(AlertingConfigError, match="steps must be in order of after_s"):
        parse_alerting_config(data, "town.yaml")


def test_secrets_come_from_the_environment(receiver: HttpReceiver, tmp_path: Path) -> None:
    path = tmp_path / "alerting.yaml"
    path.write_text(
        "channels:\n  ding: {type: dingtalk, url: 'http://127.0.0.1:9/r?access_token=${EWG_T}'}\n",
        encoding="utf-8",
    )
    config = load_alerting_config(path, {"EWG_T": "tok-1"})
    ding = config.channels["ding"]
    assert ding.type == "dingtalk" and ding.url.get_secret_value().endswith("=tok-1")
    with pytest.raises(AlertingConfigError, match="EWG_T is not set"):
        load_alerting_config(path, {})


async def test_the_gateway_refuses_to_start_with_a_broken_alerting_file(tmp_path: Path) -> None:
    bad = tmp_path / "alerting.yaml"
    bad.write_text("policies:\n  - {name: red, steps: []}\n", encoding="utf-8")
    settings = load_settings(data_dir=tmp_path / "data", alerting_config=bad, api_token=TOKEN)
    with pytest.raises(AlertingConfigError, match=r"alerting.yaml: policies.0.steps"):
        async with Gateway(settings):
            pass
