"""Model speed and memory measurement behind `xvit benchmark`."""

from __future__ import annotations

from xvit.benchmarks.machine import machine_info, measure_matmul_rate
from xvit.benchmarks.peers import PEERS, build_peer, peers_available
from xvit.benchmarks.report import frame_scaling, write_report
from xvit.benchmarks.spec import ModelSpec
from xvit.benchmarks.speed import count_forward_flops, run_benchmark
from xvit.benchmarks.targets import evaluate_targets, load_goals

__all__ = [
    "PEERS",
    "ModelSpec",
    "build_peer",
    "count_forward_flops",
    "evaluate_targets",
    "frame_scaling",
    "load_goals",
    "machine_info",
    "measure_matmul_rate",
    "peers_available",
    "run_benchmark",
    "write_report",
]
