"""The TZN head as CUDA graphs, so that batch-1 inference is not bound by kernel launches.

A graph replays fixed shapes, so shapes are bucketed:
- the length T is padded up to a multiple of `length_step` (mask False beyond the video), one set of graphs
  per bucket;
- ATR's hard execution runs layer l on the attention blocks that hold an active position. Their number n_l
  changes from video to video; it is rounded up to one of `count_levels` bucket sizes, and the index list is
  padded by repeating its first entry. A repeated block computes the same update from the same input and
  writes the same value, so the result is exactly that of the unpadded list; the padded blocks are real work,
  and the stem's executed/kv counts (hence FLOPs) include them.

In reading order: the bucketing functions (pure, tested on CPU), which blocks each stem layer runs, and
`GraphedHead`, which runs the phases of `TZN.forward` over static buffers, eagerly (`use_graphs=False`, any
device) or as captured graphs (CUDA). The phases are the model's own methods (`TZN.embedding`, `TZN.depth`,
`ATRStem.dense_layer` / `block_layer` / `output`, `TZN.pyramid_and_heads`), so the arithmetic is that of
`TZN.forward`; only the scheduling (buckets, padded block lists, one host sync) is this module's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from model.atr import StemStats, active_positions
from model.tzn import TZN, TZNOutput

# ---------------------------------------------------------------------------------------------------- buckets


def bucket_length(length: int, step: int) -> int:
    """The smallest multiple of `step` that holds `length` positions (at least one step)."""
    if length < 1 or step < 1:
        raise ValueError(f"bucket_length needs length >= 1 and step >= 1, got {length}, {step}")
    return max(1, math.ceil(length / step)) * step


def count_buckets(blocks: int, levels: int) -> list[int]:
    """Bucket sizes for an active-block count out of `blocks`: ceil(blocks * k / levels), k = 1..levels
    (distinct, increasing; the last is `blocks`)."""
    if blocks < 1 or levels < 1:
        raise ValueError(f"count_buckets needs blocks >= 1 and levels >= 1, got {blocks}, {levels}")
    return sorted({math.ceil(blocks * k / levels) for k in range(1, levels + 1)})


def bucket_count(count: int, buckets: Sequence[int]) -> int:
    """The smallest bucket >= count."""
    for size in buckets:
        if size >= count:
            return size
    raise ValueError(f"count {count} exceeds the largest bucket {buckets[-1]}")


def padded_block_index(active: np.ndarray, size: int) -> np.ndarray:
    """(blocks,) bool -> (size,) int64: the indices of the active blocks, padded by repeating the first one."""
    index = np.flatnonzero(active)
    if len(index) == 0 or len(index) > size:
        raise ValueError(f"need 1..{size} active blocks, got {len(index)}")
    return np.concatenate([index, np.full(size - len(index), index[0])]).astype(np.int64)


# ---------------------------------------------------------------------------------------------------- blocks


def active_blocks(layer_masks: Tensor, mask: Tensor, block: int) -> Tensor:
    """(B, T, L) layer masks, (B, T) bool -> (L, B, T // block) bool: blocks holding a position with m > 0."""
    batch, length, layers = layer_masks.shape
    active = (layer_masks > 0) & mask[..., None]
    return active.reshape(batch, length // block, block, layers).any(2).permute(2, 0, 1)


# ---------------------------------------------------------------------------------------------------- runner


class _Captured:
    """A function of static buffers, captured once as a CUDA graph (or run eagerly)."""

    def __init__(self, run: Callable[[], object], use_graph: bool):
        self.run, self.graph, self.outputs = run, None, None
        self.index: Tensor | None = getattr(run, "index", None)  # a block step's static index buffer
        # ... and its host-side source: pinned on CUDA, so that filling `index` is a true asynchronous copy (from
        # pageable memory the driver may wait for the stream, i.e. for the previous layer, before each layer)
        self.staging: Tensor | None = None
        if self.index is not None:
            staging = torch.zeros(self.index.shape, dtype=self.index.dtype)
            self.staging = staging.pin_memory() if self.index.is_cuda else staging
        if use_graph:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):  # warm-up outside the graph: cuBLAS handles, lazy inits
                    run()
            torch.cuda.current_stream().wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.outputs = run()

    def __call__(self):
        if self.graph is None:
            return self.run()
        self.graph.replay()
        return self.outputs


class GraphedHead:
    """Batch-1 hard-execution inference of a TZN over bucketed shapes; outputs equal `model(features, mask,
    execution="hard")` on the valid positions (same modules, same arithmetic).

    Returns a TZNOutput whose padded_length is the length bucket. One host sync per call for ATR models (the
    per-layer active-block counts); none for uniform ones. Not thread-safe: one call at a time (the service
    holds its compute slot around the head).

    `on_phase(name)`, when set, is called at the start of a call ("start") and after each phase has been
    launched: "embed", "sync" (after the host has the active-block counts), "stem" (the uniform model's whole
    stem) or "stem l" (each stem layer that ran), and "heads". bench/device/gpu_table.py records a CUDA event there to
    see where a call's time goes.
    """

    def __init__(
        self, model: TZN, *, length_step: int = 256, count_levels: int = 8, use_graphs: bool | None = None,
        tau_override: bool = False,
    ):  # fmt: skip
        """tau_override: every call passes `tau` (1, T), which replaces the predicted one (benchmarks; the
        predictor still runs), as `TZN.forward(tau_override=...)`."""
        self.model = model.eval()
        config = model.config
        self.block = config.attn_block_size
        unit = math.lcm(config.max_stride, self.block)
        self.length_step = bucket_length(length_step, unit)
        self.count_levels = count_levels
        self.tau_override = tau_override
        self.device = next(model.parameters()).device
        self.use_graphs = self.device.type == "cuda" if use_graphs is None else use_graphs
        if self.use_graphs and self.device.type != "cuda":
            raise ValueError("CUDA graphs need the model on a CUDA device")
        self._buffers: dict[int, dict[str, Tensor]] = {}
        self._graphs: dict[tuple, _Captured] = {}
        self.on_phase: Callable[[str], None] | None = None

    @property
    def captured(self) -> int:
        """How many graphs (or eager phases) have been built so far."""
        return len(self._graphs)

    def _static(self, length: int) -> dict[str, Tensor]:
        if length not in self._buffers:
            config = self.model.config
            self._buffers[length] = {
                "features": torch.zeros(1, config.input_dim, length, device=self.device),
                "mask": torch.zeros(1, length, dtype=torch.bool, device=self.device),
                "x": torch.zeros(1, length, config.embed_dim, device=self.device),
                "tau": torch.zeros(1, length, device=self.device),
            }
        return self._buffers[length]

    def _phase(self, key: tuple, build: Callable[[], Callable[[], object]], static: dict[str, Tensor]) -> _Captured:
        if key not in self._graphs:
            # the warm-up runs before capture update the state in place: keep the state they started from
            saved = static["x"].clone()
            self._graphs[key] = _Captured(build(), self.use_graphs)
            static["x"].copy_(saved)
        return self._graphs[key]

    @torch.inference_mode()
    def __call__(self, features: Tensor, mask: Tensor, tau: Tensor | None = None, boundary: bool = True) -> TZNOutput:
        """features (1, C, T), mask (1, T) bool -> TZNOutput over the length bucket. boundary=False skips the
        boundary head (its own graph), as `TZN.forward(boundary=False)`."""
        if (tau is not None) != self.tau_override:
            raise ValueError("pass tau exactly when the head was built with tau_override=True")
        if features.shape[0] != 1:
            raise ValueError(f"GraphedHead runs batch 1, got batch {features.shape[0]}")
        mark = self.on_phase or (lambda name: None)
        mark("start")
        length = features.shape[-1]
        padded = bucket_length(length, self.length_step)
        static = self._load_inputs(padded, features, mask, tau)
        depth = self._phase((padded, "embed"), lambda: self._embed_step(static), static)()
        mark("embed")
        if depth is None:
            tau, layer_masks, stats = self._uniform_stem(static, padded, length, mark)
        else:
            tau, layer_masks, stats = self._atr_stem(static, padded, length, depth, mark)
        heads = self._phase((padded, "heads", boundary), lambda: self._heads_step(static, boundary), static)
        cls_logits, offsets, level_masks, fields = heads()
        mark("heads")
        clone = (lambda t: t.clone()) if self.use_graphs else (lambda t: t)  # graph outputs are reused buffers
        return TZNOutput(
            [clone(t) for t in cls_logits], [clone(t) for t in offsets], [clone(t) for t in level_masks],
            [clone(t) for t in fields], None if tau is None else clone(tau), clone(layer_masks), stats, padded,
        )  # fmt: skip

    def _load_inputs(self, padded: int, features: Tensor, mask: Tensor, tau: Tensor | None) -> dict[str, Tensor]:
        """The static buffers of the length bucket `padded`, holding this call's inputs (zero beyond them)."""
        length = features.shape[-1]
        static = self._static(padded)
        static["features"].zero_()
        static["features"][..., :length].copy_(features, non_blocking=True)
        static["mask"].zero_()
        static["mask"][:, :length].copy_(mask, non_blocking=True)
        if tau is not None:
            static["tau"].zero_()
            static["tau"][:, :length].copy_(tau, non_blocking=True)
        return static

    def _embed_step(self, static: dict[str, Tensor]) -> Callable[[], tuple | None]:
        """The embedding and depth phase: writes the embedding into static["x"] (1, T, d). For an ATR model it
        keeps the layer masks as static["layer_masks"] (1, T, L) and returns tau (1, T), those layer masks, the
        active blocks of each layer (L, T // block) bool and the active positions of each layer (L,)."""
        model, block = self.model, self.block

        def run():
            override = static["tau"] if self.tau_override else None
            x = model.embedding(static["features"], static["mask"])
            tau, layer_masks = model.depth(x, static["mask"], override)
            static["x"].copy_(x.transpose(1, 2))
            if layer_masks is None:
                return None
            static["layer_masks"] = layer_masks  # graph mode: the captured output buffer
            active = active_positions(layer_masks, static["mask"])
            return tau, layer_masks, active_blocks(layer_masks, static["mask"], block)[:, 0], active

        return run

    def _uniform_stem(
        self, static: dict[str, Tensor], padded: int, length: int, mark: Callable[[str], None]
    ) -> tuple[None, Tensor, StemStats]:
        """The uniform model's stem, every layer dense, as one graph -> (tau None, layer masks (1, T, L) of ones on
        the valid positions, stats)."""
        stem = self.model.stem
        layers = len(stem.blocks)

        def dense_stem():
            x = static["x"]
            for layer in range(layers):
                x = stem.dense_layer(layer, x, static["mask"], None)
            static["x"].copy_(x)

        self._phase((padded, "stem"), lambda: dense_stem, static)()
        mark("stem")
        layer_masks = static["mask"][..., None].expand(-1, -1, layers).float()
        every = torch.full((layers,), padded, dtype=torch.long)
        return None, layer_masks, StemStats(torch.full((layers,), length, dtype=torch.long), every, every)

    def _atr_stem(
        self, static: dict[str, Tensor], padded: int, length: int, depth: tuple, mark: Callable[[str], None]
    ) -> tuple[Tensor, Tensor, StemStats]:
        """An ATR model's stem, layer by layer on the active blocks that the embed phase found (`depth`, its
        output) -> (tau (1, T), layer masks (1, T, L), stats counting the padded blocks as executed)."""
        tau, layer_masks, block_active, active = depth
        block_active = block_active.cpu().numpy()  # the one host sync
        mark("sync")
        blocks = padded // self.block
        valid_blocks = np.zeros(blocks, dtype=bool)
        valid_blocks[: math.ceil(length / self.block)] = True
        buckets = count_buckets(blocks, self.count_levels)
        executed, kv = [], []
        for layer, layer_blocks in enumerate(block_active):
            executed_positions, kv_positions = self._stem_layer(
                static, padded, layer, layer_blocks, valid_blocks, buckets
            )
            if executed_positions:
                mark(f"stem {layer}")
            executed.append(executed_positions)
            kv.append(kv_positions)
        return tau, layer_masks, StemStats(active.cpu(), torch.tensor(executed), torch.tensor(kv))

    def _stem_layer(
        self, static: dict[str, Tensor], padded: int, layer: int, layer_blocks: np.ndarray, valid_blocks: np.ndarray,
        buckets: list[int],
    ) -> tuple[int, int]:  # fmt: skip
        """Runs stem layer `layer` on its active blocks `layer_blocks` (blocks,) bool: densely when they are every
        valid block, on a list of blocks padded to a bucket size otherwise, not at all when there is none.
        Returns the positions it executed and those whose keys/values it computed (padded blocks included)."""
        count = int(layer_blocks.sum())
        if count == 0:
            return 0, 0
        if (layer_blocks == valid_blocks).all():
            self._phase((padded, layer, "dense"), lambda: self._dense_step(static, layer), static)()
            return padded, padded
        size = bucket_count(count, buckets)
        step = self._phase((padded, layer, size), lambda: self._block_step(static, layer, size), static)
        # the staging buffer is free: the host sync in _atr_stem waited for the previous call's copies
        step.staging.numpy()[:] = padded_block_index(layer_blocks, size)
        step.index.copy_(step.staging, non_blocking=True)
        step()
        halo = self.model.stem.blocks[layer].attn.halo
        return size * self.block, size * (self.block + 2 * halo)

    def _heads_step(self, static: dict[str, Tensor], boundary: bool) -> Callable[[], tuple]:
        """The pyramid and heads phase on the stem's result in static["x"] (the boundary head only `boundary`)."""
        model = self.model

        def run():
            stem_out = model.stem.output(static["x"], static["mask"], static["x"].shape[1])
            return model.pyramid_and_heads(stem_out, static["mask"], boundary)

        return run

    def _dense_step(self, static: dict[str, Tensor], layer: int) -> Callable[[], None]:
        stem = self.model.stem

        def run():
            layer_mask = static["layer_masks"][..., layer]
            static["x"].copy_(stem.dense_layer(layer, static["x"], static["mask"], layer_mask))

        return run

    def _block_step(self, static: dict[str, Tensor], layer: int, size: int) -> Callable[[], None]:
        stem = self.model.stem
        index = torch.zeros(size, dtype=torch.long, device=self.device)

        def run():
            layer_mask = static["layer_masks"][..., layer]
            batch_index = torch.zeros_like(index)  # batch 1
            static["x"].copy_(stem.block_layer(layer, static["x"], static["mask"], layer_mask, batch_index, index))

        run.index = index
        return run
