"""Receiving uploads, through HTTP: one process (the default) against intake processes (TZN_INTAKE_WORKERS), in
one run, with a raw loopback socket as the limit.

    python bench/intake.py [--workers 2] [--clients 1,2,4,8] [--requests 3] [--seconds 60]

The 720p file of bench/http_load.py (60 s, about 80 MB) is sent as the request body by N client processes at
once, each `--requests` times back to back, to `/localize?top_k=0`: the server receives the whole body, hands it
over (with intake processes), and refuses the option (400) before any decoding. The client-side median is then
the upload stage and the handoff alone, which the served path's decoding would otherwise hide on a small CPU.
The same bytes over a raw loopback socket into a file, N at once, are the limit (bench/http_load.py,
`raw_socket_ms`). Each server runs alone; the rows are printed as they come.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.http_load import make_video, raw_socket_ms  # noqa: E402


def client(url: str, video: str, requests: int, results) -> None:
    """One client process: `requests` uploads of `video` as curl sends them (http.client: headers, then the
    body in one write); (status, ms) per request into `results`."""
    import http.client
    from urllib.parse import urlsplit

    data, address = Path(video).read_bytes(), urlsplit(url)
    for _ in range(requests):
        started = time.perf_counter()
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=600)
        connection.request("POST", "/localize?top_k=0", body=data, headers={"Content-Type": "video/mp4"})
        response = connection.getresponse()
        response.read()
        connection.close()
        results.put((response.status, (time.perf_counter() - started) * 1000))


def upload_row(url: str, video: Path, clients: int, requests: int) -> tuple[float, list[int]]:
    """The client-side median ms of `clients` processes sending at once, and the statuses they got."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=client, args=(url, str(video), requests, results)) for _ in range(clients)]
    for process in processes:
        process.start()
    answers = [results.get(timeout=600) for _ in range(clients * requests)]
    for process in processes:
        process.join()
    return statistics.median(ms for _, ms in answers), sorted({status for status, _ in answers})


def main(argv: list[str] | None = None) -> dict:
    from tools.launch import running_server

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="TZN_INTAKE_WORKERS of the second server")
    parser.add_argument("--clients", default="1,2,4,8", help="client counts, comma-separated")
    parser.add_argument("--requests", type=int, default=3, help="requests per client and row")
    parser.add_argument("--seconds", type=int, default=60, help="length of the generated 720p video")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "tzn-http-load")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    video = make_video(args.out / f"video_{args.seconds}s_720p.mp4", args.seconds)
    counts = [int(c) for c in args.clients.split(",")]
    print(f"{video.name}: {video.stat().st_size / 2**20:.0f} MB; client-side median ms of an upload refused after "
          "it is in", flush=True)  # fmt: skip
    results: dict = {}
    for workers in (0, args.workers):
        env = {"TZN_INTAKE_WORKERS": str(workers), "TZN_JOBS_DIR": str(args.out / f"jobs-{workers}")}
        with running_server(env, args.out / f"server-intake-{workers}.log", ready_timeout_s=600) as url:
            upload_row(url, video, 1, 1)  # warm
            for clients in counts:
                ms, statuses = upload_row(url, video, clients, args.requests)
                results[(workers, clients)] = ms
                name = "one process" if workers == 0 else f"{workers} intake processes"
                print(f"{name:<20} {clients:>2} clients  p50 {ms:>6.0f} ms  statuses {statuses}", flush=True)
    for clients in counts:
        limit = raw_socket_ms(video, clients, args.out)
        print(f"{'raw loopback socket':<20} {clients:>2} clients  p50 {limit:>6.0f} ms", flush=True)
    for leftover in args.out.glob("raw*.bin"):
        leftover.unlink()
    return results


if __name__ == "__main__":
    main()
