"""Soft-NMS time: `model.postprocess.soft_nms` against the tensor-op loop it replaced, in the same run.

    python bench/postprocess.py [--repeats 7] [--workdir /tmp/tzn-bench] [--random-only]

Cases:
- the bundled demo model's candidates on the 10 s and 60 s 224p demo videos (what /localize decodes; the
  service's settings: multiclass gaussian Soft-NMS, 200 segments);
- THUMOS-sized candidate sets: 6 levels x the 2000-candidate top-k = 12000 random segments over 20 classes,
  multiclass (ActionFormer's THUMOS14 recipe) and as one group (its ActivityNet recipe, class-agnostic).
  --random-only runs these alone (no video is made or decoded: bench/device/gpu_check.sh, on a host without ffmpeg).
Both implementations run alternately, median of --repeats; `same` says whether they kept the same segments with
the same labels in the same order (scores agree to float32 rounding). On a CUDA host the tensor loop also runs on
the GPU, where it is bound by kernel launches.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.config import PostprocessConfig  # noqa: E402
from model.postprocess import DEFAULTS, Detections, decode_segments, pairwise_tiou, soft_nms  # noqa: E402


def tensor_loop_soft_nms(segments, scores, labels, settings: PostprocessConfig = DEFAULTS) -> Detections:
    """The baseline: Soft-NMS as it was before it moved to NumPy (one pick per step, a dozen tensor ops over
    every candidate, max_segments steps whether or not anything remains; no voting)."""
    segments, scores = segments.float(), scores.float()
    count = scores.numel()
    candidate_ids = torch.arange(count, device=scores.device)
    remaining = torch.where(scores >= settings.score_floor, scores, float("-inf"))
    picks = min(settings.max_segments, count)
    picked_ids = torch.zeros(picks, dtype=torch.long, device=scores.device)
    picked_scores = torch.zeros(picks, device=scores.device)
    for step in range(picks):
        best_score, best = remaining.max(dim=0)
        picked_ids[step] = best
        picked_scores[step] = best_score
        iou = pairwise_tiou(segments[best].unsqueeze(0), segments)[0]
        if settings.method == "gaussian":
            weight = torch.exp(-iou.square() / settings.sigma)
        elif settings.method == "linear":
            weight = torch.where(iou >= settings.iou_threshold, 1 - iou, torch.ones_like(iou))
        else:
            weight = (iou < settings.iou_threshold).to(iou.dtype)
        if settings.multiclass:
            weight = torch.where(labels == labels[best], weight, torch.ones_like(weight))
        remaining = remaining * weight
        remaining = torch.where((remaining >= settings.score_floor) & (candidate_ids != best), remaining, float("-inf"))
    found = torch.isfinite(picked_scores)
    picked_ids, picked_scores = picked_ids[found], picked_scores[found]
    return Detections(segments[picked_ids], picked_scores, labels[picked_ids])


def demo_candidates(workdir: Path) -> list[tuple[str, tuple, PostprocessConfig]]:
    """The demo model's candidates on the 10 s and 60 s 224p demo videos, with the checkpoint's settings."""
    from bench.service import demo_video
    from engine.localizer import Localizer
    from engine.video.source import VideoSource
    from service.settings import Settings

    settings = Settings(device="cpu")
    localizer = Localizer(settings.engine_settings())
    cases = []
    for duration in (10, 60):
        path = demo_video(workdir, duration, 400, 224)
        _, _, extracted = localizer.extract(VideoSource.from_path(path), settings.localize_limits.work)
        features = extracted.features[None]
        output = localizer.head(features, torch.ones(1, features.shape[-1], dtype=torch.bool), fields=False)
        found = decode_segments(output.cls_logits, output.offsets, output.masks)[0]
        name = f"demo model, {duration} s video"
        cases.append((name, (found.segments, found.scores, found.labels), localizer.head.postprocess))
    return cases


def random_candidates(count: int, classes: int, seed: int = 0) -> tuple:
    generator = torch.Generator().manual_seed(seed)
    starts = torch.rand(count, generator=generator) * 2304
    segments = torch.stack([starts, starts + 1 + torch.rand(count, generator=generator) * 64], dim=-1)
    return segments, torch.rand(count, generator=generator), torch.randint(0, classes, (count,), generator=generator)


def synchronized(result: Detections) -> Detections:
    """Waits for the GPU's queued work (a no-op on the CPU), so that a timing includes it."""
    if result.scores.is_cuda:
        torch.cuda.synchronize()
    return result


def elapsed_ms(function, *args) -> float:
    started = time.perf_counter()
    synchronized(function(*args))
    return (time.perf_counter() - started) * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tzn-bench"))
    parser.add_argument("--random-only", action="store_true", help="skip the demo model's cases")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)

    thumos = PostprocessConfig(snap=False)  # ActionFormer's THUMOS14 defaults
    cases = [] if args.random_only else demo_candidates(args.workdir)
    cases += [
        ("12000 random, 20 classes, multiclass", random_candidates(12000, 20), thumos),
        ("12000 random, one group", random_candidates(12000, 20), thumos.model_copy(update={"multiclass": False})),
    ]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, median of {args.repeats} (ms)")
    header = f"{'case':<38} {'candidates':>10} {'kept':>5} " + " ".join(f"{'loop ' + d:>10}" for d in devices)
    print(header + f" {'soft_nms':>9} {'speed-up':>9} same")
    for name, (segments, scores, labels), settings in cases:
        loop_ms = {device: [] for device in devices}
        new_ms = []
        for _ in range(args.repeats):  # alternate, so that drift on a noisy machine hits both alike
            for device in devices:
                on_device = [t.to(device) for t in (segments, scores, labels)]
                loop_ms[device].append(elapsed_ms(tensor_loop_soft_nms, *on_device, settings))
            new_ms.append(elapsed_ms(soft_nms, segments, scores, labels, settings))
        baseline = tensor_loop_soft_nms(segments, scores, labels, settings)
        kept = soft_nms(segments, scores, labels, settings)
        same = torch.equal(baseline.segments, kept.segments) and torch.equal(baseline.labels, kept.labels)
        same = same and torch.allclose(baseline.scores, kept.scores, rtol=1e-5, atol=1e-7)
        loops = " ".join(f"{statistics.median(loop_ms[d]):>10.1f}" for d in devices)
        new = statistics.median(new_ms)
        print(
            f"{name:<38} {scores.numel():>10} {len(kept):>5} {loops} {new:>9.1f} "
            f"{statistics.median(loop_ms['cpu']) / new:>8.1f}x {same}"
        )


if __name__ == "__main__":
    main()
