"""Wall time and FLOPs of the Uniform-6 head vs the ATR head with hard skipping, in one process.

    python bench/atr_speed.py [--lengths 2304 4608] [--repeats 5] [--mean-depth 3.0] [--device cpu]

Both models have THUMOS-size weights (d=512, 4 heads, window 19, 2048-d input); weights are random, which
does not change the cost. ATR runs with a tau map shaped like the one ATR is trained to produce: deep near
action boundaries, shallow (tau = --floor, never 0, like a sigmoid) elsewhere. The boundaries are the real
ones of THUMOS14 test videos (laid end to end at stride 4, 30 fps, 16-frame clips, and cut into windows of T);
the width of the deep zones is set so that the mean depth D is --mean-depth of 6 layers. A last row runs
tau = 1 everywhere (nothing to skip: the overhead of the hard path).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from model.config import ModelConfig
from model.flops import output_flops
from model.tzn import TZN

THUMOS14 = Path(__file__).resolve().parents[1] / "training" / "data" / "thumos14.json"


def thumos_boundary_stream(path: Path = THUMOS14, feat_stride: int = 4, num_frames: int = 16) -> torch.Tensor:
    """Action boundaries of the THUMOS14 test videos laid end to end, in feature steps (sorted)."""
    database = json.loads(path.read_text())["database"]
    boundaries, offset = [], 0.0
    for video in database.values():
        if video["subset"].lower() != "test":
            continue
        fps = video["fps"]
        for action in video["annotations"]:
            boundaries += [offset + (second * fps - num_frames / 2) / feat_stride for second in action["segment"]]
        offset += (video["duration"] * fps - num_frames / 2) / feat_stride
    return torch.tensor(sorted(boundaries))


def boundary_tau(length: int, boundaries: torch.Tensor, radius: float, floor: float) -> torch.Tensor:
    """(length,) tau = floor + (1 - floor) * max(0, 1 - distance to the nearest boundary / radius)."""
    if boundaries.numel() == 0:
        return torch.full((length,), floor)
    positions = torch.arange(length, dtype=torch.float32)
    distance = (positions[:, None] - boundaries[None, :]).abs().min(dim=1).values
    return floor + (1 - floor) * (1 - distance / radius).clamp(min=0)


def tau_for_mean_depth(
    boundaries: torch.Tensor, length: int, mean_depth: float, floor: float, config: ModelConfig
) -> torch.Tensor:
    """Boundary-concentrated tau (1, length) with the given mean depth (bisection on the deep-zone radius)."""
    target_tau = (mean_depth - config.min_depth) / (config.stem_layers - config.min_depth)
    low, high = 0.0, float(length)
    for _ in range(50):
        radius = (low + high) / 2
        if boundary_tau(length, boundaries, radius, floor).mean() < target_tau:
            low = radius
        else:
            high = radius
    return boundary_tau(length, boundaries, high, floor)[None]


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
    parser.add_argument("--floor", type=float, default=0.1, help="tau away from boundaries (D = 1 + 5 * floor)")
    parser.add_argument("--windows", type=int, default=3, help="THUMOS14 windows of T steps to average over")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    device = torch.device(args.device)
    uniform_config = ModelConfig(atr=False)
    atr_config = ModelConfig(atr=True)
    uniform = TZN(uniform_config).to(device).eval()
    atr = TZN(atr_config).to(device).eval()
    atr.load_state_dict(uniform.state_dict(), strict=False)  # same stem weights: the same network, gated

    stream = thumos_boundary_stream()
    print(f"device={device} threads={torch.get_num_threads()} repeats={args.repeats} windows={args.windows}")
    header = f"{'T':>5} {'model':<22} {'mean D':>6} {'ms':>9} {'GFLOPs':>8} {'time ratio':>10} {'FLOP ratio':>10}"
    print(header)
    print("-" * len(header))
    for length in args.lengths:
        features = torch.randn(1, uniform_config.input_dim, length, device=device)
        mask = torch.ones(1, length, dtype=torch.bool, device=device)
        starts = [window * 3 * length for window in range(args.windows)]
        taus = [
            tau_for_mean_depth(
                stream[(stream >= start) & (stream < start + length)] - start,
                length, args.mean_depth, args.floor, atr_config,
            ).to(device)
            for start in starts
        ]  # fmt: skip
        cases = [
            ("Uniform-6 (dense)", uniform, [{}]),
            ("ATR hard, THUMOS tau", atr, [{"execution": "hard", "tau_override": tau} for tau in taus]),
            ("ATR soft, THUMOS tau", atr, [{"execution": "soft", "tau_override": tau} for tau in taus[:1]]),
            ("ATR hard, tau=1", atr, [{"execution": "hard", "tau_override": torch.ones_like(taus[0])}]),
        ]
        baseline = None
        for name, model, runs in cases:
            milliseconds, flops, depths = [], [], []
            for kwargs in runs:
                with torch.inference_mode():
                    output = model(features, mask, **kwargs)
                    milliseconds.append(
                        median_ms(lambda m=model, k=kwargs, f=features, v=mask: m(f, v, **k), args.repeats)
                    )
                flops.append(output_flops(model.config, output, batch=1).total)
                depths.append(output.layer_masks[0, :length].sum(-1).mean().item())
            row = (statistics.mean(milliseconds), statistics.mean(flops))
            baseline = baseline or row
            print(
                f"{length:>5} {name:<22} {statistics.mean(depths):>6.2f} {row[0]:>9.1f} {row[1] / 1e9:>8.1f} "
                f"{row[0] / baseline[0]:>10.2f} {row[1] / baseline[1]:>10.2f}"
            )


if __name__ == "__main__":
    main()
