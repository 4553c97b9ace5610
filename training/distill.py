"""Distillation of a hard-mask ATR student from a cached teacher.

What it does:
1. The teacher (any TZN checkpoint, e.g. a Uniform-6 run) runs once over every training video, whole and
   in eval mode; its class logits and offsets on every pyramid level are cached in the run directory
   (`teacher_cache.safetensors`), so a resumed run does not run the teacher again and each training step
   costs one student forward/backward, as without distillation.
2. The student is an ATR model whose stem uses *integer* depths: the tau predictor's output is rounded so
   that D = D_min + tau (L_max - D_min) is a whole number of layers (straight-through: the forward pass
   uses the rounded value, the backward pass the gradient of the continuous one). Every layer mask is then
   0 or 1, so hard execution skips whole layers of a position, with no blending. The rounding is the
   model's own `integer_depth` switch (model/atr.py `integer_depth_tau`), saved in the checkpoint's model
   config, so predict, export and the service all run the student as it was trained.
3. Loss = the ground-truth losses + KD: a sigmoid KD loss on the class logits (`kd_class_loss`) and a
   confidence-weighted centre-DIoU on the offsets (`kd_offset_loss`) against the cached teacher.
   Training crops are aligned to the teacher's whole-video outputs by their offset (linear interpolation
   where a crop does not start on a multiple of the level's stride).
By default the student starts from the teacher's weights wherever names and shapes agree (all but the tau
predictor for a uniform teacher of the same size), which is what makes distillation cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm import tqdm

from model.tzn import TZN
from training.dataset import FeatureDataset

TEACHER_CACHE = "teacher_cache.safetensors"


def load_matching_weights(student: nn.Module, teacher_state: dict[str, Tensor]) -> list[str]:
    """Copies every teacher tensor whose name and shape the student shares; returns the names copied."""
    own = student.state_dict()
    matching = {k: v for k, v in teacher_state.items() if k in own and own[k].shape == v.shape}
    student.load_state_dict(matching, strict=False)
    return sorted(matching)


# ---------------------------------------------------------------------------------------------------
# Teacher cache


@torch.no_grad()
def cache_teacher_outputs(
    teacher: TZN, dataset: FeatureDataset, path: Path, device: str = "cpu", progress: bool = True
) -> dict[str, Tensor]:
    """Runs the teacher over every video of `dataset` (whole videos) and saves, per video v and level k,
    `v/k/logits` (T_k, C) and `v/k/offsets` (T_k, 2) (valid positions only) to `path`. Returns the dict."""
    teacher.eval()
    cache: dict[str, Tensor] = {}
    for index in tqdm(range(len(dataset)), desc="teacher outputs", disable=None if progress else True):
        item = dataset[index]
        features = item.features[None].to(device)
        mask = torch.ones(1, features.shape[2], dtype=torch.bool, device=device)
        output = teacher(features, mask, execution="hard")
        for level, (logits, offsets, level_mask) in enumerate(
            zip(output.cls_logits, output.offsets, output.masks, strict=True)
        ):
            valid = level_mask[0]
            cache[f"{item.video_id}/{level}/logits"] = logits[0][valid].float().cpu().contiguous()
            cache[f"{item.video_id}/{level}/offsets"] = offsets[0][valid].float().cpu().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(cache, str(path))
    return cache


def read_teacher_cache(path: Path) -> dict[str, Tensor]:
    return load_file(str(path))


def align_level(values: Tensor, start: float, length: int) -> tuple[Tensor, Tensor]:
    """values (T, D) of one teacher level -> (length, D) at fractional positions start + i, and (length,) valid.

    Linear interpolation between neighbouring positions; positions outside [0, T-1] are invalid (zeros).
    """
    positions = start + torch.arange(length, dtype=torch.float32)
    valid = (positions >= 0) & (positions <= values.shape[0] - 1)
    clamped = positions.clamp(0, max(values.shape[0] - 1, 0))
    low = clamped.floor().long()
    high = (low + 1).clamp(max=values.shape[0] - 1)
    weight = (clamped - low.float())[:, None]
    aligned = values[low] * (1 - weight) + values[high] * weight
    return aligned * valid[:, None], valid


def teacher_targets(
    cache: dict[str, Tensor], video_ids: Sequence[str], offsets: Sequence[int], lengths: Sequence[int], device
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """Per level: teacher logits (B, T_k, C), offsets (B, T_k, 2) and valid (B, T_k) for a batch of crops
    starting at `offsets` (level-0 steps into each video), on student levels of `lengths`."""
    logits_per_level, offsets_per_level, valid_per_level = [], [], []
    for level, length in enumerate(lengths):
        stride = 2**level
        rows = [
            (
                align_level(cache[f"{video}/{level}/logits"], offset / stride, length),
                align_level(cache[f"{video}/{level}/offsets"], offset / stride, length)[0],
            )
            for video, offset in zip(video_ids, offsets, strict=True)
        ]
        logits_per_level.append(torch.stack([r[0][0] for r in rows]).to(device))
        valid_per_level.append(torch.stack([r[0][1] for r in rows]).to(device))
        offsets_per_level.append(torch.stack([r[1] for r in rows]).to(device))
    return logits_per_level, offsets_per_level, valid_per_level
