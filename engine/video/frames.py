"""The one resize rule: how decoded frames become the backbone's input, on whichever device they are.

Every decoder hands over frames at the source's own resolution, in RGB, converted from YUV with the colour
matrix and range the stream is tagged with (an untagged stream is BT.601 limited range, as FFmpeg reads it):
FFmpeg's swscale does that for decord and for torchcodec on the CPU (the two give identical pixels), and
torchcodec's CUDA kernel does it for NVDEC. `fit_frames` then brings them to the backbone's size in RGB with
an antialiased bicubic filter, rounding to the nearest level. On the CPU it runs torch's uint8 kernel (fixed
point, fast); on a GPU the same filter in float32, then rounds: the two differ by a level on some pixels
(0.1-0.2 levels on average, without bias; tests/engine/test_frames.py).

The conversions themselves are not exact BT.601/709 arithmetic, and need not be: what matters is that the
decoders agree with the CPU's, which the models were trained on. swscale's fast conversion (decord's and
torchcodec's on the CPU) comes out darker than the exact arithmetic rounded, by about 0.9, 1.3 and 1.0 levels
in R, G and B on camera footage, and by 0.4, 0.9 and 0.5 against it truncated (bench/colour.py prints this).
torchcodec's CUDA kernel truncates, so its frames are used as they come: compensating the truncation moved
NVDEC's frames 1.4 levels away from the CPU's in green on an H200 (docs/gpu.md), keeping it leaves them within
a level.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def fit_frames(frames: Tensor, size: tuple[int, int]) -> Tensor:
    """(N, H, W, 3) uint8 RGB -> (N, size[0], size[1], 3) uint8 RGB on the same device: antialiased bicubic
    resize in RGB, rounded."""
    if frames.dim() != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(f"expected (N, H, W, 3) uint8 frames, got {tuple(frames.shape)} {frames.dtype}")
    if tuple(frames.shape[1:3]) == tuple(size):
        return frames.contiguous()
    planar = frames.permute(0, 3, 1, 2)
    if frames.device.type == "cpu":
        resized = F.interpolate(planar.contiguous(memory_format=torch.channels_last), size=size, mode="bicubic",
                                antialias=True, align_corners=False)  # fmt: skip
        return resized.permute(0, 2, 3, 1).contiguous()
    resized = F.interpolate(planar.float(), size=size, mode="bicubic", antialias=True, align_corners=False)
    return resized.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
