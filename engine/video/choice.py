"""Which decoder decodes a stream: decord or torchcodec on the CPU (in the isolated child), or NVDEC.

NVDEC decodes into GPU memory and torchcodec converts there; it is used only for what it decodes itself:
8-bit 4:2:0 H.264, HEVC, AV1, VP9 and VP8. Anything else (4:4:4 and 4:2:2, 10-bit, MPEG-4 Part 2, ...) would
make torchcodec fall back to the CPU on its own, silently and for 4:4:4 with broken colours, so it goes to a
CPU decoder instead, chosen here, before decoding; and a decoder that falls back anyway is refused
(engine/video/nvdec.py). So does a rotated stream, which torchcodec's CUDA path would not turn (`nvdec_decodes`).
The answer names the decoder that ran (`model.decoder`).
"""

from __future__ import annotations

from typing import Literal

from engine.video.info import StreamFormat

DecoderSetting = Literal["auto", "decord", "torchcodec"]
NVDEC = "torchcodec-nvdec"
DECODER_NAMES = ("decord", "torchcodec", NVDEC)  # what `model.decoder` can say
NVDEC_CODECS = frozenset({"h264", "hevc", "av1", "vp9", "vp8"})
# The colour matrices torchcodec's CUDA conversion applies as swscale does on the CPU: BT.709, and BT.601 for
# everything else (untagged included, as FFmpeg reads it). swscale also has SMPTE 240M's and FCC's matrices, and
# BT.2020's, which only recent torchcodec converts on the GPU; a stream tagged with one of those goes to the CPU.
NVDEC_COLOR_SPACES = frozenset({None, "unknown", "reserved", "bt470bg", "smpte170m", "bt709"})


def nvdec_decodes(stream: StreamFormat) -> bool:
    """True for the streams NVDEC decodes itself (see the module's docstring) and torchcodec shows as they are
    meant to be seen: its FFmpeg CUDA interface, the one `device="cuda"` opens, does not apply a rotation (its CPU
    path and its beta CUDA interface do: torchcodec pull request 1235), so a rotated stream, a phone's portrait
    video, would reach the backbone on its side; it goes to the CPU, as does a colour matrix its conversion does
    not apply (NVDEC_COLOR_SPACES) and an odd width or height (it converts NV12, whose sizes are even)."""
    return (
        stream.codec in NVDEC_CODECS and stream.chroma == "4:2:0" and stream.bit_depth == 8 and not stream.rotation
        and stream.color_space in NVDEC_COLOR_SPACES and stream.width % 2 == 0 and stream.height % 2 == 0
    )  # fmt: skip


def cpu_decoder(setting: DecoderSetting, on_gpu_host: bool) -> str:
    """The CPU decoder of a setting: decord by default on a CPU host, torchcodec on a GPU host (so that every
    frame a GPU host serves comes from one library)."""
    if setting == "auto":
        return "torchcodec" if on_gpu_host else "decord"
    return setting


# The CPU decoder a codec needs, whatever the setting (tests/engine/test_decoders.py, on files made by ffmpeg):
# decord2 fails on VP9 streams whose decoder asks for the next packet before it takes one (EAGAIN: libvpx-vp9's
# real-time encodes in WebM and MKV); torchcodec's CPU decoder crashes on AV1 with Debian's FFmpeg 5.1.
CPU_DECODER_OF_CODEC = {"vp9": "torchcodec", "av1": "decord"}
# decord2 can hand over an odd width or height cut to the even size below (the last column or row lost: every
# FFV1 stream of a scan of sizes, H.264 4:4:4 at some sizes), and fails on some widths under 146 ("Check failed:
# from_size == to_size": 2-9, 12, 13, 16, 17, 24, 25, 32, 33, 48, 49, 96, 97, 144, 145 of 2-300, H.264 and FFV1;
# none from 146 to 2100); torchcodec decodes every size whole (tests/engine/test_decoders.py).
DECORD_MIN_WIDTH = 146


def decord_converts(stream: StreamFormat) -> bool:
    """False for a frame size decord would crop or may fail on (DECORD_MIN_WIDTH, held to the height too for a
    turned stream, whose headers may give its size turned); True where the headers give none."""
    width, height = stream.width, stream.height
    if not (width and height):
        return True
    decoded_widths = (width, height) if stream.rotation % 180 else (width,)
    return width % 2 == 0 and height % 2 == 0 and min(decoded_widths) >= DECORD_MIN_WIDTH


def decoder_for(setting: DecoderSetting, stream: StreamFormat, nvdec_available: bool) -> str:
    """The decoder that decodes `stream`: NVDEC where it is available, the setting allows it (auto or
    torchcodec), the stream is one NVDEC decodes and may decode (`stream.cpu_only`); else the CPU decoder. Whatever the
    setting, a stream that only one CPU decoder gets right goes to it: by its frame index (`stream.decoder`,
    engine/video/readers.py), by its codec (CPU_DECODER_OF_CODEC) or by its frame size (`decord_converts`). The
    isolated child and its parent both decide with it (engine/video/decode.py)."""
    if nvdec_available and setting != "decord" and nvdec_decodes(stream) and not stream.cpu_only:
        return NVDEC
    by_size = None if decord_converts(stream) else "torchcodec"
    return stream.decoder or CPU_DECODER_OF_CODEC.get(stream.codec) or by_size or cpu_decoder(setting, nvdec_available)
