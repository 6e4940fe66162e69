"""Training, evaluation and prediction: the engine behind `xvit train`, `xvit eval`,
`xvit predict` (one process or DDP under torchrun)."""

from __future__ import annotations

from xvit.engine.coerce import apply_overrides
from xvit.engine.config import load_config, save_config
from xvit.engine.schema import Config, ConfigError

__all__ = ["Config", "ConfigError", "apply_overrides", "load_config", "save_config"]
