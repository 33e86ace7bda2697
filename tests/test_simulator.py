"""The simulator: normal signals, scenario files, and what actually reaches a real broker.

The broker tests run the shipped ``incidents`` and ``malformed`` scenarios once, side by side,
against a real Mosquitto with a subscriber on ``ewg/v1/#``, and then check the recording
against the device contract, the profiles and the truth file. The classifier below judges
messages independently of the simulator's own bookkeeping, so the two can disagree.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from detectors.rules import run_rule
from gateway.errors import BrokerError
from gateway.profiles import Profile, load_profiles
from gateway.registry_model import Device, Site
from simulator.batch import Batch, generate
from simulator.evaluation import evaluation_town, monday_start_ms
from simulator.payloads import FieldEncoder, split_topic
from simulator.runner import SimulationReport, Simulator, parse_broker_url, simulate
from simulator.scenario import (
    EVALUATION_KINDS,
    INCIDENT_KINDS,
    MALFORMED_REASONS,
    Scenario,
    ScenarioError,
    dump_scenario,
    load_scenario,
    parse_scenario,
    registrations,
)
from simulator.signals import DeviceSignals, load_factor
from simulator.town import small_town
from simulator.truth import TruthRecord, read_truth
from tests.servers import Mosquitto, free_port

SCENARIOS = Path(__file__).resolve().parent.parent / "simulator" / "scenarios"
PROFILES = load_profiles()
OVERSIZE = 256 * 1024
DAY_MS = 86_400_000


def scenario(name: str) -> Scenario:
    return load_scenario(SCENARIOS / f"{name}.yaml", PROFILES)


# --- normal signals ------------------------------------------------------------------------


def _series(profile: str, seed: int, device_id: str = "d1") -> list[dict[str, Any]]:
    signals = DeviceSignals(PROFILES[profile], device_id, seed)
    start = 1_796_083_200_000  # 2026-12-01 08:00 China time
    # Two days every 10 minutes, then five minutes every second (fast noise and the sawtooth).
    times = [start + i * 600_000 for i in range(288)]
    times += [times[-1] + i * 1000 for i in range(1, 301)]
    return [signals.sample(ts) for ts in times]


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_signals_are_seeded_and_deterministic(profile: str) -> None:
    assert _series(profile, 11) == _series(profile, 11)
    assert _series(profile, 11) != _series(profile, 12)
    assert _series(profile, 11, "a") != _series(profile, 11, "b")


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("seed", [0, 1, 7, 42])
def test_normal_signals_stay_in_range_and_raise_nothing(profile: str, seed: int) -> None:
    spec = PROFILES[profile]
    for values in _series(profile, seed):
        assert set(values) == set(spec.metrics)
        for metric, value in values.items():
            m = spec.metrics[metric]
            if m.kind == "bool":
                assert isinstance(value, bool)
                continue
            assert isinstance(value, int | float) and not isinstance(value, bool)
            assert math.isfinite(value) and m.min <= value <= m.max, (metric, value)
        for rule in spec.rules:
            if rule.type != "threshold":
                continue  # scores of rates, drifts, ... are not readings
            first = rule.prewarning or rule.alarm
            value = float(values[rule.metric])
            if rule.direction == "above":
                assert value < first.value, (rule.name, value)
            else:
                assert value > first.value, (rule.name, value)
    # Rates, drifts, flat lines and sensor faults are judged by their own detectors: none may
    # raise on normal signals. (Anomaly rules learn what normal is and are scored by
    # ``ewg evaluate`` instead, false alarms included.)
    series = _series(profile, seed)
    ts = np.array(
        [1_796_083_200_000 + i * 600_000 for i in range(288)]
        + [1_796_083_200_000 + 287 * 600_000 + i * 1000 for i in range(1, 301)],
        dtype=np.int64,
    )
    for rule in spec.rules:
        if rule.type in ("threshold", "anomaly") or spec.metrics[rule.metric].kind == "bool":
            continue
        readings = np.array([float(v[rule.metric]) for v in series])
        run = run_rule(rule, ts, readings, metric_spec=spec.metrics[rule.metric])
        assert not run.changes, (rule.name, run.changes[:1])


def test_energy_only_goes_up_and_load_follows_the_day() -> None:
    energy = [v["energy_kwh"] for v in _series("power_meter", 3)]
    assert energy == sorted(energy) and energy[-1] > energy[0]
    assert load_factor(3) < 0.3 < 0.8 < load_factor(10)


def test_residual_current_is_healthy_leakage() -> None:
    values = [v["residual_current_ma"] for v in _series("electrical_fire_monitor", 5)]
    assert 100 <= min(values) and max(values) <= 200  # normal leakage 100-200 mA (domain.md)


@pytest.mark.parametrize("profile", sorted(p for p in PROFILES if PROFILES[p].fields))
def test_vendor_fields_round_trip(profile: str) -> None:
    encoder = FieldEncoder(PROFILES[profile])
    for values in _series(profile, 9)[:50]:
        raw = encoder.encode(values)
        assert set(raw) >= set(PROFILES[profile].fields) & set(raw)
        back = encoder.decode(raw)
        for metric, value in values.items():
            assert back[metric] == pytest.approx(value, abs=0.051), metric


# --- scenario files ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["demo", "incidents", "malformed", "stream"])
def test_shipped_scenarios_load_and_plan(name: str) -> None:
    s = scenario(name)
    sim = Simulator(s, "mqtt://127.0.0.1:1", profiles=PROFILES)  # plans incidents, no connection
    sites, devices = registrations(s)
    assert sites and devices and sim.duration_s > 0
    assert {d.profile for d in devices} <= set(PROFILES)


def test_incidents_scenario_has_every_kind_within_25_s() -> None:
    s = scenario("incidents")
    assert {i.kind for i in s.incidents} >= set(INCIDENT_KINDS) - {"ramp"}
    assert all(i.end_s <= 25 for i in s.incidents)
    assert all(d.interval_s == 1 for _, d in s.devices())


def test_demo_yaml_is_the_small_town() -> None:
    assert scenario("demo") == small_town()
    assert load_scenario_text(dump_scenario(small_town())) == small_town()


def load_scenario_text(text: str) -> Scenario:
    return parse_scenario(yaml.safe_load(text), "<text>", PROFILES)


def test_small_town_alerts_within_the_first_minute() -> None:
    town = small_town()
    early = {i.kind for i in town.incidents if i.at_s < 60}
    assert {"fire", "leakage_creep", "cable_overheat", "dust_blockage"} <= early
    assert {s.industry for s in town.sites} == {
        "small_shop",
        "rental_housing",
        "residential",
        "dust_factory",
        "fuel_station",
        "mine",
    }
    profiles_by_industry: dict[str, set[str]] = {}
    for site in town.sites:
        profiles_by_industry.setdefault(site.industry, set()).update(
            d.profile for d in site.devices
        )
        assert "electrical_fire_monitor" in {d.profile for d in site.devices}
        assert any(d.profile.startswith("smoke_alarm") for d in site.devices)
    assert "dust_collector_monitor" in profiles_by_industry["dust_factory"]
    assert "gas_detector" in profiles_by_industry["fuel_station"]
    for industry in ("dust_factory", "fuel_station", "mine"):
        assert "power_meter" in profiles_by_industry[industry]
    assert all(d.interval_s <= 10 for _, d in town.devices())


def test_small_town_scales_and_stays_valid() -> None:
    town = small_town(villages=10, sites_per_village=3, seed=1)
    assert len(town.sites) == 30 and len({s.village for s in town.sites}) == 10
    Simulator(town, "mqtt://127.0.0.1:1", profiles=PROFILES)
    tiny = small_town(villages=1, sites_per_village=1)
    assert [i.kind for i in tiny.incidents] == ["leakage_creep"]  # only a shop: no fire there


def test_registrations_match_the_scenario() -> None:
    s = scenario("incidents")
    sites, devices = registrations(s)
    assert all(isinstance(x, Site) for x in sites) and all(isinstance(d, Device) for d in devices)
    assert [x.id for x in sites] == ["t1", "t2", "t3"]
    assert {d.id: d.site_id for d in devices}["t2-dust"] == "t2"
    assert {d.profile for d in devices} <= set(PROFILES)
    assert sites[1].enterprise and sites[0].village == "陂头村"


def _base() -> dict[str, Any]:
    return {
        "duration_s": 30,
        "sites": [
            {
                "id": "s1",
                "name": "店",
                "village": "陂头村",
                "industry": "small_shop",
                "devices": [
                    {"id": "e1", "profile": "electrical_fire_monitor", "interval_s": 1},
                    {"id": "k1", "profile": "smoke_alarm_nbiot", "interval_s": 1},
                ],
            }
        ],
        "incidents": [],
    }


def _with(path: str, value: Any) -> dict[str, Any]:
    data = _base()
    target: Any = data
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    last = keys[-1]
    if last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return data


@pytest.mark.parametrize(
    ("data", "where", "reason"),
    [
        (
            _with("sites.0.devices.0.profile", "toaster"),
            "sites.0.devices.0.profile",
            "unknown profile 'toaster'",
        ),
        (_with("sites.0.devices.0.id", "bad/id"), "sites.0.devices.0.id", "should match"),
        (_with("sites.0.devices.1.id", "e1"), "(scenario)", "device id 'e1' is used twice"),
        (_with("sites.0.devices.0.interval_s", 0), "interval_s", "greater than 0"),
        (
            _with("incidents", [{"kind": "flood", "device": "e1", "at_s": 1, "duration_s": 5}]),
            "incidents.0",
            "does not match any of the expected tags",
        ),
        (
            _with("incidents", [{"kind": "fire", "device": "nope", "at_s": 1, "duration_s": 5}]),
            "incidents.0 (fire)",
            "device 'nope' is not in any site",
        ),
        (
            _with("incidents", [{"kind": "fire", "device": "e1", "at_s": 1, "duration_s": 5}]),
            "incidents.0",
            "has no 'smoke_alarm' event",
        ),
        (
            _with(
                "incidents",
                [{"kind": "gas_leak", "device": "e1", "at_s": 1, "duration_s": 20}],
            ),
            "incidents.0.params.metric",
            "does not report 'gas_lel_pct'",
        ),
        (
            _with(
                "incidents",
                [
                    {
                        "kind": "leakage_creep",
                        "device": "e1",
                        "at_s": 1,
                        "duration_s": 20,
                        "params": {"peak": 9000},
                    }
                ],
            ),
            "incidents.0.params.peak",
            "outside 'residual_current_ma''s valid range",
        ),
        (
            _with(
                "incidents",
                [{"kind": "offline", "device": "e1", "at_s": 40, "duration_s": 5}],
            ),
            "incidents.0 (offline)",
            "not before the scenario's duration_s",
        ),
        (
            _with(
                "incidents",
                [
                    {
                        "kind": "malformed",
                        "device": "e1",
                        "at_s": 1,
                        "duration_s": 2,
                        "params": {"reasons": ["gibberish"]},
                    }
                ],
            ),
            "incidents.0.malformed.params.reasons.0",
            "Input should be 'not_json'",
        ),
    ],
    ids=[
        "unknown-profile",
        "topic-unsafe-id",
        "duplicate-id",
        "zero-interval",
        "unknown-kind",
        "unknown-device",
        "fire-on-non-alarm",
        "metric-missing",
        "peak-out-of-range",
        "after-the-end",
        "bad-reason",
    ],
)
def test_scenario_errors_name_file_field_and_reason(
    tmp_path: Path, data: dict[str, Any], where: str, reason: str
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path, PROFILES)
    message = str(info.value)
    assert str(path) in message and where in message and reason in message


def test_scenario_yaml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("duration_s: 5\nsites: [unclosed\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"(?s)cannot read scenario.*line 2"):
        load_scenario(path, PROFILES)


def test_ramp_too_short_for_the_rule_delay_is_refused() -> None:
    data = _with(
        "incidents",
        [{"kind": "leakage_creep", "device": "e1", "at_s": 1, "duration_s": 8}],
    )
    s = parse_scenario(data, "<test>", PROFILES)
    with pytest.raises(ScenarioError, match=r"incidents\.0 .*residual_current.*delay_s 10"):
        Simulator(s, "mqtt://127.0.0.1:1", profiles=PROFILES)


def test_peak_that_does_not_clear_the_alarm_is_refused() -> None:
    data = _with(
        "incidents",
        [
            {
                "kind": "leakage_creep",
                "device": "e1",
                "at_s": 1,
                "duration_s": 25,
                "params": {"peak": 250},
            }
        ],
    )
    s = parse_scenario(data, "<test>", PROFILES)
    with pytest.raises(ScenarioError, match="does not clear rule 'residual_current'"):
        Simulator(s, "mqtt://127.0.0.1:1", profiles=PROFILES)


def test_broker_url() -> None:
    assert parse_broker_url("mqtt://localhost") == ("localhost", 1883)
    with pytest.raises(Exception, match="mqtt://host"):
        parse_broker_url("http://localhost:1883")


def test_unreachable_broker_is_a_broker_error() -> None:
    sim = Simulator(scenario("malformed"), f"mqtt://127.0.0.1:{free_port()}", profiles=PROFILES)
    with pytest.raises(BrokerError, match="cannot reach"):
        sim.run_for(1)


# --- a real broker -------------------------------------------------------------------------


@dataclass
class Received:
    arrived_ms: int
    topic: str
    payload: bytes
    retain: bool


@dataclass
class Recording:
    messages: list[Received]
    reports: dict[str, SimulationReport]
    truth_files: dict[str, Path]
    scenarios: dict[str, Scenario]
    profile_of: dict[str, Profile] = field(default_factory=dict)
    port: int = 0

    def truth(self, kind: str, device_id: str | None = None) -> TruthRecord:
        records = [
            t
            for r in self.reports.values()
            for t in r.truth
            if t.kind == kind and (device_id is None or t.device_id == device_id)
        ]
        assert len(records) == 1, (kind, device_id, records)
        return records[0]

    def of(self, device_id: str, kind: str) -> list[Received]:
        return [m for m in self.messages if m.topic == f"ewg/v1/{device_id}/{kind}"]


class Subscriber:
    """Records everything under ``ewg/v1/#`` (QoS 1)."""

    def __init__(self, port: int, client_id: str) -> None:
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)

        def on_message(c: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
            with self._lock:
                self.messages.append(
                    Received(time.time_ns() // 1_000_000, msg.topic, bytes(msg.payload), msg.retain)
                )

        def on_connect(c: mqtt.Client, u: Any, f: Any, rc: Any, p: Any) -> None:
            c.subscribe("ewg/v1/#", qos=1)

        def on_subscribe(c: mqtt.Client, u: Any, mid: int, rcs: Any, p: Any) -> None:
            subscribed.set()

        self.client.on_message = on_message
        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10), "no SUBACK"

    def settle(self, expected: int, timeout_s: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= expected:
                    break
            time.sleep(0.05)
        time.sleep(0.2)  # anything extra would show up as a count mismatch
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    """Run the incidents and malformed scenarios at once against one broker, record it all."""
    directory = tmp_path_factory.mktemp("broker")
    broker = Mosquitto(directory).start()
    port = broker.port
    try:
        sub = Subscriber(port, "recorder")
        scenarios = {name: scenario(name) for name in ("incidents", "malformed")}
        truth_files = {name: directory / f"{name}.truth.jsonl" for name in scenarios}
        reports: dict[str, SimulationReport] = {}
        errors: list[BaseException] = []

        def run(name: str) -> None:
            try:
                sim = Simulator(
                    scenarios[name],
                    f"mqtt://127.0.0.1:{port}",
                    qos=1,
                    truth_path=truth_files[name],
                    profiles=PROFILES,
                )
                reports[name] = sim.run()
            except BaseException as exc:  # reported below, in the test thread
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(n,)) for n in scenarios]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        expected = sum(r.total for r in reports.values())
        messages = sub.settle(expected)
        sub.close()
        profile_of = {d.id: PROFILES[d.profile] for s in scenarios.values() for _, d in s.devices()}
        yield Recording(messages, reports, truth_files, scenarios, profile_of, port)
    finally:
        broker.stop()


class _NotFinite(ValueError):
    pass


def _refuse_constant(token: str) -> float:
    raise _NotFinite(token)


def classify(msg: Received, profile_of: dict[str, Profile]) -> str:
    """Judge one message against the EWG device contract: "ok" or the rejection reason."""
    parts = split_topic(msg.topic)
    assert parts is not None and parts[1] in ("telemetry", "event", "status"), msg.topic
    device_id, kind = parts
    profile = profile_of.get(device_id)
    if profile is None:
        return "unknown_device"
    if len(msg.payload) > OVERSIZE:
        return "oversize"
    if kind == "status":
        return "ok" if msg.payload in (b"online", b"offline") else "bad_status"
    try:
        body = json.loads(msg.payload.decode("utf-8"), parse_constant=_refuse_constant)
    except _NotFinite:
        return "not_finite"
    except (UnicodeDecodeError, ValueError):
        return "not_json"
    if kind == "event":
        ok = (
            isinstance(body, dict)
            and set(body) == {"ts", "type", "detail"}
            and isinstance(body["ts"], int)
            and body["type"] in profile.events
            and isinstance(body["detail"], dict)
        )
        return "ok" if ok else "bad_event"
    items = body if isinstance(body, list) else [body]
    for item in items:
        if not (
            isinstance(item, dict)
            and set(item) == {"ts", "values"}
            and isinstance(item["values"], dict)
            and item["values"]
        ):
            return "bad_shape"
    for item in items:
        if not isinstance(item["ts"], int) or isinstance(item["ts"], bool):
            return "bad_timestamp"
        if item["ts"] > msg.arrived_ms + DAY_MS:
            return "ts_future"
        encoder = FieldEncoder(profile)
        for key, raw in item["values"].items():
            mapping = profile.fields.get(key)
            metric = mapping.metric if mapping else key
            spec = profile.metrics.get(metric)
            if spec is None:
                return "unknown_metric"
            if spec.kind == "bool":
                if not isinstance(raw, bool):
                    return "wrong_type"
                continue
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                return "wrong_type"
            value = float(encoder.decode({key: raw})[metric])
            if not spec.min <= value <= spec.max:
                return "out_of_range"
    return "ok"


def canonical(rec: Recording, device_id: str) -> list[tuple[int, dict[str, Any]]]:
    """Every well-formed reading of a device, decoded to canonical metrics, by timestamp."""
    encoder = FieldEncoder(rec.profile_of[device_id])
    out = []
    for msg in rec.of(device_id, "telemetry"):
        if classify(msg, rec.profile_of) != "ok":
            continue
        body = json.loads(msg.payload)
        for item in body if isinstance(body, list) else [body]:
            out.append((item["ts"], encoder.decode(item["values"])))
    return sorted(out, key=lambda x: x[0])


def test_everything_published_arrived(recording: Recording) -> None:
    for report in recording.reports.values():
        assert report.failed == 0 and report.unacknowledged == 0 and not report.stopped_early
        assert "valid readings" in report.summary()
    counted: Counter[str] = Counter()
    for report in recording.reports.values():
        counted.update(report.published)
    arrived = Counter(split_topic(m.topic)[1] for m in recording.messages)  # type: ignore[index]
    assert arrived == counted


def test_valid_readings_is_what_a_gateway_must_store(recording: Recording) -> None:
    unique: set[tuple[str, str, int]] = set()
    for msg in recording.messages:
        device_id, kind = split_topic(msg.topic)  # type: ignore[misc]
        if kind != "telemetry" or classify(msg, recording.profile_of) != "ok":
            continue
        body = json.loads(msg.payload)
        for item in body if isinstance(body, list) else [body]:
            unique.update((device_id, key, item["ts"]) for key in item["values"])
    assert len(unique) == sum(r.valid_readings for r in recording.reports.values())


def test_normal_messages_follow_the_contract_and_the_profile(recording: Recording) -> None:
    verdicts = Counter(classify(m, recording.profile_of) for m in recording.messages)
    bad = {reason: n for reason, n in verdicts.items() if reason != "ok"}
    assert set(bad) == set(MALFORMED_REASONS)  # nothing else is wrong with anything
    assert verdicts["ok"] > 250
    first = min(r.started_ms for r in recording.reports.values())
    last = max(r.ended_ms for r in recording.reports.values())
    for msg in recording.messages:
        if classify(msg, recording.profile_of) == "ok" and not msg.topic.endswith("/status"):
            body = json.loads(msg.payload)
            for item in body if isinstance(body, list) else [body]:
                assert first <= item["ts"] <= last


def test_malformed_bursts_match_the_truth_file(recording: Recording) -> None:
    expected: Counter[str] = Counter()
    for name, path in recording.truth_files.items():
        for record in read_truth(path):
            if record.kind == "malformed":
                expected.update(record.malformed)
                assert record.messages == sum(record.malformed.values())
        assert Counter(recording.reports[name].malformed) == Counter(
            {k: v for t in recording.reports[name].truth for k, v in t.malformed.items()}
        )
    seen = Counter(classify(m, recording.profile_of) for m in recording.messages)
    del seen["ok"]
    assert seen == expected
    malformed = recording.truth("malformed", "m1-efm")
    assert malformed.malformed == {reason: 2 for reason in MALFORMED_REASONS}
    ghost = malformed.detail["unknown_device_id"]
    assert ghost not in recording.profile_of and len(recording.of(ghost, "telemetry")) == 2


def test_vendor_devices_speak_their_own_field_names(recording: Recording) -> None:
    normal = [
        json.loads(m.payload)
        for m in recording.of("t1-tuya", "telemetry")
        if classify(m, recording.profile_of) == "ok"
    ]
    assert normal and all(
        set(b["values"]) == {"smoke_sensor_value", "battery_percentage", "temp_current"}
        for b in normal
    )
    assert all(isinstance(b["values"]["temp_current"], int) for b in normal)  # 0.1 °C steps


def test_leakage_creep_crosses_300_ma_after_it_starts(recording: Recording) -> None:
    truth = recording.truth("leakage_creep")
    readings = [(ts, v["residual_current_ma"]) for ts, v in canonical(recording, "t1-efm")]
    before = [v for ts, v in readings if ts < truth.start_ms]
    assert before and max(before) < 240  # normal leakage, below even the pre-warning
    over = [ts for ts, v in readings if v > 300]
    assert over and over[0] >= truth.start_ms
    assert over[0] == truth.crossed_ms
    warned = next(ts for ts, v in readings if v > 240)  # the yellow pre-warning comes first
    assert truth.start_ms <= warned == truth.detail["prewarning_ms"] < truth.crossed_ms
    after = [v for ts, v in readings if truth.crossed_ms <= ts < truth.end_ms]
    assert min(after) > 300 - 20  # stays above the alarm minus hysteresis
    assert truth.end_ms - truth.crossed_ms >= 10_000 + 2_000  # rule delay_s 10 + two readings
    assert (truth.expected_rule, truth.expected_severity) == ("residual_current", "orange")


@pytest.mark.parametrize(
    ("kind", "device_id"),
    [
        ("cable_overheat", "t2-efm"),
        ("dust_blockage", "t2-dust"),
        ("gas_leak", "t3-gas"),
        ("fire", "t1-heat"),
    ],
)
def test_every_ramp_crosses_when_the_truth_says_and_holds(
    recording: Recording, kind: str, device_id: str
) -> None:
    truth = recording.truth(kind, device_id)
    profile = recording.profile_of[device_id]
    rule = next(r for r in profile.rules if r.name == truth.expected_rule)
    assert truth.metric == rule.metric and truth.threshold == rule.alarm.value
    readings = [(ts, float(v[rule.metric])) for ts, v in canonical(recording, device_id)]
    first_over = next(ts for ts, v in readings if v > rule.alarm.value)
    assert first_over == truth.crossed_ms and first_over >= truth.start_ms
    held = [v for ts, v in readings if truth.crossed_ms <= ts < truth.end_ms]
    assert min(held) > rule.alarm.value - rule.hysteresis
    assert truth.end_ms - truth.crossed_ms >= (rule.delay_s + 2) * 1000
    assert (
        max(v for ts, v in readings if ts < truth.start_ms) < (rule.prewarning or rule.alarm).value
    )


def test_fire_sends_smoke_alarm_then_clear(recording: Recording) -> None:
    truth = recording.truth("fire", "t1-smoke")
    events = [json.loads(m.payload) for m in recording.of("t1-smoke", "event")]
    assert [(e["type"], e["ts"]) for e in events] == [
        ("smoke_alarm", truth.start_ms),
        ("smoke_clear", truth.end_ms),
    ]
    assert (truth.expected_rule, truth.expected_severity) == ("smoke_alarm", "red")


def test_offline_device_goes_quiet_and_comes_back(recording: Recording) -> None:
    truth = recording.truth("offline")
    statuses = [m.payload for m in recording.of("t3-smoke", "status")]
    assert statuses == [b"online", b"offline", b"online"]
    stamps = [ts for ts, _ in canonical(recording, "t3-smoke")]
    assert not [ts for ts in stamps if truth.start_ms <= ts < truth.end_ms]
    assert any(ts >= truth.end_ms for ts in stamps)
    assert (truth.expected_rule, truth.expected_severity) == ("offline", "blue")


def test_statuses_are_retained(recording: Recording) -> None:
    late = Subscriber(recording.port, "late-joiner")
    devices = set(recording.profile_of)
    retained = late.settle(len(devices), timeout_s=5)
    late.close()
    by_device = {split_topic(m.topic)[0]: m for m in retained}  # type: ignore[index]
    assert set(by_device) == devices
    assert all(m.retain and m.payload == b"online" for m in by_device.values())


def test_duplicates_arrive_twice(recording: Recording) -> None:
    truth = recording.truth("duplicates")
    counts: Counter[bytes] = Counter(m.payload for m in recording.of("t3-pm", "telemetry"))
    inside = {
        p: n for p, n in counts.items() if truth.start_ms <= json.loads(p)["ts"] < truth.end_ms
    }
    outside = {p: n for p, n in counts.items() if p not in inside}
    assert len(inside) == truth.messages >= 4
    assert set(inside.values()) == {2}
    assert set(outside.values()) == {1}


def test_backfill_arrives_as_one_list_of_past_readings(recording: Recording) -> None:
    truth = recording.truth("backfill")
    lists = [m for m in recording.of("t2-pm", "telemetry") if m.payload.startswith(b"[")]
    assert len(lists) == 1
    batch = json.loads(lists[0].payload)
    assert len(batch) == truth.messages >= 7
    stamps = [item["ts"] for item in batch]
    assert stamps == sorted(stamps)
    assert all(truth.start_ms <= ts < truth.end_ms for ts in stamps)
    assert all(ts < lists[0].arrived_ms for ts in stamps)
    assert {b - a for a, b in itertools.pairwise(stamps)} == {1000}
    singles = [
        json.loads(m.payload)["ts"]
        for m in recording.of("t2-pm", "telemetry")
        if not m.payload.startswith(b"[")
    ]
    assert not [ts for ts in singles if truth.start_ms <= ts < truth.end_ms]


def test_truth_file_is_the_report(recording: Recording) -> None:
    for name, path in recording.truth_files.items():
        assert read_truth(path) == recording.reports[name].truth
    records = recording.reports["incidents"].truth
    assert {r.kind for r in records} == {i.kind for i in recording.scenarios["incidents"].incidents}
    sites = {d.id: s.id for s in recording.scenarios["incidents"].sites for d in s.devices}
    for r in records:
        assert r.site_id == sites[r.device_id] and r.start_ms < r.end_ms
        if r.expected_rule not in (None, "offline", "smoke_alarm"):
            rules = {x.name for x in recording.profile_of[r.device_id].rules}
            assert r.expected_rule in rules and r.crossed_ms is not None


async def test_runs_from_asyncio_and_stops_early(
    mosquitto: Mosquitto,
    tmp_path: Path,
) -> None:
    stop = threading.Event()
    sim = Simulator(
        scenario("incidents"),
        mosquitto.url,
        truth_path=tmp_path / "t.jsonl",
        profiles=PROFILES,
    )
    task = asyncio.create_task(asyncio.to_thread(sim.run, stop))
    await asyncio.sleep(3.0)  # the fire starts at 2 s
    stop.set()
    report = await asyncio.wait_for(task, timeout=10)
    assert report.stopped_early and report.published["telemetry"] > 10
    assert report.ended_ms - report.started_ms < 5000
    # Incidents under way were cut off at the stop and closed cleanly (fire cleared, ...).
    fire = next(t for t in report.truth if t.kind == "fire" and t.device_id == "t1-smoke")
    assert fire.end_ms == report.ended_ms
    assert report.published["event"] == 2
    assert read_truth(tmp_path / "t.jsonl") == report.truth


def test_simulate_runs_a_file_for_a_duration(
    mosquitto: Mosquitto,
    tmp_path: Path,
) -> None:
    report = simulate(
        mosquitto.url,
        SCENARIOS / "malformed.yaml",
        tmp_path / "truth.jsonl",
        duration_s=1.5,
    )
    assert not report.stopped_early
    assert report.published["status"] == 2 and report.published["telemetry"] >= 4
    assert (tmp_path / "truth.jsonl").exists()


# --- broker-free replay --------------------------------------------------------------------

NIGHT_MS = 1_796_065_200_000  # 2026-12-01 03:00 China time: light load, cold
DAY_MS_START = 1_796_104_800_000  # 2026-12-01 14:00 China time: full load, warm


def replay(name: str | Scenario, start_ms: int) -> tuple[list[Received], SimulationReport]:
    s = scenario(name) if isinstance(name, str) else name
    out: list[Received] = []
    sim = Simulator(s, "mqtt://127.0.0.1:1", profiles=PROFILES)
    report = sim.replay(lambda t, p, r: out.append(Received(0, t, p, r)), start_ms)
    for msg in out:
        msg.arrived_ms = report.ended_ms
    return out, report


def test_replay_is_deterministic() -> None:
    first, report = replay("incidents", NIGHT_MS)
    second, again = replay("incidents", NIGHT_MS)
    assert [(m.topic, m.payload) for m in first] == [(m.topic, m.payload) for m in second]
    assert report.truth == again.truth and report.total == len(first)


@pytest.mark.parametrize("start_ms", [NIGHT_MS, DAY_MS_START], ids=["night", "day"])
def test_every_threshold_incident_crosses_day_or_night(start_ms: int) -> None:
    messages, report = replay("incidents", start_ms)
    profile_of = {d.id: PROFILES[d.profile] for _, d in scenario("incidents").devices()}
    verdicts = Counter(classify(m, profile_of) for m in messages)
    assert {r for r in verdicts if r != "ok"} == set(MALFORMED_REASONS)
    for truth in report.truth:
        if truth.metric is None:
            continue
        assert truth.crossed_ms is not None, truth
        rule = next(r for r in profile_of[truth.device_id].rules if r.name == truth.expected_rule)
        assert truth.end_ms - truth.crossed_ms >= (rule.delay_s + 2) * 1000, truth


def test_demo_town_alerts_within_a_minute() -> None:
    town = small_town()
    _, report = replay(town, NIGHT_MS)
    profile_of = {d.id: PROFILES[d.profile] for _, d in town.devices()}
    interval = {d.id: d.interval_s for _, d in town.devices()}
    alerted = set()
    for truth in report.truth:
        if truth.expected_rule is None or truth.crossed_ms is None:
            continue
        delay = 0.0
        rules = [r for r in profile_of[truth.device_id].rules if r.name == truth.expected_rule]
        if rules:
            delay = rules[0].delay_s + interval[truth.device_id] * rules[0].delay_samples
        if truth.crossed_ms - report.started_ms + delay * 1000 <= 60_000:
            alerted.add((truth.kind, truth.expected_rule))
    assert alerted >= {
        ("fire", "smoke_alarm"),
        ("fire", "temperature"),
        ("leakage_creep", "residual_current"),
        ("cable_overheat", "cable_temp_1"),
        ("dust_blockage", "pressure_diff"),
    }


# --- array-at-a-time generation for evaluations (simulator.batch) ---------------------------


def test_sample_many_matches_the_per_sample_models() -> None:
    profile = PROFILES["electrical_fire_monitor"]
    ts = [1_796_054_400_000 + i * 60_000 for i in range(1440)]
    one = DeviceSignals(profile, "efm-a", 5)
    per_sample = [one.sample(t) for t in ts]
    many = DeviceSignals(profile, "efm-a", 5).sample_many(np.array(ts, dtype=np.int64))
    again = DeviceSignals(profile, "efm-a", 5).sample_many(np.array(ts, dtype=np.int64))
    for metric, values in many.items():
        spec = profile.metrics[metric]
        assert values.shape == (1440,)
        assert ((values >= spec.min) & (values <= spec.max)).all()
        assert np.array_equal(values, again[metric])  # reproducible from the seed
        mean = float(np.mean([float(s[metric]) for s in per_sample]))
        assert abs(float(values.mean()) - mean) <= 0.05 * abs(mean) + 0.5, metric
    # a day of load follows the working-day curve: busy at 10:00, quiet at 03:00 (UTC+8)
    current = many["current_a"]
    assert current[10 * 60] > 2 * current[3 * 60]
    meter = DeviceSignals(PROFILES["power_meter"], "pm-a", 5).sample_many(np.array(ts))
    assert (np.diff(meter["energy_kwh"]) >= 0).all()


def _mini(incidents: list[dict[str, Any]], **site: Any) -> Scenario:
    return parse_scenario(
        {
            "name": "mini",
            "duration_s": 6 * 3600,
            "sites": [
                {
                    "id": "s1", "name": "厂", "village": "村", "industry": "dust_factory",
                    "enterprise": "e1", **site,
                    "devices": [
                        {"id": "efm", "profile": "electrical_fire_monitor", "interval_s": 60,
                         "metrics": ["residual_current_ma", "voltage_v", "cable_temp_1_c"]},
                        {"id": "pm", "profile": "power_meter", "interval_s": 900},
                        {"id": "smoke", "profile": "smoke_alarm_nbiot", "interval_s": 3600},
                        {"id": "heat", "profile": "heat_detector", "interval_s": 15},
                    ],
                }
            ],
            "incidents": incidents,
        },
        "<mini>",
        PROFILES,
    )  # fmt: skip


def _batch_series(
    batch: Batch, device: str, metric: str
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    d, m = batch.device_ids.index(device), batch.metrics.index(metric)
    sel = (batch.device == d) & (batch.metric == m)
    return batch.arrival_ms[sel], batch.ts_ms[sel], batch.value[sel]


def test_batch_runs_incidents_through_their_own_hooks() -> None:
    H = 3600
    scenario = _mini(
        [
            {"kind": "offline", "device": "efm", "at_s": 1 * H, "duration_s": 1800,
             "params": {"announce": True}},
            {"kind": "backfill", "device": "efm", "at_s": 2 * H, "duration_s": 1800},
            {"kind": "stuck", "device": "efm", "at_s": 3 * H, "duration_s": 1800,
             "params": {"metric": "voltage_v"}},
            {"kind": "pinned", "device": "efm", "at_s": 4 * H, "duration_s": 1800,
             "params": {"metric": "cable_temp_1_c"}},
            {"kind": "spiky", "device": "efm", "at_s": 5 * H, "duration_s": 1800,
             "params": {"metric": "residual_current_ma", "jump_frac": 0.2}},
            {"kind": "fire", "device": "smoke", "at_s": 30 * 60, "duration_s": 600,
             "params": {"heat_device": "heat"}},
        ]
    )  # fmt: skip
    start = monday_start_ms()
    batch = generate(scenario, start, PROFILES)
    assert (np.diff(batch.arrival_ms) >= 0).all()
    arrival, ts, _ = _batch_series(batch, "efm", "residual_current_ma")
    offset = (ts - start) / 1000
    assert not ((offset >= H) & (offset < 1.5 * H)).any()  # nothing while offline
    held = (offset >= 2 * H) & (offset < 2.5 * H)
    assert held.sum() == 30 and (arrival[held] == start + int(2.5 * H * 1000)).all()  # backfill
    offline = [s for _, s in batch.statuses if s.device_id == "efm" and not s.online]
    assert [s.ts_ms for s in offline] == [start + H * 1000]
    _, ts_v, volts = _batch_series(batch, "efm", "voltage_v")
    stuck = volts[((ts_v - start) / 1000 >= 3 * H) & ((ts_v - start) / 1000 < 3.5 * H)]
    assert len(set(stuck.tolist())) == 1 and len(set(volts.tolist())) > 10
    _, ts_c, cable = _batch_series(batch, "efm", "cable_temp_1_c")
    pinned = cable[((ts_c - start) / 1000 >= 4 * H) & ((ts_c - start) / 1000 < 4.5 * H)]
    assert (pinned == PROFILES["electrical_fire_monitor"].metrics["cable_temp_1_c"].max).all()
    spiky = _batch_series(batch, "efm", "residual_current_ma")[2][
        (offset >= 5 * H) & (offset < 5.5 * H)
    ]
    assert np.abs(np.diff(spiky)).min() > 500  # 0.2 x 3000 mA, every other reading
    events = [(e.device_id, e.type) for _, e in batch.events]
    assert events == [("smoke", "smoke_alarm"), ("smoke", "smoke_clear")]
    _, _, heat = _batch_series(batch, "heat", "temperature_c")
    assert heat.max() > 70
    kinds = {t.kind for t in batch.truth}
    assert kinds == {"offline", "backfill", "stuck", "pinned", "spiky", "fire"}


def test_shutdowns_drop_the_load_and_illegal_production_brings_it_back() -> None:
    H = 3600
    scenario = _mini(
        [{"kind": "illegal_production", "device": "pm", "at_s": 4 * H, "duration_s": 2 * H}],
        shutdowns=[{"at_s": 2 * H, "duration_s": 4 * H}],
    )
    start = monday_start_ms() + 8 * H * 1000  # 08:00 local: a working morning
    batch = generate(scenario, start, PROFILES)
    _, ts, kw = _batch_series(batch, "pm", "active_power_kw")
    hour = (ts - start) / 3_600_000
    working, shut, illegal = kw[hour < 2], kw[(hour >= 2) & (hour < 4)], kw[hour >= 4]
    assert shut.max() < 0.2 * working.min()
    assert illegal.min() > 5 * shut.max()
    truth = next(t for t in batch.truth if t.kind == "illegal_production")
    assert truth.expected_rule == "illegal_production"


def test_production_incidents_must_lie_in_a_shutdown() -> None:
    with pytest.raises(ScenarioError, match="must lie inside one of site 's1'"):
        _mini([{"kind": "holiday_load", "device": "pm", "at_s": 60, "duration_s": 600}])
    with pytest.raises(ScenarioError, match="no number metric 'gas_lel_pct'"):
        _mini([{"kind": "stuck", "device": "efm", "at_s": 60, "duration_s": 600,
                "params": {"metric": "gas_lel_pct"}}])  # fmt: skip


def test_the_evaluation_town_covers_every_evaluation_kind_in_a_week() -> None:
    week = evaluation_town(days=7)
    kinds = {i.kind for i in week.incidents}
    assert set(EVALUATION_KINDS) <= kinds
    assert {"fire", "leakage_creep", "offline", "backfill", "duplicates"} <= kinds
    labels = {(i.kind, i.label) for i in week.incidents}
    assert {("leakage_creep", "slow"), ("pressure_drift", "within_noise"),
            ("holiday_load", "not_production")} <= labels  # fmt: skip
    short = evaluation_town(days=2)
    assert 0 < len(short.incidents) < len(week.incidents)
    assert all(i.end_s <= 2 * 86_400 for i in short.incidents)
