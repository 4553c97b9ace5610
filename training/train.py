"""The training loop of TZN (`tzn train`): typed YAML config, AdamW + warm-up/cosine, EMA, resumable runs.

A run directory holds, once an epoch has finished:
- `config.json` + `model.safetensors`: the EMA weights as a checkpoint (`model.checkpoint.load_checkpoint`);
- `train_config.yaml`: the resolved training config (command-line overrides applied);
- `train_log.jsonl`: one line per epoch (losses, mean depth, learning rate, seconds);
- `state/`: what resuming needs, without pickle: `training_state.safetensors` (model, EMA and optimizer
  tensors) and `training_state.json` (epoch, iteration, loss normaliser, optimizer hyper-parameters).
Running `tzn train` again with the same `--output` resumes from the last finished epoch.

Determinism: the initial weights come from `seed`; each epoch reseeds torch with (seed, epoch) and draws
its video order and crops from generators seeded the same way, so a resumed run repeats what an
uninterrupted one does.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm import tqdm

from model.atr import executed_fraction
from model.checkpoint import CheckpointConfig, FeatureSpec, load_checkpoint, save_checkpoint
from model.config import ModelConfig
from model.head import TorchHead
from model.tzn import TZN
from training.config import ATRConfig, TrainConfig, TrainConfigError
from training.dataset import Batch, FeatureDataset, collate
from training.distill import (
    TEACHER_CACHE,
    cache_teacher_outputs,
    load_matching_weights,
    read_teacher_cache,
    teacher_targets,
)
from training.evaluation import evaluate
from training.losses import (
    LossNormalizer,
    LossSettings,
    boundary_guidance_loss,
    budget_loss,
    depth_per_position,
    detection_losses,
    executed_budget_loss,
    kd_class_loss,
    kd_offset_loss,
    regression_ranges,
)

STATE_DIR = "state"
STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "training_state.json"
LOG_NAME = "train_log.jsonl"
RESOLVED_CONFIG = "train_config.yaml"


# ---------------------------------------------------------------------------------------------------
# Schedules


def learning_rate(step: int, total_steps: int, warmup_steps: int, base: float, final: float = 1e-8) -> float:
    """Linear warm-up from 0 over `warmup_steps`, then cosine from `base` to `final` at `total_steps`."""
    if step < warmup_steps:
        return base * step / warmup_steps
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * progress))


def atr_target(epoch_progress: float, atr: ATRConfig) -> float | None:
    """rho at a (fractional) epoch: None during the full-depth warm-up, then 1 -> target over `ramp_epochs`."""
    if epoch_progress < atr.warmup_epochs:
        return None
    if atr.ramp_epochs <= 0:
        return atr.rho
    ramp = min((epoch_progress - atr.warmup_epochs) / atr.ramp_epochs, 1.0)
    return 1.0 + ramp * (atr.rho - 1.0)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv/linear weights only; biases, norms and the per-level scales go without."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (decay if parameter.dim() >= 2 and "norm" not in name else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for ema_value, value in zip(ema.state_dict().values(), model.state_dict().values(), strict=True):
        if ema_value.is_floating_point():
            ema_value.lerp_(value, 1.0 - decay)
        else:
            ema_value.copy_(value)


# ---------------------------------------------------------------------------------------------------
# Run state (no pickle)


def save_state(directory: Path, model: nn.Module, ema: nn.Module, optimizer: torch.optim.Optimizer, info: dict) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    optimizer_state = optimizer.state_dict()
    for index, values in optimizer_state["state"].items():
        for key, value in values.items():
            tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / (STATE_TENSORS + ".tmp")))
    info = {**info, "optimizer_param_groups": optimizer_state["param_groups"]}
    (directory / (STATE_JSON + ".tmp")).write_text(json.dumps(info, indent=1))
    # tensors first, then the JSON that marks the state complete
    (directory / (STATE_TENSORS + ".tmp")).replace(directory / STATE_TENSORS)
    (directory / (STATE_JSON + ".tmp")).replace(directory / STATE_JSON)


def load_state(
    directory: Path, model: nn.Module, ema: nn.Module, optimizer: torch.optim.Optimizer, device: str
) -> dict:
    info = json.loads((directory / STATE_JSON).read_text())
    tensors = load_file(str(directory / STATE_TENSORS), device=device)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            # AdamW keeps `step` on the CPU unless capturable/fused
            state.setdefault(int(index), {})[name] = value.cpu() if name == "step" else value
    optimizer.load_state_dict({"state": state, "param_groups": info["optimizer_param_groups"]})
    return info


# ---------------------------------------------------------------------------------------------------
# The loop


def config_difference(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """Dotted keys ("model.atr") whose values differ between two dumped configs."""
    keys = sorted(set(saved) | set(current))
    differences = []
    for key in keys:
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differences += config_difference(a, b, f"{prefix}{key}.")
        elif a != b:
            differences.append(f"{prefix}{key}")
    return differences


def _prepare_run_directory(output: Path, config: TrainConfig) -> bool:
    """True when `output` holds a run to resume; errors when it holds something else."""
    state = output / STATE_DIR / STATE_JSON
    if state.is_file():
        saved_path = output / RESOLVED_CONFIG
        saved = yaml.safe_load(saved_path.read_text()) if saved_path.is_file() else {}
        current = config.dump()
        differences = [d for d in config_difference(saved, current) if d not in ("optimizer.epochs", "data.val_split")]
        if differences:
            raise TrainConfigError(
                f"{output} holds a run with a different config ({', '.join(differences[:5])}); "
                "resume with the same config or choose a new --output"
            )
        return True
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise TrainConfigError(f"{output} exists and is not a TZN run directory; choose a new --output")
    return False


def _datasets(config: TrainConfig) -> tuple[FeatureDataset, FeatureDataset | None]:
    data = config.data
    if data.annotations is None or data.features_dir is None:
        raise TrainConfigError("no data: set data.annotations and data.features_dir, or pass --annotations/--features")
    common = dict(feat_stride=data.feat_stride, num_frames=data.num_frames, default_fps=data.default_fps)
    train = FeatureDataset(
        data.annotations, data.features_dir, data.train_split, max_seq_len=data.max_seq_len, training=True,
        trunc_thresh=data.trunc_thresh, crop_ratio=data.crop_ratio, seed=config.seed, **common,
    )  # fmt: skip
    val = None
    if data.val_split:
        val = FeatureDataset(data.annotations, data.features_dir, data.val_split, labels=train.labels, **common)
    return train, val


def _checkpoint_config(
    config: TrainConfig, model_config: ModelConfig, train: FeatureDataset, extra: dict
) -> CheckpointConfig:
    fps = config.data.default_fps or train.videos[0].fps
    features = FeatureSpec(
        feat_stride=config.data.feat_stride, num_frames=config.data.num_frames, default_fps=fps,
        backbone=config.data.backbone, frame_size=config.data.frame_size,
    )  # fmt: skip
    return CheckpointConfig(
        model=model_config, labels=train.labels, label_ids=train.annotation_label_ids, features=features,
        postprocess=config.postprocess, metadata=dict(extra),
    )  # fmt: skip


def train(
    config: TrainConfig,
    output: Path,
    device: str = "cpu",
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Trains (or resumes) the run in `output`; returns the run directory, a loadable checkpoint."""
    output = Path(output)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TrainConfigError("--device cuda was requested but CUDA is not available")
    train_set, val_set = _datasets(config)
    model_config = _student_config(config, train_set)
    resume = _prepare_run_directory(output, config)
    output.mkdir(parents=True, exist_ok=True)
    (output / RESOLVED_CONFIG).write_text(yaml.safe_dump(config.dump(), sort_keys=False))

    torch.manual_seed(config.seed)
    model = TZN(model_config)
    model.set_input_statistics(*train_set.feature_statistics())
    model = model.to(device)
    teacher_cache = None
    if config.distill.teacher is not None:
        teacher_cache = _prepare_teacher(config, model, train_set, output, device, progress, log)
    ema = copy.deepcopy(model).eval()
    for parameter in ema.parameters():
        parameter.requires_grad_(False)
    optimizer = torch.optim.AdamW(parameter_groups(model, config.optimizer.weight_decay), lr=config.optimizer.lr)
    normalizer = LossNormalizer(config.loss.init_loss_norm, config.loss.loss_norm_momentum)
    settings = _loss_settings(config, model_config)
    run = _Run(config, model_config, model, ema, optimizer, normalizer, settings, teacher_cache)

    start_epoch = 0
    if resume:
        info = load_state(output / STATE_DIR, model, ema, optimizer, device)
        start_epoch, run.step, normalizer.value = info["epoch"], info["step"], info["loss_normalizer"]
        log(f"resuming {output} after epoch {start_epoch}")
    _trim_log(output / LOG_NAME, start_epoch)
    for epoch in range(start_epoch, config.optimizer.epochs):
        record = _train_epoch(run, train_set, epoch, device, progress)
        _save_epoch(run, output, train_set, record, log)

    if not (output / "model.safetensors").is_file():  # a finished run resumed with nothing left to do
        epochs = config.optimizer.epochs
        save_checkpoint(ema, output, _checkpoint_config(config, model_config, train_set, {"epochs": epochs}))
    if val_set is not None:
        _validate(ema, val_set, config, model_config, train_set, output, device, progress, log)
    return output


@dataclass
class _Run:
    """What the epochs of one training run read and update: the weights, their EMA, the optimizer, the loss
    normaliser and the optimizer step count."""

    config: TrainConfig
    model_config: ModelConfig
    model: TZN
    ema: TZN
    optimizer: torch.optim.Optimizer
    normalizer: LossNormalizer
    settings: LossSettings
    teacher_cache: dict[str, Tensor] | None
    step: int = 0


def _student_config(config: TrainConfig, train_set: FeatureDataset) -> ModelConfig:
    """The model config for the data's feature width and classes; a distilled ATR student gets integer depths."""
    model_config = config.model.build(train_set.feature_dim, train_set.num_classes)
    if config.distill.teacher is not None and config.distill.integer_depth and model_config.atr:
        # The student's depth is rounded to whole layers (binary masks) in training and in every runtime.
        model_config = model_config.model_copy(update={"integer_depth": True})
    return model_config


def _loss_settings(config: TrainConfig, model_config: ModelConfig) -> LossSettings:
    settings = LossSettings(
        ranges=[tuple(r) for r in config.loss.regression_ranges]
        if config.loss.regression_ranges
        else regression_ranges(model_config.pyramid_levels),
        center_radius=config.loss.center_radius, focal_alpha=config.loss.focal_alpha,
        focal_gamma=config.loss.focal_gamma, bdr_smoothness=config.loss.bdr_smoothness,
        bdr_alpha=config.loss.bdr_alpha, bdr_normalize=config.loss.bdr_normalize,
        boundary_sigma=config.loss.boundary_sigma,
    )  # fmt: skip
    if len(settings.ranges) != model_config.pyramid_levels:
        raise TrainConfigError(
            f"loss.regression_ranges has {len(settings.ranges)} entries for {model_config.pyramid_levels} levels"
        )
    return settings


def _train_epoch(run: _Run, train_set: FeatureDataset, epoch: int, device: str, progress: bool) -> dict:
    """One epoch (0-based) in an order and with crops seeded by (seed, epoch) -> its log record: epoch, step,
    the last learning rate, the mean of each loss over the batches, seconds."""
    config, schedule = run.config, run.config.optimizer
    started = time.perf_counter()
    torch.manual_seed(config.seed * 100_003 + epoch)
    train_set.set_epoch(epoch)
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(config.seed * 7919 + epoch))
    steps_per_epoch = math.ceil(len(train_set) / schedule.batch_size)
    total_steps = schedule.epochs * steps_per_epoch
    warmup_steps = round(schedule.warmup_epochs * steps_per_epoch)
    run.model.train()
    sums: dict[str, float] = {}
    bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{schedule.epochs}", disable=None if progress else True)
    for batch_index in bar:
        indices = order[batch_index * schedule.batch_size : (batch_index + 1) * schedule.batch_size]
        batch = collate([train_set[int(i)] for i in indices]).to(device)
        lr = learning_rate(run.step, total_steps, warmup_steps, schedule.lr)
        rho = atr_target(epoch + batch_index / steps_per_epoch, config.atr) if run.model_config.atr else None
        losses = _train_step(run, batch, lr, rho, epoch)
        for key, value in losses.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach())
        bar.set_postfix(loss=f"{float(losses['total'].detach()):.3f}", depth=f"{float(losses['mean_depth']):.2f}")
    record = {"epoch": epoch + 1, "step": run.step, "lr": lr}
    record.update({key: value / steps_per_epoch for key, value in sums.items()})
    record["seconds"] = time.perf_counter() - started
    return record


def _train_step(run: _Run, batch: Batch, lr: float, rho: float | None, epoch: int) -> dict[str, Tensor]:
    """One optimizer step at learning rate `lr` and budget target `rho`, then the EMA update -> the losses."""
    config = run.config
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    losses = _batch_losses(
        run.model, batch, config, run.model_config, run.settings, run.normalizer, rho, epoch, run.teacher_cache
    )
    run.optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    if config.optimizer.clip_grad_norm:
        nn.utils.clip_grad_norm_(run.model.parameters(), config.optimizer.clip_grad_norm)
    run.optimizer.step()
    update_ema(run.ema, run.model, config.optimizer.ema_decay)
    run.step += 1
    return losses


def _save_epoch(run: _Run, output: Path, train_set: FeatureDataset, record: dict, log: Callable[[str], None]) -> None:
    """After an epoch: the state to resume from, the EMA checkpoint, the log line and the printed summary."""
    config, epoch = run.config, record["epoch"]
    info = {"epoch": epoch, "step": run.step, "loss_normalizer": run.normalizer.value, "seed": config.seed}
    save_state(output / STATE_DIR, run.model, run.ema, run.optimizer, info)
    save_checkpoint(run.ema, output, _checkpoint_config(config, run.model_config, train_set, {"epochs": epoch}))
    with (output / LOG_NAME).open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    log(
        f"epoch {epoch}/{config.optimizer.epochs}: loss {record['total']:.4f} (cls {record['cls']:.4f}, "
        f"reg {record['reg']:.4f}, boundary {record['boundary']:.4f}) mean depth {record['mean_depth']:.2f}, "
        f"{record['seconds']:.1f} s"
    )


def _batch_losses(
    model: TZN,
    batch: Batch,
    config: TrainConfig,
    model_config: ModelConfig,
    settings: LossSettings,
    normalizer: LossNormalizer,
    rho: float | None,
    epoch: int,
    teacher_cache: dict[str, Tensor] | None,
) -> dict[str, Tensor]:
    full_depth = model_config.atr and rho is None
    output = model(batch.features, batch.mask, execution="soft", full_depth=full_depth)
    losses = detection_losses(output, batch.segments, batch.labels, model_config, settings, normalizer)
    weights = config.loss
    total = weights.cls * losses["cls"] + weights.reg * losses["reg"] + weights.boundary * losses["boundary"]
    valid = output.masks[0]
    zero = total.new_zeros(())
    losses["budget"] = losses["guidance"] = zero
    if output.tau is not None and rho is not None and config.atr.budget_weight > 0:
        if config.atr.budget == "executed":
            losses["budget"] = executed_budget_loss(output.tau, valid, model_config, rho)
        else:
            losses["budget"] = budget_loss(output.tau, valid, rho)
        total = total + config.atr.budget_weight * losses["budget"]
    guidance = config.atr.boundary_guidance_weight
    if output.tau is not None and guidance > 0 and epoch < config.atr.boundary_guidance_epochs:
        losses["guidance"] = boundary_guidance_loss(
            output.tau, valid, batch.segments, config.atr.boundary_guidance_radius
        )
        total = total + guidance * losses["guidance"]
    if teacher_cache is not None:
        lengths = [logits.shape[1] for logits in output.cls_logits]
        t_logits, t_offsets, t_valid = teacher_targets(
            teacher_cache, batch.video_ids, batch.offsets, lengths, batch.features.device
        )
        kd_mask = torch.cat(output.masks, 1) & torch.cat(t_valid, 1)
        losses["kd_cls"] = kd_class_loss(
            torch.cat(output.cls_logits, 1), torch.cat(t_logits, 1), kd_mask, config.distill.temperature
        )
        losses["kd_reg"] = kd_offset_loss(
            torch.cat(output.offsets, 1), torch.cat(t_offsets, 1), torch.cat(t_logits, 1), kd_mask
        )
        total = total + config.distill.kd_cls * losses["kd_cls"] + config.distill.kd_reg * losses["kd_reg"]
    with torch.no_grad():
        losses["mean_depth"] = depth_per_position(output)[valid].mean() if valid.any() else zero
        if output.tau is not None:
            losses["mean_tau"] = output.tau[valid].mean() if valid.any() else zero
            depth = model_config.min_depth + output.tau * (model_config.stem_layers - model_config.min_depth)
            losses["executed"] = executed_fraction(depth, valid, model_config.attn_block_size, model_config.stem_layers)
    losses["total"] = total
    return {k: v if k == "total" else v.detach() for k, v in losses.items()}


def _prepare_teacher(
    config: TrainConfig,
    model: TZN,
    train_set: FeatureDataset,
    output: Path,
    device: str,
    progress: bool,
    log: Callable[[str], None],
) -> dict[str, Tensor]:
    """Loads the teacher, initialises the student from it (optional) and returns the cached teacher outputs."""
    teacher, teacher_config = load_checkpoint(config.distill.teacher, device=device)
    if teacher_config.labels != train_set.labels:
        raise TrainConfigError(
            f"teacher {config.distill.teacher} has labels {teacher_config.labels[:5]}..., the data has "
            f"{train_set.labels[:5]}...; distil on the teacher's classes"
        )
    if teacher_config.model.input_dim != train_set.feature_dim:
        raise TrainConfigError(
            f"teacher {config.distill.teacher} expects {teacher_config.model.input_dim}-d features, "
            f"the data has {train_set.feature_dim}"
        )
    if config.distill.init_from_teacher:
        copied = load_matching_weights(model, teacher.state_dict())
        log(f"student initialised from the teacher: {len(copied)} of {len(model.state_dict())} tensors")
    path = output / TEACHER_CACHE
    if path.is_file():
        return read_teacher_cache(path)
    whole_videos = FeatureDataset(
        train_set.annotations_path, train_set.features_dir, train_set.split, train_set.feat_stride,
        train_set.num_frames, default_fps=config.data.default_fps, labels=train_set.labels,
    )  # fmt: skip
    return cache_teacher_outputs(teacher, whole_videos, path, device, progress)


def _validate(
    ema: TZN,
    val_set: FeatureDataset,
    config: TrainConfig,
    model_config: ModelConfig,
    train_set: FeatureDataset,
    output: Path,
    device: str,
    progress: bool,
    log: Callable[[str], None],
) -> None:
    """mAP of the EMA model on the validation split, appended to the log and saved in the checkpoint metadata."""
    from training.predict import predict_dataset

    model, checkpoint_config = load_checkpoint(output, device)
    head = TorchHead(model, checkpoint_config, device=torch.device(device))
    results, stats = predict_dataset(head, val_set, device, progress)
    annotations = json.loads(Path(val_set.annotations_path).read_text())
    metrics = evaluate(annotations, {"results": results}, val_set.split)
    summary = {"split": val_set.split, "mAP": metrics["mAP"], "average": metrics["average"], **stats}
    with (output / LOG_NAME).open("a") as handle:
        handle.write(json.dumps({"validation": summary}) + "\n")
    log(f"validation ({val_set.split}): average mAP {metrics['average']:.2f}, mean depth {stats['mean_depth']:.2f}")
    checkpoint_config.metadata["validation"] = summary
    save_checkpoint(model, output, checkpoint_config)


def _trim_log(path: Path, epochs_done: int) -> None:
    """Drops log lines of epochs after the saved state (a run stopped between the log and the state)."""
    if not path.is_file():
        return
    kept = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line).get("epoch", 0) <= epochs_done and "validation" not in json.loads(line)
    ]
    path.write_text("".join(line + "\n" for line in kept))
