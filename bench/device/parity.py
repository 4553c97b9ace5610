"""The parity table (run by bench/device/gpu_check.sh on a CUDA host): for each file the tests use, what NVDEC
(or the CPU decoder a format goes to) gives the backbone against decord and torchcodec on the CPU, the features
against the CPU path's, and both answers.

    TZN_PARITY_MEDIA=DIR python bench/device/parity.py        (DIR: the files of tests/conftest.py's parity_media)

Per file: the decoder the GPU host chose; on the backbone's input (112 x 112, 8 fps), the mean absolute
difference, the largest, and the per-channel mean (bias) in levels against each CPU decoder; the features'
relative L2 difference (GPU: bf16 backbone on the GPU; CPU: fp32 on the CPU); the actions each path found
(label start-end score, the best three).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from engine.localizer import Localizer  # noqa: E402
from engine.settings import EngineSettings, WorkLimits  # noqa: E402
from engine.video.decode import DecodeRequest, decode_frames  # noqa: E402
from engine.video.source import VideoSource  # noqa: E402
from service.settings import DEMO_CHECKPOINT, DEMO_VIDEO  # noqa: E402

LIMITS = WorkLimits(max_duration_s=3600, timeout_s=300)
INPUT = DecodeRequest(fps=8.0, size=(112, 112), timeout_s=300)


def pixel_stats(ours: np.ndarray, theirs: np.ndarray) -> str:
    difference = ours.astype(np.float64) - theirs
    bias = difference.mean(axis=(0, 1, 2))
    return f"{np.abs(difference).mean():.2f} / {np.abs(difference).max():.0f} / {' '.join(f'{b:+.2f}' for b in bias)}"


def gpu_frames(localizer: Localizer, path: Path) -> tuple[np.ndarray, str]:
    with localizer.frames(VideoSource.from_path(path), LIMITS) as (_, decoder, chunks):
        frames = torch.cat([chunk.frames.cpu() for chunk in chunks]).numpy()
    return frames, decoder


def actions(localizer: Localizer, path: Path) -> str:
    found = localizer.localize(VideoSource.from_path(path), LIMITS, min_score=0.2).segments
    return "; ".join(f"{s['label']} {s['start_s']:.1f}-{s['end_s']:.1f} {s['score']:.3f}" for s in found[:3]) or "-"


def row(gpu: Localizer, cpu: Localizer, path: Path) -> str:
    ours, decoder = gpu_frames(gpu, path)
    cells = [path.name, decoder]
    for cpu_decoder in ("decord", "torchcodec"):
        theirs, _, _ = decode_frames(path, INPUT, cpu_decoder)
        cells.append(pixel_stats(ours, theirs) if ours.shape == theirs.shape else f"shapes {ours.shape} {theirs.shape}")
    _, _, gpu_features = gpu.extract(VideoSource.from_path(path), LIMITS)
    _, _, cpu_features = cpu.extract(VideoSource.from_path(path), LIMITS)
    relative = (gpu_features.features.float().cpu() - cpu_features.features).norm() / cpu_features.features.norm()
    cells += [f"{float(relative):.4f}", actions(cpu, path), actions(gpu, path)]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    media = Path(os.environ["TZN_PARITY_MEDIA"])
    gpu = Localizer(EngineSettings(checkpoint=DEMO_CHECKPOINT, device="cuda"), warm_up_video=DEMO_VIDEO)
    cpu = Localizer(EngineSettings(checkpoint=DEMO_CHECKPOINT, device="cpu", decoder="decord"))
    print("| file | GPU host's decoder | vs decord: mean / max / bias R G B | vs torchcodec CPU | features rel. L2 "
          "| CPU answer | GPU answer |\n|---|---|---|---|---|---|---|", flush=True)  # fmt: skip
    for path in sorted(media.iterdir()):
        try:
            print(row(gpu, cpu, path), flush=True)
        except Exception as error:  # one file's failure must not hide the others' rows
            print(f"| {path.name} | FAILED: {type(error).__name__}: {error} |", flush=True)


if __name__ == "__main__":
    main()
