"""Latency of the exported head on onnxruntime (CPU) vs PyTorch eager, Uniform-6 and TZN, in one process.

    PYTHONPATH=. python bench/export_speed.py [--length 2304] [--repeats 5] [--mean-depth 3.0] [--threads 0]

THUMOS-size models (d=512, 4 heads, window 19, 2048-d input) with random weights, which do not change the
cost; TZN shares the uniform model's weights. TZN runs the structured tau of bench/atr_speed.py (deep near
real THUMOS14 boundaries, --mean-depth of 6 layers): PyTorch through `tau_override`, onnxruntime through a
test export with a `tau_override` input (the tau predictor still runs in that graph, as in production;
only its result is replaced). Both run the hard path; PyTorch with its dense shortcut for layers with
nothing to skip, the graph always gathers (see export/onnx.py). FLOPs come from the counts each run reports.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from bench.atr_speed import median_ms, tau_for_mean_depth, thumos_boundary_stream
from engine.heads import OnnxRuntimeHead
from export.onnx import export_model
from model.checkpoint import CheckpointConfig
from model.config import ModelConfig
from model.flops import output_flops
from model.tzn import TZN


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--length", type=int, default=2304)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mean-depth", type=float, default=3.0)
    parser.add_argument("--floor", type=float, default=0.1, help="tau away from boundaries")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    uniform_config, atr_config = ModelConfig(atr=False), ModelConfig(atr=True)
    uniform = TZN(uniform_config).eval()
    atr = TZN(atr_config).eval()
    atr.load_state_dict(uniform.state_dict(), strict=False)
    labels = [f"class_{i}" for i in range(uniform_config.num_classes)]

    length = args.length
    features = torch.randn(1, uniform_config.input_dim, length)
    mask = torch.ones(1, length, dtype=torch.bool)
    stream = thumos_boundary_stream()
    tau = tau_for_mean_depth(stream[stream < length], length, args.mean_depth, args.floor, atr_config)

    with tempfile.TemporaryDirectory() as directory:
        uniform_path = export_model(uniform, CheckpointConfig(model=uniform_config, labels=labels),
                                    Path(directory) / "uniform.onnx")  # fmt: skip
        atr_path = export_model(atr, CheckpointConfig(model=atr_config, labels=labels),
                                Path(directory) / "tzn_tau.onnx", tau_input=True)  # fmt: skip
        device = torch.device("cpu")
        uniform_ort = OnnxRuntimeHead(uniform_path, device, threads=args.threads)
        atr_ort = OnnxRuntimeHead(atr_path, device, threads=args.threads)

        def torch_run(model, **kwargs):
            def run():
                with torch.inference_mode():
                    return model(features, mask, execution="hard", **kwargs)

            return run

        cases = [
            ("Uniform-6", "pytorch eager", torch_run(uniform)),
            ("Uniform-6", "onnxruntime cpu", lambda: uniform_ort(features, mask)),
            ("TZN, THUMOS tau", "pytorch eager", torch_run(atr, tau_override=tau)),
            ("TZN, THUMOS tau", "onnxruntime cpu", lambda: atr_ort.run(features, mask, tau_override=tau)),
        ]
        print(f"T={length} batch=1 torch threads={torch.get_num_threads()} ort threads={args.threads or 'default'} "
              f"repeats={args.repeats}")  # fmt: skip
        header = f"{'model':<16} {'runtime':<16} {'mean D':>6} {'ms':>9} {'GFLOPs':>7} {'vs torch':>8}"
        print(header)
        print("-" * len(header))
        torch_ms = None
        for name, runtime, run in cases:
            output = run()
            milliseconds = median_ms(run, args.repeats)
            torch_ms = milliseconds if runtime == "pytorch eager" else torch_ms
            depth = output.layer_masks[0, :length].sum(-1).mean().item()
            flops = output_flops(atr_config if name.startswith("TZN") else uniform_config, output, batch=1).total
            print(f"{name:<16} {runtime:<16} {depth:>6.2f} {milliseconds:>9.1f} {flops / 1e9:>7.1f} "
                  f"{milliseconds / torch_ms:>8.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
