"""One 30 s 720p request through HTTP: the dense served default against a zoom checkpoint (issue 16, target 5).

    python bench/zoom_request.py --zoom ZOOM_CHECKPOINT [--dense CHECKPOINT] [--repeats 5] [--workdir DIR] [--two-decodes]

The video is a zoom-benchmark video (training/zoom_videos.py) rendered at 1280x720, 30 s, 30 fps. Each checkpoint
is served by a real `tzn serve` on 127.0.0.1 (CPU, decord), one after the other; a client in its own process
posts the video as a raw body once to warm up, then --repeats times (bench/http_load.py's client). Prints the
client-side median, the per-stage medians, the zoom's frames, and in the same run the decode limit: ffmpeg
decoding every frame of the same file on 2 threads. --dense defaults to the bundled demo checkpoint (uniform
8 fps, what is served by default today).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.http_load import STAGES, load_row  # noqa: E402
from tools.launch import running_server  # noqa: E402
from training.demo_videos import write_video  # noqa: E402
from training.zoom_videos import plan_zoom_video  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoom", type=Path, required=True, help="a zoom checkpoint (tools/train_zoom.py)")
    parser.add_argument("--dense", type=Path, default=REPO / "service" / "demo" / "checkpoint")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tzn-zoom-request"))
    parser.add_argument(
        "--two-decodes", action="store_true",
        help="also the zoom with TZN_ZOOM_SPOOL_MB=0 (a video too long for the spool): the coarse pass decoded at its "
        "own rate and size, the windows decoded a second time",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    video = args.workdir / "zoom-720p-30s.mp4"
    if not video.is_file():
        write_video(plan_zoom_video(0, 2026, 30.0, 30, 1280, 720, "test"), video)
    started = time.perf_counter()
    subprocess.run(["ffmpeg", "-v", "error", "-threads", "2", "-i", str(video), "-f", "null", "-"], check=True)
    print(f"{video.name}: ffmpeg -threads 2 decodes every frame in {(time.perf_counter() - started) * 1000:.0f} ms")
    print(f"{'served':<8} {'client p50':>10} " + " ".join(f"{s:>11}" for s in STAGES) + "  zoom frames")
    rows = {}
    served = [("dense", args.dense, {}), ("zoom", args.zoom, {})]
    if args.two_decodes:
        served.append(("zoom x2", args.zoom, {"TZN_ZOOM_SPOOL_MB": "0"}))
    for name, checkpoint, extra in served:
        env = {"TZN_CHECKPOINT": str(checkpoint), "TZN_DEVICE": "cpu", "TZN_DECODER": "decord", **extra}
        with running_server(env, args.workdir / f"{name}.log") as url:
            load_row(url, video, clients=1, requests=1)  # warm-up
            rows[name] = load_row(url, video, clients=1, requests=args.repeats)
            answer = httpx.post(f"{url}/localize?filename=v.mp4", content=video.read_bytes(),
                                headers={"Content-Type": "video/mp4"}, timeout=600).json()  # fmt: skip
        zoom = answer.get("zoom", {}).get("frames", "")
        row = rows[name]
        print(f"{name:<8} {row['client_p50_ms']:>10.0f} " + " ".join(f"{row[s]:>11.0f}" for s in STAGES) + f"  {zoom}")
    ratio = rows["zoom"]["client_p50_ms"] / rows["dense"]["client_p50_ms"]
    print(f"zoom / dense, client-side median: {ratio:.3f}")
    if args.two_decodes:
        print(
            f"zoom x2 / dense, client-side median: {rows['zoom x2']['client_p50_ms'] / rows['dense']['client_p50_ms']:.3f}"
        )
    (args.workdir / "result.json").write_text(json.dumps({"rows": rows, "ratio": ratio}, indent=1))


if __name__ == "__main__":
    main()
