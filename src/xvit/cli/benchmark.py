"""`xvit benchmark`: inference speed and memory of our models and their peers, side by side."""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

from xvit.cli._common import error

PROG = "xvit benchmark"

# Model families of ours, in table order; a family plus --size gives the registry name.
FAMILIES = ("xvit", "xvit_st", "vit", "tsm_vit", "timesformer", "joint_vit", "vivit_fe")
# --precision values and the benchmark dtype mode each is timed as (bf16: the faster mode).
PRECISIONS = {"fp32": "fp32", "bf16": "bf16", "int8": "int8"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `xvit benchmark`."""
    p = subparsers.add_parser(
        "benchmark",
        help="measure clips/s, ms/clip, GFLOPs, parameters and peak memory of models",
        description=(
            "Measure inference speed of video models side by side: all models are built "
            "once, warmed up, then timed in interleaved rounds; writes a markdown table, "
            "JSON and plots to --out."
        ),
    )
    p.add_argument(
        "--models",
        default=",".join(FAMILIES),
        help="comma list of model families (xvit, vit, ...), registry names, or "
        "peers (hf_timesformer, hf_vivit, hf_videomae), each optionally with "
        "its own frame counts (xvit@8+32); default: all of ours",
    )
    p.add_argument("--frames", default="8", help="comma list of clip lengths T (default 8)")
    p.add_argument("--batch", default="1,8", help="comma list of batch sizes (default 1,8)")
    p.add_argument("--img-size", type=int, default=224, help="input height and width")
    p.add_argument(
        "--size",
        default="base",
        choices=("tiny", "small", "base", "large"),
        help="model size for families and peers (default base)",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument(
        "--dtype",
        default=None,
        help="comma list of fp32 (default), bf16 (the faster of bf16-model and "
        "bf16-autocast, per model), bf16-model, bf16-autocast, int8",
    )
    p.add_argument(
        "--precision",
        default=None,
        help="comma list of fp32, bf16, int8 (dynamic int8 of the linear layers, CPU), or all; "
        "instead of --dtype",
    )
    p.add_argument(
        "--runtime",
        default="torch",
        help="comma list of torch (eager, default), onnxruntime, openvino (CPU, fp32: each model "
        "is exported to ONNX once and checked against eager), or all",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="also time torch.compile'd models (compile time reported separately)",
    )
    p.add_argument(
        "--peers",
        action="store_true",
        help="add Hugging Face TimeSformer, ViViT and VideoMAE at our clip sizes "
        "and at their standard ones (needs the bench extra: transformers)",
    )
    p.add_argument("--repeats", type=int, default=5, help="interleaved timed rounds")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per item first")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument(
        "--min-time",
        type=float,
        default=0.0,
        help="each timed repeat loops until it lasts this many seconds (tiny models)",
    )
    p.add_argument("--no-memory", action="store_true", help="skip the per-model peak-memory subprocesses")
    p.add_argument(
        "--matmul-n", type=int, default=2048, help="size of the reference dense matmul (0 skips it)"
    )
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="architecture override passed to create_model for our models "
        "(repeatable; values parsed as YAML)",
    )
    p.add_argument("--name", default="benchmark", help="base name of the output files")
    p.add_argument("--out", default="runs/benchmark", help="output directory")
    p.add_argument(
        "--targets",
        metavar="FILE",
        help="YAML of speed goals to check in the report (benchmarks/speed_targets.yaml)",
    )
    p.set_defaults(func=run)
    p.error = _one_line_error  # type: ignore[method-assign]


def _one_line_error(message: str) -> NoReturn:
    """argparse's error for this command, without the usage lines: one line, exit 2."""
    print(f"{PROG}: error: {message} (see {PROG} --help)", file=sys.stderr)
    raise SystemExit(2)


def _int_list(text: str, what: str, sep: str = ",") -> list[int]:
    """``"1,8"`` -> ``[1, 8]``; ValueError unless every item is a positive integer."""
    items = [v.strip() for v in text.split(sep)]
    if not all(re.fullmatch(r"[0-9]+", v) for v in items):
        kind = "comma" if sep == "," else repr(sep)
        raise ValueError(f"{what} must be a {kind} list of positive integers, got {text!r}")
    values = [int(v) for v in items]
    if any(v < 1 for v in values):
        raise ValueError(f"{what} must be positive integers, got {text!r}")
    return values


def _overrides(items: list[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--override wants KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            problem = " ".join(str(getattr(e, "problem", None) or e).split())
            raise ValueError(f"--override {item!r}: the value is not YAML ({problem})") from None
    return out


def build_specs(args: argparse.Namespace) -> list:
    """The ModelSpecs a command line asks for, ours first, then peers; ValueError naming
    what is wrong (an unknown model, a clip size or override it cannot be built with)
    before anything is built."""
    from xvit.benchmarks.peers import PEERS, peers_available
    from xvit.benchmarks.speed import ModelSpec

    frames = _int_list(args.frames, "--frames")
    overrides = _overrides(args.override)
    names = _model_list(args.models)
    if args.peers:
        names += [(p, None) for p in PEERS if p not in {n for n, _ in names}]
    peers = [(n, fr) for n, fr in names if n in PEERS]
    if args.img_size < 1:
        raise ValueError(f"--img-size must be a positive integer, got {args.img_size}")
    if peers and not peers_available():
        raise ValueError(
            "peers need Hugging Face transformers, which is not installed; "
            "pip install -e '.[bench]' (or drop --peers / the hf_* models)"
        )
    own = [(n, fr) for n, fr in names if n not in PEERS]
    specs = []
    for t in sorted({t for _, fr in own for t in (fr or frames)}):
        for n, fr in own:
            if t in (fr or frames):
                name = f"{n}_{args.size}_patch16" if n in FAMILIES else n
                specs.append(ModelSpec(name, t, args.img_size, args.size, dict(overrides)))
    for n, fr in peers:
        info = PEERS[n]
        if fr:
            clip_lengths = fr
        else:  # ours that fit its tubelets, and its standard clip
            clip_lengths = [t for t in frames if t % info.tubelet == 0]
            if info.standard_frames not in clip_lengths:
                clip_lengths.append(info.standard_frames)
        for t in clip_lengths:
            specs.append(ModelSpec(n, t, args.img_size, args.size))
    for spec in specs:
        _check_spec(spec)
    return specs


def _check_spec(spec: Any) -> None:
    """ValueError naming why ``spec`` cannot be built; reads configs, builds nothing."""
    from xvit.benchmarks.peers import PATCH_SIZE, check_peer_frames
    from xvit.models import model_config

    if spec.source == "hf":
        if spec.img_size % PATCH_SIZE:
            raise ValueError(
                f"--img-size {spec.img_size} is not divisible by the patch size {PATCH_SIZE} of {spec.name}"
            )
        check_peer_frames(spec.name, spec.num_frames)
        return
    try:
        model_config(spec.name, num_frames=spec.num_frames, img_size=spec.img_size, **spec.overrides)
    except (TypeError, ValueError) as e:
        message = str(e)
        if message.startswith("img_size "):  # as the flag is spelled
            message = f"--img-size {message[len('img_size ') :]} of {spec.name}"
        raise ValueError(message) from None


def _model_list(text: str) -> list[tuple[str, list[int] | None]]:
    """``xvit,vit@8,hf_timesformer@8+16`` -> names with their own frame lists (or None)."""
    out = []
    for item in (i.strip() for i in text.split(",")):
        if not item:
            raise ValueError(f"--models has an empty item, got {text!r}")
        name, at, fr = item.partition("@")
        out.append((name, _int_list(fr, f"the frames of {name}@", "+") if at else None))
    return out


def _names(text: str, flag: str, allowed: tuple[str, ...], everything: tuple[str, ...]) -> list[str]:
    """A comma list of ``allowed`` names (``all``: ``everything``), or ValueError naming the bad ones."""
    items = [v.strip() for v in text.split(",")]
    if items == ["all"]:
        return list(everything)
    bad = [v for v in items if v not in allowed]
    if bad:
        raise ValueError(f"{flag} must be a comma list of {', '.join(allowed)} or all, got {text!r}")
    return list(dict.fromkeys(items))


def dtypes_and_runtimes(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The benchmark dtype modes and runtimes of ``--dtype`` / ``--precision`` and ``--runtime``."""
    from xvit.benchmarks.forward import DTYPE_MODES
    from xvit.engine.deploy.runtimes import RUNTIMES

    if args.dtype is not None and args.precision is not None:
        raise ValueError("give --dtype or --precision, not both")
    if args.precision is not None:
        dtypes = [
            PRECISIONS[p] for p in _names(args.precision, "--precision", tuple(PRECISIONS), tuple(PRECISIONS))
        ]
    else:
        dtypes = _names(args.dtype or "fp32", "--dtype", DTYPE_MODES, DTYPE_MODES)
    runtimes = _names(args.runtime, "--runtime", RUNTIMES, RUNTIMES)
    return dtypes, runtimes


def check_numbers(args: argparse.Namespace) -> None:
    """ValueError naming the first numeric flag out of its range."""
    if args.repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {args.repeats}")
    if args.warmup < 0:
        raise ValueError(f"--warmup must be 0 or more, got {args.warmup}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(
            f"--threads must be at least 1 (leave it out for torch's default), got {args.threads}"
        )
    if not math.isfinite(args.min_time) or args.min_time < 0:
        raise ValueError(f"--min-time must be a number of seconds, 0 or more, got {args.min_time}")
    if args.matmul_n < 0:
        raise ValueError(f"--matmul-n must be 0 (skip) or a positive size, got {args.matmul_n}")


def check_output(out: str, name: str) -> None:
    """ValueError unless the report files ``out/name.*`` can be written (``out`` a directory,
    existing or creatable); checked before anything is measured. Creates nothing."""
    if not name or name in (".", "..") or "/" in name or os.sep in name or "\0" in name:
        raise ValueError(f"--name must be a plain file name (no directory), got {name!r}")
    if len(os.fsencode(f".{name}_frames.png")) > 255:
        raise ValueError(f"--name is too long for a file name: {name!r}")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {out}: exists and is not a directory")
    if path.is_dir():
        for suffix in (".json", ".md", "_speed.png", "_frames.png"):
            target = path / f"{name}{suffix}"
            if target.is_dir():
                raise ValueError(f"--out {out}: {target.name} there is a directory, not a report file")
    parent = path
    while not parent.exists():  # the nearest existing folder: the report directory is made in it
        if parent.is_symlink():
            raise ValueError(f"--out {out}: {parent} is a broken symbolic link")
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"--out {out}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: {parent} is not writable")


def _runtime_target(workdir: str):
    """Exports each benchmarked model once into ``workdir``; its runtimes run that file."""
    from xvit.engine.deploy.runtime_targets import OnnxTargets

    targets = OnnxTargets(workdir)

    def build(spec, model, runtime, batches):
        return targets.target(
            f"{spec.name}_{spec.num_frames}x{spec.img_size}",
            model,
            runtime,
            num_frames=spec.num_frames,
            img_size=spec.img_size,
            channels_last_time=spec.source == "hf",  # transformers' models take (B, T, 3, H, W)
            batches=batches,
        )

    return build


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and write the report; prints the tables."""
    from xvit.benchmarks.report import (
        compile_table,
        machine_summary,
        results_table,
        targets_table,
        write_report,
    )
    from xvit.benchmarks.speed import run_benchmark
    from xvit.engine.run.distributed import resolve_device

    try:
        dtypes, runtimes = dtypes_and_runtimes(args)
        check_numbers(args)
        batches = _int_list(args.batch, "--batch")
        check_output(args.out, args.name)
        goals = None
        if args.targets:
            from xvit.benchmarks.targets import load_goals

            try:
                goals = load_goals(args.targets)
            except OSError as e:
                raise ValueError(f"--targets {args.targets}: {e.strerror or e}") from None
        specs = build_specs(args)
        resolve_device(args.device)  # DeviceError (a ValueError): one line, exit 2
    except ValueError as e:
        return error(PROG, e, 2)
    with tempfile.TemporaryDirectory(prefix="xvit-benchmark-") as workdir:
        payload = run_benchmark(
            specs,
            batches=batches,
            dtypes=dtypes,
            device=args.device,
            compile=args.compile,
            repeats=args.repeats,
            warmup=args.warmup,
            threads=args.threads,
            memory=not args.no_memory,
            min_repeat_s=args.min_time,
            matmul_n=args.matmul_n or None,
            runtimes=runtimes,
            runtime_target=_runtime_target(workdir),
        )
    payload["meta"]["args"] = {k: v for k, v in vars(args).items() if k != "func"}
    if sys.argv[1:2] == ["benchmark"]:
        payload["meta"]["command"] = "xvit " + shlex.join(sys.argv[1:])
    paths = write_report(payload, args.out, args.name, goals=goals)
    print(machine_summary(payload["meta"]))
    print()
    print(results_table(payload["results"]))
    for note in payload["meta"].get("notes", []):
        print(f"note: {note}")
    if compile_table(payload["results"]):
        print()
        print(compile_table(payload["results"]))
    if payload["targets"]:
        print()
        print(targets_table(payload["targets"]))
    print()
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0
