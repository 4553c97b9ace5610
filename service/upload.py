"""Receiving a video: the request body as it arrives, as a multipart form or as the video itself.

`RequestBody` reads the ASGI body with an idle timeout and a minimum rate (a client trickling bytes gets 408
instead of holding a slot), and after an early answer (413, 400, ...) reads and discards the rest of the body,
bounded in bytes and time, so that a client that sends its whole body before reading can read the answer (a
lingering close, as nginx does) instead of a connection reset.

`receive_video` takes either body:
- `multipart/form-data` with the file in the field `video` and the options as fields (curl -F video=@FILE);
- the video itself (`Content-Type: video/*` or `application/octet-stream`; curl --data-binary @FILE), its
  options in the query (`?min_score=0.3&include=depth&filename=clip.mp4`).
The video's bytes are written as they arrive: straight into memory (a memfd, engine/video/source.py, no copy
in Python) when the body's declared size is at most `memory_bytes`, else into a file spooled to `directory`
in writes of SPOOL_WRITE_BYTES (4 MiB). Nothing is buffered whole, so a huge upload costs at most the limit before it
is refused. On any failure whatever was written is removed.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from engine.video.source import VideoSource
from service.errors import BadRequest, RequestError, UploadTimeout, UploadTooLarge

FILE_FIELD = "video"
OPTION_FIELDS = ("min_score", "top_k", "include")
RAW_QUERY_FIELDS = (*OPTION_FIELDS, "filename")
MAX_TEXT_FIELD_BYTES = 1024
SPOOL_WRITE_BYTES = 4 * 2**20

Receive = Callable[[], Awaitable[dict]]


class RequestBody:
    """The request body of one ASGI request, read once: `chunks()` for the upload, `drain()` after an early
    answer. `idle_timeout_s`: longest wait for the next bytes; `min_rate`: bytes/s the upload must average
    once `grace_s` have passed (0: no minimum)."""

    def __init__(self, receive: Receive, idle_timeout_s: float, min_rate: float = 0.0, grace_s: float = 0.0):
        self.receive = receive
        self.idle_timeout_s, self.min_rate, self.grace_s = idle_timeout_s, min_rate, grace_s
        self.complete = False  # the last body message has been read (or the client is gone)
        self.received = 0

    async def _next(self, timeout_s: float) -> bytes:
        async with asyncio.timeout(timeout_s):  # no task per message, unlike asyncio.wait_for
            message = await self.receive()
        if message["type"] == "http.disconnect":
            self.complete = True
            raise BadRequest("client_disconnected", "the client closed the connection before the upload ended")
        self.complete = not message.get("more_body", False)
        chunk = message.get("body", b"")
        self.received += len(chunk)
        return chunk

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's chunks; UploadTimeout (408) when the client stalls or sends too slowly."""
        started = time.monotonic()
        while not self.complete:
            try:
                chunk = await self._next(self.idle_timeout_s)
            except TimeoutError:
                raise UploadTimeout(
                    "upload_timeout",
                    f"the upload sent nothing for {self.idle_timeout_s:g} s; send the whole file without pausing",
                ) from None  # fmt: skip
            elapsed = time.monotonic() - started
            too_slow = self.min_rate > 0 and elapsed > self.grace_s and self.received < self.min_rate * elapsed
            if too_slow and not self.complete:
                raise UploadTimeout(
                    "upload_too_slow",
                    f"the upload averaged {self.received / elapsed / 1024:.1f} KiB/s, under the minimum of "
                    f"{self.min_rate / 1024:g} KiB/s; send it over a faster connection",
                )  # fmt: skip
            if chunk:
                yield chunk

    async def drain(self, max_bytes: int, timeout_s: float) -> bool:
        """Reads and discards the rest of the body, at most `max_bytes` more within `timeout_s`; True when the
        body ended (the connection can stay open), False when the bound was reached (close it)."""
        deadline = time.monotonic() + timeout_s
        limit = self.received + max_bytes
        while not self.complete:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.received > limit:
                return False
            try:
                await self._next(remaining)
            except (TimeoutError, RequestError):
                return self.complete
        return True


class VideoWriter:
    """Where a video's bytes go as they arrive: a memory file, or a file spooled to `directory`."""

    def __init__(self, name: str, in_memory: bool, directory: Path | None):
        self.name, self.size = name, 0
        self.pending = bytearray()
        if in_memory:
            self.source, self.descriptor = VideoSource.in_memory(name), None
        else:
            self.descriptor, path = tempfile.mkstemp(prefix="tzn-upload-", dir=directory)
            self.source = VideoSource(name, path=path)

    def write(self, data: bytes | memoryview) -> None:
        self.size += len(data)
        if self.descriptor is None:
            self.source.write(data)
            return
        self.pending += data
        if len(self.pending) >= SPOOL_WRITE_BYTES:
            self._flush()

    def _flush(self) -> None:
        view = memoryview(self.pending)
        while view:
            view = view[os.write(self.descriptor, view) :]
        view.release()
        self.pending.clear()

    def finish(self) -> VideoSource:
        if self.descriptor is not None:
            self._flush()
            os.close(self.descriptor)
            self.descriptor = None
        return self.source

    def discard(self) -> None:
        if self.descriptor is not None:
            os.close(self.descriptor)
            self.descriptor = None
        remove_source(self.source)


def remove_source(source: VideoSource | None) -> None:
    """Frees a received video, in memory or on disk."""
    if source is None:
        return
    if source.path is not None:
        source.path.unlink(missing_ok=True)
    source.close()


@dataclass
class Upload:
    """A received video and the request's options (form fields or query parameters, as strings)."""

    source: VideoSource | None = None
    size: int = 0
    options: dict[str, str] = field(default_factory=dict)

    def remove(self) -> None:
        remove_source(self.source)
        self.source = None


def _too_large(limit: int) -> UploadTooLarge:
    return UploadTooLarge("upload_too_large", f"upload exceeds the limit of {limit / 2**20:.0f} MiB")


def is_video_body(media_type: str) -> bool:
    return media_type.startswith("video/") or media_type == "application/octet-stream"


async def receive_video(
    headers: Mapping[str, str], query: Mapping[str, str], stream: AsyncIterator[bytes], limit: int,
    memory_bytes: int, directory: Path | None,
) -> Upload:  # fmt: skip
    """The video of a multipart form or of a video body (see the module's docstring); a RequestError on a bad
    request, with whatever was written removed."""
    length = headers.get("content-length")
    declared = int(length) if length is not None and length.isdigit() else None
    if declared is not None and declared > limit:
        raise _too_large(limit)
    media_type, params = parse_options_header(headers.get("content-type") or "")
    media = media_type.decode("latin-1").lower()
    in_memory = declared is not None and declared <= memory_bytes
    if media == "multipart/form-data" and b"boundary" in params:
        if set(query) & set(RAW_QUERY_FIELDS):
            raise BadRequest("bad_form", "with a multipart form, send the options as form fields")
        return await _receive_form(params[b"boundary"], stream, limit, in_memory, directory)
    if is_video_body(media):
        return await _receive_raw(headers, query, stream, limit, in_memory, directory)
    raise BadRequest(
        "bad_form",
        "send the video as multipart/form-data in the field 'video' (curl -F video=@FILE), or as the body with "
        "Content-Type video/* or application/octet-stream (curl --data-binary @FILE -H 'Content-Type: video/mp4')",
    )  # fmt: skip


async def _receive_raw(headers, query, stream, limit: int, in_memory: bool, directory: Path | None) -> Upload:
    unknown = sorted(set(query) - set(RAW_QUERY_FIELDS))
    if unknown:
        expected = ", ".join(RAW_QUERY_FIELDS)
        raise BadRequest("bad_form", f"unexpected query parameter {unknown[0]!r}; the parameters are {expected}")
    _, disposition = parse_options_header(headers.get("content-disposition", ""))
    given = query.get("filename") or disposition.get(b"filename", b"").decode("utf-8", "replace")
    writer = VideoWriter(os.path.basename(given)[:255] or "video", in_memory, directory)
    try:
        async for chunk in stream:
            if writer.size + len(chunk) > limit:
                raise _too_large(limit)
            writer.write(chunk)
    except BaseException:
        writer.discard()
        raise
    options = {name: query[name] for name in OPTION_FIELDS if name in query}
    return Upload(writer.finish(), writer.size, options)


async def _receive_form(boundary: bytes, stream, limit: int, in_memory: bool, directory: Path | None) -> Upload:
    state = _PartState(in_memory, directory)
    parser = MultipartParser(boundary, state.callbacks())
    received = 0
    try:
        async for chunk in stream:
            received += len(chunk)
            if received > limit:
                raise _too_large(limit)
            parser.write(chunk)
            if state.error is not None:
                raise state.error
        parser.finalize()
        if state.error is not None:
            raise state.error
        if not state.finished_parts:
            raise BadRequest("bad_form", "the multipart body is empty or malformed")
        if state.video is None:
            raise BadRequest("bad_form", "no 'video' field: send the file as -F video=@FILE")
    except FormParserError as error:  # python-multipart's own parse errors
        state.discard()
        raise BadRequest("bad_form", f"malformed multipart body: {error}") from None
    except BaseException:  # ours (RequestError), a disk or memory error, a cancelled request: nothing is left
        state.discard()
        raise
    return Upload(state.video, state.video_size, state.fields)


class _PartState:
    """Callbacks for python-multipart: headers of the current part, then its data to the video or a field."""

    def __init__(self, in_memory: bool, directory: Path | None):
        self.in_memory, self.directory = in_memory, directory
        self.header_field = self.header_value = b""
        self.headers: dict[bytes, bytes] = {}
        self.name: str | None = None
        self.writer: VideoWriter | None = None
        self.video: VideoSource | None = None
        self.video_size = 0
        self.text = bytearray()
        self.fields: dict[str, str] = {}
        self.error: RequestError | None = None
        self.finished_parts = 0

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": lambda data, start, end: self._append("header_field", data[start:end]),
            "on_header_value": lambda data, start, end: self._append("header_value", data[start:end]),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
        }

    def _append(self, attribute: str, data: bytes) -> None:
        setattr(self, attribute, getattr(self, attribute) + data)

    def part_begin(self) -> None:
        self.headers, self.name, self.text = {}, None, bytearray()

    def header_end(self) -> None:
        self.headers[self.header_field.lower()] = self.header_value
        self.header_field, self.header_value = b"", b""

    def headers_finished(self) -> None:
        if self.error is not None:
            return
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        self.name = options.get(b"name", b"").decode("utf-8", "replace")
        if self.name == FILE_FIELD:
            if self.video is not None or self.writer is not None:
                self.error = BadRequest("bad_form", "more than one 'video' field; send one file per request")
                return
            filename = os.path.basename(options.get(b"filename", b"video").decode("utf-8", "replace")) or "video"
            self.writer = VideoWriter(filename[:255], self.in_memory, self.directory)
        elif self.name not in OPTION_FIELDS:
            expected = ", ".join(repr(f) for f in (FILE_FIELD, *OPTION_FIELDS))
            self.error = BadRequest("bad_form", f"unexpected form field {self.name!r}; the fields are {expected}")

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self.error is not None:
            return
        if self.writer is not None:
            self.writer.write(memoryview(data)[start:end])
        elif self.name in OPTION_FIELDS:
            self.text += data[start:end]
            if len(self.text) > MAX_TEXT_FIELD_BYTES:
                self.error = BadRequest("bad_form", f"form field {self.name!r} is too long")

    def part_end(self) -> None:
        if self.error is not None:
            return
        if self.writer is not None:
            self.video_size, self.video = self.writer.size, self.writer.finish()
            self.writer = None
        elif self.name in OPTION_FIELDS:
            self.fields[self.name] = self.text.decode("utf-8", "replace").strip()
        self.finished_parts += 1

    def discard(self) -> None:
        if self.writer is not None:
            self.writer.discard()
            self.writer = None
        remove_source(self.video)
        self.video = None
