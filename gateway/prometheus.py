"""``/metrics`` for Prometheus: the gateway's counters, read at scrape time.

A custom collector reads :class:`~gateway.metrics.Counters`, the stage timings and
the alert index when Prometheus asks, so the hot path pays nothing for metrics.
Each gateway gets its own registry (tests run several in one process).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.model import now_ms
from gateway.service import Gateway


class GatewayCollector(Collector):
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[Metric]:
        g = self.gateway
        c = g.counters
        for name, text, value in (
            ("ewg_messages", "MQTT messages received", c.messages_in),
            ("ewg_readings_accepted", "readings that passed validation", c.readings_accepted),
            ("ewg_readings_stored", "readings written to the store", c.readings_stored),
            ("ewg_readings_duplicate", "redelivered readings ignored", c.readings_duplicate),
            ("ewg_events_accepted", "device events accepted", c.events_accepted),
            ("ewg_signals", "detector signals sent to the alert engine", c.signals),
            ("ewg_store_errors", "failed store writes", c.store_errors),
            ("ewg_store_flushes", "batches committed", c.flushes),
            ("ewg_broker_connects", "successful MQTT connections", g.source.connects),
            ("ewg_store_writes", "successful store writes", c.store_writes),
            (
                "ewg_store_write_seconds",
                "seconds spent in successful store writes",
                c.store_write_seconds,
            ),
            ("ewg_alerts_raised", "alerts raised", c.alerts_raised),
            (
                "ewg_spool_replayed_readings",
                "readings replayed from the spool",
                g.persist.spool_counters.replayed_readings,
            ),
            (
                "ewg_spool_full_events",
                "batches held back because the spool was full",
                g.persist.spool_counters.full_events,
            ),
        ):
            yield CounterMetricFamily(name, text, value=value)
        letters = CounterMetricFamily(
            "ewg_dead_letters", "rejected messages or values by reason", labels=["reason"]
        )
        for reason, n in sorted(c.dead_letters.items()):
            letters.add_metric([str(reason)], n)
        yield letters
        stages = CounterMetricFamily(
            "ewg_stage_seconds", "time spent in each pipeline stage", labels=["stage"]
        )
        for stage, seconds in g.timings.seconds.items():
            stages.add_metric([stage], seconds)
        yield stages
        yield CounterMetricFamily(
            "ewg_pipeline_messages", "messages through the pipeline", value=g.timings.messages
        )
        yield GaugeMetricFamily(
            "ewg_broker_connected", "1 while connected to the broker", value=int(g.source.connected)
        )
        yield GaugeMetricFamily(
            "ewg_store_ok", "1 while the last store write succeeded", value=int(g.persist.store_ok)
        )
        yield GaugeMetricFamily(
            "ewg_store_pending",
            "readings and dead letters not yet written",
            value=g.persist.pending,
        )
        spool = g.persist.spool
        yield GaugeMetricFamily(
            "ewg_spool_backlog_readings",
            "readings waiting in the spool",
            value=spool.readings if spool else 0,
        )
        yield GaugeMetricFamily(
            "ewg_spool_backlog_bytes", "bytes in the spool", value=spool.bytes if spool else 0
        )
        oldest = spool.oldest_ms if spool else None
        yield GaugeMetricFamily(
            "ewg_spool_oldest_age_seconds",
            "age of the oldest spooled batch",
            value=(now_ms() - oldest) / 1000 if oldest else 0,
        )
        failures = CounterMetricFamily(
            "ewg_notification_failed_attempts", "failed notification attempts", labels=["channel"]
        )
        for channel, health in sorted(g.notify.queue.health().items()):
            failures.add_metric([channel], health.failed_attempts)
        yield failures
        open_alerts = GaugeMetricFamily(
            "ewg_alerts_open", "open alerts", labels=["severity", "alert_class"]
        )
        by_kind = Counter((a.severity.value, a.alert_class.value) for a in g.alerts.open_alerts())
        for (severity, alert_class), n in sorted(by_kind.items()):
            open_alerts.add_metric([severity, alert_class], n)
        yield open_alerts
        yield GaugeMetricFamily(
            "ewg_devices", "registered devices", value=len(g.registry.devices())
        )


def metrics_text(gateway: Gateway) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(gateway))
    return generate_latest(registry)
