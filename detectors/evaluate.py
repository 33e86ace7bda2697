"""Score the detectors against the simulator's ground truth: recall, precision, false alarms.

``ewg evaluate`` generates the labelled town of :mod:`simulator.evaluation` in process
(:mod:`simulator.batch`: a simulated week in a few seconds, no broker) and hands its
readings, events and status changes to the same three detectors the gateway's detect stage
runs, in the same order (:class:`~detectors.bank.DetectorBank`, then the
:class:`~detectors.correlate.Correlator` with the bank's signals, then the
:class:`~detectors.production.ProductionDetector`), in arrival order, sweeping for offline
devices once a simulated minute.

How an alert is scored:

* an alert is what the alert engine would open: a raising signal for a (device, rule) that
  had no raised signal open (an escalation from pre-warning to alarm is the same alert);
* it **detects** an incident if it is on one of the incident's devices, raised between the
  incident's start and ``GRACE_S`` after its end, and of the right class: a hazard alert for
  a hazard incident, the ``offline`` alert for an outage, another fault alert for a sensor
  fault. Incidents that should raise nothing (duplicates, holiday load) are not scored for
  recall and an alert on them is a false alarm; a backfill's device really was unheard
  while it buffered, so an offline alert then is right (neither counted nor false);
* every alert that detects no incident is a **false alarm**, except alerts on a device while
  one of its sensors is faulty (stuck, pinned, spiky): those are explained by the fault and
  left out of the counts;
* alerts are what the alert engine would page: one per (device, rule) while raised, again
  after a clear, with the engine's flap damping (4 flips in 10 minutes are one alert);
* **delay** is from the incident's start (when the hazard began, not when a threshold was
  crossed): a slow creep that takes hours to reach the alarm bound is honestly hours late.

Per detector means per rule type (``threshold``, ``rate_of_rise``, ``drift``, ``flatline``,
``sensor_fault``, ``anomaly``), plus ``event`` (device events such as a smoke alarm),
``offline``, ``correlate`` and ``production``. False alarms per device-day divide by the
device-days of the devices that detector watches.

The false-alarm budget (``HAZARD_FALSE_ALARM_BUDGET``) is 0.1 hazard false alarms per
device-day. ``domain.md``: a site with more than 5 false alarms in a day must be followed
up. A monitored site has three to five devices, so at 0.1 per device-day the detectors add
0.3-0.5 a day per site, a tenth of that follow-up line: a site that crosses it has a real
problem (a dirty detector, a bad installation), not a detector that cries wolf. The
evaluation also reports the worst site-day of false alarms of any class, which must stay
at or below 5.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alerts.flap import FlapDamper
from alerts.model import AlertClass, Signal
from alerts.options import AlertOptions
from detectors.bank import OFFLINE_RULE, DetectorBank
from detectors.correlate import Correlator
from detectors.production import ProductionDetector
from gateway.model import Reading
from gateway.profiles import Profile, load_profiles
from gateway.registry_model import Calendar, Enterprise, ShutdownPeriod
from simulator.batch import Batch, generate
from simulator.evaluation import DAY_S, evaluation_town, monday_start_ms
from simulator.scenario import Scenario, SiteSpec
from simulator.signals import LOCAL_UTC_OFFSET_S

#: An alert up to this long after an incident's end still belongs to it.
GRACE_S = 600.0
#: Hazard false alarms allowed per device-day (see the module docstring for why).
HAZARD_FALSE_ALARM_BUDGET = 0.1
#: The field's follow-up line: more than this many false alarms on one site in a day.
SITE_DAY_FOLLOW_UP = 5
#: How often (simulated seconds) offline devices are swept for, as the gateway does.
SWEEP_S = 60.0

#: Incident kinds that should raise nothing.
SILENT_KINDS = frozenset({"backfill", "duplicates", "malformed", "holiday_load"})
#: Silent kinds whose device really was unheard for a while: an offline alert is right there.
UNHEARD_KINDS = frozenset({"backfill"})
#: Incident kinds that are equipment faults (the rest are hazards).
FAULT_KINDS = frozenset({"offline", "stuck", "pinned", "spiky"})


@dataclass(slots=True)
class RaisedAlert:
    device_id: str
    site_id: str
    rule: str
    detector: str
    alert_class: str
    hazard: str
    severity: str
    ts_ms: int
    matched: bool = False


@dataclass(slots=True)
class Incident:
    """One injected incident (a fire's smoke and heat records are one incident)."""

    kind: str
    label: str
    devices: set[str]
    site_id: str
    start_ms: int
    end_ms: int
    detected_by: dict[str, int] = field(default_factory=dict)  # detector -> first alert ms

    @property
    def name(self) -> str:
        return f"{self.kind} ({self.label})" if self.label else self.kind

    @property
    def silent(self) -> bool:
        return self.kind in SILENT_KINDS

    def explains(self, alert: RaisedAlert) -> bool:
        """A broken sensor makes every rule on its device misbehave: alerts of any class
        on the device during a sensor fault are explained by it (not false alarms), though
        only a fault alert counts as detecting it."""
        return (
            self.kind in FAULT_KINDS - {"offline"}
            and alert.device_id in self.devices
            and self.start_ms <= alert.ts_ms <= self.end_ms + GRACE_S * 1000
        )

    def wants(self, alert: RaisedAlert) -> bool:
        if alert.device_id not in self.devices:
            return False
        if not self.start_ms <= alert.ts_ms <= self.end_ms + GRACE_S * 1000:
            return False
        if self.silent:
            return self.kind in UNHEARD_KINDS and alert.rule == OFFLINE_RULE
        if self.kind == "offline":
            return alert.rule == OFFLINE_RULE
        if self.kind in FAULT_KINDS:
            return alert.alert_class == AlertClass.FAULT.value and alert.rule != OFFLINE_RULE
        return alert.alert_class == AlertClass.HAZARD.value


@dataclass(slots=True)
class Row:
    detector: str
    incident: str
    incidents: int
    detected: int
    delays_s: list[float]

    @property
    def recall(self) -> float:
        return self.detected / self.incidents if self.incidents else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "incident": self.incident,
            "incidents": self.incidents,
            "detected": self.detected,
            "recall": round(self.recall, 3),
            "delay_median_s": _median(self.delays_s),
            "delay_worst_s": round(max(self.delays_s), 1) if self.delays_s else None,
        }


@dataclass(slots=True)
class DetectorTotals:
    detector: str
    alerts: int
    matched: int
    false_alarms: int
    device_days: float

    @property
    def precision(self) -> float | None:
        return self.matched / self.alerts if self.alerts else None

    @property
    def false_per_device_day(self) -> float:
        return self.false_alarms / self.device_days if self.device_days else 0.0

    def to_json(self) -> dict[str, Any]:
        precision = self.precision
        return {
            "detector": self.detector,
            "alerts": self.alerts,
            "true_alerts": self.matched,
            "false_alarms": self.false_alarms,
            "precision": None if precision is None else round(precision, 3),
            "device_days": round(self.device_days, 1),
            "false_per_device_day": round(self.false_per_device_day, 4),
        }


@dataclass(slots=True)
class Evaluation:
    scenario: str
    days: float
    devices: int
    readings: int
    rows: list[Row]
    totals: list[DetectorTotals]
    hazard_false_alarms: int
    hazard_false_per_device_day: float
    worst_site_day: int
    worst_site_day_at: str
    seconds: float = 0.0
    false_alarms: list[RaisedAlert] = field(default_factory=list)
    missed: list[Incident] = field(default_factory=list)
    #: Towns (seeds) pooled into these figures; ``days`` and ``devices`` are per town.
    seeds: list[int] = field(default_factory=list)

    def recall(self, kind: str) -> float:
        """Recall of all detectors together on one incident kind (every label)."""
        rows = [r for r in self.rows if r.detector == "any" and r.incident.split(" ")[0] == kind]
        total = sum(r.incidents for r in rows)
        return sum(r.detected for r in rows) / total if total else 0.0

    @property
    def within_budget(self) -> bool:
        return (
            self.hazard_false_per_device_day <= HAZARD_FALSE_ALARM_BUDGET
            and self.worst_site_day <= SITE_DAY_FOLLOW_UP
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "seeds": self.seeds,
            "days": self.days,
            "devices": self.devices,
            "readings": self.readings,
            "seconds": round(self.seconds, 2),
            "rows": [r.to_json() for r in self.rows],
            "detectors": [t.to_json() for t in self.totals],
            "hazard_false_alarms": self.hazard_false_alarms,
            "hazard_false_per_device_day": round(self.hazard_false_per_device_day, 4),
            "hazard_false_alarm_budget": HAZARD_FALSE_ALARM_BUDGET,
            "worst_site_day_false_alarms": self.worst_site_day,
            "worst_site_day": self.worst_site_day_at,
            "site_day_follow_up": SITE_DAY_FOLLOW_UP,
            "within_budget": self.within_budget,
            "missed": [
                {
                    "incident": i.name,
                    "devices": sorted(i.devices),
                    "start_ms": i.start_ms,
                    "end_ms": i.end_ms,
                }
                for i in self.missed
            ],
            "false_alarm_examples": [
                {
                    "device_id": a.device_id,
                    "site_id": a.site_id,
                    "rule": a.rule,
                    "detector": a.detector,
                    "hazard": a.hazard,
                    "ts_ms": a.ts_ms,
                }
                for a in self.false_alarms[:20]
            ],
        }


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


# -- running the detectors --------------------------------------------------------------------


class Pager:
    """Which signals page someone: what the alert engine opens or re-fires.

    One alert per (device, rule): a raising signal while it is raised is an escalation or a
    repeat, not a new page; a raise after a clear is a re-fire and pages again, unless the
    flips come so fast that the engine's flap damping (``alerts.flap``, with the default
    :class:`~alerts.options.AlertOptions`) holds them as one flapping alert until its
    signal has been quiet for the settle time.
    """

    def __init__(self) -> None:
        options = AlertOptions()
        self._damper = FlapDamper(options)
        self._settle_ms = options.flap_settle_ms
        self._ids: dict[tuple[str, str], int] = {}
        self._active: set[tuple[str, str]] = set()
        self._flapping: dict[tuple[str, str], int] = {}  # key -> last flip

    def opens(self, sig: Signal) -> bool:
        key = (sig.device_id, sig.rule)
        known = key in self._ids
        alert_id = self._ids.setdefault(key, len(self._ids) + 1)
        flipped = sig.active != (key in self._active)
        if sig.active:
            self._active.add(key)
        else:
            self._active.discard(key)
        last = self._flapping.get(key)
        if last is not None:
            if sig.ts_ms - last < self._settle_ms:
                if flipped:
                    self._flapping[key] = sig.ts_ms
                return False
            del self._flapping[key]  # settled: it takes this signal's state
            self._damper.forget(alert_id)
            return False
        if not flipped:
            return False
        if not sig.active:
            self._damper.record(alert_id, sig.ts_ms)
            return False
        if not known:
            return True  # a new alert
        if self._damper.would_flap(alert_id, sig.ts_ms):
            self._flapping[key] = sig.ts_ms
            return False  # held as one flapping alert
        self._damper.record(alert_id, sig.ts_ms)
        return True  # cleared, and raised again


def _calendars(scenario: Scenario, start_ms: int) -> dict[str, Calendar]:
    """Power meters of enterprise sites -> their enterprise's calendar."""
    out: dict[str, Calendar] = {}
    for site in scenario.sites:
        if not site.enterprise:
            continue
        enterprise = Enterprise(
            site.enterprise,
            site.name,
            hours=site.hours or "08:00-18:00",
            days=site.days or "1-7",
        )
        periods = [
            ShutdownPeriod(
                i + 1,
                site.enterprise,
                start_ms + round(p.at_s * 1000),
                start_ms + round(p.end_s * 1000),
                p.reason,
                "simulation",
                kind=p.kind,
            )
            for i, p in enumerate(site.shutdowns)
        ]
        calendar = Calendar.of(enterprise, periods)
        for device in site.devices:
            if device.profile == "power_meter":
                out[device.id] = calendar
    return out


def run_detectors(
    batch: Batch, profiles: Mapping[str, Profile], timezone: str = "Asia/Shanghai"
) -> list[RaisedAlert]:
    """Feed a batch through the gateway's detectors; the alerts they would open, in order."""
    scenario = batch.scenario
    device_profile = {d.id: profiles[d.profile] for _, d in scenario.devices()}
    site_of = {d.id: s.id for s, d in scenario.devices()}
    by_site: dict[str, list[str]] = defaultdict(list)
    for s, d in scenario.devices():
        by_site[s.id].append(d.id)

    def peers(device_id: str, kind: str) -> list[str]:
        return [d for d in by_site[site_of[device_id]] if d != device_id]

    bank = DetectorBank(device_profile.get, timezone)
    correlator = Correlator(peers)
    calendars = _calendars(scenario, batch.start_ms)
    production = ProductionDetector(calendars.get)
    for device_id in batch.device_ids:
        bank.expect(device_id, batch.start_ms)

    rule_type: dict[tuple[str, str], str] = {}
    for name, profile in profiles.items():
        for rule in profile.rules:
            rule_type[(name, rule.name)] = rule.type
    pager = Pager()
    raised: list[RaisedAlert] = []

    def record(signals: Sequence[Signal], detector: str | None = None) -> None:
        for sig in signals:
            if not pager.opens(sig):
                continue
            profile = device_profile.get(sig.device_id)
            kind = detector
            if kind is None:
                if sig.rule == OFFLINE_RULE:
                    kind = "offline"
                elif profile is not None and (profile.name, sig.rule) in rule_type:
                    kind = rule_type[(profile.name, sig.rule)]
                else:
                    kind = "event"
            raised.append(
                RaisedAlert(
                    device_id=sig.device_id,
                    site_id=site_of.get(sig.device_id, ""),
                    rule=sig.rule,
                    detector=kind,
                    alert_class=sig.alert_class.value,
                    hazard=sig.hazard,
                    severity=sig.severity.value,
                    ts_ms=sig.ts_ms,
                )
            )

    ids, metrics = batch.device_ids, batch.metrics
    arrival = batch.arrival_ms
    events, statuses = batch.events, batch.statuses
    ei = si = 0
    step = int(SWEEP_S * 1000)
    t = batch.start_ms
    lo = 0
    while t < batch.end_ms or lo < arrival.size:
        t += step
        hi = int(arrival.searchsorted(t, side="left"))
        found: list[Signal] = []
        while si < len(statuses) and statuses[si][0] < t:
            found.extend(bank.on_status(statuses[si][1]))
            si += 1
        readings = [
            Reading(ids[d], metrics[m], ts, v)
            for d, m, ts, v in zip(
                batch.device[lo:hi].tolist(),
                batch.metric[lo:hi].tolist(),
                batch.ts_ms[lo:hi].tolist(),
                batch.value[lo:hi].tolist(),
                strict=True,
            )
        ]
        lo = hi
        if readings:
            found.extend(bank.on_readings(readings, received_ms=t))
        while ei < len(events) and events[ei][0] < t:
            found.extend(bank.on_event(events[ei][1], received_ms=events[ei][0]))
            ei += 1
        derived = correlator.on_readings(readings) if readings else []
        if found:
            derived.extend(correlator.on_signals(found))
        record(found)
        record(derived, "correlate")
        if readings:
            record(production.on_readings(readings), "production")
        record(bank.sweep(t))
        if t >= batch.end_ms and lo >= arrival.size:
            break
    return raised


# -- scoring ------------------------------------------------------------------------------------


def _incidents(batch: Batch) -> list[Incident]:
    grouped: dict[tuple[str, int, str], Incident] = {}
    for rec in batch.truth:
        key = (rec.kind, rec.start_ms, rec.site_id)
        inc = grouped.get(key)
        if inc is None:
            inc = Incident(
                kind=rec.kind,
                label=str(rec.detail.get("label", "")),
                devices=set(),
                site_id=rec.site_id,
                start_ms=rec.start_ms,
                end_ms=rec.end_ms,
            )
            grouped[key] = inc
        inc.devices.add(rec.device_id)
    return sorted(grouped.values(), key=lambda i: i.start_ms)


def _devices_watched(scenario: Scenario, profiles: Mapping[str, Profile]) -> dict[str, int]:
    """How many devices each detector watches (for false alarms per device-day)."""
    count: dict[str, int] = defaultdict(int)
    enterprise_meters = 0
    for site, device in scenario.devices():
        profile = profiles[device.profile]
        for kind in {r.type for r in profile.rules}:
            count[kind] += 1
        if any(e.severity is not None for e in profile.events.values()):
            count["event"] += 1
        count["offline"] += 1
        count["correlate"] += 1
        if site.enterprise and device.profile == "power_meter":
            enterprise_meters += 1
    count["production"] = enterprise_meters
    return count


def _site_day(site: SiteSpec | str, ts_ms: int) -> str:
    day = (ts_ms // 1000 + LOCAL_UTC_OFFSET_S) // 86400
    return f"{site if isinstance(site, str) else site.id}#{day}"


def score(batch: Batch, alerts: list[RaisedAlert], profiles: Mapping[str, Profile]) -> Evaluation:
    """Match alerts to incidents and tabulate (see the module docstring for the rules)."""
    scenario = batch.scenario
    incidents = _incidents(batch)
    explained: list[RaisedAlert] = []
    for alert in alerts:
        for inc in incidents:
            if inc.wants(alert):
                alert.matched = True
                first = inc.detected_by.get(alert.detector)
                if first is None or alert.ts_ms < first:
                    inc.detected_by[alert.detector] = alert.ts_ms
        if not alert.matched and any(inc.explains(alert) for inc in incidents):
            explained.append(alert)
    alerts = [a for a in alerts if a not in explained]
    days = scenario.duration_s / DAY_S
    rows: list[Row] = []
    names = sorted({i.name for i in incidents}, key=lambda n: (n.split(" ")[0], n))
    detectors = sorted({a.detector for a in alerts})
    for name in names:
        group = [i for i in incidents if i.name == name]
        if group[0].silent:
            continue
        delays_any: list[float] = []
        detected_any = 0
        for inc in group:
            if inc.detected_by:
                detected_any += 1
                delays_any.append((min(inc.detected_by.values()) - inc.start_ms) / 1000)
        for det in detectors:
            hits = [i for i in group if det in i.detected_by]
            if hits:
                delays = [(i.detected_by[det] - i.start_ms) / 1000 for i in hits]
                rows.append(Row(det, name, len(group), len(hits), delays))
        rows.append(Row("any", name, len(group), detected_any, delays_any))
    watched = _devices_watched(scenario, profiles)
    totals = []
    for det in sorted(set(detectors) | {k for k, n in watched.items() if n}):
        mine = [a for a in alerts if a.detector == det]
        matched = sum(a.matched for a in mine)
        totals.append(
            DetectorTotals(det, len(mine), matched, len(mine) - matched, watched[det] * days)
        )
    false = [a for a in alerts if not a.matched]
    hazard_false = [a for a in false if a.alert_class == AlertClass.HAZARD.value]
    n_devices = len(batch.device_ids)
    per_site_day: dict[str, int] = defaultdict(int)
    for alert in false:
        per_site_day[_site_day(alert.site_id, alert.ts_ms)] += 1
    worst_key, worst = max(per_site_day.items(), key=lambda kv: kv[1], default=("", 0))
    return Evaluation(
        scenario=scenario.name,
        days=round(days, 2),
        devices=n_devices,
        readings=batch.readings,
        rows=rows,
        totals=totals,
        hazard_false_alarms=len(hazard_false),
        hazard_false_per_device_day=len(hazard_false) / (n_devices * days) if n_devices else 0.0,
        worst_site_day=worst,
        worst_site_day_at=worst_key,
        false_alarms=false,
        missed=[i for i in incidents if not i.silent and not i.detected_by],
    )


def evaluate(
    days: int = 7,
    seed: int = 11,
    profiles: Mapping[str, Profile] | None = None,
    timezone: str = "Asia/Shanghai",
    seeds: int = 1,
) -> Evaluation:
    """Generate the evaluation town, run the detectors over it and score them.

    ``seeds`` > 1 runs that many towns (seeds ``seed``, ``seed + 1``, ...: other noise,
    other phases, the same incident plan) and pools their incidents and alerts, so each row
    rests on more incidents than one town holds.
    """
    import time

    profiles = dict(load_profiles() if profiles is None else profiles)
    results = []
    for k in range(seeds):
        started = time.perf_counter()
        scenario = evaluation_town(days=days, seed=seed + k)
        batch = generate(scenario, monday_start_ms(), profiles)
        alerts = run_detectors(batch, profiles, timezone)
        result = score(batch, alerts, profiles)
        result.seconds = time.perf_counter() - started
        result.seeds = [seed + k]
        results.append(result)
    return results[0] if len(results) == 1 else pool(results)


def pool(results: Sequence[Evaluation]) -> Evaluation:
    """Several towns' evaluations as one: incidents, alerts and device-days add up."""
    group_size: dict[str, int] = defaultdict(int)
    detected: dict[tuple[str, str], int] = defaultdict(int)
    delays: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in results:
        for row in r.rows:
            if row.detector == "any":
                group_size[row.incident] += row.incidents
            detected[(row.detector, row.incident)] += row.detected
            delays[(row.detector, row.incident)] += row.delays_s
    order = list(dict.fromkeys((row.detector, row.incident) for r in results for row in r.rows))
    order.sort(key=lambda k: (k[1].split(" ")[0], k[1], k[0] == "any", k[0]))
    rows = [Row(d, i, group_size[i], detected[(d, i)], delays[(d, i)]) for d, i in order]
    totals: dict[str, DetectorTotals] = {}
    for r in results:
        for t in r.totals:
            acc = totals.setdefault(t.detector, DetectorTotals(t.detector, 0, 0, 0, 0.0))
            acc.alerts += t.alerts
            acc.matched += t.matched
            acc.false_alarms += t.false_alarms
            acc.device_days += t.device_days
    worst = max(results, key=lambda r: r.worst_site_day)
    hazard_false = sum(r.hazard_false_alarms for r in results)
    device_days = sum(r.devices * r.days for r in results)
    return Evaluation(
        scenario=results[0].scenario,
        days=results[0].days,
        devices=results[0].devices,
        readings=sum(r.readings for r in results),
        rows=rows,
        totals=[totals[k] for k in sorted(totals)],
        hazard_false_alarms=hazard_false,
        hazard_false_per_device_day=hazard_false / device_days if device_days else 0.0,
        worst_site_day=worst.worst_site_day,
        worst_site_day_at=f"{worst.worst_site_day_at} (seed {worst.seeds[0]})",
        seconds=sum(r.seconds for r in results),
        false_alarms=[a for r in results for a in r.false_alarms],
        missed=[i for r in results for i in r.missed],
        seeds=[s for r in results for s in r.seeds],
    )


def format_table(result: Evaluation) -> str:
    """The evaluation as Markdown tables (what the README shows)."""
    towns = len(result.seeds)
    pooled = f" x {towns} towns (seeds {', '.join(map(str, result.seeds))})" if towns > 1 else ""
    out = [
        f"Scenario {result.scenario}: {result.devices} devices, {result.days:g} days{pooled}, "
        f"{result.readings:,} readings, evaluated in {result.seconds:.1f} s.",
        "",
        "| incident | detector | incidents | detected | recall | delay median | delay worst |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in result.rows:
        j = row.to_json()
        out.append(
            f"| {row.incident} | {row.detector} | {row.incidents} | {row.detected} | "
            f"{row.recall:.0%} | {_duration(j['delay_median_s'])} | "
            f"{_duration(j['delay_worst_s'])} |"
        )
    out += [
        "",
        "| detector | alerts | true | false | precision | device-days | false / device-day |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for t in result.totals:
        precision = "–" if t.precision is None else f"{t.precision:.0%}"
        out.append(
            f"| {t.detector} | {t.alerts} | {t.matched} | {t.false_alarms} | {precision} | "
            f"{t.device_days:.0f} | {t.false_per_device_day:.3f} |"
        )
    verdict = "within" if result.within_budget else "OVER"
    out += [
        "",
        f"Hazard false alarms: {result.hazard_false_alarms} "
        f"({result.hazard_false_per_device_day:.3f} per device-day; budget "
        f"{HAZARD_FALSE_ALARM_BUDGET}). Worst site-day: {result.worst_site_day} false alarms "
        f"(follow-up line: more than {SITE_DAY_FOLLOW_UP}). {verdict} budget.",
    ]
    return "\n".join(out)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
