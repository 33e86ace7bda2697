"""Why a message (or one value in it) was rejected: the dead-letter reason codes.

Counted per reason in health and metrics, so an electrician connecting a sensor
can see at once that, say, every value is ``out_of_range`` (a wrong unit).
"""

from enum import StrEnum


class Reason(StrEnum):
    OVERSIZE = "oversize"
    BAD_TOPIC = "bad_topic"
    UNKNOWN_DEVICE = "unknown_device"
    NOT_JSON = "not_json"
    BAD_SHAPE = "bad_shape"
    UNKNOWN_METRIC = "unknown_metric"
    WRONG_TYPE = "wrong_type"
    NOT_FINITE = "not_finite"
    OUT_OF_RANGE = "out_of_range"
    BAD_TIMESTAMP = "bad_timestamp"
    TS_FUTURE = "ts_future"
    TS_TOO_OLD = "ts_too_old"
    UNKNOWN_EVENT = "unknown_event"
    BAD_STATUS = "bad_status"
    #: A stage failed on this message (a bug in EWG, not the device's fault); kept to replay.
    INTERNAL = "internal"
