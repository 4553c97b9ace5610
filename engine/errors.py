"""Every way the engine can refuse or fail a video, typed. Messages say what to do.

The service maps these to HTTP statuses in one place (service/errors.py). The decoder child raises the video
errors too: they cross the process boundary by pickling.
"""

from __future__ import annotations


class ConfigurationError(Exception):
    """Settings that cannot serve: a checkpoint and a backbone that do not fit together, a missing file."""


class VideoError(Exception):
    """Base class of every failure to turn an upload into frames."""


class NotAVideoError(VideoError):
    """The file has no video stream: an image, a document, random bytes, or audio only."""


class VideoDecodeError(VideoError):
    """The file looks like a video but cannot be decoded: truncated, corrupt, or crashed the decoder."""


class EmptyVideoError(VideoError):
    """The file is empty or its video stream has no frames."""


class VideoTimeoutError(VideoError):
    """Decoding took longer than the time limit; the decoder was stopped."""


class VideoTooLongError(VideoError):
    """The video is longer than the limit it is decoded under."""

    def __init__(self, duration_s: float, limit_s: float, filename: str = "video"):
        self.duration_s, self.limit_s, self.filename = duration_s, limit_s, filename
        super().__init__(
            f"'{filename}' is {duration_s:.1f} s long; the limit is {limit_s:.1f} s: trim it or split it into parts"
        )

    def __reduce__(self):
        return type(self), (self.duration_s, self.limit_s, self.filename)


class JobCancelledError(Exception):
    """The work was cancelled by its owner (DELETE /jobs/{id}) or the server is stopping; the decoder was ended."""
