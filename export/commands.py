"""`tzn` subcommands of the export package: `tzn export onnx` and `tzn export tensorrt`."""

from __future__ import annotations

import argparse
import sys


def register(subcommands: argparse._SubParsersAction) -> None:
    """Adds this package's subcommands; each sets `handler` to a function(args) -> exit code."""
    export = subcommands.add_parser("export", help="export a checkpoint to ONNX or a TensorRT engine")
    targets = export.add_subparsers(dest="target", required=True, metavar="TARGET")

    onnx = targets.add_parser("onnx", help="checkpoint directory -> ONNX file (hard ATR path, metadata inside)")
    onnx.add_argument("--checkpoint", required=True, help="run directory with config.json and model.safetensors")
    onnx.add_argument("--output", required=True, help="ONNX file to write, e.g. model.onnx")
    onnx.add_argument("--fp16", action="store_true", help="float16 weights and compute (inputs/outputs stay float32)")
    onnx.set_defaults(handler=_export_onnx)

    tensorrt = targets.add_parser("tensorrt", help="ONNX file -> TensorRT engine (needs TensorRT and a GPU)")
    tensorrt.add_argument("--onnx", required=True, help="file from `tzn export onnx`")
    tensorrt.add_argument("--output", required=True, help="engine to write, e.g. model.plan (+ model.plan.json)")
    tensorrt.add_argument("--fp16", action="store_true", help="let TensorRT use float16 kernels")
    tensorrt.add_argument("--min-t", type=int, default=1, help="shortest feature sequence the engine accepts")
    tensorrt.add_argument("--opt-t", type=int, default=2304, help="length TensorRT tunes for")
    tensorrt.add_argument("--max-t", type=int, default=8192, help="longest feature sequence the engine accepts")
    tensorrt.add_argument("--max-batch", type=int, default=4, help="largest batch the engine accepts")
    tensorrt.add_argument("--workspace-gib", type=float, default=4.0, help="TensorRT builder workspace")
    tensorrt.set_defaults(handler=_export_tensorrt)


def _export_onnx(args: argparse.Namespace) -> int:
    from export.onnx import export_checkpoint
    from model.checkpoint import CheckpointError

    try:
        path = export_checkpoint(args.checkpoint, args.output, fp16=args.fp16)
    except CheckpointError as error:
        print(f"tzn export onnx: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def _export_tensorrt(args: argparse.Namespace) -> int:
    from export.tensorrt import Profile, TensorRTError, build_engine
    from model.exported import ExportError

    try:
        profile = Profile(
            min_length=args.min_t, opt_length=args.opt_t, max_length=args.max_t,
            opt_batch=1, max_batch=args.max_batch,
        )  # fmt: skip
        path = build_engine(args.onnx, args.output, fp16=args.fp16, profile=profile, workspace_gib=args.workspace_gib)
    except (ExportError, TensorRTError, ValueError) as error:
        print(f"tzn export tensorrt: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path} and {path}.json")
    return 0
