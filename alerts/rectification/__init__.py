"""Rectification items (隐患整改): hazards listed, fixed, verified and struck off.

``model`` holds the items and the legal moves, ``evidence`` the photos and
documents a fix is reported with, and ``book`` persists both and watches
deadlines. Statistics over items live with the alert statistics in
:mod:`alerts.stats`.
"""

from alerts.rectification.book import SCHEMA, ItemFilter, RectificationBook, RectificationListener
from alerts.rectification.evidence import (
    EvidenceDamaged,
    EvidenceFiles,
    EvidenceLimits,
    EvidenceRefused,
    EvidenceTooLarge,
    EvidenceTypeRefused,
    UploadSource,
)
from alerts.rectification.model import (
    Action,
    Evidence,
    HistoryLine,
    IllegalTransition,
    InvalidItem,
    Item,
    ItemState,
    NewItem,
    SiteCounts,
    Source,
)

__all__ = [
    "SCHEMA",
    "Action",
    "Evidence",
    "EvidenceDamaged",
    "EvidenceFiles",
    "EvidenceLimits",
    "EvidenceRefused",
    "EvidenceTooLarge",
    "EvidenceTypeRefused",
    "HistoryLine",
    "IllegalTransition",
    "InvalidItem",
    "Item",
    "ItemFilter",
    "ItemState",
    "NewItem",
    "RectificationBook",
    "RectificationListener",
    "SiteCounts",
    "Source",
    "UploadSource",
]
