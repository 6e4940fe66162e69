"""Check the speed targets of docs/benchmarks.md on a finished `xvit benchmark` run.

Reads RUN.json (written by `xvit benchmark --name RUN --out DIR`), evaluates the goals of
benchmarks/speed_targets.yaml (or --goals FILE) with xvit.benchmarks.targets, rewrites the
run's report (RUN.json, RUN.md with a "Targets" section, plots) and prints the targets table.

    python benchmarks/speed_targets.py docs/benchmarks/targets.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from xvit.benchmarks.report import write_report
from xvit.benchmarks.targets import load_goals, targets_table

GOALS = Path(__file__).resolve().with_name("speed_targets.yaml")


def apply_targets(run_json: str | Path, goals_file: str | Path = GOALS) -> list[dict]:
    """Evaluate the goals on ``run_json`` and rewrite its report; returns the targets."""
    path = Path(run_json)
    payload = json.loads(path.read_text())
    write_report(payload, path.parent, path.stem, goals=load_goals(goals_file))
    return payload["targets"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="+", help="RUN.json files written by `xvit benchmark`")
    parser.add_argument("--goals", default=str(GOALS), help="YAML file of goals (default: %(default)s)")
    args = parser.parse_args()
    for run in args.run:
        try:
            targets = apply_targets(run, args.goals)
        except (OSError, ValueError, KeyError) as e:
            print(f"speed_targets: {run}: {e}", file=sys.stderr)
            return 2
        print(f"## {run}\n\n{targets_table(targets) if targets else 'no target measured'}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
