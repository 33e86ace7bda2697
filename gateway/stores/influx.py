"""A time-series store over the InfluxDB v2 write API, read back over the Prometheus API.

Why: a town that already runs a time-series database (InfluxDB 2.x/3.x, or
VictoriaMetrics, which accepts the same writes) wants the readings there, next
to everything else it charts, instead of in the gateway's own SQLite file.
Writes go through the official ``influxdb-client`` (async API, line protocol,
millisecond precision) to ``<influx_url>/api/v2/write``; reads use the
Prometheus-compatible query API at ``<influx_query_url>`` (default: the same
URL), which is what VictoriaMetrics serves. Plain InfluxDB has no such API, so
on InfluxDB the gateway writes but its charts and ``/api/telemetry`` fail with
a :class:`~gateway.errors.StoreError` unless ``influx_query_url`` points at
something Prometheus-compatible.

Mapping (what an operator sees in VictoriaMetrics):

* a reading is field ``<metric>`` of measurement ``ewg`` with tag ``device_id``
  -> series ``ewg_<metric>{device_id="..."}``; readings of one device with the
  same timestamp share one line. A reading the gateway had to timestamp itself
  (the device sent none) carries the extra tag ``ts_assumed="1"``, so it is a
  separate series; queries merge both.
* an event is field ``value`` = 1 of measurement ``ewg_event`` with tags
  ``device_id`` and ``type`` -> series ``ewg_event_value{device_id, type}``.
  Readings are told apart from events by having no ``type`` label.
* **limitation:** an event's ``detail`` is not stored (VictoriaMetrics keeps
  numbers only; a string field would become a meaningless ``0`` series), so
  events read back with ``detail == {}``. The alert engine gets the detail live
  from the pipeline; only the history loses it.

Idempotency: a redelivered or replayed reading (same device, metric and
timestamp) must not count twice. InfluxDB overwrites a point with the same
series and timestamp by itself. **VictoriaMetrics keeps duplicates unless it
runs with ``-dedup.minScrapeInterval=1ms``** (one sample per series and
millisecond); operators must set that flag. The store checks ``/flags`` after
its first write and logs a warning when it is missing.

What :meth:`InfluxStore.write` returns: the server does not say which points
were new, so ``write`` returns the number of readings *written* (accepted by
the server). ``counters.readings_stored`` therefore counts readings written on
this store, a redelivery included, and ``readings_duplicate`` stays 0; the
number of distinct readings stored is :meth:`InfluxStore.count`.

Reads are exact: :meth:`~InfluxStore.query` and :meth:`~InfluxStore.events`
return raw samples via ``/api/v1/export``; :meth:`~InfluxStore.latest` finds each
series' newest timestamp with ``tlast_over_time`` and reads that very sample back
via export; :meth:`~InfluxStore.count` and :meth:`~InfluxStore.query_range`
(downsampled series for charts) are PromQL over ``/api/v1/query`` and
``/api/v1/query_range``, sent with ``nocache=1`` so a replayed backlog shows at
once. VictoriaMetrics makes a sample searchable about a second after accepting it.

For a VictoriaMetrics cluster: ``influx_url = http://vminsert:8480/insert/0/influx``
and ``influx_query_url = http://vmselect:8481/select/0/prometheus``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, cast

import aiohttp
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.client.write.point import Point
from influxdb_client.client.write_api_async import WriteApiAsync
from influxdb_client.domain.write_precision import WritePrecision

from gateway.errors import StoreError
from gateway.model import DeviceEvent, Reading, now_ms

log = logging.getLogger(__name__)

MEASUREMENT = "ewg"
EVENT_MEASUREMENT = "ewg_event"
EVENT_SERIES = "ewg_event_value"
#: ``latest`` looks this far back (readings older than ``max_age_s`` are refused anyway).
LATEST_LOOKBACK_MS = 33 * 86_400_000
#: Reads reach this far into the future (devices may be ahead by ``max_future_s``).
FUTURE_MS = 2 * 86_400_000
#: The client annotates precision as ``WritePrecision`` but its values are plain strings.
_MS = cast(WritePrecision, WritePrecision.MS)

Rollup = Literal["max", "min", "sum", "count"]
#: How the per-series rollups of a reading's two series (stamped by the device or by
#: the gateway) combine into one exact value per step.
_COMBINE: dict[str, str] = {"max": "max", "min": "min", "sum": "sum", "count": "sum"}


@dataclass(frozen=True, slots=True)
class ExportedSeries:
    """One series from ``/api/v1/export``: its labels and raw samples, oldest first."""

    labels: dict[str, str]
    timestamps: list[int]
    values: list[float]


def label_value(value: str) -> str:
    r"""A PromQL string literal (quotes and backslashes escaped).

    >>> label_value('st1-"gas"\\')
    '"st1-\\"gas\\"\\\\"'
    """
    return json.dumps(value, ensure_ascii=False)


def selector(name: str | None = None, *, name_regex: str | None = None, **labels: str) -> str:
    """A series selector; a label ending in ``_not`` means "not equal".

    >>> selector("ewg_temperature_c", device_id="d1", type="")
    '{__name__="ewg_temperature_c",device_id="d1",type=""}'
    >>> selector(EVENT_SERIES, device_id="d1", type_not="")
    '{__name__="ewg_event_value",device_id="d1",type!=""}'
    """
    parts = []
    if name is not None:
        parts.append(f"__name__={label_value(name)}")
    if name_regex is not None:
        parts.append(f"__name__=~{label_value(name_regex)}")
    for key, value in labels.items():
        op = "="
        if key.endswith("_not"):
            key, op = key[: -len("_not")], "!="
        parts.append(f"{key}{op}{label_value(value)}")
    return "{" + ",".join(parts) + "}"


def _seconds(ms: int) -> str:
    """Epoch milliseconds as the exact decimal seconds the Prometheus API takes.

    >>> _seconds(1_700_000_000_123), _seconds(5)
    ('1700000000.123', '0.005')
    """
    ms = max(ms, 0)
    return f"{ms // 1000}.{ms % 1000:03d}"


def _ms(seconds: str | float) -> int:
    """Decimal seconds (as the Prometheus API prints them) back to epoch milliseconds."""
    return int((Decimal(str(seconds)) * 1000).to_integral_value())


def _point(measurement: str, tags: dict[str, str], fields: dict[str, float], ts_ms: int) -> str:
    # influxdb-client's Point is untyped; it does the line-protocol escaping for us.
    point: Any = Point(measurement)  # type: ignore[no-untyped-call]
    for key, value in tags.items():
        point.tag(key, value)
    for key, number in fields.items():
        point.field(key, number)
    point.time(ts_ms, _MS)
    return str(point.to_line_protocol())


def line_protocol(readings: Sequence[Reading], events: Sequence[DeviceEvent]) -> str:
    """The batch as line protocol: one line per device and timestamp, one per event.

    >>> print(line_protocol(
    ...     [Reading("d 1", "temp_c", 5, 21.5), Reading("d 1", "rh_pct", 5, 40.0)],
    ...     [DeviceEvent("d 1", "smoke", 6, {"zone": 2}, ts_assumed=True)],
    ... ))
    ewg,device_id=d\\ 1 rh_pct=40,temp_c=21.5 5
    ewg_event,device_id=d\\ 1,ts_assumed=1,type=smoke value=1 6
    """
    groups: dict[tuple[str, int, bool], dict[str, float]] = {}
    for r in readings:
        # The first of two readings of one series and instant wins, as in the SQLite store.
        groups.setdefault((r.device_id, r.ts_ms, r.ts_assumed), {}).setdefault(
            r.metric, float(r.value)
        )
    lines = []
    for (device_id, ts, assumed), fields in groups.items():
        tags = {"device_id": device_id, **({"ts_assumed": "1"} if assumed else {})}
        lines.append(_point(MEASUREMENT, tags, fields, ts))
    for e in events:
        tags = {"device_id": e.device_id, "type": e.type}
        if e.ts_assumed:
            tags["ts_assumed"] = "1"
        lines.append(_point(EVENT_MEASUREMENT, tags, {"value": 1.0}, e.ts_ms))
    return "\n".join(lines)


def _parse_export(body: bytes) -> list[ExportedSeries]:
    found = []
    for line in body.splitlines():
        if line.strip():
            row = json.loads(line)
            found.append(
                ExportedSeries(
                    {str(k): str(v) for k, v in row["metric"].items()},
                    [int(t) for t in row["timestamps"]],
                    [float(v) for v in row["values"]],
                )
            )
    return found


class InfluxStore:
    """Readings and events in InfluxDB or VictoriaMetrics (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        org: str = "ewg",
        bucket: str = "ewg",
        query_url: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.query_url = (query_url or url).rstrip("/")
        self.org = org
        self.bucket = bucket
        self.timeout_s = timeout_s
        self._token = token
        self._client: InfluxDBClientAsync | None = None
        self._write_api: WriteApiAsync | None = None
        self._http: aiohttp.ClientSession | None = None
        self._checked_dedup = False

    async def open(self) -> InfluxStore:
        """Create the HTTP clients; the server is not contacted (it may be down: we spool)."""
        self._client = InfluxDBClientAsync(
            url=self.url,
            token=self._token or "",
            org=self.org,
            timeout=int(self.timeout_s * 1000),
        )
        self._write_api = self._client.write_api()
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s), headers=headers
        )
        return self

    async def close(self) -> None:
        client, self._client = self._client, None
        self._write_api = None
        if client is not None:
            await client.close()  # type: ignore[no-untyped-call]
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    # -- writes --

    async def write(self, readings: Sequence[Reading], events: Sequence[DeviceEvent]) -> int:
        """Write a batch; return how many readings the server accepted (all, or raise)."""
        if not readings and not events:
            return 0
        if self._write_api is None:
            raise StoreError("influx store is not open")
        body = await asyncio.to_thread(line_protocol, readings, events)
        try:
            ok = await self._write_api.write(
                bucket=self.bucket, org=self.org, record=body, write_precision=_MS
            )
        except Exception as exc:  # aiohttp, influxdb-client and timeouts alike
            raise StoreError(f"write to {self.url} failed: {type(exc).__name__}: {exc}") from exc
        if not ok:
            raise StoreError(f"write to {self.url} was not accepted")
        if not self._checked_dedup:
            self._checked_dedup = True
            await self._check_dedup()
        return len(readings)

    async def _check_dedup(self) -> None:
        """Warn when a VictoriaMetrics would keep redelivered readings twice."""
        try:
            body = (await self._request("/flags", [])).decode("utf-8", "replace")
        except StoreError:
            return  # not VictoriaMetrics (InfluxDB deduplicates by itself), or not reachable
        if "-dedup.minScrapeInterval=" not in body:
            log.warning(
                "VictoriaMetrics at %s runs without -dedup.minScrapeInterval=1ms: readings"
                " redelivered by the broker or replayed from the spool will be stored twice",
                self.query_url,
            )

    # -- reads --

    async def _request(self, path: str, form: list[tuple[str, str]]) -> bytes:
        if self._http is None:
            raise StoreError("influx store is not open")
        url = self.query_url + path
        try:
            async with self._http.post(url, data=form) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StoreError(f"{url}: {type(exc).__name__}: {exc}") from exc
        if status != 200:
            raise StoreError(f"{url}: HTTP {status}: {body[:300].decode('utf-8', 'replace')}")
        return body

    async def _promql(self, path: str, form: list[tuple[str, str]]) -> list[dict[str, Any]]:
        # nocache: results must include what was just written (and backfilled by a replay).
        reply = json.loads(await self._request(path, [*form, ("nocache", "1")]))
        if reply.get("status") != "success":
            raise StoreError(f"{path}: {reply.get('error', reply)}")
        return list(reply["data"]["result"])

    async def export(self, match: str, start_ms: int, end_ms: int) -> list[ExportedSeries]:
        """Raw samples of every series matching ``match`` in ``[start_ms, end_ms]``."""
        body = await self._request(
            "/api/v1/export",
            [("match[]", match), ("start", _seconds(start_ms)), ("end", _seconds(end_ms))],
        )
        return await asyncio.to_thread(_parse_export, body)

    async def query(
        self, device_id: str, metric: str, start_ms: int, end_ms: int, limit: int = 10_000
    ) -> list[Reading]:
        match = selector(f"{MEASUREMENT}_{metric}", device_id=device_id, type="")
        rows = [
            Reading(device_id, metric, ts, value, s.labels.get("ts_assumed") == "1")
            for s in await self.export(match, start_ms, end_ms)
            for ts, value in zip(s.timestamps, s.values, strict=True)
        ]
        rows.sort(key=lambda r: r.ts_ms)
        return rows[:limit]

    async def query_range(
        self,
        device_id: str,
        metric: str,
        start_ms: int,
        end_ms: int,
        step_ms: int,
        rollup: Rollup = "max",
    ) -> list[tuple[int, float]]:
        """A chart's series: at each ``start_ms + k * step_ms``, the ``rollup`` of the
        readings in the step before it (``(t - step, t]``); steps without readings are left out.
        """
        match = selector(f"{MEASUREMENT}_{metric}", device_id=device_id, type="")
        promql = f"{_COMBINE[rollup]}({rollup}_over_time({match}[{step_ms}ms]))"
        result = await self._promql(
            "/api/v1/query_range",
            [
                ("query", promql),
                ("start", _seconds(start_ms)),
                ("end", _seconds(end_ms)),
                ("step", f"{step_ms}ms"),
            ],
        )
        return [(_ms(t), float(v)) for series in result for t, v in series["values"]]

    async def _instant(self, promql: str, at_ms: int) -> list[dict[str, Any]]:
        return await self._promql("/api/v1/query", [("query", promql), ("time", _seconds(at_ms))])

    async def latest(self, device_id: str) -> dict[str, Reading]:
        at = now_ms() + FUTURE_MS
        match = selector(name_regex=f"{MEASUREMENT}_.+", device_id=device_id, type="")
        lasts = await self._instant(
            f"tlast_over_time({match}[{LATEST_LOOKBACK_MS}ms]) keep_metric_names", at
        )
        # Read each newest sample back by its exact timestamp, so value and time belong
        # together even while new readings arrive (one export per distinct timestamp).
        wanted: dict[int, set[tuple[tuple[str, str], ...]]] = {}
        for series in lasts:
            labels = tuple(sorted(series["metric"].items()))
            wanted.setdefault(_ms(series["value"][1]), set()).add(labels)
        exports = await asyncio.gather(*(self.export(match, ts, ts) for ts in wanted))
        newest: dict[str, Reading] = {}
        prefix = MEASUREMENT + "_"
        for ts, found in zip(wanted, exports, strict=True):
            for s in found:
                if tuple(sorted(s.labels.items())) not in wanted[ts] or ts not in s.timestamps:
                    continue
                metric = s.labels["__name__"].removeprefix(prefix)
                value = s.values[s.timestamps.index(ts)]
                reading = Reading(device_id, metric, ts, value, s.labels.get("ts_assumed") == "1")
                if metric not in newest or newest[metric].ts_ms < ts:
                    newest[metric] = reading
        return newest

    async def events(self, device_id: str, start_ms: int, end_ms: int) -> list[DeviceEvent]:
        match = selector(EVENT_SERIES, device_id=device_id, type_not="")
        found = [
            DeviceEvent(device_id, s.labels["type"], ts, {}, s.labels.get("ts_assumed") == "1")
            for s in await self.export(match, start_ms, end_ms)
            for ts in s.timestamps
        ]
        found.sort(key=lambda e: (e.ts_ms, e.type))
        return found

    async def count(self) -> int:
        """How many distinct readings are stored, all devices and all time.

        ``count_over_time`` over a window reaching back to 1970-01-02 (the API refuses
        a window that reaches the epoch itself) and ahead by ``FUTURE_MS``.
        """
        at = now_ms() + FUTURE_MS
        window = at - 86_400_000
        match = selector(name_regex=f"{MEASUREMENT}_.+", type="")
        result = await self._instant(f"sum(count_over_time({match}[{window}ms]))", at)
        return int(float(result[0]["value"][1])) if result else 0
