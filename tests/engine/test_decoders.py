"""Parity of the CPU decoders on real footage in every format: decord and torchcodec pick the same frames and,
through the one resize rule, give the backbone the same pixels, so a CPU host answers the same whichever it
runs (TZN_DECODER). The GPU's decoder is held to the same files in tests/engine/test_nvdec.py."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from engine.errors import VideoDecodeError
from engine.localizer import Localizer
from engine.settings import WorkLimits
from engine.video.choice import decoder_for, nvdec_decodes
from engine.video.decode import DecodeRequest, decode_frames, probe_video
from engine.video.readers import playable
from engine.video.source import VideoSource
from service.settings import DEMO_CHECKPOINT, Settings
from tests.parity_media import frames_ffmpeg_shows

BACKBONE_INPUT = DecodeRequest(fps=8.0, size=(112, 112))
EXPECTED_FORMATS = {  # pixel format, chroma, bit depth, colour space tag, range; whether NVDEC decodes it
    "untagged_25fps.mp4": ("yuv420p", "4:2:0", 8, None, "tv", True),
    "bt709_2997fps.mp4": ("yuv420p", "4:2:0", 8, "bt709", "tv", True),
    "fullrange_20fps.mp4": ("yuvj420p", "4:2:0", 8, None, "pc", True),
    "bt2020_8bit.mp4": ("yuv420p", "4:2:0", 8, "bt2020nc", "tv", False),  # a matrix NVDEC's conversion lacks
    "yuv444.mp4": ("yuv444p", "4:4:4", 8, None, "tv", False),
    "tenbit.mp4": ("yuv420p10le", "4:2:0", 10, None, "tv", False),
    "cropped_1080p.mp4": ("yuv420p", "4:2:0", 8, None, "tv", True),
    "narrow_444.mp4": ("yuv444p", "4:4:4", 8, None, "tv", False),
    "bframes_mpeg4.avi": ("yuv420p", "4:2:0", 8, None, "tv", False),
    "bframes_h264.avi": ("yuv420p", "4:2:0", 8, None, "tv", True),
    "cut_copy.mp4": ("yuv420p", "4:2:0", 8, None, "tv", True),
    "vp9.webm": ("yuv420p", "4:2:0", 8, None, "tv", True),
    "av1.mp4": ("yuv420p", "4:2:0", 8, None, "tv", True),
    "fragmented.mp4": ("yuv420p", "4:2:0", 8, None, "tv", True),
    "no_bframes.ts": ("yuv420p", "4:2:0", 8, None, "tv", True),
    "no_last_duration.mp4": ("yuv420p", "4:2:0", 8, None, "tv", True),
    "rotated.mp4": ("yuv420p", "4:2:0", 8, None, "tv", False),  # torchcodec's CUDA path would not turn it
    "vtest.avi": ("yuv420p", "4:2:0", 8, None, "tv", False),  # MPEG-4 Part 2: not for NVDEC
    "tree.avi": ("rgb24", "4:4:4", 8, None, "tv", False),
}
# the files that only one CPU decoder gets right, whatever the setting: by their frame index (engine/video/
# readers.py, frame_index), their codec or their frame size (engine/video/choice.py); the AVIs with B-frames decode front to back
# only, never on NVDEC
PINNED = {
    "bframes_mpeg4.avi": "decord", "bframes_h264.avi": "decord", "cut_copy.mp4": "torchcodec",
    "vp9.webm": "torchcodec", "av1.mp4": "decord", "narrow_444.mp4": "torchcodec",
}  # fmt: skip
CPU_ONLY = {"bframes_mpeg4.avi", "bframes_h264.avi"}
# the reference: ffmpeg's own decode (TZN_PARITY_MEDIA hosts may have the files but not the program)
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg binary (apt install ffmpeg)")


def test_the_stream_format_is_read_and_decides_where_it_decodes(parity_media):
    for name, path in parity_media.items():
        stream = probe_video(path).stream
        pixel_format, chroma, depth, space, color_range, on_nvdec = EXPECTED_FORMATS[name]
        assert (stream.pixel_format, stream.chroma, stream.bit_depth) == (pixel_format, chroma, depth), name
        assert (stream.color_space, stream.color_range) == (space, color_range), name
        assert abs(stream.rotation) == (90 if name == "rotated.mp4" else 0), name
        assert nvdec_decodes(stream) is on_nvdec, name
        pinned = PINNED.get(name)
        assert stream.cpu_only is (name in CPU_ONLY), name
        nvdec = "torchcodec-nvdec" if on_nvdec and name not in CPU_ONLY else pinned or "torchcodec"
        assert decoder_for("auto", stream, nvdec_available=True) == nvdec, name
        assert decoder_for("auto", stream, nvdec_available=False) == (pinned or "decord"), name
        assert decoder_for("decord", stream, nvdec_available=True) == (pinned or "decord"), name
        assert decoder_for("torchcodec", stream, nvdec_available=False) == (pinned or "torchcodec"), name


@needs_ffmpeg
def test_every_frame_is_the_frame_ffmpeg_shows(parity_media):
    """Both decoder settings give every frame as ffmpeg decodes it, frame for frame, on the files one decoder gets
    wrong (AVIs with B-frames, a stream-copied cut, VP9, AV1, a fragmented MP4, an MPEG-TS, a last frame without
    a duration), on a rotated one (shown turned, as ffmpeg shows it) and on an ordinary one. (At the source's size:
    the long files would take minutes.)"""
    for name in [
        *PINNED,
        "fragmented.mp4",
        "no_bframes.ts",
        "no_last_duration.mp4",
        "rotated.mp4",
        "untagged_25fps.mp4",
    ]:
        path = parity_media[name]
        info = probe_video(path)
        expected = frames_ffmpeg_shows(path, info.height, info.width)
        assert info.frames == len(expected), name
        for decoder in ("decord", "torchcodec"):
            frames, times, _ = decode_frames(path, DecodeRequest(), decoder)
            assert frames.shape == expected.shape, (name, decoder)
            assert (np.diff(times) > 0).all() and times[0] == pytest.approx(0.0, abs=1e-3), (name, decoder)
            per_frame = np.abs(frames.astype(np.float64) - expected).mean(axis=(1, 2, 3))
            assert per_frame.max() < 0.5, (name, decoder, np.flatnonzero(per_frame >= 0.5)[:10])


def test_the_probe_reads_the_size_the_decoders_decode(parity_media):
    """The size comes from the headers (no frame is decoded to learn it): on every parity file, cropped 1080p,
    rotated, 4:4:4, AVI and VP9 included, it is the size of the first frame the CPU decoder decodes."""
    for name, path in parity_media.items():
        info = probe_video(path)
        first, _, _ = decode_frames(path, DecodeRequest(fps=1.0, spans=((0.0, 0.5),)), "decord")
        assert (info.height, info.width) == first.shape[1:3], name


@needs_ffmpeg
def test_a_video_of_odd_size_is_decoded_whole_whatever_the_setting(camera_footage, tmp_path):
    """decord hands over an FFV1 stream of odd size cut to the even size below (here 150x84); such a stream goes to
    torchcodec (engine/video/choice.py, `decord_converts`), and the backbone sees the whole frame ffmpeg shows."""
    path = tmp_path / "odd.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(camera_footage), "-t", "1", "-vf", "scale=151:85", "-c:v",
                    "ffv1", str(path)], check=True)  # fmt: skip
    expected = frames_ffmpeg_shows(path, 85, 151)
    for setting in ("decord", "torchcodec"):
        frames, _, info = decode_frames(path, DecodeRequest(), setting)
        assert (info.height, info.width) == (85, 151)
        assert decoder_for(setting, info.stream, nvdec_available=False) == "torchcodec"
        np.testing.assert_array_equal(frames, expected)


@needs_ffmpeg
def test_a_narrow_av1_that_only_decord_may_decode_is_refused_with_what_to_do(camera_footage, tmp_path):
    """AV1 goes to decord whatever its size (torchcodec's CPU decoder crashes on it with Debian's FFmpeg), and
    decord cannot convert 96 px wide frames: a 422 that says to re-encode, not 'probably corrupt'."""
    path = tmp_path / "narrow_av1.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(camera_footage), "-t", "1", "-vf", "scale=96:56", "-c:v",
                    "libaom-av1", "-cpu-used", "8", "-b:v", "200k", str(path)], check=True)  # fmt: skip
    with pytest.raises(VideoDecodeError, match="decord cannot convert frames of its width.*re-encode it wider"):
        decode_frames(path, BACKBONE_INPUT, "torchcodec")


def test_decord_and_torchcodec_give_the_backbone_the_same_frames_and_pixels(parity_media):
    for name, path in parity_media.items():
        ours, our_times, info = decode_frames(path, BACKBONE_INPUT, "torchcodec")
        theirs, their_times, _ = decode_frames(path, BACKBONE_INPUT, "decord")
        np.testing.assert_allclose(our_times, their_times, atol=1e-5, err_msg=name)
        assert ours.shape == theirs.shape == (len(their_times), 112, 112, 3), name
        difference = ours.astype(np.float64) - theirs
        # both convert with FFmpeg's swscale from the stream's tags: identical, but for the odd frame an
        # MPEG-4 Part 2 decoder conceals differently
        assert np.abs(difference).mean() < 0.05, (name, np.abs(difference).mean())
        assert np.abs(difference.mean(axis=(0, 1, 2))).max() < 0.05, name


@pytest.fixture(scope="module")
def localizers() -> dict[str, Localizer]:
    found = {}
    for decoder in ("decord", "torchcodec"):
        settings = Settings(device="cpu", decoder=decoder, checkpoint=DEMO_CHECKPOINT)
        found[decoder] = Localizer(settings.engine_settings())
    return found


def test_decord_and_torchcodec_find_the_same_actions_on_every_file(localizers, parity_media):
    limits = WorkLimits(max_duration_s=600, timeout_s=120)
    for name, path in parity_media.items():
        answers = {
            decoder: localizer.localize(VideoSource.from_path(path), limits, min_score=0.05)
            for decoder, localizer in localizers.items()
        }
        pinned = PINNED.get(name)
        assert {decoder: answer.decoder for decoder, answer in answers.items()} == {
            "decord": pinned or "decord", "torchcodec": pinned or "torchcodec",
        }  # fmt: skip
        ours, theirs = answers["torchcodec"].segments, answers["decord"].segments
        assert [s["label"] for s in ours] == [s["label"] for s in theirs], name
        for a, b in zip(ours, theirs, strict=True):
            assert a["start_s"] == pytest.approx(b["start_s"], abs=1e-3), name
            assert a["end_s"] == pytest.approx(b["end_s"], abs=1e-3), name
            assert a["score"] == pytest.approx(b["score"], abs=1e-3), name


# Files the CPU decoders get a remux of (readers.remux_reason): MPEG streams whose start FFmpeg's seek does not
# reach, Ogg, which decord cannot open, and WebM without a duration, which neither opens: the file, how ffmpeg makes
# it, how the refusal names it
REMUXED_FILES = {
    "bframes.ts": (["-c:v", "libx264", "-f", "mpegts"], "MPEG-TS", "ts"),  # x264's default, B-frames
    "avchd.mts": (["-c:v", "libx264", "-f", "mpegts", "-mpegts_m2ts_mode", "1"], "MPEG-TS", "ts"),  # camcorders
    "mpeg2.mpg": (["-c:v", "mpeg2video", "-q:v", "4", "-f", "mpeg"], "MPEG program stream", "mpg"),  # DVD, .mpg
    "theora.ogv": (["-c:v", "libtheora", "-q:v", "6"], "Ogg", "ogv"),
    # as a browser's MediaRecorder writes WebM: no duration, no index
    "recorded.webm": (["-c:v", "libvpx", "-b:v", "1M", "-deadline", "realtime", "-cpu-used", "8", "-live", "1"],
                      "Matroska/WebM", "webm"),
}  # fmt: skip


@needs_ffmpeg
@pytest.mark.parametrize("name", REMUXED_FILES)
def test_a_file_only_a_remux_decodes_right_is_decoded_remuxed_or_refused(camera_footage, tmp_path, name):
    """FFmpeg's seek to the start of an MPEG-TS with B-frames, an M2TS (AVCHD's .mts) or an MPEG-2 program stream
    lands on a later keyframe, or fails, in decord and torchcodec alike; decord cannot open an Ogg file at all, nor
    either library a WebM recorded live (no duration, no index).
    Such a file is remuxed by the ffmpeg program and then decodes as ffmpeg decodes the original, on the CPU only;
    a server without the program refuses it in plain words, never answering from the wrong frames."""
    options, container, suffix = REMUXED_FILES[name]
    path = tmp_path / name
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(camera_footage), "-t", "3", "-vf", "scale=640:360",
                    *options, str(path)], check=True)  # fmt: skip
    expected = frames_ffmpeg_shows(path, 360, 640)
    for decoder in ("decord", "torchcodec"):
        frames, times, info = decode_frames(path, DecodeRequest(), decoder)
        assert frames.shape == expected.shape and times[0] == pytest.approx(0.0, abs=1e-3), decoder
        assert np.abs(frames.astype(np.float64) - expected).mean(axis=(1, 2, 3)).max() < 0.5, decoder
    assert info.stream.cpu_only and decoder_for("auto", info.stream, nvdec_available=True) == "torchcodec"
    assert f"'{name}'" in info.stream.remuxed and "remuxed to" in info.stream.remuxed  # what the server logs
    refusal = rf"{container}.* '{name}'.*no ffmpeg program.*ffmpeg -i in.{suffix} -c copy"
    with pytest.raises(VideoDecodeError, match=refusal):
        playable(str(path), name, ffmpeg=None)
    assert playable(str(camera_footage), "vtest.avi", ffmpeg=None) == (str(camera_footage), None)
