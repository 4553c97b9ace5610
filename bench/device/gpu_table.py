"""The head's GPU table (run by bench/device/gpu_check.sh on a CUDA host): the THUMOS-size head's latency and
FLOPs at T = 2304 and 4608, eager vs CUDA graphs: Uniform-6, ATR hard with a hand-shaped tau (a constructed
case) and with a trained TZN's tau (bench/data/trained_tau.npz, what a trained model asks for), Uniform-1; and
the GPU ms per phase of the graphed head. The served path is measured through HTTP by bench/http_load.py.

    python bench/device/gpu_table.py [--out DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.atr_speed import tau_for_mean_depth, thumos_boundary_stream  # noqa: E402
from experiments.trained_tau import load_trained_tau  # noqa: E402
from model.config import ModelConfig  # noqa: E402
from model.flops import output_flops  # noqa: E402
from model.graphs import GraphedHead  # noqa: E402
from model.tzn import TZN  # noqa: E402


def cuda_ms(run, repeats: int = 30) -> float:
    """Median wall ms of `run` after 3 warm-up calls, the device synchronised after each (on CUDA)."""
    synchronize = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(3):
        run()
    synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


UNIFORM, SHAPED, TRAINED, FLOOR = "Uniform-6", "ATR hard, shaped tau", "ATR hard, trained tau", "Uniform-1 (floor)"


def head_cases(
    length: int, mean_depth: float, floor: float, device: str
) -> tuple[dict[str, TZN], dict[str, list[Tensor | None]], Tensor, Tensor]:
    """The THUMOS-size head cases at T = `length` (ModelConfig defaults, random weights: the cost does not depend
    on them) -> models by case, each case's taus, features (1, C, T) and mask (1, T).

    Uniform-6; ATR (the same weights plus a tau predictor) with one hand-shaped tau around the real THUMOS14 test
    boundaries, mean depth `mean_depth` (bench/atr_speed), and with the windows of bench/data/trained_tau.npz (a
    TZN trained by experiments/results.py) cut to `length`; Uniform-1, ATR's floor (D_min = 1 everywhere). The uniform
    cases have the one tau None."""
    trained, metadata = load_trained_tau()
    config = ModelConfig(atr=True)
    if (metadata["stem_layers"], metadata["min_depth"]) != (config.stem_layers, config.min_depth):
        raise ValueError(f"trained tau {metadata} is not for a head with {config.stem_layers} layers, D_min 1")
    if metadata["length"] < length:
        raise ValueError(f"trained tau windows have {metadata['length']} steps, fewer than T = {length}")
    torch.manual_seed(0)
    uniform = TZN(ModelConfig(atr=False)).to(device).eval()
    atr = TZN(config).to(device).eval()
    atr.load_state_dict(uniform.state_dict(), strict=False)
    models = {UNIFORM: uniform, SHAPED: atr, TRAINED: atr, FLOOR: TZN(ModelConfig(atr=False, stem_layers=1))}
    models[FLOOR].to(device).eval()
    stream = thumos_boundary_stream()
    taus = {
        UNIFORM: [None],
        SHAPED: [tau_for_mean_depth(stream[stream < length], length, mean_depth, floor, config).to(device)],
        TRAINED: [torch.from_numpy(window[None, :length].copy()).to(device) for window in trained],
        FLOOR: [None],
    }
    features = torch.randn(1, config.input_dim, length, device=device)
    return models, taus, features, torch.ones(1, length, dtype=torch.bool, device=device)


@torch.inference_mode()
def head_rows(lengths: list[int], mean_depth: float = 3.0, floor: float = 0.1, repeats: int = 30,
              device: str = "cuda") -> list[dict]:  # fmt: skip
    """`head_cases` at each T, eager (not Uniform-1) and graph: ms (mean over a case's taus), mean depth, GFLOPs
    (model.flops, bucket padding included) and both against Uniform-6."""
    return [row for length in lengths for row in head_length_rows(length, mean_depth, floor, repeats, device)]


def head_length_rows(length: int, mean_depth: float, floor: float, repeats: int, device: str) -> list[dict]:
    models, taus, features, mask = head_cases(length, mean_depth, floor, device)
    measured = {}
    for name, model in models.items():
        graphed = GraphedHead(model, tau_override=model.config.atr)
        runs = {
            "eager": lambda tau, model=model: model(features, mask, execution="hard", tau_override=tau),
            "graph": lambda tau, graphed=graphed: graphed(features, mask, tau),
        }
        for mode, run in runs.items():
            if name == FLOOR and mode == "eager":
                continue
            calls = [lambda run=run, tau=tau: run(tau) for tau in taus[name]]
            outputs = [call() for call in calls]
            measured[name, mode] = {
                "windows": len(calls),
                "ms": statistics.fmean(cuda_ms(call, repeats) for call in calls),
                "gflops": statistics.fmean(output_flops(model.config, o, batch=1).total for o in outputs) / 1e9,
                "mean_depth": statistics.fmean(float(o.layer_masks[0, :length].sum(-1).mean()) for o in outputs),
            }
    return [
        {"T": length, "model": name, "mode": mode, **values,
         "vs_uniform_same_mode": values["ms"] / measured[UNIFORM, mode]["ms"],
         "flops_vs_uniform": values["gflops"] / measured[UNIFORM, mode]["gflops"]}
        for (name, mode), values in measured.items()
    ]  # fmt: skip


@torch.inference_mode()
def head_phase_rows(length: int = 2304, mean_depth: float = 3.0, floor: float = 0.1, repeats: int = 30) -> dict:
    """Where a graphed head call's GPU time goes: median ms between the phase marks of `GraphedHead.on_phase`
    (CUDA events), for each of `head_cases` (the trained tau: its first window) at T = `length`. A phase's time
    includes any wait of the GPU for the host before it (for ATR, "sync" is that wait: the host reading the
    active-block counts)."""
    models, taus, features, mask = head_cases(length, mean_depth, floor, "cuda")
    rows, shares = {}, {}
    for name, model in models.items():
        head, tau = GraphedHead(model, tau_override=model.config.atr), taus[name][0]
        rows[name] = phase_ms(head, lambda head=head, tau=tau: head(features, mask, tau), repeats)
        if tau is not None:  # what each ATR stem layer ran: the share of the bucket's positions (padding included)
            executed = head(features, mask, tau).stem.executed_positions.tolist()
            shares[f"{name}: executed share"] = {f"stem {layer}": n / length for layer, n in enumerate(executed)}
    return rows | shares


def phase_ms(head: GraphedHead, run, repeats: int) -> dict[str, float]:
    """{phase: median GPU ms from the previous mark to this one} over `repeats` calls of `run` (which calls head)."""
    events: list[tuple[str, torch.cuda.Event]] = []

    def mark(name: str) -> None:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        events.append((name, event))

    for _ in range(3):  # capture the graphs first
        run()
    head.on_phase = mark
    samples: dict[str, list[float]] = {}
    try:
        for _ in range(repeats):
            events.clear()
            run()
            torch.cuda.synchronize()
            for (_, before), (name, after) in itertools.pairwise(events):
                samples.setdefault(name, []).append(before.elapsed_time(after))
    finally:
        head.on_phase = None
    return {name: statistics.median(times) for name, times in samples.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/tzn-gpu"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print("GPU:", torch.cuda.get_device_name(), "| torch", torch.__version__, flush=True)
    results: dict = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__}

    def section(name, make):
        try:
            started = time.perf_counter()
            results[name] = make()
            print(f"{name}: {time.perf_counter() - started:.1f} s", flush=True)
        except Exception as error:  # one failing section must not hide the others' numbers
            results[name] = f"FAILED: {type(error).__name__}: {error}"
            print(f"{name} FAILED: {error!r}", flush=True)

    section("head", lambda: head_rows([2304, 4608]))
    section("head_phases", lambda: head_phase_rows(2304))
    (args.out / "gpu_table.json").write_text(json.dumps(results, indent=1, default=str))
    print_table(results)


def print_table(results: dict) -> None:
    print(f"\n## GPU table: {results['gpu']}, torch {results['torch']}\n")
    if isinstance(results.get("head"), list):
        print("\n| T | head | mode | ms | vs Uniform-6 (same mode) | mean depth | GFLOPs | FLOPs vs Uniform-6 |")
        print("|---|---|---|---|---|---|---|---|")
        for row in results["head"]:
            print(f"| {row['T']} | {row['model']} | {row['mode']} | {row['ms']:.2f} | {row['vs_uniform_same_mode']:.2f} | "
                  f"{row['mean_depth']:.2f} | {row['gflops']:.1f} | {row['flops_vs_uniform']:.2f} |")  # fmt: skip
    else:
        print("head:", results.get("head"))
    phases = results.get("head_phases")
    if isinstance(phases, dict):
        names = list(phases)
        every = {phase for name in names for phase in phases[name]}  # in call order: embed, sync, stem..., heads
        order = sorted(every, key=lambda phase: (phase != "embed", phase != "sync", phase == "heads", phase))
        print("\nT = 2304, graphs: GPU ms per phase (CUDA events between GraphedHead's phase marks), and the share of")
        print("positions each ATR stem layer ran\n")
        print("| phase | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
        for phase in order + ["total"]:
            cells = [
                phases[name].get(phase)
                if phase != "total"
                else (None if "share" in name else sum(phases[name].values()))
                for name in names
            ]
            print(f"| {phase} | " + " | ".join("" if c is None else f"{c:.2f}" for c in cells) + " |")
    else:
        print("head_phases:", phases)


if __name__ == "__main__":
    main()
