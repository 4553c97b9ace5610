"""How far the CPU decoders' colour conversion is from exact arithmetic, on real footage.

    python bench/colour.py [VIDEO ...]            (default: opencv-doc's vtest.avi re-encoded as H.264 4:2:0)

For the first frames of each video: the YUV planes as FFmpeg decodes them (`ffmpeg -pix_fmt yuv420p`), turned
into RGB by the exact BT.601 limited-range arithmetic (chroma repeated over each 2 x 2 block, as torchcodec's
CUDA kernel does), rounded and truncated; against decord's RGB of the same frames (swscale's fast conversion,
what the CPU decoders give the backbone). Per channel: the mean difference decord - exact (the bias), and the
mean absolute difference. engine/video/frames.py decides from these numbers how NVDEC's frames are used.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

OPENCV_VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
FRAMES = 6


def yuv420_planes(path: Path, width: int, height: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-frames:v", str(FRAMES), "-f", "rawvideo",
                          "-pix_fmt", "yuv420p", "-"], capture_output=True, check=True).stdout  # fmt: skip
    size, quarter = width * height, width * height // 4
    planes = []
    for start in range(0, len(raw), size + 2 * quarter):
        data = np.frombuffer(raw[start : start + size + 2 * quarter], np.uint8).astype(np.float64)
        luma = data[:size].reshape(height, width)
        u = data[size : size + quarter].reshape(height // 2, width // 2).repeat(2, 0).repeat(2, 1)
        v = data[size + quarter :].reshape(height // 2, width // 2).repeat(2, 0).repeat(2, 1)
        planes.append((luma, u, v))
    return planes


def exact_bt601(luma: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(H, W) Y, U, V limited range -> (H, W, 3) float RGB, unclipped."""
    kr, kb = 0.299, 0.114
    kg = 1 - kr - kb
    y, cb, cr = (luma - 16) * 255 / 219, (u - 128) * 255 / 224, (v - 128) * 255 / 224
    red, blue = y + 2 * (1 - kr) * cr, y + 2 * (1 - kb) * cb
    green = y - (2 * kb * (1 - kb) / kg) * cb - (2 * kr * (1 - kr) / kg) * cr
    return np.stack([red, green, blue], -1)


def main(paths: list[Path]) -> None:
    import decord

    print("| video | vs exact, rounded: bias R G B | mean abs | vs exact, truncated: bias R G B | mean abs |")
    print("|---|---|---|---|---|")
    for path in paths:
        reader = decord.VideoReader(str(path))
        decoded = reader.get_batch(list(range(FRAMES))).asnumpy().astype(np.float64)
        height, width = decoded.shape[1:3]
        exact = np.stack([exact_bt601(*planes) for planes in yuv420_planes(path, width, height)])
        cells = [path.name]
        for rounding in (np.round, np.floor):
            difference = decoded - np.clip(rounding(exact), 0, 255)
            bias = " ".join(f"{b:+.2f}" for b in difference.mean(axis=(0, 1, 2)))
            cells += [bias, f"{np.abs(difference).mean():.2f}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    given = [Path(arg) for arg in sys.argv[1:]]
    if not given:
        given = [Path(tempfile.mkdtemp()) / "vtest_h264.mp4"]
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(OPENCV_VTEST), "-t", "3", "-c:v", "libx264",
                        "-pix_fmt", "yuv420p", str(given[0])], check=True)  # fmt: skip
    main(given)
