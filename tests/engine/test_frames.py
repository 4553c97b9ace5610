"""The one resize rule (engine/video/frames.py): what every decoder's frames become before the backbone."""

import pytest
import torch
import torch.nn.functional as F

from engine.video.frames import fit_frames


def smooth_frames(seed: int, size=(4, 96, 160)) -> torch.Tensor:
    """Float frames (N, H, W, 3) in [0, 255] with detail at several scales, like footage rather than noise."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(size[0], 3, size[1] // 8, size[2] // 8, generator=generator) * 255
    fine = torch.rand(size[0], 3, *size[1:], generator=generator) * 40 - 20
    image = F.interpolate(coarse, size=size[1:], mode="bilinear", align_corners=False) + fine
    return image.clamp(0, 255).permute(0, 2, 3, 1)


def test_frames_come_out_at_the_size_asked_in_uint8_rgb():
    frames = smooth_frames(0).round().to(torch.uint8)
    fitted = fit_frames(frames, (112, 112))
    assert fitted.shape == (4, 112, 112, 3) and fitted.dtype == torch.uint8 and fitted.is_contiguous()


def test_frames_already_at_the_size_are_unchanged():
    frames = smooth_frames(1, (2, 112, 112)).round().to(torch.uint8)
    assert torch.equal(fit_frames(frames, (112, 112)), frames)


def test_the_cpu_kernel_matches_the_float_filter_the_gpu_runs():
    frames = smooth_frames(2).round().to(torch.uint8)
    fast = fit_frames(frames, (112, 112)).float()
    # the GPU's arithmetic: float32 antialiased bicubic, then rounding (here on the CPU)
    planar = frames.permute(0, 3, 1, 2).float()
    exact = F.interpolate(planar, size=(112, 112), mode="bicubic", antialias=True, align_corners=False)
    exact = exact.round().clamp(0, 255).permute(0, 2, 3, 1)
    difference = fast - exact
    assert difference.abs().mean() < 0.3 and abs(difference.mean()) < 0.05  # a level here and there, no bias
    assert difference.abs().max() <= 8  # fixed-point rounding at the filter's overshoots


def test_anything_but_uint8_rgb_frames_is_refused():
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\) uint8"):
        fit_frames(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), (4, 4))
    with pytest.raises(ValueError, match="uint8"):
        fit_frames(torch.zeros(2, 8, 8, 3), (4, 4))
