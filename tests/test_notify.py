"""Channels, templates and the delivery queue against real local HTTP and SMTP servers.

What is asserted is what a person (or the vendor's robot API) would receive: the words,
the fields, the link, the JSON shape, the signature; and that a failing channel is
retried with backoff and logged while another one still delivers.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter

from alerts.alerting_config import (
    AlertingOptions,
    ChannelConfig,
    Contact,
    Recipient,
    RetryOptions,
)
from alerts.model import Alert, AlertClass, AlertState, Severity
from alerts.notify.channels import (
    AppriseChannel,
    Channel,
    DeliveryError,
    build_channel,
    http_client,
)
from alerts.notify.queue import DeliveryQueue
from alerts.notify.store import SCHEMA, Notification, NotifyStore, Planned, Status
from alerts.notify.templates import AlertFacts, Message, Reason, render
from gateway.sqlite import SqliteDatabase
from tests.clock import FakeClock
from tests.receivers import HttpReceiver, SmtpServer, plain_text
from tests.servers import free_port

PUBLIC_URL = "http://127.0.0.1:8000"
T0 = 1_764_554_400_000  # 2025-12-01 02:00 UTC = 10:00 in Shanghai

FIRE = Alert(
    id=17,
    device_id="t1-smoke",
    site_id="t1",
    rule="smoke_alarm",
    severity=Severity.RED,
    alert_class=AlertClass.HAZARD,
    hazard="fire",
    state=AlertState.RAISED,
    raised_at=T0,
    updated_at=T0,
    value=412.0,
)
FACTS = AlertFacts(
    site_name="陂头村测试出租屋",
    village="陂头村",
    address="陂头村建设路1号",
    device_name="楼道烟感",
    title_zh="烟雾火警",
    title_en="Smoke fire alarm",
    unit="°C",
)
OWNER = Recipient(title_zh="场所负责人", title_en="Site owner")
WANG = Contact(name="王老板", phones=["13800000017"], emails=["wang@example.org"])


def message(alert: Alert = FIRE, reason: Reason | None = None) -> Message:
    return render(
        alert, FACTS, "site_owner", OWNER, WANG, reason or Reason("step", 1, 0),
        PUBLIC_URL, "Asia/Shanghai",
    )  # fmt: skip


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(AlertingOptions()) as c:
        yield c


# -- templates -------------------------------------------------------------------------------


def test_message_says_what_where_how_bad_and_links_to_the_alert() -> None:
    m = message()
    zh, en = m.bodies["zh"], m.bodies["en"]
    assert m.titles["zh"] == "【红色预警】陂头村测试出租屋 烟雾火警"
    assert m.titles["en"] == "[RED alert] Smoke fire alarm at 陂头村测试出租屋"
    for line in (
        "场所：陂头村测试出租屋（陂头村）",
        "地址：陂头村建设路1号",
        "设备：楼道烟感（t1-smoke）",
        "数值：412 °C",
        "级别：红色（一级）· 隐患报警 · 火灾",
        "报警时间：2025-12-01 10:00:00",
        "通知：场所负责人 王老板，第 1 级通知（立即）",
        "查看与确认：http://127.0.0.1:8000/#alert=17",
    ):
        assert line in zh.splitlines()
    for line in (
        "Site: 陂头村测试出租屋 (陂头村)",
        "Device: 楼道烟感 (t1-smoke)",
        "Value: 412 °C",
        "Level: red (level 1), hazard, fire",
        "View and acknowledge: http://127.0.0.1:8000/#alert=17",
    ):
        assert line in en.splitlines()
    assert m.text(["zh", "en"]) == zh + "\n\n" + en


def test_reminder_and_later_steps_say_why_the_person_is_told() -> None:
    later = message(reason=Reason("step", 3, 180))
    assert "第 3 级通知：报警 3 分钟未确认" in later.bodies["zh"]
    assert "step 3: unacknowledged after 3 min" in later.bodies["en"]
    reminder = message(reason=Reason("repeat", 2, 900))
    assert "第 2 次提醒：报警 15 分钟仍未确认" in reminder.bodies["zh"]


def test_message_survives_the_round_trip_through_the_delivery_log() -> None:
    m = message()
    assert Message.from_json(m.to_json()) == m


# -- channels --------------------------------------------------------------------------------


def spec(**fields: Any) -> ChannelConfig:
    """A channel's config as the YAML file would give it (validated the same way)."""
    return SPEC.validate_python(fields)


SPEC: TypeAdapter[ChannelConfig] = TypeAdapter(ChannelConfig)


def _channel(config: ChannelConfig, client: httpx.AsyncClient, name: str = "c") -> Channel:
    return build_channel(name, config, AlertingOptions(), client)


async def test_webhook_posts_the_alert_fields_and_both_texts(
    receiver: HttpReceiver, client: httpx.AsyncClient
) -> None:
    config = spec(type="webhook", url=receiver.url("/ewg"), headers={"Authorization": "Bearer t0k"})
    detail = await _channel(config, client).send(message())
    assert detail == "HTTP 200"
    [got] = receiver.at("/ewg")
    assert got.headers["Authorization"] == "Bearer t0k"
    body = got.json()
    alert = body["alert"]
    assert (alert["id"], alert["site_name"], alert["village"]) == (17, "陂头村测试出租屋", "陂头村")
    assert (alert["device_id"], alert["device_name"]) == ("t1-smoke", "楼道烟感")
    assert (alert["value"], alert["unit"]) == (412.0, "°C")
    assert (alert["severity"], alert["level"], alert["hazard"]) == ("red", 1, "fire")
    assert body["link"] == "http://127.0.0.1:8000/#alert=17"
    assert body["recipient"]["name"] == "王老板"
    assert body["recipient"]["phones"] == ["13800000017"]
    assert "场所：陂头村测试出租屋（陂头村）" in body["texts"]["zh"]
    assert "Site: 陂头村测试出租屋 (陂头村)" in body["texts"]["en"]
    assert body["title"] == (
        "【红色预警】陂头村测试出租屋 烟雾火警 / [RED alert] Smoke fire alarm at 陂头村测试出租屋"
    )


async def test_dingtalk_robot_gets_signed_markdown_mentioning_the_owner(
    receiver: HttpReceiver, client: httpx.AsyncClient
) -> None:
    secret = "SECtest0123456789"
    config = spec(
        type="dingtalk", url=receiver.url("/robot/send?access_token=tok123"), secret=secret
    )
    channel = _channel(config, client)
    assert await channel.send(message()) == "HTTP 200, errcode 0"
    [got] = receiver.at("/robot/send")
    assert got.query["access_token"] == "tok123"
    # 加签 as DingTalk documents it: base64(HMAC-SHA256(secret, "timestamp\nsecret")).
    expected = base64.b64encode(
        hmac.new(
            secret.encode(), f"{got.query['timestamp']}\n{secret}".encode(), hashlib.sha256
        ).digest()
    ).decode()
    assert got.query["sign"] == expected
    body = got.json()
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"].startswith("【红色预警】陂头村测试出租屋 烟雾火警")
    assert "场所：陂头村测试出租屋（陂头村）" in body["markdown"]["text"]
    assert "@13800000017" in body["markdown"]["text"]  # a mention must be in the text too
    assert body["at"] == {"atMobiles": ["13800000017"], "isAtAll": False}
    assert "预警" in body["markdown"]["text"]  # the keyword a robot's security setting can use


async def test_dingtalk_refusal_with_http_200_is_a_failure(
    receiver: HttpReceiver, client: httpx.AsyncClient
) -> None:
    receiver.answer("/robot/send", 200, {"errcode": 310000, "errmsg": "keywords not in content"})
    config = spec(type="dingtalk", url=receiver.url("/robot/send?access_token=t"))
    with pytest.raises(DeliveryError, match="errcode 310000, keywords not in content"):
        await _channel(config, client).send(message())


async def test_wecom_robot_gets_text_with_mobile_mentions(
    receiver: HttpReceiver, client: httpx.AsyncClient
) -> None:
    config = spec(type="wecom", url=receiver.url("/cgi-bin/webhook/send?key=k-1"))
    assert await _channel(config, client).send(message()) == "HTTP 200, errcode 0"
    [got] = receiver.at("/cgi-bin/webhook/send")
    assert got.query == {"key": "k-1"}
    body = got.json()
    assert body["msgtype"] == "text"
    assert body["text"]["mentioned_mobile_list"] == ["13800000017"]
    content = body["text"]["content"]
    assert content.startswith("【红色预警】烟雾火警\n场所：陂头村测试出租屋（陂头村）")
    assert "http://127.0.0.1:8000/#alert=17" in content
    assert len(content.encode()) <= 2048  # WeCom's limit for a text message


async def test_wecom_invalid_key_is_a_failure(
    receiver: HttpReceiver, client: httpx.AsyncClient
) -> None:
    receiver.answer("/cgi-bin/webhook/send", 200, {"errcode": 93000, "errmsg": "invalid webhook"})
    config = spec(type="wecom", url=receiver.url("/cgi-bin/webhook/send?key=bad"))
    with pytest.raises(DeliveryError, match="errcode 93000"):
        await _channel(config, client).send(message())


async def test_sms_relay_gets_the_phone_and_chinese_text_only(
    receiver: HttpReceiver, client: httpx.AsyncClient
) -> None:
    config = spec(type="sms", url=receiver.url("/sms"), token="relay-token")
    await _channel(config, client).send(message())
    [got] = receiver.at("/sms")
    assert got.headers["Authorization"] == "Bearer relay-token"
    body = got.json()
    assert body["phones"] == ["13800000017"]
    assert body["content"].startswith("【红色预警】烟雾火警")
    assert "Site:" not in body["content"]  # one language keeps an SMS short


async def test_email_reaches_the_smtp_server_with_subject_and_body(smtp: SmtpServer) -> None:
    config = spec(
        type="email",
        url=f"mailto://127.0.0.1:{smtp.port}?from=ewg@example.org&mode=insecure",
    )
    async with http_client(AlertingOptions()) as c:
        await _channel(config, c).send(message())
    [(envelope, mail)] = smtp.messages
    assert envelope.rcpt_tos == ["wang@example.org"]
    assert mail["Subject"] == (
        "【红色预警】陂头村测试出租屋 烟雾火警 / [RED alert] Smoke fire alarm at 陂头村测试出租屋"
    )
    text = plain_text(mail)
    assert "场所：陂头村测试出租屋（陂头村）" in text
    assert "Device: 楼道烟感 (t1-smoke)" in text
    assert "http://127.0.0.1:8000/#alert=17" in text


async def test_email_to_a_server_that_is_down_fails_with_apprise_reason() -> None:
    config = spec(
        type="email", url=f"mailto://127.0.0.1:{free_port()}?from=ewg@example.org&mode=insecure"
    )
    async with http_client(AlertingOptions()) as c:
        with pytest.raises(DeliveryError, match="apprise"):
            await _channel(config, c).send(message())


async def test_apprise_json_url_reaches_the_local_server_with_its_fixed_envelope(
    receiver: HttpReceiver,
) -> None:
    channel = AppriseChannel("ap", ["en"], f"json://127.0.0.1:{receiver.port}/apprise", 5.0)
    await channel.send(message())
    [got] = receiver.at("/apprise")
    body = got.json()
    # apprise's json:// carries title and text only: why EWG's webhook is its own JSON.
    assert body["title"] == "[RED alert] Smoke fire alarm at 陂头村测试出租屋"
    assert "Site: 陂头村测试出租屋 (陂头村)" in body["message"]
    assert "alert" not in body


def test_channels_show_no_secret() -> None:
    options = AlertingOptions()
    specs = {
        "ding": spec(
            type="dingtalk",
            url="https://oapi.dingtalk.com/robot/send?access_token=SECRET1",
            secret="SECRET2",
        ),
        "mail": spec(
            type="email", url="mailtos://ewg:SECRET3@smtp.example.org:465?from=a@example.org"
        ),
    }
    client = httpx.AsyncClient()
    shown = [build_channel(n, s, options, client).public() for n, s in specs.items()]
    assert shown[0]["endpoint"] == "https://oapi.dingtalk.com"
    assert shown[1]["endpoint"] == "mailtos://smtp.example.org:465"
    assert "SECRET" not in repr(shown) and "SECRET" not in repr(specs)


# -- the queue: retries, backoff, a dead channel ---------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[NotifyStore]:
    async with SqliteDatabase(tmp_path / "ewg.db", SCHEMA) as db:
        yield NotifyStore(db)


async def planned(
    store: NotifyStore, channels: list[str], step: str = "step:0"
) -> list[Notification]:
    made = await store.fire_step(
        FIRE.id, "red-fire", step, T0, [Planned("site_owner", c, message()) for c in channels]
    )
    assert made is not None
    return made


async def test_failing_channel_is_retried_with_backoff_while_others_deliver(
    store: NotifyStore, receiver: HttpReceiver, client: httpx.AsyncClient
) -> None:
    receiver.answer("/broken", 500, {"error": "internal"})
    hooks = {
        "good": receiver.url("/good"),
        "broken": receiver.url("/broken"),
        "down": f"http://127.0.0.1:{free_port()}/nobody-listens",
    }
    options = AlertingOptions(
        retry=RetryOptions(max_attempts=3, initial_backoff_s=1, multiplier=2, max_backoff_s=60)
    )
    channels = {
        n: build_channel(n, spec(type="webhook", url=u), options, client) for n, u in hooks.items()
    }
    clock = FakeClock(T0)
    queue = DeliveryQueue(store, channels, options, clock)
    queue.push(await planned(store, ["down", "broken", "good"]))

    await queue.run_due(T0)
    assert len(receiver.at("/good")) == 1 and len(receiver.at("/broken")) == 1
    log = {n.channel: n for n in await store.for_alert(FIRE.id)}
    assert log["good"].status is Status.DELIVERED
    assert [a.detail for a in log["good"].attempt_log] == ["HTTP 200"]
    assert log["broken"].status is Status.PENDING
    assert log["broken"].attempt_log[0].detail.startswith("HTTP 500")
    assert log["broken"].next_attempt_ms == T0 + 1000  # first backoff
    assert "cannot reach" in log["down"].attempt_log[0].detail
    assert queue.next_due() == T0 + 1000

    clock.now = T0 + 999
    await queue.run_due()
    assert len(receiver.at("/broken")) == 1  # not before its backoff has passed

    clock.now = T0 + 1000
    await queue.run_due()
    log = {n.channel: n for n in await store.for_alert(FIRE.id)}
    assert log["broken"].next_attempt_ms == T0 + 1000 + 2000  # doubled
    receiver.answer("/broken", 200, {"ok": True})  # the server recovers

    clock.now = T0 + 3000
    await queue.run_due()
    log = {n.channel: n for n in await store.for_alert(FIRE.id)}
    assert log["broken"].status is Status.DELIVERED
    assert [a.ok for a in log["broken"].attempt_log] == [False, False, True]
    assert log["down"].status is Status.FAILED
    assert log["down"].reason.startswith("gave up after 3 attempt(s)")
    assert [a.number for a in log["down"].attempt_log] == [1, 2, 3]
    assert len(receiver.at("/good")) == 1  # delivered once, never repeated
    assert queue.next_due() is None
    health = queue.health()
    assert health["down"].consecutive_failures == 3 and health["good"].delivered == 1


async def test_a_hung_channel_does_not_hold_up_another(
    store: NotifyStore, receiver: HttpReceiver, client: httpx.AsyncClient
) -> None:
    release = threading.Event()
    receiver.answer("/hung", 200, {}, hold=release)
    options = AlertingOptions()
    channels = {
        n: build_channel(n, spec(type="webhook", url=receiver.url(f"/{n}")),
                         options, client)
        for n in ("hung", "good")
    }  # fmt: skip
    queue = DeliveryQueue(store, channels, options, FakeClock(T0))
    queue.push(await planned(store, ["hung", "good"]))
    running = asyncio.create_task(queue.run_due(T0))
    try:
        async with asyncio.timeout(10):
            while not receiver.at("/good") or not receiver.at("/hung"):
                await asyncio.sleep(0.01)
            while (await store.for_alert(FIRE.id))[1].status is not Status.DELIVERED:
                await asyncio.sleep(0.01)
        log = await store.for_alert(FIRE.id)
        assert [(n.channel, n.status) for n in log] == [
            ("hung", Status.PENDING),
            ("good", Status.DELIVERED),
        ]
    finally:
        release.set()
        await running
    assert (await store.for_alert(FIRE.id))[0].status is Status.DELIVERED


async def test_pending_notifications_are_sent_after_a_restart(
    store: NotifyStore, receiver: HttpReceiver, client: httpx.AsyncClient
) -> None:
    options = AlertingOptions()
    channels = {
        "hook": build_channel("hook", spec(type="webhook", url=receiver.url("/h")), options, client)
    }
    await planned(store, ["hook"])  # written, then the gateway stopped before sending
    queue = DeliveryQueue(store, channels, options, FakeClock(T0))
    assert await queue.start() == 1
    await queue.run_due(T0)
    assert len(receiver.at("/h")) == 1
    assert [n.status for n in await store.for_alert(FIRE.id)] == [Status.DELIVERED]
    again = DeliveryQueue(store, channels, options, FakeClock(T0))
    assert await again.start() == 0


async def test_queue_asks_before_each_attempt_and_records_why_it_did_not_send(
    store: NotifyStore, receiver: HttpReceiver, client: httpx.AsyncClient
) -> None:
    options = AlertingOptions()
    channels = {
        "hook": build_channel("hook", spec(type="webhook", url=receiver.url("/h")), options, client)
    }
    queue = DeliveryQueue(
        store, channels, options, FakeClock(T0),
        verdict=lambda _id: (Status.CANCELLED, "alert acknowledged by duty"),
    )  # fmt: skip
    queue.push(await planned(store, ["hook"]))
    await queue.run_due(T0)
    assert receiver.at("/h") == []
    [n] = await store.for_alert(FIRE.id)
    assert (n.status, n.reason, n.attempts) == (
        Status.CANCELLED,
        "alert acknowledged by duty",
        0,
    )
