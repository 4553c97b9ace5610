"""The served path under load, through HTTP: `tzn serve` with its default settings, clients in separate processes.

    python bench/http_load.py [--seconds 60] [--clients 1,2,4,8,16] [--requests 3] [--out DIR]

A 720p H.264 video (camera-like: noise with fresh grain every frame, moving shapes; libx264 "veryfast", about
11 Mbit/s; made with ffmpeg, or with torchcodec's encoder on a host without ffmpeg) is sent as the request body
(`Content-Type: video/mp4`) by N client processes at once, each `--requests` times back to back, for every N of
`--clients`; one more row sends it as a multipart form from one client. Per row: the client-side latency
(p50, p95), the median of each stage the answers report (`timing_ms`), the source frames served per second
(frames of the video x answers / wall time), the errors (any status but 200) and the decoders that ran.

In the same run, the limits the rows are compared against:
- decoding: on a GPU host, NVDEC decoding every frame of the same file with 1 and with 8 decoders at once
  (`engine.video.nvdec.decode_every_frame`); on a CPU host, `ffmpeg -threads 2 -f null` (every frame, no
  conversion) of the same file;
- uploading: the same bytes moved over a raw loopback socket into a file (a one-line server, no HTTP), with
  1 and 4 clients at once: what an upload stage would cost with nothing but the copy.
Results are printed as tables and written to DIR/http_load.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STAGES = ("upload", "queue", "decode", "features", "head", "postprocess", "total")


# ---------------------------------------------------------------------------------------------------- the video


def make_video(path: Path, seconds: int, size: tuple[int, int] = (720, 1280), fps: int = 30) -> Path:
    """A camera-like 720p H.264 file (about 11 Mbit/s): ffmpeg where installed, else torchcodec's encoder."""
    if path.exists():
        return path
    if shutil.which("ffmpeg"):
        height, width = size
        source = (f"testsrc2=size={width}x{height}:rate={fps},noise=alls=14:allf=t+u,"
                  "drawbox=x='mod(t*300,1100)':y=200:w=160:h=160:color=red@1:t=fill")  # fmt: skip
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-t", str(seconds), "-c:v",
                        "libx264", "-preset", "veryfast", "-b:v", "11M", "-maxrate", "11M", "-bufsize", "22M",
                        "-pix_fmt", "yuv420p", str(path)],
                       check=True)  # fmt: skip
        return path
    return _encode_with_torchcodec(path, seconds, size, fps)


def _encode_with_torchcodec(path: Path, seconds: int, size: tuple[int, int], fps: int) -> Path:
    import torch
    from torchcodec.encoders import VideoEncoder

    generator = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 80, (3, size[0] // 8, size[1] // 8), generator=generator, dtype=torch.uint8)
    noise = noise.repeat_interleave(8, 1).repeat_interleave(8, 2)
    frames = torch.empty(seconds * fps, 3, *size, dtype=torch.uint8)
    for t in range(len(frames)):
        frame = torch.roll(noise, shifts=2 * t, dims=2).int()
        grain = torch.randint(0, 24, (1, size[0] // 4, size[1] // 4), generator=generator)
        frame = (frame + grain.repeat_interleave(4, 1).repeat_interleave(4, 2)).clamp(0, 255)
        x, y = (t * 5) % (size[1] - 160), (t * 2) % (size[0] - 160)
        frame[:, y : y + 160, x : x + 160] = torch.tensor([255, 40, 40])[:, None, None]
        frames[t] = frame.to(torch.uint8)
    VideoEncoder(frames, frame_rate=fps).to_file(str(path), codec="libx264", preset="veryfast", crf=23)
    return path


# ---------------------------------------------------------------------------------------------------- clients


def client(url: str, video: str, requests: int, body: str, results) -> None:
    """One client process: `requests` uploads of `video`, back to back; one dict per answer into `results`. The
    request is sent as curl sends it (headers, then the body in one write), with http.client: a client that
    copies the body in Python would measure itself, not the server."""
    import http.client
    from urllib.parse import urlsplit

    data = Path(video).read_bytes()
    headers, payload, path = {"Content-Type": "video/mp4"}, data, "/localize?filename=video.mp4"
    if body == "multipart":
        boundary = "tzn-load-boundary"
        part = f'--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="video.mp4"\r\n\r\n'
        payload = part.encode() + data + f"\r\n--{boundary}--\r\n".encode()
        headers, path = {"Content-Type": f"multipart/form-data; boundary={boundary}"}, "/localize"
    address = urlsplit(url)
    for _ in range(requests):
        began, started = time.time(), time.perf_counter()
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=600)
        connection.request("POST", path, body=payload, headers=headers)
        response = connection.getresponse()
        status, text = response.status, response.read()
        connection.close()
        answer = json.loads(text) if status == 200 else {}
        results.put({
            "status": status, "client_ms": (time.perf_counter() - started) * 1000,
            "timing_ms": answer.get("timing_ms"), "frames": answer.get("video", {}).get("frames", 0),
            "decoder": answer.get("model", {}).get("decoder"), "began": began, "ended": time.time(),
        })  # fmt: skip


def load_row(url: str, video: Path, clients: int, requests: int, body: str = "raw") -> dict:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [
        context.Process(target=client, args=(url, str(video), requests, body, results)) for _ in range(clients)
    ]
    for process in processes:
        process.start()
    answers = [results.get(timeout=900) for _ in range(clients * requests)]
    for process in processes:
        process.join()
    return summarize(answers, clients, body)


def summarize(answers: list[dict], clients: int, body: str) -> dict:
    served = [a for a in answers if a["status"] == 200]
    latencies = sorted(a["client_ms"] for a in answers)
    wall_s = max(a["ended"] for a in answers) - min(a["began"] for a in answers)  # first request to last answer
    row = {
        "clients": clients, "body": body, "requests": len(answers), "errors": len(answers) - len(served),
        "statuses": sorted({a["status"] for a in answers}), "decoders": sorted({str(a["decoder"]) for a in served}),
        "client_p50_ms": statistics.median(latencies),
        "client_p95_ms": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
        "source_fps": sum(a["frames"] for a in served) / wall_s,
    }  # fmt: skip
    for stage in STAGES:
        values = [a["timing_ms"][stage] for a in served]
        row[stage] = statistics.median(values) if values else None
    return row


# ---------------------------------------------------------------------------------------------------- limits


def decode_limit(video: Path, device: str) -> dict:
    """Frames/s of decoding every frame of `video`: NVDEC with 1 and 8 decoders, or ffmpeg on 2 CPU threads."""
    if device == "cuda":
        import torch

        from engine.video.nvdec import decode_every_frame

        gpu = torch.device("cuda", 0)
        return {f"nvdec_{n}_fps": decode_every_frame(str(video), gpu, n) for n in (1, 8)}
    frames = _frame_count(video)
    started = time.perf_counter()
    subprocess.run(["ffmpeg", "-v", "error", "-threads", "2", "-i", str(video), "-f", "null", "-"], check=True)
    return {"ffmpeg_2_threads_fps": frames / (time.perf_counter() - started)}


def _frame_count(video: Path) -> int:
    from engine.video.decode import probe_video

    return probe_video(video).frames


def raw_socket_ms(video: Path, clients: int, directory: Path) -> float:
    """Median ms to move the file's bytes over a loopback socket into a file, `clients` at once: each
    connection is received by a thread of a one-line server that writes what it reads, 1 MiB at a time."""
    data = video.read_bytes()
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def receive(connection: socket.socket, index: int) -> None:
        with connection, open(directory / f"raw{index}.bin", "wb") as sink:
            while chunk := connection.recv(1 << 20):
                sink.write(chunk)
            connection.sendall(b"k")

    def accept() -> None:
        for index in range(clients):
            connection, _ = server.accept()
            threading.Thread(target=receive, args=(connection, index)).start()

    acceptor = threading.Thread(target=accept)
    acceptor.start()
    times: list[float] = []

    def send() -> None:
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.sendall(data)
            connection.shutdown(socket.SHUT_WR)
            connection.recv(1)
        times.append((time.perf_counter() - started) * 1000)

    senders = [threading.Thread(target=send) for _ in range(clients)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    acceptor.join()
    server.close()
    return statistics.median(times)


# ---------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--clients", default="1,2,4,8,16", help="client counts, comma-separated")
    parser.add_argument("--requests", type=int, default=3, help="requests per client and row")
    parser.add_argument("--video", type=Path, help="send this file instead of the generated one")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "tzn-http-load")
    parser.add_argument("--env", action="append", default=[], help="extra TZN_X=value for the server")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    from tools.launch import running_server

    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    video = args.video or make_video(args.out / f"video_{args.seconds}s_720p.mp4", args.seconds)
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    results: dict = {"device": torch.cuda.get_device_name() if device == "cuda" else f"cpu x{os.cpu_count()}",
                     "video": {"path": str(video), "mb": video.stat().st_size / 2**20}, "rows": []}  # fmt: skip
    print(f"{results['device']}: {video.name}, {results['video']['mb']:.0f} MB", flush=True)
    env = dict(item.split("=", 1) for item in args.env)
    with running_server(env, args.out / "server.log", ready_timeout_s=600) as url:
        load_row(url, video, 1, 1)  # warm: every graph and plan the requests need
        for clients in [int(c) for c in args.clients.split(",")]:
            results["rows"].append(load_row(url, video, clients, args.requests))
            print_row(results["rows"][-1])
        results["rows"].append(load_row(url, video, 1, args.requests, body="multipart"))
        print_row(results["rows"][-1])
    results["decode_limit"] = decode_limit(video, device)
    results["raw_socket_ms"] = {n: raw_socket_ms(video, n, args.out) for n in (1, 4)}
    for leftover in args.out.glob("raw*.bin"):
        leftover.unlink()
    (args.out / "http_load.json").write_text(json.dumps(results, indent=1))
    print_limits(results)
    return results


def print_row(row: dict) -> None:
    stages = " ".join(f"{stage} {row[stage]:.0f}" if row[stage] is not None else f"{stage} -" for stage in STAGES)
    print(f"{row['clients']:>2} clients {row['body']:<9} p50 {row['client_p50_ms']:>6.0f} ms  p95 "
          f"{row['client_p95_ms']:>6.0f} ms  {row['source_fps']:>6.0f} frames/s  errors {row['errors']}/"
          f"{row['requests']} {row['statuses']} {row['decoders']} | medians ms: {stages}", flush=True)  # fmt: skip


def print_limits(results: dict) -> None:
    print("decode limit, same file:", {k: round(v) for k, v in results["decode_limit"].items()})
    sockets = results["raw_socket_ms"]
    print(f"raw loopback socket into a file, same bytes: 1 client {sockets[1]:.0f} ms, 4 at once {sockets[4]:.0f} ms")
    rows = {(row["clients"], row["body"]): row for row in results["rows"]}
    if (1, "raw") in rows and (4, "raw") in rows and rows[1, "raw"]["upload"]:
        one, four = rows[1, "raw"]["upload"], rows[4, "raw"]["upload"]
        print(f"upload stage: 1 client {one:.0f} ms = {one / sockets[1]:.2f}x the raw socket; 4 clients "
              f"{four:.0f} ms = {four / one:.2f}x the single client")  # fmt: skip
    limit = max(results["decode_limit"].values())
    best = max(row["source_fps"] for row in results["rows"])
    print(f"best served source frames/s {best:.0f} = {best / limit:.2f}x the best decode limit ({limit:.0f})")


if __name__ == "__main__":
    main()
