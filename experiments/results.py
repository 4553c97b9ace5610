"""The results table: Uniform-6, BDR, ATR, TZN and a distilled student on the synthetic THUMOS benchmark.

    PYTHONPATH=. python experiments/results.py --seeds 0 1 2 --workdir /tmp/tzn-results [--videos 200] [--epochs N]
        [--variants ...] [--threads N] [--output docs/results.md]

Per seed: one synthetic dataset with THUMOS14 statistics and heterogeneous boundaries (training.synthetic:
`--boundary-mix` of the boundaries are linear ramps of 2, 6 or 12 steps, the others sharp cuts), then every
variant is configs/synthetic_cpu.yaml with model overrides (VARIANTS), trained from the same seed, run over
the test split (hard ATR execution) and evaluated (mAP at tIoU 0.3:0.1:0.7, short-action mAP).

Measured per run:
- training cost: wall-clock seconds of `training.train.train` (resume-safe: the epochs' seconds from the run's
  log plus what the last call spent outside epochs, e.g. the student's teacher pass), relative to Uniform-6;
- head GFLOPs and latency at T=2304: every trained model runs hard on the same windows of 2304 steps cut from
  the seed's test features laid end to end (so tau is the trained predictor's), round robin over the models in
  this one process, median of `--repeats` per model and window, mean over windows; FLOPs from
  model.flops.output_flops; latency relative to the seed's Uniform-6;
- R: boundary-error variance ratio. training.evaluation.boundary_errors gives, for every ground-truth action
  of the test split, the signed start and end errors (s) of the highest-scoring detection of its label with
  tIoU >= 0.5; R = Var(errors of a variant) / Var(errors of Uniform-6 + classification boundary head), over
  the boundaries both runs matched. The paper's R is the Uniform-6 + BDR row.

Resumable: the datasets and every run live under --workdir; a run whose directory holds `bench_result.json`
for the same number of epochs is not redone, and an interrupted training resumes from its last epoch.
Latency is always measured anew, in this process. Writes --output (Markdown) and the JSON next to it.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from model.checkpoint import load_checkpoint, read_checkpoint_config
from model.config import THUMOS_I3D, ModelConfig
from model.flops import output_flops
from model.tzn import TZN
from training.config import TrainConfig, load_config
from training.evaluation import THUMOS_TIOUS, boundary_errors, evaluate
from training.predict import predict
from training.synthetic import generate_synthetic_dataset
from training.train import LOG_NAME, RESOLVED_CONFIG, config_difference, train

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "configs" / "synthetic_cpu.yaml"
RESULT_NAME = "bench_result.json"
TIMING_NAME = "bench_timing.json"
LATENCY_LENGTH = 2304


@dataclass(frozen=True)
class Variant:
    label: str
    model: dict[str, object]
    teacher: str | None = None  # key of the variant whose run of the same seed is the distillation teacher
    notes: str = ""
    atr: dict[str, object] = field(default_factory=dict)  # overrides of the config's atr section
    family: str = ""  # "uniform" (the Uniform-k curve) or "tzn" (the rho sweep), for the accuracy-FLOPs plot
    # A decoding ablation: no training of its own; the checkpoint of the seed's `decoded_from` run, predicted
    # with these `postprocess` settings (its training cost is that run's).
    decoded_from: str | None = None
    postprocess: dict[str, object] = field(default_factory=dict)


# The student learns from the seed's Uniform-6 + BDR run: a uniform teacher of the same size shares every
# tensor but the tau predictor, so the student starts from it (init_from_teacher) and its own cost stays that
# of one ATR training; a TZN teacher would put a second ATR training on the student's bill.
VARIANTS: dict[str, Variant] = {
    "uniform6": Variant("Uniform-6", {"atr": False, "boundary_head": "none"}, family="uniform"),
    **{
        f"uniform{k}": Variant(
            f"Uniform-{k}", {"atr": False, "boundary_head": "none", "stem_layers": k}, family="uniform"
        )
        for k in range(1, 6)
    },
    "uniform6_bdr": Variant("Uniform-6 + BDR", {"atr": False, "boundary_head": "bdr"}),
    "uniform6_cls": Variant(
        "Uniform-6 + cls. boundary", {"atr": False, "boundary_head": "classification"}, notes="reference of R"
    ),
    "atr": Variant("ATR", {"atr": True, "boundary_head": "none"}),
    "tzn": Variant(
        "TZN (ATR + BDR)",
        {"atr": True, "boundary_head": "bdr"},
        family="tzn",
        notes="the config's rho; its BDR head reads detached features (boundary_detach)",
    ),
    **{
        f"tzn_rho{round(100 * rho)}": Variant(
            f"TZN, rho {rho}", {"atr": True, "boundary_head": "bdr"}, atr={"rho": rho}, family="tzn"
        )
        for rho in (0.3, 0.6)
    },
    "tzn_bdr_coupled": Variant(
        "TZN, BDR loss into the trunk",
        {"atr": True, "boundary_head": "bdr", "boundary_detach": False},
        notes="the recipe before validation chose boundary_detach: the BDR loss also trains the trunk",
    ),
    **{
        f"{source}_votes": Variant(
            f"{label}, votes" if source == "uniform6_bdr" else f"{label}, BDR votes",
            {"atr": source == "tzn", "boundary_head": "bdr"},
            decoded_from=source,
            postprocess={"snap": True, "bdr_decode": "votes"},
            notes=f"{label}'s checkpoint, boundaries moved by the fields' votes",
        )
        for source, label in (("tzn", "TZN"), ("uniform6_bdr", "Uniform-6 + BDR"))
    },
    "tzn_distilled": Variant(
        "TZN distilled", {"atr": True, "boundary_head": "bdr"}, teacher="uniform6_bdr", notes="teacher: Uniform-6 + BDR"
    ),
}
BASELINE, R_REFERENCE, MAIN, VOTES = "uniform6", "uniform6_cls", "tzn", "tzn_votes"
DEFAULT_VARIANTS = [n for n in VARIANTS if n != "tzn_distilled"]
# The targets for TZN against Uniform-6 (paired over seeds).
TARGETS = {"map07_gain": 2.0, "flops_ratio": 0.75, "latency_ratio": 0.75, "R_ramped": 0.5}


# ---------------------------------------------------------------------------------------------------
# Pure helpers


def mean_std(values: list[float | None]) -> tuple[float, float] | None:
    """Mean and sample standard deviation (0 for one value) of the values that are not None/NaN."""
    kept = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not kept:
        return None
    return statistics.fmean(kept), statistics.stdev(kept) if len(kept) > 1 else 0.0


def format_mean_std(summary: tuple[float, float] | None, digits: int = 1, seeds: int = 1) -> str:
    if summary is None:
        return "–"
    mean, std = summary
    return f"{mean:.{digits}f}" if seeds < 2 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def window(stream: np.ndarray, start: int, length: int) -> np.ndarray:
    """(T, C) features laid end to end -> (length, C) from `start`, wrapping around (tiling) past the end."""
    return stream[(start + np.arange(length)) % stream.shape[0]]


def variance_ratio(errors: np.ndarray, reference: np.ndarray) -> tuple[float, int]:
    """Var(errors) / Var(reference) over the entries finite in both (same boundaries), and how many there are."""
    both = np.isfinite(errors) & np.isfinite(reference)
    count = int(both.sum())
    if count < 2 or np.var(reference[both]) == 0:
        return math.nan, count
    return float(np.var(errors[both]) / np.var(reference[both])), count


def ground_truth_widths(annotations: dict, split: str) -> np.ndarray:
    """(G, 2) synthetic ramp widths [start, end] (0 = sharp; feature steps in training/synthetic.py's annotations,
    seconds in training/zoom_videos.py's), in `boundary_errors`' order; -1 where unknown."""
    widths = [
        annotation.get("boundary_widths", [-1, -1])
        for info in annotations["database"].values()
        if str(info.get("subset", "")).lower() == split.lower()
        for annotation in info.get("annotations", [])
    ]
    return np.asarray(widths, dtype=np.float64).reshape(-1, 2)


def relative(values: dict[str, float | None], baseline: str) -> dict[str, float | None]:
    """Every value divided by the baseline's (None where either is missing)."""
    base = values.get(baseline)
    return {k: (v / base if v is not None and base else None) for k, v in values.items()}


def paired(per_seed: dict, name: str, base: str, value) -> list[float | None]:
    """Per seed, value(row of `name`) - value(row of `base`) (None where a run or a value is missing)."""
    out = []
    for rows in per_seed.values():
        a = value(rows[name]) if name in rows else None
        b = value(rows[base]) if base in rows else None
        out.append(a - b if a is not None and b is not None else None)
    return out


def curve_at(xs: list[float], ys: list[float], x: float) -> float | None:
    """The piecewise-linear curve through (xs, ys) (sorted by x here) at x; None outside its x range."""
    points = sorted(zip(xs, ys, strict=True))
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    if points and x == points[0][0]:
        return points[0][1]
    return None


def margin_over_curve(summary: dict, variants: list[str], name: str, key: str = "mAP@0.70") -> float | None:
    """Mean `key` of `name` minus the Uniform-k curve (means over seeds) at the same mean GFLOPs @2304.

    The curve is the best a uniform model offers for that cost: the larger of the line through the Uniform-k
    points there and the best Uniform-k that costs no more (a cheaper uniform model that scores higher wins).
    """
    uniform = [
        v for v in variants if VARIANTS[v].family == "uniform" and summary[v].get(key) and summary[v].get("gflops_2304")
    ]
    if len(uniform) < 2 or not summary[name].get(key) or not summary[name].get("gflops_2304"):
        return None
    xs = [summary[v]["gflops_2304"][0] for v in uniform]
    ys = [summary[v][key][0] for v in uniform]
    cost = summary[name]["gflops_2304"][0]
    level = curve_at(xs, ys, cost)
    if level is None:
        return None
    cheaper = [y for x, y in zip(xs, ys, strict=True) if x <= cost]
    return summary[name][key][0] - max([level, *cheaper])


# ---------------------------------------------------------------------------------------------------
# Data, training, evaluation


@dataclass
class Settings:
    videos: int
    max_duration: float
    boundary_mix: float
    feature_dim: int = 64
    classes: int = 8

    @property
    def data_tag(self) -> str:
        return f"{self.videos}v-{self.max_duration:g}s-mix{self.boundary_mix:g}-{self.feature_dim}d-{self.classes}c"


def dataset(workdir: Path, settings: Settings, seed: int) -> tuple[Path, Path]:
    """The seed's synthetic dataset (generated once; annotations.json is written last, so it marks completion)."""
    root = workdir / "data" / f"{settings.data_tag}-seed{seed}"
    annotations = root / "annotations.json"
    if not annotations.is_file():
        print(f"[seed {seed}] generating {settings.videos} synthetic videos in {root}", flush=True)
        generate_synthetic_dataset(
            root, num_videos=settings.videos, feature_dim=settings.feature_dim, num_classes=settings.classes,
            boundary_mix=settings.boundary_mix, max_duration=settings.max_duration, seed=seed,
        )  # fmt: skip
    return annotations, root / "features"


def run_config(
    config_path: Path,
    variant: Variant,
    annotations: Path,
    features: Path,
    seed: int,
    epochs: int | None,
    teacher: Path | None,
) -> TrainConfig:
    overrides: dict[str, dict] = {
        "model": dict(variant.model),
        "data": {"annotations": str(annotations), "features_dir": str(features)},
        "optimizer": {"epochs": epochs},
    }
    if variant.atr:
        overrides["atr"] = dict(variant.atr)
    if teacher is not None:
        overrides["distill"] = {"teacher": str(teacher)}
    config = load_config(config_path, overrides)
    return TrainConfig.model_validate({**config.dump(), "seed": seed})


def _logged_epochs(run_dir: Path) -> list[dict]:
    path = run_dir / LOG_NAME
    if not path.is_file():
        return []
    return [r for r in map(json.loads, path.read_text().splitlines()) if "epoch" in r]


def warm_up() -> None:
    """Pays the process's one-time costs before any run is timed: the first optimizer imports torch._dynamo
    (over a second), the first forward/backward sets up autograd; otherwise the first run looks dearer."""
    model = TZN(ModelConfig(input_dim=8, num_classes=2, embed_dim=16, n_head=2, tau_hidden=8))
    torch.optim.AdamW(model.parameters()).zero_grad()
    output = model(torch.randn(1, 8, 64), torch.ones(1, 64, dtype=torch.bool), execution="soft")
    sum(logits.sum() for logits in output.cls_logits).backward()


def train_timed(config: TrainConfig, run_dir: Path, prefix: str, device: str = "cpu") -> float:
    """Trains (or resumes) the run; returns its wall-clock training seconds (see the module docstring)."""
    before = len(_logged_epochs(run_dir))
    started = time.perf_counter()
    train(config, run_dir, device=device, progress=False, log=lambda message: print(f"{prefix} {message}", flush=True))
    wall = time.perf_counter() - started
    epochs = _logged_epochs(run_dir)
    timing_path = run_dir / TIMING_NAME
    if len(epochs) > before or not timing_path.is_file():
        overhead = wall - sum(r["seconds"] for r in epochs[before:])
        timing_path.write_text(json.dumps({"overhead_seconds": overhead, "last_call_wall_seconds": wall}))
    overhead = json.loads(timing_path.read_text())["overhead_seconds"]
    return sum(r["seconds"] for r in epochs) + overhead


def with_postprocess(node: object, values: dict) -> None:
    """Updates every "postprocess" mapping inside a checkpoint's config.json document, in place."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "postprocess" and isinstance(value, dict):
                value.update(values)
            else:
                with_postprocess(value, values)


def redecoded_checkpoint(source: Path, target: Path, postprocess: dict) -> None:
    """`target` becomes a copy of the checkpoint in `source` whose postprocess settings are updated."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(source / name, target / name)
    document = json.loads((target / "config.json").read_text())
    with_postprocess(document, postprocess)
    (target / "config.json").write_text(json.dumps(document))


# Settings that change nothing in a model without a boundary head; a run made before one of them changed stays valid.
_INERT_WITHOUT_BOUNDARY_HEAD = (
    "model.boundary_detach",
    "model.boundary_levels",
    "model.bdr_clip",
    "loss.boundary",
    "loss.bdr_",
)


def stale(run_dir: Path, config: TrainConfig, variant: Variant) -> list[str]:
    """Why the finished run in `run_dir` is not the one `config` would make ([] when it is).

    A trained run is stale when its resolved config (train_config.yaml) differs from `config`: a recipe change
    in the YAML retrains every variant it touches, and only those. A decoding ablation is stale when its
    checkpoint is no longer its source's."""
    if variant.decoded_from:
        source = run_dir.parent / variant.decoded_from / "model.safetensors"
        mine = run_dir / "model.safetensors"
        if not (mine.is_file() and source.is_file() and filecmp.cmp(mine, source, shallow=False)):
            return [f"{variant.decoded_from} was retrained"]
        return []
    saved_path = run_dir / RESOLVED_CONFIG
    if not saved_path.is_file():
        return [f"no {RESOLVED_CONFIG}"]
    current = config.dump()
    differences = config_difference(yaml.safe_load(saved_path.read_text()), current)
    if current["model"]["boundary_head"] == "none":
        differences = [d for d in differences if not d.startswith(_INERT_WITHOUT_BOUNDARY_HEAD)]
    return differences


def run_variant(
    name: str,
    seed: int,
    run_dir: Path,
    config: TrainConfig,
    annotations: Path,
    features: Path,
    device: str = "cpu",
    source: dict | None = None,
) -> dict:
    """Train, predict and evaluate one run (skipped when its bench_result.json is there); returns that result.

    A decoding ablation (VARIANTS[name].decoded_from) passes its source run's result as `source`: nothing is
    trained, the source's checkpoint is predicted with the variant's postprocess settings."""
    prefix = f"[seed {seed}] {name}:"
    result_path = run_dir / RESULT_NAME
    variant = VARIANTS[name]
    if result_path.is_file():
        changed = stale(run_dir, config, variant)
        if not changed:
            print(f"{prefix} done before, reusing {result_path}", flush=True)
            return json.loads(result_path.read_text())
        print(f"{prefix} the run in {run_dir} is stale ({', '.join(changed[:4])}): redoing it", flush=True)
        shutil.rmtree(run_dir)
    if variant.decoded_from:
        assert source is not None, f"{name} needs the result of {variant.decoded_from}"
        redecoded_checkpoint(run_dir.parent / variant.decoded_from, run_dir, variant.postprocess)
        train_seconds = source["train_seconds"]
    else:
        print(f"{prefix} training in {run_dir}", flush=True)
        train_seconds = train_timed(config, run_dir, prefix, device)
    print(f"{prefix} predicting the test split", flush=True)
    document, stats = predict(
        run_dir, annotations, features, split="test", execution="hard", device=device, progress=False
    )
    (run_dir / "predictions.json").write_text(json.dumps(document) + "\n")
    ground_truth = json.loads(annotations.read_text())
    metrics = evaluate(ground_truth, document, "test", THUMOS_TIOUS)
    errors = boundary_errors(ground_truth, document, "test", min_tiou=0.5)
    result = {
        "variant": name,
        "seed": seed,
        "epochs": config.optimizer.epochs,
        "train_seconds": train_seconds,
        "mAP": metrics["mAP"],
        "average": metrics["average"],
        "short_actions": metrics["short_actions"],
        "test_stats": stats,
        "boundary_errors": [[None if math.isnan(v) else v for v in row] for row in errors.tolist()],
    }
    result_path.write_text(json.dumps(result) + "\n")
    print(f"{prefix} average mAP {metrics['average']:.2f}, mAP@0.7 {metrics['mAP']['0.70']:.2f}", flush=True)
    return result


# ---------------------------------------------------------------------------------------------------
# Head cost at T=2304


def latency_windows(annotations: Path, features: Path, count: int, length: int = LATENCY_LENGTH) -> list[torch.Tensor]:
    """`count` windows (1, C, length) from the test videos' features laid end to end, evenly spaced."""
    database = json.loads(annotations.read_text())["database"]
    videos = [v for v, info in database.items() if str(info["subset"]).lower() == "test"]
    stream = np.concatenate([np.load(features / f"{v}.npy") for v in videos])
    starts = [round(i * stream.shape[0] / count) for i in range(count)]
    return [torch.from_numpy(window(stream, start, length).T.copy())[None] for start in starts]


def measure_heads(
    models: dict[str, TZN], windows: list[torch.Tensor], repeats: int, fields: dict[str, bool]
) -> dict[str, dict]:
    """Hard-mode cost of every model on every window: round robin (so drift in machine load hits all models
    alike), median ms per model and window, then the mean over windows; GFLOPs and mean depth likewise.
    fields[name]: whether the model runs its boundary head (as served: when its decoding uses the fields)."""
    times: dict[tuple[str, int], list[float]] = {}
    flops: dict[str, list[float]] = {name: [] for name in models}
    depths: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for index, features in enumerate(windows):
            mask = torch.ones(1, features.shape[2], dtype=torch.bool)
            for name, model in models.items():  # warm-up, and the counts
                output = model(features, mask, execution="hard", boundary=fields[name])
                flops[name].append(output_flops(model.config, output, batch=1).total / 1e9)
                depths[name].append(float(output.layer_masks[0, : features.shape[2]].sum(-1).mean()))
            for _ in range(repeats):
                for name, model in models.items():
                    started = time.perf_counter()
                    model(features, mask, execution="hard", boundary=fields[name])
                    times.setdefault((name, index), []).append(1000 * (time.perf_counter() - started))
    return {
        name: {
            "latency_ms": statistics.fmean(statistics.median(times[name, i]) for i in range(len(windows))),
            "gflops": statistics.fmean(flops[name]),
            "mean_depth": statistics.fmean(depths[name]),
        }
        for name in models
    }


def measure_thumos_size(
    models: dict[str, TZN], windows: list[torch.Tensor], repeats: int, fields: dict[str, bool]
) -> dict[str, dict]:
    """The trained ATR models' depths on a THUMOS-size head (d=512, ActionFormer's sizes, random weights: the
    cost does not depend on them): each model's tau on each window drives a d=512 TZN of the same ATR and
    boundary settings (tau_override), timed round robin against a d=512 Uniform-6 in this process.
    Returns {name: {"latency_ratio", "flops_ratio"}} for the ATR models."""
    torch.manual_seed(0)
    uniform_config = THUMOS_I3D.model_copy(
        update={"input_dim": 2048, "num_classes": 20, "atr": False, "boundary_head": "none"}
    )
    big = {BASELINE: TZN(uniform_config).eval()}
    taus: dict[str, list[torch.Tensor]] = {}
    with torch.inference_mode():
        for name, model in models.items():
            if not model.config.atr:
                continue
            flags = {
                k: getattr(model.config, k) for k in ("block_depth", "integer_depth", "min_depth", "boundary_head")
            }
            big[name] = TZN(
                THUMOS_I3D.model_copy(update={"input_dim": 2048, "num_classes": 20, "atr": True, **flags})
            ).eval()
            taus[name] = [
                model(w, torch.ones(1, w.shape[2], dtype=torch.bool), execution="hard").tau[:, : w.shape[2]]
                for w in windows
            ]
        times: dict[str, list[float]] = {n: [] for n in big}
        flops: dict[str, list[float]] = {n: [] for n in big}
        for index, window_features in enumerate(windows):
            features = torch.randn(1, 2048, window_features.shape[2])
            mask = torch.ones(1, features.shape[2], dtype=torch.bool)
            for repeat in range(repeats + 1):
                for name, model in big.items():
                    override = taus[name][index] if name in taus else None
                    boundary = fields.get(name, False)
                    started = time.perf_counter()
                    output = model(features, mask, execution="hard", tau_override=override, boundary=boundary)
                    elapsed = 1000 * (time.perf_counter() - started)
                    if repeat == 0:  # warm-up, and the counts
                        flops[name].append(output_flops(model.config, output, batch=1).total)
                    else:
                        times[name].append(elapsed)
    base_ms, base_flops = statistics.median(times[BASELINE]), statistics.fmean(flops[BASELINE])
    return {
        name: {"latency_ratio": statistics.median(times[name]) / base_ms, "flops_ratio": statistics.fmean(flops[name]) / base_flops,
               "latency_ms": statistics.median(times[name])}
        for name in taus
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# One seed, all seeds


def run_seed(seed: int, args: argparse.Namespace, settings: Settings, variants: list[str]) -> dict[str, dict]:
    """One seed: its dataset, every variant trained (or reused), predicted and evaluated, then the head cost at
    T=2304 -> {variant: row of the results table}."""
    annotations, features = dataset(args.workdir, settings, seed)
    runs_root = args.workdir / "runs" / f"{settings.data_tag}-e{args.epochs or 'cfg'}-seed{seed}"
    results: dict[str, dict] = {}
    for name in variants:
        variant = VARIANTS[name]
        teacher = runs_root / variant.teacher if variant.teacher else None
        config = run_config(args.config, variant, annotations, features, seed, args.epochs, teacher)
        source = results.get(variant.decoded_from) if variant.decoded_from else None
        results[name] = run_variant(name, seed, runs_root / name, config, annotations, features, args.device, source)

    print(f"[seed {seed}] head cost at T={LATENCY_LENGTH}: {args.windows} windows x {args.repeats} runs", flush=True)
    cost, thumos = head_costs(args, variants, runs_root, annotations, features)
    widths = ground_truth_widths(json.loads(annotations.read_text()), "test")
    return seed_rows(variants, results, cost, thumos, widths)


def head_costs(
    args: argparse.Namespace, variants: list[str], runs_root: Path, annotations: Path, features: Path
) -> tuple[dict[str, dict], dict[str, dict]]:
    """The trained runs' head cost on the seed's windows (measure_heads) and, with --thumos-size, at THUMOS size
    (measure_thumos_size): {variant: {...}} each; a decoding ablation whose network is its source's gets the
    source's numbers."""
    # As served, a model runs its boundary head only when its decoding uses the fields (postprocess.snap). A
    # decoding ablation runs its source's network: it is timed only when that differs in the boundary head.
    fields = {name: read_checkpoint_config(runs_root / name).postprocess.snap for name in variants}
    measured = [
        name for name in variants
        if not (source := VARIANTS[name].decoded_from) or fields[name] != fields[source]
    ]  # fmt: skip
    models = {name: load_checkpoint(runs_root / name)[0] for name in measured}
    windows = latency_windows(annotations, features, args.windows)
    cost = measure_heads(models, windows, args.repeats, fields)
    thumos = measure_thumos_size(models, windows[:1], max(args.repeats // 2, 1), fields) if args.thumos_size else {}
    for name in variants:
        if name not in measured:
            source = VARIANTS[name].decoded_from
            cost[name] = cost[source]
            if source in thumos:
                thumos[name] = thumos[source]
    return cost, thumos


def seed_rows(
    variants: list[str], results: dict[str, dict], cost: dict[str, dict], thumos: dict[str, dict], widths: np.ndarray
) -> dict[str, dict]:
    """One seed's rows: each run's result (run_variant) and head cost, ratios to the seed's Uniform-6, and R
    against R_REFERENCE (all of it, sharp and ramped boundaries apart; `widths` (G, 2) from ground_truth_widths).
    NaN becomes None."""
    reference = np.array(results[R_REFERENCE]["boundary_errors"], dtype=np.float64) if R_REFERENCE in results else None
    latency = relative({n: cost[n]["latency_ms"] for n in variants}, BASELINE)
    flops = relative({n: cost[n]["gflops"] for n in variants}, BASELINE)
    training = relative({n: results[n]["train_seconds"] for n in variants}, BASELINE)
    rows = {}
    for name in variants:
        result = results[name]
        errors = np.array(result["boundary_errors"], dtype=np.float64).reshape(-1, 2)
        row = {
            "mAP": result["mAP"],
            "average": result["average"],
            "short_actions": result["short_actions"],
            "train_seconds": result["train_seconds"],
            "train_cost": training[name],
            "test_mean_depth": result["test_stats"]["mean_depth"],
            "test_head_flops_ratio": result["test_stats"]["head_flops"] / result["test_stats"]["head_flops_uniform"],
            "gflops_2304": cost[name]["gflops"],
            "flops_ratio_2304": flops[name],
            "latency_ms_2304": cost[name]["latency_ms"],
            "latency_ratio": latency[name],
            "mean_depth_2304": cost[name]["mean_depth"],
            "thumos_latency_ratio": thumos.get(name, {}).get("latency_ratio"),
            "thumos_flops_ratio": thumos.get(name, {}).get("flops_ratio"),
            "matched_fraction": float(np.isfinite(errors[:, 0]).mean()) if len(errors) else None,
            "boundary_error_std_s": float(np.nanstd(errors)) if np.isfinite(errors).any() else None,
        }
        if reference is not None:
            row["R"], row["R_boundaries"] = variance_ratio(errors, reference)
            sharp, ramped = widths == 0, widths > 0
            row["R_sharp"] = variance_ratio(np.where(sharp, errors, np.nan), reference)[0]
            row["R_ramped"] = variance_ratio(np.where(ramped, errors, np.nan), reference)[0]
        rows[name] = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
    return rows


def summarize(per_seed: dict[int, dict[str, dict]], variants: list[str]) -> dict[str, dict]:
    """{variant: {metric: (mean, std)}} over seeds; nested metrics are flattened as 'mAP@0.70', 'short<=3s'."""
    summary: dict[str, dict] = {}
    for name in variants:
        flat: dict[str, list] = {}
        for rows in per_seed.values():
            row = rows[name]
            for key, value in row.items():
                if key == "mAP":
                    for threshold, v in value.items():
                        flat.setdefault(f"mAP@{threshold}", []).append(v)
                elif key == "short_actions":
                    for bin_name, v in value.items():
                        flat.setdefault(f"short{bin_name}", []).append(v)
                else:
                    flat.setdefault(key, []).append(value)
        summary[name] = {key: mean_std(values) for key, values in flat.items()}
    return summary


def paper_comparison(per_seed: dict[int, dict[str, dict]]) -> list[tuple[str, str, list[float | None]]]:
    """(quantity, the paper's claim or the issue's target, per-seed values); differences are paired by seed."""

    def per(name: str, key: str, transform=lambda v: v) -> list[float | None]:
        return [transform(rows[name][key]) if name in rows and rows[name].get(key) is not None else None
                for rows in per_seed.values()]  # fmt: skip

    def map07(row: dict) -> float:
        return row["mAP"]["0.70"]

    def average(row: dict) -> float:
        return row["average"]

    student_kept = [
        100 * rows["tzn_distilled"]["average"] / rows["uniform6_bdr"]["average"]
        if {"tzn_distilled", "uniform6_bdr"} <= rows.keys() and rows["uniform6_bdr"]["average"] > 0
        else None
        for rows in per_seed.values()
    ]
    rows = [
        ("TZN - Uniform-6, mAP@0.7 (points)", ">= +2 (paper +2.9)", paired(per_seed, MAIN, BASELINE, map07)),
        ("TZN - Uniform-6, average mAP (points)", ">= 0", paired(per_seed, MAIN, BASELINE, average)),
        ("TZN head FLOPs at T=2304 (x Uniform-6)", "<= 0.75 (paper 0.76)", per(MAIN, "flops_ratio_2304")),
        ("TZN head latency at T=2304 (x Uniform-6)", "<= 0.75 (paper 0.71)", per(MAIN, "latency_ratio")),
        ("R ramped of TZN decoded by BDR votes", "<= 0.5 (paper 0.06 .. 0.30)", per(VOTES, "R_ramped")),
        ("R ramped of Uniform-6 + BDR decoded by votes", "<= 0.5", per("uniform6_bdr_votes", "R_ramped")),
        ("R ramped of TZN as served (config's decoding)", "", per(MAIN, "R_ramped")),
        ("TZN - ATR, mAP@0.7 (points): what BDR adds to ATR", "", paired(per_seed, MAIN, "atr", map07)),
        ("TZN with BDR votes - TZN, mAP@0.7 (points)", "", paired(per_seed, VOTES, MAIN, map07)),
        (
            "Uniform-6 + BDR - Uniform-6, mAP@0.7 (points)",
            "+1.8 .. +3.1",
            paired(per_seed, "uniform6_bdr", BASELINE, map07),
        ),
        ("ATR - Uniform-6, mAP@0.7 (points)", "", paired(per_seed, "atr", BASELINE, map07)),
        ("TZN training cost (x Uniform-6)", "1.29", per(MAIN, "train_cost")),
    ]
    if any(v is not None for v in student_kept):
        rows.append(("Distilled student avg mAP (% of its teacher's)", "99.5", student_kept))
    thumos = per(MAIN, "thumos_latency_ratio")
    if any(v is not None for v in thumos):
        rows.append(("TZN's trained depths at THUMOS size (d=512), latency (x Uniform-6)", "<= 0.75", thumos))
        rows.append(("TZN's trained depths at THUMOS size (d=512), FLOPs (x Uniform-6)", "<= 0.75",
                     per(MAIN, "thumos_flops_ratio")))  # fmt: skip
    return [row for row in rows if any(v is not None for v in row[2])]


def verdicts(document: dict) -> list[tuple[str, bool | None, str]]:
    """The issue's targets, judged on this run's numbers: (target, met or None when not measured, the numbers)."""
    summary, variants = document["summary"], document["variants"]
    per_seed = document["per_seed"]

    def mean_of(values: list[float | None]) -> float | None:
        found = mean_std(values)
        return None if found is None else found[0]

    gain = mean_of(paired(per_seed, MAIN, BASELINE, lambda r: r["mAP"]["0.70"]))
    average_gain = mean_of(paired(per_seed, MAIN, BASELINE, lambda r: r["average"]))
    flops = (summary.get(MAIN, {}).get("flops_ratio_2304") or (None,))[0]
    latency = (summary.get(MAIN, {}).get("latency_ratio") or (None,))[0]
    # R is about the boundaries BDR decodes: TZN's checkpoint decoded by the fields' votes
    ramped = (summary.get(VOTES, summary.get(MAIN, {})).get("R_ramped") or (None,))[0]
    out = []

    def judge(text: str, value: float | None, ok) -> None:
        out.append(
            (
                text,
                None if value is None else bool(ok(value)),
                "not measured" if value is None else f"{value:+.2f}" if "points" in text else f"{value:.3f}",
            )
        )

    judge("TZN - Uniform-6 at mAP@0.7 >= +2 points", gain, lambda v: v >= TARGETS["map07_gain"])
    judge("TZN - Uniform-6 average mAP >= 0 points", average_gain, lambda v: v >= 0)
    judge("TZN head FLOPs <= 0.75x Uniform-6 at T=2304", flops, lambda v: v <= TARGETS["flops_ratio"])
    judge("TZN head latency <= 0.75x Uniform-6 at T=2304 (this CPU)", latency, lambda v: v <= TARGETS["latency_ratio"])
    judge("R of TZN's BDR (votes) on ramped boundaries <= 0.5", ramped, lambda v: v <= TARGETS["R_ramped"])
    for name in [v for v in variants if VARIANTS[v].family == "tzn"]:
        margin = margin_over_curve(summary, variants, name)
        judge(
            f"{VARIANTS[name].label} above the Uniform-k curve at equal FLOPs (mAP@0.7 points)", margin, lambda v: v > 0
        )
    return out


def reading(document: dict) -> list[str]:
    """The reading of this run, generated from its numbers (nothing written by hand for another run)."""
    summary, variants, seeds = document["summary"], document["variants"], len(document["per_seed"])

    def value(name: str, key: str, digits: int = 1) -> str:
        return format_mean_std(summary.get(name, {}).get(key), digits, seeds)

    lines = [
        f"Generated from this run's numbers ({seeds} seed(s)); each line is a target of issue 9 and whether it was met:",
        "",
    ]
    for text, met, numbers in verdicts(document):
        mark = "not measured" if met is None else ("met" if met else "**not met**")
        lines.append(f"- {text}: {numbers} -> {mark}")
    lines.append("")
    if BASELINE in summary and MAIN in summary:
        lines.append(
            f"- Accuracy: Uniform-6 {value(BASELINE, 'mAP@0.70')} mAP@0.7 / {value(BASELINE, 'average')} avg; "
            f"TZN {value(MAIN, 'mAP@0.70')} / {value(MAIN, 'average')}. Cost at T=2304: TZN runs "
            f"{value(MAIN, 'mean_depth_2304', 2)} stem layers per position on average, "
            f"{value(MAIN, 'gflops_2304', 3)} GFLOPs against Uniform-6's {value(BASELINE, 'gflops_2304', 3)}, "
            f"in {value(MAIN, 'latency_ms_2304')} ms against {value(BASELINE, 'latency_ms_2304')} ms."
        )
    uniform = [v for v in variants if VARIANTS[v].family == "uniform"]
    if len(uniform) > 1:
        points = ", ".join(
            f"{VARIANTS[v].label} {value(v, 'mAP@0.70')} at {value(v, 'gflops_2304', 3)}" for v in uniform
        )
        lines.append(f"- The Uniform-k curve (mAP@0.7 at GFLOPs @2304): {points}.")
    if "uniform6_bdr" in summary:
        lines.append(
            f"- BDR alone (Uniform-6 + BDR): {value('uniform6_bdr', 'mAP@0.70')} mAP@0.7, R sharp "
            f"{value('uniform6_bdr', 'R_sharp', 2)}, R ramped {value('uniform6_bdr', 'R_ramped', 2)} against the "
            f"classification boundary head."
        )
    return lines


def plot_curve(document: dict, path: Path) -> None:
    """mAP@0.7 against head GFLOPs @2304 (means over seeds, std as error bars): the Uniform-k curve, the TZN rho
    sweep and the other variants, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, variants = document["summary"], document["variants"]
    figure, axes = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for family, style in (("uniform", "o-"), ("tzn", "s-")):
        names = [v for v in variants if VARIANTS[v].family == family and summary[v].get("gflops_2304")]
        names.sort(key=lambda v: summary[v]["gflops_2304"][0])
        if not names:
            continue
        xs = [summary[v]["gflops_2304"][0] for v in names]
        ys = [summary[v]["mAP@0.70"][0] for v in names]
        errors = [summary[v]["mAP@0.70"][1] for v in names]
        axes.errorbar(
            xs, ys, yerr=errors, fmt=style, capsize=3, label="Uniform-k" if family == "uniform" else "TZN (rho sweep)"
        )
        for v, x, y in zip(names, xs, ys, strict=True):
            axes.annotate(
                VARIANTS[v].label.replace("TZN (ATR + BDR)", "TZN"),
                (x, y),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    for v in variants:
        if VARIANTS[v].family or not summary[v].get("gflops_2304"):
            continue
        axes.errorbar(
            summary[v]["gflops_2304"][0],
            summary[v]["mAP@0.70"][0],
            yerr=summary[v]["mAP@0.70"][1],
            fmt="^",
            capsize=3,
            label=VARIANTS[v].label,
        )
    axes.set_xlabel("head GFLOPs at T=2304 (hard execution of the trained model)")
    axes.set_ylabel("mAP@0.7 (test split, %)")
    axes.set_title(f"Synthetic THUMOS-statistics benchmark, {len(document['per_seed'])} seed(s)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


# ---------------------------------------------------------------------------------------------------
# Report


def machine() -> dict:
    model_name = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        model_name = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                           if line.startswith("model name")), "")  # fmt: skip
    return {
        "cpu": model_name or platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def render(document: dict) -> str:
    """The Markdown report of a results document (main writes it to --output; --render-only rewrites it)."""
    lines = _summary_tables(document)
    if document.get("plot_name"):
        plot = f"![mAP@0.7 against head GFLOPs at T=2304]({document['plot_name']})"
        lines += ["", "## mAP@0.7 against head FLOPs", "", plot]
    lines += _paired_section(document) + _definitions(document) + _per_seed_section(document)
    lines += ["", f"All numbers, per seed: `{document['json_name']}`.", "", "## Reading", "", *reading(document), ""]
    return "\n".join(lines)


def _summary_tables(document: dict) -> list[str]:
    """The title, the command, and two tables of every variant's means (± std) over seeds."""
    summary, per_seed, variants = document["summary"], document["per_seed"], document["variants"]
    seeds = len(per_seed)
    tious = [f"{t:.2f}" for t in THUMOS_TIOUS]

    def cell(name: str, key: str, digits: int = 1) -> str:
        return format_mean_std(summary[name].get(key), digits, seeds)

    lines = [
        "# Results on the synthetic THUMOS-statistics benchmark",
        "",
        f"Generated by `experiments/results.py` on {document['date']}; {seeds} seed(s): "
        f"{', '.join(map(str, per_seed))}. Values are mean ± sample std over seeds (mean alone for one seed).",
        "",
        "```",
        document["command"],
        "```",
        "",
        "| variant | "
        + " | ".join(f"mAP@{t[:3]}" for t in tious)
        + " | avg | mAP ≤3 s | GFLOPs @2304 | latency × | R | train cost × |",
        "|---|" + "---:|" * (len(tious) + 6),
    ]
    for name in variants:
        cells = [cell(name, f"mAP@{t}") for t in tious] + [cell(name, "average"), cell(name, "short<=3s")]
        cells += [cell(name, "gflops_2304", 3), cell(name, "latency_ratio", 2), cell(name, "R", 2)]
        cells += [cell(name, "train_cost", 2)]
        lines.append(f"| {VARIANTS[name].label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "More of the same runs:",
        "",
        "| variant | mAP 3-6 s | mean depth (test) | head FLOPs (test, x uniform) | mean depth @2304 | latency ms @2304 "
        "| R sharp | R ramped | boundary error std (s) | GT matched | train s |",
        "|---|" + "---:|" * 10,
    ]
    for name in variants:
        cells = [cell(name, "short3-6s"), cell(name, "test_mean_depth", 2), cell(name, "test_head_flops_ratio", 2)]
        cells += [cell(name, "mean_depth_2304", 2), cell(name, "latency_ms_2304", 1), cell(name, "R_sharp", 2)]
        cells += [cell(name, "R_ramped", 2), cell(name, "boundary_error_std_s", 3)]
        cells += [cell(name, "matched_fraction", 2), cell(name, "train_seconds", 1)]
        lines.append(f"| {VARIANTS[name].label} | " + " | ".join(cells) + " |")
    return lines


def _paired_section(document: dict) -> list[str]:
    """The paper_comparison rows: quantity, target, mean ± std over seeds and the per-seed values."""
    seeds = len(document["per_seed"])
    lines = [
        "",
        "## Paired per seed, against the targets",
        "",
        "Differences are TZN (or the named variant) minus Uniform-6 on the same data and seed, then mean ± std.",
        "",
        "| quantity | target (paper) | measured | per seed |",
        "|---|---:|---:|---|",
    ]
    for quantity, claim, values in document["paper_comparison"]:
        shown = ", ".join("–" if v is None else f"{v:.2f}" for v in values)
        lines.append(f"| {quantity} | {claim} | {format_mean_std(mean_std(values), 2, seeds)} | {shown} |")
    return lines


def _definitions(document: dict) -> list[str]:
    """Links to the other runs, then how the data, the variants and every measured quantity are defined."""
    variants = document["variants"]
    return [
        "",
        "Other runs of this script, in docs/: [results.md](results.md) (5 seeds, the main variants), "
        "[results-ablations.md](results-ablations.md) (every variant: Uniform-1..6, the rho sweep, BDR alone, "
        "the coupled BDR loss, the votes; seed 0) and [results-unseen.md](results-unseen.md) (boundary mix 0.9, "
        "a data seed no tuning saw). How the recipe was chosen: [tuning.md](tuning.md).",
        "",
        "## Definitions",
        "",
        "- Data: per seed, `training.synthetic` with "
        + ", ".join(f"{k}={v}" for k, v in document["settings"]["data"].items())
        + "; the `validation` subset trains, `test` is evaluated. Model and training: "
        f"`{document['settings']['config']}` with the variant's `model` overrides and the seed as `seed`"
        + (f", `optimizer.epochs` = {document['settings']['epochs']}" if document["settings"]["epochs"] else "")
        + ". The config's hyperparameters were chosen on a validation split carved out of the training videos of "
        "another data seed, never on these test splits: [docs/tuning.md](tuning.md).",
        "- Variants: "
        + "; ".join(
            f"{VARIANTS[n].label} = `{json.dumps(VARIANTS[n].model)}`"
            + (f" ({VARIANTS[n].notes})" if VARIANTS[n].notes else "")
            for n in variants
        )
        + ". The distilled student is the TZN config trained with `distill.teacher` = the seed's Uniform-6 + BDR run "
        "(a uniform teacher of the same size shares all weights but the tau predictor, so the student starts from "
        "it; its training cost does not include training the teacher).",
        "- mAP: ActivityNet protocol (training.evaluation), test split, percent; short-action mAP: ground truths of "
        "at most 3 s (resp. 3-6 s) as positives.",
        f"- GFLOPs / latency @2304: each trained model runs hard ATR execution on {document['settings']['windows']} "
        f"windows of {LATENCY_LENGTH} steps cut from the seed's test features laid end to end (tau from the trained "
        "predictor; the boundary head runs only where the decoding uses it, `postprocess.snap`, as the service "
        f"runs it); FLOPs from `model.flops.output_flops`; latency = median of {document['settings']['repeats']} "
        "runs per window (round robin over the models, one process), mean over windows, ratio to the seed's "
        "Uniform-6. Mean depth (test) and head FLOPs (test) are totals over the test videos from `tzn predict`'s stats.",
        "- R: for each test ground truth, the signed start and end errors (s) of the highest-scoring detection of its "
        "label with tIoU ≥ 0.5 (`training.evaluation.boundary_errors`); R = Var(variant's errors) / Var(errors of "
        "Uniform-6 + cls. boundary head), same seed, over the boundaries both matched. R sharp / R ramped: only "
        "boundaries that are sharp cuts / linear ramps in the synthetic data.",
        "- Training cost: wall-clock seconds of `training.train.train` (all epochs plus what the call spent outside "
        "them, e.g. the student's teacher pass), ratio to the seed's Uniform-6. Runs of a seed train one after the "
        "other on the same machine; other load on the machine shows up here.",
    ]


def _per_seed_section(document: dict) -> list[str]:
    """The machine the run was measured on, and one row per seed and variant."""
    lines = [
        "",
        "## Machine",
        "",
        "```json",
        json.dumps(document["machine"], indent=1),
        "```",
        "",
        "## Per seed",
        "",
        "| seed | variant | mAP@0.7 | avg | mAP ≤3 s | GFLOPs @2304 | latency ms | R | train s | mean depth (test) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def number(value, digits: int) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    for seed, rows in document["per_seed"].items():
        for name in document["variants"]:
            row = rows[name]
            cells = [number(row["mAP"]["0.70"], 2), number(row["average"], 2)]
            cells += [number(row["short_actions"].get("<=3s"), 2), number(row["gflops_2304"], 3)]
            cells += [number(row["latency_ms_2304"], 1), number(row.get("R"), 3), number(row["train_seconds"], 1)]
            cells += [number(row["test_mean_depth"], 2)]
            lines.append(f"| {seed} | {VARIANTS[name].label} | " + " | ".join(cells) + " |")
    return lines


# ---------------------------------------------------------------------------------------------------
# Command line


def selected_variants(requested: list[str]) -> list[str]:
    """The requested variants plus what they need (the baseline, R's reference, teachers), in VARIANTS order."""
    wanted = set(requested) | {BASELINE}
    if any(VARIANTS[n].model.get("boundary_head") != "none" for n in wanted):
        wanted.add(R_REFERENCE)
    wanted |= {VARIANTS[n].teacher for n in list(wanted) if VARIANTS[n].teacher}
    wanted |= {VARIANTS[n].decoded_from for n in list(wanted) if VARIANTS[n].decoded_from}
    return [name for name in VARIANTS if name in wanted]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.render_only:
        args.output.write_text(render(json.loads(args.output.with_suffix(".json").read_text())))
        print(f"wrote {args.output} from {args.output.with_suffix('.json')}", flush=True)
        return 0

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    variants = selected_variants(args.variants)
    settings = Settings(args.videos, args.max_duration, args.boundary_mix)
    command = _command_line()
    print(f"variants: {', '.join(variants)}; seeds: {args.seeds}; torch threads: {torch.get_num_threads()}", flush=True)

    warm_up()
    per_seed = {seed: run_seed(seed, args, settings, variants) for seed in args.seeds}
    json_path = args.output.with_suffix(".json")
    document = results_document(args, settings, variants, per_seed, command, json_path.name)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    plot_path = args.output.with_name(args.output.stem + "_curve.png")
    plot_curve(document, plot_path)
    document["plot_name"] = plot_path.name
    json_path.write_text(json.dumps(document, indent=1) + "\n")
    markdown = render(document)
    args.output.write_text(markdown)
    print(markdown.split("## Definitions")[0], flush=True)
    print(f"wrote {args.output} and {json_path}", flush=True)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workdir", type=Path, required=True, help="datasets and runs (kept between invocations)")
    parser.add_argument("--videos", type=int, default=200, help="synthetic videos per seed (about half are test)")
    parser.add_argument("--max-duration", type=float, default=133.0, help="cap on video length (s)")
    parser.add_argument("--boundary-mix", type=float, default=0.5, help="share of ramped (gradual) boundaries")
    parser.add_argument("--epochs", type=int, default=None, help="override the config's optimizer.epochs")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=DEFAULT_VARIANTS)
    parser.add_argument("--device", default="cpu", help="training and prediction (latency is always CPU)")
    parser.add_argument(
        "--thumos-size", action="store_true", help="also time the trained taus on a THUMOS-size (d=512) head"
    )
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per model and window at T=2304")
    parser.add_argument("--windows", type=int, default=3, help="windows of T=2304 steps per seed")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "results.md")
    parser.add_argument(
        "--render-only", action="store_true",
        help="rewrite --output from its .json (that run's numbers, this script's text); trains and times nothing",
    )  # fmt: skip
    return parser


def _command_line() -> str:
    """This invocation as a command to repeat it, with the thread-count variables it ran under."""
    environment = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ)
    return " ".join(filter(None, [environment, "PYTHONPATH=. python experiments/results.py", shlex.join(sys.argv[1:])]))


def results_document(
    args: argparse.Namespace,
    settings: Settings,
    variants: list[str],
    per_seed: dict[int, dict[str, dict]],
    command: str,
    json_name: str,
) -> dict:
    """Everything a report is rendered from (and saved as JSON next to it): when, how and where it ran, the
    settings, the rows of every seed, their summary over seeds and the comparison with the paper."""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": command,
        "machine": machine(),
        "settings": {
            "config": str(
                args.config.resolve().relative_to(ROOT) if args.config.resolve().is_relative_to(ROOT) else args.config
            ),
            "epochs": args.epochs,
            "data": {
                "videos": settings.videos,
                "feature_dim": settings.feature_dim,
                "classes": settings.classes,
                "max_duration": settings.max_duration,
                "boundary_mix": settings.boundary_mix,
            },
            "repeats": args.repeats,
            "windows": args.windows,
            "min_tiou_for_R": 0.5,
        },  # fmt: skip
        "variants": variants,
        "per_seed": per_seed,
        "summary": summarize(per_seed, variants),
        "paper_comparison": paper_comparison(per_seed),
        "json_name": json_name,
    }


if __name__ == "__main__":
    raise SystemExit(main())
