"""`xvit export --checkpoint DIR --format onnx|pt2 --out FILE`: a checked deployment file."""

from __future__ import annotations

import argparse

from xvit.cli._common import error, guarded


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `export` sub-command."""
    p = subparsers.add_parser(
        "export",
        help="export a model to ONNX or torch.export (.pt2), checked against the eager model",
        description=(
            "Export a saved model to ONNX (torch's dynamo exporter, falling back to the "
            "TorchScript one) or to a torch.export program (.pt2). The written file is run on "
            "seeded clips next to the eager model; the max abs logit difference (<= 1e-4) and "
            "the top-1 agreement are printed. A model that cannot be exported, or whose export "
            "does not match, gets one line naming why (exit 1) and nothing is written."
        ),
    )
    p.add_argument("--checkpoint", required=True, help="a run directory or a save_pretrained directory")
    p.add_argument("--format", dest="fmt", required=True, choices=("onnx", "pt2"))
    p.add_argument("--out", required=True, help="the file to write (.onnx or .pt2)")
    p.add_argument(
        "--dynamic-batch", action="store_true", help="any batch size at run time (default: fixed batch)"
    )
    p.add_argument("--batch", type=int, default=1, help="the batch size traced (default 1)")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default: the model's)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 18, default 18)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of `xvit export`."""
    from xvit.engine.deploy.export import ExportError, export_model
    from xvit.models import load_model
    from xvit.models.storage import CheckpointError

    prog = "xvit export"
    for name in ("batch", "frames"):
        value = getattr(args, name)
        if value is not None and value < 1:
            return error(prog, f"--{name} must be >= 1, got {value}", 2)
    code, model = guarded(prog, lambda: load_model(args.checkpoint), [((CheckpointError, OSError), 2)])
    if model is None:
        return code or 2
    if getattr(model, "quantization", None):
        return error(prog, f"{args.checkpoint} is an int8 quantised model; export its fp32 source", 2)
    code, report = guarded(
        prog,
        lambda: export_model(
            model,
            args.fmt,
            args.out,
            frames=args.frames,
            dynamic_batch=args.dynamic_batch,
            opset=args.opset,
            batch=args.batch,
        ),
        [((ValueError,), 2), ((ExportError, OSError), 1)],
    )
    if report is None:
        return code
    print(report.summary())
    return 0
