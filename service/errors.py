"""Every way a request can fail, typed, and the one mapping from a failure to an HTTP status and error code.

Messages say what to do. The routes never choose a status themselves: they raise, and `error_status` decides.
The decoder child raises the video errors too (they cross the process boundary by pickling).
"""

from __future__ import annotations


class ConfigurationError(Exception):
    """Settings that cannot serve: a checkpoint and a backbone that do not fit together, a missing file."""


class UploadError(Exception):
    """A malformed or unacceptable upload; `status` is the HTTP code it maps to."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class VideoError(Exception):
    """Base class of every failure to turn an upload into frames."""


class NotAVideoError(VideoError):
    """The file has no video stream: an image, a document, random bytes, or audio only (HTTP 415)."""


class VideoDecodeError(VideoError):
    """The file looks like a video but cannot be decoded: truncated, corrupt, or crashed the decoder (422)."""


class EmptyVideoError(VideoError):
    """The file is empty or its video stream has no frames (422)."""


class VideoTimeoutError(VideoError):
    """Decoding took longer than the time limit; the decoder process was killed (504)."""


class VideoTooLongError(VideoError):
    """The video is longer than the service accepts (413)."""

    def __init__(self, duration_s: float, limit_s: float, filename: str = "video"):
        self.duration_s, self.limit_s, self.filename = duration_s, limit_s, filename
        super().__init__(
            f"'{filename}' is {duration_s:.1f} s long; the limit is {limit_s:.1f} s: trim it or split it into parts"
        )

    def __reduce__(self):
        return type(self), (self.duration_s, self.limit_s, self.filename)


class VideoTooLargeError(VideoTooLongError):
    """The decoded frames would exceed the memory limit (413, like TooLong: the video is too long for this
    sampling rate and size)."""

    def __init__(self, frames: int, frame_bytes: int, limit_bytes: int, filename: str = "video"):
        self.frames, self.frame_bytes, self.limit_bytes, self.filename = (
            frames,
            frame_bytes,
            limit_bytes,
            filename,
        )
        VideoError.__init__(
            self,
            f"'{filename}' would decode to {frames} frames ({frames * frame_bytes / 2**20:.0f} MiB); the limit is "
            f"{limit_bytes / 2**20:.0f} MiB: send a shorter video or sample fewer frames per second",
        )

    def __reduce__(self):
        return type(self), (self.frames, self.frame_bytes, self.limit_bytes, self.filename)


def error_status(error: Exception) -> tuple[int, str]:
    """The one mapping from a failure to an HTTP status and an error code."""
    if isinstance(error, UploadError):
        return error.status, error.code
    if isinstance(error, NotAVideoError):
        return 415, "not_a_video"
    if isinstance(error, VideoTooLongError):
        return 413, "video_too_long"
    if isinstance(error, VideoTimeoutError):
        return 504, "timeout"
    if isinstance(error, EmptyVideoError | VideoDecodeError):
        return 422, "undecodable_video"
    if isinstance(error, VideoError):
        return 422, "video_error"
    return 500, "internal_error"


# What each status means for /localize, for the OpenAPI description of every answer.
STATUS_DESCRIPTIONS = {
    400: "Malformed form: not multipart, a missing 'video' field, an unknown field or a bad min_score/top_k",
    401: "Missing or wrong X-API-Key (only when TZN_API_KEY is set)",
    413: "Upload larger than TZN_MAX_UPLOAD_MB, or video longer than TZN_MAX_DURATION_S",
    415: "Not a video: no video stream (an image, a document, random bytes, audio only)",
    422: "A video that cannot be decoded (truncated, corrupt, no frames)",
    503: "Overloaded (TZN_MAX_CONCURRENT requests in progress; see Retry-After) or the model is not ready",
    504: "Processing took longer than TZN_REQUEST_TIMEOUT_S",
}
