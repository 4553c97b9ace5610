"""Hyperparameter choice on a validation split carved out of TRAINING videos (the test split is never read).

    PYTHONPATH=. python experiments/tune.py --workdir /tmp/tzn-tune --trial NAME --set model.block_depth=true ...

The data is the synthetic benchmark's generator with its own seed (--data-seed, default 100, a seed no
results run uses); of its training subset ("validation" in THUMOS naming), every `--every`-th video
(sorted by id) becomes the "tune" split and the others train. The generator's test videos are dropped from
the annotations before any run sees them. Each trial is configs/synthetic_cpu.yaml plus `--set
section.key=value` overrides (YAML values); it prints and stores mAP@0.7, average mAP and the head FLOPs
of hard execution over the tune split relative to Uniform-6 at the same shapes.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
import yaml

from experiments.results import DEFAULT_CONFIG, Settings, dataset
from training.config import TrainConfig, load_config
from training.evaluation import THUMOS_TIOUS, evaluate
from training.predict import predict
from training.train import train

TUNE_SPLIT = "tune"


def carve(annotations: dict, every: int) -> dict:
    """Annotations with only the training videos: every `every`-th (by sorted id) in subset "tune"."""
    database = annotations["database"]
    training = sorted(v for v, info in database.items() if str(info["subset"]).lower() == "validation")
    kept = {}
    for index, video in enumerate(training):
        kept[video] = {**database[video], "subset": TUNE_SPLIT if index % every == 0 else "validation"}
    return {**annotations, "database": kept}


def parse_sets(pairs: list[str]) -> dict[str, dict]:
    """["model.block_depth=true", ...] -> {"model": {"block_depth": True}}."""
    overrides: dict[str, dict] = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        section, name = key.split(".", 1)
        overrides.setdefault(section, {})[name] = yaml.safe_load(value)
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--trial", required=True, help="name of the run directory")
    parser.add_argument("--set", nargs="*", default=[], help="section.key=value overrides of the config")
    parser.add_argument("--data-seed", type=int, default=100)
    parser.add_argument("--every", type=int, default=4, help="every n-th training video is held out for tuning")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)

    annotations_path, features = dataset(args.workdir, Settings(200, 133.0, 0.5), args.data_seed)
    carved_path = annotations_path.with_name(f"annotations_tune_every{args.every}.json")
    if not carved_path.is_file():
        carved_path.write_text(json.dumps(carve(json.loads(annotations_path.read_text()), args.every)))

    overrides = parse_sets(args.set)
    overrides.setdefault("data", {}).update({"annotations": str(carved_path), "features_dir": str(features)})
    config = load_config(args.config, overrides)
    config = TrainConfig.model_validate({**config.dump(), "seed": args.seed})
    run_dir = args.workdir / "trials" / args.trial
    result_path = run_dir / "tune_result.json"
    if not result_path.is_file():
        train(config, run_dir, progress=False)
        document, stats = predict(run_dir, carved_path, features, split=TUNE_SPLIT, execution="hard", progress=False)
        metrics = evaluate(json.loads(carved_path.read_text()), document, TUNE_SPLIT, THUMOS_TIOUS)
        result = {
            "trial": args.trial,
            "set": args.set,
            "mAP@0.7": metrics["mAP"]["0.70"],
            "average": metrics["average"],
            "head_flops_ratio": stats["head_flops"] / stats["head_flops_uniform"],
            "mean_depth": stats["mean_depth"],
        }
        result_path.write_text(json.dumps(result) + "\n")
    print(result_path.read_text(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
