"""Per-stage latency and real-time factor of the engine, per CPU decoder, and HTTP throughput with concurrent clients.

    python bench/service.py [--repeats 3] [--requests 8] [--workdir /tmp/tzn-bench]

Videos are demo videos (training/demo_videos.py) of 10 s and 60 s at 224p (400x224) and 720p (1280x720),
plus 30 s at 720p (the budget case: localized in <= 15 s on a 2-core CPU). The engine runs in this process
with the default settings (bundled demo checkpoint, CPU default backbone, decord), then with torchcodec as the
CPU decoder, alternating, median of --repeats. Throughput runs a real `tzn serve` on 127.0.0.1 and posts the
10 s 224p video from 1, 2 and 4 clients at once (bench/http_load.py measures uploads and GPU hosts).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.localizer import Localizer  # noqa: E402
from engine.video.source import VideoSource  # noqa: E402
from service.settings import Settings  # noqa: E402
from tools.launch import running_server  # noqa: E402
from training.demo_videos import plan_video, write_video  # noqa: E402

CASES = [(10, 400, 224), (60, 400, 224), (10, 1280, 720), (30, 1280, 720), (60, 1280, 720)]


def demo_video(workdir: Path, duration: int, width: int, height: int) -> Path:
    path = workdir / f"demo_{duration}s_{height}p.mp4"
    if not path.exists():
        write_video(plan_video(0, 1234, float(duration), 30, width, height, "test"), path)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=8, help="requests per client count")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tzn-bench"))
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)

    settings = Settings(device="cpu")
    localizers = {
        decoder: Localizer(Settings(device="cpu", decoder=decoder).engine_settings())
        for decoder in ("decord", "torchcodec")
    }
    print(f"cpu cores={os.cpu_count()} backbone={localizers['decord'].spec.name} runtime=torch device=cpu")
    print(f"{'video':<12} {'decoder':<10} {'decode':>8} {'features':>9} {'head':>7} {'post':>6} {'total ms':>9} "
          f"{'RTF':>6} segments")  # fmt: skip
    for duration, width, height in CASES:
        path = demo_video(args.workdir, duration, width, height)
        runs = {decoder: [] for decoder in localizers}
        for _ in range(args.repeats):
            for decoder, localizer in localizers.items():
                source = VideoSource.from_path(path)
                runs[decoder].append(localizer.localize(source, settings.localize_limits.work, min_score=0.2))
        for decoder, answers in runs.items():
            median = {k: statistics.median(r.timing_ms[k] for r in answers) for k in answers[0].timing_ms}
            print(
                f"{duration:>3} s {height:>4}p  {decoder:<10} {median['decode']:>8.0f} {median['features']:>9.0f} "
                f"{median['head']:>7.0f} {median['postprocess']:>6.0f} {median['total']:>9.0f} "
                f"{duration / (median['total'] / 1000):>6.1f} {len(answers[0].segments)}"
            )

    video = demo_video(args.workdir, 10, 400, 224)
    print(f"\nthroughput: {args.requests} requests of {video.name} per row, real server on 127.0.0.1")
    print(f"{'clients':>7} {'req/s':>7} {'video s/s':>10} {'p50 ms':>8} {'p95 ms':>8} statuses")
    env = {"TZN_DEVICE": "cpu", "TZN_MAX_CONCURRENT": "4"}
    with running_server(env, args.workdir / "server.log") as url:

        def post(_: int) -> tuple[int, float]:
            started = time.perf_counter()
            with open(video, "rb") as file:
                status = httpx.post(f"{url}/localize", files={"video": (video.name, file)}, timeout=300).status_code
            return status, (time.perf_counter() - started) * 1000

        for clients in (1, 2, 4):
            started = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(clients) as pool:
                results = list(pool.map(post, range(args.requests)))
            elapsed = time.perf_counter() - started
            latencies = sorted(ms for _, ms in results)
            statuses = sorted({status for status, _ in results})
            p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
            print(
                f"{clients:>7} {args.requests / elapsed:>7.2f} {10 * args.requests / elapsed:>10.1f} "
                f"{statistics.median(latencies):>8.0f} {p95:>8.0f} {statuses}"
            )


if __name__ == "__main__":
    main()
