"""A video to decode: a file on disk, or the bytes of an upload held in memory.

In memory means an anonymous memory file (Linux memfd): no temporary file is written, yet every decoder can
open it by path (`/proc/self/fd/N`), in this process (NVDEC) and in the isolated decoder child, which gets
its own descriptor of the same memory when it starts.
"""

from __future__ import annotations

import os
from multiprocessing import reduction
from pathlib import Path


class VideoSource:
    """`name` is what errors and answers call the video (the upload's file name)."""

    def __init__(self, name: str, path: str | os.PathLike | None = None, fd: int | None = None):
        if (path is None) == (fd is None):
            raise ValueError("a VideoSource is a path or a memory file descriptor, not both or neither")
        self.name = name
        self.path = None if path is None else Path(path).absolute()
        self.fd = fd

    @classmethod
    def from_path(cls, path: str | os.PathLike, name: str | None = None) -> VideoSource:
        return cls(name or Path(path).name, path=path)

    @classmethod
    def in_memory(cls, name: str) -> VideoSource:
        """An empty memory file to write the upload into (`write`)."""
        return cls(name, fd=os.memfd_create("tzn-upload", os.MFD_CLOEXEC))  # the name is only for /proc listings

    @classmethod
    def from_bytes(cls, data: bytes, name: str) -> VideoSource:
        source = cls.in_memory(name)
        source.write(data)
        return source

    def write(self, data: bytes | memoryview) -> None:
        """Appends to a memory file (the whole of `data`)."""
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    @property
    def size(self) -> int:
        return os.fstat(self.fd).st_size if self.fd is not None else self.path.stat().st_size

    @property
    def local_path(self) -> str:
        """A path this process can open."""
        return str(self.path) if self.path is not None else f"/proc/self/fd/{self.fd}"

    def read_at(self, offset: int, length: int) -> bytes:
        with open(self.local_path, "rb") as file:
            file.seek(offset)
            return file.read(length)

    def for_child(self) -> tuple[str, object]:
        """What the decoder child receives (pickled when it starts): the path, or the memory file's descriptor,
        duplicated into the child as it is launched."""
        if self.path is not None:
            return "path", str(self.path)
        return "fd", _LaunchDescriptor(self.fd)

    def close(self) -> None:
        """Frees a memory file (a path's file belongs to whoever made it)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = -1


class _LaunchDescriptor:
    """A descriptor that travels with the child's launch: pickled while multiprocessing starts the child, it
    joins the descriptors the fork server hands over, so nothing is kept for a child that never starts (the
    resource sharer, multiprocessing's other way, holds a duplicate until the child asks for it)."""

    def __init__(self, fd: int):
        self.fd = fd

    def __reduce__(self):
        return _inherited, (reduction.DupFd(self.fd),)


def _inherited(duplicate) -> int:
    return duplicate.detach()


def child_path(handle: tuple[str, object]) -> str:
    """In the decoder child: a path to the video `for_child` described."""
    kind, value = handle
    return value if kind == "path" else f"/proc/self/fd/{value}"
