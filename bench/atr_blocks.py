"""What block-depth ATR can save at a given executed share of the stem, before any training (a constructed case).

    PYTHONPATH=. python bench/atr_blocks.py [--length 2304] [--shares 0.3 0.45 0.6] [--repeats 5] [--thumos-size]
        [--threads 1]

Random weights (the cost does not depend on them) and random features; the depth is one whole number per
attention block, drawn so that the stem's executed share is the asked one (ceil of the block depths, as
training's budget counts it). Hard execution of that TZN (tau predictor, gather/scatter and halos included)
is timed round robin against a dense Uniform-6 of the same size in this process; FLOPs from model.flops.
It answers whether the executor's overheads leave a saving at that share; a trained model's numbers are
experiments/results.py's.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from model.config import THUMOS_I3D, ModelConfig
from model.flops import output_flops
from model.tzn import TZN

CPU_SIZE = ModelConfig(input_dim=64, num_classes=8, embed_dim=64, mlp_ratio=2, head_layers=1, tau_hidden=32)


def block_tau(length: int, block: int, share: float, layers: int, generator: torch.Generator) -> torch.Tensor:
    """(1, length) tau whose block depths D = 1 + 5 tau are whole numbers in [1, layers] with mean share*layers."""
    blocks = -(-length // block)
    target = share * layers
    low = max(1, int(target))
    high = min(layers, low + 1)
    deep = torch.rand(blocks, generator=generator) < (target - low) / max(high - low, 1)
    depth = torch.where(deep, torch.tensor(float(high)), torch.tensor(float(low)))
    tau = (depth - 1) / (layers - 1)
    return tau.repeat_interleave(block)[:length][None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--length", type=int, default=2304)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.3, 0.45, 0.6])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--thumos-size", action="store_true", help="d=512, 2048-d input (else the CPU config)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steady on a shared machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    base = THUMOS_I3D if args.thumos_size else CPU_SIZE
    config = base.model_copy(update={"block_depth": True, "boundary_head": "bdr"})
    torch.manual_seed(0)
    models = {"Uniform-6": TZN(config.model_copy(update={"atr": False, "boundary_head": "none"})).eval()}
    generator = torch.Generator().manual_seed(0)
    taus = {}
    for share in args.shares:
        name = f"TZN share {share:.2f}"
        models[name] = TZN(config).eval()
        taus[name] = block_tau(args.length, config.attn_block_size, share, config.stem_layers, generator)
    features = torch.randn(1, config.input_dim, args.length)
    mask = torch.ones(1, args.length, dtype=torch.bool)
    times: dict[str, list[float]] = {name: [] for name in models}
    flops: dict[str, float] = {}
    with torch.inference_mode():
        for repeat in range(args.repeats + 1):
            for name, model in models.items():
                started = time.perf_counter()
                output = model(features, mask, execution="hard", tau_override=taus.get(name))
                elapsed = 1000 * (time.perf_counter() - started)
                if repeat == 0:
                    flops[name] = output_flops(model.config, output, batch=1).total / 1e9
                else:
                    times[name].append(elapsed)
    base_ms, base_flops = statistics.median(times["Uniform-6"]), flops["Uniform-6"]
    size = "THUMOS size (d=512)" if args.thumos_size else "CPU config (d=64)"
    print(f"{size}, T={args.length}, median of {args.repeats}, torch threads {torch.get_num_threads()}")
    print(f"{'model':<18} {'ms':>9} {'GFLOPs':>8} {'time x':>7} {'FLOPs x':>8}")
    for name in models:
        ms = statistics.median(times[name])
        print(f"{name:<18} {ms:9.1f} {flops[name]:8.3f} {ms / base_ms:7.2f} {flops[name] / base_flops:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
