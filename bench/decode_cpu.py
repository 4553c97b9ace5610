"""CPU decode stage against ffmpeg's bare decode of the same file, in one process, and where the time goes.

    python bench/decode_cpu.py [--seconds 30] [--repeats 3] [--threads 2] [--fps 8]

Makes a 720p H.264 file (ffmpeg, libx264 "veryfast", testsrc2 + noise), then times, median of --repeats (the
steps run round robin):
- `ffmpeg -threads N -i FILE -f null -`: every frame decoded, nothing converted (the floor);
- the engine's decode stage: each CPU decoder (decord, torchcodec) in its isolated child, sampling --fps (8 by
  default, resnet18-2d's rate; fitted to 112 px by the one resize rule), frames streamed 256 at a time and
  consumed here without a backbone, split into the child's start + probe (open, index, format) and the decode
  itself;
- the same frames with decord in this process (what the child's isolation costs), in batches of
  `DecodeRequest.batch_bytes` of source-size frames as the child decodes them, and, as the baseline, in batches
  of 256 MB (the default before); these two rows also give this process's CPU seconds.
"""

from __future__ import annotations

import argparse
import importlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.video.child import warm_up_children  # noqa: E402
from engine.video.decode import DecodeRequest, Decoding, probe_video  # noqa: E402
from engine.video.frames import fit_frames  # noqa: E402
from engine.video.readers import read_frames, stream_info  # noqa: E402
from engine.video.source import VideoSource  # noqa: E402

IN_PROCESS = ("decord in this process, no child", "the same, in batches of 256 MB (before)")


def make_video(path: Path, seconds: int) -> None:
    source = "testsrc2=size=1280x720:rate=30,noise=alls=12:allf=t+u"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-t", str(seconds), "-c:v", "libx264",
         "-preset", "veryfast", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )  # fmt: skip


def cpu_s() -> float:
    """CPU seconds of this process, all its threads (not its children)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def median_s(steps: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Median wall and CPU seconds (this process's) of each step; the steps run round robin, so drift in the
    machine's load hits them alike."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, run in steps.items():
            started, cpu = time.perf_counter(), cpu_s()
            run()
            times[name].append((time.perf_counter() - started, cpu_s() - cpu))
    return {
        name: (statistics.median(w for w, _ in values), statistics.median(c for _, c in values))
        for name, values in times.items()
    }


def decord_in_process(path: Path, sample_fps: float, size: tuple[int, int], batch_bytes: int) -> int:
    """The child's own steps (stream info, sampling, batches of `batch_bytes` of source-size frames, the resize
    rule) in this process: no child, no transfer (what the isolation costs)."""
    info, index = stream_info(str(path), path.name)
    batch = max(1, min(256, batch_bytes // (info["width"] * info["height"] * 3)))
    batches = read_frames("decord", str(path), path.name, index, sample_fps, batch)
    return sum(len(fit_frames(frames, size)) for frames, _ in batches)


def decode_stage(path: Path, decoder: str, fps: float) -> int:
    """The engine's decode stage: frames of one CPU decoder from its isolated child, consumed without a backbone."""
    request = DecodeRequest(fps=fps, size=(112, 112), timeout_s=600)
    with Decoding(VideoSource.from_path(path), request, decoder) as decoding:
        return sum(len(chunk.times) for chunk in decoding.chunks())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fps", type=float, default=8.0, help="sampling rate of the decode rows")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "v.mp4"
        make_video(path, args.seconds)
        ffmpeg = ["ffmpeg", "-v", "error", "-threads", str(args.threads), "-i", str(path), "-f", "null", "-"]
        warm_up_children()  # the fork server starts once per process, not per request
        importlib.import_module("decord")  # likewise the server's own import, for the in-process row
        steps = {
            f"ffmpeg -threads {args.threads} -f null (floor)": lambda: subprocess.run(ffmpeg, check=True),
            "decoder child: start only": warm_up_children,
            "decoder child: probe (open, index, format)": lambda: probe_video(path),
            "decord: engine decode stage": lambda: decode_stage(path, "decord", args.fps),
            "torchcodec: engine decode stage": lambda: decode_stage(path, "torchcodec", args.fps),
            IN_PROCESS[0]: lambda: decord_in_process(path, args.fps, (112, 112), DecodeRequest.batch_bytes),
            IN_PROCESS[1]: lambda: decord_in_process(path, args.fps, (112, 112), 256 * 2**20),
        }
        rows = median_s(steps, args.repeats)
    floor = next(iter(rows.values()))[0]
    print(f"{args.seconds} s 720p H.264, sampled at {args.fps:g} fps to 112 px, median of {args.repeats}")
    print(f"| {'step':<48} | {'s':>6} | {'x ffmpeg':>8} | {'CPU s':>6} |\n|---|---|---|---|")
    for name, (seconds, cpu) in rows.items():
        shown = f"{cpu:.2f}" if name in IN_PROCESS else ""
        print(f"| {name:<48} | {seconds:>6.2f} | {seconds / floor:>8.2f} | {shown:>6} |")


if __name__ == "__main__":
    main()
