"""Files users upload, against ffmpeg's own decode: every frame, with both CPU decoder settings.

    python bench/decoder_sweep.py [--workdir /tmp/tzn-decoder-sweep] [--only NAME ...]

Makes each file from opencv-doc's vtest.avi (real camera footage) with the ffmpeg program, in the containers and
codecs that cameras, phones, browsers, DVD and camcorder rips and editors write (SWEEP), then decodes every frame
through the engine's isolated child (`decode_frames`, TZN_DECODER=decord and =torchcodec) and compares each frame
with `ffmpeg -f rawvideo -pix_fmt rgb24 -fps_mode passthrough`. Printed per file and setting: the decoder that ran
(pins included; "(remux)" where it decoded a remux), the frames, the largest per-frame mean difference in levels,
how many frames differ by 0.5 level or more, and the first frame's time; or the error a user would get. The files that must pass are in the
tests (tests/parity_media.py, tests/engine/test_decoders.py); this is the wider sweep behind them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.errors import VideoError  # noqa: E402
from engine.video.choice import decoder_for  # noqa: E402
from engine.video.decode import DecodeRequest, decode_frames, probe_video  # noqa: E402
from tests.parity_media import OPENCV_DATA, frames_ffmpeg_shows  # noqa: E402

SCALE = ["-vf", "scale=640:360"]
X264 = ["-c:v", "libx264", "-preset", "veryfast"]
LIVE_VP8 = ["-c:v", "libvpx", "-b:v", "1M", "-deadline", "realtime", "-cpu-used", "8", "-live", "1"]
# name: ffmpeg options after `-i vtest.avi -t 4` (-vf scale=640:360 unless they scale)
SWEEP = {
    "h264.mp4": [*SCALE, *X264],
    "opengop_8b.mp4": [*SCALE, *X264, "-bf", "8", "-x264-params", "b-pyramid=normal:open_gop=1:keyint=30"],
    "hevc_10bit.mp4": [*SCALE, "-c:v", "libx265", "-x265-params", "log-level=error", "-pix_fmt", "yuv420p10le",
                       "-tag:v", "hvc1"],
    "hlg_bt2020.mov": ["-vf", "scale=640:360,format=yuv420p10le", "-c:v", "libx265", "-x265-params",
                       "log-level=error", "-color_primaries", "bt2020",
                       "-color_trc", "arib-std-b67", "-colorspace", "bt2020nc", "-tag:v", "hvc1"],
    "lossless.mp4": [*SCALE, *X264, "-qp", "0"],
    "odd_444.mp4": ["-vf", "scale=321:241", *X264, "-pix_fmt", "yuv444p"],
    "odd_mjpeg.avi": ["-vf", "scale=321:241", "-c:v", "mjpeg", "-q:v", "3"],
    "gray_ffv1.mkv": ["-vf", "scale=640:360,format=gray", "-c:v", "ffv1"],
    "alpha_vp9.webm": ["-vf", "scale=640:360,format=yuva420p", "-c:v", "libvpx-vp9", "-deadline", "realtime",
                       "-cpu-used", "8", "-b:v", "1M"],
    "prores.mov": [*SCALE, "-c:v", "prores_ks", "-profile:v", "2"],
    "cropped_1080p.mp4": ["-vf", "scale=1920:1080", *X264],
    "sar_16_15.mp4": ["-vf", "scale=720:576,setsar=16/15", *X264],
    "hfr_60fps.mp4": [*SCALE, *X264, "-r", "60"],
    "one_frame.mp4": [*SCALE, *X264, "-frames:v", "1"],
    "tiny_64x48.mp4": ["-vf", "scale=64:48", *X264],
    "timecode.mov": [*SCALE, *X264, "-timecode", "01:00:00:00"],
    "ts_offset.mp4": [*SCALE, *X264, "-output_ts_offset", "10"],
    "no_last_duration.mp4": [*SCALE, *X264, "-fps_mode", "vfr", "-enc_time_base", "1/1000"],
    "pipe.mkv": [*SCALE, *X264, "-f", "matroska"],
    "recorded_vp8.webm": [*SCALE, *LIVE_VP8, "-f", "webm"],
    "recorded_h264.mkv": [*SCALE, *X264, "-live", "1", "-f", "matroska"],
    "bframes.ts": [*SCALE, *X264, "-f", "mpegts"],
    "avchd.mts": [*SCALE, *X264, "-f", "mpegts", "-mpegts_m2ts_mode", "1"],
    "mpeg2.mpg": ["-vf", "scale=720:576", "-c:v", "mpeg2video", "-b:v", "4M", "-f", "mpeg"],
    "mpeg2_interlaced.mpg": ["-vf", "scale=720:576", "-c:v", "mpeg2video", "-flags", "+ilme+ildct", "-top", "1",
                             "-b:v", "4M", "-f", "mpeg"],
    "dvd.vob": ["-vf", "scale=720:576", "-c:v", "mpeg2video", "-b:v", "4M", "-f", "dvd"],
    "mpeg1.mpg": ["-vf", "scale=352:288", "-r", "25", "-c:v", "mpeg1video", "-b:v", "1M"],
    "theora.ogv": [*SCALE, "-c:v", "libtheora", "-q:v", "6"],
    "h264.flv": [*SCALE, *X264],
    "sorenson.flv": [*SCALE, "-c:v", "flv1"],
    "wmv2.wmv": [*SCALE, "-c:v", "wmv2"],
    "h263.3gp": ["-vf", "scale=352:288", "-r", "15", "-c:v", "h263"],
    "mpeg4_bframes.mp4": [*SCALE, "-c:v", "mpeg4", "-bf", "2", "-q:v", "4"],
    "anim.gif": ["-vf", "scale=320:180,fps=10"],
}  # fmt: skip


def make(workdir: Path, name: str, options: list[str]) -> Path:
    path = workdir / name
    if not path.exists():
        source = ["-i", str(OPENCV_DATA / "vtest.avi"), "-t", "4"]
        subprocess.run(["ffmpeg", "-v", "error", "-y", *source, *options, str(path)], check=True)
    return path


def row(path: Path, setting: str, expected: np.ndarray) -> str:
    try:
        frames, times, info = decode_frames(path, DecodeRequest(), setting)
    except VideoError as error:
        return f"{setting:<10} {type(error).__name__}: {str(error)[:150]}"
    ran = decoder_for(setting, info.stream, nvdec_available=False) + (" (remux)" if info.stream.remuxed else "")
    if frames.shape != expected.shape:
        return f"{setting:<10} ran {ran:<18} {frames.shape[0]} frames of {frames.shape[1:3]}; ffmpeg: {expected.shape}"
    per_frame = np.abs(frames.astype(np.float64) - expected).mean(axis=(1, 2, 3))
    return (f"{setting:<10} ran {ran:<18} {len(frames):4d} frames  worst {per_frame.max():6.2f}  "
            f"off {int((per_frame >= 0.5).sum()):3d}  first at {times[0]:.3f} s")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tzn-decoder-sweep"))
    parser.add_argument("--only", nargs="*", help="file names from the sweep (default: all)")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    for name in args.only or SWEEP:
        path = make(args.workdir, name, SWEEP[name])
        try:
            info = probe_video(path)
        except VideoError as error:
            print(f"{name}: {type(error).__name__}: {str(error)[:200]}", flush=True)
            continue
        print(f"{name}: {info.width}x{info.height}, {info.frames} frames, {info.duration_s:.2f} s", flush=True)
        expected = frames_ffmpeg_shows(path, info.height, info.width)
        for setting in ("decord", "torchcodec"):
            print("   " + row(path, setting, expected), flush=True)


if __name__ == "__main__":
    main()
