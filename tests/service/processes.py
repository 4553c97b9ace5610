"""Which decoder children are alive: the processes forked by multiprocessing's fork server of this process."""

from __future__ import annotations

import os
from multiprocessing import forkserver
from pathlib import Path


def children_of(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is `pid`, read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, parent = fields[0], int(fields[1])
        if parent == pid and state != "Z":
            found.append(int(entry.name))
    return found


def decoder_children() -> list[int]:
    server = getattr(forkserver._forkserver, "_forkserver_pid", None)
    if server is None:
        return []
    return [pid for pid in children_of(server) if pid != os.getpid()]


def server_decoder_children(server_pid: int) -> list[int]:
    """Decoder children of a server process: the children of its fork server (its child running
    multiprocessing.forkserver)."""
    found = []
    for child in children_of(server_pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"forkserver" in command:
            found += children_of(child)
    return found
