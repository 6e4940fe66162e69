"""`xvit ablate [CONFIG] [key=value ...]`: the seed's Table 2 (shift vs mixing, avg vs TA)
over several seeds; see docs/results.md."""

from __future__ import annotations

import argparse

from xvit.cli._common import add_command, command_line, guarded, parse_intermixed, split_items

DESCRIPTION = (
    "Train TSM-ViT and X-ViT with average and temporal-attention heads, the spatial-only ViT "
    "and X-ViT with summary tokens, with one recipe (default: the built-in synthetic one) and "
    "several seeds, then write OUT/ablation.md and OUT/ablation.json (top-1 mean and spread "
    "over seeds). Finished runs (OUT/<variant>/seed-<S>/metrics.json) are reused, interrupted "
    "ones resume: run the same command again to complete the table."
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `ablate` sub-command."""
    add_command(
        subparsers,
        "ablate",
        add_arguments,
        run,
        help="shift vs mixing x average vs temporal attention, several seeds (Table 2)",
        description=DESCRIPTION,
        epilog="Example: xvit ablate --seeds 0,1 train.epochs=6 --out runs/ablation",
    )


def add_arguments(p: argparse.ArgumentParser, intermixed: bool) -> None:
    """The arguments of `xvit ablate` (flags and overrides in any order, as `xvit train`)."""
    from xvit.engine.train.ablation import VARIANTS

    p.add_argument(
        "items",
        nargs="*" if intermixed else argparse.REMAINDER,
        metavar="[CONFIG] [key=value ...]",
        help="a YAML config, then section.key=value overrides applied to every run",
    )
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: 0,1,2)")
    p.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated variants (default: all: {','.join(VARIANTS)})",
    )
    p.add_argument("--out", default="runs/ablation", help="output directory (default: runs/ablation)")


def _int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated integers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    """Entry point of `xvit ablate`; returns the exit code (1 when some run failed)."""
    from xvit.engine.run.schema import ConfigError
    from xvit.engine.train.ablation import format_markdown, run_ablation

    args = parse_intermixed(args, add_arguments, "xvit ablate", "items")

    def work() -> dict:
        config, overrides = split_items(args.items)
        seeds = _int_list(args.seeds, "--seeds")
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        return run_ablation(
            config,
            overrides,
            variants=variants,
            seeds=seeds,
            out=args.out,
            command=command_line(args, "ablate", "items"),
        )

    code, doc = guarded(
        "xvit ablate",
        work,
        [((ValueError, ConfigError, FileNotFoundError), 2)],
        interrupted="interrupted; run the same command again to resume",
    )
    if code:
        return code

    print(format_markdown(doc), end="")
    print(f"written to {args.out}/ablation.md and {args.out}/ablation.json")
    return 1 if any(r["errors"] for r in doc["rows"]) else 0
