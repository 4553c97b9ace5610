"""Peak memory of a job on a 60-minute video against a 1-minute one, chunked (what jobs run) and, as the
baseline in the same run, with every sampled frame decoded into memory first (the pipeline before chunking).

    python bench/job_memory.py [--workdir /tmp/tzn-bench-memory]

Videos: generated 64x48 H.264 at 4 fps (small resolution; the backbone resizes every frame to 112 x 112, so
a sampled frame costs the same 37.6 KB whatever the source). Model: a constructed case, labelled as one: a
random-weight CPU-size TZN over the `tiny-2d` backbone (two convolutions), so that an hour of video runs in
about a minute on 2 cores; the frames' memory is the same as with the default backbone at its 4 fps. Each
measurement is a fresh process; peak RSS is its VmHWM (the decoder child is a separate process, not counted).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MEASURE = r"""
import json, resource, sys, time, torch
from engine.localizer import Localizer
from engine.settings import EngineSettings, WorkLimits
from engine.video.decode import DecodeRequest, FrameChunk, decode_frames
from engine.video.source import VideoSource
if __name__ == "__main__":
    checkpoint, video, mode = sys.argv[1:4]
    torch.set_num_threads(2)
    localizer = Localizer(EngineSettings(checkpoint=checkpoint, device="cpu"))
    started = time.perf_counter()
    if mode == "chunked":
        result = localizer.localize(VideoSource.from_path(video), WorkLimits(max_duration_s=4 * 3600, timeout_s=4 * 3600))
    else:
        spec = localizer.spec
        request = DecodeRequest(fps=spec.sample_fps, size=(spec.size, spec.size), timeout_s=4 * 3600)
        frames, times, _ = decode_frames(video, request)
        features = localizer.extractor.features([FrameChunk(torch.from_numpy(frames), times, 0, len(frames))])
        length = features.features.shape[-1]
        localizer.head(features.features[None], torch.ones(1, length, dtype=torch.bool))
    wall = time.perf_counter() - started
    print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "wall_s": wall}))
"""


def tiny_checkpoint(root: Path) -> Path:
    import torch

    from model.checkpoint import CheckpointConfig, FeatureSpec, save_checkpoint
    from model.config import ModelConfig
    from model.tzn import TZN

    torch.manual_seed(1)
    config = ModelConfig(input_dim=64, num_classes=2, embed_dim=32, n_head=4, attn_block_size=16, tau_hidden=8)
    spec = FeatureSpec(feat_stride=2, num_frames=4, default_fps=4.0, backbone="tiny-2d")
    labels = ["walk", "run"]
    return save_checkpoint(TZN(config), root / "tiny", CheckpointConfig(model=config, labels=labels, features=spec))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "tzn-bench-memory")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    checkpoint = tiny_checkpoint(args.workdir)
    script = args.workdir / "measure.py"
    script.write_text(MEASURE)
    print(f"{'video':<8} {'sampled frames':>14} {'path':<26} {'peak RSS MB':>11} {'wall s':>7}")
    peaks = {}
    for minutes in (1, 60):
        video = args.workdir / f"{minutes}min.mp4"
        if not video.exists():
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=4",
                            "-t", str(60 * minutes), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt",
                            "yuv420p", str(video)], check=True)  # fmt: skip
        for mode, label in (("chunked", "chunked (a job)"), ("whole", "all frames in memory")):
            run = subprocess.run([sys.executable, str(script), str(checkpoint), str(video), mode], cwd=REPO,
                                 capture_output=True, text=True, check=True)  # fmt: skip
            measured = json.loads(run.stdout.strip().splitlines()[-1])
            peaks[minutes, mode] = measured["peak_mb"]
            print(f"{minutes:>3} min  {minutes * 60 * 4:>14} {label:<26} {measured['peak_mb']:>11.0f} "
                  f"{measured['wall_s']:>7.1f}", flush=True)  # fmt: skip
    for mode in ("chunked", "whole"):
        print(f"{mode}: 60 min / 1 min peak = {peaks[60, mode] / peaks[1, mode]:.2f}x")


if __name__ == "__main__":
    main()
