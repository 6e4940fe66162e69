"""Answers for unlabelled videos: ``predict`` (`xvit predict`), ``batch_predict``
(`--list`, resumable CSV), ``window_clips`` (the one window grid along a video) and
``window_scorer`` (scoring them with exact reuse of segment features), ``timeline`` /
``timeline_plot`` / ``render`` (`--timeline`: JSON/CSV, plot, video), ``stream`` (`--stream`:
live sources), ``extract`` (`xvit extract`: features per window or video) and ``video_list``
(the lists of videos `--list` runs on, with their labels; the CSV files they write).

Imports run and deploy."""

from __future__ import annotations

import importlib
from typing import Any

# The public names, imported on first use (PEP 562): importing one module of the package does
# not import the others (nor torch, for those that do without it).
_LAZY = {
    "predict_videos": "xvit.engine.infer.predict",
    "predict_list": "xvit.engine.infer.batch_predict",
    "WindowSpec": "xvit.engine.infer.window_clips",
    "compute_timeline": "xvit.engine.infer.timeline",
    "TimelineOptions": "xvit.engine.infer.timeline",
    "run_stream": "xvit.engine.infer.stream",
    "extract_videos": "xvit.engine.infer.extract",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
