"""One small exception tree for the whole gateway.

Third-party errors are wrapped at the edge (``raise ... from``) so callers only
ever need to catch :class:`EwgError` or one of its children.
"""


class EwgError(Exception):
    """Base of every error EWG raises on purpose."""


class ConfigError(EwgError):
    """Settings or files that EWG cannot run with."""


class ProfileError(ConfigError):
    """A device profile that does not validate; the message names file and field."""


class BrokerError(EwgError):
    """The MQTT broker could not be reached or refused us."""


class StoreError(EwgError):
    """A store (time series, registry, alerts, dead letters) failed."""


class NotFoundError(EwgError):
    """A site, device or alert that does not exist (or is not visible to the caller)."""


class ConflictError(EwgError):
    """The request contradicts what is stored (duplicate id, illegal transition)."""
