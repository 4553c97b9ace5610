"""Training the temporal zoom from videos: a coarse detector at a low frame rate and a boundary refiner at a high
one, with one command and one config (configs/zoom.yaml: the detector's sections as `tzn train` reads them, plus a
`zoom` section).

    python -m tools.zoom_frames --videos VIDEOS --output FRAMES          # per-frame features, once
    python -m tools.train_zoom --config configs/zoom.yaml --videos VIDEOS --frames FRAMES --output RUN
    # a coarse pass on smaller frames (data.frame_size: 64 in the config; the windows stay at 112 px):
    python -m tools.zoom_frames --videos VIDEOS --output FRAMES64 --frame-size 64
    python -m tools.train_zoom --config CONFIG --videos VIDEOS --frames FRAMES --coarse-frames FRAMES64 --output RUN

Features come from per-frame backbone features of every frame (FRAMES, written through the engine's decoding and
backbone): features at any rate r are the rows the sampling rule picks at r's ticks (engine/video/sampling.py),
pooled into clips as the engine pools them, so training sees what a request at that rate computes.

1. `rate_features`: ActionFormer-format clip features at the coarse rate (<id>.npy, (T, C)), `data.num_frames`
   frames every `data.feat_stride` (1 and 1: one feature per frame, twice the time resolution of the served 4
   every 2 for the same backbone; the engine pools a request's frames as the checkpoint says);
2. the coarse detector: `training.train.train` on them (data.default_fps = the coarse rate);
3. the refiner (model/refiner.py): windows of `2 * window_s` at the zoom rate around the training videos' true
   boundaries, moved by a random offset of up to `jitter * window_s` (the coarse pass's error, as seen by the
   refiner); trained on the fields (mode "bdr") or on the offset alone ("regression"); its input standardized by
   the training frames' channel statistics, with frame differences beside it (model/refiner.py);
4. with `zoom.verify_weight` > 0, the verifier (model/refiner.py, BoundaryVerifier): the same windows, half of them around true
   boundaries and half elsewhere (anywhere in the video, around boundaries of the other kind, or beside a true
   boundary but too far for the window to hold it), each labelled by whether a true boundary of its kind lies in it;
5. RUN is a zoom checkpoint: the detector's config.json and weights, zoom.json, refiner.safetensors (and
   verifier.safetensors).

With `zoom.refiner.mode: detector` there is no refiner network: step 3 trains a second detector, on one feature
per frame at the zoom rate (the detector's other sections as they are), kept in RUN/fine/ (engine/zoom.py,
"detector"). It trains on each training video's real frames and on `zoom.simulated.copies` grids as a request
gives it them: the windows' frames around a coarse pass simulated from the ground truth, the coarse frames, and
rows interpolated between them (`train_zoom_detector`, `simulated_grid`; RUN/features/<zoom_fps>fps-zoomed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import save_file

from engine.video.sampling import frames_on_screen, sample_ticks
from engine.zoom import (
    FINE_DIR,
    REFINER_FILE,
    VERIFIER_FILE,
    ZOOM_FILE,
    ZoomSettings,
    hybrid_rows,
    pool_clips,
    window_ticks,
    zoom_document,
)  # fmt: skip
from model.backbones import smaller_frames
from model.refiner import BoundaryRefiner, BoundaryVerifier, RefinerConfig
from training.config import TrainConfig
from training.train import train


class RefinerTraining(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: str = "bdr"
    width: int = 64
    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3
    jitter: float = Field(0.8, gt=0, le=1, description="largest offset of a window from its boundary, x window_s")
    standardize: bool = Field(True, description="standardize the input by the training frames' channel statistics")
    differences: bool = Field(True, description="each frame's difference from the one before it beside its features")


class SimulatedZoom(BaseModel):
    """What the zoom rate's detector (refiner mode "detector") trains on besides real frames: the grids a request
    gives it, from a coarse pass simulated on the training videos (`simulated_grid`). The defaults are the
    bundled zoom-average's coarse pass on the zoom benchmark's validation split (experiments/zoom_hybrid.py)."""

    model_config = ConfigDict(extra="forbid")

    copies: int = Field(2, ge=0, description="simulated grids per training video beside its real frames; 0: none")
    miss: float = Field(0.05, ge=0, le=1, description="share of actions the simulated coarse pass misses")
    jitter_s: float = Field(0.15, gt=0, description="median distance of a simulated boundary from the true one")
    false_rate: float = Field(1.0, ge=0, description="simulated false candidates per action")


class ZoomSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    coarse_fps: float = Field(2.0, gt=0)
    zoom_fps: float = Field(16.0, gt=0)
    window_s: float = Field(1.0, gt=0)
    min_score: float = Field(0.05, ge=0)
    max_candidates: int = Field(16, ge=0)
    verify_weight: float = Field(0.0, ge=0, description="> 0: train a verifier and rescore with it (engine/zoom.py)")
    refiner: RefinerTraining = RefinerTraining()
    # the verifier sees the raw features: standardized with differences, it learnt the training videos by heart
    # (validation windows of zoom-fine's 16 fps, 0.5 s: 72% right against 86% raw)
    verifier: RefinerTraining = RefinerTraining(mode="presence", standardize=False, differences=False)
    simulated: SimulatedZoom = SimulatedZoom()

    def settings(self, refiner: str | None = None) -> ZoomSettings:
        return ZoomSettings(
            self.zoom_fps, self.window_s, self.min_score, self.max_candidates, refiner or self.refiner.mode,
            self.verify_weight,
        )  # fmt: skip


def load_zoom_config(path: Path) -> tuple[TrainConfig, ZoomSection]:
    """configs/zoom.yaml -> (the detector's TrainConfig, the zoom section)."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    zoom = ZoomSection.model_validate(raw.pop("zoom", {}))
    return TrainConfig.model_validate(raw), zoom


class FrameCache:
    """Per-frame features of every frame of the benchmark's videos (tools/zoom_frames.py), read once."""

    def __init__(self, frames: Path, annotations: dict):
        self.frames, self.database = Path(frames), annotations["database"]
        self._rows: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._grids: dict[tuple[str, float], tuple[np.ndarray, np.ndarray]] = {}

    def rows(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        if video_id not in self._rows:
            self._rows[video_id] = (
                np.load(self.frames / f"{video_id}.npy"),
                np.load(self.frames / f"{video_id}.times.npy"),
            )
        return self._rows[video_id]

    def statistics(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std (C,) over every frame of the videos of `split`, one video in memory at a time."""
        count, total, squares = 0, 0.0, 0.0
        for video_id, info in self.database.items():
            if info["subset"].lower() == split:
                rows = self.rows(video_id)[0].astype(np.float64)
                count, total, squares = count + len(rows), total + rows.sum(0), squares + (rows**2).sum(0)
        mean = total / count
        std = np.sqrt(np.maximum(squares - count * mean**2, 0.0) / (count - 1))
        return torch.from_numpy(mean).float(), torch.from_numpy(std).float()

    def end_s(self, video_id: str) -> float:
        times = self.rows(video_id)[1]
        return float(times[0] + self.database[video_id]["duration"])

    def grid(self, video_id: str, fps: float) -> tuple[np.ndarray, np.ndarray]:
        """(ticks (K,) s, the row on screen at each (K,)) of the whole video at `fps`, computed once."""
        if (video_id, fps) not in self._grids:
            times = self.rows(video_id)[1]
            ticks = sample_ticks(float(times[0]), self.end_s(video_id), fps)
            self._grids[video_id, fps] = ticks, frames_on_screen(times, ticks)
        return self._grids[video_id, fps]

    def at(self, video_id: str, fps: float, spans=None) -> tuple[np.ndarray, np.ndarray]:
        """(rows (N, C), times (N,)): the frames a decode at `fps` (inside `spans`) gives."""
        rows, times = self.rows(video_id)
        if spans is None:
            picked = self.grid(video_id, fps)[1]
        else:
            picked = frames_on_screen(times, sample_ticks(float(times[0]), self.end_s(video_id), fps, spans))
        return rows[picked], times[picked]


def rate_features(cache: FrameCache, fps: float, output: Path, frames_per_clip: int = 4, clip_stride: int = 2) -> Path:
    """ActionFormer-format clip features of every video at `fps`, in `output` (kept when already complete)."""
    output.mkdir(parents=True, exist_ok=True)
    for video_id in cache.database:
        target = output / f"{video_id}.npy"
        if not target.is_file():
            rows, _ = cache.at(video_id, fps)
            clips = pool_clips(torch.from_numpy(rows), frames_per_clip, clip_stride)
            partial = output / f"{video_id}.{os.getpid()}.partial.npy"  # several trainers may share `output`
            np.save(partial, clips.T.numpy().astype(np.float32))
            os.replace(partial, target)
    return output


def detector_config(base: TrainConfig, annotations: Path, features: Path, fps: float, seed: int) -> TrainConfig:
    """The detector's config at rate `fps`: training crops hold at most `max_seq_len` clips at any rate."""
    data = base.data.model_copy(update={"annotations": annotations, "features_dir": features, "default_fps": fps})
    return base.model_copy(update={"data": data, "seed": seed})


def boundary_windows(cache: FrameCache, split: str, settings: ZoomSettings) -> list[tuple[str, float, int]]:
    """(video, true boundary s, kind) of every ground-truth start (0) and end (1) in `split`."""
    found = []
    for video_id, info in cache.database.items():
        if info["subset"].lower() == split:
            for annotation in info["annotations"]:
                found += [
                    (video_id, float(annotation["segment"][0]), 0),
                    (video_id, float(annotation["segment"][1]), 1),
                ]
    return found


def sample_batch(
    cache: FrameCache, boundaries, settings: ZoomSettings, jitter: float, rng: np.random.Generator, batch: int = 64
):
    """A batch of refiner windows: (windows (B, C, W), kinds (B,), tick times (B, W), true boundaries (B,),
    window centres (B,)), laid out on the zoom grid as engine/zoom.py lays them at inference."""
    fps, width = settings.zoom_fps, settings.window_frames
    windows, kinds, times, truths, centres = [], [], [], [], []
    for index in rng.integers(len(boundaries), size=batch):
        video_id, truth, kind = boundaries[index]
        rows, frame_times = cache.rows(video_id)
        first, (grid, on_screen) = float(frame_times[0]), cache.grid(video_id, fps)
        centre = truth + rng.uniform(-jitter, jitter) * settings.window_s
        ticks, window_centre = window_ticks(np.array([centre]), first, fps, width, len(grid) - 1)
        windows.append(rows[on_screen[ticks[0]]].T)
        kinds.append(kind)
        times.append(first + ticks[0] / fps)
        truths.append(truth)
        centres.append(window_centre[0])
    as_tensor = lambda values, dtype: torch.as_tensor(np.asarray(values), dtype=dtype)  # noqa: E731
    return (as_tensor(windows, torch.float32), as_tensor(kinds, torch.long), as_tensor(times, torch.float64),
            as_tensor(truths, torch.float64), as_tensor(centres, torch.float64))  # fmt: skip


def verifier_batch(
    cache: FrameCache, boundaries, settings: ZoomSettings, jitter: float, rng: np.random.Generator, batch: int = 64
):
    """A batch of verifier windows: (windows (B, C, W), kinds (B,), labels (B,) 1.0 where a true boundary of the
    window's kind lies between its first and last tick). Half are centred as sample_batch centres them (around a true
    boundary); the others anywhere in the video, around a true boundary of the other kind, or 1.2 to 3 window_s
    beside a true boundary of their own kind (all labelled by what their window holds)."""
    fps, width = settings.zoom_fps, settings.window_frames
    of = {}  # (video, kind) -> its true boundaries (s)
    for video_id, truth, kind in boundaries:
        of.setdefault((video_id, kind), []).append(truth)
    windows, kinds, labels = [], [], []
    for index in rng.integers(len(boundaries), size=batch):
        video_id, truth, kind = boundaries[index]
        rows, frame_times = cache.rows(video_id)
        first, (grid, on_screen) = float(frame_times[0]), cache.grid(video_id, fps)
        pick = rng.integers(6)  # 0-2: around a true boundary; 3, 4, 5: the three kinds of elsewhere
        if pick < 3:
            centre = truth + rng.uniform(-jitter, jitter) * settings.window_s
        elif pick == 3:
            centre = rng.uniform(grid[0], grid[-1])
        elif pick == 4:
            others = of[video_id, 1 - kind]
            centre = others[rng.integers(len(others))] + rng.uniform(-jitter, jitter) * settings.window_s
        else:
            centre = truth + rng.choice([-1, 1]) * rng.uniform(1.2, 3.0) * settings.window_s
        ticks, _ = window_ticks(np.array([centre]), first, fps, width, len(grid) - 1)
        low, high = first + ticks[0, 0] / fps, first + ticks[0, -1] / fps
        windows.append(rows[on_screen[ticks[0]]].T)
        kinds.append(kind)
        labels.append(float(any(low <= b <= high for b in of[video_id, kind])))
    return (torch.as_tensor(np.asarray(windows), dtype=torch.float32), torch.as_tensor(kinds, dtype=torch.long),
            torch.as_tensor(labels, dtype=torch.float32))  # fmt: skip


def _network(cache: FrameCache, settings: ZoomSettings, recipe: RefinerTraining, seed: int, mode: str, kind):
    """A refiner or verifier (`kind`) of `mode` seeded by `seed`, its input statistics set; its config, and the
    training split's boundaries."""
    torch.manual_seed(seed)
    boundaries = boundary_windows(cache, "training", settings)
    input_dim = cache.rows(boundaries[0][0])[0].shape[1]
    config = RefinerConfig(input_dim=input_dim, width=recipe.width, mode=mode, clip_s=settings.window_s,
                           standardize=recipe.standardize, differences=recipe.differences)  # fmt: skip
    network = kind(config)
    if recipe.standardize:
        network.set_input_statistics(*cache.statistics("training"))
    return network, config, boundaries


def _optimise(network, recipe: RefinerTraining, batch_loss, log, what: str) -> None:
    """recipe.steps AdamW steps with a one-cycle schedule on `batch_loss()` (a fresh batch's loss each step)."""
    optimizer = torch.optim.AdamW(network.parameters(), lr=recipe.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe.lr, total_steps=recipe.steps)
    for step in range(recipe.steps):
        loss = batch_loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if (step + 1) % 500 == 0:
            log(f"{what} step {step + 1}/{recipe.steps}: {loss.item():.4f}")


def train_verifier(
    cache: FrameCache, settings: ZoomSettings, recipe: RefinerTraining, seed: int, log=print
) -> tuple[BoundaryVerifier, RefinerConfig]:  # fmt: skip
    """The verifier (module docstring, step 4), trained on the training split's videos."""
    rng = np.random.default_rng([seed, 17])
    network, config, boundaries = _network(cache, settings, recipe, seed, "presence", BoundaryVerifier)

    def batch_loss():
        windows, kinds, labels = verifier_batch(cache, boundaries, settings, recipe.jitter, rng, recipe.batch_size)
        return torch.nn.functional.binary_cross_entropy_with_logits(network(windows, kinds), labels)

    _optimise(network, recipe, batch_loss, log, "verifier (BCE)")
    return network.eval(), config


def train_refiner(
    cache: FrameCache, settings: ZoomSettings, recipe: RefinerTraining, seed: int, log=print
) -> tuple[BoundaryRefiner, RefinerConfig]:  # fmt: skip
    """The refiner of `recipe.mode`, trained on the training split's boundaries."""
    rng = np.random.default_rng([seed, 16])
    network, config, boundaries = _network(cache, settings, recipe, seed, recipe.mode, BoundaryRefiner)

    def batch_loss():
        windows, kinds, times, truths, centres = sample_batch(
            cache, boundaries, settings, recipe.jitter, rng, recipe.batch_size
        )
        fields, offsets = network(windows, kinds)
        if recipe.mode == "bdr":
            target = (times - truths[:, None]).clamp(-config.clip_s, config.clip_s).float()
            return (fields - target).abs().mean()
        return (offsets - (truths - centres).float()).abs().mean()

    _optimise(network, recipe, batch_loss, log, f"refiner {recipe.mode} (L1, s)")
    return network.eval(), config


def write_zoom_checkpoint(
    detector: Path, output: Path, settings: ZoomSettings, refiner, config: RefinerConfig | None, verifier=None,
    fine: Path | None = None,
) -> Path:  # fmt: skip
    """A zoom checkpoint in `output`: the detector's files, zoom.json, (for "bdr" and "regression")
    refiner.safetensors, (with settings.verify) verifier.safetensors and (for "detector") the zoom rate's detector
    `fine` in fine/."""
    if settings.verify != (verifier is not None):
        raise ValueError("a verify_weight needs a verifier, and a verifier a verify_weight")
    if settings.redetects != (fine is not None):
        raise ValueError("the 'detector' refiner, and only it, needs the zoom rate's detector")
    output.mkdir(parents=True, exist_ok=True)
    for source, target in ((detector, output), (fine, output / FINE_DIR)):
        if source is not None:
            target.mkdir(exist_ok=True)
            for name in ("config.json", "model.safetensors"):
                shutil.copyfile(source / name, target / name)
    for network, name in ((refiner, REFINER_FILE), (verifier, VERIFIER_FILE)):
        if network is not None:
            save_file({k: v.contiguous() for k, v in network.state_dict().items()}, output / name)
    document = zoom_document(settings, config, verifier.config if verifier is not None else None)
    (output / ZOOM_FILE).write_text(json.dumps(document, indent=1) + "\n")
    return output


def simulated_grid(
    cache: FrameCache, video_id: str, coarse_fps: float, zoom_fps: float, window_s: float, rng: np.random.Generator,
    miss: float, jitter_s: float, false_rate: float,
) -> torch.Tensor:  # fmt: skip
    """(K, C): the zoom rate's tick grid of `video_id` as a zoomed request gives it to the "detector" refiner
    (engine/zoom.py, `hybrid_rows`), for a coarse pass simulated from the ground truth: each action is missed with
    probability `miss`; a kept action's start and end move by independent Laplace offsets of median `jitter_s`;
    `false_rate` false candidates per action have both boundaries anywhere in the video. Windows of `window_s`
    around these boundaries and the coarse frames hold real rows, the rest is interpolated between them. (A coarse
    detector's own candidates on the videos it was trained on would be too good to simulate a request: zoom-lite's,
    on the zoom benchmark, are 0.015 s from the true boundaries (median) on its training split, 0.31 s on
    validation.)"""
    info = cache.database[video_id]
    zoom_rows, _ = cache.at(video_id, zoom_fps)
    coarse_rows, _ = cache.at(video_id, coarse_fps)
    truth = np.array([a["segment"] for a in info["annotations"]], dtype=float).reshape(-1, 2)
    kept = truth[rng.random(len(truth)) >= miss]
    centres = (kept + rng.laplace(0.0, jitter_s / np.log(2), kept.shape)).ravel()
    false = rng.poisson(false_rate * max(len(truth), 1))
    centres = np.concatenate([centres, rng.uniform(0.0, info["duration"], 2 * false)])
    needed = np.empty(0, dtype=np.int64)
    if len(centres):
        first = float(cache.rows(video_id)[1][0])
        width = max(2, round(2 * window_s * zoom_fps))
        needed = np.unique(window_ticks(centres, first, zoom_fps, width, len(zoom_rows) - 1)[0])
    coarse_ticks = np.arange(len(coarse_rows)) * (zoom_fps / coarse_fps)
    known = torch.cat([torch.from_numpy(zoom_rows[needed]), torch.from_numpy(coarse_rows)])
    return hybrid_rows(np.concatenate([needed, coarse_ticks]), known, len(zoom_rows))


def train_zoom_detector(
    base: TrainConfig, cache: FrameCache, annotations: dict, coarse_fps: float, settings: ZoomSettings,
    simulated: SimulatedZoom, features: Path, run: Path, seed: int, log=print, progress: bool = True,
) -> Path:  # fmt: skip
    """The "detector" refiner's detector, trained in `run` on one feature per frame at the zoom rate: every
    training video's real frames and `simulated.copies` simulated grids of it (`simulated_grid`, each its own
    draw of a generator seeded with `seed`), written to `features` with their annotations (a copy is
    `<video>~<n>`). Validation videos keep their real frames (the training log's mAP)."""
    features.mkdir(parents=True, exist_ok=True)
    rng, database = np.random.default_rng(seed), {}
    noise = simulated.model_dump(exclude={"copies"})
    for video_id, info in cache.database.items():
        subset = str(info["subset"]).lower()
        if subset not in (base.data.train_split.lower(), (base.data.val_split or "").lower()):
            continue
        for copy in range(1 + simulated.copies if subset == base.data.train_split.lower() else 1):
            name = video_id if copy == 0 else f"{video_id}~{copy}"
            rows = torch.from_numpy(cache.at(video_id, settings.zoom_fps)[0]) if copy == 0 else simulated_grid(
                cache, video_id, coarse_fps, settings.zoom_fps, settings.window_s, rng, **noise)  # fmt: skip
            np.save(features / f"{name}.npy", rows.numpy().astype(np.float32))  # (T, C): one row per tick
            database[name] = info
    written = features / "annotations.json"
    written.write_text(json.dumps({**annotations, "database": database}))
    data = base.data.model_copy(update={"num_frames": 1, "feat_stride": 1})
    config = detector_config(base.model_copy(update={"data": data}), written, features, settings.zoom_fps, seed)
    return train(config, run, progress=progress, log=log)


def train_detector(
    base: TrainConfig, cache: FrameCache, annotations: Path, fps: float, cut: tuple[int, int], features: Path,
    run: Path, seed: int, log=print, progress: bool = True,
) -> Path:  # fmt: skip
    """A detector on `fps` features cut `cut` (frames per clip, stride), written to (or kept in) `features`,
    trained in `run`."""
    rate_features(cache, fps, features, *cut)
    data = base.data.model_copy(update={"num_frames": cut[0], "feat_stride": cut[1]})
    config = detector_config(base.model_copy(update={"data": data}), annotations, features, fps, seed)
    return train(config, run, progress=progress, log=log)


def train_zoom(
    config_path: Path, videos: Path, frames: Path, output: Path, seed: int | None = None, log=print,
    coarse_frames: Path | None = None,
) -> Path:  # fmt: skip
    """The whole recipe (module docstring): a zoom checkpoint in `output`. With `data.frame_size` in the config,
    the coarse detector trains on `coarse_frames` (per-frame features of frames of that size)."""
    base, zoom = load_zoom_config(config_path)
    seed = base.seed if seed is None else seed
    annotations = videos / "annotations.json"
    truth = json.loads(annotations.read_text())
    cache = FrameCache(frames, truth)
    settings = zoom.settings()
    coarse_cache = cache
    if smaller_frames(base.data.backbone, base.data.frame_size):
        if coarse_frames is None:
            raise ValueError(f"data.frame_size {base.data.frame_size}: give --coarse-frames, the per-frame features "
                             f"of {base.data.frame_size} px frames (tools/zoom_frames.py --frame-size)")  # fmt: skip
        if settings.redetects:
            raise ValueError("the 'detector' refiner reads both passes on one grid: no data.frame_size with it")
        coarse_cache = FrameCache(coarse_frames, truth)
    elif coarse_frames is not None:  # else its detector would train on FRAMES, and nothing would say so
        raise ValueError(f"--coarse-frames {coarse_frames}: set data.frame_size in {config_path} to the size of "
                         "those frames (the coarse detector reads them only then)")  # fmt: skip
    cut = (base.data.num_frames, base.data.feat_stride)  # as configs/zoom.yaml's data section says (1, 1: per frame)

    def trained(fps: float, cut: tuple[int, int], run: Path) -> Path:  # features kept per rate, cut and frame size
        size = f"-{base.data.frame_size}px" if base.data.frame_size is not None else ""
        features = output / "features" / f"{fps:g}fps-{cut[0]}x{cut[1]}{size}"
        return train_detector(base, coarse_cache, annotations, fps, cut, features, run, seed, log)

    detector = trained(zoom.coarse_fps, cut, output / "detector")
    if settings.redetects:
        fine = train_zoom_detector(
            base, cache, truth, zoom.coarse_fps, settings, zoom.simulated,
            output / "features" / f"{zoom.zoom_fps:g}fps-zoomed", output / "fine-run" / "detector", seed, log,
        )  # fmt: skip
        return write_zoom_checkpoint(detector, output, settings, None, None, fine=fine)
    refiner, refiner_config = train_refiner(cache, settings, zoom.refiner, seed, log)
    verifier = train_verifier(cache, settings, zoom.verifier, seed, log)[0] if settings.verify else None
    return write_zoom_checkpoint(detector, output, settings, refiner, refiner_config, verifier)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--videos", type=Path, required=True, help="the videos' directory with annotations.json")
    parser.add_argument("--frames", type=Path, required=True, help="per-frame features (tools/zoom_frames.py)")
    parser.add_argument(
        "--coarse-frames", type=Path,
        help="with data.frame_size in the config: per-frame features of frames of that size, for the coarse detector",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    run = train_zoom(args.config, args.videos, args.frames, args.output, args.seed, coarse_frames=args.coarse_frames)
    print(f"zoom checkpoint written to {run}")


if __name__ == "__main__":
    main()
