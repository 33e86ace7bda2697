"""A profile's threshold rule as a detector."""

from __future__ import annotations

from detectors.rules import detector_from_rule
from detectors.staged import Staged
from gateway.profiles import ThresholdRule


def threshold_from_rule(rule: ThresholdRule) -> Staged:
    """The detector a :class:`~gateway.profiles.ThresholdRule` describes.

    Kept for callers of the first version; :func:`detectors.rules.detector_from_rule`
    builds every rule type and takes the metric's spec and the gateway's zone.

    Rules live in device profiles so a site can override a default from
    ``domain.md`` without code; this is the one place that reads them into a
    detector, so the profile fields and the detector's parameters cannot drift.

    Examples
    --------
    >>> from gateway.profiles import ThresholdRule
    >>> rule = ThresholdRule.model_validate({
    ...     "name": "arc_fault", "metric": "arc_faults_per_s",
    ...     "alarm": {"value": 14, "severity": "orange"}, "hysteresis": 4,
    ...     "hazard": "arc_fault", "title_zh": "故障电弧", "title_en": "Arc fault"})
    >>> arc = threshold_from_rule(rule)
    >>> arc.update(0, 9.0) is None          # <= 9 per second must not alarm (GB 14287)
    True
    >>> arc.update(1_000, 14.0).new.name    # >= 14 per second alarms
    'ALARM'
    """
    return detector_from_rule(rule)
