"""Entry point of the `xvit` command: one sub-command per module in this package."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# Each module defines `add_parser(subparsers) -> None`; the parser it adds sets
# `func(args) -> int` as its default.
_COMMAND_MODULES = (
    "xvit.cli.train",
    "xvit.cli.evaluate",
    "xvit.cli.predict",
    "xvit.cli.models",
    "xvit.cli.data",
    "xvit.cli.convert",
    "xvit.cli.benchmark",
    "xvit.cli.ablate",
    "xvit.cli.extract",
    "xvit.cli.export",
    "xvit.cli.quantize",
    "xvit.cli.serve",
)


def build_parser() -> argparse.ArgumentParser:
    """The full `xvit` argument parser."""
    from xvit import __version__

    parser = argparse.ArgumentParser(
        prog="xvit",
        description="Efficient video recognition with transformers (X-ViT and baselines).",
    )
    parser.add_argument("--version", action="version", version=f"xvit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `xvit` command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if os.environ.get("XVIT_ATTENTION_KERNEL"):  # checked before any work (imports torch)
        from xvit.models.attention import get_attention_kernel

        try:
            get_attention_kernel()
        except ValueError as e:
            print(f"xvit {args.command}: error: {e}", file=sys.stderr)
            return 2
    try:
        return int(args.func(args) or 0)
    except ValueError as e:  # a --device this machine has not, wherever a command resolves it
        from xvit.engine.run.distributed import DeviceError

        if not isinstance(e, DeviceError):
            raise
        print(f"xvit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # commands that do not handle it themselves: no traceback
        print(f"xvit {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # disk full, I/O errors the command did not handle: one line, failed
        where = f"{e.filename}: " if e.filename else ""
        print(f"xvit {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
