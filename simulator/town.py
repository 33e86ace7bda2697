"""A plausible small town for demos: villages, small premises, enterprises, and trouble.

Site mix follows the town's safety plan (domain.md): small shops, self-built rental houses and
old neighbourhoods get early fire alarms and electrical-fire monitoring; dust-handling
factories get dust-collector monitoring; fuel stations gas detection; enterprises a power
meter. Telemetry intervals are seconds, not the field's minutes or hours, and the scripted
incidents start within the first minute, so a demo shows alerts before the audience leaves.
``simulator/scenarios/demo.yaml`` is ``small_town()`` written out (a test keeps them equal).
"""

from __future__ import annotations

import numpy as np
from pydantic import TypeAdapter

from simulator.scenario import DeviceSpec, IncidentSpec, Scenario, SiteSpec

VILLAGES = ("陂头村", "长城社区", "新圩村", "石龙社区", "下围村", "白沙村", "上坪村", "龙口社区")
#: Assigned in this order, so the first four sites already cover every demo incident.
INDUSTRIES = ("small_shop", "rental_housing", "residential", "dust_factory", "fuel_station", "mine")
_STREETS = ("建设路", "人民路", "工业大道", "新村街", "环城路", "河背街")
_SHOPS = ("便利店", "五金店", "餐馆", "电动车维修店", "杂货店")
_DUST = ("木业加工厂", "铝制品抛光厂", "家具厂")

#: Demo reporting intervals in seconds (the field: hours for smoke alarms, minutes for meters).
INTERVALS = {
    "smoke_alarm_nbiot": 10.0,
    "smoke_alarm_tuya": 10.0,
    "heat_detector": 5.0,
    "electrical_fire_monitor": 5.0,
    "dust_collector_monitor": 3.0,
    "gas_detector": 3.0,
    "power_meter": 10.0,
}


_INCIDENT: TypeAdapter[IncidentSpec] = TypeAdapter(IncidentSpec)


def _village_name(i: int) -> str:
    if i < len(VILLAGES):
        return VILLAGES[i]
    return f"第{i + 1}村"


def _site(v: int, s: int, industry: str, village: str, rng: np.random.Generator) -> SiteSpec:
    site_id = f"v{v + 1}-s{s + 1}"
    street = _STREETS[int(rng.integers(len(_STREETS)))]
    number = int(rng.integers(1, 200))
    address = f"{village}{street}{number}号"
    devices: list[DeviceSpec] = []

    def add(kind: str, profile: str, name: str, **extra: object) -> None:
        devices.append(
            DeviceSpec.model_validate(
                {
                    "id": f"{site_id}-{kind}",
                    "profile": profile,
                    "name": name,
                    "interval_s": INTERVALS[profile],
                    **extra,
                }
            )
        )

    stem = village.removesuffix("村").removesuffix("社区")
    enterprise = ""
    if industry == "small_shop":
        name = f"{stem}{_SHOPS[int(rng.integers(len(_SHOPS)))]}"
        # The shop connects the Tuya alarm it already owns.
        add("smoke1", "smoke_alarm_tuya", "店内烟感")
        add("heat", "heat_detector", "后厨感温")
    elif industry == "rental_housing":
        name = f"{stem}{number}号出租屋"
        add("smoke1", "smoke_alarm_nbiot", "一楼楼道烟感")
        add("smoke2", "smoke_alarm_nbiot", "三楼楼道烟感")
        add("heat", "heat_detector", "一楼厨房感温")
    elif industry == "residential":
        name = f"{stem}老旧小区{int(rng.integers(1, 9))}栋"
        add("smoke1", "smoke_alarm_nbiot", "楼道烟感")
        add("smoke2", "smoke_alarm_nbiot", "配电间烟感")
    elif industry == "dust_factory":
        kind = _DUST[int(rng.integers(len(_DUST)))]
        name = f"{stem}{kind}"
        enterprise = f"{stem}{kind.removesuffix('厂')}有限公司"
        add("smoke1", "smoke_alarm_nbiot", "车间烟感")
        add(
            "dust",
            "dust_collector_monitor",
            "1号除尘器",
            baseline={"pressure_diff_pa": float(round(rng.uniform(1000, 1200)))},
        )
        add("pm", "power_meter", "总进线电表")
    elif industry == "fuel_station":
        name = f"{stem}加油站"
        enterprise = f"{stem}石油经营有限公司"
        add("smoke1", "smoke_alarm_nbiot", "便利店烟感")
        add("gas1", "gas_detector", "加油岛1可燃气体")
        add("gas2", "gas_detector", "油罐区可燃气体")
        add("pm", "power_meter", "总进线电表")
    else:  # mine
        name = f"{stem}钨矿"
        enterprise = f"{stem}矿业有限公司"
        add("smoke1", "smoke_alarm_nbiot", "配电房烟感")
        add("pm", "power_meter", "总进线电表")
    add("efm", "electrical_fire_monitor", "总配电箱电气火灾监控")
    return SiteSpec(
        id=site_id,
        name=name,
        village=village,
        industry=industry,
        address=address,
        enterprise=enterprise,
        devices=devices,
    )


def _first(sites: list[SiteSpec], industry: str, kind: str) -> str | None:
    for site in sites:
        if site.industry == industry:
            for device in site.devices:
                if device.id.endswith("-" + kind):
                    return device.id
    return None


def small_town(villages: int = 3, sites_per_village: int = 2, seed: int = 7) -> Scenario:
    """A town of ``villages`` x ``sites_per_village`` sites with a scripted incident list.

    Within the first minute: a fire in a rental house, a leakage creep in a shop, an
    overheating cable in an old neighbourhood, a blocked dust collector. Later: a gas leak,
    a smoke alarm going offline, duplicates, a backfill and a malformed burst. Incidents whose
    industry the town lacks are left out.
    """
    if villages < 1 or sites_per_village < 1:
        raise ValueError("a town needs at least one village with one site")
    rng = np.random.default_rng(seed)
    sites: list[SiteSpec] = []
    k = 0
    for v in range(villages):
        village = _village_name(v)
        for s in range(sites_per_village):
            sites.append(_site(v, s, INDUSTRIES[k % len(INDUSTRIES)], village, rng))
            k += 1

    plan: list[tuple[str, str, dict[str, object]]] = [
        # (industry, device kind, incident)
        ("rental_housing", "smoke1", {"kind": "fire", "at_s": 12, "duration_s": 60}),
        (
            "small_shop",
            "efm",
            {"kind": "leakage_creep", "at_s": 5, "duration_s": 90, "params": {"ramp_s": 45}},
        ),
        (
            "residential",
            "efm",
            {"kind": "cable_overheat", "at_s": 10, "duration_s": 90, "params": {"ramp_s": 30}},
        ),
        (
            "dust_factory",
            "dust",
            {"kind": "dust_blockage", "at_s": 15, "duration_s": 90, "params": {"ramp_s": 25}},
        ),
        (
            "fuel_station",
            "gas1",
            {"kind": "gas_leak", "at_s": 90, "duration_s": 60, "params": {"ramp_s": 20}},
        ),
        ("mine", "smoke1", {"kind": "offline", "at_s": 150, "duration_s": 60}),
        ("dust_factory", "pm", {"kind": "duplicates", "at_s": 180, "duration_s": 30}),
        ("fuel_station", "pm", {"kind": "backfill", "at_s": 200, "duration_s": 60}),
        ("residential", "smoke1", {"kind": "malformed", "at_s": 240, "duration_s": 10}),
    ]
    incidents: list[IncidentSpec] = []
    for industry, device_kind, fields in plan:
        device = _first(sites, industry, device_kind)
        if device is not None:
            incidents.append(_INCIDENT.validate_python({"device": device, **fields}))
    return Scenario(
        name="small_town",
        description=(
            f"{villages} villages x {sites_per_village} sites, seed {seed}: demo intervals of "
            "a few seconds, alerts within the first minute"
        ),
        seed=seed,
        duration_s=600,
        sites=sites,
        incidents=incidents,
    )
