"""Model speed and memory measurement behind `xvit benchmark`."""

from __future__ import annotations

from xvit.benchmarks.peers import PEERS, build_peer, peers_available
from xvit.benchmarks.report import evaluate_targets, frame_scaling, write_report
from xvit.benchmarks.speed import (
    ModelSpec,
    count_forward_flops,
    machine_info,
    measure_matmul_rate,
    run_benchmark,
)

__all__ = [
    "PEERS",
    "ModelSpec",
    "build_peer",
    "count_forward_flops",
    "evaluate_targets",
    "frame_scaling",
    "machine_info",
    "measure_matmul_rate",
    "peers_available",
    "run_benchmark",
    "write_report",
]
