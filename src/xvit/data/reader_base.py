"""What every reader (video file, frame folder, HDF5 pack) shares besides its metadata and
``read``: ``close`` and use as a context manager, and ``len()`` as the frame count."""

from __future__ import annotations

from typing import Any

__all__ = ["ReaderBase"]


class ReaderBase:
    """Context-manager and ``len()`` plumbing; subclasses define ``num_frames`` and ``close``."""

    num_frames: Any

    def close(self) -> None:
        pass

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.num_frames
