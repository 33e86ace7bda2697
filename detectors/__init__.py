"""Streaming detectors: scorers, the stage machine that thresholds them, and the bank.

* :class:`Scorer` (``base``): ``learn_one`` / ``score_one`` over one series;
  :class:`Identity` is the trivial one behind plain thresholds.
* :class:`Staged` (``staged``): pre-warning / alarm stages with delay and
  hysteresis around any scorer; :func:`threshold_from_rule` builds one from a
  profile rule.
* :class:`OfflineDetector` (``offline``): which devices went quiet.
* :class:`DetectorBank` (``bank``): all of the above for every device, turning
  readings, events and status changes into alert signals.
"""

from detectors.bank import OFFLINE_RULE, DetectorBank, ProfileOf
from detectors.base import Scorer, StageChange
from detectors.identity import Identity
from detectors.offline import OfflineChange, OfflineDetector
from detectors.staged import Direction, Staged
from detectors.threshold import threshold_from_rule

__all__ = [
    "OFFLINE_RULE",
    "DetectorBank",
    "Direction",
    "Identity",
    "OfflineChange",
    "OfflineDetector",
    "ProfileOf",
    "Scorer",
    "StageChange",
    "Staged",
    "threshold_from_rule",
]
