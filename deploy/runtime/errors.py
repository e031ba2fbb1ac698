"""The one exception family of the `deploy` package."""

from __future__ import annotations


class DeployError(Exception):
    """Base of every error raised by `deploy`."""


class ConfigError(DeployError):
    """A configuration value is missing, unknown or invalid; the message names the key."""


class BrokerStartError(DeployError):
    """The embedded broker could not be started."""


class ReplayInputError(DeployError):
    """A replay's log is unreadable, or too much of it is to trust the result."""
