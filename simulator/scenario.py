"""Scenario files: which sites and devices a simulated town has, and what goes wrong when.

A scenario is plain YAML so a test, a demo or a duty-staff drill can be written without Python.
It is validated twice: once on its own (shape, unique ids, references between devices and
incidents) and once against the device profiles (profiles exist, incident metrics exist and
are numbers, ramps stay inside the valid range), so a typo fails at load time with the file,
the field path and the reason instead of silently producing a scenario that tests nothing.
Timing checks that need the devices' simulated signals live in :mod:`simulator.incidents`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.errors import ConfigError
from gateway.profiles import Profile, load_profiles
from gateway.registry_model import Device, Site
from gateway.yamlfile import describe, read_mapping

#: Ids end up in MQTT topics: no ``/``, ``+``, ``#`` or spaces, and short enough to read.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"

MalformedReason = Literal[
    "not_json",
    "bad_shape",
    "not_finite",
    "wrong_type",
    "out_of_range",
    "ts_future",
    "unknown_metric",
    "oversize",
    "unknown_device",
]
#: Every reason a malformed burst can exercise, in the order a burst sends them.
MALFORMED_REASONS: tuple[MalformedReason, ...] = (
    "not_json",
    "bad_shape",
    "not_finite",
    "wrong_type",
    "out_of_range",
    "ts_future",
    "unknown_metric",
    "oversize",
    "unknown_device",
)

RampKind = Literal[
    "leakage_creep",
    "cable_overheat",
    "dust_blockage",
    "gas_leak",
    "gas_leak_level1",
    "arc_fault",
    "hopper_overheat",
    "spark",
    "pressure_drift",
    "heat_rise",
    "ramp",
]
#: Ramp kinds meant to stay short of the plain threshold (a drift or rate-of-rise detector
#: must catch them), so planning does not insist that the peak clears the threshold rule.
BELOW_THRESHOLD_KINDS = frozenset({"pressure_drift", "heat_rise"})


class ScenarioError(ConfigError):
    """A scenario file that cannot be run; the message names the file, the field and the reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceSpec(_Strict):
    """One simulated device. ``interval_s`` is how often it publishes telemetry."""

    id: str = Field(pattern=ID_PATTERN)
    profile: str
    interval_s: float = Field(gt=0)
    name: str = ""
    parent_id: str | None = None
    #: Centre values of the normal signal, e.g. a dust collector's recorded pressure baseline.
    baseline: dict[str, float] = Field(default_factory=dict)
    #: The metrics this device reports; default all of its profile's (a monitor with 2 probes).
    metrics: list[str] | None = None


class ShutdownSpec(_Strict):
    """A period the enterprise must not produce: an ordered shutdown (停产整顿) or a declared
    holiday. Its devices' load drops to ``load`` x the working-day curve (lights, a guard)."""

    at_s: float = Field(ge=0)
    duration_s: float = Field(gt=0)
    kind: Literal["shutdown", "holiday"] = "shutdown"
    reason: str = "停产整顿"
    load: float = Field(default=0.05, ge=0, le=1)

    @property
    def end_s(self) -> float:
        return self.at_s + self.duration_s


class SiteSpec(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1)
    village: str = Field(min_length=1)
    industry: str = Field(min_length=1)
    address: str = ""
    enterprise: str = ""
    #: The enterprise's working hours and days (registry format, e.g. "08:00-18:00", "1-5").
    hours: str = ""
    days: str = ""
    shutdowns: list[ShutdownSpec] = Field(default_factory=list)
    devices: list[DeviceSpec] = Field(default_factory=list)


class _IncidentBase(_Strict):
    device: str
    at_s: float = Field(ge=0)
    duration_s: float = Field(gt=0)
    #: A name for a variant of the kind (``slow``, ``within_noise``): evaluations report it
    #: as its own row; it is written into the truth record's ``detail.label``.
    label: str = ""

    @property
    def end_s(self) -> float:
        return self.at_s + self.duration_s


class FireParams(_Strict):
    #: The heat detector that warms up too; default: one at the same site with a temperature rule.
    heat_device: str | None = None
    #: False: smoke only (a fire in a room without a heat detector, or a burnt-toast false alarm).
    heat: bool = True
    heat_peak_c: float = 75.0
    #: Seconds for the heat detector to reach its peak; default half the duration, at most 10 s.
    rise_s: float | None = Field(default=None, ge=0)
    smoke_peak_pct: float = Field(default=15.0, ge=0)


class FireSpec(_IncidentBase):
    """A smoke alarm goes off (``smoke_alarm`` event), a nearby heat detector warms up."""

    kind: Literal["fire"]
    params: FireParams = FireParams()

    def rise_s(self) -> float:
        if self.params.rise_s is not None:
            return self.params.rise_s
        return min(self.duration_s / 2, 10.0)


@dataclass(frozen=True, slots=True)
class RampPreset:
    """What a named ramp kind changes by default (so scenario files stay short)."""

    metric: str
    peak: float | None = None
    peak_factor: float | None = None


#: Defaults chosen to cross the shipped profiles' alarm values with a margin well above noise.
RAMP_PRESETS: dict[str, RampPreset] = {
    # 420 mA: past the 300 mA alarm, inside the 300-500 mA band of GB 14287 (domain.md).
    "leakage_creep": RampPreset("residual_current_ma", peak=420.0),
    # 88 °C: past the 75 °C cable alarm (practice 70-80 °C).
    "cable_overheat": RampPreset("cable_temp_1_c", peak=88.0),
    # Double the normal pressure difference: a badly clogged bag filter.
    "dust_blockage": RampPreset("pressure_diff_pa", peak_factor=2.0),
    # 60 %LEL: past level 2 (50 %LEL, GB/T 50493).
    "gas_leak": RampPreset("gas_lel_pct", peak=60.0),
    # 35 %LEL: past level 1 (25 %LEL), short of level 2.
    "gas_leak_level1": RampPreset("gas_lel_pct", peak=35.0),
    # 20 half-cycles per second: past the >= 14 alarm of GB 14287.
    "arc_fault": RampPreset("arc_faults_per_s", peak=20.0),
    # 82 °C: past the 70 °C ash-hopper alarm (AQ 4273, recommended).
    "hopper_overheat": RampPreset("hopper_temp_c", peak=82.0),
    # A burst of sparks in the duct: any spark alarms (std).
    "spark": RampPreset("spark_count", peak=4.0),
    # +28 % over the baseline: past the 20 % drift limit (std) but short of the absolute
    # stand-in threshold for a collector at the bottom of the 1000-1200 Pa band.
    "pressure_drift": RampPreset("pressure_diff_pa", peak_factor=1.28),
    # A fast climb (past the ~10 °C/min of the rate-of-rise class, practice) that stops at 50 °C,
    # short of the fixed 54 °C pre-warning: only a rate-of-rise rule sees it.
    "heat_rise": RampPreset("temperature_c", peak=50.0),
}


class RampParams(_Strict):
    metric: str | None = None
    #: Absolute value reached at the end of the ramp.
    peak: float | None = None
    #: Or: the normal centre value times this factor.
    peak_factor: float | None = Field(default=None, gt=0)
    #: Seconds from start to peak; default half the duration. The peak is then held to the end.
    ramp_s: float | None = Field(default=None, ge=0)
    #: The profile rule expected to fire; default the first rule watching the metric.
    rule: str | None = None

    @model_validator(mode="after")
    def _one_peak(self) -> Self:
        if self.peak is not None and self.peak_factor is not None:
            raise ValueError("give either peak or peak_factor, not both")
        return self


class RampSpec(_IncidentBase):
    """A metric drifts from normal to a peak and stays there: leakage creep, overheating, ..."""

    kind: RampKind
    params: RampParams = RampParams()

    @model_validator(mode="after")
    def _generic_ramp_is_complete(self) -> Self:
        if self.kind == "ramp":
            if self.params.metric is None:
                raise ValueError("a 'ramp' incident needs params.metric")
            if self.params.peak is None and self.params.peak_factor is None:
                raise ValueError("a 'ramp' incident needs params.peak or params.peak_factor")
        if self.params.ramp_s is not None and self.params.ramp_s > self.duration_s:
            raise ValueError(
                f"params.ramp_s ({self.params.ramp_s}) is longer than duration_s "
                f"({self.duration_s}): the peak would never be reached"
            )
        return self

    def metric(self) -> str:
        if self.params.metric is not None:
            return self.params.metric
        return RAMP_PRESETS[self.kind].metric

    def peak(self, centre: float) -> float:
        """The value at the end of the ramp for a device whose normal value is ``centre``."""
        if self.params.peak is not None:
            return self.params.peak
        if self.params.peak_factor is not None:
            return centre * self.params.peak_factor
        preset = RAMP_PRESETS[self.kind]
        if preset.peak is not None:
            return preset.peak
        assert preset.peak_factor is not None
        return centre * preset.peak_factor

    def ramp_s(self) -> float:
        return self.params.ramp_s if self.params.ramp_s is not None else self.duration_s / 2


SensorFaultKind = Literal["stuck", "pinned", "spiky"]


class SensorFaultParams(_Strict):
    metric: str
    #: ``spiky``: the size of each impossible jump as a fraction of the metric's valid range.
    jump_frac: float = Field(default=0.5, gt=0, le=1)


class SensorFaultSpec(_IncidentBase):
    """A misbehaving sensor: ``stuck`` repeats one value, ``pinned`` sits at the top of its
    valid range, ``spiky`` jumps impossibly far every other reading. Equipment faults, not
    hazards: duty staff send a technician, not the fire brigade."""

    kind: SensorFaultKind
    params: SensorFaultParams


class ProductionParams(_Strict):
    #: Load during the incident as a fraction of the normal working-day curve.
    load: float | None = Field(default=None, ge=0, le=2)


class ProductionSpec(_IncidentBase):
    """Load at a power meter during its site's shutdown: ``illegal_production`` (working load,
    e.g. a night shift in an ordered shutdown) or ``holiday_load`` (maintenance, a freezer:
    more than the baseline but not production, which must not alarm)."""

    kind: Literal["illegal_production", "holiday_load"]
    params: ProductionParams = ProductionParams()

    def load(self) -> float:
        if self.params.load is not None:
            return self.params.load
        return 1.0 if self.kind == "illegal_production" else 0.3


class OfflineParams(_Strict):
    #: True: publish the retained ``offline`` status (what a broker does with a device's will).
    #: False: just go silent, which only the gateway's heartbeat timeout can notice.
    announce: bool = True


class OfflineSpec(_IncidentBase):
    """The device stops publishing for the duration, then comes back ``online``."""

    kind: Literal["offline"]
    params: OfflineParams = OfflineParams()


class MalformedParams(_Strict):
    reasons: list[MalformedReason] = Field(default_factory=lambda: list(MALFORMED_REASONS))
    #: Bad messages per reason (variants rotate: NaN, Infinity, -Infinity, ...).
    repeat: int = Field(default=1, ge=1, le=100)


class MalformedSpec(_IncidentBase):
    """A burst of bad messages on the device's telemetry topic, spread over the duration."""

    kind: Literal["malformed"]
    params: MalformedParams = MalformedParams()


class DuplicatesParams(_Strict):
    copies: int = Field(default=2, ge=2, le=10)


class DuplicatesSpec(_IncidentBase):
    """Every telemetry message in the window is published ``copies`` times, byte for byte."""

    kind: Literal["duplicates"]
    params: DuplicatesParams = DuplicatesParams()


class BackfillParams(_Strict):
    #: Readings per published list; default all buffered readings in one message.
    batch: int | None = Field(default=None, ge=1)


class BackfillSpec(_IncidentBase):
    """The device buffers readings for the duration, then publishes them as JSON list(s)."""

    kind: Literal["backfill"]
    params: BackfillParams = BackfillParams()


IncidentSpec = Annotated[
    FireSpec
    | RampSpec
    | OfflineSpec
    | MalformedSpec
    | DuplicatesSpec
    | BackfillSpec
    | SensorFaultSpec
    | ProductionSpec,
    Field(discriminator="kind"),
]

#: The kinds ``scenarios/incidents.yaml`` drives end to end through a live gateway.
INCIDENT_KINDS: tuple[str, ...] = (
    "fire",
    "leakage_creep",
    "cable_overheat",
    "dust_blockage",
    "gas_leak",
    "ramp",
    "offline",
    "malformed",
    "duplicates",
    "backfill",
)
#: Kinds added for the scored evaluation (``ewg evaluate``): the rest of ``domain.md``'s
#: incidents, the hard variants and the sensor faults.
EVALUATION_KINDS: tuple[str, ...] = (
    "gas_leak_level1",
    "arc_fault",
    "hopper_overheat",
    "spark",
    "pressure_drift",
    "heat_rise",
    "stuck",
    "pinned",
    "spiky",
    "illegal_production",
    "holiday_load",
)


class Scenario(_Strict):
    """A simulated town (or a corner of one) and its scripted incidents."""

    name: str = "scenario"
    description: str = ""
    #: Every random draw derives from this and the device id, so runs are reproducible.
    seed: int = Field(default=0, ge=0)
    duration_s: float = Field(gt=0)
    sites: list[SiteSpec] = Field(min_length=1)
    incidents: list[IncidentSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> Self:
        site_ids: set[str] = set()
        site_of: dict[str, str] = {}
        for site in self.sites:
            if site.id in site_ids:
                raise ValueError(f"site id {site.id!r} is used twice")
            site_ids.add(site.id)
            for device in site.devices:
                if device.id in site_of:
                    raise ValueError(f"device id {device.id!r} is used twice")
                site_of[device.id] = site.id
        for site in self.sites:
            for device in site.devices:
                if device.parent_id is not None and (
                    device.parent_id not in site_of or device.parent_id == device.id
                ):
                    raise ValueError(
                        f"device {device.id!r}: parent_id {device.parent_id!r} is not another "
                        "device of this scenario"
                    )
        for i, incident in enumerate(self.incidents):
            where = f"incidents.{i} ({incident.kind})"
            if incident.device not in site_of:
                raise ValueError(f"{where}: device {incident.device!r} is not in any site")
            if incident.at_s >= self.duration_s:
                raise ValueError(
                    f"{where}: at_s {incident.at_s} is not before the scenario's "
                    f"duration_s {self.duration_s}"
                )
            if isinstance(incident, FireSpec) and incident.params.heat_device is not None:
                heat = incident.params.heat_device
                if site_of.get(heat) != site_of[incident.device]:
                    raise ValueError(
                        f"{where}: heat_device {heat!r} is not a device at the same site "
                        f"as {incident.device!r}"
                    )
        return self

    def devices(self) -> Iterator[tuple[SiteSpec, DeviceSpec]]:
        """Every (site, device) pair, in file order."""
        for site in self.sites:
            for device in site.devices:
                yield site, device

    def device(self, device_id: str) -> DeviceSpec:
        for _, device in self.devices():
            if device.id == device_id:
                return device
        raise KeyError(device_id)

    def site_of(self, device_id: str) -> SiteSpec:
        for site, device in self.devices():
            if device.id == device_id:
                return site
        raise KeyError(device_id)


def registrations(scenario: Scenario) -> tuple[list[Site], list[Device]]:
    """The scenario's sites and devices as the gateway registry holds them.

    A test or the demo registers these before starting the simulator, so the gateway knows
    every device that will publish (and rejects the malformed burst's unknown device).
    """
    sites = [
        Site(
            id=s.id,
            name=s.name,
            village=s.village,
            industry=s.industry,
            address=s.address,
            enterprise=s.enterprise,
        )
        for s in scenario.sites
    ]
    devices = [
        Device(id=d.id, profile=d.profile, site_id=s.id, name=d.name, parent_id=d.parent_id)
        for s, d in scenario.devices()
    ]
    return sites, devices


def parse_scenario(
    data: Mapping[str, Any],
    source: str = "<scenario>",
    profiles: Mapping[str, Profile] | None = None,
) -> Scenario:
    """Validate a scenario given as data; ``profiles`` default to the shipped device profiles."""
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(f"{source}: {describe(exc, '(scenario)')}") from exc
    check_against_profiles(scenario, load_profiles() if profiles is None else profiles, source)
    return scenario


def load_scenario(path: Path, profiles: Mapping[str, Profile] | None = None) -> Scenario:
    """Load and validate a scenario file; errors name the file, the field and the reason."""
    return parse_scenario(read_mapping(path, "scenario", ScenarioError), str(path), profiles)


def dump_scenario(scenario: Scenario) -> str:
    """The scenario as YAML (defaults left out), e.g. to check a generated town into the repo."""
    data = scenario.model_dump(mode="json", exclude_defaults=True)
    # Kind first: it says how to read the rest of the incident.
    data["incidents"] = [{"kind": i.pop("kind"), **i} for i in data.get("incidents", [])]
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=100)


def check_against_profiles(
    scenario: Scenario, profiles: Mapping[str, Profile], source: str = "<scenario>"
) -> None:
    """Raise :class:`ScenarioError` unless every device and incident fits its profile."""

    def fail(where: str, reason: str) -> ScenarioError:
        return ScenarioError(f"{source}: {where}: {reason}")

    published: dict[str, tuple[Profile, set[str]]] = {}
    for si, site in enumerate(scenario.sites):
        for di, device in enumerate(site.devices):
            where = f"sites.{si}.devices.{di}"
            profile = profiles.get(device.profile)
            if profile is None:
                known = ", ".join(sorted(profiles))
                raise fail(
                    f"{where}.profile",
                    f"device {device.id!r} uses unknown profile {device.profile!r} "
                    f"(known: {known})",
                )
            for metric in device.baseline:
                if metric not in profile.metrics:
                    raise fail(
                        f"{where}.baseline.{metric}",
                        f"metric {metric!r} is not in profile {profile.name!r}",
                    )
            for metric in device.metrics or []:
                if metric not in profile.metrics:
                    raise fail(
                        f"{where}.metrics",
                        f"metric {metric!r} is not in profile {profile.name!r}",
                    )
            chosen = set(device.metrics) if device.metrics is not None else set(profile.metrics)
            published[device.id] = (profile, chosen)

    for i, incident in enumerate(scenario.incidents):
        where = f"incidents.{i}"
        profile, chosen = published[incident.device]
        on = f"device {incident.device!r} (profile {profile.name!r})"
        if isinstance(incident, FireSpec):
            for event in ("smoke_alarm", "smoke_clear"):
                if event not in profile.events:
                    raise fail(where, f"fire needs a smoke alarm, but {on} has no {event!r} event")
            heat = incident.params.heat_device
            if heat is not None:
                heat_profile, heat_metrics = published[heat]
                if "temperature_c" not in heat_metrics:
                    raise fail(
                        f"{where}.params.heat_device",
                        f"{heat!r} (profile {heat_profile.name!r}) reports no temperature_c",
                    )
        elif isinstance(incident, RampSpec):
            metric = incident.metric()
            if metric not in chosen:
                raise fail(f"{where}.params.metric", f"{on} does not report {metric!r}")
            spec = profile.metrics[metric]
            if spec.kind != "number":
                raise fail(f"{where}.params.metric", f"{metric!r} is not a number metric")
            if (
                incident.params.peak is not None
                and not spec.min <= incident.params.peak <= spec.max
            ):
                raise fail(
                    f"{where}.params.peak",
                    f"{incident.params.peak} is outside {metric!r}'s valid range "
                    f"{spec.min}..{spec.max}: the gateway would reject it as a wrong unit",
                )
            rule = incident.params.rule
            if rule is not None and not any(
                r.name == rule and r.metric == metric for r in profile.rules
            ):
                raise fail(
                    f"{where}.params.rule",
                    f"{on} has no rule {rule!r} watching {metric!r}",
                )
            if incident.kind != "ramp" and not any(r.metric == metric for r in profile.rules):
                raise fail(where, f"{on} has no rule watching {metric!r}, nothing would alarm")
        elif isinstance(incident, MalformedSpec):
            if not any(profile.metrics[m].kind == "number" for m in chosen):
                raise fail(where, f"{on} reports no number metric to corrupt")
        elif isinstance(incident, SensorFaultSpec):
            metric = incident.params.metric
            if metric not in chosen or profile.metrics[metric].kind != "number":
                raise fail(f"{where}.params.metric", f"{on} reports no number metric {metric!r}")
        elif isinstance(incident, ProductionSpec):
            if "active_power_kw" not in chosen:
                raise fail(where, f"{on} reports no active_power_kw: not a power meter")
            site = scenario.site_of(incident.device)
            inside = [
                p for p in site.shutdowns if p.at_s <= incident.at_s and incident.end_s <= p.end_s
            ]
            if not inside:
                raise fail(
                    where,
                    f"{incident.kind} must lie inside one of site {site.id!r}'s shutdowns "
                    "(sites.N.shutdowns): outside one, load is simply work",
                )
