"""The one exception family of the `model` package."""

from __future__ import annotations


class ModelError(Exception):
    """Base of every error raised by `model`."""


class FeatureError(ModelError):
    """A feature value that does not fit its field's declared kind; names field and value."""
