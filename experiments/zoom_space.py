"""The temporal zoom with a coarse pass that is coarse in space too (issue 22): docs/zoom_space.md.

    python -m tools.zoom_frames --videos /tmp/zoom/videos --output /tmp/zoom/frames-64px --frame-size 64
    python -m experiments.zoom --workdir /tmp/zoom --train-only --rates 8 4 2 --modes --poolings frames  (see below)
    python -m experiments.zoom_space --workdir /tmp/zoom [--seeds 0 1 2 3 4] [--output docs/zoom_space.md]

Why: docs/zoom.md's coarse passes read 112 px frames, as the dense default does. Frames of 64 px cost the backbone
0.31x the FLOPs of 112 px ones (resnet18-2d), and the benchmark's actions are shapes tens of pixels wide. Here the
coarse pass reads 64 px frames (its detector's `features.frame_size`: how `tzn serve` decodes for it), and the
windows 112 px frames, refined by the 112 px refiners experiments/zoom.py trained ("bdr", "regression"; the
"detector" refiner reads both passes on one grid, so it needs one frame size).

On experiments/zoom.py's workdir and runs, plus per-frame detectors on 64 px frames (trained once, by `Bench.detector`
here or by the second command; runs/seed<k>/uniform<r>-frames-64px):
- the zoom points of GRID (coarse 2, 4 or 8 fps at 64 px) are run on the validation split and chosen there as
  experiments/zoom.py chooses (zoom-lite: the best mAP@0.7 at <= 0.4x the 8 fps backbone; zoom-fine: the best mAP@0.9
  at <= 1.0x with zoom_fps >= 16; zoom-average: the best average mAP at <= 1.0x; among the points whose validation
  average mAP is within AVERAGE_SLACK of uniform 8 fps's); the test split is never read for a choice;
- on test, per seed: uniform detectors on the served clips (1-30 fps; 8 fps is the served default), on per-frame
  features at 112 px (2-16 fps) and at 64 px (2-16 fps), and each chosen point with each refiner (bdr, regression, none) and with its coarse pass at
  112 px (the same settings, the 112 px per-frame detector): paired against uniform 8 fps, targets judged by
  experiments/zoom.py's `targets` (target 3 against every uniform curve, 64 px included);
- seed 0 served end to end (`Localizer.localize`, real decoding, both frame sizes; the checkpoints are written to
  <workdir>/served-64px/): CPU time per video minute, and how many of its top-5 segments differ from the cached
  path's (they should not).
"""

from __future__ import annotations

import argparse
import json
import sys

from experiments.results import ground_truth_widths
from experiments.zoom import (
    PER_FRAME,
    RATES,
    ROOT,
    SMALL_FRAMES,
    Bench,
    add_run_options,
    apply_run_options,
    choose_points,
    curve,
    keep_seed,
    measure,
    measured,
    page,
    refiner_label,
    uniform_predictions,
    wall_times,
    zoom_predictions,
)

SIZE = 64
GRID = {
    "coarse_fps": (2, 4, 8),
    "zoom_fps": (8, 16),
    "window_s": (0.25, 0.5),
    "min_score": (0.1, 0.3),
    "refiner": ("bdr", "regression"),
    "verify_weight": (0.0,),
    "coarse_pooling": ("frames",),
    "coarse_size": (SIZE,),
}  # fmt: skip
UNIFORM_112 = (2, 4, 8, 16)  # per-frame detectors on 112 px frames (experiments/zoom.py trained them)
UNIFORM_64 = (2, 4, 8, 16)  # ... on 64 px frames (trained here once)


def test_runs(bench: Bench, seeds: list[int], chosen: dict[str, dict], log) -> dict[str, list[dict]]:
    """The test split's variants (module docstring), per seed."""
    widths = ground_truth_widths(bench.truth, "test")
    runs: dict[str, list[dict]] = {}
    for seed in seeds:

        def uniform(fps: float, pooling: str = "clips", size: int | None = None, seed: int = seed) -> dict:
            return measure(bench, *uniform_predictions(bench, fps, seed, "test", pooling, size), "test")

        seed_rows = {f"uniform {r} fps": uniform(r) for r in RATES}  # the served clips, uniform 8 fps among them
        seed_rows |= {f"uniform {r} fps{PER_FRAME}": uniform(r, "frames") for r in UNIFORM_112}
        seed_rows |= {f"uniform {r} fps{SMALL_FRAMES}": uniform(r, "frames", SIZE) for r in UNIFORM_64}
        for name, point in chosen.items():
            for mode in ("bdr", "regression", "none"):
                seed_rows[refiner_label(name, point, mode)] = measure(
                    bench, *zoom_predictions(bench, point, mode, seed, "test"), "test"
                )
            full = {**point, "coarse_size": None}
            seed_rows[f"{name}, coarse at 112 px"] = measure(
                bench, *zoom_predictions(bench, full, point["refiner"], seed, "test"), "test"
            )
        keep_seed(runs, seed, seed_rows, widths, log)
    return runs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(parser, ROOT / "docs" / "zoom_space.md")
    args = parser.parse_args(argv)
    apply_run_options(parser, args)
    bench, log = Bench(args.workdir, None), lambda line: print(line, flush=True)
    result = measured(
        bench, args, "python -m experiments.zoom_space " + " ".join(argv if argv is not None else sys.argv[1:]),
        lambda: choose_points(bench, args.seeds, log, GRID), test_runs,
        lambda chosen: wall_times(bench, chosen, args.seeds[0], "served-64px"), log,
    )  # fmt: skip
    args.output.with_suffix(".json").write_text(json.dumps(result, indent=1))
    picture = args.output.with_name(args.output.stem + "_curve.png")
    curve(result, picture)
    title = "The temporal zoom with a coarse pass on 64 px frames, against uniform sampling"
    args.output.write_text(page(result, title, "experiments/zoom_space.py", picture.name))
    print(args.output.read_text())


if __name__ == "__main__":
    main()
