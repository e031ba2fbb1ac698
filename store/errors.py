"""The one exception family of the `store` package; every message names the path."""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error raised by `store`."""


class StoreLockedError(StoreError):
    """Another process (or handle) has the store open for writing."""


class StoreFullError(StoreError):
    """The disk under the store is full; the failed batch was not applied."""


class StoreSchemaError(StoreError):
    """The store holds rows of another shape than the caller needs."""
