"""Rebuilds the bundled demo: synthetic videos -> resnet18-2d features -> a trained TZN -> service/demo/.

    python bench/build_demo.py [--workdir /tmp/tzn-demo] [--videos 48] [--device cpu]

1. `training.demo_videos` draws 160 H.264 videos (20-60 s, 320x240, 30 fps) with 2-6 actions each of four
   visible classes, 3/4 "training" and 1/4 "test", and their ActionFormer annotations.
2. Features come from the service's own pipeline (the same decoding, sampling and random-init backbone that
   answers requests), so the demo model sees at training time exactly what it sees when serving.
3. `tzn train` with configs/demo.yaml; then `tzn predict` + `tzn eval` on the test videos.
4. The checkpoint (config.json + model.safetensors) is copied to service/demo/checkpoint, and one held-out
   30 s video (another seed) with its annotations to service/demo/sample.mp4 / sample.json.
Every step is deterministic on the CPU for a given torch version.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from model.checkpoint import read_checkpoint_config
from service.pipeline import FeatureExtractor, resolve_device
from service.settings import Settings
from training.demo_videos import annotation_entry, generate, plan_video, write_video
from tzn import main as tzn

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "service" / "demo"
CONFIG = REPO / "configs" / "demo.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tzn-demo"))
    parser.add_argument("--videos", type=int, default=160)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    work = args.workdir
    videos, features, run = work / "videos", work / "features", work / "run"

    if not (videos / "annotations.json").exists():
        generate(videos, args.videos, seed=0)
    torch.manual_seed(0)
    extractor = FeatureExtractor("resnet18-2d", None, resolve_device(args.device), Settings())
    features.mkdir(parents=True, exist_ok=True)
    for video in sorted(videos.glob("*.mp4")):
        target = features / f"{video.stem}.npy"
        if not target.exists():
            np.save(target, extractor.extract(video, video.name).features.T.numpy().astype(np.float32))

    annotations = videos / "annotations.json"
    common = ["--annotations", str(annotations), "--features", str(features)]
    tzn(["train", "--config", str(CONFIG), *common, "--output", str(run), "--device", args.device])
    tzn(["predict", "--checkpoint", str(run), *common, "--split", "test", "--output", str(work / "pred.json")])
    tzn(["eval", "--annotations", str(annotations), "--predictions", str(work / "pred.json"), "--split", "test"])

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


if __name__ == "__main__":
    raise SystemExit(main())
