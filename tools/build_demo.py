"""Rebuilds the bundled demo: synthetic videos -> resnet18-2d features -> a trained TZN -> service/demo/.

    python tools/build_demo.py [--workdir /tmp/tzn-demo] [--videos 160] [--device cpu]

1. `training.demo_videos` draws 160 H.264 videos (20-60 s, 320x240, 30 fps) with 2-6 actions each of four
   visible classes, 3/4 "training" and 1/4 "test", and their ActionFormer annotations.
2. Features come from `tzn extract-features`, the engine's own path (the same decoding, sampling, resize rule
   and random-init backbone that answer requests), so the demo model sees at training time exactly what it
   sees when serving; pooled as configs/demo.yaml's data.num_frames and data.feat_stride say.
3. `tzn train` with configs/demo.yaml; then the new run and the checkpoint bundled now are both predicted
   (hard execution) and evaluated on the test videos, side by side: mAP and the head FLOPs they ran.
4. Unless the new run's average mAP is lower than the bundled one's (then it stops, exit 1; --replace-anyway
   overrides), the checkpoint (config.json + model.safetensors) is copied to service/demo/checkpoint, and one
   held-out 30 s video (another seed) with its annotations to service/demo/sample.mp4 / sample.json.
Every step is deterministic on the CPU for a given torch version.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: the repository's packages, not tools/'s neighbours

from model.checkpoint import read_checkpoint_config  # noqa: E402
from training.config import load_config  # noqa: E402
from training.demo_videos import annotation_entry, generate, plan_video, write_video  # noqa: E402
from training.evaluation import THUMOS_TIOUS, evaluate  # noqa: E402
from training.predict import predict  # noqa: E402
from tzn import main as tzn  # noqa: E402

DEMO = REPO / "service" / "demo"
CONFIG = REPO / "configs" / "demo.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tzn-demo"))
    parser.add_argument("--videos", type=int, default=160)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--replace-anyway", action="store_true", help="replace the bundled model even if its test mAP is higher"
    )
    args = parser.parse_args(argv)
    work = args.workdir
    videos, features, run = work / "videos", work / "features", work / "run"

    if not (videos / "annotations.json").exists():
        generate(videos, args.videos, seed=0)
    torch.manual_seed(0)
    if not features.is_dir() or len(list(features.glob("*.npy"))) < len(list(videos.glob("*.mp4"))):
        data = load_config(CONFIG).data  # the features the config trains on: frames per clip and their stride
        tzn(["extract-features", "--videos", str(videos), "--output", str(features), "--device", args.device,
             "--clip", str(data.num_frames), str(data.feat_stride)])  # fmt: skip

    annotations = videos / "annotations.json"
    common = ["--annotations", str(annotations), "--features", str(features)]
    tzn(["train", "--config", str(CONFIG), *common, "--output", str(run), "--device", args.device])
    truth = json.loads(annotations.read_text())
    scores = {"new run": test_scores(run, annotations, features, truth)}
    if (DEMO / "checkpoint" / "model.safetensors").is_file():
        scores["bundled now"] = test_scores(DEMO / "checkpoint", annotations, features, truth)
    print(f"{'test split':<12} {'mAP@0.5':>8} {'mAP@0.7':>8} {'avg mAP':>8} {'head FLOPs x uniform':>21}")
    for name, row in scores.items():
        print(f"{name:<12} {row['0.50']:8.2f} {row['0.70']:8.2f} {row['average']:8.2f} {row['flops']:21.3f}")
    worse = "bundled now" in scores and scores["new run"]["average"] < scores["bundled now"]["average"]
    if worse and not args.replace_anyway:
        print("the new run is less accurate than the bundled model: not replacing it (--replace-anyway to force)")
        return 1

    target = DEMO / "checkpoint"
    target.mkdir(exist_ok=True)
    shutil.copyfile(run / "model.safetensors", target / "model.safetensors")
    config = read_checkpoint_config(run)
    config.metadata["name"] = "tzn-demo"
    (target / "config.json").write_text(config.model_dump_json(indent=2) + "\n")
    sample = plan_video(0, 2026, 30.0, 30, 320, 240, "test")
    write_video(sample, DEMO / "sample.mp4")
    (DEMO / "sample.json").write_text(json.dumps({"database": {"sample": annotation_entry(sample)}}, indent=1))
    print(f"demo checkpoint and sample written to {DEMO}")
    return 0


def test_scores(checkpoint: Path, annotations: Path, features: Path, truth: dict) -> dict[str, float]:
    """mAP@0.5, mAP@0.7, average mAP (percent) and head FLOPs relative to uniform, on the test split."""
    document, stats = predict(checkpoint, annotations, features, split="test", execution="hard", progress=False)
    metrics = evaluate(truth, document, "test", THUMOS_TIOUS)
    return {
        "0.50": metrics["mAP"]["0.50"],
        "0.70": metrics["mAP"]["0.70"],
        "average": metrics["average"],
        "flops": stats["head_flops"] / stats["head_flops_uniform"],
    }


if __name__ == "__main__":
    raise SystemExit(main())
