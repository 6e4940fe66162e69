"""`xvit predict --list FILE --out predictions.csv`: the batch mode of `xvit predict`
(:mod:`xvit.engine.infer.batch_predict`); `xvit.cli.predict` hands ``--list`` runs to :func:`run_list`."""

from __future__ import annotations

import argparse
import sys

from xvit.cli._common import error, guarded

PROG = "xvit predict --list"


def run_list(args: argparse.Namespace) -> int:
    """Predict every video of ``args.list_file`` into ``args.out``: 0 when all were predicted,
    1 when some failed (listed in the .failed.csv next to it), 2 for bad input."""
    from xvit.engine.infer.batch_predict import predict_list
    from xvit.engine.infer.video_list import read_listed_videos
    from xvit.engine.run.schema import ConfigError

    if args.videos:
        return error(PROG, "give videos or --list FILE, not both", 2)
    if not args.out:
        return error(PROG, "--list needs --out FILE.csv for the predictions", 2)
    if args.threshold is not None or args.json:
        return error(PROG, "--threshold and --json do not apply to --list (the CSV holds the top-k)", 2)
    workers = args.workers  # --workers, --batch-size, --topk: checked by xvit.cli.predict.run
    overrides = [f"eval.views={args.views}"] + ([f"train.device={args.device}"] if args.device else [])

    def work() -> dict:
        listed = read_listed_videos(args.list_file)
        return predict_list(
            args.checkpoint,
            [v.path for v in listed],
            args.out,
            topk=args.topk,
            batch_size=args.batch_size,
            workers=workers,
            overrides=overrides,
            listed=listed,
            list_file=args.list_file,
        )

    code, res = guarded(
        PROG,
        work,
        [((ConfigError, FileNotFoundError, ValueError), 2), ((OSError,), 1)],
    )
    if code or res is None:
        return code
    for f in res["failures"]:
        print(f"failed: {f['error']}", file=sys.stderr)
    print(
        f"{res['predicted']} predicted, {res['skipped']} already in {res['out']}, {res['failed']} failed "
        f"of {res['videos']} videos in {res['seconds']:.1f} s"
        + (f"; failures: {res['failed_csv']}" if res["failed"] else ""),
        flush=True,
    )
    return 1 if res["failed"] else 0
