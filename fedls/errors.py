"""Errors that reach the user as one line and exit code 2 (see :mod:`fedls.cli`)."""

from __future__ import annotations


class FedlsError(Exception):
    """Bad input or an unusable environment; the message says what to do."""


class ConfigError(FedlsError):
    """A configuration value is out of range or unknown."""


class DataError(FedlsError):
    """A dataset cannot be found or read."""


class ResourceError(FedlsError):
    """More resources were requested than the machine has."""


class CheckpointError(FedlsError):
    """A checkpoint or run directory is missing or unreadable."""
