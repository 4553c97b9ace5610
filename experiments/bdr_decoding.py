"""Re-decode one trained BDR run with each BDR decoding (no retraining): mAP and boundary-error spread.

    PYTHONPATH=. python experiments/bdr_decoding.py RUN_DIR ANNOTATIONS FEATURES [--split tune] [--workdir /tmp/tzn-decode]

For each decoding (none, zero crossings within +-2 steps, votes on level 0, votes on strides 1, 2, 4, votes with
stricter confidence or a shorter reach) the run's
checkpoint is copied with that postprocess setting, the split is predicted (hard execution) and evaluated:
mAP@0.7, average mAP, and the std (s) of the signed start/end errors of the best detection with tIoU >= 0.5
(training.evaluation.boundary_errors), over all boundaries and over the synthetic sharp / ramped ones.
Use it on a validation split (experiments/tune.py's "tune"), not on test, when choosing a decoding.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from experiments.results import ground_truth_widths, redecoded_checkpoint
from training.evaluation import THUMOS_TIOUS, boundary_errors, evaluate
from training.predict import predict

DECODINGS = {
    "none": {"snap": False},
    "crossings-2": {"snap": True, "bdr_decode": "crossings"},
    "votes-s1": {"snap": True, "bdr_decode": "votes", "bdr_scales": 1},
    "votes-s124": {"snap": True, "bdr_decode": "votes", "bdr_scales": 3},
    # stricter confidence: more votes, less spread, or only votes near the regression's boundary
    "votes-tight": {"snap": True, "bdr_decode": "votes", "vote_max_spread": 0.75, "vote_min_weight": 5},
    "votes-tighter": {"snap": True, "bdr_decode": "votes", "vote_max_spread": 0.5, "vote_min_weight": 6},
    "votes-near": {"snap": True, "bdr_decode": "votes", "vote_max_shift": 3.0},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("annotations", type=Path)
    parser.add_argument("features", type=Path)
    parser.add_argument("--split", default="tune")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tzn-decode"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    truth = json.loads(args.annotations.read_text())
    widths = ground_truth_widths(truth, args.split)
    print(f"{'decoding':<12} {'mAP@0.7':>8} {'avg':>6} {'err std s':>9} {'sharp':>6} {'ramped':>6}", flush=True)
    for name, values in DECODINGS.items():
        target = args.workdir / name
        shutil.rmtree(target, ignore_errors=True)
        redecoded_checkpoint(args.run, target, values)
        document, _ = predict(target, args.annotations, args.features, split=args.split, progress=False)
        metrics = evaluate(truth, document, args.split, THUMOS_TIOUS)
        errors = boundary_errors(truth, document, args.split, min_tiou=0.5)
        sharp, ramped = np.where(widths == 0, errors, np.nan), np.where(widths > 0, errors, np.nan)
        print(
            f"{name:<12} {metrics['mAP']['0.70']:8.2f} {metrics['average']:6.2f} {np.nanstd(errors):9.3f} "
            f"{np.nanstd(sharp):6.3f} {np.nanstd(ramped):6.3f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
