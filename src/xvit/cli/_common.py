"""What the sub-commands share: flags and positionals in any order (:func:`parse_intermixed`,
:func:`add_command`), ``[CONFIG] [key=value ...]`` (:func:`split_items`), the command line
recorded in ``metrics.json`` (:func:`command_line`), and one-line errors with their exit codes
(:func:`guarded`: 2 for bad input, 1 for a run that failed, 130 when interrupted)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

AddArguments = Callable[[argparse.ArgumentParser, bool], None]


def add_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    add_arguments: AddArguments,
    run: Callable[[argparse.Namespace], int],
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """Register sub-command ``name`` whose arguments ``add_arguments(parser, intermixed)``
    adds; ``run`` re-reads them with :func:`parse_intermixed`. ``kwargs``: help, description,
    epilog."""
    p = subparsers.add_parser(name, **kwargs)
    add_arguments(p, False)
    p.set_defaults(func=run)
    return p


def parse_intermixed(
    args: argparse.Namespace, add: AddArguments, prog: str, field: str
) -> argparse.Namespace:
    """Re-read ``args.<field>`` (everything from the first positional on) allowing flags and
    positionals in any order: before Python 3.13, argparse rejects a positional given after a
    flag once a ``*`` positional has matched nothing."""
    parser = argparse.ArgumentParser(prog=prog, add_help=False)
    add(parser, True)
    rest = getattr(args, field)
    delattr(args, field)
    return parser.parse_intermixed_args(rest, namespace=args)


def split_items(items: list[str]) -> tuple[str | None, list[str]]:
    """``[CONFIG] [key=value ...]`` -> (config path or None, overrides)."""
    config, overrides = None, []
    for item in items:
        if "=" in item:
            overrides.append(item)
        elif config is None and not overrides:
            config = item
        else:
            raise ValueError(f"unexpected argument {item!r}: give one CONFIG first, then key=value overrides")
    return config, overrides


def command_line(args: argparse.Namespace, command: str, positional: str) -> list[str]:
    """The command that was run, for metrics.json: ``sys.argv`` when this process was started
    as ``xvit <command>`` (directly, through torchrun or ``python -m xvit.cli.main``), else
    (``main([...])`` called from Python) an equivalent command rebuilt from ``args``."""
    if Path(sys.argv[0]).name in ("xvit", "main.py", "__main__.py") and sys.argv[1:2] == [command]:
        return ["xvit", *sys.argv[1:]]
    out = ["xvit", command]
    skip = {"command", "func", positional}
    for dest, value in vars(args).items():
        if dest in skip or value is None or value is False:
            continue
        flag = "--" + {"list_file": "list", "fmt": "format"}.get(dest, dest).replace("_", "-")
        out += [flag] if value is True else [flag, str(value)]
    return out + list(getattr(args, positional, []) or [])


def error(prog: str, message: object, code: int) -> int:
    """Print ``PROG: error: MESSAGE`` on one line of stderr; returns ``code``."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return code


def guarded(
    prog: str,
    work: Callable[[], T],
    errors: Sequence[tuple[tuple[type[BaseException], ...], int]],
    interrupted: str = "interrupted",
) -> tuple[int, T | None]:
    """``(0, work())``, or the exit code of the first ``(exception types, code)`` in ``errors``
    that matches what ``work`` raised, after one line on stderr naming the problem (no
    traceback); 130 for Ctrl-C (``PROG: interrupted``). Anything else propagates."""
    try:
        return 0, work()
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return 130, None
    except Exception as e:
        for types, code in errors:
            if isinstance(e, types):
                return error(prog, e, code), None
        raise


def add_precision_arguments(p: argparse.ArgumentParser) -> None:
    """``--precision`` and ``--min-agreement`` (`xvit.engine.deploy.precision_auto`), torch runtime."""
    p.add_argument(
        "--precision",
        default=None,
        help="fp32, bf16 (autocast), int8 (dynamic, CPU) or auto: measure them on this machine once "
        "(cached in $XVIT_CACHE/precision.json) and use the fastest that agrees with fp32 on "
        "--min-agreement of the clips (default: the model as saved; torch runtime only)",
    )
    p.add_argument(
        "--min-agreement",
        type=float,
        default=0.99,
        help="--precision auto: the top-1 agreement with fp32 a precision needs (default 0.99)",
    )


def add_runtime_argument(p: argparse.ArgumentParser) -> None:
    """``--runtime``: where the model runs (`xvit.engine.deploy.runtimes.RUNTIMES`)."""
    p.add_argument(
        "--runtime",
        type=lazy_choice("xvit.engine.deploy.runtimes", "RUNTIMES"),
        metavar="RUNTIME",
        default="torch",
        help="run the model in torch (default) or, from its ONNX export (CPU), in ONNX Runtime / OpenVINO",
    )


def lazy_choice(module: str, name: str) -> Callable[[str], str]:
    """An argparse ``type`` that checks a value against ``module.name`` (a tuple of names),
    imported only when the option is given, so that building the `xvit` parser does not
    import torch (``choices=`` would: argparse formats every choice when the option is added).
    """

    def check(value: str) -> str:
        import importlib

        names = tuple(getattr(importlib.import_module(module), name))
        if value not in names:
            raise argparse.ArgumentTypeError(
                f"invalid choice: {value!r} (choose from {', '.join(map(repr, names))})"
            )
        return value

    check.__name__ = name.lower()
    return check
