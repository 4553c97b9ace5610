"""engine/video: decoding in the isolated child on real files made with ffmpeg, real camera footage, and broken
uploads; the child's isolation (timeouts, crashes, bugs). No mocks."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import (
    EmptyVideoError,
    NotAVideoError,
    VideoDecodeError,
    VideoTimeoutError,
    VideoTooLongError,
)
from engine.video.child import DecoderChild, _ready_child, enter_workdir, preload_modules
from engine.video.decode import DecodeRequest, Decoding, decode_frames, probe_video
from engine.video.readers import dies_with_caller
from engine.video.sampling import sample_indices
from engine.video.source import VideoSource

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg binary (apt install ffmpeg)")

# ------------------------------------------------------------------------------------------ decoding real files


def test_h264_probe_reports_duration_fps_frames_size_and_format(media):
    info = probe_video(media / "clip.mp4")
    assert (info.filename, info.frames, info.width, info.height) == ("clip.mp4", 90, 320, 240)
    assert info.fps == pytest.approx(30.0)
    assert info.duration_s == pytest.approx(3.0, abs=1e-3)
    assert (info.stream.codec, info.stream.pixel_format, info.stream.chroma) == ("h264", "yuv420p", "4:2:0")


def test_h264_decodes_every_frame_with_frame_timestamps(media):
    frames, timestamps, info = decode_frames(media / "clip.mp4")
    assert frames.shape == (90, 240, 320, 3) and frames.dtype == np.uint8
    np.testing.assert_allclose(timestamps, np.arange(90) / 30, atol=1e-4)
    assert frames.std() > 10  # real picture content, not a blank buffer


def test_sampling_at_target_fps_gives_count_and_spacing(media):
    frames, timestamps, _ = decode_frames(media / "clip.mp4", DecodeRequest(fps=4, size=(112, 112)))
    assert frames.shape == (12, 112, 112, 3)  # 3 s x 4 frames/s
    # the frame on screen at each tick k/4 s: never later than the tick, less than one source frame earlier
    lag = np.arange(12) / 4 - timestamps
    assert np.all(lag > -1e-4) and np.all(lag < 1 / 30)


def test_resize_happens_to_exact_size(media):
    frames, _, info = decode_frames(media / "clip.mp4", DecodeRequest(fps=1, size=(71, 113)))
    assert frames.shape == (3, 71, 113, 3)
    assert (info.width, info.height) == (320, 240)  # info describes the source


def test_camera_footage_decodes(camera_footage):
    frames, timestamps, info = decode_frames(camera_footage, DecodeRequest(fps=2, size=(144, 192)))
    assert (info.width, info.height, info.frames) == (768, 576, 795)
    assert info.duration_s == pytest.approx(79.5, abs=0.01)
    assert frames.shape == (159, 144, 192, 3)
    np.testing.assert_allclose(np.diff(timestamps), 0.5, atol=1e-3)
    assert 60 < frames.mean() < 200


def test_variable_frame_rate_sampling_keeps_time_spacing(media):
    info = probe_video(media / "vfr.mp4")
    assert info.duration_s == pytest.approx(6.0, abs=0.05)
    frames, timestamps, _ = decode_frames(media / "vfr.mp4", DecodeRequest(fps=5))
    assert len(frames) == np.ceil(info.duration_s * 5)
    assert np.all(np.diff(timestamps) > 0)
    # each sample is the frame on screen at its tick: at most one source frame (0.1 s in the 10 fps part) early
    ticks = np.arange(len(frames)) / 5
    assert np.all(timestamps <= ticks + 1e-3) and np.all(ticks - timestamps < 0.1 + 2e-3)


def test_odd_frame_size_decodes(media):
    frames, _, info = decode_frames(media / "odd.mp4", DecodeRequest(fps=2.5))
    assert (info.width, info.height) == (321, 177)
    assert frames.shape == (5, 177, 321, 3)
    small, _, _ = decode_frames(media / "odd.mp4", DecodeRequest(fps=2.5, size=(59, 107)))
    assert small.shape == (5, 59, 107, 3)


def test_a_video_held_in_memory_decodes_as_its_file_does(media):
    source = VideoSource.from_bytes((media / "clip.mp4").read_bytes(), "upload.mp4")
    try:
        in_memory, times, info = decode_frames(source, DecodeRequest(fps=4, size=(112, 112)))
    finally:
        source.close()
    from_file, file_times, _ = decode_frames(media / "clip.mp4", DecodeRequest(fps=4, size=(112, 112)))
    assert info.filename == "upload.mp4"
    np.testing.assert_array_equal(in_memory, from_file)
    np.testing.assert_array_equal(times, file_times)


@pytest.mark.parametrize("decoder", ["decord", "torchcodec"])
@pytest.mark.parametrize(
    "frames_per_batch", [1, 3, 100]
)  # the child's decode batches: fewer frames than a chunk, or more
def test_chunks_add_up_to_the_whole_decode(media, decoder, frames_per_batch):
    path = media / "vfr.mp4"
    frame_bytes = probe_video(path).width * probe_video(path).height * 3
    request = DecodeRequest(fps=5, size=(64, 64), chunk_frames=7, batch_bytes=frames_per_batch * frame_bytes)
    with Decoding(VideoSource.from_path(path), request, decoder) as decoding:
        chunks = list(decoding.chunks())
    whole, times, _ = decode_frames(path, DecodeRequest(fps=5, size=(64, 64)), decoder)
    assert [len(chunk.times) for chunk in chunks[:-1]] == [7] * (len(chunks) - 1)
    assert [chunk.first for chunk in chunks] == list(range(0, len(whole), 7))
    assert {chunk.total for chunk in chunks} == {len(whole)}
    np.testing.assert_array_equal(np.concatenate([chunk.frames.numpy() for chunk in chunks]), whole)
    np.testing.assert_array_equal(np.concatenate([chunk.times for chunk in chunks]), times)


@pytest.mark.parametrize("decoder", ["decord", "torchcodec"])
@pytest.mark.parametrize(("frames_per_batch", "every"), [(1, 3), (3, 3), (100, 2), (3, 20)])
def test_coarse_frames_come_with_their_chunks_as_a_decode_at_that_size_gives_them(
    media, decoder, frames_per_batch, every
):
    """DecodeRequest.coarse_size: every n-th sampled frame also at a smaller size, in the chunk that holds it,
    pixel for pixel what a decode at that size gives (n = 20: chunks with no coarse frame)."""
    path = media / "vfr.mp4"
    frame_bytes = probe_video(path).width * probe_video(path).height * 3
    request = DecodeRequest(fps=5, size=(112, 112), chunk_frames=7, batch_bytes=frames_per_batch * frame_bytes,
                            coarse_size=(48, 48), coarse_every=every)  # fmt: skip
    with Decoding(VideoSource.from_path(path), request, decoder) as decoding:
        chunks = list(decoding.chunks())
    whole, _, _ = decode_frames(path, DecodeRequest(fps=5, size=(112, 112)), decoder)
    small, _, _ = decode_frames(path, DecodeRequest(fps=5, size=(48, 48)), decoder)
    np.testing.assert_array_equal(np.concatenate([chunk.frames.numpy() for chunk in chunks]), whole)
    for chunk in chunks:
        numbers = [n for n in range(chunk.first, chunk.first + len(chunk.times)) if n % every == 0]
        np.testing.assert_array_equal(chunk.coarse.numpy(), small[numbers])
    assert sum(len(chunk.coarse) for chunk in chunks) == len(range(0, len(whole), every))


@pytest.mark.parametrize(
    ("fields", "words"),
    [({"coarse_every": 0}, "coarse_every must be >= 1"), ({"coarse_size": (48, 0)}, "coarse_size must be"),
     ({"coarse_size": (48,)}, "coarse_size must be")],
)  # fmt: skip
def test_a_coarse_size_or_step_that_cannot_be_is_refused(fields, words):
    with pytest.raises(ValueError, match=words):
        DecodeRequest(fps=5, **{"coarse_size": (48, 48), **fields})


def test_coarse_frames_of_camera_footage_are_those_a_decode_at_that_size_gives(camera_footage):
    """The same on a real camera file (opencv-doc's vtest.avi: MPEG-4 part 2 in AVI, decoded in order)."""
    request = DecodeRequest(fps=8, size=(112, 112), chunk_frames=16, coarse_size=(64, 64), coarse_every=2)
    with Decoding(VideoSource.from_path(camera_footage), request, "decord") as decoding:
        chunks = list(decoding.chunks())
    small, _, _ = decode_frames(camera_footage, DecodeRequest(fps=4, size=(64, 64)), "decord")
    np.testing.assert_array_equal(torch.cat([chunk.coarse for chunk in chunks]).numpy(), small)


@pytest.mark.parametrize("decoder", ["decord", "torchcodec"])
def test_a_video_whose_frames_pass_one_pass_bytes_is_decoded_for_its_coarse_pass_alone(media, decoder):
    """DecodeRequest.one_pass_bytes, decided from the duration before the decode: within it, every frame at `size`
    with the coarse frames beside them; one byte less, only the coarse ticks, at the coarse size, pixel for pixel
    what a decode at the coarse rate and size gives."""
    path = media / "vfr.mp4"
    needed = int(np.ceil(probe_video(path).duration_s * 8)) * 112 * 112 * 3
    answers = {}
    for budget in (needed, needed - 1):
        request = DecodeRequest(fps=8, size=(112, 112), chunk_frames=7, coarse_size=(48, 48), coarse_every=2,
                                one_pass_bytes=budget)  # fmt: skip
        with Decoding(VideoSource.from_path(path), request, decoder) as decoding:
            answers[budget] = list(decoding.chunks())
    whole, _, _ = decode_frames(path, DecodeRequest(fps=8, size=(112, 112)), decoder)
    small, times, _ = decode_frames(path, DecodeRequest(fps=4, size=(48, 48)), decoder)
    both, alone = answers[needed], answers[needed - 1]
    np.testing.assert_array_equal(torch.cat([chunk.frames for chunk in both]).numpy(), whole)
    np.testing.assert_array_equal(torch.cat([chunk.coarse for chunk in both]).numpy(), small)
    assert all(chunk.coarse is None for chunk in alone) and {chunk.total for chunk in alone} == {len(small)}
    np.testing.assert_array_equal(torch.cat([chunk.frames for chunk in alone]).numpy(), small)
    np.testing.assert_array_equal(np.concatenate([chunk.times for chunk in alone]), times)


def test_for_duration_keeps_the_request_within_one_pass_bytes_and_thins_it_beyond():
    request = DecodeRequest(fps=16, size=(112, 112), coarse_size=(64, 64), coarse_every=4, one_pass_bytes=2**20)
    fits = 2**20 // (112 * 112 * 3) / 16  # seconds whose frames fit
    assert request.for_duration(fits) == DecodeRequest(fps=16, size=(112, 112), coarse_size=(64, 64), coarse_every=4)
    assert request.for_duration(fits + 1 / 16) == DecodeRequest(fps=4, size=(64, 64))
    same_size = DecodeRequest(fps=16, size=(112, 112), coarse_every=4, one_pass_bytes=0)
    assert same_size.for_duration(1.0) == DecodeRequest(fps=4, size=(112, 112))
    assert DecodeRequest(fps=16, size=(112, 112)).for_duration(1e6) == DecodeRequest(fps=16, size=(112, 112))
    with pytest.raises(ValueError, match="one_pass_bytes needs fps and size"):
        DecodeRequest(fps=16, one_pass_bytes=2**20)


# ------------------------------------------------------------------------------------------ broken uploads


@pytest.mark.parametrize("decoder", ["decord", "torchcodec"])
@pytest.mark.parametrize(
    ("name", "error", "words"),
    [
        ("empty.mp4", EmptyVideoError, "empty (0 bytes)"),
        ("random.mp4", NotAVideoError, "not in a recognised video format"),
        ("still.png", NotAVideoError, "PNG image, not a video"),
        ("notes.txt", NotAVideoError, "text file, not a video"),
        ("tone.m4a", NotAVideoError, "no video stream (audio only)"),
        ("tone.ogg", NotAVideoError, "no video stream"),
        ("bare.h264", NotAVideoError, "bare video stream without a container"),
        ("truncated.mp4", VideoDecodeError, "truncated"),
    ],
)
def test_bad_upload_raises_typed_error_that_says_what_to_do(media, name, error, words, decoder):
    with pytest.raises(error) as caught:
        decode_frames(media / name, DecodeRequest(fps=2), decoder)
    message = str(caught.value)
    assert words in message and f"'{name}'" in message
    assert any(hint in message for hint in ("send", "expected a video file", "re-encode"))


def test_a_matroska_file_without_a_frame_count_or_rate_is_refused_with_the_remux_that_decodes_it(tmp_path):
    """1000 fps in Matroska (1 ms ticks): FFmpeg finds no average frame rate and Matroska stores no frame count, so
    decord cannot index it. The advice given, an MP4 by stream copy, decodes."""
    path, remuxed = tmp_path / "fast.mkv", tmp_path / "fast.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=1000", "-t", "0.5",
                    "-c:v", "libx264", "-preset", "ultrafast", str(path)], check=True)  # fmt: skip
    with pytest.raises(VideoDecodeError, match="cannot count its frames.*remux it to MP4"):
        probe_video(path)
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-c", "copy", str(remuxed)], check=True)
    assert probe_video(remuxed).frames == 500


def test_probe_raises_the_same_typed_errors(media):
    with pytest.raises(NotAVideoError, match="audio only"):
        probe_video(media / "tone.m4a")


def test_error_names_the_upload_not_the_temp_path(media):
    with pytest.raises(NotAVideoError, match="'holiday.mp4'"):
        decode_frames(VideoSource(name="holiday.mp4", path=media / "still.png"))


def test_too_long_video_is_refused_before_decoding(media):
    with pytest.raises(VideoTooLongError) as caught:
        decode_frames(media / "clip.mp4", DecodeRequest(max_duration_s=2.0))
    assert caught.value.duration_s == pytest.approx(3.0, abs=1e-3) and caught.value.limit_s == 2.0


# ------------------------------------------------------------------------------------------ process isolation


def started(conn, fatal, workdir: str) -> None:
    conn.send(("started", None))
    enter_workdir(workdir, fatal)


def write_pid_then_hang(conn, fatal, workdir: str, pid_file: str) -> None:
    started(conn, fatal, workdir)
    (Path(workdir) / "partial.npy").write_bytes(b"half a result")
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(600)


def start_a_program_then_hang(conn, fatal, workdir: str) -> None:
    started(conn, fatal, workdir)
    program = subprocess.Popen(dies_with_caller(["sleep", "600"]))  # as playable starts the remux
    conn.send(("ok", program.pid))
    time.sleep(600)


def write_pid_then_segfault(conn, fatal, workdir: str, pid_file: str) -> None:
    started(conn, fatal, workdir)
    (Path(workdir) / "partial.npy").write_bytes(b"half a result")
    Path(pid_file).write_text(str(os.getpid()))
    os.kill(os.getpid(), signal.SIGSEGV)


def send_workdir_listing(conn, fatal, workdir: str, value: int) -> None:
    started(conn, fatal, workdir)
    (Path(workdir) / "frames.npy").write_bytes(b"x")
    conn.send(("ok", [value, sorted(p.name for p in Path(workdir).iterdir())]))


def raise_a_bug(conn, fatal, workdir: str) -> None:
    from engine.video.child import report_failure

    started(conn, fatal, workdir)
    report_failure(conn, KeyError("not the upload's fault"))


def exit_without_a_word(conn, fatal, workdir: str, pid_file: str) -> None:
    started(conn, fatal, workdir)
    Path(pid_file).write_text(str(os.getpid()))
    os._exit(3)


def run_child(target, args: tuple, tmp_dir: Path, timeout_s: float = 30) -> tuple:
    """Runs `target` in a DecoderChild; returns its first message after "started"."""
    child = DecoderChild(target, args, timeout_s=timeout_s, filename="v.mp4", tmp_dir=tmp_dir)
    try:
        child.started()
        return child.next_message(), child.workdir
    finally:
        child.close()


def process_gone(pid: int) -> bool:
    """Neither running nor a zombie: /proc lists zombies too, until someone reaps them."""
    return not Path(f"/proc/{pid}").exists()


def process_ended(pid: int) -> bool:
    """Gone, or a zombie: dead, and reaped by whoever adopted it (a container's first process may never)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_child_message_arrives_and_its_workdir_is_removed(tmp_path):
    (status, (value, listing)), workdir = run_child(send_workdir_listing, (7,), tmp_path)
    assert (status, value) == ("ok", 7) and "frames.npy" in listing and "decoder.log" in listing
    assert not workdir.exists() and list(tmp_path.iterdir()) == []


def test_hanging_decoder_times_out_and_leaves_nothing_behind(tmp_path):
    scratch, pid_file = tmp_path / "scratch", tmp_path / "pid"
    scratch.mkdir()
    with pytest.raises(VideoTimeoutError, match="longer than 3 s"):
        run_child(write_pid_then_hang, (str(pid_file),), scratch, timeout_s=3)
    assert list(scratch.iterdir()) == []
    assert process_gone(int(pid_file.read_text()))


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux's setpriv")
def test_a_program_the_decoder_started_ends_with_it(tmp_path):
    """A remux's ffmpeg (readers.playable) does not outlive a decoder child that is stopped (killed: on its time
    limit, a cancel, or here once its message is read)."""
    (status, program), _ = run_child(start_a_program_then_hang, (), tmp_path)
    assert status == "ok"
    deadline = time.monotonic() + 5
    while not process_ended(program) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_ended(program)


def test_crashing_decoder_raises_decode_error_and_leaves_nothing_behind(tmp_path):
    scratch, pid_file = tmp_path / "scratch", tmp_path / "pid"
    scratch.mkdir()
    with pytest.raises(VideoDecodeError, match="crashed.*SIGSEGV"):
        run_child(write_pid_then_segfault, (str(pid_file),), scratch)
    assert list(scratch.iterdir()) == []
    assert process_gone(int(pid_file.read_text()))


def test_decoder_that_exits_without_a_word_fails_at_once_with_its_exit_status(tmp_path):
    pid_file = tmp_path / "pid"
    with pytest.raises(VideoDecodeError, match=r"crashed \(exit code 3"):
        run_child(exit_without_a_word, (str(pid_file),), tmp_path, timeout_s=60)
    assert process_gone(int(pid_file.read_text()))


# A crash handler as some machines install one for every process (preloaded): on SIGSEGV it writes a
# backtrace file into the current directory, takes its time (symbolizing), then exits with status 1.
SLOW_CRASH_HANDLER = r"""
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static void on_fatal(int sig) {
    char name[64];
    snprintf(name, sizeof name, "python.%d.btr", (int)getpid());
    int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) { write(fd, "backtrace\n", 10); close(fd); }
    sleep(120);
    _exit(1);
}
__attribute__((constructor)) static void install(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_fatal;
    sigaction(SIGSEGV, &action, NULL);
    sigaction(SIGBUS, &action, NULL);
}
"""

CRASH_UNDER_HANDLER = """
import sys
from pathlib import Path
from tests.engine.test_decode import run_child, write_pid_then_segfault
try:
    run_child(write_pid_then_segfault, (sys.argv[1],), Path(sys.argv[2]), timeout_s=60)
except Exception as error:
    print(type(error).__name__, error)
"""


@pytest.mark.skipif(
    shutil.which("cc") is None, reason="needs a C compiler (apt install gcc) to build the crash handler"
)
def test_segfault_is_reported_at_once_where_a_crash_handler_turns_it_into_a_slow_exit(tmp_path):
    source, library = tmp_path / "handler.c", tmp_path / "libslowcrash.so"
    source.write_text(SLOW_CRASH_HANDLER)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    scratch, pid_file, cwd = tmp_path / "scratch", tmp_path / "pid", tmp_path / "cwd"
    scratch.mkdir()
    cwd.mkdir()
    env = {**os.environ, "LD_PRELOAD": str(library), "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, "-c", CRASH_UNDER_HANDLER, str(pid_file), str(scratch)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    # the handler sleeps 120 s: without the fatal-signal report this would be a VideoTimeoutError after 60 s
    assert run.stdout.startswith("VideoDecodeError") and "killed by SIGSEGV" in run.stdout, run.stdout + run.stderr
    assert list(scratch.iterdir()) == []  # the handler's backtrace file went with the decoder's workdir
    assert list(cwd.iterdir()) == []
    assert process_gone(int(pid_file.read_text()))


def test_the_warm_up_child_of_a_server_stopped_during_start_up_ends_without_a_traceback():
    """SIGTERM while `tzn serve` warms up closes the server's end of the warm-up child's pipe before the child
    reports; it used to die with BrokenPipeError's traceback in the server's log."""
    import multiprocessing

    server_end, child_end = multiprocessing.Pipe()
    server_end.close()
    _ready_child(child_end, None, "")  # returns quietly
    child_end.close()


def test_failure_unrelated_to_the_file_is_a_server_error_not_a_video_error(tmp_path):
    with pytest.raises(RuntimeError, match="KeyError"):
        run_child(raise_a_bug, (), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_decode_leaves_no_temp_files(media, tmp_path):
    decode_frames(media / "clip.mp4", DecodeRequest(fps=2), tmp_dir=tmp_path)
    with pytest.raises(VideoDecodeError):
        decode_frames(media / "truncated.mp4", tmp_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_fork_server_preloads_the_decoders_and_torch():
    assert {"engine.video.readers", "decord", "torch", "torchcodec.decoders"} <= set(preload_modules())


# ------------------------------------------------------------------------------------------ sampling


def test_sample_indices_match_a_brute_force_search():
    rng = np.random.default_rng(1)
    starts = np.cumsum(rng.uniform(0.02, 0.12, size=200))
    starts -= starts[0]
    end_s = starts[-1] + 0.05
    indices = sample_indices(starts, end_s, fps=7)
    for k, index in enumerate(indices):
        tick = k / 7
        expected = max(i for i in range(len(starts)) if starts[i] <= tick + 1e-6)
        assert index == expected
    assert len(indices) == int(np.ceil(end_s * 7))


def test_float32_frame_times_late_in_a_video_still_give_every_frame_at_the_source_rate():
    """decord stamps frames in float32 seconds: frame 964 of a 30 fps video is stamped 32.13333511 s, 1.8 us after
    the tick at 964 / 30 s. Sampling at the source rate must still give each frame once, for an hour."""
    exact = np.arange(30 * 3600) / 30
    stamped = exact.astype(np.float32).astype(np.float64)
    assert (stamped > exact + 1e-6).any()  # the rounding the tolerance has to cover
    np.testing.assert_array_equal(sample_indices(stamped, exact[-1] + 1 / 30, fps=30), np.arange(len(exact)))
    eight = sample_indices(stamped, exact[-1] + 1 / 30, fps=8)  # every 4th tick falls on a frame's start
    np.testing.assert_array_equal(eight, np.floor(np.arange(len(eight)) * 30 / 8 + 1e-9).astype(int))
    # the end too: a 33.2 s video's last frame ends at float32(33.2) = 33.20000076 s, which makes no 997th tick
    end = float(np.float32(33.2))
    assert end * 30 > 996 + 1e-5
    np.testing.assert_array_equal(sample_indices(stamped[:996], end, fps=30), np.arange(996))


def test_decord_and_torchcodec_pick_the_same_frames_late_in_a_long_video(tmp_path):
    """40 s at 30 fps: past 16 s decord's float32 frame times round up by more than a microsecond; torchcodec's
    are float64. Both must sample the same frames at the source rate and at the served 8 fps."""
    path = tmp_path / "forty_seconds.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=30", "-t", "40",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )  # fmt: skip
    every, every_times, info = decode_frames(path, DecodeRequest(fps=None, size=(48, 64)))
    for fps in (30, 8):
        request = DecodeRequest(fps=fps, size=(48, 64))
        frames, times, _ = decode_frames(path, request, "decord")
        other, other_times, _ = decode_frames(path, request, "torchcodec")
        np.testing.assert_allclose(times, other_times, atol=1e-4)
        np.testing.assert_array_equal(frames, other)
        if fps == 30:
            assert len(times) == info.frames and (np.diff(times) > 0).all()
            np.testing.assert_array_equal(frames, every)
