"""``ewg evaluate``: the detectors scored on the labelled simulated town.

The full week costs about 40 CPU seconds; the test runs the first five days (still every
incident kind, three fires, three leakages one of them the 14-hour creep, 220 device-days
of quiet), so a regression in any detector that misses a fire or a leakage, or floods a
site with false alarms, fails here before it reaches a duty officer.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from alerts.model import AlertClass, Severity, Signal
from detectors.evaluate import (
    HAZARD_FALSE_ALARM_BUDGET,
    SITE_DAY_FOLLOW_UP,
    Evaluation,
    Pager,
    RaisedAlert,
    evaluate,
    format_table,
    score,
)
from gateway.cli import app
from gateway.profiles import load_profiles
from simulator.batch import generate
from simulator.evaluation import evaluation_town, monday_start_ms

#: The incident kinds of domain.md the evaluation must cover (and does, in 5 days).
DOMAIN_KINDS = {
    "fire",
    "heat_rise",
    "leakage_creep",
    "cable_overheat",
    "arc_fault",
    "dust_blockage",
    "pressure_drift",
    "hopper_overheat",
    "spark",
    "gas_leak",
    "gas_leak_level1",
    "illegal_production",
    "offline",
    "stuck",
    "pinned",
    "spiky",
}


@pytest.fixture(scope="module")
def week() -> Evaluation:
    return evaluate(days=5)


def test_every_fire_and_every_leakage_is_detected(week: Evaluation) -> None:
    fires = [r for r in week.rows if r.detector == "any" and r.incident.startswith("fire")]
    leaks = [r for r in week.rows if r.detector == "any" and r.incident.startswith("leakage")]
    assert sum(r.incidents for r in fires) >= 3 and sum(r.incidents for r in leaks) >= 3
    assert any(r.incident == "leakage_creep (slow)" for r in leaks)
    assert week.recall("fire") == 1.0, [r.to_json() for r in fires]
    assert week.recall("leakage_creep") == 1.0, [r.to_json() for r in leaks]


def test_false_alarms_stay_within_the_budget(week: Evaluation) -> None:
    assert week.days == 5 and week.devices >= 40
    assert week.hazard_false_per_device_day <= HAZARD_FALSE_ALARM_BUDGET, [
        (a.device_id, a.rule) for a in week.false_alarms if a.alert_class == "hazard"
    ]
    assert week.worst_site_day <= SITE_DAY_FOLLOW_UP, week.worst_site_day_at
    assert week.within_budget


def test_every_domain_incident_kind_is_scored(week: Evaluation) -> None:
    scored = {r.incident.split(" ")[0] for r in week.rows if r.detector == "any"}
    assert scored >= DOMAIN_KINDS
    # hazard incidents with a plain threshold in the shipped profiles are all found
    for kind in ("cable_overheat", "arc_fault", "dust_blockage", "gas_leak", "spark", "offline"):
        assert week.recall(kind) == 1.0, kind


def test_the_scoring_counts_misses_and_false_alarms() -> None:
    """Scoring itself: no alert finds nothing; an alert away from every incident is false."""
    profiles = load_profiles()
    batch = generate(evaluation_town(days=2), monday_start_ms(), profiles)
    silent = score(batch, [], profiles)
    assert all(r.detected == 0 for r in silent.rows) and silent.hazard_false_alarms == 0
    fire = next(t for t in batch.truth if t.kind == "fire")
    alerts = [
        # the fire's smoke alarm, 3 s after it started: a detection with a 3 s delay
        RaisedAlert(fire.device_id, fire.site_id, "smoke_alarm", "event", "hazard", "fire",
                    "red", fire.start_ms + 3000),
        # the same device, a day later: a false alarm
        RaisedAlert(fire.device_id, fire.site_id, "smoke_alarm", "event", "hazard", "fire",
                    "red", fire.start_ms + 86_400_000),
        # a fault alert on the fire's device does not detect a fire
        RaisedAlert(fire.device_id, fire.site_id, "tamper", "event", "fault", "tamper",
                    "yellow", fire.start_ms + 5000),
    ]  # fmt: skip
    scored = score(batch, alerts, profiles)
    row = next(r for r in scored.rows if r.detector == "event" and r.incident == "fire")
    assert row.detected == 1 and row.delays_s == [3.0]
    assert scored.hazard_false_alarms == 1
    event = next(t for t in scored.totals if t.detector == "event")
    assert (event.alerts, event.matched, event.false_alarms) == (3, 1, 2)


def test_the_table_and_the_cli_json(week: Evaluation) -> None:
    table = format_table(week)
    assert "| incident | detector | incidents | detected | recall |" in table
    assert "| fire | any | " in table and "per device-day" in table
    as_json = CliRunner().invoke(app, ["evaluate", "--days", "1", "--json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert data["days"] == 1 and data["hazard_false_alarm_budget"] == HAZARD_FALSE_ALARM_BUDGET
    assert {"rows", "detectors", "within_budget", "worst_site_day_false_alarms"} <= set(data)
    # what was missed is listed, so a detector's owner can look at it
    short = {r.incident for r in week.rows if r.detector == "any" and r.detected < r.incidents}
    assert {m.name for m in week.missed} == short


def test_the_pager_counts_re_fires_but_holds_a_flapping_alert_as_one() -> None:
    def sig(active: bool, minute: float) -> Signal:
        return Signal("efm-1", "residual_current", active, int(minute * 60_000), 310.0,
                      Severity.ORANGE, AlertClass.HAZARD, "leakage", "")  # fmt: skip

    pager = Pager()
    assert pager.opens(sig(True, 0))  # a new alert
    assert not pager.opens(sig(True, 1))  # still raised: an update
    assert not pager.opens(sig(False, 2))
    assert pager.opens(sig(True, 30))  # cleared, and raised again half an hour later
    # now it flips every minute: after the damper's 4 transitions it is held as one
    flips = [pager.opens(sig(m % 2 == 0, 31 + m)) for m in range(1, 12)]
    assert flips.count(True) <= 1
    # quiet for longer than the settle time, then a new raise pages again
    assert not pager.opens(sig(False, 60))
    assert pager.opens(sig(True, 120))


def test_pooled_towns_add_up_their_incidents_and_device_days() -> None:
    one = evaluate(days=1, seed=11)
    other = evaluate(days=1, seed=12)
    both = evaluate(days=1, seed=11, seeds=2)
    assert both.seeds == [11, 12]
    for row in (r for r in both.rows if r.detector == "any"):
        single = [r for e in (one, other) for r in e.rows if r.detector == "any"
                  and r.incident == row.incident]  # fmt: skip
        assert row.incidents == sum(r.incidents for r in single)
        assert row.detected == sum(r.detected for r in single)
    assert both.hazard_false_alarms == one.hazard_false_alarms + other.hazard_false_alarms
    days = {t.detector: t.device_days for t in both.totals}
    assert days["offline"] == 2 * next(t.device_days for t in one.totals if t.detector == "offline")
