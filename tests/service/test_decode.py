"""service.decode on real files made with ffmpeg, real camera footage, and broken uploads. No mocks."""

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

from service.decode import (
    decode_frames,
    probe_video,
    run_isolated,
    sample_indices,
)
from service.errors import (
    EmptyVideoError,
    NotAVideoError,
    VideoDecodeError,
    VideoTimeoutError,
    VideoTooLargeError,
    VideoTooLongError,
)

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg binary (apt install ffmpeg)")

# ------------------------------------------------------------------------------------------ decoding real files


def test_h264_probe_reports_duration_fps_frames_and_size(media):
    info = probe_video(media / "clip.mp4")
    assert (info.filename, info.frames, info.width, info.height) == ("clip.mp4", 90, 320, 240)
    assert info.fps == pytest.approx(30.0)
    assert info.duration_s == pytest.approx(3.0, abs=1e-3)


def test_h264_decodes_every_frame_with_frame_timestamps(media):
    frames, timestamps, info = decode_frames(media / "clip.mp4")
    assert frames.shape == (90, 240, 320, 3) and frames.dtype == np.uint8
    np.testing.assert_allclose(timestamps, np.arange(90) / 30, atol=1e-4)
    assert frames.std() > 10  # real picture content, not a blank buffer


def test_sampling_at_target_fps_gives_count_and_spacing(media):
    frames, timestamps, _ = decode_frames(media / "clip.mp4", sample_fps=4, size=(112, 112))
    assert frames.shape == (12, 112, 112, 3)  # 3 s x 4 frames/s
    # the frame on screen at each tick k/4 s: never later than the tick, less than one source frame earlier
    lag = np.arange(12) / 4 - timestamps
    assert np.all(lag > -1e-4) and np.all(lag < 1 / 30)


def test_frame_step_takes_every_nth_frame(media):
    _, timestamps, _ = decode_frames(media / "clip.mp4", frame_step=4)
    np.testing.assert_allclose(timestamps, np.arange(0, 90, 4) / 30, atol=1e-4)


def test_resize_happens_to_exact_size(media):
    frames, _, info = decode_frames(media / "clip.mp4", frame_step=30, size=(71, 113))
    assert frames.shape == (3, 71, 113, 3)
    assert (info.width, info.height) == (320, 240)  # info describes the source


def test_camera_footage_decodes(camera_footage):
    frames, timestamps, info = decode_frames(camera_footage, sample_fps=2, size=(144, 192))
    assert (info.width, info.height, info.frames) == (768, 576, 795)
    assert info.duration_s == pytest.approx(79.5, abs=0.01)
    assert frames.shape == (159, 144, 192, 3)
    np.testing.assert_allclose(np.diff(timestamps), 0.5, atol=1e-3)
    assert 60 < frames.mean() < 200


def test_variable_frame_rate_sampling_keeps_time_spacing(media):
    info = probe_video(media / "vfr.mp4")
    assert info.duration_s == pytest.approx(6.0, abs=0.05)
    frames, timestamps, _ = decode_frames(media / "vfr.mp4", sample_fps=5)
    assert len(frames) == np.ceil(info.duration_s * 5)
    assert np.all(np.diff(timestamps) > 0)
    # each sample is the frame on screen at its tick: at most one source frame (0.1 s in the 10 fps part) early
    ticks = np.arange(len(frames)) / 5
    assert np.all(timestamps <= ticks + 1e-3) and np.all(ticks - timestamps < 0.1 + 2e-3)


def test_odd_frame_size_decodes(media):
    frames, _, info = decode_frames(media / "odd.mp4", frame_step=10)
    assert (info.width, info.height) == (321, 177)
    assert frames.shape == (5, 177, 321, 3)
    small, _, _ = decode_frames(media / "odd.mp4", frame_step=10, size=(59, 107))
    assert small.shape == (5, 59, 107, 3)


# ------------------------------------------------------------------------------------------ broken uploads


@pytest.mark.parametrize(
    ("name", "error", "words"),
    [
        ("empty.mp4", EmptyVideoError, "empty (0 bytes)"),
        ("random.mp4", NotAVideoError, "not in a recognised video format"),
        ("still.png", NotAVideoError, "PNG image, not a video"),
        ("notes.txt", NotAVideoError, "text file, not a video"),
        ("tone.m4a", NotAVideoError, "no video stream (audio only)"),
        ("truncated.mp4", VideoDecodeError, "truncated"),
    ],
)
def test_bad_upload_raises_typed_error_that_says_what_to_do(media, name, error, words):
    with pytest.raises(error) as caught:
        decode_frames(media / name, sample_fps=2)
    message = str(caught.value)
    assert words in message and f"'{name}'" in message
    assert any(hint in message for hint in ("send", "expected a video file", "re-encode"))


def test_probe_raises_the_same_typed_errors(media):
    with pytest.raises(NotAVideoError, match="audio only"):
        probe_video(media / "tone.m4a")


def test_error_names_the_upload_not_the_temp_path(media):
    with pytest.raises(NotAVideoError, match="'holiday.mp4'"):
        decode_frames(media / "still.png", filename="holiday.mp4")


def test_too_long_video_is_refused_before_decoding(media):
    with pytest.raises(VideoTooLongError) as caught:
        decode_frames(media / "clip.mp4", max_duration_s=2.0)
    assert caught.value.duration_s == pytest.approx(3.0, abs=1e-3) and caught.value.limit_s == 2.0


def test_frames_over_memory_limit_are_refused(media, tmp_path):
    with pytest.raises(VideoTooLargeError, match="sample fewer frames"):
        decode_frames(media / "clip.mp4", size=(100, 100), max_bytes=89 * 100 * 100 * 3, tmp_dir=tmp_path)
    with pytest.raises(VideoTooLongError):  # the HTTP layer maps both to 413
        decode_frames(media / "clip.mp4", sample_fps=10, max_frames=29)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ process isolation


def write_pid_then_hang(workdir: Path, pid_file: str) -> None:
    (workdir / "partial.npy").write_bytes(b"half a result")
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(600)


def write_pid_then_segfault(workdir: Path, pid_file: str) -> None:
    (workdir / "partial.npy").write_bytes(b"half a result")
    Path(pid_file).write_text(str(os.getpid()))
    os.kill(os.getpid(), signal.SIGSEGV)


def return_workdir_listing(workdir: Path, value: int) -> list[str]:
    (workdir / "frames.npy").write_bytes(b"x")
    return [value, sorted(p.name for p in workdir.iterdir())]


def raise_a_bug(workdir: Path) -> None:
    raise KeyError("not the upload's fault")


def process_gone(pid: int) -> bool:
    """Neither running nor a zombie: /proc lists zombies too, until someone reaps them."""
    return not Path(f"/proc/{pid}").exists()


def test_isolated_run_returns_value_and_cleans_workdir(tmp_path):
    with run_isolated(return_workdir_listing, (7,), timeout_s=30, filename="v.mp4", tmp_dir=tmp_path) as (
        result,
        workdir,
    ):
        assert result[0] == 7 and "frames.npy" in result[1]
        assert workdir.exists()
    assert list(tmp_path.iterdir()) == []


def test_hanging_decoder_times_out_and_leaves_nothing_behind(tmp_path):
    scratch, pid_file = tmp_path / "scratch", tmp_path / "pid"
    scratch.mkdir()
    started = time.monotonic()
    with (
        pytest.raises(VideoTimeoutError, match="longer than 3 s"),
        run_isolated(write_pid_then_hang, (str(pid_file),), timeout_s=3, filename="v.mp4", tmp_dir=scratch),
    ):
        pass
    assert time.monotonic() - started < 15
    assert list(scratch.iterdir()) == []
    assert process_gone(int(pid_file.read_text()))


def test_crashing_decoder_raises_decode_error_and_leaves_nothing_behind(tmp_path):
    scratch, pid_file = tmp_path / "scratch", tmp_path / "pid"
    scratch.mkdir()
    with (
        pytest.raises(VideoDecodeError, match="crashed.*SIGSEGV"),
        run_isolated(write_pid_then_segfault, (str(pid_file),), timeout_s=30, filename="v.mp4", tmp_dir=scratch),
    ):
        pass
    assert list(scratch.iterdir()) == []
    assert process_gone(int(pid_file.read_text()))


def exit_without_a_word(workdir: Path, pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    os._exit(3)


def test_decoder_that_exits_without_a_word_fails_at_once_with_its_exit_status(tmp_path):
    pid_file = tmp_path / "pid"
    with (
        pytest.raises(VideoDecodeError, match=r"crashed \(exit code 3"),
        run_isolated(exit_without_a_word, (str(pid_file),), timeout_s=60, filename="v.mp4", tmp_dir=tmp_path),
    ):
        pass
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
from service.decode import run_isolated
from tests.service.test_decode import write_pid_then_segfault
try:
    with run_isolated(write_pid_then_segfault, (sys.argv[1],), timeout_s=60, filename="v.mp4", tmp_dir=sys.argv[2]):
        pass
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


def test_failure_unrelated_to_the_file_is_a_server_error_not_a_video_error(tmp_path):
    with (
        pytest.raises(RuntimeError, match="KeyError"),
        run_isolated(raise_a_bug, (), timeout_s=30, filename="v.mp4", tmp_dir=tmp_path),
    ):
        pass
    assert list(tmp_path.iterdir()) == []


def test_decode_leaves_no_temp_files(media, tmp_path):
    decode_frames(media / "clip.mp4", sample_fps=2, tmp_dir=tmp_path)
    with pytest.raises(VideoDecodeError):
        decode_frames(media / "truncated.mp4", tmp_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ sampling


def test_sample_indices_match_a_brute_force_search():
    rng = np.random.default_rng(1)
    starts = np.cumsum(rng.uniform(0.02, 0.12, size=200))
    starts -= starts[0]
    end_s = starts[-1] + 0.05
    indices = sample_indices(starts, end_s, sample_fps=7)
    for k, index in enumerate(indices):
        tick = k / 7
        expected = max(i for i in range(len(starts)) if starts[i] <= tick + 1e-6)
        assert index == expected
    assert len(indices) == int(np.ceil(end_s * 7))


def test_fork_server_preloads_the_heavy_modules_the_parent_holds():
    # Children re-import the parent's main module; with torch preloaded in the fork server that costs nothing.
    import torch  # noqa: F401  (the service process always holds it)

    from service.decode import _preload_modules

    assert {"service.decode", "torch"} <= set(_preload_modules())
