"""`tzn` subcommands of the training package: train, predict, eval (docs/design.md, "Command line").

Bad input (missing files, malformed configs or annotations, an unusable checkpoint) is reported as one
line on stderr with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from model.checkpoint import CheckpointError
from model.config import RUNTIMES
from model.head import HeadError
from training.config import TrainConfigError, load_config
from training.dataset import DatasetError
from training.evaluation import THUMOS_TIOUS, EvaluationError, evaluate_files, parse_tious

if TYPE_CHECKING:
    from training.predict import HeadLoader

BAD_INPUT = 2


def register(
    subcommands: argparse._SubParsersAction,
    load_head: HeadLoader | None = None,
    write_timelines: Callable[..., list[Path]] | None = None,
) -> None:
    """Adds this package's subcommands; each sets `handler` to a function(args) -> exit code.

    `load_head` loads exported heads for `tzn predict --runtime onnxruntime|tensorrt` and `write_timelines`
    draws `tzn predict --plot` (the dispatcher passes `engine.heads.load_head` and
    `viz.timeline.write_prediction_timelines`, so that training imports neither)."""
    train = subcommands.add_parser("train", help="train a TZN on pre-extracted features (resumes a run directory)")
    train.add_argument("--config", required=True, type=Path, help="training config (YAML)")
    train.add_argument("--annotations", type=Path, help="annotation JSON (overrides data.annotations)")
    train.add_argument("--features", type=Path, help="features directory (overrides data.features_dir)")
    train.add_argument("--output", required=True, type=Path, help="run directory; an existing run is resumed")
    train.add_argument("--epochs", type=int, help="total epochs (overrides optimizer.epochs)")
    train.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    train.add_argument("--train-split", help="subset to train on (overrides data.train_split)")
    train.add_argument("--distill-from", type=Path, help="teacher run directory: distil a hard-mask ATR student")
    train.set_defaults(handler=_guarded("train", _train))

    predict = subcommands.add_parser("predict", help="run a checkpoint over a split -> ActivityNet results JSON")
    predict.add_argument("--checkpoint", required=True, type=Path, help="run directory (config.json + weights)")
    predict.add_argument("--annotations", required=True, type=Path)
    predict.add_argument("--features", required=True, type=Path)
    predict.add_argument("--split", default="test")
    predict.add_argument("--output", required=True, type=Path, help="predictions JSON to write")
    predict.add_argument("--atr", choices=["soft", "hard"], default="hard", help="ATR execution (same predictions)")
    predict.add_argument("--runtime", choices=RUNTIMES, default="torch")
    predict.add_argument("--onnx", type=Path, help="ONNX model for --runtime onnxruntime")
    predict.add_argument("--engine", type=Path, help="TensorRT engine for --runtime tensorrt")
    predict.add_argument("--stats", type=Path, help="write {videos, seconds, mean_depth, head_flops, ...} here")
    predict.add_argument("--device", default="cpu")
    predict.add_argument("--plot", type=Path, help="folder: one timeline picture per video, with its ground truth")
    predict.add_argument("--plot-format", choices=["png", "svg"], default="png")
    predict.set_defaults(handler=_guarded("predict", _predict), load_head=load_head, write_timelines=write_timelines)

    evaluate = subcommands.add_parser("eval", help="mAP of predictions (ActivityNet protocol), JSON to stdout")
    evaluate.add_argument("--annotations", required=True, type=Path)
    evaluate.add_argument("--predictions", required=True, type=Path)
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument(
        "--tious", default=",".join(str(t) for t in THUMOS_TIOUS), help="'0.3,0.5,0.7' or 'start:step:stop'"
    )
    evaluate.set_defaults(handler=_guarded("eval", _eval))


def _bad_input_errors() -> tuple[type[Exception], ...]:
    from training.predict import PredictError

    return (
        DatasetError, EvaluationError, CheckpointError, TrainConfigError, PredictError, FileNotFoundError, HeadError,
    )  # fmt: skip


def _guarded(name: str, command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except _bad_input_errors() as error:
            message = " ".join(str(error).split())  # one line
            print(f"tzn {name}: error: {message}", file=sys.stderr)
            return BAD_INPUT

    return handler


def _train(args: argparse.Namespace) -> int:
    from training.train import train

    overrides = {
        "data": {"annotations": args.annotations, "features_dir": args.features, "train_split": args.train_split},
        "optimizer": {"epochs": args.epochs},
        "distill": {"teacher": args.distill_from},
    }
    config = load_config(args.config, overrides)
    train(config, args.output, device=args.device, log=lambda line: print(line, file=sys.stderr))
    print(json.dumps({"run": str(args.output)}))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from model.checkpoint import read_checkpoint_config
    from training.plots import TimelineCollector
    from training.predict import PredictError, predict, write_json

    if args.plot and args.write_timelines is None:
        raise PredictError("--plot needs the timeline drawing, which the `tzn` command provides; run it through `tzn`")
    collector = TimelineCollector(read_checkpoint_config(args.checkpoint)) if args.plot else None
    document, stats = predict(
        args.checkpoint, args.annotations, args.features, args.split, execution=args.atr, runtime=args.runtime,
        onnx=args.onnx, engine=args.engine, device=args.device, load_head=args.load_head, on_video=collector,
    )  # fmt: skip
    write_json(args.output, document)
    if args.stats is not None:
        write_json(args.stats, stats)
    segments = sum(len(found) for found in document["results"].values())
    saved = 1 - stats["head_flops"] / stats["head_flops_uniform"] if stats["head_flops_uniform"] else 0.0
    print(
        f"tzn predict: wrote {args.output}: {stats['videos']} videos ({stats['seconds']:.0f} s), {segments} segments; "
        f"mean depth {stats['mean_depth']:.2f}, head FLOPs {saved:.0%} under Uniform",
        file=sys.stderr,
    )
    if collector is not None:
        config = collector.config
        pictures = args.write_timelines(
            args.plot, document["results"], collector.traces, args.annotations, config.labels,
            config.model.stem_layers, config.metadata.get("name", args.checkpoint.name), args.plot_format,
        )  # fmt: skip
        print(f"{len(pictures)} timelines written to {args.plot}", file=sys.stderr)
    return 0


def _eval(args: argparse.Namespace) -> int:
    try:
        tious = parse_tious(args.tious)
    except ValueError:
        raise EvaluationError(f"--tious {args.tious!r}: expected '0.3,0.5,0.7' or 'start:step:stop'") from None
    try:
        metrics = evaluate_files(args.annotations, args.predictions, args.split, tious)
    except ValueError as error:  # thresholds outside (0, 1]
        raise EvaluationError(str(error)) from None
    print(json.dumps(metrics, indent=1))
    return 0
