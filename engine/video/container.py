"""What an upload is, from its first bytes, before any decoder touches it: container sniffing and the
MP4 box walk that catches a cut upload (a decoder would half-decode it silently)."""

from __future__ import annotations

import struct

from engine.errors import EmptyVideoError, NotAVideoError, VideoDecodeError
from engine.video.source import VideoSource

SUPPORTED = "expected a video file (MP4/MOV, MKV/WebM, AVI, MPEG-TS/MTS, MPEG-PS, Ogg)"
# File names that folders of videos are listed by (tzn extract-features, tzn batch)
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".vob", ".ts", ".mts", ".m2ts", ".ogv"}
)

_IMAGE_BRANDS = {b"heic", b"heix", b"mif1", b"msf1", b"avif"}


def sniff_container(header: bytes) -> str:
    """Name of the format announced by the first bytes: a video container ("mp4", "mkv", ...), or
    "image:PNG", "audio:MP3", "other:PDF", "text", or "unknown" (let the decoder try)."""
    if header[4:8] == b"ftyp":
        return "image:HEIF/AVIF" if header[8:12] in _IMAGE_BRANDS else "mp4"
    if header[4:8] in (b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "mp4"
    if header[:4] == b"RIFF":
        return {b"AVI ": "avi", b"WAVE": "audio:WAV", b"WEBP": "image:WebP"}.get(header[8:12], "unknown")
    signatures = [
        (b"\x1a\x45\xdf\xa3", "mkv"),
        (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "asf"),
        (b"FLV", "flv"),
        (b"OggS", "ogg"),
        (b"\x00\x00\x01\xba", "mpeg-ps"),
        (b"\x89PNG", "image:PNG"),
        (b"\xff\xd8\xff", "image:JPEG"),
        (b"GIF8", "gif"),  # animated GIFs decode; let decord decide
        (b"II*\x00", "image:TIFF"),
        (b"MM\x00*", "image:TIFF"),
        (b"%PDF", "other:PDF"),
        (b"PK\x03\x04", "other:ZIP archive"),
        (b"\x1f\x8b", "other:gzip archive"),
        (b"ID3", "audio:MP3"),
        (b"fLaC", "audio:FLAC"),
    ]
    for magic, kind in signatures:
        if header.startswith(magic):
            return kind
    if len(header) >= 377 and header[0] == header[188] == header[376] == 0x47:
        return "mpeg-ts"
    if len(header) >= 389 and header[4] == header[196] == header[388] == 0x47:
        return "mpeg-ts"  # M2TS (AVCHD camcorders' .mts, Blu-ray): a 4-byte time code before each 188-byte packet
    if _bare_stream(header):
        return "elementary"
    if len(header) >= 2 and header[0] == 0xFF and header[1] & 0xF6 == 0xF0:
        return "audio:AAC (ADTS)"
    if _looks_like_text(header):
        return "text"
    return "unknown"


def _bare_stream(header: bytes) -> bool:
    """A video stream without a container, as encoders write it raw (.h264, .hevc, .m2v): a start code, then an
    MPEG-1/2 sequence header, or an H.264 unit that begins a stream (SEI 6, SPS 7, delimiter 9), or HEVC's (VPS
    32, delimiter 35, SEI 39)."""
    for start in (b"\x00\x00\x00\x01", b"\x00\x00\x01"):
        if header.startswith(start) and len(header) > len(start):
            unit = header[len(start)]
            return unit == 0xB3 or (unit < 0x80 and ((unit & 0x1F) in (6, 7, 9) or (unit >> 1) in (32, 35, 39)))
    return False


def _looks_like_text(header: bytes) -> bool:
    if not header or b"\x00" in header:
        return False
    try:
        text = header.decode("utf-8")
    except UnicodeDecodeError:
        # the header may cut a multi-byte character in half
        try:
            text = header[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return all(ch.isprintable() or ch in "\t\r\n\f" for ch in text)


MAX_TOP_LEVEL_BOXES = 100_000  # a 4-hour fragmented MP4 in 1 s fragments has 28 800 (moof + mdat pairs)


def mp4_truncation(source: VideoSource) -> str | None:
    """For an ISO-BMFF file (MP4/MOV/M4A): a description of how it is cut short, or None if its top-level
    boxes account for the whole file. A cut upload keeps a valid header, so this catches what a decoder would
    half-decode silently. A file of more than MAX_TOP_LEVEL_BOXES boxes is left to the decoder (the walk
    stays cheap whatever the upload)."""
    size = source.size
    seen = set()
    with open(source.local_path, "rb") as f:
        offset = 0
        for _ in range(MAX_TOP_LEVEL_BOXES):
            if offset >= size:
                break
            f.seek(offset)
            head = f.read(16)
            if len(head) < 8:
                return f"it ends inside a box header at byte {offset}"
            box_size, kind = struct.unpack(">I4s", head[:8])
            if box_size == 1:
                if len(head) < 16:
                    return f"it ends inside a box header at byte {offset}"
                box_size = struct.unpack(">Q", head[8:16])[0]
            elif box_size == 0:  # box extends to the end of the file
                box_size = size - offset
            if box_size < 8:
                return f"box '{kind.decode('latin-1')}' at byte {offset} has an invalid size"
            if offset + box_size > size:
                return f"its '{kind.decode('latin-1')}' box needs {offset + box_size} bytes but the file has {size}"
            seen.add(kind)
            offset += box_size
        else:
            return None
    if b"moov" not in seen:
        return "it has no 'moov' index"
    return None


def precheck(source: VideoSource) -> None:
    """Cheap checks in the server process before any decoder touches the video: empty, not a video container
    (an image, audio, a document, text), or a cut MP4."""
    name = source.name
    if source.size == 0:
        raise EmptyVideoError(f"'{name}' is empty (0 bytes): the upload may have failed; send the file again")
    kind = sniff_container(source.read_at(0, 1024))
    if kind.startswith("audio:"):
        raise NotAVideoError(f"'{name}' has no video stream (audio only, {kind[6:]}): {SUPPORTED}")
    if kind.startswith("image:"):
        raise NotAVideoError(f"'{name}' is a {kind[6:]} image, not a video: {SUPPORTED}")
    if kind.startswith("other:"):
        raise NotAVideoError(f"'{name}' is a {kind[6:]} file, not a video: {SUPPORTED}")
    if kind == "text":
        raise NotAVideoError(f"'{name}' is a text file, not a video: {SUPPORTED}")
    if kind == "elementary":
        raise NotAVideoError(
            f"'{name}' is a bare video stream without a container, so its frames have no times: wrap it in MP4 "
            "at its frame rate (ffmpeg -r 30 -i in.h264 -c copy out.mp4, no re-encoding) and send that"
        )
    if kind == "mp4" and (problem := mp4_truncation(source)):
        raise VideoDecodeError(
            f"could not decode '{name}': the MP4 is truncated or corrupt ({problem}); "
            "check that the upload completed and send the whole file"
        )
