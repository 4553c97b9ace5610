"""Streaming multipart parsing of `/localize` uploads, with the size limit enforced while bytes arrive.

The video part goes straight to a named temporary file (the decoder process opens it by path); the other
form fields are small and kept in memory. Nothing is buffered whole, so a huge upload costs at most the
limit in disk and a chunk in memory before it is refused.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header

from service.errors import UploadError

FILE_FIELD = "video"
TEXT_FIELDS = ("min_score", "top_k")
MAX_TEXT_FIELD_BYTES = 1024


@dataclass
class Upload:
    path: Path | None = None
    filename: str | None = None
    size: int = 0
    fields: dict[str, str] = field(default_factory=dict)

    def remove(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


def _too_large(limit: int) -> UploadError:
    return UploadError(413, "upload_too_large", f"upload exceeds the limit of {limit / 2**20:.0f} MiB")


async def receive_upload(
    content_type: str | None, content_length: str | None, stream: AsyncIterator[bytes], limit: int,
    temp_dir: Path | None = None,
) -> Upload:  # fmt: skip
    """Parses a multipart/form-data body from `stream`. On any error the temporary file is removed."""
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise _too_large(limit)
    media_type, params = parse_options_header(content_type or "")
    if media_type != b"multipart/form-data" or b"boundary" not in params:
        raise UploadError(
            400, "bad_form", "send multipart/form-data with the video in the field 'video' (curl -F video=@FILE)"
        )
    upload = Upload()
    state = _PartState(upload, temp_dir)
    parser = MultipartParser(params[b"boundary"], state.callbacks())
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
            raise UploadError(400, "bad_form", "the multipart body is empty or malformed")
    except UploadError:
        state.close()
        upload.remove()
        raise
    except Exception as error:  # python-multipart raises its own parse errors
        state.close()
        upload.remove()
        raise UploadError(400, "bad_form", f"malformed multipart body: {error}") from None
    state.close()
    if upload.path is None:
        upload.remove()
        raise UploadError(400, "bad_form", "no 'video' field: send the file as -F video=@FILE")
    return upload


class _PartState:
    """Callbacks for python-multipart: headers of the current part, then its data to a file or a buffer."""

    def __init__(self, upload: Upload, temp_dir: Path | None):
        self.upload, self.temp_dir = upload, temp_dir
        self.header_field = b""
        self.header_value = b""
        self.headers: dict[bytes, bytes] = {}
        self.name: str | None = None
        self.file = None
        self.text = bytearray()
        self.error: UploadError | None = None
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
        name = options.get(b"name", b"").decode("utf-8", "replace")
        self.name = name
        if name == FILE_FIELD:
            if self.upload.path is not None:
                self.error = UploadError(400, "bad_form", "more than one 'video' field; send one file per request")
                return
            filename = options.get(b"filename", b"video").decode("utf-8", "replace")
            self.upload.filename = os.path.basename(filename) or "video"
            descriptor, path = tempfile.mkstemp(prefix="tzn-upload-", dir=self.temp_dir)
            self.upload.path = Path(path)
            self.file = os.fdopen(descriptor, "wb")
        elif name not in TEXT_FIELDS:
            expected = ", ".join(repr(f) for f in (FILE_FIELD, *TEXT_FIELDS))
            self.error = UploadError(400, "bad_form", f"unexpected form field {name!r}; the fields are {expected}")

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self.error is not None:
            return
        if self.file is not None:
            self.file.write(data[start:end])
            self.upload.size += end - start
        elif self.name in TEXT_FIELDS:
            self.text += data[start:end]
            if len(self.text) > MAX_TEXT_FIELD_BYTES:
                self.error = UploadError(400, "bad_form", f"form field {self.name!r} is too long")

    def part_end(self) -> None:
        if self.error is not None:
            return
        if self.file is not None:
            self.file.close()
            self.file = None
        elif self.name in TEXT_FIELDS:
            self.upload.fields[self.name] = self.text.decode("utf-8", "replace").strip()
        self.finished_parts += 1

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
