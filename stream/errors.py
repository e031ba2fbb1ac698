"""The one exception family of the `stream` package."""

from __future__ import annotations


class StreamError(Exception):
    """Base of every error raised by `stream`."""


# Every reason a record is dead-lettered for (the `fmstream.error` header and the
# `reason` label of the dead-letter metric), with what it means.
DEAD_LETTER_REASONS = {
    "null_value": "the record has no value (a null value, a tombstone)",
    "oversize": "the value is larger than --max-record-bytes",
    "invalid_json": "the value is not UTF-8 JSON",
    "not_object": "the value is JSON but not an object",
    "missing_field": "a required field (id, ts, features) is missing",
    "wrong_type": "a field has the wrong type: id not a non-empty string, ts not an integer",
    "bad_feature": "a feature value is not a string, a finite number or a list of strings",
    "ts_out_of_range": (
        "ts is not a time in ms between 2000 and 2100, more than --max-skew-hours after "
        "the record's broker timestamp, or that far from the partition's newest event time"
    ),
    "undecodable": "anything else that stopped the record from decoding",
    "unknown_format": "the fmstream.format header names a format this version cannot read",
    "not_array": "an example batch's value is JSON but not an array",
    "schema_mismatch": "a feature value does not fit its field's kind in the trainer's schema",
}


class RecordError(StreamError):
    """A record that does not parse or validate.

    `reason` is a short stable code (used as a metric label and a dead-letter
    header); the message says what was wrong in words an operator can act on.
    """

    def __init__(self, reason: str, message: str, value: bytes | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        # The bad part alone, where the record held more (one event of a batch).
        self.value = value


class BrokerError(StreamError):
    """The broker is unreachable, refused a request, or could not be started."""


class SimulationConfigError(StreamError):
    """A simulation parameter is out of its valid range."""


class JoinStateError(StreamError):
    """The joiner's local state or its changelog cannot be read, written or trusted."""


class PartitionFencedError(StreamError):
    """Another joiner instance has claimed a task partition this one still wrote to."""

    def __init__(self, partition: int, message: str) -> None:
        super().__init__(message)
        self.partition = partition
