"""The one mapping from a failure to an HTTP status and error code, and the request's own failures.

Routes never choose a status: they raise (a RequestError here, a VideoError of the engine), and
`error_status` decides. Messages say what to do.
"""

from __future__ import annotations

from engine.errors import (
    EmptyVideoError,
    NotAVideoError,
    VideoDecodeError,
    VideoError,
    VideoTimeoutError,
    VideoTooLongError,
)


class RequestError(Exception):
    """A request the service refuses. Its class decides the HTTP status (`error_status`); `code` names the
    reason in the answer's `{"error": {"code", "message"}}`."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class BadRequest(RequestError):
    """A malformed request: not multipart or a video body, an unknown field, a bad option (400)."""


class IncludeError(BadRequest):
    """An `include` option naming something the answer cannot carry (400)."""

    def __init__(self, message: str):
        super().__init__("bad_form", message)


class Unauthorized(RequestError):
    """A missing or wrong X-API-Key (401)."""


class NotFound(RequestError):
    """No such job (404)."""


class UploadTimeout(RequestError):
    """An upload that stalled or arrived too slowly (408)."""


class Conflict(RequestError):
    """A job that has already finished, asked to cancel (409)."""


class UploadTooLarge(RequestError):
    """An upload over the route's limit (413)."""


class EmptyUpload(RequestError):
    """An upload of 0 bytes (422)."""


class Refusal(RequestError):
    """The service cannot take the request now: overloaded, loading, a full queue or a closed store (503, with
    Retry-After)."""


class DiskQuota(RequestError):
    """The jobs' disk quota is used by queued and running jobs (507)."""


class ProcessingTimeout(RequestError):
    """The work on a request took longer than TZN_REQUEST_TIMEOUT_S (504)."""

    def __init__(self, message: str):
        super().__init__("timeout", message)


STATUS_OF = {
    BadRequest: 400, Unauthorized: 401, NotFound: 404, UploadTimeout: 408, Conflict: 409, UploadTooLarge: 413,
    EmptyUpload: 422, Refusal: 503, ProcessingTimeout: 504, DiskQuota: 507,
}  # fmt: skip


def error_status(error: Exception) -> tuple[int, str]:
    """The one mapping from a failure to an HTTP status and an error code."""
    for kind, status in STATUS_OF.items():
        if isinstance(error, kind):
            return status, error.code
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
    400: "Malformed request: not multipart or a video body, a missing 'video' field, an unknown field, a bad "
    "min_score/top_k/include",
    401: "Missing or wrong X-API-Key (only when TZN_API_KEY is set)",
    408: "The upload stalled (TZN_UPLOAD_IDLE_TIMEOUT_S) or was slower than TZN_UPLOAD_MIN_RATE_KIB_S",
    413: "Upload larger than TZN_MAX_UPLOAD_MB, or video longer than TZN_MAX_DURATION_S",
    415: "Not a video: no video stream (an image, a document, random bytes, audio only)",
    422: "A video that cannot be decoded (truncated, corrupt, no frames)",
    503: "Overloaded (TZN_MAX_CONCURRENT requests computing and TZN_MAX_QUEUE waiting, a wait past "
    "TZN_QUEUE_TIMEOUT_S, or TZN_MAX_CONCURRENT_UPLOADS uploads in progress) or the model is not ready; retry "
    "after the Retry-After header's seconds",
    504: "Processing took longer than TZN_REQUEST_TIMEOUT_S",
}

# What each status means for /jobs.
JOB_STATUS_DESCRIPTIONS = {
    400: "Malformed request or query (as /localize; GET /jobs: an unknown status or a bad page)",
    401: "Missing or wrong X-API-Key (only when TZN_API_KEY is set)",
    404: "No job with this id (never submitted, or deleted after TZN_JOBS_TTL_S)",
    408: "The upload stalled or arrived too slowly (TZN_UPLOAD_IDLE_TIMEOUT_S, TZN_UPLOAD_MIN_RATE_KIB_S)",
    409: "The job has already finished; there is nothing to cancel",
    413: "Upload larger than TZN_JOBS_MAX_UPLOAD_MB",
    415: "Not a video: no video stream (an image, a document, random bytes, audio only)",
    422: "An empty or truncated video",
    503: "Queue full (TZN_JOBS_MAX_QUEUED jobs queued; see Retry-After), the model is loading, or the jobs store "
    "is unavailable",
    507: "The jobs' disk quota (TZN_JOBS_DISK_QUOTA_MB) is used by queued and running jobs; retry later",
}
