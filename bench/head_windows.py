"""The head on a long video: one pass over the whole feature sequence against overlapping windows.

    python bench/head_windows.py [--minutes 60] [--window 2304] [--overlap 256] [--repeats 3]

Model: the served default (the bundled demo checkpoint) on CPU; features: random, as many clips as the CPU
default backbone gives for the video length (4 clips per second). Windows cover the sequence with the given
overlap (the overlap is computed twice; stitching their detections would add more). Median of the repeats.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.heads import load_head  # noqa: E402
from model.backbones import SPECS  # noqa: E402
from service.settings import DEMO_CHECKPOINT  # noqa: E402


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    step = window - overlap
    return list(range(0, max(length - overlap, 1), step))


@torch.inference_mode()
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60])
    parser.add_argument("--window", type=int, default=2304)
    parser.add_argument("--overlap", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    head = load_head("torch", checkpoint=DEMO_CHECKPOINT, device=torch.device("cpu"))
    spec = SPECS[head.checkpoint.features.backbone]
    clips_per_s = spec.sample_fps / spec.clip_stride
    print(f"head: demo checkpoint, cpu, {torch.get_num_threads()} threads; {clips_per_s:g} clips per video second")
    print(f"{'video':>7} {'T':>6} {'whole ms':>9} {'windows':>8} {'windows ms':>11} {'ratio':>6}")
    for minutes in args.minutes:
        length = int(minutes * 60 * clips_per_s)
        features = torch.randn(1, head.checkpoint.model.input_dim, length)

        starts = window_starts(length, args.window, args.overlap)
        pieces = {
            "whole": [features],
            "windows": [features[..., start : start + args.window] for start in starts],
        }
        timings = {}
        for name, parts in pieces.items():
            samples = []
            for repeat in range(args.repeats + 1):  # the first run warms up
                started = time.perf_counter()
                for part in parts:
                    head(part, torch.ones(1, part.shape[-1], dtype=torch.bool))
                if repeat:
                    samples.append((time.perf_counter() - started) * 1000)
            timings[name] = statistics.median(samples)
        print(f"{minutes:>5g} m {length:>6} {timings['whole']:>9.0f} {len(starts):>8} {timings['windows']:>11.0f} "
              f"{timings['windows'] / timings['whole']:>6.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
