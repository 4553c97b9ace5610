"""Temporal zoom: look at the whole video coarsely, and closely only where actions begin and end
(docs/design.md, "Temporal zoom").

A zoom checkpoint is a checkpoint directory whose detector was trained on features at a low rate (its
`features.default_fps`, e.g. 2 fps), with `zoom.json` (ZoomSettings, the refiner's config) and
`refiner.safetensors` beside it, or for the "detector" refiner the zoom rate's detector in `fine/`
(tools/train_zoom.py writes them). A request then runs:

1. coarse pass: one backbone feature per frame at the coarse rate, pooled into clips as every request pools them
   (engine/features/windows.py), through the head: candidate actions. Its frames may be smaller than the
   backbone's own size (the detector's `features.frame_size`, e.g. 64 px: coarse in space as well as in time);
   the windows are always read at the backbone's own size;
2. windows: around the start and the end of each candidate scoring at least `min_score` (the best
   `max_candidates`), `2 * window_s` seconds of the zoom rate's tick grid, the ticks a whole-video decode at
   `zoom_fps` would use, so the window's frames are those that decode would give;
3. zoom pass: only the frames at those ticks, through the backbone. Where the zoom rate is a whole multiple of the
   coarse rate, the request decodes once, at the zoom rate: the coarse pass takes every n-th frame (the frames a
   decode at the coarse rate gives; with smaller coarse frames, those frames fitted to the smaller size from the
   same decoded picture, DecodeRequest.coarse_size) and a FrameSpool keeps all of them on disk at the backbone's
   size, so the windows are read back, not decoded again. H.264 streams as encoders write them are chains of
   reference frames (the zoom benchmark's 720p file: 4 keyframes, 719 P-frames and 177 B-frames in 900,
   keyframes up to 8 s apart; `ffmpeg -skip_frame noref` decodes it no faster), so a coarse pass cannot skip
   frames, and a window decoded on its own starts from the keyframe before it. Otherwise (another ratio, or more
   frames than TZN_ZOOM_SPOOL_MB, when the coarse pass decodes its own frames alone: DecodeRequest.one_pass_bytes)
   the windows are decoded again (DecodeRequest.spans): `decode` in the answer says which ("one pass" or "two
   passes");
4. refine: each boundary from its window's per-frame features (model/refiner.py): "bdr" reads the fields' zero
   crossing, "regression" the pooled offset, "none" keeps the coarse boundary. "detector" detects again instead:
   a TZN detector trained on one feature per frame at the zoom rate (the checkpoint in `fine/`) reads the whole
   video's zoom-rate tick grid, where each tick has the zoom pass's frame inside the windows and, elsewhere, the
   linear interpolation of the nearest frames either pass computed (`hybrid_rows`). Sharp where the coarse pass
   saw boundaries, blurred where it saw none, for the backbone cost of the coarse pass and the windows; its
   actions (labels, scores and both boundaries) replace the coarse ones;
5. verify (`verify_weight` > 0, with `verifier.safetensors`): a BoundaryVerifier reads the same windows and says
   how likely each holds a true boundary of its kind; a candidate's score is multiplied by the geometric mean of
   its two windows' probabilities raised to `verify_weight`, so the coarse pass's false alarms sink below the
   actions it found. Candidates without windows keep their scores. No frame more is decoded or run through the
   backbone.

`ZoomedPass` holds the steps that need no decoder; the Localizer feeds it frames, the benchmark
(experiments/zoom.py) feeds it the same frames from a cache, so both run the same code.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import Tensor

from engine.errors import ConfigurationError
from engine.features.extractor import FrameFeatures
from engine.features.windows import ClipWindower
from engine.heads import load_head, timed_call
from engine.video.decode import FrameChunk
from engine.video.sampling import Spans, inside_spans, sample_ticks
from model.backbones import SPECS, BackboneSpec, smaller_frames
from model.checkpoint import WEIGHTS_NAME, CheckpointConfig, CheckpointError, read_checkpoint_config
from model.head import Head
from model.postprocess import video_segments
from model.refiner import BoundaryRefiner, BoundaryVerifier, RefinerConfig, field_boundary
from model.tzn import TZNOutput

log = logging.getLogger("tzn.zoom")

ZOOM_FILE = "zoom.json"
REFINER_FILE = "refiner.safetensors"
VERIFIER_FILE = "verifier.safetensors"
FINE_DIR = "fine"  # refiner "detector": the zoom rate's detector, a checkpoint directory inside the zoom checkpoint
REFINERS = ("bdr", "regression", "none", "detector")

FrameSource = Callable[[float, Spans | None], FrameFeatures]  # (fps, spans) -> one feature per sampled frame


@dataclass(frozen=True)
class ZoomSettings:
    zoom_fps: float = 16.0
    window_s: float = 1.0  # half the window: a window spans [boundary - window_s, boundary + window_s)
    min_score: float = 0.05
    max_candidates: int = 16
    refiner: str = "bdr"
    verify_weight: float = 0.0  # > 0: check the candidates with a BoundaryVerifier (module docstring, step 5)

    def __post_init__(self):
        if self.refiner not in REFINERS:
            raise ValueError(f"zoom refiner must be one of {REFINERS}, got {self.refiner!r}")
        if not (self.zoom_fps > 0 and self.window_s > 0 and self.max_candidates >= 0 and self.verify_weight >= 0):
            raise ValueError(
                f"zoom needs zoom_fps > 0, window_s > 0, max_candidates >= 0, verify_weight >= 0; got {self}"
            )
        if self.redetects and self.verify:
            raise ValueError("the 'detector' refiner scores its own actions; a verify_weight does not apply to it")

    @property
    def redetects(self) -> bool:
        """The zoom rate's detector replaces the coarse actions (module docstring, step 4)."""
        return self.refiner == "detector"

    @property
    def verify(self) -> bool:
        return self.verify_weight > 0

    @property
    def window_frames(self) -> int:
        return max(2, round(2 * self.window_s * self.zoom_fps))


@dataclass
class ZoomPlan:
    """Where the zoom pass looks: one window per candidate boundary."""

    centres_s: np.ndarray  # (M,) the coarse boundaries
    kinds: np.ndarray  # (M,) 0 = start, 1 = end
    owners: np.ndarray  # (M,) the candidate (row of the coarse segments) each boundary belongs to
    ticks: np.ndarray  # (M, W) tick numbers k on the zoom grid (first frame + k / zoom_fps), clamped to the video
    window_centres_s: np.ndarray  # (M,) the middle of each window before clamping (the regression's origin)
    spans: Spans  # the union of the windows, for DecodeRequest.spans

    @property
    def needed(self) -> np.ndarray:
        """The tick numbers the zoom pass decodes, in time order."""
        return np.unique(self.ticks)


def read_zoom(
    checkpoint: str | Path | None, spec: BackboneSpec, refiner: str | None = None
) -> tuple[ZoomSettings, RefinerConfig | None, RefinerConfig | None] | None:
    """A checkpoint directory's zoom.json, checked without loading weights (the backbone `spec` must run per
    frame; a refiner it names must have its weights file, of its mode; so must a verifier; the "detector" refiner
    its checkpoint in fine/, see `check_fine`): its settings, the refiner's config (None for "detector") and the
    verifier's (None without `verify`); None when there is no zoom.json. ConfigurationError says what is wrong."""
    if checkpoint is None or not (Path(checkpoint) / ZOOM_FILE).is_file():
        return None
    path = Path(checkpoint) / ZOOM_FILE
    if not spec.per_frame:
        raise ConfigurationError(f"{path}: the temporal zoom needs a per-frame backbone; {spec.name} computes clips")
    try:
        document = json.loads(path.read_text())
        settings = ZoomSettings(**{**document["settings"], **({"refiner": refiner} if refiner else {})})
        config = RefinerConfig.from_dict(document["refiner"]) if document.get("refiner") is not None else None
        verifier = RefinerConfig.from_dict(document["verifier"]) if settings.verify else None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigurationError(f"{path}: not a zoom description ({error})") from error
    if settings.refiner in ("bdr", "regression"):
        if config is None or config.mode != settings.refiner:
            found = config.mode if config is not None else None
            raise ConfigurationError(f"{path}: the refiner in {REFINER_FILE} is {found!r}, not {settings.refiner!r}")
        if not (Path(checkpoint) / REFINER_FILE).is_file():
            raise ConfigurationError(f"{path} names a {settings.refiner!r} refiner but {REFINER_FILE} is missing")
    if settings.redetects:
        check_fine(Path(checkpoint), settings)
        if smaller_frames(spec.name, spec.size):
            raise ConfigurationError(
                f"{path}: the 'detector' refiner reads the coarse frames' features beside the windows', so the coarse "
                f"detector's frames must have the backbone's own size ({SPECS[spec.name].size} px), not {spec.size}"
            )
    if verifier is not None:
        if verifier.mode != "presence":
            raise ConfigurationError(f"{path}: the verifier's mode is {verifier.mode!r}, not 'presence'")
        if not (Path(checkpoint) / VERIFIER_FILE).is_file():
            raise ConfigurationError(f"{path} has a verify_weight but {VERIFIER_FILE} is missing")
    return settings, config, verifier


def check_fine(checkpoint: Path, settings: ZoomSettings) -> CheckpointConfig:
    """The config of the "detector" refiner's checkpoint, checkpoint/fine/: trained on one feature per frame
    (num_frames = feat_stride = 1) at the zoom rate, with the coarse detector's labels in the same order, weights
    present. ConfigurationError says what is wrong."""
    fine = checkpoint / FINE_DIR
    try:
        config, coarse = read_checkpoint_config(fine), read_checkpoint_config(checkpoint)
    except CheckpointError as error:
        raise ConfigurationError(f"the zoom's 'detector' refiner: {error}") from error
    features = config.features
    if (features.num_frames, features.feat_stride) != (1, 1) or features.default_fps != settings.zoom_fps:
        raise ConfigurationError(
            f"{fine}: the zoom's detector must read one feature per frame at the zoom rate ({settings.zoom_fps:g} fps);"
            f" it was trained on num_frames {features.num_frames}, feat_stride {features.feat_stride} at"
            f" {features.default_fps} fps"
        )
    if config.labels != coarse.labels:
        raise ConfigurationError(f"{fine}: its labels {config.labels} are not the coarse detector's {coarse.labels}")
    if smaller_frames(features.backbone, features.frame_size):
        raise ConfigurationError(f"{fine}: the zoom's detector reads windows at the backbone's own size, not "
                                 f"{features.frame_size} px")  # fmt: skip
    if not (fine / WEIGHTS_NAME).is_file():
        raise ConfigurationError(f"{fine / WEIGHTS_NAME}: missing")
    return config


def pool_clips(rows: Tensor, frames_per_clip: int, clip_stride: int) -> Tensor:
    """(N, C) per-frame features -> (C, K) clip features, as FeatureExtractor pools a request's frames."""
    windower = ClipWindower(frames_per_clip, clip_stride)
    pieces = [windower.push(rows).mean(1)]
    if (rest := windower.finish()) is not None:
        pieces.append(rest.mean(1))
    return torch.cat(pieces).T.contiguous()


class ZoomedPass:
    """Plans the windows and refines the boundaries of one zoom checkpoint (see the module docstring)."""

    def __init__(
        self, settings: ZoomSettings, refiner: BoundaryRefiner | None, verifier: BoundaryVerifier | None = None,
        fine: ZoomDetector | None = None,
    ):  # fmt: skip
        if settings.refiner in ("bdr", "regression") and refiner is None:
            raise ValueError(f"the {settings.refiner!r} refiner needs its weights")
        if settings.verify != (verifier is not None):
            raise ValueError("a zoom verifies its candidates exactly when it has a verifier")
        if settings.redetects != (fine is not None):
            raise ValueError("the 'detector' refiner, and only it, needs the zoom rate's detector")
        self.settings, self.refiner, self.verifier, self.fine = settings, refiner, verifier, fine

    @classmethod
    def load(
        cls, checkpoint: str | Path | None, spec: BackboneSpec, device: torch.device, refiner: str | None = None
    ) -> ZoomedPass | None:
        """The zoom of a checkpoint directory, None when it has no zoom.json. `refiner` overrides the file's."""
        found = read_zoom(checkpoint, spec, refiner)
        if found is None:
            return None
        settings, config, verifier_config = found
        network = verifier = fine = None
        if settings.refiner in ("bdr", "regression"):
            network = BoundaryRefiner(config)
            network.load_state_dict(load_file(Path(checkpoint) / REFINER_FILE))
            network.to(device).eval()
        if verifier_config is not None:
            verifier = BoundaryVerifier(verifier_config)
            verifier.load_state_dict(load_file(Path(checkpoint) / VERIFIER_FILE))
            verifier.to(device).eval()
        if settings.redetects:
            fine = ZoomDetector(load_head("torch", checkpoint=Path(checkpoint) / FINE_DIR, device=device))
        return cls(settings, network, verifier, fine)

    def plan(self, segments: np.ndarray, scores: np.ndarray, first_s: float, end_s: float) -> ZoomPlan:
        """Windows around the boundaries of the coarse `segments` (S, 2) s whose `scores` (S,) make the cut."""
        settings = self.settings
        chosen = np.flatnonzero(scores >= settings.min_score)
        chosen = chosen[np.argsort(-scores[chosen], kind="stable")][: settings.max_candidates]
        owners = np.repeat(chosen, 2)
        kinds = np.tile([0, 1], len(chosen))
        centres = segments[owners, kinds] if len(chosen) else np.empty(0)
        last = len(sample_ticks(first_s, end_s, settings.zoom_fps)) - 1
        ticks, window_centres = window_ticks(centres, first_s, settings.zoom_fps, settings.window_frames, last)
        return ZoomPlan(
            centres_s=centres, kinds=kinds, owners=owners, ticks=ticks, window_centres_s=window_centres,
            spans=tick_spans(np.unique(ticks), first_s, settings.zoom_fps),
        )  # fmt: skip

    @torch.inference_mode()
    def refine(self, plan: ZoomPlan, rows: Tensor, first_s: float) -> np.ndarray:
        """(M,) s: the refined boundaries, from `rows` (N, C), the features of the frames at `plan.needed`."""
        settings = self.settings
        if self.refiner is None or len(plan.centres_s) == 0:  # "none", and "detector" (which detects again)
            return plan.centres_s.copy()
        needed = plan.needed
        if len(rows) != len(needed):
            raise RuntimeError(f"the zoom pass gave {len(rows)} frames for {len(needed)} ticks")
        where = np.searchsorted(needed, plan.ticks)
        device = rows.device
        windows = rows[torch.as_tensor(where, device=device)].transpose(1, 2)  # (M, C, W)
        fields, offsets = self.refiner(windows.float(), torch.as_tensor(plan.kinds, device=device))
        times = first_s + plan.ticks / settings.zoom_fps
        if settings.refiner == "regression":
            found = plan.window_centres_s + offsets.double().cpu().numpy()
        else:
            found = field_boundary(fields.double(), torch.as_tensor(times, device=device)).cpu().numpy()
        return np.clip(found, times.min(1), times.max(1))  # a window says nothing about what lies outside it

    @torch.inference_mode()
    def presence(self, plan: ZoomPlan, rows: Tensor) -> np.ndarray | None:
        """(M,) the verifier's probability that each window holds a true boundary of its kind; None without one."""
        if self.verifier is None:
            return None
        if len(plan.centres_s) == 0:
            return np.empty(0)
        where = np.searchsorted(plan.needed, plan.ticks)
        windows = rows[torch.as_tensor(where, device=rows.device)].transpose(1, 2)
        logits = self.verifier(windows.float(), torch.as_tensor(plan.kinds, device=rows.device))
        return torch.sigmoid(logits.double()).cpu().numpy()

    def rescore(self, scores: np.ndarray, plan: ZoomPlan, presence: np.ndarray | None) -> np.ndarray:
        """The candidates' scores, each multiplied by the geometric mean of its windows' `presence` to the power
        verify_weight (module docstring, step 5); unchanged without a verifier, and for candidates without windows."""
        if presence is None:
            return scores
        factor = np.ones(len(scores))
        np.multiply.at(factor, plan.owners, presence)
        counted = np.bincount(plan.owners, minlength=len(scores))
        weight = self.settings.verify_weight
        return np.where(counted > 0, scores * factor ** (weight / np.maximum(counted, 1)), scores)

    @staticmethod
    def apply(segments: np.ndarray, plan: ZoomPlan, refined: np.ndarray) -> np.ndarray:
        """The coarse `segments` (S, 2) with their refined boundaries; a candidate whose refined end would not
        come after its refined start keeps its coarse boundaries."""
        out = segments.copy()
        out[plan.owners, plan.kinds] = refined
        broken = out[:, 1] <= out[:, 0]
        out[broken] = segments[broken]
        return out


class ZoomDetector:
    """The "detector" refiner (module docstring, step 4): a TZN head trained on one feature per frame at the zoom
    rate, run over the whole video's zoom-rate grid (`hybrid_rows`). One forward pass at a time."""

    def __init__(self, head: Head):
        self.head, self.lock = head, threading.Lock()

    @property
    def fps(self) -> float:
        return float(self.head.checkpoint.features.default_fps)

    def __call__(
        self, rows: Tensor, first_s: float, duration_s: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, TZNOutput, float]:
        """segments (S, 2) s, scores (S,), labels (S,) best first, the head's output and its ms, from `rows`
        (K, C): one feature per tick first_s + k / fps."""
        with self.lock:
            output, head_ms = timed_call(self.head, rows.T.float().contiguous())
        config = self.head.checkpoint
        found = video_segments(
            output, config.model.boundary_head, self.head.postprocess, self.fps, 1, 1, duration=duration_s,
            start_s=first_s,
        )  # fmt: skip
        as_numpy = (found.segments.cpu().numpy(), found.scores.cpu().numpy(), found.labels.cpu().numpy())
        return *as_numpy, output, head_ms


def hybrid_rows(known_ticks: np.ndarray, known_rows: Tensor, count: int) -> Tensor:
    """(count, C): one row per tick 0..count-1 of the zoom grid, from the rows computed at `known_ticks` (N,)
    (tick numbers, fractional where a coarse tick falls between zoom ticks; the first of equal ticks wins): the
    known row where there is one, else the linear interpolation of the nearest known rows either side, the
    nearest one beyond the first and the last."""
    order = np.argsort(known_ticks, kind="stable")
    ticks, first = np.unique(np.asarray(known_ticks, dtype=np.float64)[order], return_index=True)
    rows = known_rows[torch.as_tensor(order[first], device=known_rows.device)].float()
    wanted = np.arange(count, dtype=np.float64)
    right = np.clip(np.searchsorted(ticks, wanted), 0, len(ticks) - 1)
    left = np.clip(right - 1, 0, len(ticks) - 1)
    left = np.where(ticks[right] <= wanted, right, left)  # on a known tick, or past the last one
    gap = ticks[right] - ticks[left]
    weight = np.clip(np.divide(wanted - ticks[left], gap, out=np.zeros(count), where=gap > 0), 0.0, 1.0)
    weight = torch.as_tensor(weight, dtype=rows.dtype, device=rows.device)[:, None]
    device = rows.device
    return (
        rows[torch.as_tensor(left, device=device)] * (1 - weight) + rows[torch.as_tensor(right, device=device)] * weight
    )


def window_ticks(
    centres_s: np.ndarray, first_s: float, fps: float, width: int, last: int
) -> tuple[np.ndarray, np.ndarray]:
    """(M, width) tick numbers of the windows centred nearest to `centres_s` (M,) on the grid first_s + k / fps,
    clamped to [0, last], and each window's centre (s) before clamping: within half a step of its centre_s."""
    low = np.round((np.asarray(centres_s) - first_s) * fps - (width - 1) / 2).astype(np.int64)
    ticks = np.clip(low[:, None] + np.arange(width)[None, :], 0, last)
    return ticks, first_s + (low + (width - 1) / 2) / fps


def tick_spans(ticks: np.ndarray, first_s: float, fps: float) -> Spans:
    """Presentation-time spans that hold exactly the ticks numbered `ticks` (sorted, unique): half a step either
    side of each run of consecutive ticks."""
    if len(ticks) == 0:
        return ()
    breaks = np.flatnonzero(np.diff(ticks) > 1)
    starts = np.concatenate([[ticks[0]], ticks[breaks + 1]])
    ends = np.concatenate([ticks[breaks], [ticks[-1]]])
    return tuple(
        (first_s + (a - 0.5) / fps, first_s + (b + 0.5) / fps)
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
    )


def spool_every(coarse_fps: float, zoom_fps: float) -> int | None:
    """n when the zoom rate is n times the coarse rate (the coarse ticks are every n-th zoom tick), else None."""
    ratio = zoom_fps / coarse_fps
    return round(ratio) if ratio >= 1 and abs(ratio - round(ratio)) < 1e-9 else None


class FrameSpool:
    """The zoom-rate frames of one request, kept in a file for its zoom pass, so that one decode at the zoom rate
    serves both passes (module docstring, step 3). `thin(chunks)` passes every `every`-th frame on to the coarse
    pass and writes every frame to the file, if they all fit in `budget_bytes` (the decoder decided so from the
    video's duration, DecodeRequest.one_pass_bytes; the first chunk, which knows their number, checks it again;
    `kept` says whether they were kept). Chunks that bring their coarse frames at a smaller
    size (FrameChunk.coarse: the coarse detector reads smaller frames) pass those on instead. `passed(chunks)`
    keeps nothing: the decode gave the coarse pass's frames alone (DecodeRequest.one_pass_bytes, decided from the
    video's duration before it began). `read(ticks)` gives the frames at zoom ticks `ticks` back, on the CPU.
    Memory holds one chunk, and the frames' times."""

    def __init__(self, every: int, budget_bytes: int, directory: str | Path | None = None):
        self.every, self.budget, self.directory = every, budget_bytes, directory
        self.file = None
        self._restart()

    def _restart(self) -> None:
        """Nothing kept: a new decode (the CPU decoder's after NVDEC fell back) starts again."""
        self.close()
        self.shape, self.count, self.kept = None, 0, False
        self.times: list[np.ndarray] = []

    def thin(self, chunks: Iterable[FrameChunk]) -> Iterator[FrameChunk]:
        every = self.every
        self._restart()
        for chunk in chunks:
            if self.shape is None:
                self.shape = tuple(chunk.frames.shape[1:])
                self.kept = chunk.total * int(np.prod(self.shape)) <= self.budget
            if self.kept:
                self._keep(chunk)
            index = chunk.first + np.arange(len(chunk.times))
            picked = np.flatnonzero(index % every == 0)
            self.count += len(chunk.times)
            if chunk.coarse is not None and len(chunk.coarse) != len(picked):
                raise RuntimeError(f"a chunk brought {len(chunk.coarse)} coarse frames for {len(picked)} coarse ticks")
            if len(picked):
                frames = chunk.coarse if chunk.coarse is not None else \
                    chunk.frames[torch.as_tensor(picked, device=chunk.frames.device)]  # fmt: skip
                yield FrameChunk(frames, chunk.times[picked], -(-chunk.first // every), -(-chunk.total // every))

    def passed(self, chunks: Iterable[FrameChunk]) -> Iterator[FrameChunk]:
        """`chunks` as they are, nothing kept: the coarse pass's own frames (see the class)."""
        self._restart()
        yield from chunks

    def _keep(self, chunk: FrameChunk) -> None:
        """Appends the chunk's frames to the file. A disk that refuses them (full, unwritable) ends the keeping,
        said in the log; the windows are then decoded again, and the answer says "two passes"."""
        try:
            if self.file is None:
                # closed by close(), which the request calls when its zoom pass is done
                self.file = tempfile.TemporaryFile(prefix="tzn-zoom-", dir=self.directory)  # noqa: SIM115
            self.file.write(memoryview(chunk.frames.cpu().numpy()).cast("B"))
        except OSError as error:
            log.warning("the zoom's frames could not be kept on disk (%s); its windows will be decoded again", error)
            self.close()
            self.kept = False
            return
        self.times.append(chunk.times)

    def read(self, ticks: np.ndarray) -> tuple[Tensor, np.ndarray]:
        """(n, H, W, 3) uint8 frames and their times (n,) s at zoom ticks `ticks` (sorted)."""
        if not self.kept:
            raise RuntimeError("the zoom-rate frames were not kept (more than the spool's budget)")
        if len(ticks) and ticks[-1] >= self.count:
            raise RuntimeError(f"the zoom pass wants tick {ticks[-1]}; the decode gave {self.count} frames")
        self.file.flush()
        frames = np.memmap(self.file, dtype=np.uint8, mode="r", shape=(self.count, *self.shape))
        return torch.from_numpy(np.ascontiguousarray(frames[ticks])), np.concatenate(self.times)[ticks]

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def spooled_ticks(first_s: float, end_s: float, fps: float, spans: Spans) -> np.ndarray:
    """The numbers of the ticks inside `spans` on the grid a whole-video decode at `fps` uses."""
    return np.flatnonzero(inside_spans(sample_ticks(first_s, end_s, fps), spans))


def zoom_document(settings: ZoomSettings, refiner: RefinerConfig | None, verifier: RefinerConfig | None = None) -> dict:
    """The content of zoom.json ("refiner": null for the "detector" refiner, which has no refiner network)."""
    document = {"settings": asdict(settings), "refiner": refiner.to_dict() if refiner is not None else None}
    return document if verifier is None else {**document, "verifier": verifier.to_dict()}


Detect = Callable[[Tensor, float, float], tuple[np.ndarray, np.ndarray, np.ndarray, float]]
# (clip features (C, K) at the coarse rate, first frame's time s, coarse rate) -> segments (S, 2) s, scores (S,),
# labels (S,), head ms


@dataclass
class ZoomRun:
    """One zoomed request: the refined actions (best first), where it looked, what each pass decoded and cost;
    `fine`: the zoom rate detector's output ("detector" refiner), for its FLOPs."""

    segments: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    coarse_segments: np.ndarray
    plan: ZoomPlan
    coarse: FrameFeatures
    zoomed: FrameFeatures
    head_ms: float
    refine_ms: float
    fine: TZNOutput | None = None


def run_zoom(
    zoom: ZoomedPass,
    coarse_fps: float,
    frames: FrameSource,
    detect: Detect,
    clip: tuple[int, int],
    end_s: float,
    reuse_coarse: bool = True,
) -> ZoomRun:
    """The coarse pass at `coarse_fps`, the windows, the zoom pass and the refinement (module docstring).
    `clip`: (frames per clip, clip stride) of the backbone; `end_s()`: the end of the video's last frame (known
    once the coarse pass has decoded). Where the zoom rate is a multiple of the coarse rate, a window's ticks
    that are coarse ticks take the coarse pass's features: the zoom pass runs the backbone on the others only
    (unless `reuse_coarse` is False: the coarse features came from smaller frames)."""
    settings = zoom.settings
    coarse = frames(coarse_fps, None)
    first_s = float(coarse.times[0]) if len(coarse.times) else 0.0
    segments, scores, labels, head_ms = detect(pool_clips(coarse.rows, *clip), first_s, coarse_fps)
    end = end_s()
    plan = zoom.plan(segments, scores, first_s, end)
    needed, every = plan.needed, spool_every(coarse_fps, settings.zoom_fps)
    reused = np.zeros(len(needed), dtype=bool)
    if every and reuse_coarse:
        reused = (needed % every == 0) & (needed // every < len(coarse.rows))
    fresh = needed[~reused]
    zoomed = frames(settings.zoom_fps, tick_spans(fresh, first_s, settings.zoom_fps)) if len(fresh) else \
        _no_frames(coarse)  # fmt: skip
    if len(zoomed.rows) != len(fresh):
        raise RuntimeError(f"the zoom pass gave {len(zoomed.rows)} frames for {len(fresh)} ticks")
    rows = coarse.rows.new_empty((len(needed), coarse.rows.shape[1]))
    rows[torch.as_tensor(np.flatnonzero(~reused), device=rows.device)] = zoomed.rows.to(rows.dtype)
    if reused.any():
        rows[torch.as_tensor(np.flatnonzero(reused), device=rows.device)] = coarse.rows[
            torch.as_tensor(needed[reused] // every, device=rows.device)
        ]
    started = time.perf_counter()
    fine = None
    if zoom.fine is not None:
        count = len(sample_ticks(first_s, end, settings.zoom_fps))
        coarse_ticks = np.arange(len(coarse.rows)) * (settings.zoom_fps / coarse_fps)
        grid = hybrid_rows(np.concatenate([needed, coarse_ticks]), torch.cat([rows, coarse.rows.to(rows.dtype)]), count)
        found, scored, labelled, fine, _ = zoom.fine(grid, first_s, end)
        order = np.arange(len(scored))  # the detector answers best first
    else:
        found = zoom.apply(segments, plan, zoom.refine(plan, rows, first_s))
        scored, labelled = zoom.rescore(scores, plan, zoom.presence(plan, rows)), labels
        order = np.argsort(-scored, kind="stable")  # best first, as the coarse pass gave them
    return ZoomRun(
        segments=found[order], scores=scored[order], labels=labelled[order], coarse_segments=segments, plan=plan,
        coarse=coarse, zoomed=zoomed, head_ms=head_ms, refine_ms=(time.perf_counter() - started) * 1000, fine=fine,
    )  # fmt: skip


def _no_frames(like: FrameFeatures) -> FrameFeatures:
    return FrameFeatures(like.rows[:0], like.times[:0], 0.0, 0.0, 0)


def zoom_summary(zoom: ZoomedPass, run: ZoomRun, coarse_fps: float, decodes: int) -> dict:
    """The answer's `zoom` object: the rates, the refiner, the windows (s), how many times the video was decoded
    (`decodes`: 1 or 2), frames and ms per pass."""
    settings = zoom.settings
    return {
        "coarse_fps": coarse_fps, "zoom_fps": settings.zoom_fps, "refiner": settings.refiner,
        "verify_weight": settings.verify_weight,
        "windows": [list(span) for span in run.plan.spans], "decode": "one pass" if decodes == 1 else "two passes",
        "candidates": int(len(run.plan.centres_s) // 2),
        "frames": {"coarse": len(run.coarse.times), "zoom": len(run.zoomed.times)},
        "timing_ms": {"coarse_decode": run.coarse.decode_ms, "coarse_features": run.coarse.features_ms,
                      "zoom_decode": run.zoomed.decode_ms, "zoom_features": run.zoomed.features_ms,
                      "refine": run.refine_ms},
    }  # fmt: skip
