"""NVDEC's parts cut at keyframes against even cuts, on one file, in one run (engine/video/nvdec.py, `split_ticks`).

    python bench/nvdec_parts.py [--video FILE] [--seconds 60] [--engines 7] [--repeats 3]

Without --video, a 60 s 720p H.264 file as bench/http_load.py makes it (x264's default GOP: keyframes up to 8.3 s
apart). For both ways of cutting the parts one video gets when it has the engines to itself: each part's span,
the source frames its decoder decodes (from the keyframe before its first tick to its last tick), their sum
(the work) and the largest (the request's critical path), from the frame index. Then the median wall time of
`NvdecPool.decode` over the whole video with each cut, alternating: on a CUDA host through NVDEC, elsewhere
through torchcodec on the CPU (where 2 cores do all the parts' work, so the time follows the sum).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.http_load import make_video  # noqa: E402
from engine.video.decode import DecodeRequest, probe_video  # noqa: E402
from engine.video.info import VideoInfo  # noqa: E402
from engine.video.nvdec import NvdecPool, part_length_s, split_ticks  # noqa: E402
from engine.video.sampling import sample_ticks  # noqa: E402
from engine.video.source import VideoSource  # noqa: E402

REQUEST = DecodeRequest(fps=8.0, size=(112, 112), timeout_s=600)


def decoded_frames(info: VideoInfo, parts: list[np.ndarray]) -> list[int]:
    """Per part, the source frames its decoder decodes: from the keyframe at or before its first tick's frame to
    its last tick's frame."""
    keys = np.asarray([info.frame_at(key) for key in info.key_times] or [0])
    counts = []
    for part in parts:
        first, last = info.frame_at(float(part[0])), info.frame_at(float(part[-1]))
        counts.append(last - int(keys[keys <= first].max(initial=0)) + 1)
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--engines", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    workdir = Path("/tmp/tzn-bench-nvdec-parts")
    workdir.mkdir(parents=True, exist_ok=True)
    video = args.video or make_video(workdir / f"{args.seconds}s-720p.mp4", args.seconds)
    info = probe_video(video)
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    ticks = sample_ticks(info.frame_times[0], info.duration_s, REQUEST.fps)
    part_s = part_length_s(info.duration_s - info.frame_times[0], args.engines)
    print(f"{video.name}: {info.frames} frames, {info.duration_s:.1f} s, keyframes at "
          f"{', '.join(f'{key:.2f}' for key in info.key_times)} s; {args.engines} engines, parts of {part_s:.2f} s")  # fmt: skip
    cuts = {"even cuts": (), "cut at keyframes": info.key_times}
    for name, keys in cuts.items():
        parts = split_ticks(ticks, REQUEST.fps, part_s, keys)
        counts = decoded_frames(info, parts)
        spans = ", ".join(f"{part[0]:.1f}-{part[-1]:.1f}" for part in parts)
        print(
            f"{name:<17} parts {spans}; frames decoded {sum(counts)} (source {info.frames}), largest part {max(counts)}"
        )
    pool = NvdecPool(device, engines=args.engines)
    source = VideoSource.from_path(video)
    times: dict[str, list[float]] = {name: [] for name in cuts}
    try:
        for _ in range(args.repeats):
            for name, keys in cuts.items():
                started = time.perf_counter()
                frames = sum(
                    len(chunk.times)
                    for chunk in pool.decode(source, info.model_copy(update={"key_times": keys}), REQUEST)
                )
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times[name].append((time.perf_counter() - started) * 1000)
                assert frames == len(ticks)
    finally:
        pool.close()
    how = "NVDEC" if device.type == "cuda" else "torchcodec on the CPU"
    for name, values in times.items():
        print(f"{name:<17} NvdecPool.decode ({how}): median {statistics.median(values):.0f} ms of {args.repeats}")


if __name__ == "__main__":
    main()
