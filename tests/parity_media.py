"""The files the decoders must agree on (docs/design.md, "Frames"), made from real camera footage (3 s of
opencv-doc's vtest.avi at 640x360) by ffmpeg: tags (BT.709, BT.2020), ranges, chroma layouts, bit depths, frame
rates, a 1080p (coded 1088 rows high, cropped), a narrow one of odd height; AVIs with B-frames and a stream-copied
cut (what decord's frame index gets wrong, engine/video/readers.py); VP9, AV1, a fragmented MP4 and an MPEG-TS
(what one CPU decoder fails on, engine/video/choice.py); an MP4 whose last frame has no duration (torchcodec
reached it only by index); a rotated MP4
(kept off NVDEC); plus vtest.avi itself (MPEG-4 Part 2) and tree.avi (Cinepak, RGB). The tests make them in a
temporary folder (tests/conftest.py, `parity_media`); for a GPU host without ffmpeg, make them here and carry the
folder (TZN_PARITY_MEDIA):

    python -m tests.parity_media .media
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")

PARITY_FORMATS = {
    "untagged_25fps.mp4": ["-r", "25", "-pix_fmt", "yuv420p"],
    "bt709_2997fps.mp4": [
        "-r", "30000/1001", "-vf", "scale=640:360:out_color_matrix=bt709,format=yuv420p", "-colorspace", "bt709",
        "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv",
    ],
    "fullrange_20fps.mp4": ["-r", "20", "-vf", "scale=640:360:out_range=pc,format=yuvj420p", "-color_range", "pc"],
    # BT.2020's matrix in 8 bits: the CPU converts it, not NVDEC (engine/video/choice.py, NVDEC_COLOR_SPACES)
    "bt2020_8bit.mp4": [
        "-r", "25", "-vf", "scale=640:360:out_color_matrix=bt2020,format=yuv420p", "-colorspace", "bt2020nc",
        "-color_primaries", "bt2020", "-color_trc", "bt709",
    ],
    "yuv444.mp4": ["-r", "25", "-pix_fmt", "yuv444p"],
    "tenbit.mp4": ["-r", "25", "-pix_fmt", "yuv420p10le"],
    # 1080 rows are coded as 1088 and cropped: NVDEC's frames must come out cropped too
    "cropped_1080p.mp4": ["-r", "25", "-vf", "scale=1920:1080,format=yuv420p"],
    # a width decord fails on and an odd height (engine/video/choice.py, `decord_converts`): torchcodec decodes it
    "narrow_444.mp4": ["-r", "25", "-vf", "scale=96:55,format=yuv444p"],
}  # fmt: skip

OTHER_CODECS = {
    "bframes_mpeg4.avi": ["-c:v", "mpeg4", "-q:v", "4", "-bf", "2"],  # no timestamps; two frames in some packets
    "bframes_h264.avi": ["-c:v", "libx264", "-bf", "2"],
    "vp9.webm": ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "1M"],
    "av1.mp4": ["-c:v", "libaom-av1", "-cpu-used", "8", "-b:v", "500k"],
    "fragmented.mp4": ["-c:v", "libx264", "-movflags", "frag_keyframe+empty_moov"],
    "no_bframes.ts": ["-c:v", "libx264", "-bf", "0", "-f", "mpegts"],
    # packets without durations (AVI's carry none): the last frame has none, and torchcodec's stream ends where it
    # starts
    "no_last_duration.mp4": ["-c:v", "libx264", "-fps_mode", "vfr", "-enc_time_base", "1/1000"],
}  # fmt: skip


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def frames_ffmpeg_shows(path: Path, height: int, width: int) -> np.ndarray:
    """Every frame of `path`'s video stream as ffmpeg decodes and shows it, (N, height, width, 3) uint8 RGB: the
    reference the decoders are checked against."""
    command = ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:V:0", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-fps_mode", "passthrough", "-"]  # fmt: skip
    shown = subprocess.run(command, capture_output=True, check=True).stdout
    return np.frombuffer(shown, np.uint8).reshape(-1, height, width, 3)


def make_parity_media(root: Path, camera_footage: Path) -> dict[str, Path]:
    """The files in `root` (made there, but vtest.avi and tree.avi, which are named where they are)."""
    root.mkdir(parents=True, exist_ok=True)
    source = ["-i", str(camera_footage), "-t", "3"]
    for name, options in PARITY_FORMATS.items():
        scale = [] if "-vf" in options else ["-vf", "scale=640:360"]
        ffmpeg(*source, *scale, *options, "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", str(root / name))
    for name, options in OTHER_CODECS.items():
        ffmpeg(*source, "-vf", "scale=640:360", *options, str(root / name))
    # a cut by stream copy starts at the keyframe before the cut (here the first: one keyframe in 5 s), and its edit
    # list hides the frames before the cut
    whole = root / "whole.tmp.mp4"
    ffmpeg("-i", str(camera_footage), "-t", "5", "-vf", "scale=640:360", "-c:v", "libx264", "-preset", "veryfast",
           "-g", "250", "-f", "mp4", str(whole))  # fmt: skip
    ffmpeg("-ss", "1.5", "-i", str(whole), "-c", "copy", str(root / "cut_copy.mp4"))
    # a phone's portrait video: coded 640x360, shown turned by a quarter by its display matrix (set by stream copy)
    rotated = ["-t", "3", "-c", "copy", str(root / "rotated.mp4")]
    newer = ["ffmpeg", "-v", "error", "-y", "-display_rotation", "90", "-i", str(whole), *rotated]
    if subprocess.run(newer, capture_output=True).returncode != 0:  # FFmpeg before 6.1 (Debian 12's 5.1)
        ffmpeg("-i", str(whole), "-metadata:s:v:0", "rotate=90", *rotated)
    whole.unlink()
    files = {path.name: path for path in sorted(root.iterdir())}
    files["vtest.avi"] = camera_footage
    if (OPENCV_DATA / "tree.avi").exists():
        files["tree.avi"] = OPENCV_DATA / "tree.avi"
    return files


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.parity_media DIR")
    target = Path(sys.argv[1])
    made = make_parity_media(target, OPENCV_DATA / "vtest.avi")
    for name in ("vtest.avi", "tree.avi"):
        if name in made and made[name].parent != target:
            shutil.copy(made[name], target / name)
    print(f"{len(made)} files in {target}")
