"""CPU decode stage against ffmpeg's bare decode of the same file, in one process, and where the time goes.

    python bench/decode_cpu.py [--seconds 30] [--repeats 3] [--threads 2]

Makes a 720p H.264 file (ffmpeg, libx264 "veryfast", testsrc2 + noise), then times, median of --repeats (the
steps run round robin):
- `ffmpeg -threads N -i FILE -f null -`: every frame decoded, nothing converted (the floor);
- the service's decode stage: decord in its isolated child, resnet18-2d sampling (8 fps, 112 px), split into
  the child's start + open/scan and the decode itself; both the chunked decoder that /localize and jobs run
  (service.chunks, frames streamed 256 at a time, consumed here without a backbone) and the whole-video one;
- the same frames with decord in this process (what the child's isolation costs);
- torchcodec on the CPU (FFmpeg threads = N), same frames by time, resize in torch.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.chunks import decode_chunks  # noqa: E402
from service.decode import (  # noqa: E402
    _open_reader,
    _video_info,
    decode_frames,
    probe_video,
    sample_indices,
    warm_up_decoder,
)
from service.torchcodec_video import decode_sampled  # noqa: E402


def make_video(path: Path, seconds: int) -> None:
    source = "testsrc2=size=1280x720:rate=30,noise=alls=12:allf=t+u"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-t", str(seconds), "-c:v", "libx264",
         "-preset", "veryfast", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )  # fmt: skip


def median_s(steps: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each step; the steps run round robin, so drift in the machine's load hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, run in steps.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def decord_in_process(path: Path, sample_fps: float, size: tuple[int, int]) -> int:
    """The chunked child's own steps (open, info, sampling, resizing reader, batches of 256) in this process:
    no child, no transfer (what the isolation costs)."""
    _, starts, end_s = _video_info(_open_reader(str(path), path.name), path.name)
    indices = sample_indices(starts, end_s, sample_fps)
    reader = _open_reader(str(path), path.name, size)
    return sum(len(reader.get_batch(indices[i : i + 256].tolist())) for i in range(0, len(indices), 256))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "v.mp4"
        make_video(path, args.seconds)
        ffmpeg = ["ffmpeg", "-v", "error", "-threads", str(args.threads), "-i", str(path), "-f", "null", "-"]
        warm_up_decoder()  # the fork server starts once per process, not per request
        importlib.import_module("decord")  # likewise the server's own import, for the in-process row
        steps = {
            f"ffmpeg -threads {args.threads} -f null (floor)": lambda: subprocess.run(ffmpeg, check=True),
            "decord child: start only": warm_up_decoder,
            "decord child: probe (open + index)": lambda: probe_video(path),
            "decord, chunked: service decode stage (8 fps, 112 px)": lambda: sum(
                len(c.frames) for c in decode_chunks(path, sample_fps=8.0, size=(112, 112), timeout_s=600)
            ),
            "decord, whole video (8 fps, 112 px)": lambda: decode_frames(path, sample_fps=8.0, size=(112, 112)),
            "decord in this process, no child (8 fps, 112 px)": lambda: decord_in_process(path, 8.0, (112, 112)),
            f"torchcodec CPU, {args.threads} threads (8 fps, 112 px)": lambda: decode_sampled(
                path, sample_fps=8.0, size=(112, 112), threads=args.threads
            ),
        }
        rows = median_s(steps, args.repeats)
    floor = next(iter(rows.values()))
    print(f"{args.seconds} s 720p H.264, median of {args.repeats}")
    print(f"| {'step':<48} | {'s':>6} | {'x ffmpeg':>8} |\n|---|---|---|")
    for name, seconds in rows.items():
        print(f"| {name:<48} | {seconds:>6.2f} | {seconds / floor:>8.2f} |")


if __name__ == "__main__":
    main()
