"""What the zoom's refiner should see: its inputs compared on the validation split's windows (how
configs/zoom.yaml's `refiner.standardize` and `refiner.differences` were chosen).

    python -m experiments.refiner_inputs --workdir /tmp/zoom [--zoom-fps 16 8] [--steps 800 1500] [--seeds 0 1]
        [--inputs raw standardized "standardized + differences"]

--workdir holds the zoom benchmark's videos and per-frame features (experiments/zoom.py's first two commands).
Per refiner mode (bdr, regression), input (raw features; standardized; standardized with frame differences),
zoom rate and training length, one refiner per seed is trained on the training split
(tools.train_zoom.train_refiner, windows of 2 x 0.5 s) and run on every boundary of the validation split from 9
windows centred 0.8, 0.6, ... 0 x window_s before to 0.8 x window_s after it, as the coarse pass misses it. Printed:
the boundary's mean absolute error and error std in frames at 30 fps, and the share within 1 and 3 frames (mean
over seeds). The test split is never read.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from engine.zoom import ZoomedPass, ZoomSettings
from tools.train_zoom import FrameCache, RefinerTraining, boundary_windows, train_refiner

INPUTS = {"raw": (False, False), "standardized": (True, False), "standardized + differences": (True, True)}
OFFSETS = np.linspace(-0.8, 0.8, 9)  # x window_s: where the window's centre lies from the true boundary


def validation_errors(cache: FrameCache, zoom: ZoomedPass) -> np.ndarray:
    """Signed errors (s) of the refined boundary, every validation boundary x OFFSETS."""
    settings, errors = zoom.settings, []
    for video_id, truth, kind in boundary_windows(cache, "validation", settings):
        centres = truth + OFFSETS * settings.window_s
        # one candidate per offset, whose other boundary lies far outside the window
        segments = np.stack([centres, centres + 30.0] if kind == 0 else [centres - 30.0, centres], axis=1)
        first_s = float(cache.rows(video_id)[1][0])
        plan = zoom.plan(segments, np.ones(len(centres)), first_s, cache.end_s(video_id))
        rows, _ = cache.at(video_id, settings.zoom_fps, plan.spans)
        refined = zoom.refine(plan, torch.from_numpy(rows), first_s)
        errors.append(refined[plan.kinds == kind] - truth)
    return np.concatenate(errors)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--zoom-fps", type=float, nargs="+", default=[16.0, 8.0])
    parser.add_argument("--steps", type=int, nargs="+", default=[800, 1500])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--window-s", type=float, default=0.5)
    parser.add_argument("--inputs", nargs="+", choices=list(INPUTS), default=list(INPUTS))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    annotations = json.loads((args.workdir / "videos" / "annotations.json").read_text())
    cache = FrameCache(args.workdir / "frames", annotations)
    print("zoom fps | mode | input | steps | mean |error| (frames) | error std | <= 1 frame | <= 3 frames")
    for zoom_fps in args.zoom_fps:
        for mode in ("bdr", "regression"):
            settings = ZoomSettings(zoom_fps, args.window_s, 0.0, 10**6, mode)
            for name in args.inputs:
                standardize, differences = INPUTS[name]
                for steps in args.steps:
                    recipe = RefinerTraining(mode=mode, steps=steps, standardize=standardize, differences=differences)
                    rows = []
                    for seed in args.seeds:
                        network, _ = train_refiner(cache, settings, recipe, seed, log=lambda _: None)
                        frames = validation_errors(cache, ZoomedPass(settings, network)) * 30
                        rows.append([np.abs(frames).mean(), frames.std(), (np.abs(frames) <= 1).mean(),
                                     (np.abs(frames) <= 3).mean()])  # fmt: skip
                    mean = np.mean(rows, axis=0)
                    print(f"{zoom_fps:g} | {mode} | {name} | {steps} | {mean[0]:.2f} | {mean[1]:.2f} | "
                          f"{mean[2]:.2f} | {mean[3]:.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
