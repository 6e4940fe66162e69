"""`xvit eval`: multi-view evaluation of a saved model on an annotation file, its report,
``metrics.json`` and the optional views curve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xvit.engine.evaluate.evaluator import evaluate
from xvit.engine.evaluate.report import print_eval_report, write_metrics
from xvit.engine.evaluate.views_curve import views_curve, write_views_curve
from xvit.engine.run.data import build_eval_dataset, label_space, read_split
from xvit.engine.run.distributed import configure_threads, init_distributed
from xvit.engine.run.precision import amp_dtype_for
from xvit.engine.run.rundir import check_output_dir
from xvit.engine.run.saved import load_run
from xvit.engine.run.schema import parse_views
from xvit.models import count_flops

__all__ = ["evaluate_checkpoint"]


def evaluate_checkpoint(
    checkpoint: str | Path,
    list_file: str | Path,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    out: str | Path | None = None,
    curve: bool = False,
    command: list[str] | None = None,
    runtime: str = "torch",
    precision: str | None = None,
    min_agreement: float = 0.99,
) -> dict[str, Any] | None:
    """`xvit eval`: multi-view evaluation of a saved model on an annotation file.

    Writes ``metrics.json`` (and the views curve) into ``out``; returns the figures on rank 0.
    ``runtime``: ``torch``, or ``onnxruntime`` / ``openvino`` on the model's ONNX export (CPU,
    fp32; ``xvit.engine.deploy.export.runtime_model``). ``precision`` (torch only): ``fp32``, ``bf16``,
    ``int8`` or ``auto`` (``xvit.engine.deploy.precision_auto``; the list's first videos are its real
    clips); None runs the model as saved.
    """
    model, cfg = load_run(checkpoint, overrides)
    if out is None:
        out = Path("runs") / "eval" / f"{Path(checkpoint).name}-{Path(list_file).stem}-{cfg.eval.views}"
    out = check_output_dir(out, "--out")  # before the work, not after it
    dist_info = init_distributed(cfg.train.device)
    configure_threads(cfg.train.threads, dist_info.device, cfg.data.workers)
    views = parse_views(cfg.eval.views)
    class_names = list(model.config.class_names) if model.config.class_names else None
    samples, names, parsed = read_split(cfg, str(list_file), class_names=class_names, against=str(checkpoint))
    class_names = class_names or names
    labels = label_space(samples, model.config.num_classes, list_file, checkpoint)
    for note in getattr(parsed, "notes", []):  # labels mapped by name from the list's own class names
        print(f"note: {note}", flush=True)
        labels.setdefault("notes", []).append(note)
    if labels["subset"]:
        print(
            f"note: the list uses {labels['list_classes']} of the model's {labels['model_classes']} "
            f"classes (a subset: predictions may fall on classes the list does not hold)",
            flush=True,
        )
    multi_label = bool(cfg.data.multi_label)
    dataset = build_eval_dataset(cfg, samples, views, model.config.num_classes if multi_label else None)
    model.to(dist_info.device)
    from xvit.engine.deploy.precision_auto import inference_runner

    runner = inference_runner(
        checkpoint,
        model,
        dist_info.device,
        runtime=runtime,
        precision=precision,
        dataset=dataset,
        min_agreement=min_agreement,
    )
    res = evaluate(
        runner,
        dataset,
        views=views,
        fuse=cfg.eval.fuse,
        batch_size=cfg.eval.batch_size,
        workers=cfg.data.workers,
        device=dist_info.device,
        amp_dtype=amp_dtype_for(cfg.train.amp, dist_info.device) if runtime == "torch" else None,
        dist_info=dist_info,
        class_names=class_names,
        progress=True,
        multi_label=multi_label,
    )
    if res is None:
        return None
    metrics, records, scores = res
    extra: dict[str, Any] = {"checkpoint": str(checkpoint), "list": str(list_file), "label_space": labels}
    print_eval_report(metrics, records, multi_label)
    if curve:
        shape = (1, 3, cfg.data.num_frames, cfg.data.img_size, cfg.data.img_size)
        gflops = count_flops(model, shape) / 1e9
        rows = views_curve(scores, views, cfg.eval.fuse, gflops, multi_label=multi_label)
        csv_path, png_path = write_views_curve(
            rows, out, title=f"{checkpoint} on {list_file}: accuracy vs test views"
        )
        extra["views_curve"] = rows
        extra["gflops_per_view"] = round(gflops, 4)
        print(f"views curve: {csv_path}, {png_path}", flush=True)
    path = write_metrics(out / "metrics.json", metrics, records, command, extra)
    print(f"metrics written to {path}", flush=True)
    return metrics
