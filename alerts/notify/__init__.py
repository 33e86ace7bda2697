"""Notifications: what people are sent about an alert, over which channel, and what came of it.

``templates`` renders the Chinese and English text, ``channels`` sends it (DingTalk and
WeCom robots, SMS relay, e-mail, JSON webhook, apprise, log), ``queue`` retries with
backoff without letting one dead channel hold up another, ``store`` keeps the delivery
log, and ``service`` puts them together with :mod:`alerts.escalation` for the gateway.
"""

from alerts.notify.channels import Channel, DeliveryError
from alerts.notify.queue import ChannelHealth, DeliveryQueue
from alerts.notify.store import SCHEMA, Attempt, Notification, NotifyStore, Status
from alerts.notify.templates import AlertFacts, Message, describe_alert, render

__all__ = [
    "SCHEMA",
    "AlertFacts",
    "Attempt",
    "Channel",
    "ChannelHealth",
    "DeliveryError",
    "DeliveryQueue",
    "Message",
    "Notification",
    "NotifyStore",
    "Status",
    "describe_alert",
    "render",
]
