"""Peak memory of the decoder child on a 4K upload: the child decodes at most `DecodeRequest.batch_bytes` of
source-size frames at once (16 MB, the default), against the baseline in the same run, a whole chunk of 256
frames at once (what the child did before: 6.4 GB of 4K RGB).

    python bench/decode_memory.py [--seconds 12] [--workdir /tmp/tzn-bench-decode-memory]

The video: ffmpeg's testsrc2 at 3840x2160, 30 fps, H.264 (ultrafast), made once in --workdir. Each decode
samples 8 fps and fits the frames to 112 x 112, as a request does, in the isolated child, with decord and with
torchcodec. Printed per case: the child's peak RSS (its VmHWM, read every 20 ms while it runs; the high-water
mark only grows) and the wall time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.video.decode import DecodeRequest, Decoding, probe_video  # noqa: E402
from engine.video.source import VideoSource  # noqa: E402

FRAME_4K = 3840 * 2160 * 3


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0  # a child that has exited and not yet been reaped has no memory figures


def measure(video: Path, decoder: str, batch_bytes: int) -> tuple[float, float, int]:
    """(the child's peak RSS MB, wall s, frames) of one decode; the peak is read every 20 ms until the child ends."""
    request = DecodeRequest(fps=8.0, size=(112, 112), timeout_s=600, batch_bytes=batch_bytes)
    started, peak, frames = time.perf_counter(), [0.0], 0
    with Decoding(VideoSource.from_path(video), request, decoder) as decoding:
        pid, done = decoding.child.process.pid, threading.Event()

        def watch() -> None:
            while not done.is_set():
                try:
                    peak[0] = max(peak[0], peak_rss_mb(pid))
                except OSError:  # the child has ended
                    return
                time.sleep(0.02)

        watcher = threading.Thread(target=watch)
        watcher.start()
        for chunk in decoding.chunks():
            frames += len(chunk.times)
        done.set()
        watcher.join()
    return peak[0], time.perf_counter() - started, frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=12)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tzn-bench-decode-memory"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    video = args.workdir / f"uhd-{args.seconds}s.mp4"
    if not video.is_file():
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=3840x2160:rate=30", "-t",
                        str(args.seconds), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                        str(video)], check=True)  # fmt: skip
    probe_video(video)  # starts the decoders' fork server, so that no case below pays for it
    print(f"{video.name}: 3840x2160, {args.seconds} s; the decoder child's peak RSS sampling 8 fps to 112 x 112")
    print(f"{'decoder':<11} {'decoded at once':<28} {'peak MB':>8} {'wall s':>7} {'frames':>7}")
    for decoder in ("decord", "torchcodec"):
        default = DecodeRequest.batch_bytes
        cases = ((f"{default >> 20} MB (default)", default), ("a chunk, 256 frames (before)", 256 * FRAME_4K))
        for label, batch_bytes in cases:
            peak, wall, frames = measure(video, decoder, batch_bytes)
            print(f"{decoder:<11} {label:<28} {peak:>8.0f} {wall:>7.2f} {frames:>7}")


if __name__ == "__main__":
    main()
