"""The temporal zoom against uniform sampling, on raw videos (issue 16): results page docs/zoom.md.

    python -m training.zoom_videos --output /tmp/zoom/videos --videos 104 --seed 0
    python -m tools.zoom_frames --videos /tmp/zoom/videos --output /tmp/zoom/frames
    python -m experiments.zoom --workdir /tmp/zoom --seeds 0 1 2 3 4 [--output docs/zoom.md]

Data: training/zoom_videos.py (30 fps, fades and sharp cuts, short and long actions, distractors; splits
training / validation / test). Frames: one backbone feature per frame of every video, through the engine's
decoding and backbone (tools/zoom_frames.py); a rate's features are the rows its ticks pick, exactly what a
decode at that rate gives (tools/train_zoom.py, `FrameCache`).

Per seed (the data are fixed; the seed is the training's):
- uniform r fps, r in RATES: a detector trained on r's clip features (configs/zoom.yaml, data.default_fps = r),
  predicted with `Localizer.detect`, the step every request runs after its features; at FRAME_RATES also one
  trained on per-frame features ("per frame": num_frames = feat_stride = 1, where the served clips pool 4 frames
  every 2, which halves the time resolution);
- zoom: the seed's uniform detector at the coarse rate (clips or per frame), refiners (bdr, regression) and a
  verifier trained per (zoom_fps, window_s), or the "detector" refiner: the seed's per-frame uniform detector at the
  zoom rate, run on the coarse frames and the windows' (interpolated between them); all run by
  `engine.zoom.run_zoom` (what `Localizer.localize` runs for a zoom checkpoint) on cached frames;
- the zoom points (GRID: coarse rate, coarse features, zoom rate, window, candidate score, refiner, verify weight)
  are chosen on the validation split (mean over seeds), never on test: "zoom-lite" the best validation mAP@0.7 at
  <= 0.4x the 8 fps backbone, "zoom-fine" the best validation mAP@0.9 at <= 1.0x with zoom_fps >= 16,
  "zoom-average" the best validation average mAP at <= 1.0x (the question whether a zoom should be served instead
  of the dense default at no more backbone; not one of the issue's targets); all among
  the points whose validation average mAP is within AVERAGE_SLACK of uniform 8 fps's, if any is. Each then also
  runs with the other refiners, the other verify weight and the other coarse features (ablations).
Measured on test: mAP at tIoU 0.3..0.9 and their average; boundary error std (frames at 30 fps) over the ground
truths matched at tIoU >= 0.5; R on ramped boundaries = Var(errors) / Var(uniform 8 fps errors), same seed, same
boundaries; backbone GFLOPs and backbone frames per video minute. The CPU wall time per video minute comes from
`Localizer.localize` on the test videos (real decoding), seed 0: every uniform detector served at its own rate,
and the chosen zoom points with each refiner, with ffmpeg decoding every frame of the same videos in the same run
(the decode stage's limit).
Resumable: runs live under --workdir/runs and are not retrained.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from engine.features.extractor import FrameFeatures
from engine.localizer import Localizer
from engine.settings import EngineSettings, WorkLimits
from engine.video.source import VideoSource
from engine.zoom import REFINER_FILE, VERIFIER_FILE, ZoomDetector, ZoomedPass, ZoomSettings, pool_clips, run_zoom
from experiments.results import ground_truth_widths, variance_ratio
from model.backbones import SPECS, build_backbone, flops_per_unit
from model.refiner import BoundaryRefiner, BoundaryVerifier, RefinerConfig
from tools.train_zoom import (
    FrameCache,
    load_zoom_config,
    train_detector,
    train_refiner,
    train_verifier,
    write_zoom_checkpoint,
)  # fmt: skip
from training.evaluation import boundary_errors, evaluate

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "zoom.yaml"
RATES = (1, 2, 4, 8, 16, 30)
REFERENCE = 8  # the served default's rate
TIOUS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SPEC = SPECS["resnet18-2d"]
CLIP = (SPEC.frames_per_clip, SPEC.clip_stride)
POOLINGS = {"clips": CLIP, "frames": (1, 1)}  # a detector's features: the served clips, or one per frame
FRAME_RATES = (1, 2, 4, 8, 16)  # rates with per-frame detectors too (the zoom's coarse and zoom rates, the reference)
PER_FRAME = ", per frame"  # the test table's suffix of the uniform detectors on per-frame features
SMALL_FRAMES = ", per frame, 64 px"  # ... and on per-frame features of 64 px frames (experiments/zoom_space.py)
GRID = {
    "coarse_fps": (1, 2, 4),
    "zoom_fps": (8, 16),
    "window_s": (0.25, 0.5, 1.0),
    "min_score": (0.1, 0.3, 0.5),
    "refiner": ("bdr", "regression", "detector"),
    "verify_weight": (0.0, 0.25),
    "coarse_pooling": ("clips", "frames"),
}  # fmt: skip  (the "detector" refiner scores its own actions: only with verify_weight 0)
REFINERS = ("bdr", "regression", "none", "detector")
AVERAGE_SLACK = 1.0  # a chosen zoom point keeps the validation average mAP within this of uniform 8 fps's


@dataclass(frozen=True)
class BackboneCost:
    """What the backbone ran for a set of videos: frames, and their FLOPs (frames of several sizes)."""

    frames: int
    flops: float


class Bench:
    """The trained runs of one workdir, and the backbone's cost per frame."""

    def __init__(self, workdir: Path, epochs: int | None):
        self.workdir, self.annotations = workdir, workdir / "videos" / "annotations.json"
        self.truth = json.loads(self.annotations.read_text())
        self.cache = FrameCache(workdir / "frames", self.truth)
        self._caches = {None: self.cache}
        self.base, self.zoom = load_zoom_config(CONFIG)
        if epochs:
            self.base = self.base.model_copy(
                update={"optimizer": self.base.optimizer.model_copy(update={"epochs": epochs})}
            )
        self._backbone = build_backbone(SPEC.name)[0]
        self._flops: dict[int | None, int] = {}  # per frame, by frame size
        self._localizers: dict[Path, Localizer] = {}

    def cost(self, frames: int, size: int | None = None) -> BackboneCost:
        """What `frames` frames of `size` px (None: the backbone's own) cost the backbone."""
        if size not in self._flops:
            self._flops[size] = flops_per_unit(self._backbone, size)
        return BackboneCost(frames, float(frames * self._flops[size]))

    def cache_at(self, size: int | None) -> FrameCache:
        """The per-frame features of frames of `size` px (None: the backbone's own; else frames-<size>px/, from
        `python -m tools.zoom_frames --frame-size <size>`)."""
        if size not in self._caches:
            self._caches[size] = FrameCache(self.workdir / f"frames-{size}px", self.truth)
        return self._caches[size]

    def videos(self, split: str) -> list[str]:
        return [v for v, info in self.truth["database"].items() if info["subset"] == split]

    def run_dir(self, fps: float, seed: int, pooling: str = "clips", size: int | None = None) -> Path:
        """Where the seed's uniform detector at `fps` on `pooling` features of `size` px frames lives."""
        return self.workdir / "runs" / f"seed{seed}" / f"uniform{fps:g}{pooling_suffix(pooling)}{size_suffix(size)}"

    def detector(self, fps: float, seed: int, pooling: str = "clips", size: int | None = None) -> Localizer:
        """The seed's uniform detector at `fps` on features pooled as `pooling` says (POOLINGS), of frames of
        `size` px (None: the backbone's own), trained once."""
        run = self.run_dir(fps, seed, pooling, size)
        if not (run / "model.safetensors").is_file():
            features = self.workdir / "features" / f"{fps:g}fps{pooling_suffix(pooling)}{size_suffix(size)}"
            base = self.base.model_copy(update={"data": self.base.data.model_copy(update={"frame_size": size})})
            train_detector(base, self.cache_at(size), self.annotations, fps, POOLINGS[pooling], features, run, seed,
                           log=lambda _: None, progress=False)  # fmt: skip
        if run not in self._localizers:
            self._localizers[run] = Localizer(EngineSettings(checkpoint=run, device="cpu"))
        return self._localizers[run]

    def refiner(self, settings: ZoomSettings, mode: str, seed: int):
        """The seed's refiner for (zoom_fps, window_s, mode), trained once; None for "none" and "detector"."""
        if mode in ("none", "detector"):
            return None
        recipe = self.zoom.refiner.model_copy(update={"mode": mode})
        return self._kept(
            f"refiner-{mode}", REFINER_FILE, settings, seed, BoundaryRefiner,
            lambda: train_refiner(self.cache, replace(settings, refiner=mode), recipe, seed, log=lambda _: None),
        )  # fmt: skip

    def verifier(self, settings: ZoomSettings, seed: int) -> BoundaryVerifier | None:
        """The seed's verifier for (zoom_fps, window_s), trained once; None without a verify_weight."""
        if not settings.verify:
            return None
        return self._kept(
            "verifier", VERIFIER_FILE, settings, seed, BoundaryVerifier,
            lambda: train_verifier(self.cache, settings, self.zoom.verifier, seed, log=lambda _: None),
        )  # fmt: skip

    def _kept(self, name: str, file: str, settings: ZoomSettings, seed: int, kind, trained):
        """The network `name` of the seed at (zoom_fps, window_s): loaded if it was trained before, else `trained()`
        ((network, config)) and kept in `file` beside its config (the name a zoom checkpoint gives it, never a
        pickle)."""
        path = self.workdir / "runs" / f"seed{seed}" / f"{name}-{settings.zoom_fps:g}fps-{settings.window_s:g}s"
        weights = path / file
        config_file = weights.with_name(file.split(".")[0] + ".json")
        if weights.is_file():
            network = kind(RefinerConfig.from_dict(json.loads(config_file.read_text())))
            network.load_state_dict(load_file(weights))
            return network.eval()
        network, config = trained()
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in network.state_dict().items()}, weights)
        config_file.write_text(json.dumps(config.to_dict()))
        return network


def train_all(
    bench: Bench, seeds: list[int], log, rates=RATES, modes=("bdr", "regression", "presence"), poolings=POOLINGS
) -> None:
    """Every run the evaluation uses (or those of `rates`, `poolings` and `modes`, refiners and "presence" for the
    verifier, to share the training between processes): the uniform detectors (per frame at FRAME_RATES only),
    the refiners and the verifiers at every (zoom_fps, window_s)."""
    for seed in seeds:
        for fps, pooling in itertools.product(rates, poolings):
            if pooling == "clips" or fps in FRAME_RATES:
                started = time.perf_counter()
                bench.detector(fps, seed, pooling)
                log(f"seed {seed}: uniform {fps} fps, {pooling}, trained ({time.perf_counter() - started:.0f} s)")
        for zoom_fps, window_s in itertools.product(GRID["zoom_fps"], GRID["window_s"]):
            for mode in modes:
                started = time.perf_counter()
                if mode == "presence":
                    bench.verifier(ZoomSettings(zoom_fps, window_s, verify_weight=1.0), seed)
                else:
                    bench.refiner(ZoomSettings(zoom_fps, window_s), mode, seed)
                log(f"seed {seed}: {mode} {zoom_fps} fps {window_s} s ({time.perf_counter() - started:.0f} s)")


def pooling_suffix(pooling: str) -> str:
    """The suffix of a run's or features' directory name: none for the served clips."""
    return "" if pooling == "clips" else f"-{pooling}"


def size_suffix(size: int | None) -> str:
    """The suffix of a run's or features' directory name: none for the backbone's own frame size."""
    return "" if size is None else f"-{size}px"


def uniform_predictions(
    bench: Bench, fps: float, seed: int, split: str, pooling: str = "clips", size: int | None = None
) -> tuple[dict, BackboneCost]:
    """ActivityNet results of the uniform detector at `fps` (features pooled as `pooling`, of `size` px frames),
    and what its backbone ran."""
    localizer, results, frames = bench.detector(fps, seed, pooling, size), {}, 0
    for video_id in bench.videos(split):
        rows, times = bench.cache_at(size).at(video_id, fps)
        duration = bench.truth["database"][video_id]["duration"]
        features = pool_clips(torch.from_numpy(rows), *POOLINGS[pooling])
        _, found, _ = localizer.detect(features, float(times[0]), duration, fps)
        results[video_id] = as_results(localizer, found.segments.numpy(), found.scores.numpy(), found.labels.numpy())
        frames += len(times)
    return results, bench.cost(frames, size)


def point_settings(bench: Bench, point: dict, mode: str | None = None, weight: float | None = None) -> ZoomSettings:
    """The ZoomSettings of zoom point `point`, with another refiner `mode` or verify `weight` if given (the
    "detector" refiner always without a verifier)."""
    mode = point["refiner"] if mode is None else mode
    weight = point.get("verify_weight", 0.0) if weight is None else weight
    return ZoomSettings(
        point["zoom_fps"], point["window_s"], point["min_score"], bench.zoom.max_candidates, mode,
        0.0 if mode == "detector" else weight,
    )  # fmt: skip


def valid(point: dict) -> bool:
    """A GRID point the zoom can run: the "detector" refiner has no verifier, and reads coarse features of the
    backbone's own frame size only (engine/zoom.py, read_zoom)."""
    detector = point["refiner"] == "detector"
    return not (detector and (point["verify_weight"] > 0 or point.get("coarse_size") is not None))


def zoom_predictions(
    bench: Bench, point: dict, mode: str, seed: int, split: str, weight: float | None = None,
    fine: ZoomDetector | None = None,
) -> tuple[dict, BackboneCost]:  # fmt: skip
    """ActivityNet results of the zoom at `point` with refiner `mode` (and verify `weight` if given), and what its
    backbone ran. `fine`: the "detector" refiner's detector (default: the seed's uniform per-frame detector at the
    zoom rate). A point's "coarse_size" (px; absent or None: the backbone's own) is the coarse pass's frame size;
    the windows are always read at the backbone's own size."""
    settings = point_settings(bench, point, mode, weight)
    if settings.redetects and fine is None:
        fine = ZoomDetector(bench.detector(settings.zoom_fps, seed, "frames").head)
    zoom = ZoomedPass(settings, bench.refiner(settings, mode, seed), bench.verifier(settings, seed), fine)
    pooling, size = point.get("coarse_pooling", "clips"), point.get("coarse_size")
    localizer, results, coarse, zoomed = bench.detector(point["coarse_fps"], seed, pooling, size), {}, 0, 0
    for video_id in bench.videos(split):
        duration, end = bench.truth["database"][video_id]["duration"], bench.cache.end_s(video_id)

        def cached(fps, spans, video_id=video_id):
            rows, times = (bench.cache_at(size) if spans is None else bench.cache).at(video_id, fps, spans)
            return FrameFeatures(torch.from_numpy(rows), times, 0.0, 0.0, len(times))

        def detect(features, first_s, fps, duration=duration):
            _, found, head_ms = localizer.detect(features, first_s, duration, fps)
            return found.segments.numpy(), found.scores.numpy(), found.labels.numpy(), head_ms

        run = run_zoom(zoom, point["coarse_fps"], cached, detect, POOLINGS[pooling], lambda end=end: end,
                       reuse_coarse=size is None)  # fmt: skip
        results[video_id] = as_results(localizer, run.segments, run.scores, run.labels)
        coarse, zoomed = coarse + len(run.coarse.times), zoomed + len(run.zoomed.times)
    coarse_cost, zoom_cost = bench.cost(coarse, size), bench.cost(zoomed)
    return results, BackboneCost(coarse + zoomed, coarse_cost.flops + zoom_cost.flops)


def as_results(localizer: Localizer, segments, scores, labels) -> list[dict]:
    labels_of = localizer.config.labels
    return [
        {"segment": [float(s), float(e)], "label": labels_of[int(c)], "score": float(p)}
        for (s, e), p, c in zip(np.asarray(segments), np.asarray(scores), np.asarray(labels), strict=True)
    ]


def measure(bench: Bench, results: dict, cost: BackboneCost, split: str) -> dict:
    """mAP per tIoU and average, boundary errors (frames), backbone GFLOPs and frames per video minute."""
    predictions = {"results": results}
    metrics = evaluate(bench.truth, predictions, split, TIOUS)
    errors = boundary_errors(bench.truth, predictions, split)
    minutes = sum(bench.truth["database"][v]["duration"] for v in bench.videos(split)) / 60
    return {
        **{f"mAP@{t:.1f}": metrics["mAP"][f"{t:.2f}"] for t in TIOUS}, "average": metrics["average"],
        "error_std_frames": float(np.nanstd(errors) * 30), "errors": errors.tolist(),
        "gflops_per_min": cost.flops / 1e9 / minutes, "frames_per_min": cost.frames / minutes,
    }  # fmt: skip


def summarise(rows: list[dict], keys) -> dict:
    """mean and std over seeds of each key."""
    out = {}
    for key in keys:
        values = [row[key] for row in rows if row.get(key) is not None and np.isfinite(row[key])]
        out[key] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0) if values else None
    return out


def choose_points(bench: Bench, seeds: list[int], log, grid: dict = GRID) -> dict[str, dict]:
    """The zoom points (settings and refiner) validation chooses among `grid`'s (module docstring)."""
    dense = [measure(bench, *uniform_predictions(bench, REFERENCE, s, "validation"), "validation") for s in seeds]
    reference = statistics.fmean(row["gflops_per_min"] for row in dense)
    floor = statistics.fmean(row["average"] for row in dense) - AVERAGE_SLACK
    scored = []
    for values in itertools.product(*grid.values()):
        point = dict(zip(grid, values, strict=True))
        if not valid(point):
            continue
        rows = [
            measure(bench, *zoom_predictions(bench, point, point["refiner"], s, "validation"), "validation")
            for s in seeds
        ]
        mean = summarise(rows, ("mAP@0.7", "mAP@0.9", "average", "gflops_per_min"))
        scored.append((point, {k: v[0] for k, v in mean.items()}))
        log(f"validation {point}: " + ", ".join(f"{k} {v[0]:.2f}" for k, v in mean.items()))

    def ratio(metrics: dict) -> float:
        return metrics["gflops_per_min"] / reference

    def best(candidates: list, key: str) -> dict:  # keeping the average mAP if any candidate does
        kept = [c for c in candidates if c[1]["average"] >= floor] or candidates
        return max(kept, key=lambda c: (c[1][key], c[1]["average"]))[0]

    lite = [c for c in scored if ratio(c[1]) <= 0.4]
    fine = [c for c in scored if ratio(c[1]) <= 1.0 and c[0]["zoom_fps"] >= 16]
    within = [c for c in scored if ratio(c[1]) <= 1.0]
    chosen = {
        name: best(group, key)
        for name, group, key in (
            ("zoom-lite", lite, "mAP@0.7"), ("zoom-fine", fine, "mAP@0.9"), ("zoom-average", within, "average")
        )
        if group
    }  # fmt: skip
    return {"chosen": chosen, "grid": [{"point": p, "validation": m, "backbone_x": ratio(m)} for p, m in scored]}


def test_runs(bench: Bench, seeds: list[int], chosen: dict[str, dict], log) -> dict[str, list[dict]]:
    """Every variant on the test split, per seed, with R on ramped boundaries against uniform 8 fps."""
    widths = ground_truth_widths(bench.truth, "test")
    runs: dict[str, list[dict]] = {}
    for seed in seeds:
        seed_rows = {
            f"uniform {r} fps": measure(bench, *uniform_predictions(bench, r, seed, "test"), "test") for r in RATES
        }
        for r in FRAME_RATES:
            found = uniform_predictions(bench, r, seed, "test", "frames")
            seed_rows[f"uniform {r} fps{PER_FRAME}"] = measure(bench, *found, "test")
        for name, point in chosen.items():
            for mode in REFINERS:  # the chosen refiner, and the others at the same settings
                seed_rows[refiner_label(name, point, mode)] = measure(
                    bench, *zoom_predictions(bench, point, mode, seed, "test"), "test"
                )
            other = next(w for w in GRID["verify_weight"] if w != point["verify_weight"])  # the verifier's ablation
            if valid({**point, "verify_weight": other}):
                seed_rows[f"{name}, verify weight {other:g}"] = measure(
                    bench, *zoom_predictions(bench, point, point["refiner"], seed, "test", other), "test"
                )
            pooling = next(p for p in POOLINGS if p != point["coarse_pooling"])  # the coarse features' ablation
            seed_rows[f"{name}, coarse {pooling}"] = measure(
                bench, *zoom_predictions(bench, {**point, "coarse_pooling": pooling}, point["refiner"], seed, "test"),
                "test",
            )  # fmt: skip
        keep_seed(runs, seed, seed_rows, widths, log)
    return runs


def keep_seed(runs: dict, seed: int, seed_rows: dict[str, dict], widths: np.ndarray, log) -> None:
    """Adds one seed's test rows to `runs`, each with R on ramped boundaries against uniform 8 fps's errors."""
    reference = np.asarray(seed_rows[f"uniform {REFERENCE} fps"]["errors"])
    for label, row in seed_rows.items():
        errors = np.asarray(row.pop("errors"))
        row["R_ramped"] = variance_ratio(np.where(widths > 0, errors, np.nan), reference)[0]
        runs.setdefault(label, []).append({"seed": seed, **row})
    log(f"seed {seed}: " + "; ".join(f"{k} {v['mAP@0.7']:.1f}/{v['mAP@0.9']:.1f}" for k, v in seed_rows.items()))


@dataclass
class Served:
    """One variant served end to end: its checkpoint, and its cached-frame path's test predictions."""

    checkpoint: Path
    cached: Callable[[], dict]


def wall_times(
    bench: Bench, chosen: dict[str, dict], seed: int, served_dir: str = "served",
    uniform: tuple[tuple[float, str, int | None], ...] = ((REFERENCE, "clips", None),), modes: bool = False,
) -> dict[str, dict]:  # fmt: skip
    """CPU wall time per video minute of `Localizer.localize` (real decoding) on the test videos, and how many
    of its segments differ from the cached-frame path's (same run; they should not): the uniform detectors
    `uniform` ((fps, pooling, frame size)), each served at its own rate, and the chosen points, written as zoom
    checkpoints to <workdir>/<served_dir>/seed<k>-<name>; with `modes`, each point with the other refiners too
    ("bdr", "regression", "none"; as the test table names them)."""
    served = {}
    for fps, pooling, size in uniform:
        bench.detector(fps, seed, pooling, size)  # trained if it was not
        served[uniform_name(fps, pooling, size)] = Served(
            bench.run_dir(fps, seed, pooling, size),
            lambda fps=fps, pooling=pooling, size=size: uniform_predictions(bench, fps, seed, "test", pooling, size)[0],
        )  # fmt: skip
    for name, point in chosen.items():
        others = [m for m in ("bdr", "regression", "none") if m != point["refiner"]] if modes else []
        for mode in (point["refiner"], *others):
            slug = name if mode == point["refiner"] else f"{name}-{mode}"
            served[refiner_label(name, point, mode)] = Served(
                zoom_checkpoint(bench, point, mode, seed, bench.workdir / served_dir / f"seed{seed}-{slug}"),
                lambda point=point, mode=mode: zoom_predictions(bench, point, mode, seed, "test")[0],
            )  # fmt: skip
    videos, out, limits = bench.videos("test"), {}, WorkLimits(max_duration_s=3600, timeout_s=600)
    minutes = sum(bench.truth["database"][v]["duration"] for v in videos) / 60
    for name, variant in served.items():
        localizer = Localizer(EngineSettings(checkpoint=variant.checkpoint, device="cpu", decoder="decord"))
        started, answers, decode_ms = time.perf_counter(), {}, 0.0
        for video_id in videos:
            found = localizer.localize(VideoSource.from_path(bench.workdir / "videos" / f"{video_id}.mp4"), limits)
            answers[video_id], decode_ms = found.segments, decode_ms + found.timing_ms["decode"]
        elapsed = time.perf_counter() - started
        out[name] = {"seconds_per_video_minute": elapsed / minutes, "decode_seconds_per_video_minute": decode_ms / 1000 / minutes,
                     "differing_top5": differing(answers, variant.cached())}  # fmt: skip
    started = time.perf_counter()
    for video_id in videos:  # the limit of the decode stage: every frame decoded by ffmpeg, nothing else
        path = str(bench.workdir / "videos" / f"{video_id}.mp4")
        subprocess.run(["ffmpeg", "-v", "error", "-threads", "2", "-i", path, "-f", "null", "-"], check=True)
    out["ffmpeg -threads 2 -f null (every frame decoded)"] = {
        "decode_seconds_per_video_minute": (time.perf_counter() - started) / minutes
    }
    return out


def uniform_name(fps: float, pooling: str = "clips", size: int | None = None) -> str:
    """The test table's name of a uniform detector."""
    return f"uniform {fps:g} fps" + ("" if pooling == "clips" else SMALL_FRAMES if size else PER_FRAME)


def zoom_checkpoint(bench: Bench, point: dict, mode: str, seed: int, output: Path) -> Path:
    """Zoom point `point` with refiner `mode`, written as a zoom checkpoint to `output` (its earlier files gone)."""
    bench.detector(point["coarse_fps"], seed, point["coarse_pooling"], point.get("coarse_size"))
    settings = point_settings(bench, point, mode)
    refiner = bench.refiner(settings, mode, seed)
    detector = bench.run_dir(point["coarse_fps"], seed, point["coarse_pooling"], point.get("coarse_size"))
    fine = None
    if settings.redetects:
        bench.detector(settings.zoom_fps, seed, "frames")
        fine = bench.run_dir(settings.zoom_fps, seed, "frames")
    shutil.rmtree(output, ignore_errors=True)  # no other point's files
    return write_zoom_checkpoint(
        detector, output, settings, refiner, refiner.config if refiner is not None else None,
        bench.verifier(settings, seed), fine,
    )  # fmt: skip


def add_run_options(parser: argparse.ArgumentParser, output: Path) -> None:
    """The options both experiments take: where, which seeds, the page, the served-path timing, torch's threads,
    and a rerun of an earlier run (--choice-from, with --wall-again and --keep-test: `apply_run_options`)."""
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--output", type=Path, default=output)
    parser.add_argument("--no-wall", action="store_true", help="skip the served-path timing")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument(
        "--choice-from", type=Path,
        help="an earlier run's JSON: its points chosen on validation and its wall times are kept, the test split is "
        "measured again (after a change to what is measured)",
    )  # fmt: skip
    parser.add_argument("--wall-again", action="store_true", help="with --choice-from: the served path timed again")
    parser.add_argument("--keep-test", action="store_true", help="with --choice-from: its test results kept too")


def apply_run_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuses --wall-again and --keep-test without --choice-from; sets torch's threads (--threads)."""
    if (args.wall_again or args.keep_test) and not args.choice_from:
        parser.error("--wall-again and --keep-test go with --choice-from")
    if args.threads:
        torch.set_num_threads(args.threads)


def measured(
    bench: Bench, args: argparse.Namespace, command: str, choose: Callable[[], dict], tests: Callable, wall: Callable,
    log: Callable[[str], None],
) -> dict:  # fmt: skip
    """One run's result (the JSON beside the page): the points `choose()` picks on validation (or --choice-from's),
    `tests(bench, seeds, chosen, log)`, the test split's rows per seed (or --keep-test's), and `wall(chosen)`, the
    served path's times (or the earlier run's, unless --wall-again; none at all with --no-wall, which also leaves
    out an earlier run's: they timed another state of the code)."""
    earlier = json.loads(args.choice_from.read_text()) if args.choice_from else None
    choice = earlier["choice"] if earlier else choose()
    log(f"chosen on validation: {choice['chosen']}")
    return {
        "command": command, "date": time.strftime("%Y-%m-%d"), "machine": f"{torch.get_num_threads()} CPU threads",
        "seeds": earlier["seeds"] if args.keep_test else args.seeds, "choice": choice,
        "test": earlier["test"] if args.keep_test else tests(bench, args.seeds, choice["chosen"], log),
        "wall": {} if args.no_wall else earlier["wall"] if earlier and not args.wall_again else wall(choice["chosen"]),
    }  # fmt: skip


def differing(served: dict[str, list[dict]], cached: dict[str, list[dict]], tolerance_s: float = 0.05) -> int:
    """Of the five best segments of each video, how many differ (label, or a boundary by > tolerance) between
    the served path and the cached-frame path."""
    count = 0
    for video_id, segments in served.items():
        for a, b in zip(segments[:5], cached[video_id][:5], strict=False):
            same = a["label"] == b["label"] and abs(a["start_s"] - b["segment"][0]) <= tolerance_s
            count += not (same and abs(a["end_s"] - b["segment"][1]) <= tolerance_s)
    return count


COLUMNS = (
    *(f"mAP@{t:.1f}" for t in TIOUS),
    "average",
    "error_std_frames",
    "R_ramped",
    "gflops_per_min",
    "frames_per_min",
)


def page(
    result: dict, title: str = "The temporal zoom against uniform sampling, on raw videos",
    source: str = "experiments/zoom.py", curve_file: str = "zoom_curve.png",
) -> str:  # fmt: skip
    """docs/zoom.md (or another page of such a run, `title`, made by `source`) from the run's JSON."""
    runs, reference = result["test"], f"uniform {REFERENCE} fps"
    header = ["variant", *COLUMNS, "backbone x 8 fps"]
    lines = [
        f"# {title}", "",
        f"Generated by `{result['command']}` ({result['date']}, {result['machine']}). How it works and what is measured:",
        f"{source}. Test split, mean ± std over seeds " + ", ".join(map(str, result["seeds"])) + ".", "",
        "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
    ]  # fmt: skip
    base = statistics.fmean(r["gflops_per_min"] for r in runs[reference])
    for name, rows in runs.items():
        mean = summarise(rows, COLUMNS)
        cells = [f"{v[0]:.2f} ± {v[1]:.2f}" if v else "—" for v in mean.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean['gflops_per_min'][0] / base:.3f} |")
    lines += ["", "## Targets (paired per seed against uniform 8 fps, test split)", ""]
    lines += targets(result) + ["", "## Chosen on validation", ""]
    lines += [f"- {name}: {json.dumps(point)}" for name, point in result["choice"]["chosen"].items()]
    lines += ["", "| coarse fps | coarse features | zoom fps | window s | min score | refiner | verify weight | val mAP@0.7 | val mAP@0.9 | val avg | backbone x 8 fps |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in result["choice"]["grid"]:
        p, m = row["point"], row["validation"]
        lines.append(f"| {p['coarse_fps']} | {p['coarse_pooling']} | {p['zoom_fps']} | {p['window_s']} | {p['min_score']} | "
                     f"{p['refiner']} | {p['verify_weight']:g} | {m['mAP@0.7']:.2f} | {m['mAP@0.9']:.2f} | "
                     f"{m['average']:.2f} | {row['backbone_x']:.3f} |")  # fmt: skip
    lines += [
        "",
        "## Engine path in this process: CPU wall time per video minute (seed 0, `Localizer.localize`, decord)",
        "",
        "Not through HTTP: `python bench/zoom_request.py --zoom CHECKPOINT` times one request through `tzn serve` "
        "from a client process, against the dense default and ffmpeg's full decode, in one run.",
        "",
    ]
    lines += wall_lines(result["wall"], reference)
    lines += ["", f"![mAP against backbone GFLOPs]({curve_file})", ""]
    return "\n".join(lines) + "\n"


def wall_lines(walls: dict, reference: str) -> list[str]:
    lines = [
        "| variant | s per video minute | x uniform 8 fps | decode stage s per video minute (waiting for frames; the backbone overlaps it) | top-5 segments differing from the cached-frame path |",
        "|---|---|---|---|---|",
    ]
    for name, row in walls.items():
        if "seconds_per_video_minute" not in row:  # the decode limit
            lines.append(f"| {name} | | | {row['decode_seconds_per_video_minute']:.2f} | |")
            continue
        ratio = row["seconds_per_video_minute"] / walls[reference]["seconds_per_video_minute"]
        lines.append(
            f"| {name} | {row['seconds_per_video_minute']:.2f} | {ratio:.3f} | "
            f"{row['decode_seconds_per_video_minute']:.2f} | {row['differing_top5']} |"
        )
    return lines


def paired(runs: dict, name: str, key: str, reference: str) -> tuple[float, float, list[float]]:
    """name - reference per seed: mean, std, values."""
    ref = {r["seed"]: r[key] for r in runs[reference]}
    values = [r[key] - ref[r["seed"]] for r in runs[name]]
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, values


def mean_of(runs: dict, name: str, key: str) -> float:
    return statistics.fmean(r[key] for r in runs[name] if r[key] is not None and np.isfinite(r[key]))


def variant(result: dict, name: str, mode: str) -> str:
    """The test run's label of zoom point `name` with refiner `mode`."""
    return refiner_label(name, result["choice"]["chosen"][name], mode)


def refiner_label(name: str, point: dict, mode: str) -> str:
    """The test table's (and the served timings') name of zoom point `name` (`point`) with refiner `mode`."""
    return name if mode == point["refiner"] else f"{name}, refiner {mode}"


def backbone_ratio(runs: dict, name: str) -> float:
    return mean_of(runs, name, "gflops_per_min") / mean_of(runs, f"uniform {REFERENCE} fps", "gflops_per_min")


def uniform_curves(runs: dict) -> dict[str, list[str]]:
    """The uniform variants' names, one list per kind of features: clips (RATES), per frame (FRAME_RATES), and
    per frame of 64 px frames where there are any (experiments/zoom_space.py)."""
    uniform = [n for n in runs if n.startswith("uniform")]
    curves = {
        "clips": [n for n in uniform if not n.endswith((PER_FRAME, SMALL_FRAMES))],
        "per frame": [n for n in uniform if n.endswith(PER_FRAME)],
        "per frame, 64 px": [n for n in uniform if n.endswith(SMALL_FRAMES)],
    }
    return {kind: names for kind, names in curves.items() if names}


def above_uniform(runs: dict, name: str, key: str) -> float | None:
    """How far `name` lies above the uniform rates' curves (mean over seeds, linear in log GFLOPs) at its cost: the
    smallest margin over the curves whose measured rates span its cost (None when none does: a curve is never
    extended past its cheapest or dearest rate)."""
    margins, cost = [], mean_of(runs, name, "gflops_per_min")
    for names in uniform_curves(runs).values():
        uniform = sorted((mean_of(runs, n, "gflops_per_min"), mean_of(runs, n, key)) for n in names)
        if not uniform[0][0] <= cost <= uniform[-1][0]:
            continue
        at = np.interp(np.log(cost), np.log([u[0] for u in uniform]), [u[1] for u in uniform])
        margins.append(mean_of(runs, name, key) - float(at))
    return min(margins) if margins else None


def fmt(m: tuple) -> str:
    return f"{m[0]:+.2f} ± {m[1]:.2f} (" + ", ".join(f"{v:+.1f}" for v in m[2]) + ")"


def targets(result: dict) -> list[str]:
    """The issue's targets with their measured values, met or not."""
    runs, reference, chosen = result["test"], f"uniform {REFERENCE} fps", result["choice"]["chosen"]
    lines, yes = ["| target | variant | measured | met |", "|---|---|---|---|"], {True: "yes", False: "no"}
    if "zoom-lite" in chosen:
        d07, davg = paired(runs, "zoom-lite", "mAP@0.7", reference), paired(runs, "zoom-lite", "average", reference)
        met = backbone_ratio(runs, "zoom-lite") <= 0.4 and d07[0] >= -0.5 and davg[0] >= -0.5
        lines.append(f"| 1: <= 0.4x backbone, mAP@0.7 and average >= -0.5 points | zoom-lite | {backbone_ratio(runs, 'zoom-lite'):.3f}x; "
                     f"mAP@0.7 {fmt(d07)}; average {fmt(davg)} | {yes[met]} |")  # fmt: skip
    if "zoom-fine" in chosen:
        d09 = paired(runs, "zoom-fine", "mAP@0.9", reference)
        std = mean_of(runs, "zoom-fine", "error_std_frames") / mean_of(runs, reference, "error_std_frames")
        met = backbone_ratio(runs, "zoom-fine") <= 1.0 and d09[0] >= 3 and std <= 0.6
        lines.append(f"| 2: <= 1.0x backbone at >= 16 fps, mAP@0.9 >= +3, error std <= 0.6x | zoom-fine | "
                     f"{backbone_ratio(runs, 'zoom-fine'):.3f}x; mAP@0.9 {fmt(d09)}; std {std:.3f}x | {yes[met]} |")  # fmt: skip
        bdr, regression = variant(result, "zoom-fine", "bdr"), variant(result, "zoom-fine", "regression")
        gain, r_ramped = paired(runs, bdr, "mAP@0.9", regression), summarise(runs[bdr], ("R_ramped",))["R_ramped"]
        met = gain[0] > 0 and r_ramped is not None and r_ramped[0] <= 0.5
        measured = f"mAP@0.9 BDR - regression {fmt(gain)}; R ramped (BDR) " + (
            f"{r_ramped[0]:.2f} ± {r_ramped[1]:.2f}" if r_ramped else "n/a"
        )
        lines.append(
            f"| 4: BDR refiner beats the regression at mAP@0.9, R ramped <= 0.5 | zoom-fine | {measured} | {yes[met]} |"
        )
    if "zoom-average" in chosen:
        d07, davg = (
            paired(runs, "zoom-average", "mAP@0.7", reference),
            paired(runs, "zoom-average", "average", reference),
        )
        met = backbone_ratio(runs, "zoom-average") <= 1.0 and d07[0] > 0 and davg[0] > 0
        lines.append(f"| (not an issue target) <= 1.0x backbone, mAP@0.7 and average above uniform 8 fps | zoom-average | "
                     f"{backbone_ratio(runs, 'zoom-average'):.3f}x; mAP@0.7 {fmt(d07)}; average {fmt(davg)} | {yes[met]} |")  # fmt: skip
    for name in chosen:
        gaps = {key: above_uniform(runs, name, key) for key in ("mAP@0.7", "mAP@0.9")}
        shown = "; ".join(f"{k} {v:+.2f} points" if v is not None else f"{k} n/a (no curve spans its cost)"
                          for k, v in gaps.items())  # fmt: skip
        met = all(v is not None and v > 0 for v in gaps.values())
        lines.append(f"| 3: above the uniform-rate curves (each curve that spans its cost; the smallest margin) | {name} | "
                     f"{shown} | {yes[met]} |")  # fmt: skip
    return lines


def curve(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["test"]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, key in zip(axes, ("mAP@0.7", "mAP@0.9"), strict=True):
        for (kind, names), colour in zip(
            uniform_curves(runs).items(), ("grey", "tab:brown", "tab:olive"), strict=False
        ):
            points = sorted(
                (statistics.fmean(r["gflops_per_min"] for r in runs[n]), statistics.fmean(r[key] for r in runs[n]))
                for n in names
            )
            axis.plot(*zip(*points, strict=True), "o-", color=colour, label=f"uniform, {kind}")
        for name in (n for n in runs if n.startswith("zoom") and "," not in n):  # the chosen points, not ablations
            x = statistics.fmean(r["gflops_per_min"] for r in runs[name])
            axis.plot([x], [statistics.fmean(r[key] for r in runs[name])], "*", markersize=12, label=name)
        axis.set_xscale("log")
        axis.set(xlabel="backbone GFLOPs per video minute", ylabel=f"test {key}", title=key)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(parser, ROOT / "docs" / "zoom.md")
    parser.add_argument("--epochs", type=int, help="detector epochs (default: configs/zoom.yaml's)")
    parser.add_argument(
        "--train-only",
        action="store_true",
        help="train the seeds' runs, evaluate nothing (to train seeds in parallel processes)",
    )
    parser.add_argument(
        "--rates", type=float, nargs="*", default=RATES, help="with --train-only: these rates' detectors"
    )
    parser.add_argument(
        "--modes", nargs="*", default=["bdr", "regression", "presence"],
        help="with --train-only: these refiners, and 'presence' for the verifiers",
    )  # fmt: skip
    parser.add_argument("--poolings", nargs="*", default=list(POOLINGS), help="with --train-only: these detectors")
    args = parser.parse_args(argv)
    apply_run_options(parser, args)
    bench, log = Bench(args.workdir, args.epochs), lambda line: print(line, flush=True)
    if args.train_only:
        rates = [int(r) if r == int(r) else r for r in args.rates]
        return train_all(bench, args.seeds, log, rates, args.modes, args.poolings)
    uniform = tuple((r, "clips", None) for r in RATES) + tuple((r, "frames", None) for r in FRAME_RATES)
    result = measured(
        bench, args, "python -m experiments.zoom " + " ".join(argv if argv is not None else sys.argv[1:]),
        lambda: choose_points(bench, args.seeds, log), test_runs,
        lambda chosen: wall_times(bench, chosen, args.seeds[0], uniform=uniform, modes=True), log,
    )  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".json").write_text(json.dumps(result, indent=1))
    curve(result, args.output.with_name(args.output.stem + "_curve.png"))
    args.output.write_text(page(result))
    print(page(result))


if __name__ == "__main__":
    main()
