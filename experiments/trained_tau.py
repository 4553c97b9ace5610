"""A trained TZN's tau on test windows, saved so that hosts without the run (the GPU device) can time the
THUMOS-size head at the depths a trained model asks for, not only at a hand-shaped tau.

    PYTHONPATH=. python experiments/trained_tau.py --run RUN_DIR --data DATA_DIR [--windows 3] [--length 4608]
        [--out bench/data/trained_tau.npz] [--source "the command that trained RUN_DIR"]

RUN_DIR is a trained ATR checkpoint directory of experiments/results.py (e.g. WORKDIR/runs/TAG/tzn), DATA_DIR its
dataset (WORKDIR/data/TAG, with annotations.json and features/). Like experiments/results.py's latency windows,
the test videos' features are laid end to end and `--windows` windows of `--length` steps are cut, evenly
spaced; the model runs on each window (so its block depths line up with the window's attention blocks) and
its tau, the predicted one after block averaging, is saved with the depth settings that turn it into layer
masks. A window's first T steps are a valid window of T (attention blocks start at 0).

`load_trained_tau` reads the file back (bench/device/gpu_table.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.checkpoint import WEIGHTS_NAME, file_sha256, load_checkpoint  # noqa: E402

DEFAULT_PATH = ROOT / "bench" / "data" / "trained_tau.npz"
DEPTH_KEYS = ("stem_layers", "min_depth", "attn_block_size", "block_depth", "integer_depth")


def trained_tau(run: Path, data: Path, windows: int, length: int) -> tuple[np.ndarray, dict]:
    """(windows, length) float32 tau of the trained ATR model in `run` on test windows of `data`, and metadata."""
    # imported here: bench/device/gpu_table.py reads the file on hosts without training/
    from experiments.results import latency_windows

    model, _ = load_checkpoint(run)
    if not model.config.atr:
        raise ValueError(f"{run} holds a uniform model (atr=False): it has no tau")
    taus = []
    with torch.inference_mode():
        for features in latency_windows(data / "annotations.json", data / "features", windows, length):
            mask = torch.ones(1, features.shape[2], dtype=torch.bool)
            taus.append(model(features, mask, execution="hard").tau[0, :length].numpy())
    metadata = {
        "run": str(run),
        "weights_sha256": file_sha256(run / WEIGHTS_NAME),
        "windows": windows,
        "length": length,
        **{key: getattr(model.config, key) for key in DEPTH_KEYS},
    }
    return np.stack(taus).astype(np.float32), metadata


def save_trained_tau(path: Path, tau: np.ndarray, metadata: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, tau=tau, metadata=np.array(json.dumps(metadata, sort_keys=True)))


def load_trained_tau(path: Path = DEFAULT_PATH) -> tuple[np.ndarray, dict]:
    """(windows, length) tau and the metadata written by `save_trained_tau`."""
    with np.load(path, allow_pickle=False) as saved:
        tau, metadata = saved["tau"], json.loads(str(saved["metadata"]))
    if tau.ndim != 2 or tau.shape != (metadata["windows"], metadata["length"]):
        raise ValueError(f"{path}: tau has shape {tau.shape}, metadata says {metadata['windows']}x{metadata['length']}")
    if not np.isfinite(tau).all() or tau.min() < 0 or tau.max() > 1:
        raise ValueError(f"{path}: tau must be finite and in [0, 1]")
    return tau, metadata


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a trained ATR checkpoint directory")
    parser.add_argument("--data", type=Path, required=True, help="its dataset: annotations.json and features/")
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--length", type=int, default=4608)
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--source", default="", help="how RUN_DIR was made (kept in the file's metadata)")
    args = parser.parse_args(argv)
    tau, metadata = trained_tau(args.run, args.data, args.windows, args.length)
    if args.source:
        metadata["source"] = args.source
    save_trained_tau(args.out, tau, metadata)
    depth = metadata["min_depth"] + tau * (metadata["stem_layers"] - metadata["min_depth"])
    print(f"wrote {args.out}: {tau.shape[0]} windows of {tau.shape[1]} steps, mean depth {depth.mean():.2f}")


if __name__ == "__main__":
    main()
