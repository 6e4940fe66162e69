"""Training, evaluation and prediction: the engine behind `xvit train`, `xvit eval`,
`xvit predict` (one process or DDP under torchrun)."""

from __future__ import annotations

from xvit.engine.config import Config, ConfigError, apply_overrides, load_config, save_config

__all__ = ["Config", "ConfigError", "apply_overrides", "load_config", "save_config"]
