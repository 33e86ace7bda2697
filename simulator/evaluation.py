"""The labelled town ``ewg evaluate`` scores the detectors on.

Every incident kind in ``domain.md`` happens at least twice, at different sites and hours,
and the hard variants sit beside the easy ones: a leakage that creeps for fourteen hours, a
pressure drift slower than the filter's own sawtooth, a heat rise that never reaches the
fixed threshold, load on a holiday that is not production. Devices report at field-like
intervals (electrical monitors every minute, power meters every 15 minutes, smoke alarms
hourly, heat detectors every 15 s), and most of the week is quiet, so the false alarms per
device-day mean something. Some devices misbehave on purpose (silent and announced outages,
a backfill, duplicates, stuck, pinned and spiky sensors).

The town is built from :func:`simulator.town.small_town`'s sites, so names and villages look
like the demo's; times are offsets from a local (Asia/Shanghai) Monday midnight.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import TypeAdapter

from simulator.scenario import DeviceSpec, IncidentSpec, Scenario, ShutdownSpec, SiteSpec
from simulator.town import small_town

DAY_S = 86_400.0
HOUR_S = 3_600.0

#: Field-like reporting intervals (seconds) for the evaluation.
FIELD_INTERVALS = {
    "smoke_alarm_nbiot": 3600.0,
    "smoke_alarm_tuya": 3600.0,
    # Monitored heat detectors report at once while the temperature moves (practice); a
    # steady 15 s stands in for that, enough points for a rate-of-rise over 2 minutes.
    "heat_detector": 15.0,
    "electrical_fire_monitor": 60.0,
    "dust_collector_monitor": 30.0,
    "gas_detector": 30.0,
    "power_meter": 900.0,
}
#: What each device type reports here (all rules' metrics, not every spare channel).
FIELD_METRICS: dict[str, list[str]] = {
    "electrical_fire_monitor": [
        "residual_current_ma",
        "cable_temp_1_c",
        "cable_temp_2_c",
        "voltage_v",
        "current_a",
        "arc_faults_per_s",
    ],
    "dust_collector_monitor": [
        "pressure_diff_pa",
        "hopper_temp_c",
        "spark_count",
        "fan_running_bool",
    ],
}

_INCIDENT: TypeAdapter[IncidentSpec] = TypeAdapter(IncidentSpec)


def monday_start_ms(year: int = 2026, month: int = 11, day: int = 30) -> int:
    """Epoch ms of local midnight starting the evaluation (2026-11-30 is a Monday).

    >>> monday_start_ms()
    1795968000000
    """
    start = datetime(year, month, day, tzinfo=ZoneInfo("Asia/Shanghai"))
    return int(start.timestamp() * 1000)


def _plan(days: int) -> list[tuple[float, str, str, float, dict[str, Any], str]]:
    """(at, device, kind, duration, params, label); times are offsets in seconds."""
    D, H = DAY_S, HOUR_S
    plan: list[tuple[float, str, str, float, dict[str, Any], str]] = [
        # fire: smoke alarm event plus a heat detector warming up, at night and by day
        (1 * D + 3 * H, "v1-s2-smoke1", "fire", 600, {"heat_device": "v1-s2-heat"}, ""),
        (3 * D + 14 * H, "v2-s2-smoke2", "fire", 600, {"heat_device": "v2-s2-heat"}, ""),
        (5 * D + 19 * H, "v1-s1-smoke1", "fire", 600, {"heat_device": "v1-s1-heat"}, ""),
        (2 * D + 10 * H, "v2-s3-smoke1", "fire", 600, {"heat": False}, "smoke_only"),
        # heat rising ~12 °C/min (past the ~10 °C/min of rate-of-rise class R, practice) but
        # stopping short of the fixed threshold
        (4 * D + 12 * H, "v2-s1-heat", "heat_rise", 900, {"ramp_s": 120}, ""),
        (6 * D + 2 * H, "v1-s2-heat", "heat_rise", 900, {"ramp_s": 120}, ""),
        # residual current: an hour-long creep, and a fourteen-hour one (hard)
        (1 * D + 10 * H, "v1-s1-efm", "leakage_creep", 3600, {"ramp_s": 1200}, ""),
        (4 * D + 20 * H, "v2-s3-efm", "leakage_creep", 3600, {"ramp_s": 900}, ""),
        (2 * D, "v1-s3-efm", "leakage_creep", 16 * H, {"ramp_s": 14 * H}, "slow"),
        (5 * D, "v2-s2-efm", "leakage_creep", 16 * H, {"ramp_s": 14 * H}, "slow"),
        # cable overheating and arc faults
        (5 * D + 15 * H, "v1-s3-efm", "cable_overheat", 3600, {"ramp_s": 1800}, ""),
        (3 * D + 9 * H, "v2-s6-efm", "cable_overheat", 3600, {"ramp_s": 1800}, ""),
        (6 * D + 11 * H, "v1-s5-efm", "cable_overheat", 3600, {"ramp_s": 1800}, ""),
        (2 * D + 18 * H, "v2-s1-efm", "arc_fault", 600, {"ramp_s": 0}, ""),
        (4 * D + 8 * H, "v1-s6-efm", "arc_fault", 600, {"ramp_s": 0}, ""),
        # dust collectors: blockage, a drift within the noise (hard), hopper heat, sparks
        (1 * D + 9 * H, "v1-s4-dust", "dust_blockage", 3600, {"ramp_s": 1800}, ""),
        (5 * D + 10 * H, "v2-s4-dust", "dust_blockage", 3600, {"ramp_s": 1800}, ""),
        (3 * D, "v1-s4-dust", "pressure_drift", 30 * H, {"ramp_s": 24 * H}, "within_noise"),
        (2 * D, "v2-s4-dust", "pressure_drift", 30 * H, {"ramp_s": 24 * H}, "within_noise"),
        (5 * D + 14 * H, "v1-s4-dust", "hopper_overheat", 3600, {"ramp_s": 1800}, ""),
        (1 * D + 15 * H, "v2-s4-dust", "hopper_overheat", 3600, {"ramp_s": 1800}, ""),
        (6 * D + 10 * H, "v1-s4-dust", "spark", 300, {"ramp_s": 0}, ""),
        (4 * D + 16 * H, "v2-s4-dust", "spark", 300, {"ramp_s": 0}, ""),
        # gas: level 2 and level 1
        (2 * D + 11 * H, "v1-s5-gas1", "gas_leak", 1800, {"ramp_s": 600}, ""),
        (5 * D + 3 * H, "v2-s5-gas2", "gas_leak", 1800, {"ramp_s": 600}, ""),
        (4 * D + 15 * H, "v1-s5-gas2", "gas_leak_level1", 1800, {"ramp_s": 600}, ""),
        (1 * D + 20 * H, "v2-s5-gas1", "gas_leak_level1", 1800, {"ramp_s": 600}, ""),
        # production during an ordered shutdown, and holiday load that is not production
        (3 * D + 20 * H, "v1-s6-pm", "illegal_production", 8 * H, {}, "night_shift"),
        (6 * D + 8 * H, "v1-s4-pm", "illegal_production", 10 * H, {}, "day_shift"),
        (4 * D + 9 * H, "v2-s6-pm", "holiday_load", 5 * H, {}, "not_production"),
        # outages: silent and announced
        (1 * D + 6 * H, "v2-s6-efm", "offline", 3 * H, {"announce": False}, "silent"),
        (3 * D + 12 * H, "v1-s2-efm", "offline", 2 * H, {"announce": True}, ""),
        (6 * D + 1 * H, "v2-s5-pm", "offline", 4 * H, {"announce": False}, "silent"),
        # sensor faults
        (3 * D, "v2-s1-efm", "stuck", 14 * H, {"metric": "cable_temp_1_c"}, ""),
        # no profile rule watches the leakage current for a frozen value
        (5 * D, "v2-s1-efm", "stuck", 12 * H, {"metric": "residual_current_ma"}, "residual"),
        (12 * H, "v1-s4-dust", "stuck", 8 * H, {"metric": "pressure_diff_pa"}, ""),
        (3 * D + 2 * H, "v1-s5-efm", "pinned", 3 * H, {"metric": "cable_temp_1_c"}, ""),
        # no profile rule watches the voltage for faults: shows what that costs
        (2 * D + 6 * H, "v1-s6-efm", "pinned", 4 * H, {"metric": "voltage_v"}, "voltage"),
        (4 * D + 2 * H, "v2-s3-efm", "spiky", 2 * H, {"metric": "cable_temp_2_c"}, ""),
        # misbehaving delivery: nothing should alert
        (6 * D + 3 * H, "v1-s1-efm", "backfill", 1 * H, {}, ""),
        (2 * D, "v2-s6-pm", "duplicates", 6 * H, {}, ""),
    ]
    return [p for p in plan if p[0] + p[3] <= days * DAY_S]


#: Shutdown orders and holidays per site: (site, at, duration, kind).
_SHUTDOWNS = [
    ("v1-s6", 2 * DAY_S, 4 * DAY_S, "shutdown"),
    ("v1-s4", 6 * DAY_S, 1 * DAY_S, "shutdown"),
    ("v2-s6", 4 * DAY_S, 1 * DAY_S, "holiday"),
]


def evaluation_town(days: int = 7, seed: int = 11) -> Scenario:
    """Two villages of six sites each (every industry twice), ``days`` simulated days.

    Incidents that would not fit in ``days`` are left out, so a shorter run (for a test)
    keeps the early ones; 7 days holds them all.
    """
    if days < 1:
        raise ValueError("an evaluation needs at least one day")
    base = small_town(villages=2, sites_per_village=6, seed=seed)
    enterprises = {"dust_factory", "fuel_station", "mine"}
    sites: list[SiteSpec] = []
    for site in base.sites:
        devices = [
            DeviceSpec.model_validate(
                {
                    **d.model_dump(exclude_defaults=True),
                    "interval_s": FIELD_INTERVALS[d.profile],
                    "metrics": FIELD_METRICS.get(d.profile),
                }
            )
            for d in site.devices
        ]
        extra: dict[str, Any] = {}
        if site.industry in enterprises:
            shutdowns = [
                ShutdownSpec(at_s=at, duration_s=dur, kind=kind)  # type: ignore[arg-type]
                for sid, at, dur, kind in _SHUTDOWNS
                if sid == site.id and at < days * DAY_S
            ]
            extra = {"hours": "07:00-20:00", "days": "1-6", "shutdowns": shutdowns}
        sites.append(site.model_copy(update={"devices": devices, **extra}))
    incidents = [
        _INCIDENT.validate_python(
            {
                "device": device,
                "kind": kind,
                "at_s": at,
                "duration_s": duration,
                "params": params,
                "label": label,
            }
        )
        for at, device, kind, duration, params, label in _plan(days)
    ]
    return Scenario(
        name="evaluation_town",
        description=(
            f"2 villages x 6 sites, {days} days at field-like intervals, {len(incidents)} "
            f"labelled incidents (seed {seed})"
        ),
        seed=seed,
        duration_s=days * DAY_S,
        sites=sites,
        incidents=incidents,
    )
