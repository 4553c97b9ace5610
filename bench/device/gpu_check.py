"""On a GPU host: export a THUMOS-size TZN (random weights) to ONNX, build a TensorRT engine, compare.

    PYTHONPATH=. python bench/device/gpu_check.py [--lengths 1 37 256 2304 5000] [--output-dir /tmp/tzn_gpu_check]

Prints one row per length: max abs difference of TensorRT against onnxruntime (CPU) over every float
output, whether the active-position counts agree, and the latency of both. Run by bench/device/gpu_check.sh.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from engine.heads import load_head
from export.onnx import export_model
from export.tensorrt import build_engine
from model.checkpoint import CheckpointConfig
from model.config import ModelConfig
from model.exported import Profile
from model.tzn import TZN


def max_difference(a, b) -> float:
    pairs = list(zip(a.cls_logits + a.offsets + a.boundary, b.cls_logits + b.offsets + b.boundary, strict=True))
    pairs += [(a.tau, b.tau), (a.layer_masks, b.layer_masks)]
    return max((x.float().cpu() - y.float().cpu()).abs().max().item() for x, y in pairs)


def timed(run) -> tuple[object, float]:
    run()
    torch.cuda.synchronize()
    start = time.perf_counter()
    output = run()
    torch.cuda.synchronize()
    return output, (time.perf_counter() - start) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1, 37, 256, 2304, 5000])
    parser.add_argument("--output-dir", type=Path, default=Path("/tmp/tzn_gpu_check"))
    parser.add_argument("--fp16", action="store_true")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    config = ModelConfig()
    model = TZN(config).eval()
    checkpoint = CheckpointConfig(model=config, labels=[f"class_{i}" for i in range(config.num_classes)])
    onnx_path = export_model(model, checkpoint, args.output_dir / "model.onnx")
    profile = Profile(max_length=max(8192, max(args.lengths)), max_batch=4)
    engine = build_engine(onnx_path, args.output_dir / "model.plan", fp16=args.fp16, profile=profile)
    trt_head = load_head("tensorrt", engine=engine)
    ort_head = load_head("onnxruntime", onnx=onnx_path)
    print(f"GPU {torch.cuda.get_device_name()}  engine {engine}  fp16={args.fp16}")
    header = f"{'T':>6} {'max abs diff':>12} {'active equal':>12} {'trt ms':>8} {'ort cpu ms':>10}"
    print(header)
    print("-" * len(header))
    worst = 0.0
    for length in args.lengths:
        features, mask = torch.randn(1, config.input_dim, length), torch.ones(1, length, dtype=torch.bool)
        got, trt_ms = timed(lambda f=features, m=mask: trt_head(f.cuda(), m.cuda()))
        start = time.perf_counter()
        expected = ort_head(features, mask)
        ort_ms = (time.perf_counter() - start) * 1000
        difference = max_difference(got, expected)
        equal = torch.equal(got.stem.active_positions.cpu(), expected.stem.active_positions)
        worst = max(worst, difference)
        print(f"{length:>6} {difference:>12.2e} {str(equal):>12} {trt_ms:>8.2f} {ort_ms:>10.1f}")
    tolerance = 5e-2 if args.fp16 else 1e-3
    print(f"worst {worst:.2e} (tolerance {tolerance:g}): {'OK' if worst <= tolerance else 'FAIL'}")
    return 0 if worst <= tolerance else 1


if __name__ == "__main__":
    raise SystemExit(main())
