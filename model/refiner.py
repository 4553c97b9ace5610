"""The zoom's boundary refiner: dense per-frame features of a window around a coarse boundary -> where it is.

A window holds `frames` features sampled at the zoom rate, centred on a boundary the coarse pass found. The
network is class-agnostic and fully convolutional. Its input is the window's features, standardized by the training
frames' per-channel mean and std (`standardize`, kept in the weights), with each frame's difference from the frame
before it beside them (`differences`: a boundary is where the picture changes); then a 1x1 projection, dilated
residual convolutions, and

- fields (BDR on the dense window): per frame, the signed distance (s) from the true start (channel 0) or end
  (channel 1) to the frame's time, clipped to +-`clip_s`; the boundary is the field's upward zero crossing,
  read between frames (`field_boundary`);
- offset (the regression alone): from the pooled window, the boundary's offset (s) from the window's centre.

`kind` picks the channel: 0 for a start, 1 for an end. Which head a refiner was trained with is its `mode`
("bdr" or "regression"); engine/zoom.py decodes it, tools/train_zoom.py trains it.

`BoundaryVerifier` (mode "presence") has the same trunk and one output per window: the logit that a true boundary of
that kind lies inside the window at all. The zoom uses it to check the coarse pass's candidates with the close
frames (a candidate whose windows hold no boundary was a false alarm of the coarse pass).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

REFINER_MODES = ("bdr", "regression")
NETWORK_MODES = (*REFINER_MODES, "presence")  # "presence": a BoundaryVerifier


@dataclass(frozen=True)
class RefinerConfig:
    input_dim: int = 512
    width: int = 64
    dilations: tuple[int, ...] = (1, 2, 4)
    kernel: int = 5
    mode: str = "bdr"
    clip_s: float = 1.0  # the fields' clip, and the largest offset the window can hold
    standardize: bool = False  # refiners written before these two options had neither
    differences: bool = False

    def __post_init__(self):
        if self.mode not in NETWORK_MODES:
            raise ValueError(f"refiner mode must be one of {NETWORK_MODES}, got {self.mode!r}")

    def to_dict(self) -> dict:
        return {**asdict(self), "dilations": list(self.dilations)}

    @classmethod
    def from_dict(cls, data: dict) -> RefinerConfig:
        return cls(**{**data, "dilations": tuple(data.get("dilations", (1, 2, 4)))})


class WindowNetwork(nn.Module):
    """The trunk the refiner and the verifier share: (B, C, W) window features -> (B, width, W)."""

    def __init__(self, config: RefinerConfig):
        super().__init__()
        self.config = config
        width = config.width
        if config.standardize:
            self.register_buffer("input_mean", torch.zeros(config.input_dim))
            self.register_buffer("input_std", torch.ones(config.input_dim))
        inputs = config.input_dim * (2 if config.differences else 1)
        self.project = nn.Sequential(nn.Conv1d(inputs, width, 1), nn.GELU())
        self.blocks = nn.ModuleList(
            nn.Conv1d(width, width, config.kernel, padding=d * (config.kernel // 2), dilation=d)
            for d in config.dilations
        )

    @torch.no_grad()
    def set_input_statistics(self, mean: Tensor, std: Tensor) -> None:
        """Per-channel mean/std (C,) of the training frames' features, for `standardize`."""
        if not self.config.standardize:
            raise ValueError("this refiner does not standardize its input")
        self.input_mean.copy_(mean)
        self.input_std.copy_(std.clamp(min=1e-3))

    def inputs(self, windows: Tensor) -> Tensor:
        """(B, C, W) features -> (B, C or 2C, W), what the projection sees (the module docstring)."""
        if self.config.standardize:
            windows = (windows - self.input_mean[:, None]) / self.input_std[:, None]
        if self.config.differences:
            windows = torch.cat([windows, torch.diff(windows, dim=-1, prepend=windows[..., :1])], dim=1)
        return windows

    def trunk(self, windows: Tensor) -> Tensor:
        x = self.project(self.inputs(windows))
        for block in self.blocks:
            x = x + torch.nn.functional.gelu(block(x))
        return x


class BoundaryRefiner(WindowNetwork):
    def __init__(self, config: RefinerConfig):
        super().__init__(config)
        if config.mode not in REFINER_MODES:
            raise ValueError(f"a refiner's mode is one of {REFINER_MODES}, not {config.mode!r}")
        self.fields = nn.Conv1d(config.width, 2, 1)
        self.offset = nn.Linear(2 * config.width, 2)

    def forward(self, windows: Tensor, kind: Tensor) -> tuple[Tensor, Tensor]:
        """windows (B, C, W) features, kind (B,) 0/1 -> fields (B, W) s and offsets (B,) s of that kind."""
        x = self.trunk(windows)
        pick = kind.long().view(-1, 1)
        fields = self.fields(x).gather(1, pick[:, :, None].expand(-1, 1, x.shape[-1]))[:, 0]
        pooled = torch.cat([x.mean(-1), x.amax(-1)], dim=1)
        offsets = self.offset(pooled).gather(1, pick)[:, 0]
        clip = self.config.clip_s
        return clip * torch.tanh(fields / clip), clip * torch.tanh(offsets / clip)


class BoundaryVerifier(WindowNetwork):
    """Whether a window holds a true boundary of its kind (the module docstring)."""

    def __init__(self, config: RefinerConfig):
        super().__init__(config)
        if config.mode != "presence":
            raise ValueError(f"a verifier's mode is 'presence', not {config.mode!r}")
        self.presence = nn.Linear(2 * config.width, 2)

    def forward(self, windows: Tensor, kind: Tensor) -> Tensor:
        """windows (B, C, W) features, kind (B,) 0/1 -> (B,) logits: a boundary of that kind is in the window."""
        x = self.trunk(windows)
        pooled = torch.cat([x.mean(-1), x.amax(-1)], dim=1)
        return self.presence(pooled).gather(1, kind.long().view(-1, 1))[:, 0]


def field_boundary(field: Tensor, times: Tensor) -> Tensor:
    """(B,) s: the boundary each field (B, W) of signed distances at `times` (B, W) s places. At the upward zero
    crossing nearest the window's centre, interpolated between the two frames around it; without a crossing,
    the median of the frames' votes `time - field` (the field is a distance: each frame says where it is)."""
    below, above = field[:, :-1] <= 0, field[:, 1:] > 0
    crossing = below & above
    centre = (field.shape[1] - 1) / 2
    index = torch.arange(field.shape[1] - 1, device=field.device, dtype=field.dtype)
    distance = torch.where(crossing, (index + 0.5 - centre).abs(), torch.full_like(index, float("inf")))
    nearest = distance.argmin(dim=1, keepdim=True)
    f0, f1 = field.gather(1, nearest)[:, 0], field.gather(1, nearest + 1)[:, 0]
    t0, t1 = times.gather(1, nearest)[:, 0], times.gather(1, nearest + 1)[:, 0]
    share = (-f0 / (f1 - f0).clamp_min(1e-6)).clamp(0, 1)
    crossed = t0 + share * (t1 - t0)
    votes = (times - field).median(dim=1).values
    return torch.where(crossing.any(dim=1), crossed, votes)
