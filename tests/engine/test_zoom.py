"""The temporal zoom (engine/zoom.py): window decoding, its plan and refiners, and a zoom checkpoint served end to
end by the Localizer on a real video."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import JobCancelledError
from engine.features.extractor import FeatureExtractor
from engine.localizer import FEATURES_SHARE, Localizer
from engine.settings import EngineSettings, WorkLimits
from engine.trace import window_cover
from engine.video.decode import DecodeRequest, Decoding, FrameChunk, decode_frames
from engine.video.sampling import sample_ticks
from engine.video.source import VideoSource
from engine.zoom import (
    FrameSpool,
    ZoomedPass,
    ZoomSettings,
    hybrid_rows,
    pool_clips,
    spool_every,
    spooled_ticks,
    tick_spans,
)
from model.backbones import SPECS
from model.refiner import field_boundary
from service.answers import answer_json
from tests.conftest import detector_zoom, ffmpeg

LIMITS = WorkLimits(max_duration_s=600, timeout_s=120)
SAMPLE = "service/demo/sample.mp4"


def test_spans_keep_exactly_the_whole_videos_ticks_inside_them():
    whole = sample_ticks(0.0, 10.0, 16.0)
    spans = ((1.0, 2.5), (7.9, 8.3))
    inside = sample_ticks(0.0, 10.0, 16.0, spans)
    expected = whole[((whole >= 1.0) & (whole < 2.5)) | ((whole >= 7.9) & (whole < 8.3))]
    np.testing.assert_array_equal(inside, expected)
    assert len(sample_ticks(0.0, 10.0, 16.0, ((20.0, 21.0),))) == 0


@pytest.mark.parametrize("decoder", ["decord", "torchcodec"])
@pytest.mark.parametrize("video", ["clip.mp4", "vfr.mp4"])
def test_a_window_decode_gives_the_frames_the_whole_decode_gives_there(media, decoder, video):
    spans = ((0.4, 1.3), (2.2, 2.9))
    whole, whole_times, info = decode_frames(media / video, DecodeRequest(fps=16, size=(112, 112)), decoder)
    window, window_times, _ = decode_frames(media / video, DecodeRequest(fps=16, size=(112, 112), spans=spans), decoder)
    ticks = sample_ticks(info.frame_times[0], info.duration_s, 16)
    keep = ((ticks >= 0.4) & (ticks < 1.3)) | ((ticks >= 2.2) & (ticks < 2.9))
    assert 0 < len(window_times) < len(whole_times)
    np.testing.assert_array_equal(window_times, whole_times[keep])
    np.testing.assert_array_equal(window, whole[keep])


def _spooled_decode(path, spool: FrameSpool, fps: float, chunk_frames: int = 7):
    request = DecodeRequest(fps=fps, size=(112, 112), chunk_frames=chunk_frames)
    with Decoding(VideoSource.from_path(path), request, "decord") as decoding:
        chunks = list(spool.thin(decoding.chunks()))
        info = decoding.info
    return chunks, info


@pytest.fixture(scope="module")
def late_start(tmp_path_factory) -> Path:
    """H.264 whose first frame is presented at 1.3 s, as streams cut from a broadcast are (decord's index, which
    gives every path its frame times, counts from the first frame: both passes must agree on that)."""
    path = tmp_path_factory.mktemp("late") / "late.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "3", "-c:v", "libx264", "-preset", "ultrafast",
        "-pix_fmt", "yuv420p", "-output_ts_offset", "1.3", str(path),
    )  # fmt: skip
    return path


@pytest.mark.parametrize("video", ["clip.mp4", "vfr.mp4", "camera", "late"])
def test_one_decode_at_the_zoom_rate_gives_both_passes_the_frames_of_their_own_decodes(
    media, camera_footage, late_start, video
):
    """The coarse pass's frames thinned from a 16 fps decode are those a 4 fps decode gives, and the windows read
    back from the spool are those a window decode gives: byte for byte, on generated and on camera footage, and
    on a video that starts late."""
    path = {"camera": camera_footage, "late": late_start}.get(video, media / video)
    spool = FrameSpool(spool_every(4.0, 16.0), budget_bytes=2**30)
    chunks, info = _spooled_decode(path, spool, 16.0)
    first_s = info.frame_times[0]
    assert spool.kept and spool.count == len(sample_ticks(first_s, info.duration_s, 16.0))
    alone, alone_times, _ = decode_frames(path, DecodeRequest(fps=4.0, size=(112, 112)), "decord")
    np.testing.assert_array_equal(np.concatenate([c.times for c in chunks]), alone_times)
    np.testing.assert_array_equal(torch.cat([c.frames for c in chunks]).numpy(), alone)
    # the chunks count the coarse pass's frames, as a decode at 4 fps numbers them (progress)
    assert [c.first for c in chunks] == np.cumsum([0] + [len(c.times) for c in chunks[:-1]]).tolist()
    assert {c.total for c in chunks} == {len(alone_times)}
    begin = first_s + 0.4
    spans = ((begin, begin + 0.9), (begin + 1.8, begin + 2.5))
    window, window_times, _ = decode_frames(path, DecodeRequest(fps=16.0, size=(112, 112), spans=spans), "decord")
    frames, times = spool.read(spooled_ticks(first_s, info.duration_s, 16.0, spans))
    assert len(times) > 20
    np.testing.assert_array_equal(times, window_times)
    np.testing.assert_array_equal(frames.numpy(), window)
    spool.close()


def test_a_chunk_whose_coarse_frames_do_not_match_its_coarse_ticks_is_an_error():
    """FrameChunk.coarse must hold one frame per coarse tick of its chunk: a decoder that sent other frames is a
    bug, said at once rather than served."""
    spool = FrameSpool(2, budget_bytes=2**20)
    frames = torch.zeros(4, 8, 8, 3, dtype=torch.uint8)
    good = FrameChunk(frames, np.arange(4) / 8, 0, 4, torch.zeros(2, 4, 4, 3, dtype=torch.uint8))
    assert [len(chunk.frames) for chunk in spool.thin([good])] == [2]
    bad = FrameChunk(frames, np.arange(4) / 8, 0, 4, torch.zeros(3, 4, 4, 3, dtype=torch.uint8))
    with pytest.raises(RuntimeError, match="3 coarse frames for 2 coarse ticks"):
        list(spool.thin([bad]))
    spool.close()


def test_a_spool_over_its_budget_keeps_nothing(media):
    small = FrameSpool(4, budget_bytes=112 * 112 * 3 * 10)  # 10 frames; the clip has 48 at 16 fps
    chunks, _ = _spooled_decode(media / "clip.mp4", small, 16.0)
    assert not small.kept and sum(len(c.times) for c in chunks) == 12 and small.file is None
    with pytest.raises(RuntimeError, match="not kept"):
        small.read(np.arange(3))


def test_a_spool_that_the_disk_refuses_keeps_nothing_and_says_so(media, tmp_path, caplog):
    refused = FrameSpool(4, budget_bytes=2**30, directory=tmp_path / "missing")
    chunks, _ = _spooled_decode(media / "clip.mp4", refused, 16.0)
    assert not refused.kept and sum(len(c.times) for c in chunks) == 12  # the coarse pass goes on
    assert "could not be kept on disk" in caplog.text


def test_a_second_decode_starts_the_spool_again(media):
    spool = FrameSpool(4, budget_bytes=2**30)
    _spooled_decode(media / "clip.mp4", spool, 16.0)
    _spooled_decode(media / "clip.mp4", spool, 16.0)  # as after an NVDEC fallback: the CPU decoder's attempt
    assert spool.count == 48 and len(np.concatenate(spool.times)) == 48
    with pytest.raises(RuntimeError, match="tick 48"):
        spool.read(np.array([47, 48]))
    spool.close()


def test_the_spool_serves_zoom_rates_that_are_whole_multiples_of_the_coarse_rate():
    assert spool_every(4.0, 16.0) == 4 and spool_every(2.0, 8.0) == 4 and spool_every(4.0, 4.0) == 1
    assert spool_every(3.0, 8.0) is None and spool_every(8.0, 4.0) is None


def test_pooled_frame_features_are_the_clip_features_a_request_computes(media):
    spec = SPECS["resnet18-2d"]
    extractor = FeatureExtractor(spec, None, torch.device("cpu"))
    request = DecodeRequest(fps=spec.sample_fps, size=(spec.size, spec.size), chunk_frames=7)
    with Decoding(VideoSource.from_path(media / "clip.mp4"), request, "decord") as decoding:
        clips = extractor.features(decoding.chunks())
    with Decoding(VideoSource.from_path(media / "clip.mp4"), request, "decord") as decoding:
        frames = extractor.frame_features(decoding.chunks())
    pooled = pool_clips(frames.rows, spec.frames_per_clip, spec.clip_stride)
    torch.testing.assert_close(pooled, clips.features, rtol=1e-4, atol=1e-4)
    assert frames.backbone_flops == clips.backbone_flops == len(frames.times) * extractor.flops_per_unit


def test_the_field_boundary_is_the_zero_crossing_read_between_frames():
    times = torch.arange(32, dtype=torch.float64)[None].repeat(3, 1) / 16
    truths = torch.tensor([0.93, 1.0, 1.51], dtype=torch.float64)
    fields = (times - truths[:, None]).clamp(-0.5, 0.5)
    torch.testing.assert_close(field_boundary(fields, times), truths)
    no_crossing = torch.full((1, 32), 0.5, dtype=torch.float64)  # every frame: "the boundary is 0.5 s before me"
    assert field_boundary(no_crossing, times[:1]).item() == pytest.approx(float(times[0].median()) - 0.5)


def test_the_plan_puts_a_window_on_the_zoom_grid_around_each_boundary_and_decodes_only_those_ticks():
    zoom = ZoomedPass(ZoomSettings(zoom_fps=16, window_s=0.5, min_score=0.2, max_candidates=2, refiner="none"), None)
    segments = np.array([[2.0, 4.0], [9.7, 10.0], [5.0, 6.0], [0.05, 1.0]])
    scores = np.array([0.9, 0.25, 0.1, 0.3])  # the third is below min_score; max_candidates keeps the best two
    plan = zoom.plan(segments, scores, first_s=0.0, end_s=10.0)
    np.testing.assert_array_equal(plan.owners, [0, 0, 3, 3])
    np.testing.assert_array_equal(plan.kinds, [0, 1, 0, 1])
    assert plan.ticks.shape == (4, 16)
    np.testing.assert_allclose(plan.centres_s, [2.0, 4.0, 0.05, 1.0])
    assert np.abs(plan.window_centres_s - plan.centres_s).max() <= 1 / 32  # the nearest grid placement
    assert plan.ticks.min() == 0  # the window around 0.05 s is clamped to the first tick
    decoded = sample_ticks(0.0, 10.0, 16, plan.spans)
    np.testing.assert_array_equal(np.round(decoded * 16).astype(int), plan.needed)
    assert tick_spans(np.array([3, 4, 5, 9]), 0.0, 16) == ((2.5 / 16, 5.5 / 16), (8.5 / 16, 9.5 / 16))
    refined = zoom.apply(segments, plan, np.array([2.1, 1.9, 0.2, 0.9]))  # the first would end before it starts
    np.testing.assert_array_equal(refined[0], segments[0])
    np.testing.assert_array_equal(refined[3], [0.2, 0.9])


def test_a_zoom_checkpoint_looks_coarsely_everywhere_and_closely_in_its_windows(zoom_checkpoint):
    localizer = Localizer(EngineSettings(checkpoint=zoom_checkpoint, device="cpu"))
    reported = []
    found = localizer.localize(VideoSource.from_path(SAMPLE), LIMITS, progress=lambda *step: reported.append(step))
    shares = [share for _, share in reported]
    assert shares == sorted(shares) and shares[-1] == pytest.approx(FEATURES_SHARE)  # both passes, in order
    assert ("features", FEATURES_SHARE / 2) in reported  # the coarse pass ends halfway; the windows are read back
    zoom, flops, duration = found.zoom, found.flops, found.info.duration_s
    assert zoom["coarse_fps"] == 2.0 and zoom["candidates"] == 3 and zoom["refiner"] == "bdr"
    assert zoom["decode"] == "one pass"
    assert zoom["frames"]["coarse"] == len(sample_ticks(0.0, duration, 2.0))
    windows = tuple(tuple(w) for w in zoom["windows"])
    window_ticks = np.round(sample_ticks(0.0, duration, 16.0, windows) * 16).astype(int)
    on_coarse = window_ticks % 8 == 0  # the coarse pass computed these frames: they do not run again
    assert on_coarse.any() and zoom["frames"]["zoom"] == (~on_coarse).sum() <= 6 * 16
    frames = zoom["frames"]["coarse"] + zoom["frames"]["zoom"]
    assert flops["backbone"] == frames * localizer.extractor.flops_per_unit
    assert flops["backbone_dense"] == len(sample_ticks(0.0, duration, 8.0)) * localizer.extractor.flops_per_unit
    assert flops["backbone_saved_ratio"] == pytest.approx(1 - frames / len(sample_ticks(0.0, duration, 8.0)))
    assert all(0 <= s["start_s"] < s["end_s"] <= duration for s in found.segments)
    answer = answer_json(found, localizer, "r1")
    assert answer["zoom"] == zoom and answer["flops"]["backbone_saved_ratio"] > 0.3  # the schema drops no key
    depth = answer_json(found, localizer, "r1", include=frozenset({"depth"}))["depth"]  # include=depth marks them
    rates = np.array(depth["sample_fps"])
    assert len(rates) == len(depth["times_s"]) and rates.min() == 2.0 and 2.0 < rates.max() <= 16.0
    times = np.array(depth["times_s"])
    for low, high in windows:  # every window raises the rate of the points whose span it meets
        assert rates[np.abs(times - (low + high) / 2) < 0.5].max() > 2.0


def test_window_cover_is_the_share_of_each_positions_span_inside_the_windows():
    times = np.array([0.5, 1.5, 2.5, 3.5])  # spans [0, 1), [1, 2), [2, 3), [3, 4)
    np.testing.assert_allclose(window_cover(times, [[0.25, 0.75], [1.0, 2.5]]), [0.5, 1.0, 0.5, 0.0])
    assert window_cover(times, []).tolist() == [0.0] * 4


@pytest.mark.parametrize("video", ["camera", "late"])
def test_one_decode_and_two_decodes_give_the_same_answer(zoom_checkpoint, camera_footage, late_start, video):
    """TZN_ZOOM_SPOOL_MB=0 decodes the windows again; the default keeps them from the one decode. Both see the
    same frames (the test above), so both find the same actions, on camera footage and on a video that starts
    late."""
    path = {"camera": camera_footage, "late": late_start}[video]
    answers = {}
    for spool_mb in (1024.0, 0.0):
        localizer = Localizer(EngineSettings(checkpoint=zoom_checkpoint, device="cpu", zoom_spool_mb=spool_mb))
        answers[spool_mb] = localizer.localize(VideoSource.from_path(path), LIMITS)
    one, two = answers[1024.0], answers[0.0]
    assert (one.zoom["decode"], two.zoom["decode"]) == ("one pass", "two passes")
    assert one.zoom["frames"] == two.zoom["frames"] and one.zoom["windows"] == two.zoom["windows"]
    assert one.flops["backbone"] == two.flops["backbone"]
    assert [s["label"] for s in one.segments] == [s["label"] for s in two.segments] and one.segments
    for a, b in zip(one.segments, two.segments, strict=True):
        assert a["start_s"] == pytest.approx(b["start_s"], abs=1e-3) and a["end_s"] == pytest.approx(
            b["end_s"], abs=1e-3
        )
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)


def test_a_zoom_request_cancelled_after_its_coarse_pass_stops_and_lets_its_spool_go(zoom_checkpoint, tmp_path):
    settings = EngineSettings(checkpoint=zoom_checkpoint, device="cpu", temp_dir=tmp_path)
    localizer, stages = Localizer(settings), []

    def cancelled() -> bool:  # once the coarse pass is through the backbone, before the windows
        return ("features", FEATURES_SHARE / 2) in stages

    with pytest.raises(JobCancelledError) as stopped:  # its traceback, kept, holds the request's frames alive
        localizer.localize(
            VideoSource.from_path(SAMPLE), LIMITS, progress=lambda *s: stages.append(s), cancelled=cancelled
        )
    assert stages[-1] == ("features", FEATURES_SHARE / 2)  # the windows never went through the backbone
    fds = Path("/proc/self/fd")
    held = [os.readlink(fd) for fd in fds.iterdir() if os.path.islink(fd) and str(tmp_path) in os.readlink(fd)]
    assert held == [] and stopped.value  # the spool's file (unlinked at birth) is closed, not left to the GC


def test_a_zoom_rate_that_is_not_a_multiple_of_the_coarse_rate_decodes_the_windows_again(zoom_checkpoint, tmp_path):
    import json
    import shutil

    other = shutil.copytree(zoom_checkpoint, tmp_path / "zoom-5fps")
    document = json.loads((other / "zoom.json").read_text())
    document["settings"]["zoom_fps"] = 5.0  # 2.5 times the coarse 2 fps
    (other / "zoom.json").write_text(json.dumps(document))
    found = Localizer(EngineSettings(checkpoint=other, device="cpu")).localize(VideoSource.from_path(SAMPLE), LIMITS)
    windows = tuple(tuple(w) for w in found.zoom["windows"])
    assert found.zoom["decode"] == "two passes" and windows
    assert found.zoom["frames"]["zoom"] == len(sample_ticks(0.0, found.info.duration_s, 5.0, windows))  # none reused


def test_a_zoom_checkpoint_whose_refiner_is_none_keeps_the_coarse_boundaries(zoom_checkpoint):
    coarse = ZoomedPass.load(zoom_checkpoint, SPECS["resnet18-2d"], torch.device("cpu"), refiner="none")
    assert coarse.refiner is None
    segments, scores = np.array([[1.0, 3.0]]), np.array([0.5])
    plan = coarse.plan(segments, scores, 0.0, 10.0)
    np.testing.assert_array_equal(coarse.apply(segments, plan, coarse.refine(plan, torch.zeros(0, 512), 0.0)), segments)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda d: (d / "zoom.json").write_text('{"settings": {"zoom_fps": 16, "windw_s": 1}, "refiner": {}}'),
            "windw_s",
        ),
        (lambda d: (d / "refiner.safetensors").unlink(), "refiner.safetensors is missing"),
        (
            lambda d: (d / "zoom.json").write_text(
                (d / "zoom.json").read_text().replace('"mode": "bdr"', '"mode": "regression"')
            ),
            "is 'regression', not 'bdr'",
        ),
        (  # features from a clip backbone: there are no per-frame features to pool at another rate
            lambda d: (d / "config.json").write_text(
                (d / "config.json")
                .read_text()
                .replace('"resnet18-2d"', '"r2plus1d_18"')
                .replace('"feat_stride": 2', '"feat_stride": 4')
                .replace('"num_frames": 4', '"num_frames": 16')
            ),
            "needs a per-frame backbone; r2plus1d_18 computes clips",
        ),
    ],
)
def test_a_broken_zoom_checkpoint_stops_start_up_with_one_line(zoom_checkpoint, tmp_path, damage, message):
    import shutil

    from engine.errors import ConfigurationError
    from engine.preflight import check

    broken = shutil.copytree(zoom_checkpoint, tmp_path / "zoom")
    damage(broken)
    with pytest.raises(ConfigurationError, match=message):
        check(EngineSettings(checkpoint=broken, device="cpu"))


def test_a_served_zoom_with_a_verifier_rescores_the_candidates_it_looked_at_and_answers_best_first(
    zoom_checkpoint, tmp_path
):
    import json
    import shutil

    from safetensors.torch import save_file

    from engine.zoom import VERIFIER_FILE, ZOOM_FILE
    from model.refiner import BoundaryVerifier, RefinerConfig

    verified = shutil.copytree(zoom_checkpoint, tmp_path / "verified")
    torch.manual_seed(1)
    config = RefinerConfig(width=16, clip_s=0.5, mode="presence")
    save_file(BoundaryVerifier(config).state_dict(), verified / VERIFIER_FILE)
    document = json.loads((verified / ZOOM_FILE).read_text())
    document["settings"]["verify_weight"], document["verifier"] = 1.0, config.to_dict()
    (verified / ZOOM_FILE).write_text(json.dumps(document))
    plain, checked = (
        Localizer(EngineSettings(checkpoint=c, device="cpu")).localize(VideoSource.from_path(SAMPLE), LIMITS)
        for c in (zoom_checkpoint, verified)
    )
    assert (plain.zoom["verify_weight"], checked.zoom["verify_weight"]) == (0.0, 1.0)
    assert checked.zoom["windows"] == plain.zoom["windows"] and checked.flops["backbone"] == plain.flops["backbone"]
    scores = [s["score"] for s in checked.segments]
    assert scores == sorted(scores, reverse=True)
    before = {(s["label"], round(s["start_s"], 6), round(s["end_s"], 6)): s["score"] for s in plain.segments}
    after = {(s["label"], round(s["start_s"], 6), round(s["end_s"], 6)): s["score"] for s in checked.segments}
    lowered = [after[k] < before[k] for k in before.keys() & after.keys()]
    assert lowered and all(after[k] <= before[k] for k in before.keys() & after.keys())
    assert any(lowered)  # a random verifier is unsure (0 < p < 1) of each of the 3 candidates it looked at


def test_the_hybrid_grid_keeps_what_was_computed_and_interpolates_between():
    known = np.array([0.0, 4.0, 8.0, 5.0, 6.0, 4.0, 2.5])  # coarse ticks, window ticks, a repeat, a fractional tick
    rows = torch.tensor([[0.0], [4.0], [8.0], [50.0], [60.0], [-1.0], [25.0]])
    grid = hybrid_rows(known, rows, 10)[:, 0]
    # 2 lies between 0 and 2.5 (0 -> 25), 3 between 2.5 and 4; the first of two rows at tick 4 wins; past 8, 8 holds
    expected = [0.0, 10.0, 20.0, 25 + (4 - 25) * 0.5 / 1.5, 4.0, 50.0, 60.0, 34.0, 8.0, 8.0]
    torch.testing.assert_close(grid, torch.tensor(expected))


def test_the_detector_refiner_detects_again_on_the_coarse_frames_and_the_windows(zoom_checkpoint, tmp_path_factory):
    """The answer is the zoom rate's detector run on the grid a dense 16 fps pass would have had, with the frames
    the request did not compute interpolated: checked against features of every 16 fps frame, computed here."""
    from model.flops import output_flops

    directory = detector_zoom(zoom_checkpoint, tmp_path_factory.mktemp("detector"))
    localizer = Localizer(EngineSettings(checkpoint=directory, device="cpu"))
    found = localizer.localize(VideoSource.from_path(SAMPLE), LIMITS)
    zoom, duration = found.zoom, found.info.duration_s
    assert zoom["refiner"] == "detector" and zoom["decode"] == "one pass" and zoom["candidates"] == 3
    with localizer.frames(VideoSource.from_path(SAMPLE), LIMITS, fps=16.0) as (_, _, chunks):
        dense = localizer.extractor.frame_features(chunks)
    ticks = np.arange(len(dense.times))
    windows = tuple(tuple(w) for w in zoom["windows"])
    computed = (ticks % 8 == 0) | np.isin(ticks, np.round(sample_ticks(0.0, duration, 16.0, windows) * 16))
    assert zoom["frames"]["coarse"] + zoom["frames"]["zoom"] == computed.sum() < len(ticks) / 2
    grid = hybrid_rows(ticks[computed], dense.rows[torch.as_tensor(computed)], len(ticks))
    segments, scores, labels, output, _ = localizer.zoom.fine(grid, 0.0, duration)
    served = [(s["start_s"], s["end_s"], s["score"]) for s in found.segments]
    expected = [(a, b, c) for (a, b), c in zip(segments.tolist(), scores.tolist(), strict=True)][: len(served)]
    np.testing.assert_allclose(np.array(served), np.array(expected), atol=2e-3)  # the answer rounds to 3 decimals
    assert [s["label"] for s in found.segments] == [localizer.config.labels[c] for c in labels[: len(served)]]
    coarse_only = Localizer(EngineSettings(checkpoint=zoom_checkpoint, device="cpu")).localize(
        VideoSource.from_path(SAMPLE), LIMITS
    )  # the same coarse pass, refined in its windows: the answer's head FLOPs differ by the detector's
    fine_flops = output_flops(localizer.zoom.fine.head.checkpoint.model, output, batch=1).total
    assert found.flops["head"] == pytest.approx(coarse_only.flops["head"] + fine_flops, rel=1e-6)
    assert found.flops["backbone"] == coarse_only.flops["backbone"]


@pytest.mark.parametrize(
    ("fine_spec", "message"),
    [
        ({"default_fps": 8.0}, "one feature per frame at the zoom rate \\(16 fps\\)"),
        ({"num_frames": 4, "feat_stride": 2}, "trained on num_frames 4, feat_stride 2"),
        ({"labels": ["a", "b", "c", "d"]}, "are not the coarse detector's"),
    ],
)
def test_a_detector_refiner_that_does_not_fit_stops_start_up(zoom_checkpoint, tmp_path_factory, fine_spec, message):
    from engine.errors import ConfigurationError
    from engine.preflight import check

    with pytest.raises(ConfigurationError, match=message):
        check(
            EngineSettings(
                checkpoint=detector_zoom(zoom_checkpoint, tmp_path_factory.mktemp("detector"), **fine_spec),
                device="cpu",
            )
        )


def test_a_detector_refiner_without_its_checkpoint_or_with_a_verifier_is_refused(zoom_checkpoint, tmp_path_factory):
    import shutil

    from engine.errors import ConfigurationError
    from engine.preflight import check
    from engine.zoom import FINE_DIR

    directory = detector_zoom(zoom_checkpoint, tmp_path_factory.mktemp("detector"))
    (directory / FINE_DIR / "model.safetensors").unlink()
    with pytest.raises(ConfigurationError, match="fine/model.safetensors: missing"):
        check(EngineSettings(checkpoint=directory, device="cpu"))
    shutil.rmtree(directory / FINE_DIR)
    with pytest.raises(ConfigurationError, match="'detector' refiner: checkpoint directory .* does not exist"):
        check(EngineSettings(checkpoint=directory, device="cpu"))
    with pytest.raises(ValueError, match="a verify_weight does not apply"):
        ZoomSettings(refiner="detector", verify_weight=0.5)
