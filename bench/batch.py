"""`tzn batch` on Ray against a sequential loop of `tzn localize`, over the same videos, in one run.

    python bench/batch.py [--videos 6] [--seconds 10] [--num-cpus 2] [--workdir /tmp/tzn-bench-batch]

Videos: demo videos (training/demo_videos.py) at 224p, 30 fps. Both sides run the served default (the bundled
demo checkpoint, the CPU default backbone) as a user runs them, from the shell: the loop starts `tzn localize`
once per video (model load included, as a shell loop over an archive does); `tzn batch` starts a local Ray
runtime with --num-cpus CPUs and one 1-core actor per CPU (Ray start-up and model loads included). Both
outputs are compared video by video.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from raybatch.batch import activitynet_segments  # noqa: E402
from training.demo_videos import plan_video, write_video  # noqa: E402


def tzn(*args: str) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "tzn", *args], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "TZN_DEVICE": "cpu"})  # fmt: skip
    if run.returncode != 0:
        raise SystemExit(f"tzn {' '.join(args)} failed ({run.returncode}):\n{run.stderr[-3000:]}")
    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tzn-bench-batch"))
    args = parser.parse_args(argv)
    folder = args.workdir / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    videos = []
    for index in range(args.videos):
        path = folder / f"demo_{index:02d}.mp4"
        if not path.exists():
            write_video(plan_video(index, 4321 + index, float(args.seconds), 30, 400, 224, "test"), path)
        videos.append(path)

    started = time.perf_counter()
    sequential = {path.stem: json.loads(tzn("localize", str(path)).stdout) for path in videos}
    loop_s = time.perf_counter() - started

    output = args.workdir / "pred.json"
    output.unlink(missing_ok=True)
    started = time.perf_counter()
    tzn("batch", "--videos", str(folder), "--output", str(output), "--num-cpus", str(args.num_cpus))
    batch_s = time.perf_counter() - started
    batched = json.loads(output.read_text())
    same = sum(batched["results"][v] == activitynet_segments(sequential[v]["segments"]) for v in sequential)
    pipeline_s = sum(v["timing_ms"]["total"] for v in batched["videos"].values()) / 1000

    video_s = args.videos * args.seconds
    print(f"cpu cores={os.cpu_count()} videos={args.videos} x {args.seconds} s 224p, served default checkpoint, cpu")
    print(f"{'run':<34} {'wall s':>7} {'videos/min':>10} {'video s/s':>9}")
    print(f"{'loop of tzn localize (sequential)':<34} {loop_s:>7.1f} {60 * args.videos / loop_s:>10.1f} "
          f"{video_s / loop_s:>9.2f}")  # fmt: skip
    print(f"{f'tzn batch, Ray, {args.num_cpus} CPUs':<34} {batch_s:>7.1f} {60 * args.videos / batch_s:>10.1f} "
          f"{video_s / batch_s:>9.2f}")  # fmt: skip
    print(f"speed-up {loop_s / batch_s:.2f}x; same segments for {same}/{args.videos} videos; "
          f"pipeline time inside the actors {pipeline_s:.1f} s (sum over videos)")  # fmt: skip


if __name__ == "__main__":
    main()
