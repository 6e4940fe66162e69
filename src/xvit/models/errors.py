"""The errors of the model library that modules without torch raise too (the weights
registry and its downloads)."""

from __future__ import annotations

__all__ = ["CheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint file or directory that cannot be read or does not fit the model."""
