"""NVDEC decoding in the server process: frames decoded into GPU memory, fitted to the backbone's size there,
never copied to the host.

One `NvdecPool` per GPU serves every request: `engines` worker threads (as many as the GPU has NVDEC engines,
`engines_of`, or the TZN_NVDEC_ENGINES setting), each decoding one part of one video at a time. A video is
cut into parts of its sampling ticks, at keyframes where the frame index knows them (`split_ticks`); each part
is decoded by its own torchcodec decoder, which starts at the keyframe before its first tick, so the parts
together give exactly the frames one decoder would. A part costs CPU besides the GPU (its decoder scans the
file's packets when it opens), so a video gets as many parts as it can have engines: all of them when it is
alone, one when the engines are shared by as many videos (`part_length_s`). Parts are at most
`longest_part_s` long and a request keeps at most `parts_ahead` in flight, so its frames waiting on the GPU
stay bounded whatever the video's length; decoders' hardware sessions are reused across parts and requests
through torchcodec's NVDEC cache.

Only streams NVDEC decodes itself come here (engine/video/choice.py). A torchcodec decoder that falls back
to the CPU all the same, or fails on the GPU, is refused (NvdecFallbackError): its frames are never served,
and the caller decodes the video on the CPU instead, naming that decoder (a corrupt file then fails there, in
the isolated child, with the error the CPU path gives it).

The frames are those on screen at the ticks (engine/video/sampling.py), fitted by the one resize rule
(engine/video/frames.py, which also says why torchcodec's truncating colour conversion is used as it is).

Decoding here is not isolated in a child process: the container precheck ran in this process and the
stream's info was read in the isolated child before (engine/video/decode.py); the time limit and
cancellation are checked between chunks, but a hardware decoder that hangs inside one call cannot be
interrupted.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from engine.errors import JobCancelledError, VideoTimeoutError
from engine.video.decode import DecodeRequest, FrameChunk, coarse_frames
from engine.video.frames import fit_frames
from engine.video.info import VideoInfo
from engine.video.readers import open_torchcodec, played_at
from engine.video.sampling import sample_ticks
from engine.video.source import VideoSource

# NVDEC engines per GPU (NVIDIA's video codec support matrix); NVML does not report the count.
NVDEC_ENGINES = {"H200": 7, "H100": 7, "GH200": 7, "A100": 5, "A30": 4, "L40": 3, "L4": 4, "A10": 2, "T4": 2}
DEFAULT_ENGINES = 2
# Frames asked of torchcodec at a time: at 720p, 32 frames are 88 MB of uint8 and 354 MB as the resize's floats.
DECODE_BATCH = 32
_POLL_S = 0.2


class NvdecFallbackError(RuntimeError):
    """NVDEC did not decode the video: torchcodec fell back to the CPU, or failed on the GPU."""


def engines_of(device: torch.device) -> int:
    """NVDEC engines of the GPU at `device`, by its name; DEFAULT_ENGINES for a GPU not in the table."""
    name = torch.cuda.get_device_name(device).upper()
    for model, engines in sorted(NVDEC_ENGINES.items(), key=lambda item: -len(item[0])):
        if model in name.replace("NVIDIA ", "").split() or f" {model}" in f" {name}":
            return engines
    return DEFAULT_ENGINES


def part_length_s(duration_s: float, engines_free: float, shortest_s: float = 2.0, longest_s: float = 60.0) -> float:
    """Seconds of video per part: the video spread over the engines it can have, no part shorter than
    `shortest_s` (below which opening a decoder costs more than it saves) nor longer than `longest_s`."""
    return min(max(duration_s / max(engines_free, 1.0), shortest_s), longest_s)


def split_ticks(ticks: np.ndarray, fps: float, part_s: float, key_times: tuple[float, ...] = ()) -> list[np.ndarray]:
    """Consecutive parts of `ticks`, about `part_s` seconds each (at least one). A part decodes from the keyframe
    before its first tick, so a cut between keyframes costs the frames from that keyframe on twice (up to a GOP:
    8.3 s of x264's default). Where `key_times` (the keyframes' start times) are known, each cut moves to the
    keyframe nearest it, if one lies within half a part: its part then decodes its own frames only."""
    per_part = max(1, int(round(part_s * fps)))
    cuts = list(range(per_part, len(ticks), per_part))
    if len(key_times):
        keys, moved = np.asarray(key_times, dtype=np.float64), []
        for cut in cuts:
            nearest = keys[np.argmin(np.abs(keys - ticks[cut]))]
            if abs(nearest - ticks[cut]) <= part_s / 2:
                cut = int(np.searchsorted(ticks, nearest))  # the first tick at or after the keyframe shows it or later
            if (moved[-1] if moved else 0) < cut < len(ticks):
                moved.append(cut)
        cuts = moved
    bounds = [0, *cuts, len(ticks)]
    return [ticks[begin:end] for begin, end in zip(bounds[:-1], bounds[1:], strict=True)]


class NvdecPool:
    """See the module's docstring. `decode` is safe to call from many threads. On a CPU device (tests of the
    pool's logic where no GPU is present) the same parts run through torchcodec on the CPU."""

    def __init__(self, device: torch.device, engines: int = 0, longest_part_s: float = 60.0, parts_ahead: int = 6):
        from torchcodec.decoders import set_nvdec_cache_capacity

        on_gpu = device.type == "cuda"
        self.device = torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device()) \
            if on_gpu else device  # fmt: skip
        self.engines = engines or (engines_of(self.device) if on_gpu else DEFAULT_ENGINES)
        self.longest_part_s, self.parts_ahead = longest_part_s, parts_ahead
        self.videos = 0  # videos being decoded now
        self.videos_lock = threading.Lock()
        set_nvdec_cache_capacity(max(20, 3 * self.engines))  # 20: torchcodec's default
        self.executor = ThreadPoolExecutor(
            self.engines, thread_name_prefix="nvdec", initializer=_use_device, initargs=(self.device,)
        )

    def decode(
        self,
        source: VideoSource,
        info: VideoInfo,
        request: DecodeRequest,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> Iterator[FrameChunk]:
        """The sampled frames of `source` (whose info the isolated child read), fitted to `request.size`, in
        time order. Raises VideoTimeoutError past
        `request.timeout_s`, JobCancelledError when `cancelled()`, NvdecFallbackError (see above). Chunks hold at
        most DECODE_BATCH frames. A request with `one_pass_bytes` is first fitted to the video's duration
        (DecodeRequest.for_duration), as the CPU decoders' child fits it."""
        request = request.for_duration(info.duration_s)
        deadline = time.monotonic() + request.timeout_s
        begin_s = info.frame_times[0] if info.frame_times else 0.0
        ticks = sample_ticks(begin_s, info.duration_s, request.fps, request.spans)
        if len(ticks) == 0:  # spans that hold no tick
            return
        with self.videos_lock:
            self.videos += 1
            engines_free = self.engines / self.videos
        part_s = part_length_s(info.duration_s - begin_s, engines_free, longest_s=self.longest_part_s)
        parts = split_ticks(ticks, request.fps, part_s, info.key_times)
        starts = np.cumsum([0] + [len(part) for part in parts])  # each part's first frame's number
        stop = threading.Event()
        outputs: list[queue.Queue] = []
        first = 0
        try:
            for index in range(len(parts)):
                while len(outputs) < min(len(parts), index + self.parts_ahead):
                    part = len(outputs)
                    outputs.append(self._submit(source, info, (parts[part], int(starts[part])), request, stop))
                for frames, times, coarse in _drain(outputs[index], deadline, cancelled, request, source.name):
                    yield FrameChunk(frames, times, first, len(ticks), coarse)
                    first += len(times)
        finally:
            stop.set()
            with self.videos_lock:
                self.videos -= 1

    def _submit(
        self, source: VideoSource, info: VideoInfo, part: tuple[np.ndarray, int], request: DecodeRequest,
        stop: threading.Event,
    ):  # fmt: skip
        output: queue.Queue = queue.Queue()  # unbounded: a part is at most longest_part_s at the backbone's size
        first_s = info.frame_times[0] if info.frame_times else 0.0
        self.executor.submit(_decode_part, source.local_path, source.name, (info.stream.seek_mode, first_s), part,
                             request, self.device, output, stop)  # fmt: skip
        return output

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def _use_device(device: torch.device) -> None:
    """A worker's first step: NVDEC needs a current CUDA context in its thread (else "failed to create decoder")."""
    if device.type == "cuda":
        torch.cuda.set_device(device)


def _decode_part(
    path, name, timing: tuple[str, float], part: tuple[np.ndarray, int], request: DecodeRequest, device,
    output: queue.Queue, stop: threading.Event,
):  # fmt: skip
    """One part of one video on this worker's engine: (frames, times, coarse frames or None) items, then None; an
    exception is put in the queue for the consumer to raise. `timing`: torchcodec's seek mode for this stream
    (VideoInfo.stream) and the time of its first frame in the frame index (readers.played_at); `part`: its ticks
    and the number of its first frame among all sampled frames (DecodeRequest.coarse_every)."""
    seek_mode, first_s = timing
    ticks, number = part
    try:
        if stop.is_set():
            return
        decoder = open_torchcodec(path, name, device=str(device), seek_mode=seek_mode)
        step = min(request.chunk_frames, DECODE_BATCH)
        for first in range(0, len(ticks), step):
            if stop.is_set():
                return
            frames, times = played_at(decoder, ticks[first : first + step], first_s)
            if device.type == "cuda" and decoder.cpu_fallback:
                raise NvdecFallbackError(f"torchcodec decoded '{name}' on the CPU: {decoder.cpu_fallback}")
            coarse = None
            if request.coarse_size is not None:
                numbers = number + first + np.arange(len(times))
                coarse = coarse_frames(frames, numbers, request.coarse_size, request.coarse_every)[0]
            output.put((frames if request.size is None else fit_frames(frames, request.size), times, coarse))
        output.put(None)
    except NvdecFallbackError as error:
        output.put(error)
    except Exception as error:  # the CPU decoder, isolated, decides what the file is: the caller decodes it there
        detail = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        output.put(NvdecFallbackError(f"NVDEC could not decode '{name}' ({type(error).__name__}: {detail})"))
    except BaseException as error:  # handed to the consumer, raised there
        output.put(error)


def _drain(output: queue.Queue, deadline: float, cancelled, request: DecodeRequest, name: str) -> Iterator:
    while True:
        if cancelled():
            raise JobCancelledError(f"decoding '{name}' was cancelled")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise VideoTimeoutError(
                f"decoding '{name}' took longer than {request.timeout_s:g} s and was stopped: "
                "try again later or send a shorter or lower-resolution video"
            )
        try:
            item = output.get(timeout=min(_POLL_S, remaining))
        except queue.Empty:
            continue
        if item is None:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def decode_every_frame(path: str, device: torch.device, threads: int) -> float:
    """NVDEC's limit on one file: frames/s decoding every frame (no resize) in `threads` concurrent decoders,
    each over the whole file (bench/http_load.py names it next to the served figures)."""
    torch.cuda.set_device(device)
    counts = [0] * threads

    def run(index: int) -> None:
        torch.cuda.set_device(device)
        decoder = open_torchcodec(path, path, device=str(device))
        for start in range(0, len(decoder), 64):
            counts[index] += len(decoder.get_frames_in_range(start, min(start + 64, len(decoder))).pts_seconds)
        torch.cuda.synchronize(device)

    started = time.perf_counter()
    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - started)
