"""Wall time and FLOPs of the Uniform-6 head vs the ATR head with hard skipping, in one process.

    python bench/atr_speed.py [--lengths 2304 4608] [--repeats 5] [--mean-depth 3.0] [--device cpu]

Both models have THUMOS-size weights (d=512, 4 heads, window 19, 2048-d input); weights are random, which
does not change the cost. ATR runs with a tau map shaped like a trained one (deep near action boundaries,
shallow elsewhere), scaled so the mean depth D is --mean-depth of 6 layers, and once with tau = 1 everywhere
(nothing to skip: the overhead of the hard path).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from model.config import ModelConfig
from model.flops import output_flops, uniform_head_flops
from model.tzn import TZN


def boundary_tau(length: int, boundaries: torch.Tensor, radius: float) -> torch.Tensor:
    """(length,) tau = max(0, 1 - distance to the nearest boundary / radius)."""
    positions = torch.arange(length, dtype=torch.float32)
    distance = (positions[:, None] - boundaries[None, :]).abs().min(dim=1).values
    return (1 - distance / radius).clamp(min=0)


def tau_for_mean_depth(length: int, mean_depth: float, config: ModelConfig, seed: int = 0) -> torch.Tensor:
    """A boundary-concentrated tau map (1, length) whose mean depth is `mean_depth` (bisection on the radius).

    Boundaries: about one action per 150 steps (THUMOS14 at stride 4 has ~15 actions in ~2300 steps)."""
    generator = torch.Generator().manual_seed(seed)
    actions = max(1, length // 150)
    boundaries = torch.rand(2 * actions, generator=generator) * length
    target_tau = (mean_depth - config.min_depth) / (config.stem_layers - config.min_depth)
    low, high = 0.5, float(length)
    for _ in range(60):
        radius = (low + high) / 2
        if boundary_tau(length, boundaries, radius).mean() < target_tau:
            low = radius
        else:
            high = radius
    return boundary_tau(length, boundaries, radius)[None]


def median_ms(run, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[2304, 4608])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mean-depth", type=float, default=3.0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    device = torch.device(args.device)
    uniform_config = ModelConfig(atr=False)
    atr_config = ModelConfig(atr=True)
    uniform = TZN(uniform_config).to(device).eval()
    atr = TZN(atr_config).to(device).eval()
    atr.load_state_dict(uniform.state_dict(), strict=False)  # same stem weights: the same network, gated

    print(f"device={device} threads={torch.get_num_threads()} repeats={args.repeats} (median ms)")
    header = f"{'T':>5} {'model':<22} {'mean D':>6} {'ms':>9} {'GFLOPs':>8} {'time ratio':>10} {'FLOP ratio':>10}"
    print(header)
    print("-" * len(header))
    for length in args.lengths:
        features = torch.randn(1, uniform_config.input_dim, length, device=device)
        mask = torch.ones(1, length, dtype=torch.bool, device=device)
        shaped_tau = tau_for_mean_depth(length, args.mean_depth, atr_config).to(device)
        cases = [
            ("Uniform-6 (dense)", uniform, {}),
            ("ATR hard, shaped tau", atr, {"execution": "hard", "tau_override": shaped_tau}),
            ("ATR soft, shaped tau", atr, {"execution": "soft", "tau_override": shaped_tau}),
            ("ATR hard, tau=1", atr, {"execution": "hard", "tau_override": torch.ones_like(shaped_tau)}),
        ]
        baseline_ms = baseline_flops = None
        for name, model, kwargs in cases:
            with torch.inference_mode():
                output = model(features, mask, **kwargs)
                milliseconds = median_ms(lambda m=model, k=kwargs: m(features, mask, **k), args.repeats)
            flops = output_flops(model.config, output, batch=1).total
            if baseline_ms is None:
                baseline_ms, baseline_flops = milliseconds, flops
                assert flops == uniform_head_flops(uniform_config, 1, output.padded_length).total
            depth = output.layer_masks[0, :length].sum(-1).mean().item()
            print(
                f"{length:>5} {name:<22} {depth:>6.2f} {milliseconds:>9.1f} {flops / 1e9:>8.1f} "
                f"{milliseconds / baseline_ms:>10.2f} {flops / baseline_flops:>10.2f}"
            )


if __name__ == "__main__":
    main()
