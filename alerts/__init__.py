"""Alerts: the lifecycle of what duty staff see, acknowledge and close.

``model`` holds the data, ``store`` persists it, ``bus`` fans changes out to the
console and ``engine`` decides what a signal or an action does to an alert.
"""

from alerts.bus import AlertBus, Subscription
from alerts.engine import SYSTEM_ACTOR, AlertEngine
from alerts.index import AlertKey, OpenAlerts
from alerts.model import (
    Alert,
    AlertChange,
    AlertClass,
    AlertState,
    Disposition,
    Severity,
    Signal,
    Stage,
    Transition,
)
from alerts.store import ALERT_SCHEMA, AlertStore

__all__ = [
    "ALERT_SCHEMA",
    "SYSTEM_ACTOR",
    "Alert",
    "AlertBus",
    "AlertChange",
    "AlertClass",
    "AlertEngine",
    "AlertKey",
    "AlertState",
    "AlertStore",
    "Disposition",
    "OpenAlerts",
    "Severity",
    "Signal",
    "Stage",
    "Subscription",
    "Transition",
]
