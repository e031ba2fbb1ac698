"""The one exception family of the `stream` package."""

from __future__ import annotations


class StreamError(Exception):
    """Base of every error raised by `stream`."""


class RecordError(StreamError):
    """A record that does not parse or validate.

    `reason` is a short stable code (used as a metric label and a dead-letter
    header); the message says what was wrong in words an operator can act on.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class BrokerError(StreamError):
    """The broker is unreachable, refused a request, or could not be started."""


class SimulationConfigError(StreamError):
    """A simulation parameter is out of its valid range."""


class JoinStateError(StreamError):
    """The joiner's local state or its changelog cannot be read, written or trusted."""
