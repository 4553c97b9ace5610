"""Video backbones that turn decoded frames into one feature vector per clip (the head's input).

Two torchvision models, chosen by name:
- "resnet18-2d": a 2D ResNet-18 run once per sampled frame at 112 px, clip features = the mean of the
  frame features in each clip. The CPU default: ~80 frames/s on 2 cores.
- "r2plus1d_18": the 3D R(2+1)D-18 clip model at 112 px, for GPU hosts (~0.8 clips/s on 2 CPU cores).

Weights load only from a local file. Without one, the network is initialised from a fixed seed, so every
machine computes the same features, and `weights` says "random-init" so that answers can say so.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from model.config import MIN_FRAME_SIZE

RANDOM_INIT = "random-init"
RANDOM_INIT_SEED = 20261126
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


class BackboneError(Exception):
    """A backbone that cannot be built: unknown name, unreadable or mismatched weights file."""


@dataclass(frozen=True)
class BackboneSpec:
    """How frames are sampled and grouped for a backbone.

    Frames are sampled at `sample_fps` and resized to `size` x `size`; clip k holds sampled frames
    [k * clip_stride, k * clip_stride + frames_per_clip) and its feature is centred at
    (k * clip_stride + frames_per_clip / 2) / sample_fps seconds after the first sampled frame (docs/design.md, "Data formats", with
    feat_stride = clip_stride, num_frames = frames_per_clip, fps = sample_fps; THUMOS14 I3D features: 16
    frames, stride 4, sampled at the source ~30 fps).
    """

    name: str
    sample_fps: float
    frames_per_clip: int
    clip_stride: int
    size: int
    feature_dim: int
    per_frame: bool  # 2D backbone: one pass per sampled frame, shared by overlapping clips

    def __post_init__(self):
        if self.frames_per_clip < 1 or self.clip_stride < 1 or not self.sample_fps > 0:
            raise ValueError(f"BackboneSpec needs frames_per_clip >= 1, clip_stride >= 1, sample_fps > 0; got {self}")

    def num_clips(self, num_frames: int) -> int:
        """Clips from `num_frames` sampled frames; a video shorter than one clip still gives one (padded)."""
        if num_frames <= 0:
            return 0
        return max(0, num_frames - self.frames_per_clip) // self.clip_stride + 1

    def cut(self, frames_per_clip: int, clip_stride: int) -> BackboneSpec:
        """This backbone with its frames grouped into clips of `frames_per_clip` every `clip_stride`: a per-frame
        backbone pools any grouping (1 and 1: one feature per frame); a clip backbone computes only its own.
        ValueError says why not."""
        if (frames_per_clip, clip_stride) == (self.frames_per_clip, self.clip_stride):
            return self
        if not self.per_frame:
            raise ValueError(
                f"{self.name} computes clips of {self.frames_per_clip} frames every {self.clip_stride}, not "
                f"{frames_per_clip} every {clip_stride}; only a per-frame backbone pools other clips"
            )
        return replace(self, frames_per_clip=frames_per_clip, clip_stride=clip_stride)

    def resized(self, size: int | None) -> BackboneSpec:
        """This backbone reading frames resized to `size` x `size` px instead (None: its own size, SPECS').
        ValueError below MIN_FRAME_SIZE."""
        size = SPECS[self.name].size if size is None else size
        if size < MIN_FRAME_SIZE:
            raise ValueError(f"frames of {size} px: at least {MIN_FRAME_SIZE} px")
        return replace(self, size=size)

    def clip_times(self, num_clips: int, start_s: float = 0.0) -> np.ndarray:
        """(K,) seconds: the centre of each clip, `start_s` being the time of the first sampled frame."""
        index = np.arange(num_clips, dtype=np.float64)
        return start_s + (index * self.clip_stride + self.frames_per_clip / 2) / self.sample_fps


SPECS = {
    "resnet18-2d": BackboneSpec("resnet18-2d", 8.0, 4, 2, 112, 512, per_frame=True),
    "r2plus1d_18": BackboneSpec("r2plus1d_18", 15.0, 16, 4, 112, 512, per_frame=False),
    # Two strided convolutions: exercises the whole service path (decoding, chunks, head) thousands of frames
    # per second on a CPU, for tests and memory checks on hour-long videos. Its features mean nothing.
    "tiny-2d": BackboneSpec("tiny-2d", 4.0, 4, 2, 112, 64, per_frame=True),
}


def tiny_network() -> nn.Module:
    """(N, 3, 112, 112) -> (N, 64): conv 8x8 stride 8, ReLU, conv 3x3 stride 2, ReLU, global mean."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 8, stride=8), nn.ReLU(), nn.Conv2d(16, 64, 3, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )  # fmt: skip


class FrameBackbone(nn.Module):
    """ResNet-18 (or the tiny network) per frame; a clip's feature is the mean over its frames (the clip windower
    of engine/features/windows.py makes the clips)."""

    def __init__(self, spec: BackboneSpec):
        super().__init__()
        self.spec = spec
        if spec.name == "tiny-2d":
            network = tiny_network()
        else:
            network = torchvision.models.resnet18(weights=None)
            network.fc = nn.Identity()
        self.network = network
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def frame_features(self, frames: Tensor) -> Tensor:
        """(N, H, W, 3) uint8 -> (N, 512)."""
        x = frames.permute(0, 3, 1, 2).to(self.mean.dtype) / 255.0
        return self.network((x - self.mean) / self.std)


class ClipBackbone(nn.Module):
    """R(2+1)D-18 on clips. clips (K, F, H, W, 3) uint8 -> (K, 512)."""

    def __init__(self, spec: BackboneSpec):
        super().__init__()
        self.spec = spec
        network = torchvision.models.video.r2plus1d_18(weights=None)
        network.fc = nn.Identity()
        self.network = network
        self.register_buffer("mean", torch.tensor(KINETICS_MEAN).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(KINETICS_STD).view(1, 3, 1, 1, 1), persistent=False)

    def forward(self, clips: Tensor) -> Tensor:
        x = clips.permute(0, 4, 1, 2, 3).to(self.mean.dtype) / 255.0
        return self.network((x - self.mean) / self.std)


def build_backbone(name: str, weights: str | Path | None = None) -> tuple[nn.Module, str]:
    """The backbone `name` in eval mode, and a description of its weights: "random-init" or
    "<file name> sha256:<first 12 hex>". Weights are a local safetensors file of the torchvision state dict."""
    if name not in SPECS:
        raise BackboneError(f"unknown backbone {name!r}; choose one of {', '.join(sorted(SPECS))}")
    spec = SPECS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        backbone = FrameBackbone(spec) if spec.per_frame else ClipBackbone(spec)
    description = RANDOM_INIT
    if weights is not None:
        description = _load_weights(backbone.network, Path(weights))
    return backbone.eval(), description


def _load_weights(network: nn.Module, path: Path) -> str:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise BackboneError(f"backbone weights {str(path)!r} not found")
    try:
        state = load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise BackboneError(f"{path}: not a readable safetensors file ({error})") from None
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # classifier replaced by Identity
    result = network.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise BackboneError(
            f"{path}: does not fit the backbone (missing {result.missing_keys[:3]}, "
            f"unexpected {result.unexpected_keys[:3]})"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return f"{path.name} sha256:{digest}"


def smaller_frames(backbone: str | None, frame_size: int | None) -> bool:
    """Whether features of `backbone` (a SPECS name) came from frames of another size than its own: a
    checkpoint's `features.frame_size` set to something other than None or the backbone's size."""
    return frame_size is not None and (backbone not in SPECS or frame_size != SPECS[backbone].size)


def flops_per_unit(backbone: nn.Module, size: int | None = None) -> int:
    """FLOPs of one frame (2D backbones) or one clip (3D) of `size` x `size` pixels (default: the backbone's own),
    counted once with FlopCounterMode."""
    spec: BackboneSpec = backbone.spec
    size = size or spec.size
    if spec.per_frame:
        sample = torch.zeros(1, size, size, 3, dtype=torch.uint8)
        run = backbone.frame_features
    else:
        sample = torch.zeros(1, spec.frames_per_clip, size, size, 3, dtype=torch.uint8)
        run = backbone
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        run(sample.to(next(backbone.parameters()).device))
    return counter.get_total_flops()
